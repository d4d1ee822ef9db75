"""Filter designs: the coefficients the kernels run with, computed once per track.

Plain Python and NumPy, not kernels: each design works on a few scalars once per
track, and compiling it would cost more than a first run's whole use of it (about
0.5 s of a first master for the RBJ designs alone, against microseconds here).

* :func:`rbj_biquad` and :func:`design_cascade`: RBJ Audio EQ Cookbook sections in
  SciPy's ``sos`` layout (rows ``[b0, b1, b2, a0, a1, a2]``, ``a0 == 1``), for
  :func:`sos_filter`, the allocating wrapper of ``kernels.biquad.sos_filter_into``;
* :func:`k_weighting_sos`: the K-weighting of ITU-R BS.1770-4 at any sample rate;
* :func:`polyphase_bank`: the true-peak interpolator (BS.1770-4 Annex 2), for the
  meter's and the limiter's detectors.
"""

from __future__ import annotations

import math

import numpy as np

from .kernels.biquad import sos_filter_into

# Filter kinds of :func:`rbj_biquad`.
PEAKING = 0
LOW_SHELF = 1
HIGH_SHELF = 2
HIGH_PASS = 3
LOW_PASS = 4


def rbj_biquad(kind, frequency_hz, gain_db, q, sample_rate):
    """One RBJ cookbook section, normalised to ``a0 = 1``.

    Parameters
    ----------
    kind : int, one of PEAKING, LOW_SHELF, HIGH_SHELF, HIGH_PASS, LOW_PASS
    frequency_hz : float, centre / corner frequency, 0 < f < sample_rate / 2
    gain_db : float, boost or cut (ignored by the pass filters)
    q : float > 0; for shelves this is the cookbook's Q (0.707 = slope S of 1)
    sample_rate : float, Hz

    Returns
    -------
    sos : float64 [shape=(6,)]
    """
    a_lin = 10.0 ** (gain_db / 40.0)  # cookbook "A"
    w0 = 2.0 * math.pi * frequency_hz / sample_rate
    cw = math.cos(w0)
    alpha = math.sin(w0) / (2.0 * q)
    b0, b1, b2, a0, a1, a2 = _rbj_coefficients(kind, a_lin, cw, alpha)
    out = np.empty(6)
    out[0] = b0 / a0
    out[1] = b1 / a0
    out[2] = b2 / a0
    out[3] = 1.0
    out[4] = a1 / a0
    out[5] = a2 / a0
    return out


def _rbj_coefficients(kind, a_lin, cw, alpha):
    """The cookbook's ``(b0, b1, b2, a0, a1, a2)`` of filter ``kind``, before
    normalising, from ``A``, ``cos(w0)`` and ``alpha``."""
    if kind == PEAKING:
        return (
            1.0 + alpha * a_lin,
            -2.0 * cw,
            1.0 - alpha * a_lin,
            1.0 + alpha / a_lin,
            -2.0 * cw,
            1.0 - alpha / a_lin,
        )
    if kind == LOW_SHELF:
        sq = 2.0 * math.sqrt(a_lin) * alpha
        return (
            a_lin * ((a_lin + 1.0) - (a_lin - 1.0) * cw + sq),
            2.0 * a_lin * ((a_lin - 1.0) - (a_lin + 1.0) * cw),
            a_lin * ((a_lin + 1.0) - (a_lin - 1.0) * cw - sq),
            (a_lin + 1.0) + (a_lin - 1.0) * cw + sq,
            -2.0 * ((a_lin - 1.0) + (a_lin + 1.0) * cw),
            (a_lin + 1.0) + (a_lin - 1.0) * cw - sq,
        )
    if kind == HIGH_SHELF:
        sq = 2.0 * math.sqrt(a_lin) * alpha
        return (
            a_lin * ((a_lin + 1.0) + (a_lin - 1.0) * cw + sq),
            -2.0 * a_lin * ((a_lin - 1.0) + (a_lin + 1.0) * cw),
            a_lin * ((a_lin + 1.0) + (a_lin - 1.0) * cw - sq),
            (a_lin + 1.0) - (a_lin - 1.0) * cw + sq,
            2.0 * ((a_lin - 1.0) - (a_lin + 1.0) * cw),
            (a_lin + 1.0) - (a_lin - 1.0) * cw - sq,
        )
    if kind == HIGH_PASS:
        return (
            (1.0 + cw) / 2.0,
            -(1.0 + cw),
            (1.0 + cw) / 2.0,
            1.0 + alpha,
            -2.0 * cw,
            1.0 - alpha,
        )
    # LOW_PASS
    return ((1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0, 1.0 + alpha, -2.0 * cw, 1.0 - alpha)


def design_cascade(kinds, frequencies_hz, gains_db, qs, sample_rate):
    """Stack :func:`rbj_biquad` sections into an ``(n_sections, 6)`` sos array."""
    sos = np.empty((len(kinds), 6))
    for i in range(len(kinds)):
        sos[i] = rbj_biquad(
            int(kinds[i]), float(frequencies_hz[i]), float(gains_db[i]), float(qs[i]), sample_rate
        )
    return sos


def sos_filter(x, sos, zi):
    """Filter ``x`` through the cascade ``sos`` (transposed direct form II).

    Same samples as ``scipy.signal.sosfilt`` (same operations in the same order), about
    3x faster on stereo: see ``kernels.biquad``. A thin allocating wrapper around
    ``kernels.biquad.sos_filter_into``: NumPy allocates ``y`` because it asks the
    kernel for huge pages on large arrays, and the page faults of a 4 KiB-page
    allocation (Numba's) cost as much as the filter itself on a 4-minute track.

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    sos : float64 [shape=(sections, 6)], ``a0 == 1``
    zi : float64 [shape=(channels, sections, 2)], state from the previous block
        (zeros to start)

    Returns
    -------
    y : float64 [shape=(channels, n)]
    zf : float64 [shape=(channels, sections, 2)], state for the next block
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    zi = np.ascontiguousarray(zi, dtype=np.float64)
    y = np.empty_like(x)
    zf = sos_filter_into(x, sos, zi, y)
    return y, zf


def sos_steady_state(sos: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The cascade's state after a constant input ``levels[c]`` on each channel for
    ever: ``scipy.signal.sosfilt_zi(sos) * level`` in :func:`sos_filter`'s layout.

    Started from it with a stream's DC offset (``eq.Equalizer``: its mean over its first
    0.5 s), the stream goes on as if the offset had always been there, instead of
    opening with the filters' step response: a high-pass fed a DC offset of 0.5 opened
    with a 0.78 peak, and that one transient set the limiter's gain for the whole track,
    3.5-5 LU under its target (fourth sweep).

    Parameters
    ----------
    sos : np.ndarray [shape=(sections, 6)], ``a0 == 1``
    levels : np.ndarray [shape=(channels,)], the constant input of each channel

    Returns
    -------
    zi : np.ndarray [shape=(channels, sections, 2)]
    """
    u = np.asarray(levels, dtype=np.float64).copy()
    zi = np.zeros((u.shape[0], sos.shape[0], 2))
    for s, (b0, b1, b2, _a0, a1, a2) in enumerate(sos):
        den = 1.0 + a1 + a2  # a pole at DC (den 0) is no filter this engine designs
        y = u * ((b0 + b1 + b2) / den) if den != 0.0 else np.zeros_like(u)
        zi[:, s, 0] = y - b0 * u  # TDF-II: y = b0 u + z0
        zi[:, s, 1] = b2 * u - a2 * y  # z1 = b2 u - a2 y
        u = y
    return zi


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


def polyphase_bank(oversample: int = 4, taps_per_phase: int = 24, beta: float = 8.0) -> np.ndarray:
    """Design the interpolation filter bank, shape ``(oversample, taps_per_phase)``.

    A windowed-sinc low-pass at the original Nyquist, cut into phases. Each phase's taps
    sum to 1 (unity gain at DC) so a constant is reproduced exactly at every phase.
    BS.1770-4 Annex 2's example uses 4 phases of 12 taps, whose response already droops
    1 dB at 18 kHz (at 44.1 kHz) and so under-reads peaks of bright material; 24 taps
    with a Kaiser window (beta 8) are flat to 0.03 dB at 18 kHz and -1 dB at 20 kHz.
    """
    n_total = oversample * taps_per_phase
    # Centre so phase p holds h[k*L + p], delay (taps_per_phase/2) input samples.
    m = np.arange(n_total, dtype=np.float64) - (taps_per_phase // 2) * oversample
    h = np.sinc(m / oversample) * np.kaiser(n_total, beta)
    bank = np.empty((oversample, taps_per_phase), dtype=np.float64)
    for p in range(oversample):
        phase = h[p::oversample][:taps_per_phase]
        bank[p] = phase / phase.sum()
    # Phase 0 is the sample instant: sinc's zeros make it a unit impulse, exactly here
    # (np.sinc leaves ~1e-17 at its zeros), so its outputs are the samples themselves.
    bank[0] = 0.0
    bank[0, taps_per_phase // 2] = 1.0
    return np.ascontiguousarray(bank[:, ::-1])  # reversed: dot with oldest..newest
