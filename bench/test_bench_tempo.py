"""Tempo: speed against librosa on the same decoded array, and quality on the tempo set.

Speed goals (4 minutes of stereo 44.1 kHz, the session's ``track``): tempo alone
>= 5x ``librosa.beat.beat_track``; the full analysis >= 5x librosa's equivalent (STFT
features + ``beat_track``); ``tempo=False`` reports 120.0 BPM and takes >= 5 % less time.

Quality goals (only with ``AURALIS_TEMPO_SET`` pointing at a built tempo set): the
cross-check of bench/tempo/fit.py (everything chosen on one half, scored on the other,
both ways): Acc1 >= 80 % and Acc2 >= 97 % in each half; no style group below librosa's
Acc1 (``beat_track`` at 22.05 kHz, as the issue measured it; at 44.1 kHz reported).
``AURALIS_TEMPO_CACHE``: a folder for the clips' autocorrelations and librosa's answers
between runs.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import SR, compare

from auralis_batch.analysis import analyze_array
from auralis_batch.fingerprint import (
    DEFAULT_TEMPO_BPM,
    TEMPO_CONFIDENCE_THRESHOLD,
    estimate_tempo,
)

sys.path.insert(0, str(Path(__file__).resolve().parent / "tempo"))

librosa = pytest.importorskip("librosa")
TEMPO_SET = os.environ.get("AURALIS_TEMPO_SET", "")


def librosa_tempo(x: np.ndarray) -> float:
    y = np.ascontiguousarray(x.mean(axis=0), dtype=np.float32)
    tempo, _ = librosa.beat.beat_track(y=y, sr=SR)
    return float(np.atleast_1d(tempo)[0])


def librosa_equivalent(x: np.ndarray) -> float:
    y = np.ascontiguousarray(x.mean(axis=0), dtype=np.float32)
    mag = np.abs(librosa.stft(y))
    librosa.feature.spectral_centroid(S=mag, sr=SR)
    librosa.feature.spectral_rolloff(S=mag, sr=SR)
    librosa.feature.spectral_flatness(S=mag)
    tempo, _ = librosa.beat.beat_track(y=y, sr=SR)
    return float(np.atleast_1d(tempo)[0])


@pytest.fixture(scope="module")
def warm(track) -> None:
    analyze_array(track[:, : 10 * SR], SR)
    librosa_tempo(track[:, : 10 * SR])


@pytest.mark.benchmark(group="tempo: 4 min stereo 44.1 kHz")
def test_tempo_alone_against_beat_track(benchmark, goals, track, warm):
    best = compare(
        benchmark,
        lambda: estimate_tempo(track, SR),
        {"beat_track": lambda: librosa_tempo(track)},
        rounds=3,
        name="auralis",
    )
    goals.speedup("tempo alone vs beat_track", best, ours="auralis", peer="beat_track", at_least=5)
    goals.assert_met()


@pytest.mark.benchmark(group="tempo: 4 min stereo 44.1 kHz")
def test_full_analysis_against_librosa(benchmark, goals, track, warm):
    best = compare(
        benchmark,
        lambda: analyze_array(track, SR, tempo=True),
        {"librosa": lambda: librosa_equivalent(track)},
        rounds=3,
        name="auralis",
    )
    goals.speedup("full analysis vs librosa", best, ours="auralis", peer="librosa", at_least=5)
    goals.assert_met()


@pytest.mark.benchmark(group="tempo: 4 min stereo 44.1 kHz")
def test_no_tempo_reports_120_and_is_faster(benchmark, goals, track, warm):
    assert analyze_array(track[:, : 20 * SR], SR, tempo=False)["tempo_bpm"] == DEFAULT_TEMPO_BPM
    best = compare(
        benchmark,
        lambda: analyze_array(track, SR, tempo=False),
        {"with_tempo": lambda: analyze_array(track, SR, tempo=True)},
        rounds=3,
        name="no_tempo",
    )
    saved = 1 - best["no_tempo"] / best["with_tempo"]
    goals.check(
        "analysis without tempo",
        f"{best['no_tempo'] * 1e3:.0f} ms vs {best['with_tempo'] * 1e3:.0f} ms: "
        f"{100 * saved:.0f} % less",
        ">= 5 % less",
        saved >= 0.05,
    )
    goals.assert_met()


@pytest.mark.benchmark(group="tempo set")
def test_tempo_set_cross_check(benchmark, goals):
    """The quality goals, measured the honest way (see the module docstring)."""
    if not (TEMPO_SET and (Path(TEMPO_SET) / "truth.json").is_file()):
        goals.skip("tempo set", "AURALIS_TEMPO_SET does not point at a built tempo set")
    import fit
    import tempo_set as ts

    cache = os.environ.get("AURALIS_TEMPO_CACHE")
    clips = ts.load_clips(TEMPO_SET, cache and os.path.join(cache, "acf.npz"))
    lib = ts.librosa_tempi(TEMPO_SET, cache and os.path.join(cache, "librosa.json"))
    truth = {k: c.label for k, c in clips.items()}
    half_a, half_b = ts.halves(truth)
    cv: dict[str, tuple] = {}

    def cross_check() -> None:
        for train, test in ((half_b, half_a), (half_a, half_b)):
            structure, lam, ternary, scale, problem = fit.choose_hyper(clips, train, {})
            w = fit.fit(problem, train, lam, ternary, backbeat_scale=scale)
            cv.update(fit.predict(clips, test, w, structure))

    benchmark.pedantic(cross_check, rounds=1, iterations=1)
    ours = {k: v[0] for k, v in cv.items()}
    for name, keys in (("half A", half_a), ("half B", half_b), ("all", sorted(clips))):
        n, a1, a2 = ts.score(ours, truth, keys)
        goals.check(f"Acc1 {name}", ts.pct(a1, n), ">= 80 %", a1 / n >= 0.8)
        goals.check(f"Acc2 {name}", ts.pct(a2, n), ">= 97 %", a2 / n >= 0.97)
    for col, binding in (("sr22050", True), ("sr44100", False)):
        theirs = {k: v[col] for k, v in lib.items()}
        n, t1, t2 = ts.score(theirs, truth, sorted(clips))
        goals.report(f"librosa {col} Acc1 / Acc2", f"{ts.pct(t1, n)} / {ts.pct(t2, n)}")
        groups = defaultdict(list)
        for k, lab in truth.items():
            groups[lab["style"]].append(k)
        below = []
        for style, keys in sorted(groups.items()):
            _, o1, _ = ts.score(ours, truth, keys)
            _, l1, _ = ts.score(theirs, truth, keys)
            if o1 < l1:
                below.append(f"{style} {o1}/{len(keys)} < {l1}/{len(keys)}")
        measured = "; ".join(below) or "none"
        if binding:
            goals.check(f"style groups below librosa {col}", measured, "none", not below)
        else:
            goals.report(f"style groups below librosa {col}", measured)
    sure = [k for k, v in cv.items() if v[1] >= TEMPO_CONFIDENCE_THRESHOLD]
    unsure = [k for k, v in cv.items() if v[1] < TEMPO_CONFIDENCE_THRESHOLD]
    for label, keys in (("at or above", sure), ("below", unsure)):
        n, a1, _ = ts.score(ours, truth, keys)
        figure = f"Acc1 {label} confidence {TEMPO_CONFIDENCE_THRESHOLD}"
        goals.report(figure, f"{ts.pct(a1, n)} of {n}")
    goals.assert_met()
