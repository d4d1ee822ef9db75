"""Loudness meter per ITU-R BS.1770-4 and EBU R128 (Tech 3341 / 3342), streamed.

Feed blocks of any size with :meth:`LoudnessMeter.process`; :meth:`result` gives
integrated loudness (gated), loudness range, true peak (4x polyphase oversampling),
sample peak, and maximum momentary (400 ms) and short-term (3 s) loudness. Block by
block equals one piece, exactly: the kernels carry their state.

Choices where the standards leave room:

* momentary and integrated gating blocks are 400 ms with 75 % overlap (100 ms hop);
  short-term values for the traces and max are 3 s every 100 ms; LRA uses the same
  3 s short-term values every 100 ms (EBU Tech 3342 since 2016: at least 10 Hz, as
  ffmpeg's ebur128; libebur128 takes one a second and reads up to about 1 LU lower on
  dynamic music);
* true peak is always 4x oversampled (48-tap polyphase FIR, BS.1770-4 Annex 2), at
  every sample rate;
* incomplete trailing blocks are not measured (as libebur128).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from .errors import AudioError, ParameterError, check_float_samples, given
from .filters import k_weighting_sos, polyphase_bank
from .kernels.loudness import (
    ABSOLUTE_GATE_LUFS,
    LANES,
    LRA_HOP_SUBBLOCKS,
    LRA_RELATIVE_GATE_LU,
    LUFS_OFFSET,
    RELATIVE_GATE_LU,
    SUBBLOCKS_MOMENTARY,
    SUBBLOCKS_SHORT_TERM,
    kweighted_subblock_power,
)
from .kernels.truepeak import true_peak_block
from .limits import MAX_CHANNELS, checked_sample_rate, checked_whole, is_finite_number

SURROUND_WEIGHT = 1.41  # BS.1770-4 Table 3, +1.5 dB for surround channels
#: Phases of the true-peak interpolator :class:`LoudnessMeter` accepts: 4 is BS.1770-4
#: Annex 2's (the default, what every report reads); 1 reads the sample peak only; more
#: than 16 finds nothing a 24-tap phase filter can resolve.
MIN_TRUE_PEAK_OVERSAMPLE = 1
MAX_TRUE_PEAK_OVERSAMPLE = 16


@dataclass(frozen=True)
class Loudness:
    """Loudness measurements of one stream."""

    integrated_lufs: float  # -inf when every block is gated out (silence)
    true_peak_dbtp: float  # -inf for digital silence
    lra_lu: float  # 0.0 when too short or silent
    sample_peak_dbfs: float
    max_momentary_lufs: float
    max_short_term_lufs: float

    def to_dict(self) -> dict[str, float | None]:
        """Field names as keys, rounded to 0.01 (a -0.001 is 0.0, not -0.0); non-finite
        values become None."""
        out: dict[str, float | None] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = round(float(v), 2) + 0.0 if math.isfinite(v) else None
        return out


def default_channel_weights(channels: int) -> np.ndarray:
    """BS.1770-4 channel weights for the usual WAV channel orders (what
    WAVEFORMATEXTENSIBLE numbers FL FR FC LFE BL BR .. SL SR; an Ogg file's channels are
    put in that order when read, ``audio.VORBIS_TO_WAV``).

    1-4 channels: 1.0 each. 5: L R C Ls Rs. 6 (5.1): L R C LFE Ls Rs. 7 (6.1):
    L R C LFE Cs Ls Rs. 8 (7.1): L R C LFE Lrs Rrs Lss Rss. Other counts: 1.0 each.
    The LFE is excluded; a channel 60-120 degrees off centre weighs 1.41 and one
    further back 1.0 (BS.1770-4 Table 4): the surrounds of 5.x and the side pair of
    7.1 (SL SR) weigh 1.41, 7.1's back pair (BL BR, 135-150 degrees) and 6.1's back
    centre 1.0, as libebur128 weighs them (a sweep found 7.1's back pair at 1.41: 1.5
    LU too loud for a mix whose rears carry it).
    """
    w = np.ones(channels)
    if channels == 5:
        w[3:5] = SURROUND_WEIGHT
    elif channels == 6:
        w[3] = 0.0
        w[4:6] = SURROUND_WEIGHT
    elif channels == 7:
        w[3] = 0.0
        w[5:7] = SURROUND_WEIGHT
    elif channels == 8:
        w[3] = 0.0
        w[6:8] = SURROUND_WEIGHT
    return w


def checked_channel_weights(weights: Sequence[float], channels: int) -> np.ndarray:
    """``weights`` as float64 ``[shape=(channels,)]``, each a finite number >= 0 (a
    weight of 0 leaves a channel out), or :class:`ParameterError`. A negative weight
    subtracted a channel's power: a loudness of silence, or of the log of a negative
    number."""
    try:
        w = np.ascontiguousarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        w = None
    if w is None or w.shape != (channels,):
        count = f"{w.shape[0]} values" if w is not None and w.ndim == 1 else given(weights)
        raise ParameterError(
            f"channel_weights must be {channels} numbers, one per channel, got {count}: "
            f"leave it out for BS.1770-4's weights (1.0 each, LFE 0, surrounds "
            f"{SURROUND_WEIGHT})"
        )
    bad = ~(np.isfinite(w) & (w >= 0.0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ParameterError(
            f"channel_weights[{first}] must be a finite number >= 0 (BS.1770-4's G_i: "
            f"1.0, {SURROUND_WEIGHT} for a surround, 0 to leave the channel out), got "
            f"{float(w[first])!r}"
        )
    return w


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def _lufs(power: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(
            power > 0, LUFS_OFFSET + 10.0 * np.log10(np.maximum(power, 1e-300)), -np.inf
        )


#: Points of a loudness curve in a report (a few kB of JSON per track).
CURVE_POINTS = 200
#: Below this a curve point is silence (BS.1770's absolute gate).
CURVE_FLOOR_LUFS = -70.0


def loudness_curve(
    powers: np.ndarray, *, hop_s: float = 0.1, points: int = CURVE_POINTS
) -> tuple[float, list[float | None]]:
    """Loudness over time, compact enough for a report.

    Parameters
    ----------
    powers : np.ndarray [shape=(n,)], the channel-weighted powers of the 400 ms
        gating blocks (``LoudnessMeter.gating_block_powers``), one every ``hop_s``
    hop_s : float > 0, s
    points : int > 0, the most points returned

    Returns
    -------
    step_s : float, s between points
    lufs : list of float or None: the loudness of the mean power of each run of
        blocks, LUFS rounded to 0.1; None where it is silence (below -70 LUFS)
    """
    p = np.asarray(powers, dtype=np.float64)
    if p.size == 0:
        return float(hop_s), []
    per = max(1, math.ceil(p.size / points))
    starts = np.arange(0, p.size, per)
    means = np.add.reduceat(p, starts) / np.diff(np.append(starts, p.size))
    lufs = _lufs(means)
    return per * float(hop_s), [round(float(v), 1) if v >= CURVE_FLOOR_LUFS else None for v in lufs]


# BS.1770 gating and the EBU loudness range. They run on the sub-block powers, ten
# values a second per channel (72,000 for two hours), once per measurement: plain
# NumPy here, in microseconds to milliseconds, not kernels (as Numba kernels they took
# about 1 s of a machine's first run to compile, on the path every measurement waits
# for).


def block_powers(sub_power, weights, n_sub, hop):
    """Channel-weighted power of blocks of ``n_sub`` sub-blocks every ``hop`` sub-blocks.

    ``z = sum_i G_i * mean_square_i`` (BS.1770-4 eq. 2 before the logarithm).

    Parameters
    ----------
    sub_power : float64 [shape=(channels, k)] mean squares of the 100 ms sub-blocks
    weights : float64 [shape=(channels,)] ``G_i``; a weight of 0 leaves a channel out
    n_sub, hop : int, sub-blocks per block and between block starts

    Returns
    -------
    power : float64 [shape=((k - n_sub) // hop + 1,)], empty when ``k < n_sub``
    """
    n_ch, k = sub_power.shape
    if k < n_sub:
        return np.empty(0)
    windows = np.lib.stride_tricks.sliding_window_view(sub_power, n_sub, axis=1)[:, ::hop]
    out = np.zeros(windows.shape[1])
    for c in range(n_ch):  # sums over windows without differences of running totals
        if weights[c] != 0.0:
            out += weights[c] * (windows[c].sum(axis=1) / n_sub)
    return out


def power_to_lufs(power):
    """``-0.691 + 10 log10(power)``; -inf for zero power."""
    if not power > 0.0:
        return -np.inf
    return LUFS_OFFSET + 10.0 * math.log10(power)


def gated_loudness(powers, relative_gate_lu):
    """Integrated loudness of block ``powers`` with the absolute (-70 LUFS) and a
    relative gate (BS.1770-4 §2.8, eqs. 3-7); -inf when every block is gated out."""
    abs_threshold = 10.0 ** ((ABSOLUTE_GATE_LUFS - LUFS_OFFSET) / 10.0)
    powers = np.asarray(powers, dtype=np.float64)
    above = powers[powers > abs_threshold]
    if not above.size:
        return -np.inf
    rel_threshold = above.mean() * 10.0 ** (relative_gate_lu / 10.0)
    kept = above[above > rel_threshold]
    if not kept.size:
        return -np.inf
    return power_to_lufs(kept.mean())


def loudness_range(short_term_powers):
    """Loudness range per EBU Tech 3342: short-term values gated at -70 LUFS and
    -20 LU below their mean power, LRA = 95th - 10th percentile (nearest rank); 0 when
    fewer than two values survive the gates."""
    abs_threshold = 10.0 ** ((ABSOLUTE_GATE_LUFS - LUFS_OFFSET) / 10.0)
    powers = np.asarray(short_term_powers, dtype=np.float64)
    kept = powers[powers > abs_threshold]
    if kept.size < 2:
        return 0.0
    rel_threshold = kept.mean() * 10.0 ** (LRA_RELATIVE_GATE_LU / 10.0)
    vals = _lufs(kept[kept > rel_threshold])
    m = vals.size
    if m < 2:
        return 0.0
    lo, hi = _percentile_rank(m, 10.0), _percentile_rank(m, 95.0)
    ordered = np.partition(vals, (lo, hi))
    return float(ordered[hi] - ordered[lo])


def _percentile_rank(n, q):
    """Nearest rank, rounded, as in EBU Tech 3342's own computation (and libebur128):
    the percentile ``q`` of ``n`` sorted values is the one at ``round((n - 1) q / 100)``."""
    return int(math.floor((n - 1) * q / 100.0 + 0.5))


def integrated_from_block_powers(powers: np.ndarray) -> float:
    """Gated integrated loudness (LUFS) of 400 ms block powers. Concatenate the blocks
    of several tracks to get their album loudness."""
    return float(gated_loudness(np.ascontiguousarray(powers, dtype=np.float64), RELATIVE_GATE_LU))


class LoudnessMeter:
    """Streaming BS.1770-4 / EBU R128 meter for one stream.

    Feed blocks with :meth:`process`, then read :meth:`result` (or the traces
    :meth:`momentary_lufs`, :meth:`short_term_lufs`); blocks of any size give exactly
    the result of one piece.

    Parameters
    ----------
    sample_rate : int, 8000 .. 384000 Hz
    channels : int, 1 .. 64
    channel_weights : sequence of float [shape=(channels,)], optional
        BS.1770-4 weight ``G_i`` of each channel; default
        :func:`default_channel_weights` (LFE 0, surrounds 1.41)
    true_peak_oversample : int, 1 .. 16, phases of the true-peak interpolator
        (default 4, BS.1770-4 Annex 2; 1 reads the sample peak)
    peaks : bool, default True
        False measures loudness only: no true or sample peak is read (their fields of
        :meth:`result` are NaN), which spares the interpolator's pass over every block
        where only the loudness counts (the master's gain-settling passes)

    Attributes
    ----------
    frames : int, samples per channel measured so far

    Raises
    ------
    ParameterError
        ``sample_rate``, ``channels`` or ``true_peak_oversample`` is out of range, or
        ``channel_weights`` does not have one finite value >= 0 per channel.

    See Also
    --------
    measure_loudness : the same over a whole array at once.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        *,
        channel_weights: Sequence[float] | None = None,
        true_peak_oversample: int = 4,
        peaks: bool = True,
    ) -> None:
        self.sample_rate = checked_sample_rate(sample_rate)
        self.peaks = bool(peaks)
        self.channels = checked_whole(channels, name="channels", lo=1, hi=MAX_CHANNELS)
        if channel_weights is None:
            self.weights = default_channel_weights(self.channels)
        else:
            self.weights = checked_channel_weights(channel_weights, self.channels)
        oversample = true_peak_oversample
        if not (
            is_finite_number(oversample)
            and float(oversample).is_integer()
            and MIN_TRUE_PEAK_OVERSAMPLE <= oversample <= MAX_TRUE_PEAK_OVERSAMPLE
        ):
            raise ParameterError(
                f"true_peak_oversample must be a whole number of phases between "
                f"{MIN_TRUE_PEAK_OVERSAMPLE} and {MAX_TRUE_PEAK_OVERSAMPLE}, got "
                f"{given(oversample)}: leave it at 4 (BS.1770-4's true peak), or 1 for the "
                "sample peak only"
            )
        self._sos = k_weighting_sos(self.sample_rate)
        self._zi = np.zeros((self.channels, self._sos.shape[0], 2))  # sosfilt's layout
        self._acc = np.zeros((self.channels, LANES))
        self._count = 0
        self._subblock = int(round(0.1 * self.sample_rate))
        self._powers: list[np.ndarray] = []
        self._bank = polyphase_bank(int(oversample))
        self._tp_hist = np.zeros((self.channels, self._bank.shape[1] - 1))
        self._tp = np.zeros(self.channels)
        self._peak = np.zeros(self.channels)
        self.frames = 0

    def process(self, block: np.ndarray) -> None:
        """Measure the next block of the stream.

        Parameters
        ----------
        block : np.ndarray [shape=(channels, n)], any float dtype, any n (0 too)

        Raises
        ------
        AudioError
            ``block`` is not ``(channels, n)``, or holds a NaN or infinite sample (the
            meter's state is then left as it was before the block).
        """
        x = np.asarray(block)
        check_float_samples(x, "meter")
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise AudioError(
                f"meter: expected a block of shape ({self.channels}, n), got {x.shape}"
            )
        if x.shape[1] == 0:
            return
        x = np.ascontiguousarray(x, dtype=np.float64)
        p, zi, acc, count = kweighted_subblock_power(
            x, self._sos, self._zi, self._acc, self._count, self._subblock
        )
        # A NaN or infinite sample reaches the filter state and the sums of squares
        # (and stays there): checking those small arrays spares a pass over the block.
        if not (np.isfinite(zi).all() and np.isfinite(acc).all() and np.isfinite(p).all()):
            raise AudioError("meter: block contains NaN or infinite samples")
        self._zi, self._acc, self._count = zi, acc, count
        if p.shape[1]:
            self._powers.append(p)
        if self.peaks:
            self._tp, self._peak, self._tp_hist = true_peak_block(
                x, self._bank, self._tp_hist, self._tp, self._peak
            )
        self.frames += x.shape[1]

    def _sub_powers(self) -> np.ndarray:
        if not self._powers:
            return np.zeros((self.channels, 0))
        if len(self._powers) > 1:
            self._powers = [np.ascontiguousarray(np.concatenate(self._powers, axis=1))]
        return self._powers[0]

    def gating_block_powers(self) -> np.ndarray:
        """Channel-weighted power (BS.1770-4 eq. 2 before the logarithm) of every
        400 ms gating block, 100 ms hop: shape ``(blocks,)``, linear."""
        return block_powers(self._sub_powers(), self.weights, SUBBLOCKS_MOMENTARY, 1)

    def momentary_lufs(self) -> np.ndarray:
        """Momentary loudness (400 ms) every 100 ms: shape ``(blocks,)``, LUFS
        (-inf for silence)."""
        return _lufs(self.gating_block_powers())

    def short_term_lufs(self) -> np.ndarray:
        """Short-term loudness (3 s) every 100 ms: shape ``(blocks,)``, LUFS (-inf for
        silence)."""
        return _lufs(block_powers(self._sub_powers(), self.weights, SUBBLOCKS_SHORT_TERM, 1))

    def result(self) -> Loudness:
        """The measurements of everything processed so far (the stream goes on)."""
        sub = self._sub_powers()
        gating = block_powers(sub, self.weights, SUBBLOCKS_MOMENTARY, 1)
        short = block_powers(sub, self.weights, SUBBLOCKS_SHORT_TERM, 1)
        lra_blocks = block_powers(sub, self.weights, SUBBLOCKS_SHORT_TERM, LRA_HOP_SUBBLOCKS)
        integrated = float(gated_loudness(gating, RELATIVE_GATE_LU))
        lra = float(loudness_range(lra_blocks))
        max_m = float(_lufs(np.array([gating.max()]))[0]) if gating.size else -math.inf
        max_s = float(_lufs(np.array([short.max()]))[0]) if short.size else -math.inf
        tp = _db(float(self._tp.max())) if self.peaks else math.nan
        sp = _db(float(self._peak.max())) if self.peaks else math.nan
        return Loudness(
            integrated_lufs=integrated,
            true_peak_dbtp=tp,
            lra_lu=lra,
            sample_peak_dbfs=sp,
            max_momentary_lufs=max_m,
            max_short_term_lufs=max_s,
        )


def measure_loudness(
    audio: np.ndarray, sample_rate: int, *, channel_weights: Sequence[float] | None = None
) -> Loudness:
    """One-shot :class:`LoudnessMeter` measurement of a whole array.

    Parameters
    ----------
    audio : np.ndarray [shape=(channels, n) or (n,)], any float dtype
    sample_rate : int, 8000 .. 384000 Hz
    channel_weights : sequence of float [shape=(channels,)], optional
        BS.1770-4 channel weights; default :func:`default_channel_weights`

    Returns
    -------
    Loudness
        Integrated loudness (LUFS), loudness range (LU), true peak (dBTP), sample
        peak (dBFS), maximum momentary and short-term loudness (LUFS).

    Raises
    ------
    ParameterError
        ``sample_rate`` or the channel count is out of range, or ``channel_weights``
        does not have one finite value >= 0 per channel.
    AudioError
        ``audio`` has more than two dimensions, or holds a NaN or infinite sample.
    """
    x = np.asarray(audio)
    check_float_samples(x)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2:
        raise AudioError(f"audio: expected shape (channels, samples) or (samples,), got {x.shape}")
    if x.shape[0] > x.shape[1] > 0:  # soundfile's layout: said as such (a newcomer's)
        raise AudioError(
            f"audio: shape {x.shape} has more channels than samples; audio must be "
            "(channels, samples): transpose a (samples, channels) array"
        )
    meter = LoudnessMeter(sample_rate, x.shape[0], channel_weights=channel_weights)
    meter.process(x)
    return meter.result()
