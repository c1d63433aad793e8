"""`dqu serve` as a real process, driven by headless chromium: upload, type, click, results.

DQU_SCREENSHOT=PATH saves the page after the search (docs/serve.png is made this way); the
test itself never writes into the repository.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _browser_or_skip() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    if os.environ.get("DQU_REQUIRE_BROWSER"):
        pytest.fail("chromium / chromedriver not found (apt-get install chromium chromium-driver)")
    pytest.skip("no chromium + chromedriver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(tiny_search):
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--index", str(tiny_search["index"]),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):  # model + KeyBERT load: seconds, more on a busy machine
            if process.poll() is not None:
                pytest.fail(f"dqu serve exited: {process.stdout.read().decode()}")
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_upload_type_click_and_see_results(server, tiny_search):
    chromium, driver_path = _browser_or_skip()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(driver_path), options=options)
    try:
        browser.get(server)
        reference = tiny_search["prepare"] / "img" / "test-red-14.png"
        browser.find_element(By.ID, "reference").send_keys(str(reference))
        browser.find_element(By.ID, "text").send_keys("make it green instead of red")
        browser.find_element(By.ID, "caption").send_keys("a red square")
        browser.find_element(By.ID, "submit").click()
        wait = WebDriverWait(browser, 60)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results figure.hit")))
        hits = browser.find_elements(By.CSS_SELECTOR, "#results figure.hit")
        assert len(hits) == 6  # the uploaded file is not a gallery path: nothing masked
        text_query = browser.find_element(By.ID, "text-query").text
        assert text_query == "a red square, but make it green instead of red"
        assert 0 < float(browser.find_element(By.ID, "lambda").text) < 1
        visual = browser.find_element(By.ID, "visual-query").get_attribute("src")
        assert visual.startswith("data:image/png;base64,")
        wait.until(lambda b: b.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"))
        if os.environ.get("DQU_SCREENSHOT"):
            browser.save_screenshot(os.environ["DQU_SCREENSHOT"])
        # a bad request shows its error and the page (and server) carry on
        browser.find_element(By.ID, "text").clear()
        browser.find_element(By.ID, "submit").click()
        wait.until(lambda b: "422" in b.find_element(By.ID, "error").text)
    finally:
        browser.quit()
