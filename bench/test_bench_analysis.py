"""Analysis speed against librosa, and tempo agreement with librosa on the corpus.

Same decoded array for both (4 minutes, stereo, 44.1 kHz: loyalists.ogg looped, or a
synthesised drum mix without the corpus). JIT warmed before timing.
Goals: full analysis (loudness + fingerprint + tempo) >= 5x librosa doing the
equivalent (STFT, centroid, rolloff, flatness + ``beat.beat_track``); tempo alone
>= 5x ``librosa.beat.beat_track``; analysis without tempo faster than with it.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORPUS, SR, best_alternating

from auralis_batch.analysis import analyze_array
from auralis_batch.fingerprint import estimate_tempo

librosa = pytest.importorskip("librosa")


def librosa_equivalent(x: np.ndarray) -> float:
    y = np.ascontiguousarray(x.mean(axis=0), dtype=np.float32)
    mag = np.abs(librosa.stft(y))
    librosa.feature.spectral_centroid(S=mag, sr=SR)
    librosa.feature.spectral_rolloff(S=mag, sr=SR)
    librosa.feature.spectral_flatness(S=mag)
    tempo, _ = librosa.beat.beat_track(y=y, sr=SR)
    return float(np.atleast_1d(tempo)[0])


def librosa_tempo(x: np.ndarray) -> float:
    y = np.ascontiguousarray(x.mean(axis=0), dtype=np.float32)
    tempo, _ = librosa.beat.beat_track(y=y, sr=SR)
    return float(np.atleast_1d(tempo)[0])


@pytest.mark.parametrize(
    "impl", ["ours_full", "ours_no_tempo", "ours_tempo_only", "librosa_full", "librosa_tempo"]
)
def test_analysis_speed(benchmark, track, impl):
    fns = {
        "ours_full": lambda: analyze_array(track, SR, tempo=True),
        "ours_no_tempo": lambda: analyze_array(track, SR, tempo=False),
        "ours_tempo_only": lambda: estimate_tempo(track, SR),
        "librosa_full": lambda: librosa_equivalent(track),
        "librosa_tempo": lambda: librosa_tempo(track),
    }
    analyze_array(track[:, : 10 * SR], SR)  # JIT warm-up
    benchmark.group = "analysis of 4 min stereo 44.1 kHz"
    benchmark.pedantic(fns[impl], rounds=3, iterations=1)


def test_analysis_goals(track):
    analyze_array(track[:, : 10 * SR], SR)
    best = best_alternating(
        {
            "full": lambda: analyze_array(track, SR, tempo=True),
            "no_tempo": lambda: analyze_array(track, SR, tempo=False),
            "tempo": lambda: estimate_tempo(track, SR),
            "librosa_full": lambda: librosa_equivalent(track),
            "librosa_tempo": lambda: librosa_tempo(track),
        },
        rounds=3,
    )
    print("\nbest seconds:", {k: round(v, 3) for k, v in best.items()})
    print(
        f"full {best['librosa_full'] / best['full']:.1f}x librosa; "
        f"tempo {best['librosa_tempo'] / best['tempo']:.1f}x beat_track; "
        f"no-tempo saves {100 * (1 - best['no_tempo'] / best['full']):.0f} %"
    )
    assert best["librosa_full"] / best["full"] >= 5.0
    assert best["librosa_tempo"] / best["tempo"] >= 5.0
    assert best["no_tempo"] < 0.95 * best["full"]


def test_tempo_agreement_with_librosa_on_the_corpus():
    """Reported, not a quality claim: orchestral music has no single reliable tempo."""
    files = sorted(CORPUS.glob("*.ogg"))
    if not files:
        pytest.skip(f"corpus not found at {CORPUS}")
    import soundfile as sf

    rows = []
    for f in files:
        x, sr = sf.read(f, always_2d=True)
        ours, conf = estimate_tempo(x.T, sr)
        y = np.ascontiguousarray(x.mean(axis=1), dtype=np.float32)
        theirs = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=sr)[0])[0])
        r = ours / theirs
        same = abs(r - 1) <= 0.04
        octave = any(abs(r - k) <= 0.04 * k for k in (0.5, 2.0, 1 / 3, 3.0))
        rows.append((f.name, round(ours, 1), round(conf, 2), round(theirs, 1), same, octave))
    print()
    for row in rows:
        name, ours, conf, theirs, same, octave = row
        print(
            f"{name:<16s} ours {ours:6.1f} (conf {conf:.2f})  librosa {theirs:6.1f}"
            f"  same {same}  octave {octave}"
        )
    agree = sum(r[4] for r in rows)
    either = sum(r[4] or r[5] for r in rows)
    print(f"agree within 4 %: {agree}/{len(rows)}; within 4 % or an octave: {either}/{len(rows)}")
    assert len(rows) == len(files)
