"""Tempo from an onset-strength envelope: autocorrelation, a perceptual prior, octave checks.

The envelope (mean dB rise per band, :func:`kernels.spectral.level_rise`) is
detrended, autocorrelated over lags covering 40-240 BPM and twice that (for the
octave check), and scored on a grid
of 1/120 octave. The score of a beat period ``L`` is ``A(L) + A(2L) / 2`` (a real beat
repeats at twice its period too) weighted by a log-normal prior around 120 BPM, as
in Ellis (2007) "Beat tracking by dynamic programming" and librosa's ``tempo``.

Octave errors, explicitly: the winning period is halved or doubled when the
autocorrelation shows that the pulse one octave away is the real beat:

* slower when ``A(L) < 0.65 A(2L)``: the pulse at ``L`` alternates strong and weak
  (an eighth-note hi-hat between beats), so the beat is ``2L``;
* faster when ``A(L/2) > 0.9 A(L)`` and the faster tempo is within range: the pulse
  at ``L/2`` is as strong as at ``L``, so ``L`` was a bar-level period.

The period is then refined on the autocorrelation peaks at ``2L, 4L, 8L`` (each
halves the error of the frame grid), and the confidence is the normalised
autocorrelation at the chosen period, in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit

GRID_STEPS_PER_OCTAVE = 120
SLOWER_RATIO = 0.65
FASTER_RATIO = 0.9


@jit(fastmath={"reassoc", "contract"})
def band_powers(spec, band_lo, band_hi):
    """Power of each band ``[lo, hi)`` of each frame's spectrum, shape (frames, bands).

    ``spec`` is the complex ``rfft`` of the frames [shape=(frames, bins)]; the power of
    a bin is ``re**2 + im**2`` (no square root taken and undone). The sums may be
    reassociated to vectorise (NaN/Inf semantics kept).
    """
    nf = spec.shape[0]
    nb = band_lo.shape[0]
    out = np.empty((nf, nb))
    for t in range(nf):
        row = spec[t]
        for b in range(nb):
            s = 0.0
            for k in range(band_lo[b], band_hi[b]):
                c = row[k]
                s += c.real * c.real + c.imag * c.imag
            out[t, b] = s
    return out


@jit
def detrend(env, half_width):
    """``env`` minus its centred moving average over ``2 * half_width + 1`` frames."""
    n = env.shape[0]
    cs = np.zeros(n + 1)
    for i in range(n):
        cs[i + 1] = cs[i] + env[i]
    out = np.empty(n)
    for i in range(n):
        lo = max(0, i - half_width)
        hi = min(n, i + half_width + 1)
        out[i] = env[i] - (cs[hi] - cs[lo]) / (hi - lo)
    return out


@jit
def autocorrelation(x, max_lag):
    """Unbiased autocorrelation ``A[l] = mean(x[t] x[t + l])`` for ``l = 0..max_lag``."""
    n = x.shape[0]
    out = np.zeros(max_lag + 1)
    for lag in range(min(max_lag, n - 1) + 1):
        s = 0.0
        for t in range(n - lag):
            s += x[t] * x[t + lag]
        out[lag] = s / (n - lag)
    return out


@jit
def _at(a, lag):
    """Linear interpolation of ``a`` at a fractional lag (0 outside)."""
    if lag < 0.0 or lag > a.shape[0] - 1:
        return 0.0
    i = int(lag)
    if i >= a.shape[0] - 1:
        return a[a.shape[0] - 1]
    f = lag - i
    return a[i] * (1.0 - f) + a[i + 1] * f


@jit
def _peak_near(a, lag, radius):
    """Largest value of ``a`` within ``radius`` frames of ``lag``, and its refined position.

    The position is the vertex of the parabola through the best sample and its two
    neighbours (sub-frame resolution).
    """
    n = a.shape[0]
    lo = max(1, int(math.floor(lag - radius)))
    hi = min(n - 2, int(math.ceil(lag + radius)))
    if hi < lo:
        return _at(a, lag), lag
    best = lo
    for j in range(lo, hi + 1):
        if a[j] > a[best]:
            best = j
    y0 = a[best - 1]
    y1 = a[best]
    y2 = a[best + 1]
    den = y0 - 2.0 * y1 + y2
    shift = 0.0
    if den < 0.0:
        shift = 0.5 * (y0 - y2) / den
        if shift > 0.5:
            shift = 0.5
        elif shift < -0.5:
            shift = -0.5
    return y1, best + shift


@jit
def tempo_from_acf(acf, frame_rate, min_bpm, max_bpm, prior_bpm, prior_octaves):
    """Tempo (BPM) and confidence in [0, 1] from an autocorrelation of the envelope.

    ``acf`` must reach at least twice the lag of ``min_bpm``. Returns ``(prior_bpm,
    0.0)`` when the envelope carries no periodicity (zero energy or no positive peak).
    """
    if acf.shape[0] < 3 or acf[0] <= 0.0:
        return prior_bpm, 0.0
    a = acf / acf[0]
    lag_min = 60.0 * frame_rate / max_bpm
    lag_max = 60.0 * frame_rate / min_bpm
    n_grid = int(math.log2(max_bpm / min_bpm) * GRID_STEPS_PER_OCTAVE) + 1
    best = 0.0
    period = 0.0
    for g in range(n_grid):
        bpm = min_bpm * 2.0 ** (g / GRID_STEPS_PER_OCTAVE)
        lag = 60.0 * frame_rate / bpm
        s = max(_at(a, lag), 0.0) + 0.5 * max(_at(a, 2.0 * lag), 0.0)
        z = math.log2(bpm / prior_bpm) / prior_octaves
        s *= math.exp(-0.5 * z * z)
        if s > best:
            best = s
            period = lag
    if best <= 0.0:
        return prior_bpm, 0.0
    # Snap to the autocorrelation peak, then the octave checks (see module docstring).
    v, period = _peak_near(a, period, 1.5)
    for _ in range(2):
        if 2.0 * period <= lag_max * 1.04:
            v2, p2 = _peak_near(a, 2.0 * period, 2.0)
            if v < SLOWER_RATIO * v2:
                v, period = v2, p2
                continue
        if 0.5 * period >= lag_min * 0.96:
            vh, ph = _peak_near(a, 0.5 * period, 1.0)
            if vh > FASTER_RATIO * v:
                v, period = vh, ph
                continue
        break
    # Refine on the peaks at multiples of the period.
    k = 2.0
    while k * period < a.shape[0] - 2 and k <= 8.0:
        vk, pk = _peak_near(a, k * period, 1.5)
        if vk > 0.5 * v:
            period = pk / k
        k *= 2.0
    bpm = 60.0 * frame_rate / period
    confidence = min(max(v, 0.0), 1.0)
    return bpm, confidence
