"""Render chain and EQ against the tools a user would otherwise pick.

Same decoded array for every implementation (4 minutes, stereo, 44.1 kHz: the corpus
track loyalists.ogg looped, or a synthesised mix without the corpus). JIT is warmed
before timing; first-call compile/cache-load time is measured separately.
Goals: EQ cascade >= 1.5x scipy.signal.sosfilt; render chain >= 2x pedalboard.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import SR, best_alternating
from scipy import signal

from auralis_batch.dynamics import Compressor, Limiter
from auralis_batch.eq import Equalizer, design_eq
from auralis_batch.kernels.biquad import sos_filter
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


@pytest.mark.parametrize("impl", ["auralis", "pedalboard"])
def test_render_chain(benchmark, track, impl):
    benchmark.group = "render chain: EQ + compressor + gain + limiter, 4 min stereo"
    if impl == "auralis":
        ours_render(track[:, :SR])  # warm the JIT
        y = benchmark.pedantic(ours_render, args=(track,), rounds=3, iterations=1)
    else:
        board = pedalboard_chain()
        x32 = track.astype(np.float32)
        y = benchmark.pedantic(lambda: board(x32, SR), rounds=3, iterations=1)
    assert y.shape == track.shape


@pytest.mark.parametrize("impl", ["auralis", "scipy"])
def test_eq_cascade(benchmark, track, impl):
    benchmark.group = "EQ cascade (high-pass + 7 bands), 4 min stereo"
    sos = design_eq(PRESET.eq, SR)
    if impl == "auralis":
        zi = np.zeros((2, sos.shape[0], 2))
        sos_filter(track[:, :100], sos, zi)
        y, _ = benchmark.pedantic(sos_filter, args=(track, sos, zi), rounds=5, iterations=1)
    else:
        y = benchmark.pedantic(
            signal.sosfilt, args=(sos, track), kwargs={"axis": -1}, rounds=5, iterations=1
        )
    assert y.shape == track.shape


def test_eq_at_least_1_5x_faster_than_scipy(track):
    """Goal: EQ cascade >= 1.5x scipy.signal.sosfilt (measured about 2.8x)."""
    sos = design_eq(PRESET.eq, SR)
    zi = np.zeros((2, sos.shape[0], 2))
    sos_filter(track[:, :100], sos, zi)
    best = best_alternating(
        {
            "ours": lambda: sos_filter(track, sos, zi),
            "scipy": lambda: signal.sosfilt(sos, track, axis=-1),
        },
        rounds=3,
    )
    print(f"\nEQ 4 min stereo: ours {best['ours']:.3f} s, scipy {best['scipy']:.3f} s")
    assert best["ours"] * 1.5 <= best["scipy"]


def test_render_chain_at_least_twice_as_fast_as_pedalboard(track):
    """Goal: render chain >= 2x pedalboard (measured about 2.7x on this track)."""
    board = pedalboard_chain()
    x32 = track.astype(np.float32)
    ours_render(track[:, :SR])
    best = best_alternating(
        {"ours": lambda: ours_render(track), "pedalboard": lambda: board(x32, SR)}, rounds=2
    )
    print(f"\nrender 4 min: ours {best['ours']:.3f} s, pedalboard {best['pedalboard']:.3f} s")
    assert best["ours"] * 2 <= best["pedalboard"]


def test_full_master_array(benchmark, track):
    """All passes: measure, EQ+compressor+measure, render+measure (+ correction)."""
    benchmark.group = "full master (all passes), 4 min stereo"
    master_array(track[:, : 5 * SR], SR, preset=PRESET)
    y, _ = benchmark.pedantic(
        master_array, args=(track, SR), kwargs={"preset": PRESET}, rounds=2, iterations=1
    )
    assert y.shape == track.shape


def test_first_call_jit_time(benchmark, tmp_path):
    """Cold start: import and first master call with an empty Numba cache (compile)."""
    code = (
        "import numpy as np, time; t=time.perf_counter();"
        "from auralis_batch.pipeline import master_array;"
        "from auralis_batch.presets import load_preset;"
        "master_array(np.zeros((2, 44100)) + 0.1, 44100, preset=load_preset('gentle'));"
        "print(time.perf_counter()-t)"
    )
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PATH": "/usr/bin:/bin"}
    benchmark.group = "first call (compile into an empty cache)"

    def run():
        return subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True
        )

    benchmark.pedantic(run, rounds=1, iterations=1)
