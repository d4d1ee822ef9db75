"""The shipped tempo estimator on the labelled tempo set (../shared/tempo-set).

Runs only when ``AURALIS_TEMPO_SET`` points at a set built by its build.py (CI has no
apt): ``AURALIS_TEMPO_SET=~/.cache/auralis-tempo-set python -m pytest -m tempo_set``.
The floors sit just under what the shipped weights measure on the whole set (in-sample
Acc1 87.8 %, Acc2 95.9 %: 65 and 71 of 74; the cross-checked figures come from
bench/tempo/fit.py), so a change that costs clips fails here. The CLI, run as issue 13
scores it (``analyze --json --no-cache`` in a fresh process), must report the same
tempi, and the set's own ``score.py`` must count the same hits (skipped when it is not
beside the project).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import auralis_batch as ab
from auralis_batch.fingerprint import TEMPO_CONFIDENCE_THRESHOLD

SET = os.environ.get("AURALIS_TEMPO_SET", "")
pytestmark = [
    pytest.mark.tempo_set,
    pytest.mark.skipif(
        not (SET and (Path(SET) / "truth.json").is_file()),
        reason="AURALIS_TEMPO_SET does not point at a built tempo set",
    ),
]
TOLERANCE = 0.04
MIN_ACC1 = 0.85
MIN_ACC2 = 0.95
#: The set's own scorer, beside the project's folder (shared/ in CI's layout too).
SCORE_PY = Path(__file__).resolve().parents[2] / "shared" / "tempo-set" / "score.py"


@pytest.fixture(scope="module")
def results():
    truth = json.loads((Path(SET) / "truth.json").read_text())
    rows = {}
    for name, label in sorted(truth.items()):
        rec = ab.analyze(str(Path(SET) / "audio" / name))
        rows[name] = (float(label["bpm"]), rec)
    return rows


@pytest.fixture(scope="module")
def cli_rows():
    """``auralis-batch analyze --json --no-cache SET/audio`` in a fresh process: the way
    issue 13 scores the estimator."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from auralis_batch.cli import main; main()",
            "analyze",
            "--json",
            "--no-cache",
            str(Path(SET) / "audio"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _acc1(est, truth):
    return abs(est - truth) <= TOLERANCE * truth


def _acc2(est, truth):
    return any(abs(est - f * truth) <= TOLERANCE * f * truth for f in (1, 2, 0.5, 3, 1 / 3))


def test_accuracy_on_the_tempo_set(results):
    n = len(results)
    hits1 = [name for name, (t, rec) in results.items() if _acc1(rec["tempo_bpm"], t)]
    hits2 = [name for name, (t, rec) in results.items() if _acc2(rec["tempo_bpm"], t)]
    misses = {k: (t, rec["tempo_bpm"]) for k, (t, rec) in results.items() if k not in hits1}
    assert len(hits1) / n >= MIN_ACC1, misses
    assert len(hits2) / n >= MIN_ACC2, misses


def test_confidence_separates_right_from_wrong(results):
    sure = {k: r["tempo_confidence"] >= TEMPO_CONFIDENCE_THRESHOLD for k, (_, r) in results.items()}
    above = [results[k] for k, s in sure.items() if s]
    below = [results[k] for k, s in sure.items() if not s]
    assert above and below
    acc_above = sum(_acc1(r["tempo_bpm"], t) for t, r in above) / len(above)
    acc_below = sum(_acc1(r["tempo_bpm"], t) for t, r in below) / len(below)
    assert acc_above > acc_below


def test_runners_up_show_the_octave_ambiguity(results):
    """Where the estimate is off by a factor Acc2 accepts, the labelled level is mostly
    among the runners-up."""
    off = [
        (t, r)
        for t, r in results.values()
        if _acc2(r["tempo_bpm"], t) and not _acc1(r["tempo_bpm"], t)
    ]
    listed = sum(
        any(_acc1(c["bpm"], t) for c in r["fingerprint"]["tempo_candidates"]) for t, r in off
    )
    assert off and listed / len(off) >= 0.8


def test_cli_reports_what_the_library_measures(results, cli_rows):
    """The decode path of the CLI (streamed blocks, a fresh process) gives the tempi the
    library gives, to the JSON's rounding: the figures bench/tempo/fit.py computes
    in-process are the figures a user gets."""
    by_name = {Path(r["path"]).name: r for r in cli_rows}
    assert set(by_name) == set(results)
    for name, (_, rec) in results.items():
        got = by_name[name]
        assert got["tempo_bpm"] == pytest.approx(rec["tempo_bpm"], abs=0.006), name
        assert got["tempo_confidence"] == pytest.approx(rec["tempo_confidence"], abs=6e-4), name


@pytest.mark.skipif(not SCORE_PY.is_file(), reason="the tempo set's score.py is not beside")
def test_score_py_counts_as_we_do(results, cli_rows):
    """The set's own score.py, fed the CLI's JSON, finds the hits these tests count."""
    out = subprocess.run(
        [sys.executable, str(SCORE_PY), SET, "-", "--json"],
        input=json.dumps(cli_rows),
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {r["file"]: r for r in json.loads(out.stdout)["rows"]}
    assert set(rows) == set(results)
    for name, (truth, rec) in results.items():
        assert rows[name]["acc1"] == _acc1(rec["tempo_bpm"], truth), name
        assert rows[name]["acc2"] == _acc2(rec["tempo_bpm"], truth), name
