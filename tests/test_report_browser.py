"""The HTML report in a real browser: headless Chromium through Selenium.

Skipped when Selenium, Chromium or chromedriver is missing (``apt-get install chromium
chromium-driver`` and the ``test`` extra give all three); ``AURALIS_CHROME`` and
``AURALIS_CHROMEDRIVER`` point at other binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from auralis_batch.report import write_report

from .test_html_report import synthetic_report

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: The flags of a quiet, reproducible headless browser: nothing leaves the machine.
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def _binaries() -> tuple[str, str]:
    browser = os.environ.get("AURALIS_CHROME") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = os.environ.get("AURALIS_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("no Chromium and chromedriver (apt-get install chromium chromium-driver)")
    return browser, driver


def _start(tmp_path_factory, *, javascript: bool = True):
    browser, driver = _binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    drv = _start(tmp_path_factory)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A page of 12 tracks: failures, skips, hostile names, missing data."""
    data = synthetic_report(12)
    path = tmp_path_factory.mktemp("page") / "report.html"
    write_report(path, data["tracks"], data["summary"])
    return data, path


def errors(drv) -> list[dict]:
    """The console's errors since the last call (CSP violations are errors too)."""
    return [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def load(drv, path, fragment: str = "") -> None:
    drv.get("about:blank")
    drv.get(path.as_uri() + fragment)
    wait(drv, lambda d: d.execute_script("return document.readyState") == "complete")


def wait(drv, condition, timeout: float = 20.0):
    return WebDriverWait(drv, timeout, poll_frequency=0.05).until(condition)


def open_section(drv, section_id: str):
    det = drv.find_element(By.ID, section_id)
    summary = det.find_element(By.TAG_NAME, "summary")
    drv.execute_script("arguments[0].scrollIntoView()", summary)
    summary.click()
    wait(
        drv,
        lambda d: (
            all(
                f.get_attribute("data-ready") == "1"
                for f in det.find_elements(By.CSS_SELECTOR, "figure.plot")
            )
            and det.find_elements(By.CSS_SELECTOR, "figure")
        ),
    )
    return det


def column(drv, header: str) -> list[str]:
    headers = [h.text for h in drv.find_elements(By.CSS_SELECTOR, "#tracks thead th")]
    n = headers.index(header) + 1
    return drv.execute_script(
        f"return Array.from(document.querySelectorAll('#tracks tbody td:nth-child({n})'),"
        " td => td.textContent)"
    )


def test_page_loads_without_errors_or_requests(browser, report):
    _, path = report
    load(browser, path)
    wait(browser, lambda d: d.find_element(By.ID, "overview").get_attribute("data-ready"))
    assert errors(browser) == []
    # nothing fetched: scripts, styles and data are in the page
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert browser.execute_script("return window.__pwned") is None
    assert browser.find_elements(By.CSS_SELECTOR, "#overview canvas")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#tracks tbody tr")) == 12


def test_every_section_draws_its_plots(browser, report):
    data, path = report
    load(browser, path)
    sections = browser.find_elements(By.CSS_SELECTOR, "details.track")
    ok = [n for n, t in enumerate(data["tracks"]) if t["status"] == "ok"]
    assert sorted(int(s.get_attribute("id")[1:]) for s in sections) == ok
    for n in ok:
        det = open_section(browser, f"t{n}")
        plots = det.find_elements(By.CSS_SELECTOR, "figure.plot")
        notes = [f.text for f in det.find_elements(By.CSS_SELECTOR, "figure.nodata")]
        assert len(plots) + len(notes) == 4
        for fig in plots:
            assert fig.find_elements(By.CSS_SELECTOR, "svg.marks"), fig.get_attribute("data-k")
        kv = det.find_elements(By.CSS_SELECTOR, "table.kv td")
        assert float(kv[0].text) == data["tracks"][n]["before"]["integrated_lufs"]
        if "series" in data["tracks"][n]:
            assert len(plots) == 4, notes
        else:
            assert len(plots) == 1 and "Loudness over time: no data" in notes
    assert errors(browser) == []
    assert browser.execute_script("return window.__pwned") is None


def test_the_plots_get_the_json_numbers(browser, report):
    data, path = report
    load(browser, path)
    got = browser.execute_script(
        "const d = JSON.parse(document.getElementById('ab-tracks').textContent).t0;"
        "return [abUnpack(d.short_term_before), abUnpack(d.short_term_after),"
        " abUnpack(d.limiter_gr_db), abUnpack(d.spectrum.master_db)];"
    )
    s = data["tracks"][0]["series"]
    expected = [
        s["short_term_before"],
        s["short_term_after"],
        s["limiter_gr_db"],
        s["spectrum"]["master_db"],
    ]
    assert got == expected


def test_sorting_by_a_column(browser, report):
    _, path = report
    load(browser, path)
    before = [float(v) for v in column(browser, "LUFS before") if v]
    assert column(browser, "status")[:2] == ["failed", "skipped"]  # the page's own order

    def click(header: str) -> None:
        buttons = browser.find_elements(By.CSS_SELECTOR, "#tracks thead th button")
        next(b for b in buttons if b.text == header).click()

    click("LUFS before")
    values = column(browser, "LUFS before")
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(before) and values[-2:] == ["", ""]  # blanks last
    click("LUFS before")
    values = column(browser, "LUFS before")
    assert [float(v) for v in values if v] == sorted(before, reverse=True)
    assert values[-2:] == ["", ""]
    th = browser.find_elements(By.CSS_SELECTOR, "#tracks thead th")[2]
    assert th.get_attribute("aria-sort") == "descending"
    click("status")
    assert column(browser, "status")[:3] == ["failed", "skipped", "ok"]
    click("status")
    assert column(browser, "status")[-2:] == ["skipped", "failed"]
    click("track")
    artists = [n for n in column(browser, "track") if n.startswith("Artist")]
    assert len(artists) == 7 and artists == sorted(artists)
    assert errors(browser) == []


def test_a_link_opens_the_track(browser, report):
    _, path = report
    load(browser, path, "#t8")
    det = browser.find_element(By.ID, "t8")
    assert det.get_attribute("open") is not None
    wait(browser, lambda d: det.find_elements(By.CSS_SELECTOR, "figure[data-ready] svg"))
    link = browser.find_element(By.CSS_SELECTOR, '#tracks a[href="#t9"]')
    browser.execute_script("arguments[0].scrollIntoView()", link)
    link.click()
    wait(browser, lambda d: d.find_element(By.ID, "t9").get_attribute("open") is not None)
    assert errors(browser) == []


def test_without_javascript_the_tables_are_all_there(tmp_path_factory, report):
    data, path = report
    drv = _start(tmp_path_factory, javascript=False)
    try:
        load(drv, path)
        rows = drv.find_elements(By.CSS_SELECTOR, "#tracks tbody tr")
        assert len(rows) == 12
        assert "The plots need JavaScript" in drv.find_element(By.TAG_NAME, "body").text
        det = drv.find_element(By.ID, "t0")
        det.find_element(By.TAG_NAME, "summary").click()
        cells = det.find_elements(By.CSS_SELECTOR, "table.kv td")
        after = data["tracks"][0]["after"]["integrated_lufs"]
        assert float(cells[1].text) == after
        assert not drv.find_elements(By.CSS_SELECTOR, "svg")
    finally:
        drv.quit()


@pytest.mark.slow
def test_a_2000_track_report_opens_in_under_2_s(browser, tmp_path):
    """navigationStart to the load event (the table parsed, laid out and painted) and to
    the first paint; the best of three loads, so other work on the machine counts less."""
    data = synthetic_report(2000, seed=3)
    path = tmp_path / "big.html"
    t0 = time.perf_counter()
    write_report(path, data["tracks"], data["summary"])
    render_s = time.perf_counter() - t0
    timings = []
    for _ in range(3):
        load(browser, path)
        wait(browser, lambda d: d.execute_script("return window.abOverviewDrawnMs"))
        timings.append(
            browser.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "const p = performance.getEntriesByName('first-contentful-paint')[0];"
                "return [n.loadEventEnd, p ? p.startTime : null, window.abOverviewDrawnMs];"
            )
        )
    load_ms, paint_ms, _ = min(timings)
    size = path.stat().st_size
    print(
        f"\n2000 tracks: {size / 1e6:.1f} MB, rendered in {render_s:.2f} s; "
        f"load {json.dumps(timings)} ms (load, first contentful paint, library plot)"
    )
    assert errors(browser) == []
    assert paint_ms is not None and paint_ms < load_ms
    assert load_ms < 2000
    det = open_section(browser, "t1999")
    assert len(det.find_elements(By.CSS_SELECTOR, "figure svg.marks")) == 4


def test_the_eq_axis_holds_a_deep_cut(browser, tmp_path):
    """A matching EQ cuts a band by up to 30 dB: the axis stopped at -18 dB and drew the
    cut as a flat line along its floor (a newcomer's)."""
    data = synthetic_report(12)
    bands = data["tracks"][0]["parameters"]["eq"]["bands"]
    next(b for b in bands if b["name"] == "mid")["gain_db"] = -30.0
    path = tmp_path / "report.html"
    write_report(path, data["tracks"], data["summary"])
    load(browser, path)
    det = open_section(browser, "t0")
    fig = next(f for f in det.find_elements(By.CSS_SELECTOR, "figure.plot") if "EQ" in f.text)
    labels = browser.execute_script(
        "return Array.from(arguments[0].querySelectorAll('.role-axis-label text'),"
        " t => t.textContent)",
        fig,
    )
    values = []
    for text in labels:
        try:
            values.append(float(text.replace("\u2212", "-").replace(",", "")))
        except ValueError:
            continue  # the frequency axis's "1k" and such
    assert min(values) <= -30, labels
    assert errors(browser) == []
