"""Biquad designs (RBJ Audio EQ Cookbook) and a stateful second-order-section cascade.

Coefficients use SciPy's ``sos`` layout: each row is ``[b0, b1, b2, a0, a1, a2]`` with
``a0 == 1``. The cascade runs in transposed direct form II, like ``scipy.signal.sosfilt``,
and its state has SciPy's shape per channel, ``(channels, sections, 2)``, so a file
processed in blocks gives exactly the samples of one piece.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit

# Filter kinds, as integers so they can cross into jitted code.
PEAKING = 0
LOW_SHELF = 1
HIGH_SHELF = 2
HIGH_PASS = 3
LOW_PASS = 4


@jit
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
    out = np.empty(6)
    if kind == PEAKING:
        b0 = 1.0 + alpha * a_lin
        b1 = -2.0 * cw
        b2 = 1.0 - alpha * a_lin
        a0 = 1.0 + alpha / a_lin
        a1 = -2.0 * cw
        a2 = 1.0 - alpha / a_lin
    elif kind == LOW_SHELF:
        sq = 2.0 * math.sqrt(a_lin) * alpha
        b0 = a_lin * ((a_lin + 1.0) - (a_lin - 1.0) * cw + sq)
        b1 = 2.0 * a_lin * ((a_lin - 1.0) - (a_lin + 1.0) * cw)
        b2 = a_lin * ((a_lin + 1.0) - (a_lin - 1.0) * cw - sq)
        a0 = (a_lin + 1.0) + (a_lin - 1.0) * cw + sq
        a1 = -2.0 * ((a_lin - 1.0) + (a_lin + 1.0) * cw)
        a2 = (a_lin + 1.0) + (a_lin - 1.0) * cw - sq
    elif kind == HIGH_SHELF:
        sq = 2.0 * math.sqrt(a_lin) * alpha
        b0 = a_lin * ((a_lin + 1.0) + (a_lin - 1.0) * cw + sq)
        b1 = -2.0 * a_lin * ((a_lin - 1.0) + (a_lin + 1.0) * cw)
        b2 = a_lin * ((a_lin + 1.0) + (a_lin - 1.0) * cw - sq)
        a0 = (a_lin + 1.0) - (a_lin - 1.0) * cw + sq
        a1 = 2.0 * ((a_lin - 1.0) - (a_lin + 1.0) * cw)
        a2 = (a_lin + 1.0) - (a_lin - 1.0) * cw - sq
    elif kind == HIGH_PASS:
        b0 = (1.0 + cw) / 2.0
        b1 = -(1.0 + cw)
        b2 = (1.0 + cw) / 2.0
        a0 = 1.0 + alpha
        a1 = -2.0 * cw
        a2 = 1.0 - alpha
    else:  # LOW_PASS
        b0 = (1.0 - cw) / 2.0
        b1 = 1.0 - cw
        b2 = (1.0 - cw) / 2.0
        a0 = 1.0 + alpha
        a1 = -2.0 * cw
        a2 = 1.0 - alpha
    out[0] = b0 / a0
    out[1] = b1 / a0
    out[2] = b2 / a0
    out[3] = 1.0
    out[4] = a1 / a0
    out[5] = a2 / a0
    return out


@jit
def design_cascade(kinds, frequencies_hz, gains_db, qs, sample_rate):
    """Stack :func:`rbj_biquad` sections into an ``(n_sections, 6)`` sos array."""
    n = kinds.shape[0]
    sos = np.empty((n, 6))
    for i in range(n):
        sos[i] = rbj_biquad(kinds[i], frequencies_hz[i], gains_db[i], qs[i], sample_rate)
    return sos


@jit
def sos_filter(x, sos, zi):
    """Filter ``x`` through the cascade ``sos`` (transposed direct form II).

    Sample-major like ``scipy.signal.sosfilt`` (so successive sections overlap in the
    CPU pipeline) with channels taken in pairs, giving two independent recurrences per
    loop iteration for instruction-level parallelism.

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
    n_ch, n = x.shape
    n_sec = sos.shape[0]
    y = np.empty_like(x)
    zf = zi.copy()
    c = 0
    while c < n_ch:
        if c + 1 < n_ch:
            za = zf[c].copy()
            zb = zf[c + 1].copy()
            xa = x[c]
            xb = x[c + 1]
            ya = y[c]
            yb = y[c + 1]
            for i in range(n):
                va = xa[i]
                vb = xb[i]
                for s in range(n_sec):
                    b0 = sos[s, 0]
                    b1 = sos[s, 1]
                    b2 = sos[s, 2]
                    a1 = sos[s, 4]
                    a2 = sos[s, 5]
                    ra = b0 * va + za[s, 0]
                    rb = b0 * vb + zb[s, 0]
                    za[s, 0] = b1 * va - a1 * ra + za[s, 1]
                    zb[s, 0] = b1 * vb - a1 * rb + zb[s, 1]
                    za[s, 1] = b2 * va - a2 * ra
                    zb[s, 1] = b2 * vb - a2 * rb
                    va = ra
                    vb = rb
                ya[i] = va
                yb[i] = vb
            zf[c] = za
            zf[c + 1] = zb
            c += 2
        else:
            z = zf[c].copy()
            xc = x[c]
            yc = y[c]
            for i in range(n):
                v = xc[i]
                for s in range(n_sec):
                    r = sos[s, 0] * v + z[s, 0]
                    z[s, 0] = sos[s, 1] * v - sos[s, 4] * r + z[s, 1]
                    z[s, 1] = sos[s, 2] * v - sos[s, 5] * r
                    v = r
                yc[i] = v
            zf[c] = z
            c += 1
    return y, zf
