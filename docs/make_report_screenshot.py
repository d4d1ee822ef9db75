"""Make docs/report.png: the HTML report of the bundled example, in headless Chromium.

    pip install -e ".[test]" && apt-get install chromium chromium-driver
    python docs/make_report_screenshot.py

Masters ``examples/example.flac`` into a temporary folder with ``--report report.html``,
opens the page with its track's section open, and saves the whole page as a PNG.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 1280


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # relative paths, so the page shows example.flac, not this machine's folders
        shutil.copy(ROOT / "examples" / "example.flac", tmp)
        page = Path(tmp) / "report.html"
        cmd = [sys.executable, "-m", "auralis_batch.cli", "master", "example.flac"]
        cmd += ["--out", "mastered", "--report", "report.html", "--quiet"]
        subprocess.run(cmd, check=True, cwd=tmp)
        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={Path(tmp) / 'profile'}")
        options.add_argument(f"--window-size={WIDTH},900")
        driver = webdriver.Chrome(
            service=Service(shutil.which("chromedriver") or "chromedriver"), options=options
        )
        try:
            driver.get(page.as_uri() + "#t0")
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: d.execute_script("return window.abOverviewDrawnMs"))
            wait.until(
                lambda d: (
                    len(d.find_elements(By.CSS_SELECTOR, "#t0 figure[data-ready] svg.marks")) == 4
                )
            )
            driver.execute_script("window.scrollTo(0, 0)")
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(WIDTH, height + 200)  # the window's frame too
            time.sleep(0.5)  # the library plot follows the new width
            out = ROOT / "docs" / "report.png"
            driver.save_screenshot(str(out))
            print(f"wrote {out} ({WIDTH}x{height})")
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main())
