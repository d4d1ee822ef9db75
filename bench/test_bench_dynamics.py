"""Compressor and limiter: distortion and speed beside pedalboard and ffmpeg's alimiter.

THD: a steady sine 6 dB over a -1 dB ceiling, 5 ms attack/lookahead, 80 ms release,
harmonics 2..10 over the fundamental after one second of settling (Blackman-Harris FFT).
Numbers go to ``extra_info`` (``--benchmark-json``) and are printed with ``-s``.

Speed: 30 s of stereo music-like audio at 44.1 kHz; the chain is EQ (high-pass and two
peaks) -> compressor -> gain -> limiter, ours against the same shape built from pedalboard.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
from scipy import signal

from auralis_batch.dynamics import Compressor, Limiter
from tests.conftest import music_like

pedalboard = pytest.importorskip("pedalboard")

SR = 44100
CEILING_DB = -1.0
FFMPEG = shutil.which("ffmpeg")


def thd_db(y: np.ndarray, f0: float, sample_rate: int) -> float:
    """Harmonics 2..10 over the fundamental, Blackman-Harris windowed FFT, dB."""
    spec = np.abs(np.fft.rfft(y * signal.windows.blackmanharris(len(y))))

    def amp(f):
        k = round(f * len(y) / sample_rate)
        return math.sqrt(np.sum(spec[max(k - 6, 0) : k + 7] ** 2))

    harm = math.sqrt(sum(amp(k * f0) ** 2 for k in range(2, 11) if k * f0 < sample_rate / 2))
    return 20 * math.log10(max(harm, 1e-300) / amp(f0))


def ours_limit(x: np.ndarray) -> np.ndarray:
    lim = Limiter(SR, x.shape[0], ceiling_dbtp=CEILING_DB, lookahead_ms=5.0, release_ms=80.0)
    return np.concatenate([lim.process(x), lim.flush()], axis=1)


def pedalboard_limit(x: np.ndarray) -> np.ndarray:
    lim = pedalboard.Limiter(threshold_db=CEILING_DB, release_ms=80.0)
    return lim(x.astype(np.float32), SR).astype(np.float64)


def ffmpeg_limit(x: np.ndarray) -> np.ndarray:
    """ffmpeg's alimiter (sample-peak, lookahead = attack), auto level off."""
    limit = 10 ** (CEILING_DB / 20)
    cmd = [FFMPEG, "-v", "error", "-f", "f64le", "-ar", str(SR), "-ac", str(x.shape[0])]
    cmd += ["-i", "pipe:0", "-af"]
    cmd += [f"alimiter=limit={limit}:attack=5:release=80:level=disabled", "-f", "f64le", "pipe:1"]
    pcm = np.ascontiguousarray(x.T, dtype="<f8").tobytes()
    out = subprocess.run(cmd, input=pcm, capture_output=True, check=True).stdout
    return np.frombuffer(out, "<f8").reshape(-1, x.shape[0]).T


LIMITERS = {"ours": ours_limit, "pedalboard": pedalboard_limit, "ffmpeg": ffmpeg_limit}


def _sine(f0: float) -> np.ndarray:
    t = np.arange(3 * SR) / SR
    return (10 ** ((CEILING_DB + 6) / 20) * np.sin(2 * np.pi * f0 * t))[np.newaxis]


def _thd(impl: str, f0: float) -> float:
    if impl == "ffmpeg" and FFMPEG is None:
        pytest.skip("ffmpeg not installed")
    y = LIMITERS[impl](_sine(f0))
    return thd_db(y[0, SR : 3 * SR], f0, SR)


@pytest.mark.parametrize("f0", [1000.0, 100.0])
@pytest.mark.parametrize("impl", list(LIMITERS))
def test_limiter_thd(benchmark, impl, f0):
    """Time to limit a 3 s sine; its THD is recorded beside the time."""
    x = _sine(f0)
    thd = _thd(impl, f0)  # also warms the JIT
    benchmark.group = f"limiter THD, {f0:g} Hz sine +6 dB over ceiling"
    benchmark.extra_info["thd_db"] = round(thd, 1)
    print(f"\nTHD {impl:>10} {f0:6g} Hz: {thd:7.1f} dB")
    benchmark.pedantic(LIMITERS[impl], args=(x,), rounds=3, iterations=1)


@pytest.mark.parametrize("f0", [1000.0, 100.0])
def test_ours_is_cleaner_than_peers(f0):
    ours = _thd("ours", f0)
    assert ours < _thd("pedalboard", f0) - 40.0  # "far less"
    if FFMPEG is not None:
        assert ours <= _thd("ffmpeg", f0)


# ----------------------------------------------------------------------------- speed
@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return music_like(seconds=30.0, sample_rate=SR, channels=2, level_db=-14.0)


def _ours_chain(x: np.ndarray) -> np.ndarray:
    from auralis_batch.eq import Equalizer
    from auralis_batch.presets import EQBand, EQSettings

    eq = Equalizer(
        SR,
        2,
        EQSettings(
            highpass_hz=30.0,
            bands=(
                EQBand("low", "low_shelf", 100.0, 2.0),
                EQBand("presence", "peaking", 3000.0, 1.5, 1.0),
            ),
        ),
    )
    comp = Compressor(SR, 2, threshold_db=-18, ratio=2, knee_db=6, attack_ms=20, release_ms=200)
    lim = Limiter(SR, 2, ceiling_dbtp=CEILING_DB)
    out = []
    for i in range(0, x.shape[1], 65536):  # the gain stage rides on the limiter's input
        out.append(lim.process(comp.process(eq.process(x[:, i : i + 65536])), gain_db=6.0))
    out.append(lim.flush())
    return np.concatenate(out, axis=1)


def _pedalboard_chain(x: np.ndarray) -> np.ndarray:
    board = pedalboard.Pedalboard(
        [
            pedalboard.HighpassFilter(30.0),
            pedalboard.LowShelfFilter(100.0, 2.0),
            pedalboard.PeakFilter(3000.0, 1.5, 1.0),
            pedalboard.Compressor(threshold_db=-18, ratio=2, attack_ms=20, release_ms=200),
            pedalboard.Gain(6.0),
            pedalboard.Limiter(threshold_db=CEILING_DB, release_ms=80),
        ]
    )
    return board(x.astype(np.float32), SR)


def _ours_comp(x):
    return Compressor(SR, 2, threshold_db=-18, ratio=2, attack_ms=20, release_ms=200).process(x)


def _pedalboard_comp(x):
    comp = pedalboard.Compressor(threshold_db=-18, ratio=2, attack_ms=20, release_ms=200)
    return comp(x.astype(np.float32), SR)


SPEED = {
    ("limiter", "ours"): lambda x: ours_limit(x * 2.0),
    ("limiter", "pedalboard"): lambda x: pedalboard_limit(x * 2.0),
    ("compressor", "ours"): _ours_comp,
    ("compressor", "pedalboard"): _pedalboard_comp,
    ("chain", "ours"): _ours_chain,
    ("chain", "pedalboard"): _pedalboard_chain,
}


@pytest.mark.parametrize("stage, impl", list(SPEED))
def test_speed_30s_stereo(benchmark, music, stage, impl):
    fn = SPEED[(stage, impl)]
    fn(music[:, :4096])  # warm the JIT
    benchmark.group = f"{stage}, 30 s stereo 44.1 kHz"
    y = benchmark.pedantic(fn, args=(music,), rounds=5, iterations=1)
    assert y.shape == music.shape


def test_chain_at_least_twice_as_fast_as_pedalboard(music):
    """The issue's goal. Best of 5, the two chains alternating, so a busy machine slows
    both alike (measured at about 2.1x: 36 ms against 76 ms per 30 s stereo)."""
    import time

    fns = {"ours": _ours_chain, "pedalboard": _pedalboard_chain}
    best = dict.fromkeys(fns, math.inf)
    for fn in fns.values():
        fn(music[:, :4096])
    for _ in range(5):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(music)
            best[name] = min(best[name], time.perf_counter() - t0)
    ours, theirs = best["ours"], best["pedalboard"]
    print(f"\nchain 30 s stereo: ours {ours * 1e3:.1f} ms, pedalboard {theirs * 1e3:.1f} ms")
    assert ours * 2 <= theirs
