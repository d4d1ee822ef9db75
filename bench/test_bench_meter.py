"""Loudness meter against pyebur128 (libebur128) and pyloudnorm, on the same array.

Ours measures everything in one pass (integrated, LRA, true peak, sample peak, max
momentary and short-term); pyebur128 is asked for integrated + LRA + true peak (the
same work), pyloudnorm for integrated loudness only (all it offers in one call).
Goals: >= 5x faster than pyebur128; faster than pyloudnorm's integrated-only.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SR, compare

from auralis_batch.meter import measure_loudness

pyebur128 = pytest.importorskip("pyebur128")
pyloudnorm = pytest.importorskip("pyloudnorm")


def ebur128_full(x: np.ndarray) -> tuple[float, float, float]:
    """Integrated, LRA and true peak with libebur128, interleaved float64 frames."""
    mode = (
        pyebur128.MeasurementMode.MODE_I
        | pyebur128.MeasurementMode.MODE_LRA
        | pyebur128.MeasurementMode.MODE_TRUE_PEAK
    )
    state = pyebur128.R128State(x.shape[0], SR, mode)
    frames = np.ascontiguousarray(x.T).ravel()
    state.add_frames(frames, x.shape[1])
    tp = max(pyebur128.get_true_peak(state, c) for c in range(x.shape[0]))
    return (
        pyebur128.get_loudness_global(state),
        pyebur128.get_loudness_range(state),
        20 * np.log10(tp),
    )


def pyloudnorm_integrated(x: np.ndarray) -> float:
    return pyloudnorm.Meter(SR).integrated_loudness(x.T)


def test_meter_agrees_with_libebur128(track):
    """The same numbers as libebur128 (its LRA uses the same 3 s / 1 s blocks)."""
    ours = measure_loudness(track, SR)
    lufs, lra, tp = ebur128_full(track)
    assert ours.integrated_lufs == pytest.approx(lufs, abs=0.05)
    assert ours.lra_lu == pytest.approx(lra, abs=0.1)
    assert ours.true_peak_dbtp == pytest.approx(tp, abs=0.1)


@pytest.mark.benchmark(group="meter: 4 min stereo 44.1 kHz")
def test_meter_against_pyebur128_and_pyloudnorm(benchmark, goals, track):
    """Ours (I + LRA + TP + peaks) alternating with pyebur128 (I + LRA + TP) and
    pyloudnorm (I only), best of 5."""
    measure_loudness(track[:, :SR], SR)  # warm the JIT
    best = compare(
        benchmark,
        lambda: measure_loudness(track, SR),
        {
            "pyebur128": lambda: ebur128_full(track),
            "pyloudnorm": lambda: pyloudnorm_integrated(track),
        },
        rounds=5,
        name="auralis",
    )
    goals.speedup("meter vs pyebur128", best, ours="auralis", peer="pyebur128", at_least=5)
    goals.speedup(
        "meter vs pyloudnorm (I only)", best, ours="auralis", peer="pyloudnorm", at_least=1
    )
    goals.assert_met()
