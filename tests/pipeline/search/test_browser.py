"""`dqu serve` as a real process, driven by headless chromium: upload, type, click, results.

The screenshot in docs is made by `python -m devkit.browser` (the same driving code); the test
itself never writes into the repository.
"""

from __future__ import annotations

import os

import pytest

from devkit.browser import chromium, find_browser, search_in_page, served


def test_upload_type_click_and_see_results(tiny_search):
    paths = find_browser()
    if paths is None:
        if os.environ.get("DQU_REQUIRE_BROWSER"):
            pytest.fail("chromium / chromedriver not found (apt-get install chromium "
                        "chromium-driver)")
        pytest.skip("no chromium + chromedriver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reference = tiny_search["prepare"] / "img" / "test-red-14.png"
    with served(tiny_search["index"]) as url, chromium(paths) as browser:
        shown = search_in_page(browser, url, reference, "make it green instead of red",
                               "a red square")
        # the uploaded file is byte-identical to a gallery image: masked like its id, 5 of 6 left
        assert shown["hits"] == 5
        assert shown["text_query"] == "a red square, but make it green instead of red"
        assert 0 < shown["lambda"] < 1
        assert shown["visual_query"].startswith("data:image/png;base64,")
        # a bad request shows its error, and the page and the server carry on
        browser.find_element(By.ID, "text").clear()
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 60).until(
            lambda b: "422" in b.find_element(By.ID, "error").text)
        assert search_in_page(browser, url, reference, "make it blue", "a red square")["hits"]
