"""Tempo from an onset-strength envelope: periodicity, metrical levels, the beat level.

The envelope (mean dB rise per band: :func:`onset_envelopes`) is
detrended and autocorrelated (``A``, normalised so that ``A[0] = 1``) over lags up to
four periods of the slowest tempo. Then:

1. **Candidates**: the local maxima of ``A`` between ``min_bpm`` and ``max_bpm``, at
   sub-frame positions (parabola through the peak and its neighbours).
2. **Metrical reference** ``R``: the candidate whose first four multiples ``P, 2P, 3P,
   4P`` carry the most periodicity on average (a comb), under a broad log-normal prior
   (``PRM_REF_BPM``, ``PRM_REF_OCTAVES``). A period whose multiples land on the bar
   wins over one that drifts across it, so the 2/3 and 3/2 readings of syncopated
   grooves (tresillo, clave) lose to the beat or the bar. One exception: a dotted
   level (a riff repeating every three beats) can win the comb by its multiples at 3
   and 6 beats while being less periodic itself than both the beat and twice the
   beat; the candidate at ``2R/3`` then becomes ``R`` when ``A(2R/3)`` and ``A(4R/3)``
   both exceed ``A(R)`` (without it the beat is none of ``R``'s neighbours below and
   cannot be chosen).
3. **Beat level**: ``R`` and its metrical neighbours ``R/2``, ``2R`` (duple) and
   ``R/3``, ``3R`` (triple) are scored with the features ``FEAT_*`` below and the
   weights ``PRM_W_*``; the highest score is the beat. A duple neighbour must hold at
   least ``PRM_MIN_DUPLE`` of the reference's periodicity, and a triple move needs a
   level divided in three (ternary evidence above ``PRM_MIN_TERNARY`` at the slower of
   the two): otherwise it is listed but cannot win.
4. **Confidence** is the winner's share of ``exp(score)`` over the listed levels (a
   softmax, in which a level that cannot win has INELIGIBLE_PENALTY subtracted from
   its score) times its periodicity ``max(A(P), 0)``: low for an ambiguous beat level
   and for a signal without a steady pulse alike. The two runners-up are reported with
   the same measure.
5. The period is refined on the autocorrelation peaks at ``2P, 4P, 8P`` (each halves
   the error of the frame grid).

Features of a level of period ``P`` frames (``A(x)``: the largest ``A`` within 2 % of
lag ``x``):

* ``FEAT_SALIENCE``: ``log(max(A(P), 0) + SALIENCE_FLOOR)``, how periodic the level is;
* ``FEAT_TEMPO``, ``FEAT_TEMPO2``: ``z = log2(bpm / 120)`` and ``z**2`` (with a negative
  weight a log-normal preference over tempo);
* ``FEAT_TERNARY``: ``max(0, max(A(P/3), A(2P/3)) - A(P/2))``, the beat divided in three
  rather than two (swing, shuffle, 6/8 and 12/8);
* ``FEAT_DOUBLE``: ``A(P) - A(2P)``, how much of the slower level's periodicity the
  level already carries;
* ``FEAT_HALF``: ``A(P/2) - A(P)``, how much of the level's periodicity its half
  already carries (near 0: the off-beats are as strong as the beats);
* ``FEAT_BACKBEAT``: ``D(2P) - D(P)``, with ``D`` the autocorrelation (``D(0) = 1``)
  of the difference of the low-band and high-band envelopes (each scaled to unit
  energy): positive when low and high onsets alternate at ``P`` (kick on 1 and 3,
  snare on 2 and 4: ``D`` negative at ``P``, positive at ``2P``), which marks ``P`` as
  the beat rather than its half or its double; 0 where the bands move together;
* ``FEAT_TATUM``: 1 when nothing divides the level (``A`` negative at ``P/2``, ``P/3``
  and ``2P/3``) and the level twice as slow is more periodic (``A(2P) > A(P)``), else
  0: the level is the fastest pulse under a stronger, slower one, a division of the
  beat (the eighth notes of a slow ballad) rather than the beat. Where the beat has
  its own division (eighths under a quick 4/4, triplets under a swing) it stays 0.

The weights are fitted on a labelled set (``bench/tempo``); the wrapper passes them in.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit

# Feature columns of a level (see the module docstring).
FEAT_SALIENCE = 0
FEAT_TEMPO = 1
FEAT_TEMPO2 = 2
FEAT_TERNARY = 3
FEAT_DOUBLE = 4
FEAT_HALF = 5
FEAT_BACKBEAT = 6
FEAT_TATUM = 7
N_FEATURES = 8

# Columns of the level table: period (frames), tempo (BPM), eligible (1.0 / 0.0), then
# the N_FEATURES features from LEVEL_FEATURES on.
LEVEL_PERIOD = 0
LEVEL_BPM = 1
LEVEL_ELIGIBLE = 2
LEVEL_FEATURES = 3
LEVEL_COLUMNS = LEVEL_FEATURES + N_FEATURES

# Parameter vector of tempo_from_acf / beat_levels.
PRM_MIN_BPM = 0
PRM_MAX_BPM = 1
PRM_REF_BPM = 2  # centre of the reference's prior
PRM_REF_OCTAVES = 3  # its standard deviation in octaves
PRM_MIN_DUPLE = 4  # a duple neighbour needs A >= this * A(R)
PRM_MIN_TERNARY = 5  # a triple move needs FEAT_TERNARY above this at the slower level
PRM_W_SALIENCE = 6  # weights of the features, in FEAT_* order
N_PARAMS = PRM_W_SALIENCE + N_FEATURES

SALIENCE_FLOOR = 0.05
TEMPO_CENTRE_BPM = 120.0  # z = log2(bpm / TEMPO_CENTRE_BPM)
PEAK_RADIUS = 0.02  # relative lag radius of A(x)
LEVEL_TOLERANCE = 0.04  # a candidate within 4 % of R * m stands for that level
COMB_MULTIPLES = 4
#: Metrical neighbours of the reference, in the order they are listed.
LEVEL_MULTIPLES = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
N_RUNNERS_UP = 2
INELIGIBLE_PENALTY = 3.0  # score units (nats of the softmax)


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
def _hann_bin(row, k):
    """``Y[k]`` of :func:`hann_band_powers` at any bin, the two ends included."""
    nbin = row.shape[0]
    below = row[k - 1] if k > 0 else np.conj(row[1])
    above = row[k + 1] if k + 1 < nbin else np.conj(row[nbin - 2])
    return 0.5 * row[k] - 0.25 * (below + above)


@jit(fastmath={"reassoc", "contract"})
def hann_band_powers(spec, band_lo, band_hi):
    """:func:`band_powers` of the periodic-Hann-windowed frames, from the spectra of the
    *unwindowed* frames.

    The periodic Hann window ``0.5 - 0.5 cos(2 pi n / N)`` is, in the DFT, the
    three-tap convolution ``Y[k] = 0.5 X[k] - 0.25 (X[k - 1] + X[k + 1])``, with
    ``X[-1] = conj(X[1])`` and ``X[N/2 + 1] = conj(X[N/2 - 1])`` for a real frame: the
    frames then need no windowed copy (their rows can be a strided view of the signal).
    ``spec`` is the ``rfft`` of the unwindowed frames [shape=(frames, N/2 + 1)]; equal
    to :func:`band_powers` of the windowed frames' ``rfft`` to rounding. The sums may
    be reassociated to vectorise (NaN/Inf semantics kept).
    """
    nf = spec.shape[0]
    nbin = spec.shape[1]
    nb = band_lo.shape[0]
    out = np.empty((nf, nb))
    if nb == 0:
        return out
    bottom = band_lo.min()
    top = band_hi.max()
    power = np.zeros(nbin)  # of the windowed frame, bins bottom..top-1
    for t in range(nf):
        row = spec[t]
        # From bin 1, not from ``bottom``: a loop that starts at a literal lets LLVM see
        # that ``k - 1`` is never negative (no wraparound check, so it vectorises; twice
        # as fast here). The bins below ``bottom`` cost little and are not read.
        for k in range(1, min(top, nbin - 1)):  # both neighbours in the row
            c = 0.5 * row[k] - 0.25 * (row[k - 1] + row[k + 1])
            power[k] = c.real * c.real + c.imag * c.imag
        for k in (0, nbin - 1):  # the ends, whose neighbours are mirrored
            if bottom <= k < top:
                c = _hann_bin(row, k)
                power[k] = c.real * c.real + c.imag * c.imag
        for b in range(nb):
            s = 0.0
            for k in range(band_lo[b], band_hi[b]):
                s += power[k]
            out[t, b] = s
    return out


@jit
def onset_envelopes(levels_db, range_db, members, offsets, prev_db, state):
    """Onset strength of several groups of bands in one pass: per group, the mean over
    its bands of the rise in level since the previous frame (half-wave rectified), each
    level first floored at the group's loudest band in that frame minus ``range_db``.

    Parameters
    ----------
    levels_db : float64 [shape=(frames, bands)], band levels in dB (already floored at
        an absolute floor; the logarithms are taken in NumPy, vectorised)
    range_db : float, levels more than this below the group's loudest are raised to it
    members : int64 [shape=(m,)], the bands of every group, group after group
    offsets : int64 [shape=(groups + 1,)], group ``g`` is ``members[offsets[g]:offsets[g + 1]]``
    prev_db : float64 [shape=(m,)], state: each member's floored level in the previous
        frame. Not modified.
    state : int64 [shape=(1,)], state: 1 when ``prev_db`` holds a frame. Not modified.

    Returns
    -------
    env : float64 [shape=(groups, frames)] (0 for a group without bands)
    prev_db, state : the new state (new arrays)
    """
    nf = levels_db.shape[0]
    ng = offsets.shape[0] - 1
    env = np.zeros((ng, nf))
    prev = prev_db.copy()
    have_prev = state[0] == 1
    for t in range(nf):
        row = levels_db[t]
        for g in range(ng):
            first = offsets[g]
            stop = offsets[g + 1]
            if stop == first:
                continue
            top = -math.inf
            for j in range(first, stop):
                top = max(top, row[members[j]])
            floor = top - range_db
            s = 0.0
            for j in range(first, stop):
                level = max(row[members[j]], floor)
                if have_prev and level > prev[j]:
                    s += level - prev[j]
                prev[j] = level
            env[g, t] = s / (stop - first)
        have_prev = True
    new_state = state.copy()
    new_state[0] = 1 if have_prev else 0
    return env, prev, new_state


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


@jit(fastmath={"reassoc", "contract"})
def autocorrelation(x, max_lag):
    """Unbiased autocorrelation ``A[l] = mean(x[t] x[t + l])`` for ``l = 0..max_lag``
    (0 where the signal is shorter than the lag)."""
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
def _value(a, lag):
    """``A(lag)``: the largest value within PEAK_RADIUS of the lag (0 beyond ``a``)."""
    if lag < 1.0 or lag > a.shape[0] - 3:
        return 0.0
    return _peak_near(a, lag, max(1.0, PEAK_RADIUS * lag))[0]


@jit
def acf_peaks(a, lag_lo, lag_hi):
    """Sub-frame positions of the positive local maxima of ``a`` in ``[lag_lo, lag_hi]``."""
    lo = max(2, int(lag_lo))
    hi = min(a.shape[0] - 2, int(lag_hi))
    out = np.empty(max(0, hi - lo + 1))
    k = 0
    for j in range(lo, hi + 1):
        if a[j] > a[j - 1] and a[j] >= a[j + 1] and a[j] > 0.0:
            out[k] = _peak_near(a, float(j), 0.5)[1]
            k += 1
    return out[:k]


@jit
def _comb(a, period):
    """Mean of ``max(A(k P), 0)`` over the first COMB_MULTIPLES multiples."""
    s = 0.0
    for k in range(1, COMB_MULTIPLES + 1):
        s += max(_value(a, k * period), 0.0)
    return s / COMB_MULTIPLES


@jit
def _ternary(a, period):
    """FEAT_TERNARY of a level: division in three against division in two."""
    third = max(_value(a, period / 3.0), _value(a, 2.0 * period / 3.0))
    return max(0.0, third - _value(a, 0.5 * period))


@jit
def _tatum(a, period, value):
    """FEAT_TATUM of a level whose periodicity is ``value``: 1.0 when nothing divides it
    (``A`` negative at a half, a third and two thirds of the period) and the level twice
    as slow is more periodic, else 0.0."""
    division = max(_value(a, 0.5 * period), _value(a, period / 3.0), _value(a, 2.0 * period / 3.0))
    return 1.0 if division < 0.0 and _value(a, 2.0 * period) > value else 0.0


@jit
def _features_into(a, x, period, frame_rate, row):
    """Write a level's tempo and features into ``row`` (a LEVEL_COLUMNS table row)."""
    bpm = 60.0 * frame_rate / period
    z = math.log2(bpm / TEMPO_CENTRE_BPM)
    v = _value(a, period)
    row[LEVEL_PERIOD] = period
    row[LEVEL_BPM] = bpm
    row[LEVEL_FEATURES + FEAT_SALIENCE] = math.log(max(v, 0.0) + SALIENCE_FLOOR)
    row[LEVEL_FEATURES + FEAT_TEMPO] = z
    row[LEVEL_FEATURES + FEAT_TEMPO2] = z * z
    row[LEVEL_FEATURES + FEAT_TERNARY] = _ternary(a, period)
    row[LEVEL_FEATURES + FEAT_DOUBLE] = v - _value(a, 2.0 * period)
    row[LEVEL_FEATURES + FEAT_HALF] = _value(a, 0.5 * period) - v
    row[LEVEL_FEATURES + FEAT_BACKBEAT] = _at(x, 2.0 * period) - _at(x, period)
    row[LEVEL_FEATURES + FEAT_TATUM] = _tatum(a, period, v)


@jit
def reference_period(a, peaks, frame_rate, prior_bpm, prior_octaves):
    """The metrical reference: the peak with the best comb under the prior (0.0 if none)."""
    best = -math.inf
    period = 0.0
    for i in range(peaks.shape[0]):
        p = peaks[i]
        z = math.log2(60.0 * frame_rate / p / prior_bpm) / prior_octaves
        s = math.log(_comb(a, p) + 1e-6) - 0.5 * z * z
        if s > best:
            best = s
            period = p
    return period


@jit
def _level_near(a, peaks, period, lag_lo, lag_hi):
    """The strongest peak within LEVEL_TOLERANCE of ``period``, else ``period`` itself
    (a level the autocorrelation shows no peak for); 0.0 outside ``[lag_lo, lag_hi]``."""
    if period < lag_lo * (1.0 - LEVEL_TOLERANCE) or period > lag_hi * (1.0 + LEVEL_TOLERANCE):
        return 0.0
    found = period
    best = -math.inf
    for i in range(peaks.shape[0]):
        p = peaks[i]
        if abs(p - period) <= LEVEL_TOLERANCE * period and a[int(p + 0.5)] > best:
            best = a[int(p + 0.5)]
            found = p
    return found


@jit
def beat_levels(a, x, frame_rate, params):
    """The reference and its metrical neighbours, one table row each.

    Parameters
    ----------
    a : float64 [shape=(lags,)], autocorrelation normalised to ``a[0] = 1``
    x : float64 [shape=(lags,)], ``D`` of FEAT_BACKBEAT, normalised to ``x[0] = 1``
        (zeros: no backbeat evidence)
    frame_rate : float, envelope frames per second
    params : float64 [shape=(N_PARAMS,)], ``PRM_*``

    Returns
    -------
    levels : float64 [shape=(k, LEVEL_COLUMNS)], k <= 5 (0 when ``a`` has no positive
        peak in range); row 0 is the reference, then LEVEL_MULTIPLES order
    """
    lag_lo = 60.0 * frame_rate / params[PRM_MAX_BPM]
    lag_hi = 60.0 * frame_rate / params[PRM_MIN_BPM]
    peaks = acf_peaks(a, lag_lo, lag_hi)
    out = np.zeros((len(LEVEL_MULTIPLES), LEVEL_COLUMNS))
    ref = reference_period(a, peaks, frame_rate, params[PRM_REF_BPM], params[PRM_REF_OCTAVES])
    if ref <= 0.0:
        return out[:0]
    q = _level_near(a, peaks, 2.0 * ref / 3.0, lag_lo, lag_hi)  # a dotted R: step 2
    if q > 0.0 and _value(a, q) > _value(a, ref) and _value(a, 2.0 * q) > _value(a, ref):
        ref = q
    ref_value = _value(a, ref)
    k = 0
    for m in LEVEL_MULTIPLES:
        period = ref if m == 1.0 else _level_near(a, peaks, ref / m, lag_lo, lag_hi)
        if period <= 0.0:
            continue
        row = out[k]
        _features_into(a, x, period, frame_rate, row)
        if m == 1.0:
            eligible = True
        elif m == 2.0 or m == 0.5:
            eligible = _value(a, period) >= params[PRM_MIN_DUPLE] * ref_value
        elif m == 3.0:  # three beats to the reference: the reference divides in three
            eligible = _ternary(a, ref) > params[PRM_MIN_TERNARY]
        else:  # the reference is a division in three of the level
            eligible = row[LEVEL_FEATURES + FEAT_TERNARY] > params[PRM_MIN_TERNARY]
        row[LEVEL_ELIGIBLE] = 1.0 if eligible else 0.0
        k += 1
    return out[:k]


@jit
def level_scores(levels, params):
    """Score of each level (weights ``PRM_W_*`` times the features, minus
    INELIGIBLE_PENALTY for a level that cannot win) and its share of ``exp(score)``
    over the levels (a softmax). Returns ``(scores, shares)``."""
    n = levels.shape[0]
    scores = np.empty(n)
    for i in range(n):
        s = 0.0
        for f in range(N_FEATURES):
            s += params[PRM_W_SALIENCE + f] * levels[i, LEVEL_FEATURES + f]
        if levels[i, LEVEL_ELIGIBLE] != 1.0:
            s -= INELIGIBLE_PENALTY
        scores[i] = s
    shares = np.zeros(n)
    if n:
        top = scores.max()
        total = 0.0
        for i in range(n):
            shares[i] = math.exp(scores[i] - top)
            total += shares[i]
        for i in range(n):
            shares[i] /= total
    return scores, shares


@jit
def _refine(a, period):
    """The period refined on the autocorrelation peaks at 2, 4 and 8 periods."""
    v = _value(a, period)
    k = 2.0
    while k * period < a.shape[0] - 2 and k <= 8.0:
        vk, pk = _peak_near(a, k * period, 1.5)
        if vk > 0.5 * v:
            period = pk / k
        k *= 2.0
    return period


@jit
def tempo_from_acf(acf, xcf, frame_rate, params, default_bpm):
    """Tempo, confidence and runners-up from an autocorrelation of the envelope.

    Parameters
    ----------
    acf : float64 [shape=(lags,)], unnormalised; should reach COMB_MULTIPLES periods of
        the slowest tempo (shorter only weakens the comb)
    xcf : float64 [shape=(lags,)], the low/high difference autocorrelation
        (:func:`beat_levels`)
    frame_rate : float, envelope frames per second
    params : float64 [shape=(N_PARAMS,)], ``PRM_*``
    default_bpm : float, the answer when the envelope shows no periodicity

    Returns
    -------
    bpm : float
    confidence : float in [0, 1], the winner's share times its periodicity (0.0 with
        no periodicity)
    runners_bpm, runners_conf : float64 [shape=(N_RUNNERS_UP,)], the next levels by
        score and the same measure for them (NaN where there is none)
    """
    runners_bpm = np.full(N_RUNNERS_UP, np.nan)
    runners_conf = np.full(N_RUNNERS_UP, np.nan)
    if acf.shape[0] < 3 or not acf[0] > 0.0:
        return default_bpm, 0.0, runners_bpm, runners_conf
    a = acf / acf[0]
    levels = beat_levels(a, xcf, frame_rate, params)
    if levels.shape[0] == 0:
        return default_bpm, 0.0, runners_bpm, runners_conf
    scores, shares = level_scores(levels, params)
    win = 0
    for i in range(levels.shape[0]):
        if levels[i, LEVEL_ELIGIBLE] == 1.0 and scores[i] > scores[win]:
            win = i
    order = np.argsort(-scores)
    k = 0
    for i in order:
        if i != win and k < N_RUNNERS_UP:
            runners_bpm[k] = levels[i, LEVEL_BPM]
            runners_conf[k] = shares[i] * _clarity(a, levels[i, LEVEL_PERIOD])
            k += 1
    confidence = shares[win] * _clarity(a, levels[win, LEVEL_PERIOD])
    period = _refine(a, levels[win, LEVEL_PERIOD])
    return 60.0 * frame_rate / period, confidence, runners_bpm, runners_conf


@jit
def _clarity(a, period):
    """Periodicity of a level, ``A(P)`` clipped to [0, 1]."""
    return min(max(_value(a, period), 0.0), 1.0)
