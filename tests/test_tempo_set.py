"""The shipped tempo estimator on the labelled tempo set (../shared/tempo-set).

Runs only when ``AURALIS_TEMPO_SET`` points at a set built by its build.py (CI has no
apt): ``AURALIS_TEMPO_SET=~/.cache/auralis-tempo-set python -m pytest -m tempo_set``.
The floors sit just under what the shipped weights measure on the whole set (in-sample;
the cross-checked figures come from bench/tempo/fit.py), so a change that costs clips
fails here.
"""

from __future__ import annotations

import json
import os
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
MIN_ACC1 = 0.80
MIN_ACC2 = 0.95


@pytest.fixture(scope="module")
def results():
    truth = json.loads((Path(SET) / "truth.json").read_text())
    rows = {}
    for name, label in sorted(truth.items()):
        rec = ab.analyze(str(Path(SET) / "audio" / name))
        rows[name] = (float(label["bpm"]), rec)
    return rows


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
