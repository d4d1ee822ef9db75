"""Float to integer PCM for the writer, and the float a reader will decode from it.

One pass instead of NumPy's chain (scale, add, floor, clip, cast, shift, transpose to
the frame-major layout soundfile writes, and back again for the after-measurement).
Same arithmetic as that chain, so the same integers.
"""

from __future__ import annotations

import math

from ._jit import jit

#: Samples smaller than this many quantisation steps (here 1/256 of one, about
#: -150 dBFS at 16 bits) get no dither: exact zeros, and the tail of a decay after the
#: music, which an IIR filter or a release never takes to exactly zero (it was dithered
#: into noise for a second after a track's end, then cut to silence: a review).
BLANK_BELOW = 1.0 / 256.0


@jit
def quantize_into(x, scale, dither, shift, pcm, back):
    """Round ``x * scale (+ dither)`` to integers, clipped to the format's range.

    Samples under :data:`BLANK_BELOW` steps get no dither: digital silence (a gap
    between tracks, a silent source, the end of a filter's or limiter's decay) stays
    digital silence instead of becoming TPDF noise at about -85 dBFS, as a dither's
    "auto-blanking" does (SoX ``dither -a``).

    Parameters
    ----------
    x : float64 [shape=(channels, n)]
    scale : float, 2 ** (bits - 1): 32768.0 for 16-bit, 8388608.0 for 24-bit
    dither : float64 [shape=(n, channels)] added before rounding, or shape (0, 0)
    shift : int, left shift of the stored integer (8 puts 24-bit PCM in the top bits of
        an int32, as soundfile expects)
    pcm, back : the outputs, below

    Writes
    ------
    pcm : int16 or int32 [shape=(n, channels)], C-contiguous: ``q << shift``, frame-major
        as soundfile writes it, ``q = clip(floor(x * scale (+ dither) + 0.5),
        -scale, scale - 1)``
    back : float64 [shape=(channels, n)] ``q / scale``, what a reader decodes
    """
    ch, n = x.shape
    lo = -scale
    hi = scale - 1.0
    inv = 1.0 / scale
    has_dither = dither.shape[0] > 0
    for c in range(ch):
        row = x[c]
        out = back[c]
        for i in range(n):
            v = row[i] * scale
            if has_dither and abs(v) >= BLANK_BELOW:  # silence stays silent
                v = v + dither[i, c]
            q = min(max(math.floor(v + 0.5), lo), hi)
            out[i] = q * inv
            pcm[i, c] = int(q) << shift
