"""The screenshot in docs/serve.md: the ``mmaffect serve`` page after analysing a real IEMOCAP clip with the
shipped default model, taken by Debian's chromium (headless) driven by selenium.

    python benchmarks/serve_screenshot.py --clip Ses01M_script02_2_M035.mp4 --output docs/img/serve_iemocap.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from mmaffect.io import atomic_write, check_output_file
    from mmaffect.settings import data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clip", default="Ses01M_script02_2_M035.mp4", help="a clip of ../shared/data/iemocap_clips")
    p.add_argument("--output", default="docs/img/serve_iemocap.png")
    args = p.parse_args()
    check_output_file(args.output, "--output")
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    clip = data_root() / "iemocap_clips" / args.clip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="mmaffect-shot-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMAFFECT_CACHE": str(work / "cache")}
    server = subprocess.Popen([sys.executable, "-m", "mmaffect.cli", "--threads", "1", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,1500",
                "--hide-scrollbars"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                browser.get(f"http://127.0.0.1:{port}/")
                WebDriverWait(browser, 5).until(lambda b: b.find_element(By.ID, "limits").text)
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        browser.find_element(By.ID, "file").send_keys(str(clip))
        browser.find_element(By.ID, "submit").click()
        WebDriverWait(browser, 300).until(ec.visibility_of_element_located((By.ID, "result")))
        if browser.find_element(By.ID, "error").text:
            raise SystemExit(f"the page shows an error: {browser.find_element(By.ID, 'error').text}")
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1200, min(max(height + 200, 800), 3000))
        png = browser.get_screenshot_as_png()
        atomic_write(args.output, lambda tmp: Path(tmp).write_bytes(png))
        print(f"screenshot: {args.output} ({len(png):,} bytes)")
    finally:
        browser.quit()
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
