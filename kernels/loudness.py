"""ITU-R BS.1770-4 / EBU R128 loudness kernels.

The meter streams: :func:`kweighted_subblock_power` K-weights each block and reduces
it to per-channel mean-square power per 100 ms sub-block, carrying the filter state
and the partial sub-block across calls. Everything else (momentary 400 ms blocks with
75 % overlap, short-term 3 s, gating, loudness range) is computed from the sub-block
powers, a tiny array (10 values per second per channel), so a file processed in
blocks gives exactly the result of one piece.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .biquad import cascade2_pair_into, cascade_coefs, pair_state, store_pair_state_into

# BS.1770-4 constants.
LUFS_OFFSET = -0.691  # eq. 2: L = -0.691 + 10 log10(sum G_i z_i)
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0  # integrated loudness (BS.1770-4 §2.8)
LRA_RELATIVE_GATE_LU = -20.0  # EBU Tech 3342
SUBBLOCKS_MOMENTARY = 4  # 400 ms
SUBBLOCKS_SHORT_TERM = 30  # 3 s
# Short-term values for the loudness range every 100 ms: EBU Tech 3342 (v3, 2016)
# asks for an overlap of at least 2.9 s between consecutive 3-s windows, 10 Hz or more
# (ffmpeg's ebur128 reads so); every 1 s (libebur128's) read up to 1.2 LU lower on
# orchestral music (an engineer's check).
LRA_HOP_SUBBLOCKS = 1


LANES = 8  # partial sums per sub-block: the squares vectorise, and stay streamable
_KW_CHUNK = 4096  # samples filtered into scratch at a time


@jit
def kweighted_subblock_power(x, sos, zi, acc, count, subblock_len):
    """K-weight ``x`` and reduce it to mean-square power per complete sub-block.

    The two filter stages run as one cascade with channel pairs as vector lanes
    (:data:`kernels.biquad.cascade_pair_into`). Each sub-block's sum of squares is kept
    as ``LANES`` partial sums, sample ``m`` of the sub-block going to sum ``m % LANES``
    in arrival order, so the sums vectorise and a stream cut anywhere gives the same
    bits (:func:`_subblocks_into`).

    Parameters
    ----------
    x : float64 [shape=(channels, n)], C-contiguous
    sos : float64 [shape=(2, 6)] from ``auralis_batch.filters.k_weighting_sos``
    zi : float64 [shape=(channels, 2, 2)] filter state
    acc : float64 [shape=(channels, LANES)] partial sums of squares of the open sub-block
    count : int, samples already in the open sub-block
    subblock_len : int, samples per 100 ms sub-block

    Returns
    -------
    power : float64 [shape=(channels, k)] mean square of each sub-block completed here
    zf, acc, count : the state for the next call
    """
    n_ch, n = x.shape
    power = np.empty((n_ch, (count + n) // subblock_len))
    zf = zi.copy()
    lanes = acc.copy()
    coefs = cascade_coefs(sos, 0, sos.shape[0])
    ybuf = np.empty((2, _KW_CHUNK))
    for c in range(0, n_ch, 2):
        c1 = c + 1 if c + 1 < n_ch else c  # an odd last channel runs in both lanes
        z = pair_state(zf, c, c1, 0, sos.shape[0])
        m = count
        k = 0
        for start in range(0, n, _KW_CHUNK):
            size = min(_KW_CHUNK, n - start)
            y0 = ybuf[0, :size]
            y1 = ybuf[1, :size]
            cascade2_pair_into(
                x[c, start : start + size], x[c1, start : start + size], y0, y1, coefs, z
            )
            m, k = _subblocks_into(y0, y1, c, c1, m, k, subblock_len, lanes, power)
        store_pair_state_into(zf, z, c, c1, 0)
    return power, zf, lanes, (count + n) % subblock_len


@jit(inline=True)
def _subblocks_into(y0, y1, c, c1, m, k, subblock_len, lanes, power):
    """Squares of the K-weighted samples ``y0``, ``y1`` (channels ``c``, ``c1``) into
    the open sub-block, which holds ``m`` samples; each sub-block completed here becomes
    ``power[:, k]``, ``k + 1``, ... Returns the new ``(m, k)``.

    Writes
    ------
    lanes : float64 [shape=(channels, LANES)] partial sums of the open sub-block
    power : float64 [shape=(channels, subblocks)] mean squares of the completed ones
    """
    inv = 1.0 / subblock_len
    size = y0.shape[0]
    i = 0
    while i < size:
        seg = min(size - i, subblock_len - m)
        _add_squares_into(lanes[c], y0, i, seg, m)
        if c1 != c:
            _add_squares_into(lanes[c1], y1, i, seg, m)
        i += seg
        m += seg
        if m == subblock_len:
            for ch in range(c, c1 + 1):
                total = 0.0
                for j in range(LANES):
                    total += lanes[ch, j]
                    lanes[ch, j] = 0.0
                power[ch, k] = total * inv
            k += 1
            m = 0
    return m, k


@jit(inline=True)
def _add_squares_into(lanes, y, i, seg, m):
    """The squares of ``y[i .. i + seg - 1]``, in order, into the partial sums of a
    sub-block that holds ``m`` samples: the groups of eight as eight register sums
    (they vectorise), then the rest.

    Writes
    ------
    lanes : float64 [shape=(LANES,)] ``lanes[(m + t) % LANES] += y[i + t] ** 2``
    """
    o = m % LANES
    s0 = lanes[o]
    s1 = lanes[(o + 1) % LANES]
    s2 = lanes[(o + 2) % LANES]
    s3 = lanes[(o + 3) % LANES]
    s4 = lanes[(o + 4) % LANES]
    s5 = lanes[(o + 5) % LANES]
    s6 = lanes[(o + 6) % LANES]
    s7 = lanes[(o + 7) % LANES]
    full = seg - seg % LANES
    for t in range(i, i + full, LANES):
        s0 += y[t] * y[t]
        s1 += y[t + 1] * y[t + 1]
        s2 += y[t + 2] * y[t + 2]
        s3 += y[t + 3] * y[t + 3]
        s4 += y[t + 4] * y[t + 4]
        s5 += y[t + 5] * y[t + 5]
        s6 += y[t + 6] * y[t + 6]
        s7 += y[t + 7] * y[t + 7]
    lanes[o] = s0
    lanes[(o + 1) % LANES] = s1
    lanes[(o + 2) % LANES] = s2
    lanes[(o + 3) % LANES] = s3
    lanes[(o + 4) % LANES] = s4
    lanes[(o + 5) % LANES] = s5
    lanes[(o + 6) % LANES] = s6
    lanes[(o + 7) % LANES] = s7
    for t in range(full, seg):  # full is a multiple of LANES: lane (o + t) % LANES
        v = y[i + t]
        lanes[(o + t) % LANES] += v * v
