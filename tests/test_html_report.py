"""The HTML report without a browser: every number equals the JSON's, strings are
escaped, the page is self-contained, bad reports are refused, missing data degrades."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import random
import re
import time
from html.parser import HTMLParser

import numpy as np
import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from auralis_batch import html_report as hr
from auralis_batch.cli_report import report as report_command
from auralis_batch.report import REPORT_SUFFIXES, read_report, write_report

runner = CliRunner()


def third_octaves() -> list[float]:
    """The spectrum's band centres as the engine writes them."""
    from auralis_batch.match import THIRD_OCTAVE_HZ

    return [round(float(f), 1) for f in THIRD_OCTAVE_HZ]


FREQS_HZ = third_octaves()


def gentle() -> dict:
    """The ``parameters`` of a record: the gentle preset as the engine writes it."""
    from auralis_batch.presets import load_preset

    return load_preset("gentle").to_dict()


def loudness(rng: random.Random, integrated: float) -> dict:
    peak = round(integrated + rng.uniform(8, 16), 2)
    return {
        "integrated_lufs": integrated,
        "true_peak_dbtp": peak,
        "lra_lu": round(rng.uniform(2, 14), 2),
        "sample_peak_dbfs": round(peak - rng.uniform(0, 0.5), 2),
        "max_momentary_lufs": round(integrated + rng.uniform(2, 6), 2),
        "max_short_term_lufs": round(integrated + rng.uniform(1, 4), 2),
    }


def shift(value: float | None, db: float) -> float | None:
    return None if value is None else round(value + db, 1)


def series(rng: random.Random, before: float, after: float, points: int = 200, ref=True):
    """A series in the engine's schema: 0.1 dB steps, silence (null) at the start."""
    st_b, st_a, level = [], [], before
    for k in range(points):
        level += rng.gauss(0, 0.5)
        silent = k < 2 or rng.random() < 0.02
        st_b.append(None if silent else round(level, 1))
        st_a.append(None if silent else round(level - before + after + rng.gauss(0, 0.3), 1))
    src = [round(-22 - 3 * math.log2(f / 31.5) + rng.gauss(0, 1), 1) for f in FREQS_HZ]
    src[-1] = None  # a band above the source's Nyquist frequency
    spectrum = {
        "freqs_hz": FREQS_HZ,
        "source_db": src,
        "master_db": [shift(v, after - before + rng.gauss(0, 0.5)) for v in src],
    }
    if ref:
        spectrum["reference_db"] = [shift(v, after - before + 1.5) for v in src]
    return {
        "hop_s": 1.2,
        "short_term_before": st_b,
        "short_term_after": st_a,
        "compressor_gr_db": [round(max(0.0, rng.gauss(1.0, 0.8)), 1) for _ in range(points)],
        "limiter_gr_db": [round(max(0.0, rng.gauss(0.0, 0.6)), 1) for _ in range(points)],
        "spectrum": spectrum,
    }


def ok_record(i: int, rng: random.Random, *, points: int = 200, name: str | None = None):
    """An ``ok`` record shaped like the engine's (``--report FILE.json``)."""
    before = round(rng.uniform(-28.0, -8.0), 2)
    after = round(-14.0 + rng.gauss(0, 0.1), 2)
    path = name or f"/music/Artist {i // 10:02d}/Album/{i % 10 + 1:02d} Song {i}.flac"
    return {
        "input": path,
        "output": path.replace("/music/", "/mastered/"),
        "status": "ok",
        "error": None,
        "preset": "gentle",
        "duration_s": round(rng.uniform(120, 400), 3),
        "sample_rate": 44100,
        "channels": 2,
        "before": loudness(rng, before),
        "after": loudness(rng, after),
        "render": {
            "target_lufs": -14.0,
            "ceiling_dbtp": -1.0,
            "gain_db": round(after - before, 2),
            "compressor_threshold_db": round(-10 - (after - before), 2),
            "limiter_max_gain_reduction_db": round(rng.uniform(0, 4), 2),
            "target_reached": True,
            "render_passes": 2,
            "notes": [],
        },
        "parameters": gentle(),
        "tempo_bpm": round(rng.uniform(60, 180), 2),
        "tempo_confidence": round(rng.random(), 3),
        "fingerprint_cached": False,
        "analysis_seconds": round(rng.uniform(0.1, 0.5), 4),
        "seconds": round(rng.uniform(0.5, 3.0), 4),
        "series": series(rng, before, after, points),
    }


NASTY_NAMES = (
    "/music/x/<script>window.__pwned=1</script>.flac",
    "/music/x/\"'><img src=x onerror=window.__pwned=1>.flac",
    "/music/x/</noscript><script>window.__pwned=1</script>.flac",
    "/music/x/&amp; ü \u2028 line.flac",
)


def synthetic_report(n: int, *, seed: int = 0, points: int = 200) -> dict:
    """``n`` tracks: ``ok`` ones with every plot's data, a failure, a skip, a track
    without ``series``, one with part of it, and names that try to inject markup."""
    rng = random.Random(seed)
    tracks = [ok_record(i, rng, points=points) for i in range(n)]
    if n >= 8:
        tracks[1] = {"input": "/music/bad/corrupt.flac", "status": "failed",
                     "error": "corrupt FLAC stream <b>", "seconds": 0.0123}  # fmt: skip
        tracks[2] = {"input": NASTY_NAMES[0], "status": "skipped", "error": "not audio",
                     "seconds": 0.0}  # fmt: skip
        tracks[3] = ok_record(3, rng, name=NASTY_NAMES[1])
        tracks[4] = ok_record(4, rng, name=NASTY_NAMES[2])
        tracks[5] = ok_record(5, rng, name=NASTY_NAMES[3])
        del tracks[6]["series"]  # a report written before the engine had series
        del tracks[7]["series"]["limiter_gr_db"]
        del tracks[7]["series"]["spectrum"]["reference_db"]
        tracks[7]["render"]["target_reached"] = False
        tracks[7]["warning"] = "target not reached: 1.2 LU of peak limiting would be needed"
    return {"tracks": tracks, "summary": _summary(tracks)}


def _summary(tracks: list[dict]) -> dict:
    from auralis_batch.records import summarize

    return summarize(tracks)


# --------------------------------------------------------------------------- parsing


class PageParser(HTMLParser):
    """Rows of the library table, the per-track before/after tables, scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self.kv: dict[str, list[list[str]]] = {}  # section id -> rows of the kv table
        self.scripts: list[tuple[dict, str]] = []
        self.tags: list[tuple[str, dict]] = []
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_tracks = False
        self._in_kv = False
        self._section: str | None = None
        self._script: tuple[dict, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table" and a.get("id") == "tracks":
            self._in_tracks = True
        if tag == "table" and a.get("class") == "kv":
            self._in_kv = True
            self.kv[self._section] = []
        if tag == "details":
            self._section = a.get("id")
        if tag == "tr" and (self._in_tracks or self._in_kv):
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag == "script":
            self._script = (a, [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        if tag == "tr" and self._row is not None:
            if self._in_tracks and not self.headers:
                self.headers = self._row
            elif self._in_tracks:
                self.rows.append(self._row)
            elif self._in_kv:
                self.kv[self._section].append(self._row)
            self._row = None
        if tag == "table":
            self._in_tracks = self._in_kv = False
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._script is not None:
            self._script[1].append(data)


def parse(page: str) -> PageParser:
    p = PageParser()
    p.feed(page)
    p.close()
    return p


def json_script(parsed: PageParser, element_id: str):
    return json.loads(next(text for a, text in parsed.scripts if a.get("id") == element_id))


def render(report: dict, tmp_path, name="r.html") -> tuple[str, PageParser]:
    out = tmp_path / name
    write_report(out, report["tracks"], report["summary"])
    page = out.read_text(encoding="utf-8")
    return page, parse(page)


# --------------------------------------------------------------------------- numbers


@given(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.integers(min_value=0, max_value=6),
    st.integers(min_value=0, max_value=4),
)
def test_format_number_gives_back_the_json_number_with_at_least_its_decimals(m, k, decimals):
    value = m / 10**k  # a number as the engine writes it: rounded to k decimals
    text = hr.format_number(value, decimals)
    assert float(text) == value
    assert len(text.partition(".")[2]) >= decimals
    assert float(hr.format_number(value, decimals, sign=True)) == value


@pytest.mark.parametrize(
    ("value", "decimals", "sign", "expected"),
    [
        (-14.0, 2, False, "-14.00"),
        (-19.99, 2, False, "-19.99"),
        (0.8156, 2, False, "0.8156"),
        (7.2, 2, True, "+7.20"),
        (-0.5, 1, True, "-0.5"),
        (3, 2, False, "3"),
        (0.1 + 0.2, 2, False, "0.30000000000000004"),
    ],
)
def test_format_number_cases(value, decimals, sign, expected):
    assert hr.format_number(value, decimals, sign=sign) == expected


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(-(10**6), 10**6).map(lambda i: i / 10),
            st.floats(-1e6, 1e6, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_packed_series_give_back_every_value_exactly(values):
    packed = hr.pack_series(values)
    got = hr.unpack_series(json.loads(json.dumps(packed)))
    assert len(got) == len(values)
    for g, v in zip(got, values, strict=True):
        assert (g is None and v is None) or g == v


def test_a_series_of_tenths_packs_to_small_integers():
    packed = hr.pack_series([None, -14.2, -14.0, -13.7, None, -13.9])
    assert packed == {"s": 10, "d": [None, -142, 2, 3, None, -2]}


def test_every_number_on_the_page_is_the_json_number(tmp_path):
    report = synthetic_report(12)
    _, parsed = render(report, tmp_path)
    by_input = {t["input"]: t for t in report["tracks"]}
    common = "/music/"
    columns = {h: n for n, h in enumerate(parsed.headers)}
    assert len(parsed.rows) == len(report["tracks"])
    checked = 0
    for row in parsed.rows:
        track = by_input[common + row[columns["track"]]]
        assert row[columns["status"]] == track["status"]
        for header, _, key, _, _ in hr._COLUMNS:
            if header in ("status", "track", "error / warning"):
                continue
            expected = hr._get(track, key)
            text = row[columns[header]]
            if key == "seconds" and track["status"] not in ("ok", "failed", "interrupted"):
                expected = None  # nothing was timed: blank (checked below too)
            if expected is None:
                assert text == ""
            else:
                assert float(text) == expected, (header, text, expected)
                checked += 1
    assert checked > 100
    # the before/after tables of every mastered track
    for n, track in enumerate(report["tracks"]):
        if track["status"] != "ok":
            continue
        rows = parsed.kv[f"t{n}"][1:]
        for row, key in zip(rows, hr.LOUDNESS_KEYS, strict=True):
            assert float(row[1]) == track["before"][key]
            assert float(row[2]) == track["after"][key]
    # the plots' data is the series, value for value
    data = json_script(parsed, "ab-tracks")
    page_data = json_script(parsed, "ab-page")
    for n, track in enumerate(report["tracks"]):
        if track["status"] != "ok" or "series" not in track:
            continue
        d, s = data[f"t{n}"], track["series"]
        assert d["hop"] == s["hop_s"] and d["target"] == track["render"]["target_lufs"]
        for key in ("short_term_before", "short_term_after", "compressor_gr_db"):
            assert hr.unpack_series(d[key]) == s[key]
        for key, values in s["spectrum"].items():
            if key != "freqs_hz":
                assert hr.unpack_series(d["spectrum"][key]) == values
        assert page_data["spec_hz"] == s["spectrum"]["freqs_hz"]
    overview = {row[0]: row for row in page_data["overview"]}
    for n, track in enumerate(report["tracks"]):
        if track["status"] == "ok":
            _, _, b, a, t = overview[n]
            assert (b, a, t) == (
                track["before"]["integrated_lufs"],
                track["after"]["integrated_lufs"],
                track["render"]["target_lufs"],
            )


def test_failures_and_skips_lead_the_table_and_the_summary_counts(tmp_path):
    report = synthetic_report(12)
    page, parsed = render(report, tmp_path)
    statuses = [row[0] for row in parsed.rows]
    assert statuses[:2] == ["failed", "skipped"] and set(statuses[2:]) == {"ok"}
    assert "Needs a look" in page
    assert "corrupt FLAC stream &lt;b&gt;" in page
    assert "target not reached: 1.2 LU" in page
    assert "<b>10</b> ok" in page and "<b>1</b> failed" in page and "<b>1</b> skipped" in page
    assert "the run took" not in page  # a report of an earlier version: no wall time
    time_col = [h for h, *_ in hr._COLUMNS].index("time s")
    # a skip was not timed: its time is blank, not 0.0000
    assert [row[time_col] for row in parsed.rows if row[0] == "skipped"] == [""]
    assert all(row[time_col] for row in parsed.rows if row[0] in ("ok", "failed"))
    report["summary"]["wall_seconds"] = 12.5
    page, _ = render(report, tmp_path)
    assert "the run took 12.500 s" in page and "analysing the reference" not in page
    report["summary"]["reference_seconds"] = 1.25
    page, _ = render(report, tmp_path)
    assert "after 1.250 s analysing the reference" in page
    # an error that names its file, as most do, shows the name once (beside it)
    report["tracks"][1]["error"] = "/music/bad/corrupt.flac: truncated: 3 s of 200"
    page, _ = render(report, tmp_path)
    assert "truncated: 3 s of 200" in page and "corrupt.flac: truncated" not in page


# --------------------------------------------------------------------------- safety


def test_names_are_escaped_everywhere(tmp_path):
    report = synthetic_report(12)
    page, parsed = render(report, tmp_path)
    for name in NASTY_NAMES:
        assert name not in page
    assert "window.__pwned" in page  # the names are there, as text
    assert not any(tag == "img" for tag, _ in parsed.tags)
    scripts = [a for tag, a in parsed.tags if tag == "script"]
    assert len(scripts) == len(hr.SCRIPT_ASSETS) + 2  # ours, and the two data blocks
    # in the data blocks no character can end the script element
    for a, text in parsed.scripts:
        if a.get("type") == "application/json":
            assert not set(text) & {"<", ">", "&"}
    names = {row[1] for row in parsed.rows}
    assert "x/<script>window.__pwned=1</script>.flac" in names  # unescaped by the parser


def test_the_page_is_self_contained_and_its_policy_allows_only_its_scripts(tmp_path):
    _, parsed = render(synthetic_report(12), tmp_path)
    for tag, attrs in parsed.tags:
        assert "src" not in attrs, tag
        assert tag != "link"
        href = attrs.get("href", "#")
        assert href.startswith("#"), href
    csp = next(
        a["content"] for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp and "unsafe-eval" not in csp
    allowed = set(re.findall(r"'sha256-([^']+)'", csp))
    code = [text for a, text in parsed.scripts if "type" not in a]
    assert len(code) == len(hr.SCRIPT_ASSETS)
    for text in code:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert digest in allowed


def test_vendored_scripts_ship_with_their_licences():
    from importlib import resources

    assets = resources.files("auralis_batch") / "assets"
    for name in ("vega", "vega-lite", "vega-embed"):
        licence = (assets / f"{name}.LICENSE").read_text(encoding="utf-8")
        assert f"npm package {name}@" in licence and "Redistribution" in licence
        assert (assets / f"{name}.min.js").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- degrading


def figures(page: str, section: str) -> list[str]:
    body = re.search(rf'<details class="track" id="{section}">(.*?)</details>', page, re.S)
    return re.findall(r"<figure ([^>]*)>([^<]*)</figure>", body.group(1))


def test_missing_series_or_keys_give_a_note_not_a_plot(tmp_path):
    report = synthetic_report(12)
    page, parsed = render(report, tmp_path)
    data = json_script(parsed, "ab-tracks")
    # no series at all: only the EQ curve (from the parameters)
    figs = figures(page, "t6")
    assert [a for a, _ in figs].count('class="plot" data-k="eq"') == 1
    notes = [text for a, text in figs if "nodata" in a]
    assert notes == [
        "Loudness over time: no data",
        "Gain reduction: no data",
        "Long-term spectrum: no data",
    ]
    assert set(data["t6"]) == {"target", "eq"}
    # part of it: the plots of what is there
    assert all("nodata" not in a for a, _ in figures(page, "t7"))
    assert "limiter_gr_db" not in data["t7"] and "reference_db" not in data["t7"]["spectrum"]
    assert "reference_db" in data["t0"]["spectrum"]


def test_a_record_without_parameters_has_no_eq_curve(tmp_path):
    report = synthetic_report(3)
    del report["tracks"][0]["parameters"]
    page, _ = render(report, tmp_path)
    assert "EQ curve: no data" in figures(page, "t0")[-1][1]


def test_run_time_records_with_wrong_values_render_what_is_valid(tmp_path):
    report = synthetic_report(3)
    t = report["tracks"]
    t[0]["before"]["integrated_lufs"] = "loud"
    t[0]["series"]["short_term_after"] = [1.0, "x"]
    t[1]["series"] = [1, 2, 3]
    t[2]["render"] = None
    _, parsed = render(report, tmp_path)
    data = json_script(parsed, "ab-tracks")
    assert "short_term_after" not in data["t0"] and "short_term_before" in data["t0"]
    assert set(data["t1"]) == {"target", "eq"}
    assert "target" not in data["t2"]
    assert parsed.rows[0][2] == ""  # the LUFS before of track 0


# --------------------------------------------------------------------------- checks


PROBLEMS = [
    (lambda t: t.update(status="great"), "tracks[0].status: must be one of ok, failed"),
    (lambda t: t.pop("input"), "tracks[0].input: must be a string"),
    (lambda t: t["before"].update(lra_lu="wide"), "tracks[0].before.lra_lu: must be a number"),
    (lambda t: t["before"].update(lra_lu=True), "tracks[0].before.lra_lu: must be a number"),
    (lambda t: t["after"].update(true_peak_dbtp=1e300), "tracks[0].after.true_peak_dbtp"),
    (lambda t: t.update(render=[]), "tracks[0].render: must be an object"),
    (lambda t: t["render"].update(target_reached="yes"), "render.target_reached: must be true"),
    (lambda t: t["render"].update(notes="x"), "tracks[0].render.notes: must be a list of str"),
    (lambda t: t.update(sample_rate=44100.5), "tracks[0].sample_rate: must be an integer"),
    (lambda t: t["parameters"]["eq"]["bands"][0].update(kind="notch"), "bands[0].kind: must be"),
    (lambda t: t["parameters"]["eq"]["bands"][1].update(q=0), "bands[1].q: must be a number"),
    (lambda t: t["parameters"]["eq"].update(bands={}), "tracks[0].parameters.eq.bands"),
    (lambda t: t["series"].update(hop_s=-1), "tracks[0].series.hop_s: must be a number"),
    (lambda t: t["series"].update(short_term_before=[0.0] * 5000), "at most 2000 numbers"),
    (
        lambda t: t["series"].update(compressor_gr_db=[0.0, "x", "y", "z"]),
        'series.compressor_gr_db[1]: must be a number from -1e+09 to 1e+09, got "x" (and more',
    ),
    (lambda t: t["series"]["spectrum"]["master_db"].pop(), "master_db: must be a list of 31"),
    (lambda t: t["series"]["spectrum"].update(freqs_hz=[0.0] * 31), "freqs_hz: must be a list"),
    (lambda t: t.update(error=5), "tracks[0].error: must be a string, got 5"),
    (lambda t: t.pop("after"), "tracks[0].after: must be the measurements of what an ok"),
]


def test_a_recovered_track_without_measurements_is_sound():
    """A track recovered from its commit note whose measurements could not ride along
    (NaN, too long) is ok without 'after': the report this tool wrote is not refused."""
    report = synthetic_report(1)
    report["tracks"][0].pop("after")
    report["tracks"][0]["recovered"] = True
    assert hr.clean_records(report["tracks"], report["summary"])[2] == []


def test_a_summary_that_contradicts_its_tracks_is_a_problem():
    """A second trust sweep's hand-edited summary (ok: 99 of 7 tracks) reached the page."""
    report = synthetic_report(3)
    report["summary"]["ok"] = 99
    _, _, problems = hr.clean_records(report["tracks"], report["summary"])
    assert problems == ["summary.ok: must be 3, the count of the report's tracks, got 99"]


@pytest.mark.parametrize(("spoil", "expected"), PROBLEMS)
def test_problems_name_the_field_and_the_value(spoil, expected):
    report = synthetic_report(1)
    spoil(report["tracks"][0])
    _, _, problems = hr.clean_records(report["tracks"], report["summary"])
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_a_sound_report_has_no_problems():
    report = synthetic_report(12)
    tracks, summary, problems = hr.clean_records(report["tracks"], report["summary"])
    assert problems == [] and len(tracks) == 12 and summary["ok"] == 10


# --------------------------------------------------------------------------- EQ curve


def test_eq_curve_is_the_response_of_design_eq():
    from scipy.signal import sosfreqz

    from auralis_batch.eq import design_eq
    from auralis_batch.presets import load_preset

    for name in ("gentle", "warm", "bright", "punchy"):
        preset = load_preset(name)
        for sr in (44100, 48000, 96000):
            got = hr.eq_response_db(preset.to_dict()["eq"], sr)
            _, h = sosfreqz(design_eq(preset.eq, sr), worN=np.asarray(hr.EQ_CURVE_HZ), fs=sr)
            expected = np.round(20 * np.log10(np.abs(h)), 2)
            np.testing.assert_allclose(got, expected, atol=0.011)


def test_eq_curve_physics():
    band = {"name": "p", "kind": "peaking", "frequency_hz": 1000.0, "gain_db": 6.0, "q": 1.0}
    peak = {"highpass_hz": 0.0, "bands": [band]}
    got = np.asarray(hr.eq_response_db(peak, 48000))
    f = np.asarray(hr.EQ_CURVE_HZ)
    assert abs(got[np.argmin(abs(f - 1000))] - 6.0) < 0.1  # the boost at its centre
    assert abs(got[0]) < 0.05 and abs(got[-1]) < 0.2  # flat far from it
    flat = {"highpass_hz": 0.0, "bands": [dict(band, gain_db=0.0)]}
    assert set(hr.eq_response_db(flat, 48000)) == {0.0}
    low_rate = hr.eq_response_db(peak, 16000)  # no curve above Nyquist
    assert all((v is None) == (fi >= 8000) for v, fi in zip(low_rate, f, strict=True))


def test_tracks_with_one_preset_share_one_curve(tmp_path):
    _, parsed = render(synthetic_report(12), tmp_path)
    assert len(json_script(parsed, "ab-page")["eq"]) == 1


# --------------------------------------------------------------------------- size, CLI


def test_a_track_adds_a_few_kilobytes():
    small = hr.render_html(**_as_args(synthetic_report(50, seed=1)))
    large = hr.render_html(**_as_args(synthetic_report(250, seed=1)))
    per_track = (len(large.encode()) - len(small.encode())) / 200
    assert per_track < 5000, per_track  # 200-point series, the engine's upper bound


def _as_args(report: dict) -> dict:
    return {"records": report["tracks"], "summary": report["summary"]}


@pytest.fixture
def report_app():
    """The CLI with ``report`` registered (as cli.py does)."""
    from auralis_batch.cli import app

    if any(c.name == "report" for c in app.registered_commands):
        return app
    local = typer.Typer()

    @local.callback()
    def _root() -> None:
        """auralis-batch"""

    local.command("report")(report_command)
    return local


def test_report_command_renders_a_json_report(tmp_path, report_app):
    report = synthetic_report(12)
    src = tmp_path / "run.json"
    src.write_text(json.dumps(report), encoding="utf-8")
    res = runner.invoke(report_app, ["report", str(src), "--html", str(tmp_path / "run.html")])
    assert res.exit_code == 0, res.output
    assert "12 tracks" in res.output
    page = (tmp_path / "run.html").read_text(encoding="utf-8")
    assert "auralis-batch report: run.json" in page
    res = runner.invoke(report_app, ["report", str(src)])  # default: beside the JSON
    assert res.exit_code == 0 and (tmp_path / "run.html").exists()


def _invoke(report_app, tmp_path, text: str | bytes, *extra: str):
    src = tmp_path / "bad.json"
    src.write_bytes(text if isinstance(text, bytes) else text.encode())
    return runner.invoke(report_app, ["report", str(src), *extra])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not a JSON report"),
        ('{"tracks": [], "summary": {"seconds": NaN}}', "NaN is not a JSON number"),
        ("[]", "got a JSON list"),
        ('{"records": []}', "got an object with keys records"),
        ("{}", "got an empty object"),
        ('{"tracks": {}, "summary": {}}', 'got "tracks" as a JSON dict, not a list'),
        (b"\xff\xfe", "not a JSON report"),
        ("[" * 100000 + "]" * 100000, "not a JSON report"),
        ('{"tracks": [3]}', "tracks[0]: must be an object"),
        ('{"tracks": [{"input": "a", "status": "ok", "seconds": -1}]}', "tracks[0].seconds"),
    ],
)
def test_report_command_refuses_a_bad_report_with_exit_2(tmp_path, report_app, text, message):
    res = _invoke(report_app, tmp_path, text)
    assert res.exit_code == 2
    assert message in res.output and "[error]" in res.output
    assert not (tmp_path / "bad.html").exists()


def test_report_command_lists_problems_then_counts_the_rest(tmp_path, report_app):
    tracks = [{"input": f"t{i}", "status": "lost"} for i in range(30)]
    res = _invoke(report_app, tmp_path, json.dumps({"tracks": tracks}))
    assert res.exit_code == 2
    assert res.output.count("[error]") == 21 and "and 10 more problems" in res.output


def test_report_command_output_problems_exit_2(tmp_path, report_app):
    src = tmp_path / "r.json"
    src.write_text(json.dumps(synthetic_report(2)))
    res = runner.invoke(report_app, ["report", str(src), "--html", str(src)])
    assert res.exit_code == 2 and "is the report itself" in res.output
    page = tmp_path / "r.html"  # a page given as the report: no --html to blame
    page.write_text("{}")
    res = runner.invoke(report_app, ["report", str(page)])
    assert res.exit_code == 2 and "the page would go over it; give --html" in res.output
    # a folder that is not there is made, as master --report makes one (a newcomer's)
    res = runner.invoke(report_app, ["report", str(src), "--html", str(tmp_path / "no/r.html")])
    assert res.exit_code == 0 and (tmp_path / "no" / "r.html").exists(), res.output
    res = runner.invoke(report_app, ["report", str(src), "--html", str(tmp_path / "no")])
    assert res.exit_code == 2 and "is a folder; give a file name" in res.output
    # ... once the report is found sound: a refused one leaves no folder (a review)
    missing = tmp_path / "missing.json"
    res = runner.invoke(report_app, ["report", str(missing), "--html", str(tmp_path / "n2/r.html")])
    assert res.exit_code == 2 and not (tmp_path / "n2").exists()
    (tmp_path / "file").write_text("x")
    res = runner.invoke(report_app, ["report", str(src), "--html", str(tmp_path / "file/a/r.html")])
    assert res.exit_code == 2 and "cannot be made" in res.output
    res = runner.invoke(report_app, ["report", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "cannot read it" in res.output
    res = runner.invoke(report_app, ["report", str(src), "--html", str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and "a page is HTML: name it p.html" in res.output  # sweep 4
    assert not (tmp_path / "p.csv").exists()


def test_report_command_never_replaces_a_file_it_did_not_write(tmp_path, report_app):
    src = tmp_path / "r.json"
    src.write_text(json.dumps(synthetic_report(2)))
    mine = tmp_path / "r.html"
    mine.write_text("<html>my page</html>")
    res = runner.invoke(report_app, ["report", str(src)])
    assert res.exit_code == 2 and "not an auralis-batch page is there" in res.output
    assert mine.read_text() == "<html>my page</html>"
    mine.unlink()
    mine.symlink_to(tmp_path / "elsewhere.html")  # a link is not replaced either
    res = runner.invoke(report_app, ["report", str(src)])
    assert res.exit_code == 2 and "is a symbolic link" in res.output
    mine.unlink()
    for _ in range(2):  # its own page it replaces
        assert runner.invoke(report_app, ["report", str(src)]).exit_code == 0
    assert not (tmp_path / "elsewhere.html").exists()
    # a report of another kind is not a page to replace (a second sweep's finding:
    # report A.json --html B.json turned B.json, another run's report, into a page)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(synthetic_report(3)))
    res = runner.invoke(report_app, ["report", str(src), "--html", str(other)])
    assert res.exit_code == 2 and json.loads(other.read_text())["summary"]
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_read_report_refuses_what_is_not_a_regular_file(tmp_path):
    import os

    from auralis_batch.report import ReportError

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ReportError, match="not a regular file"):
        read_report(fifo)


def test_html_is_a_report_suffix_and_a_run_writes_it(tmp_path, write_audio):
    """``master --report r.html --report r.json``: the page's numbers are the JSON's."""
    from auralis_batch.cli import app

    from .conftest import music_like

    assert ".html" in REPORT_SUFFIXES
    src = write_audio("lib/a.flac", music_like(seconds=3.0))
    js, page = tmp_path / "r.json", tmp_path / "r.html"
    args = ["master", str(src), "--out", str(tmp_path / "o"), "-q", "-j", "1", "--no-cache"]
    res = runner.invoke(app, [*args, "--report", str(page), "--report", str(js)])
    assert res.exit_code == 0, res.output
    track = json.loads(js.read_text())["tracks"][0]
    parsed = parse(page.read_text(encoding="utf-8"))
    row = parsed.rows[0]
    assert float(row[2]) == track["before"]["integrated_lufs"]
    assert float(row[3]) == track["after"]["integrated_lufs"]
    assert float(row[9]) == track["render"]["gain_db"]


def test_a_tempo_that_was_not_estimated_is_not_shown_as_one(tmp_path):
    report = synthetic_report(2)
    estimated, default = report["tracks"][0], report["tracks"][1]
    default["tempo_bpm"], default["tempo_confidence"] = 120.0, 0.0  # a tempo = false run
    page, parsed = render(report, tmp_path)
    columns = {h: n for n, h in enumerate(parsed.headers)}

    def bpm_cell(track: dict) -> str:
        (row,) = [r for r in parsed.rows if track["input"].endswith(r[columns["track"]])]
        return row[columns["BPM"]]

    assert bpm_cell(default) == ""
    assert float(bpm_cell(estimated)) == estimated["tempo_bpm"]
    assert "not estimated" in page


def test_the_csv_a_run_writes_is_one_a_later_run_may_replace(tmp_path):
    from auralis_batch.report import _CSV_START, CSV_COLUMNS, is_report_of_ours

    assert ",".join(CSV_COLUMNS).startswith(_CSV_START)
    for name in ("r.csv", "r.json", "r.html"):
        write_report(tmp_path / name, synthetic_report(2)["tracks"], synthetic_report(2)["summary"])
        assert is_report_of_ours(tmp_path / name)
        others = {"csv", "json", "html"} - {name.rsplit(".", 1)[1]}
        assert not any(is_report_of_ours(tmp_path / name, kind) for kind in others)


def test_a_report_temporary_left_by_a_killed_run_goes_with_the_next_write(tmp_path):
    """What a run killed mid-write left beside its report (a hidden ``.NAME.XXXXXXXX
    .partial`` that starts as a report of ours and is old) is removed by the next
    write of that report; a fresh one (a writer still at work) and a user's file of
    the same shape are left alone."""
    from auralis_batch.report import STALE_TEMPORARY_S

    report = synthetic_report(2)
    old = time.time() - STALE_TEMPORARY_S - 60
    for name in ("r.json", "r.csv", "r.html"):
        path = tmp_path / name
        write_report(path, report["tracks"], report["summary"])
        text = path.read_text()
        cut = tmp_path / f".{name}.abcd1234.partial"  # a kill mid-write: the first half
        cut.write_text(text[: len(text) // 2])
        os.utime(cut, (old, old))
        fresh = tmp_path / f".{name}.efgh5678.partial"
        fresh.write_text(text[: len(text) // 2])
        users = tmp_path / f".{name}.notes123.partial"
        users.write_text("my notes\n")
        os.utime(users, (old, old))
        write_report(path, report["tracks"], report["summary"])
        assert not cut.exists(), name
        assert fresh.exists() and users.exists(), name


def test_a_report_that_is_not_json_names_the_file_to_give(tmp_path, report_app):
    """`report run.html` (the page, not the run's JSON) says which file to give."""
    page = tmp_path / "run.html"
    page.write_text("<!doctype html>", encoding="utf-8")
    res = runner.invoke(report_app, ["report", str(page), "--html", str(tmp_path / "x.html")])
    assert res.exit_code == 2
    assert "not a JSON report" in res.output and "--report FILE.json" in res.output


def test_the_preset_line_shows_a_band_as_an_eq_display_does():
    """A reference match's third-octave centres printed with every digit of the
    float ("peaking 31.622776601683793 Hz", a newcomer's try)."""
    from auralis_batch.html_report import _chain_line

    eq = {
        "highpass_hz": 20.0,
        "bands": [
            {"kind": "peaking", "frequency_hz": 31.622776601683793, "gain_db": 2.345, "q": 4.32},
            {"kind": "high_shelf", "frequency_hz": 12589.2541179, "gain_db": -1.0, "q": 0.7071},
            {"kind": "peaking", "frequency_hz": 40.0, "gain_db": 0.04, "q": 1.0},
            {"kind": "peaking", "frequency_hz": 100.0, "gain_db": -0.04, "q": 0.5},
        ],
    }
    line = _chain_line({"eq": eq})
    assert "peaking 31.6 Hz +2.3 dB Q 4.32" in line
    assert "high_shelf 12589 Hz -1.0 dB Q 0.707" in line
    assert "peaking 40 Hz +0.0 dB Q 1" in line
    assert "peaking 100 Hz +0.0 dB Q 0.5" in line  # not "-0.0"


def test_files_that_were_never_audio_go_to_the_end_and_need_no_look(tmp_path):
    """A library's cover art, playlists and rip logs led the table and the list of
    what needs a look (a newcomer's try): they are listed last, and only a skip of
    a track counts there."""
    from auralis_batch.records import NOT_AUDIO_REASON

    report = synthetic_report(12)  # a failure, a skip ("not audio"), ok ones
    cover = {
        "input": "/music/a/cover.jpg",
        "status": "skipped",
        "error": f"{NOT_AUDIO_REASON} (by extension)",
        "seconds": 0.0,
    }
    report["tracks"].insert(0, cover)
    report["summary"]["skipped"] += 1
    report["summary"]["tracks"] += 1
    page, parsed = render(report, tmp_path)
    statuses = [row[0] for row in parsed.rows]
    assert statuses[:2] == ["failed", "skipped"] and statuses[-1] == "skipped"
    assert "<li>1 skipped, at the top of the table" in page
    report["tracks"] = [t for t in report["tracks"] if t["status"] != "skipped"] + [cover]
    report["summary"]["skipped"] = 1
    page, _ = render(report, tmp_path)
    assert "skipped, at the top of the table" not in page


@pytest.mark.parametrize(
    "reason",
    [
        "already mastered with these settings (journal)",
        "folder already read by another path, /music/Album",
        "the same file as /music/Album/01.flac (reached by another path); mastered once, as that",
    ],
)
def test_routine_skips_need_no_look(tmp_path, reason):
    """A re-run's finished tracks and a library's deliberate links were counted under
    "Needs a look" (a user's try): only skips that say something is wrong count."""
    from auralis_batch.records import DONE_REASON, is_routine_skip

    assert DONE_REASON == "already mastered with these settings (journal)"  # as batch says
    report = synthetic_report(12)
    report["tracks"] = [t for t in report["tracks"] if t["status"] == "ok"]
    routine = {"input": "/music/x.flac", "status": "skipped", "error": reason, "seconds": 0.0}
    assert is_routine_skip(routine)
    report["tracks"].append(routine)
    report["summary"].update(skipped=1, failed=0, tracks=len(report["tracks"]))
    page, _ = render(report, tmp_path)
    assert "skipped, at the top of the table" not in page


@pytest.mark.parametrize(("passes", "said"), [(1, "1 pass"), (2, "2 passes")])
def test_the_render_line_counts_its_passes_in_english(passes, said):
    """A track written in one pass read "1 passes" (a newcomer)."""
    from auralis_batch.html_report import _render_line

    line = _render_line({"render_passes": passes})
    assert line == said
