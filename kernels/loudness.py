"""ITU-R BS.1770-4 / EBU R128 loudness kernels.

The meter streams: :func:`kweighted_subblock_power` K-weights each block and reduces
it to per-channel mean-square power per 100 ms sub-block, carrying the filter state
and the partial sub-block across calls. Everything else (momentary 400 ms blocks with
75 % overlap, short-term 3 s, gating, loudness range) is computed from the sub-block
powers, a tiny array (10 values per second per channel), so a file processed in
blocks gives exactly the result of one piece.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit

# BS.1770-4 constants.
LUFS_OFFSET = -0.691  # eq. 2: L = -0.691 + 10 log10(sum G_i z_i)
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0  # integrated loudness (BS.1770-4 §2.8)
LRA_RELATIVE_GATE_LU = -20.0  # EBU Tech 3342
SUBBLOCKS_MOMENTARY = 4  # 400 ms
SUBBLOCKS_SHORT_TERM = 30  # 3 s
LRA_HOP_SUBBLOCKS = 10  # short-term values for LRA every 1 s (as libebur128)


def k_weighting_sos(sample_rate: float) -> np.ndarray:
    """K-weighting for any sample rate, shape ``(2, 6)``.

    Both stages are derived from their analog prototypes by the bilinear transform with
    pre-warping (the parametrisation libebur128 uses), so at 48 kHz they reproduce the
    coefficients published in BS.1770-4 Tables 1 and 2.

    Stage 1, the head's acoustic effect: a high shelf of +4 dB around 1682 Hz.
    Stage 2, the RLB weighting: a second-order high-pass at 38 Hz.
    """
    fs = float(sample_rate)
    # Stage 1: high-shelf.
    f0 = 1681.974450955533
    gain_db = 3.999843853973347
    q = 0.7071752369554196
    k = math.tan(math.pi * f0 / fs)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / q + k * k) / a0,
    ]
    # Stage 2: RLB high-pass (numerator 1, -2, 1 as in the standard).
    f0 = 38.13547087602444
    q = 0.5003270373238773
    k = math.tan(math.pi * f0 / fs)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass], dtype=np.float64)


@jit
def kweighted_subblock_power(x, sos, zi, acc, count, subblock_len):
    """K-weight ``x`` and reduce it to mean-square power per complete sub-block.

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    sos : float64 [shape=(2, 6)] from :func:`k_weighting_sos`
    zi : float64 [shape=(channels, 2, 2)] filter state
    acc : float64 [shape=(channels,)] running sum of squares of the open sub-block
    count : int, samples already in the open sub-block
    subblock_len : int, samples per 100 ms sub-block

    Returns
    -------
    power : float64 [shape=(channels, k)] mean square of each sub-block completed here
    zf, acc, count : the state for the next call
    """
    n_ch, n = x.shape
    n_done = (count + n) // subblock_len
    power = np.empty((n_ch, n_done))
    zf = zi.copy()
    acc_out = acc.copy()
    count_out = count
    inv = 1.0 / subblock_len
    b0 = sos[0, 0]
    b1 = sos[0, 1]
    b2 = sos[0, 2]
    a1 = sos[0, 4]
    a2 = sos[0, 5]
    c0 = sos[1, 0]
    c1 = sos[1, 1]
    c2 = sos[1, 2]
    d1 = sos[1, 4]
    d2 = sos[1, 5]
    for c in range(n_ch):
        z0 = zf[c, 0, 0]
        z1 = zf[c, 0, 1]
        w0 = zf[c, 1, 0]
        w1 = zf[c, 1, 1]
        s = acc[c]
        m = count
        k = 0
        xc = x[c]
        for i in range(n):
            v = xc[i]
            y = b0 * v + z0
            z0 = b1 * v - a1 * y + z1
            z1 = b2 * v - a2 * y
            u = c0 * y + w0
            w0 = c1 * y - d1 * u + w1
            w1 = c2 * y - d2 * u
            s += u * u
            m += 1
            if m == subblock_len:
                power[c, k] = s * inv
                k += 1
                s = 0.0
                m = 0
        zf[c, 0, 0] = z0
        zf[c, 0, 1] = z1
        zf[c, 1, 0] = w0
        zf[c, 1, 1] = w1
        acc_out[c] = s
        count_out = m
    return power, zf, acc_out, count_out


@jit
def block_powers(sub_power, weights, n_sub, hop):
    """Channel-weighted power of blocks of ``n_sub`` sub-blocks every ``hop`` sub-blocks.

    ``z = sum_i G_i * mean_square_i`` (BS.1770-4 eq. 2 before the logarithm).
    """
    n_ch, k = sub_power.shape
    if k < n_sub:
        return np.empty(0)
    n_blocks = (k - n_sub) // hop + 1
    out = np.empty(n_blocks)
    for b in range(n_blocks):
        start = b * hop
        total = 0.0
        for c in range(n_ch):
            w = weights[c]
            if w == 0.0:
                continue
            acc = 0.0
            for j in range(start, start + n_sub):
                acc += sub_power[c, j]
            total += w * acc / n_sub
        out[b] = total
    return out


@jit
def power_to_lufs(power):
    """``-0.691 + 10 log10(power)``; -inf for zero power."""
    if power <= 0.0:
        return -np.inf
    return LUFS_OFFSET + 10.0 * math.log10(power)


@jit
def gated_loudness(powers, relative_gate_lu):
    """Integrated loudness of block ``powers`` with the absolute (-70 LUFS) and a
    relative gate (BS.1770-4 §2.8, eqs. 3-7); -inf when every block is gated out."""
    abs_threshold = 10.0 ** ((ABSOLUTE_GATE_LUFS - LUFS_OFFSET) / 10.0)
    total = 0.0
    n = 0
    for p in powers:
        if p > abs_threshold:
            total += p
            n += 1
    if n == 0:
        return -np.inf
    rel_threshold = (total / n) * 10.0 ** (relative_gate_lu / 10.0)
    total2 = 0.0
    n2 = 0
    for p in powers:
        if p > abs_threshold and p > rel_threshold:
            total2 += p
            n2 += 1
    if n2 == 0:
        return -np.inf
    return power_to_lufs(total2 / n2)


@jit
def loudness_range(short_term_powers):
    """Loudness range per EBU Tech 3342: short-term values gated at -70 LUFS and
    -20 LU below their mean power, LRA = 95th - 10th percentile (nearest rank); 0 when
    fewer than two values survive the gates."""
    abs_threshold = 10.0 ** ((ABSOLUTE_GATE_LUFS - LUFS_OFFSET) / 10.0)
    kept = np.empty(short_term_powers.shape[0])
    n = 0
    total = 0.0
    for p in short_term_powers:
        if p > abs_threshold:
            kept[n] = p
            total += p
            n += 1
    if n < 2:
        return 0.0
    rel_threshold = (total / n) * 10.0 ** (LRA_RELATIVE_GATE_LU / 10.0)
    vals = np.empty(n)
    m = 0
    for i in range(n):
        if kept[i] > rel_threshold:
            vals[m] = power_to_lufs(kept[i])
            m += 1
    if m < 2:
        return 0.0
    vals = np.sort(vals[:m])
    lo = _percentile_sorted(vals, 10.0)
    hi = _percentile_sorted(vals, 95.0)
    return hi - lo


@jit
def _percentile_sorted(vals, q):
    """Nearest rank, rounded, as in EBU Tech 3342's own computation (and libebur128):
    ``vals[round((n - 1) q / 100)]``."""
    i = int(math.floor((vals.shape[0] - 1) * q / 100.0 + 0.5))
    return vals[i]


@jit
def max_abs_per_channel(x, peaks):
    """Running per-channel sample peak: returns ``max(peaks, max|x|)``."""
    n_ch, n = x.shape
    out = peaks.copy()
    for c in range(n_ch):
        m = out[c]
        for i in range(n):
            a = abs(x[c, i])
            if a > m:
                m = a
        out[c] = m
    return out
