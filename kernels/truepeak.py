"""True-peak detection by polyphase FIR oversampling (ITU-R BS.1770-4 Annex 2).

The interpolator is a Kaiser-windowed sinc split into ``oversample`` phases. Phase 0
is the original sample instant; the other phases are the inter-sample values a DAC
reconstructs. :func:`true_peak_block` carries the last ``taps - 1`` input samples per
channel as state so a file processed in blocks gives the same peaks as in one piece.
(The limiter, which needs a value per window rather than one per block, has its own
detector in :mod:`kernels.dynamics`.)
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

#: Relative margin on the skip bound: a tap sum evaluated in floating point can exceed
#: the rounded ``gain * max|x|`` by a few ulps (24 terms: < 3e-15 relative), and a
#: chunk skipped on an exact tie would then lose that ulp, or lose it in one stream cut
#: and not another.
BOUND_MARGIN = 1e-12


@jit(inline=True)
def _bank_gain(bank):
    """Largest sum of |taps| over the phases, plus :data:`BOUND_MARGIN`: a bound with
    ``|interpolated| <= gain * max|input|`` even for the rounded sums."""
    g = 0.0
    for p in range(bank.shape[0]):
        acc = 0.0
        for k in range(bank.shape[1]):
            acc += abs(bank[p, k])
        if acc > g:
            g = acc
    return g * (1.0 + BOUND_MARGIN)


CHUNK = 32
RUN_CHUNKS = 8


@jit
def true_peak_block(x, bank, history, floor, sample_floor):
    """Per-channel max |interpolated sample| of one block (BS.1770-4 Annex 2).

    Exact, but fast: a chunk of output positions is skipped when the bound
    ``gain * max|input window|`` cannot beat the running maximum (or ``floor``, the
    peak already found in earlier blocks); on music most chunks are. The bound reads
    per-chunk maxima of |x| from one vectorised pass (:func:`_chunk_maxima_into`).
    Short runs of chunks that need exact values are interpolated with the outputs as
    vector lanes, each output summing its taps in order, the bits of a per-output loop
    (:func:`_exact_peak_into`).

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    bank : float64 [shape=(phases, taps)] from ``auralis_batch.filters.polyphase_bank``
    history : float64 [shape=(channels, taps - 1)], last input samples of the previous block
    floor : float64 [shape=(channels,)], peaks known so far (zeros to start)
    sample_floor : float64 [shape=(channels,)], sample peaks known so far

    Returns
    -------
    peaks : float64 [shape=(channels,)] ``max(floor, true peak of this block)``, linear
    sample_peaks : float64 [shape=(channels,)] ``max(sample_floor, max|x|)``, linear
    history : float64 [shape=(channels, taps - 1)] state for the next block
    """
    n_ch, n = x.shape
    hist_len = bank.shape[1] - 1
    gain = _bank_gain(bank)
    peaks = floor.copy()
    sample_peaks = sample_floor.copy()
    new_hist = np.empty_like(history)
    xmax = np.empty((n + CHUNK - 1) // CHUNK)
    win = np.empty(RUN_CHUNKS * CHUNK + hist_len)
    out = np.empty(RUN_CHUNKS * CHUNK)
    for c in range(n_ch):
        sample_peaks[c] = _chunk_maxima_into(x[c], xmax, sample_peaks[c])
        hmax = 0.0
        for t in range(hist_len):
            hmax = max(hmax, abs(history[c, t]))
        # Phase 0 reproduces the samples exactly (a unit impulse), so the block's
        # sample peak is already one of the values: start from it, and interpolate
        # only the other phases.
        best = max(peaks[c], sample_peaks[c])
        peaks[c] = _exact_peak_into(x[c], history[c], bank, xmax, hmax, best, gain, win, out)
        _next_history_into(history[c], x[c], new_hist[c])
    return peaks, sample_peaks, new_hist


@jit(inline=True)
def _chunk_maxima_into(xc, xmax, peak):
    """Largest |sample| of each chunk of :data:`CHUNK` samples of one channel; returns
    ``max(peak, max|xc|)``.

    Writes
    ------
    xmax : float64 [shape=(ceil(n / CHUNK),)] ``max |xc|`` over chunk ``q``
    """
    n = xc.shape[0]
    for q in range(xmax.shape[0]):
        m = 0.0
        for t in range(q * CHUNK, min((q + 1) * CHUNK, n)):
            a = abs(xc[t])
            if a > m:
                m = a
        xmax[q] = m
        if m > peak:
            peak = m
    return peak


@jit(inline=True)
def _exact_peak_into(xc, hist, bank, xmax, hmax, best, gain, win, out):
    """Largest |interpolated value| of one channel, or ``best`` if none beats it.

    Chunks whose bound ``gain * max|input window|`` (:func:`_window_max`) cannot beat
    ``best`` are skipped; runs of up to :data:`RUN_CHUNKS` chunks that can are
    interpolated (phases 1.. of ``bank``) over ``hist`` then ``xc`` as one window, and
    ``best`` keeps up between runs.

    Writes
    ------
    win, out : float64 scratch, ``RUN_CHUNKS * CHUNK (+ taps - 1)`` long
    """
    n = xc.shape[0]
    n_ph = bank.shape[0]
    hist_len = hist.shape[0]
    n_chunks = xmax.shape[0]
    n_back = (hist_len + CHUNK - 1) // CHUNK  # earlier chunks a window reaches into
    j = 0
    while j < n_chunks:
        j2 = j  # a short run of chunks that need exact values, so best keeps up
        while (
            j2 < n_chunks
            and j2 - j < RUN_CHUNKS
            and _window_max(xmax, hmax, j2, n_back) * gain > best
        ):
            j2 += 1
        if j2 == j:  # chunk j cannot beat best
            j += 1
            continue
        lo = j * CHUNK
        size = min(j2 * CHUNK, n) - lo
        # the run's inputs: history then x, as one window
        for t in range(size + hist_len):
            u = lo + t
            win[t] = hist[u] if u < hist_len else xc[u - hist_len]
        for p in range(1, n_ph):
            _interpolate_into(bank[p], win, size, out)
            for i in range(size):
                a = abs(out[i])
                if a > best:
                    best = a
        j = j2
    return best


@jit(inline=True)
def _next_history_into(hist, xc, out):
    """The history for the next block.

    Writes
    ------
    out : float64 [shape=(taps - 1,)] the last ``taps - 1`` samples of ``hist``
        followed by ``xc``
    """
    hist_len = hist.shape[0]
    n = xc.shape[0]
    if n >= hist_len:
        for i in range(hist_len):
            out[i] = xc[n - hist_len + i]
    else:
        for i in range(hist_len - n):
            out[i] = hist[n + i]
        for i in range(n):
            out[hist_len - n + i] = xc[i]


@jit(inline=True)
def _interpolate_into(taps, win, size, out):
    """One phase of the interpolator over ``size`` outputs, each summed in tap order
    (so the bits of a plain per-output loop), eight taps per pass over the outputs: the
    outputs are vector lanes and ``out`` is loaded and stored once per eight
    multiply-adds instead of once per tap.

    Writes
    ------
    out : float64 [shape=(>= size,)] ``out[i] = sum_k taps[k] * win[i + k]``, ``i < size``
    """
    n_taps = taps.shape[0]
    for i in range(size):
        out[i] = 0.0
    k = 0
    while k + 8 <= n_taps:
        b0 = taps[k]
        b1 = taps[k + 1]
        b2 = taps[k + 2]
        b3 = taps[k + 3]
        b4 = taps[k + 4]
        b5 = taps[k + 5]
        b6 = taps[k + 6]
        b7 = taps[k + 7]
        for i in range(size):
            w = i + k
            out[i] = (
                out[i]
                + b0 * win[w]
                + b1 * win[w + 1]
                + b2 * win[w + 2]
                + b3 * win[w + 3]
                + b4 * win[w + 4]
                + b5 * win[w + 5]
                + b6 * win[w + 6]
                + b7 * win[w + 7]
            )
        k += 8
    while k < n_taps:
        b = taps[k]
        for i in range(size):
            out[i] += b * win[i + k]
        k += 1


@jit(inline=True)
def _window_max(xmax, hmax, j, n_back):
    """Bound on |input| over output chunk ``j``'s interpolation window: its own chunk,
    the ``n_back`` before it, and the history when the window reaches into it."""
    m = xmax[j]
    for s in range(1, n_back + 1):
        if j - s >= 0:
            if xmax[j - s] > m:
                m = xmax[j - s]
        elif hmax > m:
            m = hmax
    return m
