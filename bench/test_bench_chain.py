"""Render chain and EQ against the tools a user would otherwise pick.

Same decoded array for every implementation (4 minutes, stereo, 44.1 kHz: the corpus
track loyalists.ogg looped, or a synthesised mix without the corpus). JIT is warmed
before timing (the first call into an empty Numba cache is measured end to end in
``test_bench_e2e.py``).
Goals: EQ cascade >= 1.5x scipy.signal.sosfilt; render chain >= 2x pedalboard.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SR, compare
from scipy import signal

from auralis_batch.dynamics import Compressor, Limiter
from auralis_batch.eq import Equalizer, design_eq
from auralis_batch.filters import sos_filter
from auralis_batch.pipeline import master_array
from auralis_batch.presets import load_preset

PRESET = load_preset("gentle")


def ours_render(x: np.ndarray) -> np.ndarray:
    """EQ -> compressor -> gain -> true-peak limiter, streamed in 65536-frame blocks."""
    c = PRESET.compressor
    eq = Equalizer(SR, 2, PRESET.eq)
    comp = Compressor(
        SR,
        2,
        threshold_db=-18.0,
        ratio=c.ratio,
        knee_db=c.knee_db,
        attack_ms=c.attack_ms,
        release_ms=c.release_ms,
    )
    lim = Limiter(SR, 2, ceiling_dbtp=-1.0, release_ms=PRESET.limiter.release_ms)
    out = []
    for i in range(0, x.shape[1], 65536):  # the gain stage rides on the limiter's input
        out.append(lim.process(comp.process(eq.process(x[:, i : i + 65536])), gain_db=8.0))
    out.append(lim.flush())
    return np.concatenate(out, axis=1)


def pedalboard_chain():
    pb = pytest.importorskip("pedalboard")
    plugins = [pb.HighpassFilter(cutoff_frequency_hz=PRESET.eq.highpass_hz)]
    for b in PRESET.eq.bands:
        cls = {"low_shelf": pb.LowShelfFilter, "high_shelf": pb.HighShelfFilter}.get(
            b.kind, pb.PeakFilter
        )
        plugins.append(cls(cutoff_frequency_hz=b.frequency_hz, gain_db=b.gain_db, q=b.q))
    c = PRESET.compressor
    plugins += [
        pb.Compressor(
            threshold_db=-18.0, ratio=c.ratio, attack_ms=c.attack_ms, release_ms=c.release_ms
        ),
        pb.Gain(gain_db=8.0),
        pb.Limiter(threshold_db=-1.0, release_ms=PRESET.limiter.release_ms),
    ]
    return pb.Pedalboard(plugins)


@pytest.mark.benchmark(group="render chain: EQ + compressor + gain + limiter, 4 min stereo")
def test_render_chain_against_pedalboard(benchmark, goals, track):
    """Goal: render chain >= 2x pedalboard doing the same chain, best of 3 alternating."""
    board = pedalboard_chain()
    x32 = track.astype(np.float32)
    ours_render(track[:, :SR])  # warm the JIT
    best = compare(
        benchmark,
        lambda: ours_render(track),
        {"pedalboard": lambda: board(x32, SR)},
        rounds=3,
        name="auralis",
    )
    goals.speedup("render chain vs pedalboard", best, ours="auralis", peer="pedalboard", at_least=2)
    goals.assert_met()


@pytest.mark.benchmark(group="EQ cascade (high-pass + 7 bands), 4 min stereo")
def test_eq_cascade_against_sosfilt(benchmark, goals, track):
    """Goal: EQ cascade >= 1.5x ``scipy.signal.sosfilt``."""
    sos = design_eq(PRESET.eq, SR)
    zi = np.zeros((2, sos.shape[0], 2))
    sos_filter(track[:, :100], sos, zi)
    best = compare(
        benchmark,
        lambda: sos_filter(track, sos, zi),
        {"sosfilt": lambda: signal.sosfilt(sos, track, axis=-1)},
        rounds=5,
        name="auralis",
    )
    goals.speedup("EQ cascade vs sosfilt", best, ours="auralis", peer="sosfilt", at_least=1.5)
    goals.assert_met()


@pytest.mark.benchmark(group="full master in memory (all passes), 4 min stereo")
def test_full_master_array(benchmark, goals, track):
    """All passes: measure, EQ+compressor+measure, render+measure (+ correction)."""
    master_array(track[:, : 5 * SR], SR, preset=PRESET)
    best = compare(benchmark, lambda: master_array(track, SR, preset=PRESET), rounds=2)
    benchmark.extra_info["x_realtime"] = round(track.shape[1] / SR / best["subject"], 1)
    goals.report("full master of 4 min in memory", f"{best['subject']:.2f} s")
