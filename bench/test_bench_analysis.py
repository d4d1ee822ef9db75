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
from conftest import CORPUS, SR, compare

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


@pytest.fixture(scope="module")
def warm_jit(track) -> None:
    analyze_array(track[:, : 10 * SR], SR)


@pytest.mark.benchmark(group="analysis: 4 min stereo 44.1 kHz")
def test_full_analysis_against_librosa(benchmark, goals, track, warm_jit):
    """Loudness + fingerprint + tempo against librosa's STFT features + ``beat_track``."""
    best = compare(
        benchmark,
        lambda: analyze_array(track, SR, tempo=True),
        {"librosa": lambda: librosa_equivalent(track)},
        rounds=3,
        name="auralis",
    )
    goals.speedup("full analysis vs librosa", best, ours="auralis", peer="librosa", at_least=5)
    goals.assert_met()


@pytest.mark.benchmark(group="analysis: 4 min stereo 44.1 kHz")
def test_tempo_against_beat_track(benchmark, goals, track, warm_jit):
    best = compare(
        benchmark,
        lambda: estimate_tempo(track, SR),
        {"beat_track": lambda: librosa_tempo(track)},
        rounds=3,
        name="auralis",
    )
    goals.speedup("tempo vs beat_track", best, ours="auralis", peer="beat_track", at_least=5)
    goals.assert_met()


@pytest.mark.benchmark(group="analysis: 4 min stereo 44.1 kHz")
def test_analysis_without_tempo(benchmark, goals, track, warm_jit):
    """``tempo=False`` against the full analysis: measurably faster (>= 5 % less time)."""
    best = compare(
        benchmark,
        lambda: analyze_array(track, SR, tempo=False),
        {"with_tempo": lambda: analyze_array(track, SR, tempo=True)},
        rounds=3,
        name="no_tempo",
    )
    saved = 1 - best["no_tempo"] / best["with_tempo"]
    benchmark.extra_info["time_saved"] = round(saved, 3)
    goals.check(
        "analysis without tempo",
        f"{best['no_tempo'] * 1e3:.0f} ms vs {best['with_tempo'] * 1e3:.0f} ms: "
        f"{100 * saved:.0f} % less",
        ">= 5 % less",
        saved >= 0.05,
    )
    goals.assert_met()


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
