"""Drive `dqu serve` in headless chromium: the browser test and the docs screenshot use this.

`python -m devkit.browser --index artifacts/index --reference IMG --text "..." [--caption C]
--screenshot docs/serve.png` starts `dqu serve`, searches through the page and saves it.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(index_dir: Path, timeout_s: float = 120.0) -> Iterator[str]:
    """A `dqu serve` process on a free port; yields its URL once it answers, then stops it."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--index", str(index_dir),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dqu serve exited: {process.stdout.read().decode()}")
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dqu serve did not answer within {timeout_s} s") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextlib.contextmanager
def chromium(paths: tuple[str, str]) -> Iterator[object]:
    """A headless chromium selenium driver."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,1180"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(paths[1]), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def search_in_page(browser: object, url: str, reference: Path, text: str, caption: str = "",
                   screenshot: Path | None = None) -> dict:
    """Upload, type, click; wait for the results; return what the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    browser.find_element(By.ID, "reference").send_keys(str(Path(reference).resolve()))
    browser.find_element(By.ID, "text").send_keys(text)
    if caption:
        browser.find_element(By.ID, "caption").send_keys(caption)
    browser.find_element(By.ID, "submit").click()
    wait = WebDriverWait(browser, 120)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results figure.hit")))
    wait.until(lambda b: b.execute_script(
        "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"))
    if screenshot is not None:
        browser.save_screenshot(str(screenshot))
    return {
        "hits": len(browser.find_elements(By.CSS_SELECTOR, "#results figure.hit")),
        "text_query": browser.find_element(By.ID, "text-query").text,
        "lambda": float(browser.find_element(By.ID, "lambda").text),
        "visual_query": browser.find_element(By.ID, "visual-query").get_attribute("src"),
    }


def main(argv: list[str] | None = None) -> int:
    """Search once through the page and save a screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--caption", default="")
    parser.add_argument("--screenshot", type=Path, required=True)
    args = parser.parse_args(argv)
    paths = find_browser()
    if paths is None:
        print("error: chromium / chromedriver not found", file=sys.stderr)
        return 2
    with served(args.index) as url, chromium(paths) as browser:
        shown = search_in_page(browser, url, args.reference, args.text, args.caption,
                               args.screenshot)
    print({k: v for k, v in shown.items() if k != "visual_query"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
