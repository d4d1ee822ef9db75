"""Compressor and true-peak limiter: validated, stateful wrappers around the kernels.

Audio is ``(channels, samples)`` float64; blocks of any size (even 0 or 1 sample) may be
streamed and give the same samples as one piece.

Defaults and ranges (unit on each line):

=====================  ==========  ===============
parameter              default     range
=====================  ==========  ===============
threshold_db           (required)  -80 .. +60 dBFS
ratio                  (required)  1 .. 20
knee_db                6           0 .. 24 dB
attack_ms              10          0.01 .. 1000 ms
release_ms (comp.)     150         1 .. 10000 ms
makeup_db              0           -24 .. 24 dB
ceiling_dbtp           -1          -40 .. 0 dBTP
lookahead_ms           5           1 .. 50 ms
release_ms (limiter)   80          1 .. 5000 ms
=====================  ==========  ===============
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ParameterError
from .filters import polyphase_bank
from .kernels.dynamics import (
    COMP_ATTACK,
    COMP_KNEE,
    COMP_MAKEUP,
    COMP_N_PARAMS,
    COMP_N_STATE,
    COMP_RATIO,
    COMP_RELEASE,
    COMP_THRESHOLD,
    LIM_CEILING,
    LIM_GAIN_BOUND,
    LIM_INPUT_GAIN,
    LIM_N_FSTATE,
    LIM_N_ISTATE,
    LIM_N_PARAMS,
    LIM_RELEASE,
    compressor,
    limiter,
)
from .limits import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE_HZ,
    MAX_THRESHOLD_DBFS,
    MIN_LOOKAHEAD_MS,
    MIN_SAMPLE_RATE_HZ,
)

#: Internal safety margin below the ceiling, dB. It covers what the construction in
#: :func:`kernels.dynamics.limiter` does not: a gain that varies across an interpolation
#: window where the ramps of neighbouring peaks meet, and the detector's own under-read
#: of full-band material (its 24-tap interpolator is -1 dB at 20 kHz at 44.1 kHz, and
#: its 4x grid is refined by a parabola): an independent 8x or 32x ``resample_poly``
#: read white noise up to 0.08 dB above the detector, and a 6-channel master of noise
#: bursts at 48 kHz 0.114 dB above it, 0.014 dB over its ceiling when the margin was
#: 0.1 dB (a sweep; ``tests/test_dynamics.py`` keeps both kinds).
LIMITER_MARGIN_DB = 0.2
#: After the last peak the gain is held (the sliding minimum spans this) before it
#: releases: half the release time, at most this, so steady tones down to 20 Hz (half
#: period 25 ms) see a constant gain and stay free of distortion.
LIMITER_MAX_HOLD_MS = 25.0


def _check(name: str, value: float, lo: float, hi: float, unit: str) -> float:
    """``value`` as float, or :class:`ParameterError` naming parameter, value and range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or v < lo or v > hi:
        u = f" {unit}" if unit else ""
        raise ParameterError(f"{name} must be between {lo:g} and {hi:g}{u}, got {value!r}")
    return v


def _check_stream(sample_rate: int, channels: int) -> tuple[int, int]:
    sr = _check("sample_rate", sample_rate, MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ, "Hz")
    ch = _check("channels", channels, 1, MAX_CHANNELS, "")
    if sr != int(sr) or ch != int(ch):
        raise ParameterError(
            f"sample_rate and channels must be whole numbers, got {sample_rate!r}, {channels!r}"
        )
    return int(sr), int(ch)


def _coef(time_ms: float, sample_rate: int) -> float:
    """One-pole coefficient ``exp(-1 / (tau * fs))``: 1 - 1/e of a step in ``time_ms``."""
    return math.exp(-1.0 / (time_ms * 1e-3 * sample_rate))


def _block(block: np.ndarray, channels: int) -> np.ndarray:
    x = np.ascontiguousarray(block, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != channels:
        raise ParameterError(
            f"block must have shape ({channels}, n) (channels, samples), got {x.shape}"
        )
    return x


def limiter_sizes(lookahead: int, taps: int, hold: int) -> tuple[int, int, int, int]:
    """``(delay, window, box1, box2)`` for ``kernels.dynamics.limiter``.

    ``lookahead`` samples of gain ramp, a true-peak interpolator of ``taps`` taps per
    phase and a hold of ``hold`` samples. The two box filters have a combined support
    of ``lookahead`` samples; the audio is delayed by ``lookahead + taps - 2`` and the
    sliding minimum spans at least ``lookahead + taps - 1`` samples, so every sample
    inside the interpolation window of a peak is scaled by at most that peak's required
    gain (proof in ``kernels.dynamics.limiter``).
    """
    m = max(lookahead, 2)
    box1 = (m + 1) // 2
    box2 = m + 1 - box1
    delay = m + taps - 2
    window = max(delay + 1, hold)
    return delay, window, box1, box2


def limiter_state(
    channels: int, delay: int, window: int, box1: int, box2: int
) -> tuple[np.ndarray, ...]:
    """The state of ``kernels.dynamics.limiter`` at the start of a stream (silence,
    nothing held), for ``channels`` and the sizes ``limiter_sizes`` gives:
    ``(fstate, istate, delay_buf, dq_val, dq_idx, box1, box2)``, the order the kernel
    takes and returns them."""
    return (
        np.zeros(LIM_N_FSTATE),
        np.zeros(LIM_N_ISTATE, dtype=np.int64),
        np.zeros((channels, delay)),
        np.ones(window),
        np.zeros(window, dtype=np.int64),
        np.zeros(box1),
        np.zeros(box2),
    )


class Compressor:
    """Feed-forward, stereo-linked soft-knee compressor (no latency).

    The detector is the largest |sample| across channels (max-linked), the static
    curve the quadratic soft knee of Giannoulis, Massberg & Reiss (2012), smoothed in
    the log domain by a smooth branching peak detector. ``attack_ms`` / ``release_ms``
    are time constants: a step in gain reduction is 1 - 1/e (63 %) complete after them.
    Below ``threshold_db - knee_db / 2`` the output is the input times the makeup gain,
    bit for bit.

    Parameters
    ----------
    sample_rate : int, 8000 .. 384000 Hz (``limits``)
    channels : int, 1 .. 64
    threshold_db : float, -80 .. +60 dBFS (above 0 for a float source over full scale)
    ratio : float, 1 .. 20 (input dB per output dB above the threshold)
    knee_db : float, 0 .. 24 dB, width of the soft knee (default 6)
    attack_ms : float, 0.01 .. 1000 ms (default 10)
    release_ms : float, 1 .. 10000 ms (default 150)
    makeup_db : float, -24 .. 24 dB (default 0)

    Raises
    ------
    ParameterError
        A parameter is out of its range, not finite or not a number (the message
        names it, its value and the range with unit); ``sample_rate`` or
        ``channels`` is not a whole number.

    See Also
    --------
    compress : the same over a whole array at once.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        *,
        threshold_db: float,
        ratio: float,
        knee_db: float = 6.0,
        attack_ms: float = 10.0,
        release_ms: float = 150.0,
        makeup_db: float = 0.0,
    ) -> None:
        self.sample_rate, self.channels = _check_stream(sample_rate, channels)
        sr = self.sample_rate
        params = np.empty(COMP_N_PARAMS)
        params[COMP_THRESHOLD] = _check(
            "threshold_db", threshold_db, -80.0, MAX_THRESHOLD_DBFS, "dBFS"
        )
        params[COMP_RATIO] = _check("ratio", ratio, 1.0, 20.0, "")
        params[COMP_KNEE] = _check("knee_db", knee_db, 0.0, 24.0, "dB")
        params[COMP_ATTACK] = _coef(_check("attack_ms", attack_ms, 0.01, 1000.0, "ms"), sr)
        params[COMP_RELEASE] = _coef(_check("release_ms", release_ms, 1.0, 10000.0, "ms"), sr)
        params[COMP_MAKEUP] = _check("makeup_db", makeup_db, -24.0, 24.0, "dB")
        self.params = params
        self._state = np.zeros(COMP_N_STATE)

    def process(
        self, block: np.ndarray, *, return_gain_reduction: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Compress the next block of the stream.

        Parameters
        ----------
        block : np.ndarray [shape=(channels, n)], any float dtype, any n (0 too)
        return_gain_reduction : bool, also return the gain reduction per sample

        Returns
        -------
        y : np.ndarray [shape=(channels, n)], float64
        gain_reduction_db : np.ndarray [shape=(n,)], dB >= 0, makeup not included
            (only with ``return_gain_reduction=True``)

        Raises
        ------
        ParameterError
            ``block`` is not ``(channels, n)``.
        """
        x = _block(block, self.channels)
        y, trace, self._state = compressor(x, self.params, self._state, return_gain_reduction)
        return (y, trace) if return_gain_reduction else y


class Limiter:
    """Lookahead brickwall limiter that holds a true-peak ceiling; output aligned with input.

    ``process`` returns what is ready (the stream is delayed by ``latency_samples``
    internally; the first outputs are withheld so the result lines up with the input);
    ``flush`` returns the rest, so the concatenated outputs have the input's length.
    After ``flush`` the limiter starts a new stream.

    Parameters
    ----------
    sample_rate : int, 8000 .. 384000 Hz (``limits``)
    channels : int, 1 .. 64
    ceiling_dbtp : float, -40 .. 0 dBTP (true peak, 4x oversampled and refined between
        points; held with an internal margin of ``LIMITER_MARGIN_DB``). Default -1
    lookahead_ms : float, 1 .. 50 ms: length of the gain ramp ahead of a peak
        (:data:`~auralis_batch.limits.MIN_LOOKAHEAD_MS`: a shorter one cannot hold a
        true-peak ceiling)
        (default 5)
    release_ms : float, 1 .. 5000 ms: time constant of the release, after a hold of
        ``min(release_ms / 2, 25 ms)`` (default 80)

    Attributes
    ----------
    latency_samples : int, the internal delay in samples (the lookahead plus the
        detector's interpolation window less 2); the aligned output does not show it

    Raises
    ------
    ParameterError
        A parameter is out of its range, not finite or not a number (the message
        names it, its value and the range with unit); ``sample_rate`` or
        ``channels`` is not a whole number.

    See Also
    --------
    limit : the same over a whole array at once.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        *,
        ceiling_dbtp: float = -1.0,
        lookahead_ms: float = 5.0,
        release_ms: float = 80.0,
    ) -> None:
        self.sample_rate, self.channels = _check_stream(sample_rate, channels)
        sr = self.sample_rate
        self.ceiling_dbtp = _check("ceiling_dbtp", ceiling_dbtp, -40.0, 0.0, "dBTP")
        look = _check("lookahead_ms", lookahead_ms, MIN_LOOKAHEAD_MS, 50.0, "ms")
        rel = _check("release_ms", release_ms, 1.0, 5000.0, "ms")
        self._bank = polyphase_bank(4)
        taps = self._bank.shape[1]
        # sup over fractional delays of sum |taps|: |interpolated| <= bound * max|window|
        fine = polyphase_bank(64, taps)
        gain_bound = float(np.abs(fine).sum(axis=1).max()) * 1.01
        lookahead = max(2, round(look * 1e-3 * sr))
        hold = round(min(0.5 * rel, LIMITER_MAX_HOLD_MS) * 1e-3 * sr)
        self._sizes = limiter_sizes(lookahead, taps, hold)
        delay, _window, _box1, _box2 = self._sizes
        self.latency_samples: int = int(delay)
        self._params = np.empty(LIM_N_PARAMS)
        self._params[LIM_CEILING] = 10.0 ** ((self.ceiling_dbtp - LIMITER_MARGIN_DB) / 20.0)
        self._params[LIM_RELEASE] = _coef(rel, sr)
        self._params[LIM_GAIN_BOUND] = gain_bound
        self._params[LIM_INPUT_GAIN] = 1.0
        self._min_gain = 1.0
        #: Largest gain reduction of the last ``process``/``flush`` call (dB, >= 0): a
        #: block's worth of the limiter's work, for a report's gain-reduction curve.
        self.last_gain_reduction_db = 0.0
        self._reset()

    def _reset(self) -> None:
        self._state = limiter_state(self.channels, *self._sizes)
        self._to_skip = self.latency_samples
        self._pending = 0  # input samples not yet returned

    @property
    def max_gain_reduction_db(self) -> float:
        """Largest gain reduction applied so far (dB, >= 0), over all streams."""
        return 0.0 if self._min_gain >= 1.0 else -20.0 * math.log10(max(self._min_gain, 1e-12))

    def _run(self, x: np.ndarray, gain: float = 1.0) -> np.ndarray:
        self._params[LIM_INPUT_GAIN] = gain
        y, min_gain, *state = limiter(x, self._bank, self._params, *self._state)
        self._state = tuple(state)
        if self._to_skip:
            k = min(self._to_skip, y.shape[1])
            self._to_skip -= k
            y = y[:, k:]
        self.last_gain_reduction_db = (
            0.0 if min_gain >= 1.0 else -20.0 * math.log10(max(float(min_gain), 1e-12))
        )
        if y.shape[1]:
            self._min_gain = min(self._min_gain, float(min_gain))
        return y

    def process(self, block: np.ndarray, *, gain_db: float = 0.0) -> np.ndarray:
        """Limit the next block; returns the samples that are ready.

        Parameters
        ----------
        block : np.ndarray [shape=(channels, n)], any float dtype, any n (0 too)
        gain_db : float, -120 .. 120 dB, applied to the block on its way in, exactly
            as ``process(block * 10 ** (gain_db / 20))`` but without a pass over the
            audio of its own (the render chain's gain stage)

        Returns
        -------
        y : np.ndarray [shape=(channels, k)], float64: the next ``k <= n`` output
            samples (fewer at the start of a stream, while the lookahead fills)

        Raises
        ------
        ParameterError
            ``block`` is not ``(channels, n)``, or ``gain_db`` is out of range.
        """
        x = _block(block, self.channels)
        gain = 1.0
        if gain_db != 0.0:
            gain = 10.0 ** (_check("gain_db", gain_db, -120.0, 120.0, "dB") / 20.0)
        self._pending += x.shape[1]
        y = self._run(x, gain)
        self._pending -= y.shape[1]
        return y

    def flush(self) -> np.ndarray:
        """Return the rest of the stream and start a new one.

        Returns
        -------
        y : np.ndarray [shape=(channels, k)], float64: the output samples not returned
            yet (silence is pushed through the lookahead), so that the stream's outputs
            have its inputs' length
        """
        pending = self._pending
        y = self._run(np.zeros((self.channels, self.latency_samples)))[:, :pending]
        self._reset()
        return np.ascontiguousarray(y)


def _as_audio(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        x = x[np.newaxis]
    if x.ndim != 2:
        raise ParameterError(f"audio must have shape (channels, samples), got {x.shape}")
    return np.ascontiguousarray(x)


def compress(audio: np.ndarray, sample_rate: int, **params: float) -> np.ndarray:
    """One-shot :class:`Compressor` over a whole array.

    Parameters
    ----------
    audio : np.ndarray [shape=(channels, n) or (n,)]
    sample_rate : int, Hz
    **params : the keyword arguments of :class:`Compressor` (``threshold_db`` and
        ``ratio`` are required)

    Returns
    -------
    y : np.ndarray [shape=(channels, n)], float64 (a 1-D input comes back as one channel)

    Raises
    ------
    ParameterError
        ``audio`` is not 1-D or 2-D, or a parameter is out of range.
    TypeError
        A required parameter is missing or an unknown one is given.
    """
    x = _as_audio(audio)
    return Compressor(sample_rate, x.shape[0], **params).process(x)


def limit(audio: np.ndarray, sample_rate: int, **params: float) -> np.ndarray:
    """One-shot :class:`Limiter` over a whole array: same length, aligned.

    Parameters
    ----------
    audio : np.ndarray [shape=(channels, n) or (n,)]
    sample_rate : int, Hz
    **params : the keyword arguments of :class:`Limiter`

    Returns
    -------
    y : np.ndarray [shape=(channels, n)], float64 (a 1-D input comes back as one channel)

    Raises
    ------
    ParameterError
        ``audio`` is not 1-D or 2-D, or a parameter is out of range.
    TypeError
        An unknown parameter is given.
    """
    x = _as_audio(audio)
    lim = Limiter(sample_rate, x.shape[0], **params)
    return np.concatenate([lim.process(x), lim.flush()], axis=1)
