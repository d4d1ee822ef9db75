"""Compressor and limiter: distortion and speed beside pedalboard and ffmpeg's alimiter.

THD (goal: far below pedalboard, at or below ffmpeg's alimiter): a steady sine 6 dB
over a -1 dB ceiling, 5 ms attack/lookahead, 80 ms release, harmonics 2..10 over the
fundamental after one second of settling (Blackman-Harris FFT). The numbers go to the
limiter speed benchmark's ``extra_info`` and the goal table.

Speed: 30 s of stereo music-like audio at 44.1 kHz; the chain is EQ (high-pass and two
peaks) -> compressor -> gain -> limiter, ours against the same shape built from pedalboard
(goal: the chain >= 2x pedalboard).
"""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
from conftest import compare
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


SPEED_GOALS = {"limiter": None, "compressor": None, "chain": 2.0}  # x pedalboard, None: reported


@pytest.mark.benchmark(group="dynamics: 30 s stereo 44.1 kHz")
@pytest.mark.parametrize("stage", list(SPEED_GOALS))
def test_speed_against_pedalboard(benchmark, goals, music, stage):
    """Ours alternating with the same stage built from pedalboard, best of 5. The
    limiter's benchmark also records the THD of every limiter (``extra_info``)."""
    ours, theirs = SPEED[(stage, "ours")], SPEED[(stage, "pedalboard")]
    ours(music[:, :4096])  # warm the JIT
    best = compare(
        benchmark,
        lambda: ours(music),
        {"pedalboard": lambda: theirs(music)},
        rounds=5,
        name="auralis",
    )
    goals.speedup(
        f"{stage} vs pedalboard, 30 s",
        best,
        ours="auralis",
        peer="pedalboard",
        at_least=SPEED_GOALS[stage],
    )
    if stage == "limiter":
        thd = {}
        for impl in LIMITERS:
            if impl == "ffmpeg" and FFMPEG is None:
                continue
            thd[impl] = {f"{f0:g} Hz": round(_thd(impl, f0), 1) for f0 in (1000.0, 100.0)}
        benchmark.extra_info["thd_db"] = thd
        for f0 in ("1000 Hz", "100 Hz"):
            ours_db, peers = thd["ours"][f0], {k: v[f0] for k, v in thd.items() if k != "ours"}
            goals.check(
                f"limiter THD, {f0} sine +6 dB over the ceiling",
                f"{ours_db:.0f} dB; " + ", ".join(f"{k} {v:.0f} dB" for k, v in peers.items()),
                "40 dB below pedalboard, <= ffmpeg alimiter",
                ours_db < peers["pedalboard"] - 40 and ours_db <= peers.get("ffmpeg", np.inf),
            )
    goals.assert_met()
