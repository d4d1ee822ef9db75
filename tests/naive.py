"""Plain references for the kernels: each definition written out the obvious way, one
sample at a time where that is clearest, with none of the kernels' chunking, skipping,
vector lanes or hand-written log and exp (the idea of stumpy's ``tests/naive.py``).
Slow: for short signals in tests only. They agree with the kernels to rounding, not
bit for bit; the bit-exact tests compare the kernels with themselves and with SciPy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from auralis_batch.filters import k_weighting_sos


def one_pole_coef(time_ms: float, sample_rate: float) -> float:
    """``exp(-1 / (tau * fs))``: a step is 1 - 1/e complete after ``time_ms``."""
    return math.exp(-1.0 / (time_ms * 1e-3 * sample_rate))


def static_gain_reduction_db(level_db: float, threshold_db: float, ratio: float, knee_db: float):
    """``x_G - y_G`` of Giannoulis, Massberg & Reiss (2012), eq. 4 (dB, >= 0)."""
    over = level_db - threshold_db
    if 2.0 * over < -knee_db:
        return 0.0
    if 2.0 * abs(over) <= knee_db and knee_db > 0.0:
        return (1.0 - 1.0 / ratio) * (over + knee_db / 2.0) ** 2 / (2.0 * knee_db)
    return (1.0 - 1.0 / ratio) * over


def compressor(
    x: np.ndarray,
    sample_rate: float,
    *,
    threshold_db: float,
    ratio: float,
    knee_db: float = 6.0,
    attack_ms: float = 10.0,
    release_ms: float = 150.0,
    makeup_db: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Stereo-linked log-domain compressor, sample by sample: ``(y, gain_reduction_db)``.

    Level: the largest |sample| over channels, in dBFS; static curve of Giannoulis et
    al. eq. 4; smooth branching peak detector (their eq. 17) with the attack
    coefficient while the static reduction exceeds the smoothed one; reductions below
    1e-9 dB snap to 0 (the kernel's documented ``GR_SNAP_DB``); gain
    ``10 ** ((makeup_db - y_L) / 20)``.
    """
    a_att = one_pole_coef(attack_ms, sample_rate)
    a_rel = one_pole_coef(release_ms, sample_rate)
    level = np.max(np.abs(x), axis=0)
    y = np.empty_like(x)
    gr = np.empty(x.shape[1])
    yl = 0.0
    for i, peak in enumerate(level):
        level_db = 20.0 * math.log10(peak) if peak > 0.0 else -math.inf
        xl = static_gain_reduction_db(level_db, threshold_db, ratio, knee_db)
        a = a_att if xl > yl else a_rel
        yl = a * yl + (1.0 - a) * xl
        yl = 0.0 if yl < 1e-9 else yl
        gr[i] = yl
        y[:, i] = x[:, i] * 10.0 ** ((makeup_db - yl) / 20.0)
    return y, gr


def subblock_powers(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean square of the K-weighted signal (``scipy.signal.sosfilt``) over each
    complete 100 ms sub-block, per channel: shape ``(channels, n // subblock)``."""
    y = signal.sosfilt(k_weighting_sos(sample_rate), x, axis=-1)
    length = round(0.1 * sample_rate)
    k = x.shape[1] // length
    return np.mean(y[:, : k * length].reshape(x.shape[0], k, length) ** 2, axis=2)


def true_peak(x: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Per channel, the largest |value| of every phase of ``bank`` at every position
    (the input preceded by ``taps - 1`` zeros), by ``np.convolve``: no bound, no skip.
    And at least the sample peak: phase 0 is the sample itself, delayed by half the
    window, so the last samples' own values come in the next block's windows."""
    taps = bank.shape[1]
    padded = np.concatenate([np.zeros((x.shape[0], taps - 1)), x], axis=1)
    peaks = np.abs(x).max(axis=1, initial=0.0)
    for c in range(x.shape[0]):
        for phase in bank:
            values = np.convolve(padded[c], phase[::-1], mode="valid")
            peaks[c] = max(peaks[c], np.abs(values).max(initial=0.0))
    return peaks


def level_rise(levels_db: np.ndarray, prev_db: np.ndarray, state: np.ndarray):
    """Mean over bands of the half-wave rectified rise since the previous frame."""
    nf, nb = levels_db.shape
    env, prev, have_prev = np.empty(nf), prev_db.copy(), state[0] == 1
    for t in range(nf):
        s = 0.0
        for b in range(nb):
            d = levels_db[t, b] - prev[b]
            if have_prev and d > 0.0:
                s += d
            prev[b] = levels_db[t, b]
        env[t] = s / nb
        have_prev = True
    return env, prev, np.array([1 if have_prev else 0], dtype=np.int64)


def count_peaks(env, pre_max, post_max, pre_avg, post_avg, delta, wait) -> int:
    """librosa.util.peak_pick's rule, one frame at a time."""
    n, count, last = env.shape[0], 0, -wait - 1
    for t in range(n):
        v = env[t]
        if any(env[j] > v for j in range(max(0, t - pre_max), min(n, t + post_max + 1))):
            continue
        s, c = 0.0, 0
        for j in range(max(0, t - pre_avg), min(n, t + post_avg + 1)):
            s += env[j]
            c += 1
        if v >= s / c + delta and t - last > wait:
            count += 1
            last = t
    return count


def percussive_share(band_power: np.ndarray, silent: np.ndarray, half_width: int) -> float:
    """Energy above each band's running median over the total, non-silent frames."""
    nf, nb = band_power.shape
    perc = total = 0.0
    for b in range(nb):
        for t in range(nf):
            if silent[t] != 0.0:
                continue
            window = sorted(band_power[max(0, t - half_width) : t + half_width + 1, b])
            m = len(window)
            med = window[m // 2] if m % 2 else 0.5 * (window[m // 2 - 1] + window[m // 2])
            e = band_power[t, b]
            total += e
            if e > med:
                perc += e - med
    return perc / total if total > 0.0 else 0.0
