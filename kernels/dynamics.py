"""Dynamics kernels: feed-forward compressor and true-peak lookahead limiter.

Both are stateful: every call takes the state the previous call returned and returns
the new state, so a file processed in blocks of any size gives exactly the samples of
one piece. Neither kernel mutates its inputs. Their parameter and state arrays have
named layouts (``COMP_*``, ``LIM_*``) that the wrappers in ``auralis_batch.dynamics``
import; ``auralis_batch.dynamics`` allocates the limiter's initial state.
"""

from __future__ import annotations

import math

import numpy as np

from ._bits import bits_f64, f64_bits
from ._jit import jit

# ----------------------------------------------------------------------- compressor
#: ``params`` of :func:`compressor`: threshold_db, ratio, knee_db, attack_coef,
#: release_coef, makeup_db (coefficients ``exp(-1 / (time_s * sample_rate))``).
COMP_THRESHOLD, COMP_RATIO, COMP_KNEE, COMP_ATTACK, COMP_RELEASE, COMP_MAKEUP = range(6)
COMP_N_PARAMS = 6
#: ``state`` of :func:`compressor`: the smoothed gain reduction ``y_L``, dB (0 to start).
COMP_GR_DB = 0
COMP_N_STATE = 1
#: Smoothed gain reduction below this (dB) snaps to exactly 0: the signal is then
#: multiplied by the makeup gain alone (bit-exact transparency below the knee).
GR_SNAP_DB = 1e-9
_DB_PER_NEPER = 20.0 / math.log(10.0)
#: Samples per chunk of the compressor's three passes (fits L1 with its scratch).
COMP_CHUNK = 1024

# fdlibm e_log.c / e_exp.c constants (Sun Microsystems, freely redistributable): a
# log and an exp of about 1 ulp written with + - * / only, so LLVM vectorises them
# and the vector body and the scalar remainder give identical bits (a libm call would
# do neither, and SVML's vector log differs from the scalar one in the last bit).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SQRT2 = 1.4142135623730951
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000


@jit(ieee_division=True, inline=True)
def _static_curve_into(peak, m_bits, thr, ratio, knee, knee_start, out):
    """Static gain reduction (dB, >= 0) of linear peaks: Giannoulis, Massberg & Reiss
    (2012), eq. 4, returned as ``x_G - y_G``: 0 below ``T - W/2``,
    ``(1 - 1/R)(x_G - T + W/2)^2 / (2W)`` in the knee, ``(x_G - T)(1 - 1/R)`` above.

    ``ln(peak) = k ln 2 + ln(m)``, ``m`` in ``[sqrt(2)/2, sqrt(2))``, and ``ln(m)`` as
    in fdlibm's ``__ieee754_log`` (``s = f / (2 + f)``, a degree-14 odd series in
    ``s``): about 1 ulp. Branch-free, so the loops vectorise.

    Writes
    ------
    out : float64 [shape=(m,)] the reduction of ``peak[i]`` (in dBFS), exactly 0 at or
        below ``knee_start`` (linear), for ``i < m = out.shape[0]``
    m_bits : int64 [shape=(m,)] scratch
    """
    m = out.shape[0]
    for i in range(m):
        m_bits[i] = (f64_bits(peak[i]) & _MANTISSA) | _ONE_BITS
    slope = 1.0 - 1.0 / ratio
    half_knee = 0.5 * knee
    inv_2knee = 1.0 / (2.0 * knee) if knee > 0.0 else 0.0
    for i in range(m):
        p = peak[i]
        k = float((f64_bits(p) >> 52) - 1023)
        f = bits_f64(m_bits[i])
        big = f > _SQRT2
        f = 0.5 * f if big else f
        k = k + 1.0 if big else k
        f = f - 1.0
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        r = w * (_LG2 + w * (_LG4 + w * _LG6)) + z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
        hfsq = 0.5 * f * f
        ln = k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)
        level = ln * _DB_PER_NEPER
        level = math.inf if p > 1.7976931348623157e308 else level
        # Giannoulis eq. 4 as selects
        over = level - thr
        t = over + half_knee
        in_knee = 2.0 * over <= knee and knee > 0.0
        xl = slope * t * t * inv_2knee if in_knee else over * slope
        out[i] = xl if p > knee_start else 0.0


@jit(ieee_division=True, inline=True)
def _exp(x):
    """``exp(x)`` for ``x <= 0`` as fdlibm's ``__ieee754_exp`` (about 1 ulp): the
    reduction ``x = k ln 2 + r`` and a degree-10 rational approximation of ``exp(r)``;
    ``2**k`` is applied by the caller through the exponent bits."""
    k = math.floor(x * _INV_LN2 + 0.5)
    hi = x - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    return 1.0 - ((lo - (r * c) / (2.0 - c)) - hi), k


@jit(ieee_division=True, inline=True)
def _gains_into(yl, makeup, makeup_lin, g, scale_bits):
    """Linear output gains of gain reductions ``yl`` (dB).

    Writes
    ------
    g : float64 [shape=(m,)] ``10 ** ((makeup - yl[i]) / 20)``, exactly ``makeup_lin``
        where ``yl[i] == 0`` (the transparent case), 0 where ``yl[i]`` is infinite
    scale_bits : int64 [shape=(m,)] scratch
    """
    m = g.shape[0]
    for i in range(m):
        x = (makeup - yl[i]) / _DB_PER_NEPER
        x = -700.0 if x < -700.0 else x  # 2**k stays a normal number
        x = 700.0 if x > 700.0 else x
        e, k = _exp(x)
        g[i] = e
        scale_bits[i] = (int(k) + 1023) << 52
    for i in range(m):
        v = yl[i]
        gi = g[i] * bits_f64(scale_bits[i])
        gi = 0.0 if v > 1e300 else gi  # an infinite reduction mutes, as exp(-inf) would
        g[i] = makeup_lin if v == 0.0 else gi


@jit(ieee_division=True, inline=True)
def _linked_peak_into(x, start, pk):
    """Stereo-linked level: the largest |sample| over channels (NaN never wins).

    Writes
    ------
    pk : float64 [shape=(m,)] ``max_c |x[c, start + i]|`` for ``i < m = pk.shape[0]``
    """
    m = pk.shape[0]
    pk[:] = 0.0
    for c in range(x.shape[0]):
        xc = x[c, start : start + m]
        for i in range(m):
            a = abs(xc[i])
            pk[i] = a if a > pk[i] else pk[i]


@jit(ieee_division=True, inline=True)
def _smooth_into(xl, yl, a_att, b_att, a_rel, b_rel, out):
    """Smooth branching peak detector (Giannoulis et al. eq. 17) over static gain
    reductions ``xl``, from ``yl``; returns the last ``y_L``. The one serial loop.

    Writes
    ------
    out : float64 [shape=(m,)] ``y_L`` per sample, dB; below :data:`GR_SNAP_DB` exactly 0
    """
    for i in range(xl.shape[0]):
        v = xl[i]
        att = a_att * yl + b_att * v
        rel = a_rel * yl + b_rel * v
        yl = att if v > yl else rel  # selects, not branches: no mispredictions
        yl = 0.0 if yl < GR_SNAP_DB else yl
        out[i] = yl
    return yl


@jit(ieee_division=True, inline=True)
def _scale_into(x, g, start, y):
    """The gains ``g`` onto every channel of ``x`` from column ``start`` on.

    Writes
    ------
    y : float64 [shape=(channels, n)] ``y[c, start + i] = x[c, start + i] * g[i]``,
        ``i < g.shape[0]``
    """
    m = g.shape[0]
    for c in range(x.shape[0]):
        xc = x[c, start : start + m]
        yc = y[c, start : start + m]
        for i in range(m):
            yc[i] = xc[i] * g[i]


@jit(ieee_division=True)
def compressor(x, params, state, want_trace):
    """Stereo-linked feed-forward compressor, log-domain smooth branching detector.

    Side chain (Giannoulis et al. 2012, fig. 7(b) "log domain detector"): the level is
    the largest |sample| across channels (max-linked: the stereo image never shifts
    and a hard-panned peak is caught as on its own), in dBFS; the static curve gives a
    gain reduction ``x_L``; the smooth branching peak detector (eq. 17) smooths it,
    ``y_L = a y_L + (1 - a) x_L`` with ``a`` = attack coefficient while ``x_L > y_L``
    and release coefficient otherwise. Output gain ``makeup_db - y_L``.

    Three passes per chunk of :data:`COMP_CHUNK` samples: the level and static curve
    (vectorised, with the log of :func:`_static_curve_into`), the one-pole recurrence
    (the only serial part), the gain (vectorised exp of :func:`_gains_into`) and its
    product with every channel. Every sample gets the same arithmetic whatever the
    chunking, so streamed blocks equal one piece.

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    params : float64 [shape=(COMP_N_PARAMS,)] indexed by ``COMP_THRESHOLD`` (dBFS),
        ``COMP_RATIO``, ``COMP_KNEE`` (dB), ``COMP_ATTACK``, ``COMP_RELEASE``
        (coefficients ``exp(-1 / (time_s * sample_rate))``), ``COMP_MAKEUP`` (dB)
    state : float64 [shape=(COMP_N_STATE,)] ``state[COMP_GR_DB]``: smoothed gain
        reduction ``y_L``, dB
    want_trace : bool, also return the gain reduction per sample

    Returns
    -------
    y : float64 [shape=(channels, n)]
    trace : float64 [shape=(n,)] gain reduction in dB, >= 0 (empty unless ``want_trace``)
    state : float64 [shape=(COMP_N_STATE,)]
    """
    n = x.shape[1]
    thr = params[COMP_THRESHOLD]
    ratio = params[COMP_RATIO]
    knee = params[COMP_KNEE]
    a_att = params[COMP_ATTACK]
    a_rel = params[COMP_RELEASE]
    makeup = params[COMP_MAKEUP]
    b_att = 1.0 - a_att
    b_rel = 1.0 - a_rel
    makeup_lin = 10.0 ** (makeup / 20.0)
    # Below the knee's lower edge the static curve is 0: compare linearly.
    knee_start = 10.0 ** ((thr - 0.5 * knee) / 20.0)
    y = np.empty_like(x)
    trace = np.empty(n if want_trace else 0)
    peak = np.empty(COMP_CHUNK)
    xl = np.empty(COMP_CHUNK)
    yl_buf = np.empty(COMP_CHUNK)
    g = np.empty(COMP_CHUNK)
    bits = np.empty(COMP_CHUNK, dtype=np.int64)
    yl = state[COMP_GR_DB]
    for start in range(0, n, COMP_CHUNK):
        m = min(COMP_CHUNK, n - start)
        # ---- level and static curve (vectorised)
        _linked_peak_into(x, start, peak[:m])
        _static_curve_into(peak[:m], bits[:m], thr, ratio, knee, knee_start, xl[:m])
        # ---- smooth branching detector: the serial part
        ylc = trace[start : start + m] if want_trace else yl_buf[:m]
        yl = _smooth_into(xl[:m], yl, a_att, b_att, a_rel, b_rel, ylc)
        # ---- gain (vectorised), applied to every channel
        _gains_into(ylc, makeup, makeup_lin, g[:m], bits[:m])
        _scale_into(x, g[:m], start, y)
    out_state = np.empty(COMP_N_STATE)
    out_state[COMP_GR_DB] = yl
    return y, trace, out_state


# -------------------------------------------------------------------------- limiter
#: ``params`` of :func:`limiter`: ceiling (linear, margin included), release
#: coefficient, gain bound (sup over fractional delays of the interpolator's
#: ``sum |taps|``), input gain (linear).
LIM_CEILING, LIM_RELEASE, LIM_GAIN_BOUND, LIM_INPUT_GAIN = range(4)
LIM_N_PARAMS = 4
#: ``fstate`` (float64): reduction after release, box-1 sum, box-2 sum.
LIM_F_RED, LIM_F_SUM1, LIM_F_SUM2 = range(3)
LIM_N_FSTATE = 3
#: ``istate`` (int64): samples seen, head and length of the sliding-minimum deque,
#: box-1 position and nonzero count, box-2 position and nonzero count.
LIM_I_SAMPLES, LIM_I_HEAD, LIM_I_QLEN, LIM_I_POS1, LIM_I_NZ1, LIM_I_POS2, LIM_I_NZ2 = range(7)
LIM_N_ISTATE = 7


#: Windows per detector chunk.
LIM_CHUNK = 256


@jit(fast="fma")
def _phases_into(buf, bank, start, stop, out):
    """Phases 1..3 of the interpolator for windows ``start .. stop - 1`` of every channel.

    ``out[c, p - 1, i - start] = sum_k bank[p, k] * buf[c, i + k]``. The inner loop runs
    over positions (contiguous, so LLVM vectorises it; 4x faster than a dot product per
    position) and adds eight taps per pass, ``(((acc + h0 x0) + h1 x1) + ...)``, so the
    accumulator is stored once per eight FMAs instead of once per FMA (1.6x faster)
    while each value is still summed in tap order whatever the chunking. ``fast="fma"``
    (``contract``) keeps NaN/Inf semantics.

    Writes
    ------
    out : float64 [shape=(channels, 3, >= stop - start)] the first ``stop - start``
        values of each channel and phase
    """
    m = stop - start
    n_taps = bank.shape[1]
    for c in range(buf.shape[0]):
        xs = buf[c, start : stop + n_taps]
        for p in range(1, 4):
            h = bank[p]
            acc = out[c, p - 1, :m]
            acc[:] = 0.0
            k = 0
            while k + 8 <= n_taps:
                h0, h1, h2, h3 = h[k], h[k + 1], h[k + 2], h[k + 3]
                h4, h5, h6, h7 = h[k + 4], h[k + 5], h[k + 6], h[k + 7]
                s = xs[k : k + m + 7]
                for i in range(m):
                    a = ((acc[i] + h0 * s[i]) + h1 * s[i + 1]) + h2 * s[i + 2]
                    a = ((a + h3 * s[i + 3]) + h4 * s[i + 4]) + h5 * s[i + 5]
                    acc[i] = (a + h6 * s[i + 6]) + h7 * s[i + 7]
                k += 8
            while k < n_taps:
                hk = h[k]
                seg = xs[k : k + m]
                for i in range(m):
                    acc[i] += hk * seg[i]
                k += 1


@jit(ieee_division=True, inline=True)
def _vertex(a, b, c):
    """Peak of the parabola through ``(-1, a), (0, b), (1, c)`` around ``b``'s sign.

    Returns ``|b|`` unless the parabola is concave with its vertex within one step,
    then the vertex height: a sub-grid refinement of the 4x true peak, so inter-sample
    peaks between the oversampled points (up to 0.7 dB below Nyquist at 4x) are seen.
    Written with selects, not branches, so loops over windows vectorise.
    """
    s = 1.0 if b >= 0.0 else -1.0
    a *= s
    b *= s
    c *= s
    curv = a - 2.0 * b + c
    delta = 0.5 * (a - c) / curv
    vert = b - 0.25 * (a - c) * delta
    use = (not curv >= 0.0) & (not (delta > 1.0 or delta < -1.0))
    return vert if use else b


@jit(ieee_division=True)
def _window_peaks_into(buf, ph, lo0, centre, out):
    """The detector's peak of each window over channels: the 4x values of ``ph`` and
    the samples either side (taps ``centre`` and ``centre + 1`` of the window, between
    which the phases interpolate), refined by :func:`_vertex` around the largest, for
    the windows whose first sample is ``buf[:, lo0 + j]``. All three parabolas are
    computed and one selected: branch-free, the loop over windows vectorises.

    Writes
    ------
    out : float64 [shape=(m,)] the peak of window ``j``, for ``j < m``
    """
    m = out.shape[0]
    out[:] = 0.0
    for c in range(buf.shape[0]):
        x0 = buf[c, lo0 + centre : lo0 + centre + m]
        x4 = buf[c, lo0 + centre + 1 : lo0 + centre + 1 + m]
        p1 = ph[c, 0, :m]
        p2 = ph[c, 1, :m]
        p3 = ph[c, 2, :m]
        for j in range(m):
            v0 = x0[j]
            v1 = p1[j]
            v2 = p2[j]
            v3 = p3[j]
            v4 = x4[j]
            e = max(abs(v0), abs(v4))
            a1 = abs(v1)
            a2 = abs(v2)
            a3 = abs(v3)
            mid = _vertex(v1, v2, v3)
            left = _vertex(v0, v1, v2)
            right = _vertex(v2, v3, v4)
            side = left if a1 >= a3 else right
            e = max(e, mid if (a2 >= a1) & (a2 >= a3) else side)
            out[j] = e if e > out[j] else out[j]


@jit(inline=True)
def _delay_line(x, delay_buf, input_gain):
    """``[delay_buf | x * input_gain]`` [shape=(channels, D + n)]: the last ``D`` inputs
    and this block, what every step of :func:`limiter` reads (window ``j`` of the block
    ends at column ``D + j``, and output ``j`` is column ``j``)."""
    n_ch, n = x.shape
    delay = delay_buf.shape[1]
    buf = np.empty((n_ch, delay + n))
    for c in range(n_ch):
        for i in range(delay):
            buf[c, i] = delay_buf[c, i]
    for c in range(n_ch):
        dst = buf[c, delay:]
        src = x[c]
        for i in range(n):
            dst[i] = src[i] * input_gain  # x * 1.0 is x, bit for bit
    return buf


@jit(inline=True)
def _windows_to_detect(buf, n, n_taps, m_skip):
    """``need[j]`` [shape=(n,), bool]: some sample of window ``j`` is loud enough
    (``|x| > m_skip``) that its interpolation could exceed the ceiling. Decided per
    window, so the result does not depend on block boundaries."""
    n_ch, total = buf.shape
    delay = total - n
    need = np.empty(n, dtype=np.bool_)  # every entry is written below
    last_loud = -1
    for k in range(total):
        loud = False
        for c in range(n_ch):
            loud |= abs(buf[c, k]) > m_skip
        last_loud = k if loud else last_loud
        i = k - delay
        if i >= 0:
            need[i] = last_loud >= k - n_taps + 1
    return need


@jit(inline=True)
def _required_gains_into(buf, bank, need, c0, base, ceiling, ph, pk_buf, gr):
    """Detector over the windows ``c0 .. c0 + m - 1`` of one chunk: exact 4x values
    (chunked FIR) only over the runs of windows that ``need`` them. Returns whether
    any window needed them.

    Writes
    ------
    gr : float64 [shape=(m,)] required gain ``min(1, ceiling / peak)`` of each window
    ph, pk_buf : scratch of :func:`_phases_into` and :func:`_window_peaks_into`
    """
    m = gr.shape[0]
    # Phases 1..3 lie between the tap where phase 0 is its unit impulse (the sample
    # instant) and the next. Read from the bank: with the tap after it taken instead
    # (bank.shape[1] // 2), the parabolas had the wrong neighbours and read a steady
    # 15 kHz sine 1.7 dB over its true peak (10 kHz 1.2 dB, 5 kHz 0.4 dB), and the
    # limiter took that much too much off such a signal.
    centre = np.int64(0)  # typed, not Literal[int](0): one signature of the callee
    for k in range(bank.shape[1]):
        centre = k if bank[0, k] == 1.0 else centre
    gr[:] = 1.0
    first = c0
    detected = False
    while first < c0 + m:
        if not need[first]:
            first += 1
            continue
        detected = True
        stop = first + 1  # a run of windows that need exact values
        while stop < c0 + m and need[stop]:
            stop += 1
        _phases_into(buf, bank, base + first, base + stop, ph)
        pks = pk_buf[: stop - first]
        _window_peaks_into(buf, ph, base + first, centre, pks)
        for j in range(stop - first):
            if pks[j] > ceiling:
                gr[first + j - c0] = ceiling / pks[j]
        first = stop
    return detected


@jit(inline=True)
def _release(red, target, a_rel):
    """Reduction ``1 - gain`` after one sample: instant attack up to ``target``, an
    exponential release (coefficient ``a_rel``) down towards it, snapped to it within
    1e-15."""
    if target >= red:
        return target
    red = target + a_rel * (red - target)
    if red - target < 1e-15:
        red = target
    return red


@jit(inline=True)
def _box_step(old, value, pos, length, nz, total):
    """One sample of a moving sum over the last ``length`` values kept in a ring: the
    caller reads ``old`` at ``pos`` and stores ``value`` there. ``nz`` counts the
    nonzero values in the ring, so the sum is exactly 0 when all of them are (no
    rounding residue once nothing is limited). Returns the next ``(pos, nz, total)``."""
    nz += int(value != 0.0) - int(old != 0.0)
    total += value - old
    pos += 1
    if pos == length:
        pos = 0
    if nz == 0:
        total = 0.0
    return pos, nz, total


@jit(inline=True)
def _gain_path_into(gr, a_rel, fs, st, dv, di, b1, b2, gains):
    """Gains of one chunk from its required gains ``gr``: the sliding minimum over
    ``window = dv.shape[0]`` samples (a monotonic deque in the rings ``dv``, ``di``),
    :func:`_release`, and two box filters (rings ``b1``, ``b2``) of :func:`_box_step`.

    Array arguments are aliased once per chunk here, not once per sample: a helper
    taking arrays, inlined into the per-sample loop, costs Numba a reference count
    update per sample (the limiter ran 20 % slower).

    Writes
    ------
    gains : float64 [shape=(m,)] the gain of each sample, <= 1
    fs, st : float64, int64 the scalar state (``LIM_F_*``, ``LIM_I_*``), advanced by m
    dv, di, b1, b2 : the rings of the deque and the box filters
    """
    window = dv.shape[0]
    len1 = b1.shape[0]
    len2 = b2.shape[0]
    inv1 = 1.0 / len1
    inv2 = 1.0 / len2
    red, sum1, sum2 = fs[LIM_F_RED], fs[LIM_F_SUM1], fs[LIM_F_SUM2]
    count, head, qn = st[LIM_I_SAMPLES], st[LIM_I_HEAD], st[LIM_I_QLEN]
    p1, nz1, p2, nz2 = st[LIM_I_POS1], st[LIM_I_NZ1], st[LIM_I_POS2], st[LIM_I_NZ2]
    for t in range(gr.shape[0]):
        g = gr[t]
        # ---- sliding minimum over `window` samples (monotonic deque in a ring)
        # Only gains below 1 enter the deque (an empty deque means 1): the minimum is
        # the same element, and on the usual unlimited samples this is one compare.
        # (ring indices wrap by a compare, not %: integer division is slow per sample)
        # The entry that leaves the window goes first (one a sample at most: indices
        # are consecutive), so the ring holds at most `window` entries: pushed first,
        # a run of rising gains longer than the window overwrote the head and wrote
        # past the ring (a user preset with 24 dB of limiting crashed, fourth sweep).
        if qn > 0 and di[head] <= count - window:
            head += 1
            if head == window:
                head = 0
            qn -= 1
        if g < 1.0:
            while qn > 0:
                last = head + qn - 1
                if last >= window:
                    last -= window
                if dv[last] < g:
                    break
                qn -= 1
            slot = head + qn
            if slot >= window:
                slot -= window
            dv[slot] = g
            di[slot] = count
            qn += 1
        target = 1.0 - dv[head] if qn > 0 else 0.0
        # ---- instant attack, exponential release towards the held minimum
        red = _release(red, target, a_rel)
        # ---- two box filters over the reduction: exact zero when nothing is limited
        old, b1[p1] = b1[p1], red
        p1, nz1, sum1 = _box_step(old, red, p1, len1, nz1, sum1)
        s1 = sum1 * inv1
        old, b2[p2] = b2[p2], s1
        p2, nz2, sum2 = _box_step(old, s1, p2, len2, nz2, sum2)
        gain = 1.0 - sum2 * inv2
        gains[t] = 1.0 if gain > 1.0 else gain
        count += 1
    fs[LIM_F_RED], fs[LIM_F_SUM1], fs[LIM_F_SUM2] = red, sum1, sum2
    st[LIM_I_SAMPLES], st[LIM_I_HEAD], st[LIM_I_QLEN] = count, head, qn
    st[LIM_I_POS1], st[LIM_I_NZ1], st[LIM_I_POS2], st[LIM_I_NZ2] = p1, nz1, p2, nz2


@jit(inline=True)
def _idle(fs, st):
    """Nothing is held, releasing or in the box filters: a chunk with nothing to limit
    would get gain 1.0 for each sample and only move the ring positions."""
    return (
        fs[LIM_F_RED] == 0.0 and st[LIM_I_QLEN] == 0 and st[LIM_I_NZ1] == 0 and st[LIM_I_NZ2] == 0
    )


@jit(inline=True)
def _apply_into(buf, gains, c0, y, min_gain):
    """Gains onto the delayed audio; returns ``min(min_gain, gains)`` (NaN never wins).

    Writes
    ------
    y : float64 [shape=(channels, n)] ``y[c, c0 + t] = buf[c, c0 + t] * gains[t]``
    """
    m = gains.shape[0]
    for t in range(m):
        min_gain = gains[t] if gains[t] < min_gain else min_gain
    for c in range(buf.shape[0]):
        src = buf[c, c0 : c0 + m]
        dst = y[c, c0 : c0 + m]
        for t in range(m):
            dst[t] = src[t] * gains[t]
    return min_gain


@jit
def limiter(x, bank, params, fstate, istate, delay_buf, dq_val, dq_idx, box1, box2):
    """Lookahead brickwall limiter holding a true-peak ceiling.

    Detector (:func:`_required_gains_into`): window ``j`` = the ``T`` input samples
    ending at input ``j`` (``T`` taps per phase of ``bank``,
    ``auralis_batch.filters.polyphase_bank``). Its 4x polyphase values between inputs
    ``j - T/2`` and ``j - T/2 + 1`` (phase 0 is the sample itself), refined by a
    parabola through the largest and its neighbours, give ``pk[j]``, the largest
    inter-sample value over channels; required gain ``r[j] = min(1, ceiling / pk[j])``.
    Exact values are only computed where the bound ``gain_bound * max|window|`` exceeds
    the ceiling (:func:`_windows_to_detect`: a per-sample rule, so the result does not
    depend on block boundaries).

    Gain path (:func:`_gain_path_into`): ``h`` = sliding minimum of ``r`` over
    ``window`` samples (monotonic deque); reduction ``d = 1 - gain`` attacks instantly
    to ``1 - h`` and releases exponentially towards it (the minimum window doubles as
    the hold); two box filters of combined support ``L`` (the lookahead) turn the steps
    into an S-shaped ramp. A chunk with nothing to limit, held or releasing skips it.

    Guarantee: the output at time ``n`` is input ``n - D``, ``D = L + T - 2``, times
    ``s[n]``, a weighted mean of released values at times ``n - L + 1 .. n``; each is at
    most ``h`` there, i.e. at most every ``r[j]`` with ``n - window + 1 <= j <= n - L + 1``.
    Windows ``j`` that contain input ``n - D`` are ``n - D <= j <= n - D + T - 1 =
    n - L + 1``, all in that range since ``window >= D + 1``. So every sample of a
    peak's interpolation window is scaled by at most the peak's required gain; an
    isolated peak sees a constant gain across its window, so the interpolated output is
    exactly ``r * pk <= ceiling``. Where gains of several peaks meet, the gain varies
    slightly across a window: the caller's margin covers that.

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    bank : float64 [shape=(4, taps)] true-peak interpolator (phase 0 = the sample)
    params : float64 [shape=(LIM_N_PARAMS,)] indexed by ``LIM_CEILING`` (linear, margin
        included), ``LIM_RELEASE`` (coefficient), ``LIM_GAIN_BOUND`` (sup over fractional
        delays of the interpolator's sum |taps|), ``LIM_INPUT_GAIN`` (linear, applied to
        ``x`` on its way into the delay line: the chain's gain stage without a pass of
        its own)
    fstate : float64 [shape=(LIM_N_FSTATE,)], istate : int64 [shape=(LIM_N_ISTATE,)]
        scalar state, indexed by ``LIM_F_*`` and ``LIM_I_*``
    delay_buf : float64 [shape=(channels, D)] last ``D`` input samples
    dq_val, dq_idx : float64, int64 [shape=(window,)] sliding-minimum deque (ring)
    box1, box2 : float64 rings of the two box filters (reduction values)

    The state at the start of a stream is ``auralis_batch.dynamics.limiter_state``; its sizes are
    ``auralis_batch.dynamics.limiter_sizes``.

    Returns
    -------
    y : float64 [shape=(channels, n)] delayed by ``D`` samples
    min_gain : float, smallest gain applied in this block
    and the updated state arrays in the order they were passed.
    """
    n_ch, n = x.shape
    n_taps = bank.shape[1]
    ceiling = params[LIM_CEILING]
    m_skip = ceiling / params[LIM_GAIN_BOUND]  # window max below this: no peak above
    # state in: private copies, returned as the new state
    fs, st = fstate.copy(), istate.copy()
    dv, di, b1, b2 = dq_val.copy(), dq_idx.copy(), box1.copy(), box2.copy()

    buf = _delay_line(x, delay_buf, params[LIM_INPUT_GAIN])
    need = _windows_to_detect(buf, n, n_taps, m_skip)
    base = delay_buf.shape[1] - n_taps + 1  # buf column of the first sample of window 0
    y = np.empty_like(x)
    min_gain = 1.0
    ph = np.empty((n_ch, 3, LIM_CHUNK))
    g_buf = np.empty(LIM_CHUNK)
    pk_buf = np.empty(LIM_CHUNK)
    gain_buf = np.empty(LIM_CHUNK)
    for c0 in range(0, n, LIM_CHUNK):
        m = min(LIM_CHUNK, n - c0)
        gr = g_buf[:m]
        detected = _required_gains_into(buf, bank, need, c0, base, ceiling, ph, pk_buf, gr)
        if not detected and _idle(fs, st):
            # the gain path would give gain 1.0 for each sample and move the rings on
            st[LIM_I_POS1] = (st[LIM_I_POS1] + m) % b1.shape[0]
            st[LIM_I_POS2] = (st[LIM_I_POS2] + m) % b2.shape[0]
            st[LIM_I_SAMPLES] += m
            for c in range(n_ch):
                for t in range(c0, c0 + m):
                    y[c, t] = buf[c, t]
            continue
        gains = gain_buf[:m]
        _gain_path_into(gr, params[LIM_RELEASE], fs, st, dv, di, b1, b2, gains)
        min_gain = _apply_into(buf, gains, c0, y, min_gain)
    new_delay = np.empty((n_ch, buf.shape[1] - n))
    for c in range(n_ch):  # element by element: see kernels._jit on compile time
        for i in range(new_delay.shape[1]):
            new_delay[c, i] = buf[c, n + i]
    return y, min_gain, fs, st, new_delay, dv, di, b1, b2
