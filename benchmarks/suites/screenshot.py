"""A PNG screenshot of a suite's report.html in headless chromium (for docs/img/).

    python benchmarks/suites/screenshot.py runs/suite-speech/report.html docs/img/suite-speech.png [--height 2400]

Needs chromium, chromedriver and selenium (the serve extra). Fails when an image on the page is broken.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=2400, help="page height captured, in CSS pixels")
    options = parser.parse_args()
    chrome = webdriver.ChromeOptions()
    chrome.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={options.width},{options.height}", "--hide-scrollbars"):
        chrome.add_argument(arg)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=chrome)
    try:
        browser.get(options.report.resolve().as_uri())
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        if broken:
            raise SystemExit(f"{options.report}: {broken} broken image(s)")
        options.output.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(options.output))
    finally:
        browser.quit()
    print(f"screenshot: {options.output}")


if __name__ == "__main__":
    main()
