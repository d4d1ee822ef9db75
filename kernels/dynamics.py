"""Dynamics kernels: feed-forward compressor and true-peak lookahead limiter.

Both are stateful: every call takes the state the previous call returned, so a file
processed in blocks gives exactly the samples of one piece.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit

# ----------------------------------------------------------------------- compressor
# params layout: threshold_db, ratio, knee_db, attack_coef, release_coef, makeup_db
COMP_THRESHOLD, COMP_RATIO, COMP_KNEE, COMP_ATTACK, COMP_RELEASE, COMP_MAKEUP = range(6)
_LEVEL_FLOOR_DB = -200.0


@jit
def gain_computer_db(level_db, threshold_db, ratio, knee_db):
    """Static gain reduction (dB, >= 0) of the soft-knee curve of Giannoulis,
    Massberg & Reiss (2012), eq. 4: quadratic between T - W/2 and T + W/2."""
    over = level_db - threshold_db
    if 2.0 * over < -knee_db:
        return 0.0
    if knee_db > 0.0 and 2.0 * abs(over) <= knee_db:
        t = over + knee_db / 2.0
        return -(1.0 / ratio - 1.0) * t * t / (2.0 * knee_db)
    return over - (threshold_db + over / ratio - threshold_db)


@jit
def compressor(x, params, state, want_trace):
    """Stereo-linked feed-forward compressor.

    The detector takes the largest |sample| across channels (so the stereo image never
    shifts), converts to dB, applies the static curve and smooths the gain reduction in
    the log domain with the smooth branching detector (Giannoulis et al. eq. 17):
    attack coefficient while reduction rises, release while it falls.

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    params : float64 [shape=(6,)] threshold_db, ratio, knee_db, attack_coef,
        release_coef, makeup_db; coefficients are ``exp(-1 / (time_s * sample_rate))``
    state : float64 [shape=(1,)] smoothed gain reduction in dB
    want_trace : bool, also return the gain reduction per sample

    Returns
    -------
    y : float64 [shape=(channels, n)]
    trace : float64 [shape=(n,)] gain reduction in dB (empty unless ``want_trace``)
    state : float64 [shape=(1,)]
    """
    n_ch, n = x.shape
    thr = params[COMP_THRESHOLD]
    ratio = params[COMP_RATIO]
    knee = params[COMP_KNEE]
    a_att = params[COMP_ATTACK]
    a_rel = params[COMP_RELEASE]
    makeup = params[COMP_MAKEUP]
    makeup_lin = 10.0 ** (makeup / 20.0)
    y = np.empty_like(x)
    trace = np.empty(n if want_trace else 0)
    yl = state[0]
    for i in range(n):
        peak = 0.0
        for c in range(n_ch):
            a = abs(x[c, i])
            if a > peak:
                peak = a
        level = 20.0 * math.log10(peak) if peak > 1e-10 else _LEVEL_FLOOR_DB
        xl = gain_computer_db(level, thr, ratio, knee)
        if xl > yl:
            yl = a_att * yl + (1.0 - a_att) * xl
        else:
            yl = a_rel * yl + (1.0 - a_rel) * xl
        if yl < 1e-9:
            yl = 0.0  # below threshold the signal passes untouched (apart from makeup)
            g = makeup_lin
        else:
            g = 10.0 ** ((makeup - yl) / 20.0)
        for c in range(n_ch):
            y[c, i] = x[c, i] * g
        if want_trace:
            trace[i] = yl
    out_state = np.empty(1)
    out_state[0] = yl
    return y, trace, out_state


# -------------------------------------------------------------------------- limiter
# fstate layout (float64): r (released gain), sum1, sum2, min_gain_seen
# istate layout (int64): n (samples seen), hold, dq_head, dq_count, pos_delay, pos1, pos2
F_R, F_SUM1, F_SUM2, F_MIN = range(4)
I_N, I_HOLD, I_HEAD, I_COUNT, I_DELAY, I_POS1, I_POS2 = range(7)


@jit
def limiter_sizes(lookahead):
    """``(delay, window, box1, box2)`` for a lookahead of ``lookahead`` samples.

    The gain is a sliding minimum over ``window`` samples of the required gain, then an
    exponential release, then two box filters whose combined support is ``lookahead``;
    the audio is delayed by ``delay = lookahead + 10`` so that every sample entering the
    12-tap true-peak interpolation of a peak is scaled by at most that peak's required
    gain (see :func:`limiter`).
    """
    m = max(lookahead, 2)
    box1 = m // 2
    box2 = m - box1 + 1
    delay = m + 10
    window = delay + 1
    return delay, window, box1, box2


@jit
def limiter(x, bank, params, fstate, istate, tp_hist, delay_buf, dq_val, dq_idx, box1, box2):
    """Lookahead brickwall limiter holding a true-peak ceiling.

    Detector: for each new input sample the 4x polyphase interpolation (the same FIR
    as the meter's true peak) gives the largest inter-sample value across channels;
    required gain ``g = min(1, ceiling / peak)``. Gain path: sliding-window minimum
    of ``g`` (monotonic deque), instant attack / held exponential release, then two box
    filters (a smooth S-shaped ramp of ``lookahead`` samples). Every output gain is an
    average of values that are each at most the required gain of any peak within
    reach, so the ceiling holds by construction (up to the interpolation of a gain that
    varies across the 12-tap window, covered by a small margin in ``ceiling``).

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    bank : float64 [shape=(phases, taps)] true-peak interpolator
    params : float64 [shape=(3,)] ceiling (linear, margin included), release_coef, hold samples
    fstate, istate : float64 [shape=(4,)], int64 [shape=(7,)] scalar state
    tp_hist : float64 [shape=(channels, taps - 1)] detector input history
    delay_buf : float64 [shape=(channels, delay)] audio delay line (ring)
    dq_val, dq_idx : float64, int64 [shape=(window,)] sliding-minimum deque (ring)
    box1, box2 : float64 rings of the two box filters

    Returns
    -------
    y : float64 [shape=(channels, n)], delayed by ``delay`` samples
    and the updated state arrays in the order they were passed.
    """
    n_ch, n = x.shape
    n_ph, n_taps = bank.shape
    hist_len = n_taps - 1
    ceiling = params[0]
    a_rel = params[1]
    hold_len = int(params[2])
    window = dq_val.shape[0]
    delay = delay_buf.shape[1]
    len1 = box1.shape[0]
    len2 = box2.shape[0]

    fs = fstate.copy()
    st = istate.copy()
    hist = tp_hist.copy()
    dbuf = delay_buf.copy()
    dv = dq_val.copy()
    di = dq_idx.copy()
    b1 = box1.copy()
    b2 = box2.copy()
    y = np.empty_like(x)

    # Upper bound on the interpolator's gain: skip exact interpolation when even the
    # bound stays under the ceiling.
    gain_bound = 0.0
    for p in range(n_ph):
        acc = 0.0
        for k in range(n_taps):
            acc += abs(bank[p, k])
        if acc > gain_bound:
            gain_bound = acc

    r = fs[F_R]
    sum1 = fs[F_SUM1]
    sum2 = fs[F_SUM2]
    gmin = fs[F_MIN]
    count = st[I_N]
    hold = st[I_HOLD]
    head = st[I_HEAD]
    qn = st[I_COUNT]
    pd = st[I_DELAY]
    p1 = st[I_POS1]
    p2 = st[I_POS2]
    win = np.empty(n_taps)

    for i in range(n):
        # ---- detector: largest interpolated value of the window ending at sample i
        m = 0.0
        for c in range(n_ch):
            v = abs(x[c, i])
            if v > m:
                m = v
            for k in range(hist_len):
                v = abs(hist[c, k])
                if v > m:
                    m = v
        peak = 0.0
        if m * gain_bound > ceiling:
            for c in range(n_ch):
                for k in range(hist_len):
                    win[k] = hist[c, k]
                win[hist_len] = x[c, i]
                for p in range(n_ph):
                    acc = 0.0
                    for k in range(n_taps):
                        acc += bank[p, k] * win[k]
                    a = abs(acc)
                    if a > peak:
                        peak = a
        for c in range(n_ch):
            for k in range(hist_len - 1):
                hist[c, k] = hist[c, k + 1]
            hist[c, hist_len - 1] = x[c, i]
        g = 1.0
        if peak > ceiling:
            g = ceiling / peak

        # ---- sliding minimum over `window` samples (monotonic deque in a ring)
        while qn > 0:
            last = (head + qn - 1) % window
            if dv[last] >= g:
                qn -= 1
            else:
                break
        slot = (head + qn) % window
        dv[slot] = g
        di[slot] = count
        qn += 1
        if di[head] <= count - window:
            head = (head + 1) % window
            qn -= 1
        h = dv[head]

        # ---- instant attack, held exponential release
        if h < r:
            r = h
            hold = hold_len
        elif h <= r * 1.001:
            hold = hold_len  # the same level keeps coming: keep holding (steady tones)
        elif hold > 0:
            hold -= 1
        else:
            r = a_rel * r + (1.0 - a_rel) * h
            if r > h:
                r = h

        # ---- two box filters: an S-shaped gain ramp over the lookahead
        sum1 += r - b1[p1]
        b1[p1] = r
        p1 = (p1 + 1) % len1
        s1 = sum1 / len1
        sum2 += s1 - b2[p2]
        b2[p2] = s1
        p2 = (p2 + 1) % len2
        s = sum2 / len2
        if s > 1.0:
            s = 1.0
        if s < gmin:
            gmin = s

        # ---- apply to the delayed audio
        for c in range(n_ch):
            out = dbuf[c, pd]
            dbuf[c, pd] = x[c, i]
            y[c, i] = out * s
        pd = (pd + 1) % delay
        count += 1

    fs[F_R] = r
    fs[F_SUM1] = sum1
    fs[F_SUM2] = sum2
    fs[F_MIN] = gmin
    st[I_N] = count
    st[I_HOLD] = hold
    st[I_HEAD] = head
    st[I_COUNT] = qn
    st[I_DELAY] = pd
    st[I_POS1] = p1
    st[I_POS2] = p2
    return y, fs, st, hist, dbuf, dv, di, b1, b2
