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


# Columns of the frame-feature table after its ``bands`` band-power columns: column
# ``bands + COL_CENTROID`` holds the centroid, and so on. The wrapper reads the table
# with the same constants.
COL_TOTAL_POWER = 0  # power of the whole spectrum
COL_CENTROID = 1  # Hz
COL_ROLLOFF = 2  # Hz
COL_FLATNESS = 3  # geometric over arithmetic mean of the power spectrum
COL_FLUX = 4  # L2 distance between consecutive L2-normalised magnitude spectra
COL_SILENT = 5  # 1.0 for a silent frame, else 0.0
N_FEATURE_COLS = 6  # columns after the band powers


#: ``acc`` of :func:`downmix_stats`: the sum of squares over every channel; the front
#: pair's sums L*L, R*R and L*R; the DC blocker's last input and output; then per
#: channel ``c`` its sum, largest and smallest
#: sample at ``DMX_CHANNELS + DMX_PER_CHANNEL * c + DMX_SUM`` / ``DMX_MAX`` /
#: ``DMX_MIN``. With the sums the caller takes each channel's mean (its DC offset) out
#: of every statistic exactly: the peak about the mean from the largest and smallest
#: sample, the squares from ``sum(x^2) - n m^2``.
DMX_SS, DMX_LL, DMX_RR, DMX_LR, DMX_DC_X, DMX_DC_Y = range(6)
DMX_CHANNELS = 6
DMX_SUM, DMX_MAX, DMX_MIN = range(3)
DMX_PER_CHANNEL = 3


@jit(fastmath=SUMS)
def downmix_stats(x, acc, dc_coef):
    """Mono downmix of ``x`` without its DC offset, and running time-domain statistics.

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    acc : float64 [shape=(DMX_CHANNELS + DMX_PER_CHANNEL * channels,)], state: see
        :data:`DMX_SS` (``auralis_batch.fingerprint.downmix_state`` starts it). For
        mono the one channel stands for both of the front pair. Not modified.
    dc_coef : float, pole of the one-pole DC blocker ``y[i] = m[i] - m[i-1] + dc_coef
        y[i-1]`` (``exp(-2 pi f_c / fs)``) the mean ``m`` of the channels goes through

    Returns
    -------
    mono : float64 [shape=(n,)], the mean of the channels through the DC blocker
    acc : the new state (a new array)
    """
    ch, n = x.shape
    mono = np.empty(n)
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
    ss = ll + rr if ch > 1 else ll
    for c in range(2, ch):  # any further channels
        row = x[c]
        for i in range(n):
            v = row[i]
            mono[i] += v
            ss += v * v
    inv = 1.0 / ch
    for i in range(n):
        mono[i] *= inv
    out = acc.copy()
    prev_x = out[DMX_DC_X]
    prev_y = out[DMX_DC_Y]
    for i in range(n):  # the one serial loop
        m = mono[i]
        prev_y = m - prev_x + dc_coef * prev_y
        prev_x = m
        mono[i] = prev_y
    out[DMX_DC_X] = prev_x
    out[DMX_DC_Y] = prev_y
    out[DMX_SS] += ss
    out[DMX_LL] += ll
    out[DMX_RR] += rr
    out[DMX_LR] += lr
    for c in range(ch):
        row = x[c]
        base = DMX_CHANNELS + DMX_PER_CHANNEL * c
        total = 0.0
        hi = out[base + DMX_MAX]
        lo = out[base + DMX_MIN]
        for i in range(n):
            v = row[i]
            total += v
            hi = max(hi, v)
            lo = min(lo, v)
        out[base + DMX_SUM] += total
        out[base + DMX_MAX] = hi
        out[base + DMX_MIN] = lo
    return mono, out


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
    prev : float64 [shape=(bins,)], state: L2-normalised magnitude of the previous
        frame. Not modified.
    state : int64 [shape=(1,)], state: 1 when ``prev`` holds a non-silent frame. Not
        modified.

    Returns
    -------
    out : float64 [shape=(frames, bands + N_FEATURE_COLS)]: the band powers, then the
        ``COL_*`` columns after them (total power, centroid in Hz, rolloff in Hz,
        flatness, flux, silent flag). Flux is NaN next to a silent frame; the spectral
        columns are NaN for silent frames.
    prev, state : the new state (new arrays)
    """
    nf, nb = spec.shape
    n = 2 * (nb - 1)
    nbands = band_lo.shape[0]
    out = np.empty((nf, nbands + N_FEATURE_COLS))
    m = np.empty(nb)
    prev = prev.copy()
    have_prev = state[0] == 1
    for t in range(nf):
        row = out[t]
        ms = _mean_square(signal, t * hop, n)
        total_p, total_m, weighted = _magnitudes(spec[t], bin_hz, m)
        _band_powers_of(m, band_lo, band_hi, row)
        row[nbands + COL_TOTAL_POWER] = total_p
        silent = ms < silence_ms or total_m <= 0.0
        row[nbands + COL_SILENT] = 1.0 if silent else 0.0
        if silent:
            for j in range(COL_CENTROID, COL_FLUX + 1):
                row[nbands + j] = np.nan
            have_prev = False
            continue
        row[nbands + COL_CENTROID] = weighted / total_m
        row[nbands + COL_ROLLOFF] = _rolloff(m, roll_percent * total_m, bin_hz)
        row[nbands + COL_FLATNESS] = _flatness(m)
        row[nbands + COL_FLUX] = _flux(m, 1.0 / math.sqrt(total_p), prev, have_prev)
        have_prev = True
    new_state = state.copy()
    new_state[0] = 1 if have_prev else 0
    return out, prev, new_state


@jit(fastmath=SUMS, inline="always")
def _mean_square(signal, start, n):
    """Mean square of ``signal[start : start + n]``."""
    ms = 0.0
    for i in range(start, start + n):
        ms += signal[i] * signal[i]
    return ms / n


@jit(fastmath=SUMS, inline="always")
def _magnitudes(spec_row, bin_hz, m):
    """Fill ``m`` with ``|spec_row|``; return total power, total magnitude and the
    frequency-weighted magnitude sum (the centroid's numerator)."""
    total_p = 0.0
    total_m = 0.0
    weighted = 0.0
    for k in range(spec_row.shape[0]):
        c = spec_row[k]
        p = c.real * c.real + c.imag * c.imag
        v = math.sqrt(p)
        m[k] = v
        total_p += p
        total_m += v
        weighted += v * (k * bin_hz)
    return total_p, total_m, weighted


@jit(fastmath=SUMS, inline="always")
def _band_powers_of(m, band_lo, band_hi, row):
    """Write the power of each band ``[lo, hi)`` of magnitudes ``m`` to ``row[:bands]``."""
    for b in range(band_lo.shape[0]):
        s = 0.0
        for k in range(band_lo[b], band_hi[b]):
            s += m[k] * m[k]
        row[b] = s


@jit(fastmath=SUMS, inline="always")
def _rolloff(m, threshold, bin_hz):
    """Lowest bin frequency at which the cumulated magnitude reaches ``threshold``."""
    nb = m.shape[0]
    cum = 0.0
    for k in range(nb):
        cum += m[k]
        if cum >= threshold:
            return k * bin_hz
    return (nb - 1) * bin_hz


@jit(fastmath=SUMS, inline="always")
def _flatness(m):
    """Geometric over arithmetic mean of the power ``m**2``, each bin floored at
    :data:`FLATNESS_AMIN`.

    One log per 16 bins: the products stay within 1e-160 .. 1e96 for |X| <= n / 2, far
    inside float64; a product that overflows (|X| beyond ~1e9) is redone bin by bin.
    """
    nb = m.shape[0]
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
        else:
            for j in range(k, stop):
                log_sum += math.log(max(m[j] * m[j], FLATNESS_AMIN))
        k = stop
    return math.exp(log_sum / nb) / (p_sum / nb)


@jit(fastmath=SUMS, inline="always")
def _flux(m, inv_norm, prev, have_prev):
    """L2 distance between ``m * inv_norm`` and ``prev`` (NaN without a previous
    frame); writes ``m * inv_norm`` to ``prev``."""
    if have_prev:
        d = 0.0
        for k in range(m.shape[0]):
            e = m[k] * inv_norm - prev[k]
            d += e * e
            prev[k] = m[k] * inv_norm
        return math.sqrt(d)
    for k in range(m.shape[0]):
        prev[k] = m[k] * inv_norm
    return np.nan


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
