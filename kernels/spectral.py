"""Spectral fingerprint kernels: per-frame features and the temporal traits.

The caller frames a mono (downmixed, possibly decimated) stream, windows it and takes
``|rfft|``; these kernels turn magnitude frames into features. Definitions follow
librosa where librosa has the feature, so the two can be compared frame by frame:

* centroid: magnitude-weighted mean frequency (``librosa.feature.spectral_centroid``);
* rolloff: lowest bin frequency below which ``roll_percent`` of the summed magnitude
  lies (``spectral_rolloff``);
* flatness: geometric over arithmetic mean of the power spectrum, each bin floored at
  ``1e-10`` (``spectral_flatness``).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit

FLATNESS_AMIN = 1e-10  # librosa's amin for spectral_flatness
# Sums may be reassociated (and multiply-adds fused) so they vectorise; both flags keep
# NaN/Inf semantics. Per-frame features do not depend on how the stream was cut.
SUMS = {"reassoc", "contract"}


@jit(fastmath=SUMS)
def downmix_stats(x, acc):
    """Mono downmix of ``x`` and running time-domain statistics.

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    acc : float64 [shape=(5,)], state updated in place: sample peak (max |x|), sum of
        squares over every channel, and the front pair's sums L*L, R*R, L*R (for mono
        the one channel stands for both).

    Returns
    -------
    mono : float64 [shape=(n,)], the mean of the channels
    """
    ch, n = x.shape
    mono = np.empty(n)
    peak = acc[0]
    left = x[0]
    right = x[1 if ch > 1 else 0]
    ll = 0.0
    rr = 0.0
    lr = 0.0
    for i in range(n):  # the front pair, in one pass
        a = left[i]
        b = right[i]
        ll += a * a
        rr += b * b
        lr += a * b
        mono[i] = a + b if ch > 1 else a
        peak = max(peak, abs(a), abs(b))
    ss = ll + rr if ch > 1 else ll
    for c in range(2, ch):  # any further channels
        row = x[c]
        for i in range(n):
            v = row[i]
            mono[i] += v
            ss += v * v
            peak = max(peak, abs(v))
    inv = 1.0 / ch
    for i in range(n):
        mono[i] *= inv
    acc[0] = peak
    acc[1] += ss
    acc[2] += ll
    acc[3] += rr
    acc[4] += lr
    return mono


@jit(fastmath=SUMS)
def frame_features(
    signal, hop, spec, silence_ms, band_lo, band_hi, bin_hz, roll_percent, prev, state
):
    """Features of a run of frames.

    Parameters
    ----------
    signal : float64 [shape=(m,)], contiguous; frame ``t`` is ``signal[t * hop :][:n]``
        unwindowed (for its mean square), ``n = 2 * (bins - 1)``
    hop : int, samples between frames
    spec : complex128 [shape=(frames, bins)], ``rfft`` of the windowed frames
    silence_ms : float, frames with a smaller mean square are silent
    band_lo, band_hi : int64 [shape=(bands,)], bin range ``[lo, hi)`` of each band
    bin_hz : float, frequency step between bins
    roll_percent : float in (0, 1)
    prev : float64 [shape=(bins,)], L2-normalised magnitude of the previous frame (state)
    state : int64 [shape=(1,)], 1 when ``prev`` holds a non-silent frame (state)

    Returns
    -------
    out : float64 [shape=(frames, bands + 6)]: band powers, total power, centroid (Hz),
        rolloff (Hz), flatness, flux (L2 distance between consecutive L2-normalised
        magnitude spectra; NaN next to a silent frame), silent flag (0 or 1). The
        spectral columns are NaN for silent frames.
    """
    nf, nb = spec.shape
    n = 2 * (nb - 1)
    nbands = band_lo.shape[0]
    out = np.empty((nf, nbands + 6))
    m = np.empty(nb)
    for t in range(nf):
        ms = 0.0
        start = t * hop
        for i in range(start, start + n):
            ms += signal[i] * signal[i]
        ms /= n
        total_p = 0.0
        total_m = 0.0
        weighted = 0.0
        for k in range(nb):
            c = spec[t, k]
            p = c.real * c.real + c.imag * c.imag
            v = math.sqrt(p)
            m[k] = v
            total_p += p
            total_m += v
            weighted += v * (k * bin_hz)
        for b in range(nbands):
            s = 0.0
            for k in range(band_lo[b], band_hi[b]):
                s += m[k] * m[k]
            out[t, b] = s
        out[t, nbands] = total_p
        silent = ms < silence_ms or total_m <= 0.0
        out[t, nbands + 5] = 1.0 if silent else 0.0
        if silent:
            for j in range(1, 5):
                out[t, nbands + j] = np.nan
            state[0] = 0
            continue
        out[t, nbands + 1] = weighted / total_m
        threshold = roll_percent * total_m
        cum = 0.0
        roll = (nb - 1) * bin_hz
        for k in range(nb):
            cum += m[k]
            if cum >= threshold:
                roll = k * bin_hz
                break
        out[t, nbands + 2] = roll
        # Geometric mean of the floored power: one log per 16 bins (the products stay
        # within 1e-160 .. 1e96 for |X| <= n / 2, far inside float64; a product that
        # overflows is redone bin by bin).
        log_sum = 0.0
        p_sum = 0.0
        k = 0
        while k < nb:
            prod = 1.0
            stop = min(nb, k + 16)
            for j in range(k, stop):
                pt = m[j] * m[j]
                if pt < FLATNESS_AMIN:
                    pt = FLATNESS_AMIN
                prod *= pt
                p_sum += pt
            if prod < math.inf:
                log_sum += math.log(prod)
            else:  # an absurdly loud frame (|X| beyond ~1e9): one log per bin
                for j in range(k, stop):
                    log_sum += math.log(max(m[j] * m[j], FLATNESS_AMIN))
            k = stop
        out[t, nbands + 3] = math.exp(log_sum / nb) / (p_sum / nb)
        inv_norm = 1.0 / math.sqrt(total_p)
        if state[0] == 1:
            d = 0.0
            for k in range(nb):
                e = m[k] * inv_norm - prev[k]
                d += e * e
                prev[k] = m[k] * inv_norm
            out[t, nbands + 4] = math.sqrt(d)
        else:
            out[t, nbands + 4] = np.nan
            for k in range(nb):
                prev[k] = m[k] * inv_norm
        state[0] = 1
    return out


@jit
def windowed_frames_into(signal, hop, window, out):
    """Fill ``out[t] = signal[t * hop :][:n] * window`` for every row ``t`` of ``out``
    [shape=(count, n), C-contiguous]: frames ready for a batched FFT. Returns ``out``."""
    count, n = out.shape
    for t in range(count):
        start = t * hop
        for i in range(n):
            out[t, i] = signal[start + i] * window[i]
    return out


@jit
def level_rise(levels_db, prev_db, state):
    """Onset strength: mean over bands of the rise in level since the previous frame.

    Parameters
    ----------
    levels_db : float64 [shape=(frames, bands)], floored band levels
    prev_db : float64 [shape=(bands,)], previous frame's levels (state)
    state : int64 [shape=(1,)], 1 when ``prev_db`` holds a frame (state)

    Returns
    -------
    env : float64 [shape=(frames,)], half-wave rectified rise, averaged over bands
    """
    nf, nb = levels_db.shape
    env = np.zeros(nf)
    for t in range(nf):
        s = 0.0
        for b in range(nb):
            db = levels_db[t, b]
            if state[0] == 1:
                d = db - prev_db[b]
                if d > 0.0:
                    s += d
            prev_db[b] = db
        env[t] = s / nb
        state[0] = 1
    return env


@jit
def percussive_share(band_power, silent, half_width):
    """Share of energy in short bursts: a median-filter harmonic/percussive split.

    Each band's harmonic part is its median over ``2 * half_width + 1`` frames (what
    sustains; fewer at the edges); the percussive part is what rises above it. Returns
    the percussive energy over the total, over non-silent frames, in [0, 1] (0.0 with
    no energy). The window slides as a sorted array: one removal and one insertion
    per frame.
    """
    nf, nb = band_power.shape
    srt = np.empty(2 * half_width + 1)
    perc = 0.0
    total = 0.0
    for b in range(nb):
        n = 0
        for j in range(min(half_width, nf)):  # the window of frame 0, minus its newest
            n = _sorted_insert(srt, n, band_power[j, b])
        for t in range(nf):
            old = t - half_width - 1
            if old >= 0:
                n = _sorted_remove(srt, n, band_power[old, b])
            new = t + half_width
            if new < nf:
                n = _sorted_insert(srt, n, band_power[new, b])
            if silent[t] != 0.0:
                continue
            if n % 2 == 1:
                med = srt[n // 2]
            else:
                med = 0.5 * (srt[n // 2 - 1] + srt[n // 2])
            e = band_power[t, b]
            total += e
            if e > med:
                perc += e - med
    if total <= 0.0:
        return 0.0
    return perc / total


@jit(inline="always")
def _sorted_insert(srt, n, v):
    i = n
    while i > 0 and srt[i - 1] > v:
        srt[i] = srt[i - 1]
        i -= 1
    srt[i] = v
    return n + 1


@jit(inline="always")
def _sorted_remove(srt, n, v):
    i = 0
    while srt[i] != v:
        i += 1
    for j in range(i, n - 1):
        srt[j] = srt[j + 1]
    return n - 1


@jit
def count_peaks(env, pre_max, post_max, pre_avg, post_avg, delta, wait):
    """Number of onsets picked from ``env`` (librosa.util.peak_pick's rule).

    A frame is an onset when it is the maximum of ``env[t - pre_max : t + post_max + 1]``,
    exceeds the mean of ``env[t - pre_avg : t + post_avg + 1]`` by ``delta``, and
    comes at least ``wait`` frames after the previous onset.
    """
    n = env.shape[0]
    count = 0
    last = -wait - 1
    for t in range(n):
        v = env[t]
        is_max = True
        for j in range(max(0, t - pre_max), min(n, t + post_max + 1)):
            if env[j] > v:
                is_max = False
                break
        if not is_max:
            continue
        s = 0.0
        c = 0
        for j in range(max(0, t - pre_avg), min(n, t + post_avg + 1)):
            s += env[j]
            c += 1
        if v < s / c + delta:
            continue
        if t - last > wait:
            count += 1
            last = t
    return count
