"""Compressor and true-peak limiter: validated, stateful wrappers around the kernels."""

from __future__ import annotations

import math

import numpy as np

from kernels.dynamics import compressor, limiter, limiter_sizes
from kernels.truepeak import polyphase_bank

from .errors import ParameterError

#: Internal safety margin below the ceiling, dB: covers the interpolation of a gain that
#: changes across the 12-tap true-peak window and output quantisation.
LIMITER_MARGIN_DB = 0.05
#: After an attack the gain is held this long before releasing (steady tones stay clean).
LIMITER_HOLD_MS = 10.0


def _check(name: str, value: float, lo: float, hi: float, unit: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v < lo or v > hi:
        u = f" {unit}" if unit else ""
        raise ParameterError(f"{name} must be between {lo:g} and {hi:g}{u}, got {value!r}")
    return v


def _coef(time_ms: float, sample_rate: int) -> float:
    """One-pole smoothing coefficient for a time constant (1 - 1/e in ``time_ms``)."""
    return math.exp(-1.0 / (time_ms * 1e-3 * sample_rate))


def _block(block: np.ndarray, channels: int) -> np.ndarray:
    x = np.ascontiguousarray(block, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != channels:
        raise ParameterError(f"expected a block of shape ({channels}, n), got {x.shape}")
    return x


class Compressor:
    """Feed-forward, stereo-linked soft-knee compressor (no latency)."""

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
        self.channels = int(channels)
        self.params = np.array(
            [
                _check("threshold_db", threshold_db, -80.0, 0.0, "dBFS"),
                _check("ratio", ratio, 1.0, 20.0, ""),
                _check("knee_db", knee_db, 0.0, 24.0, "dB"),
                _coef(_check("attack_ms", attack_ms, 0.01, 1000.0, "ms"), sample_rate),
                _coef(_check("release_ms", release_ms, 1.0, 10000.0, "ms"), sample_rate),
                _check("makeup_db", makeup_db, -24.0, 24.0, "dB"),
            ]
        )
        self._state = np.zeros(1)

    def process(
        self, block: np.ndarray, *, return_gain_reduction: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        x = _block(block, self.channels)
        y, trace, self._state = compressor(x, self.params, self._state, return_gain_reduction)
        return (y, trace) if return_gain_reduction else y


class Limiter:
    """Lookahead limiter that holds a true-peak ceiling; output aligned with input.

    ``process`` returns what is ready (the first ``latency_samples`` are held back);
    ``flush`` returns the rest, so the concatenated output has the input's length.
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
        self.channels = int(channels)
        ceiling = _check("ceiling_dbtp", ceiling_dbtp, -40.0, 0.0, "dBTP")
        look = _check("lookahead_ms", lookahead_ms, 0.5, 50.0, "ms")
        rel = _check("release_ms", release_ms, 1.0, 5000.0, "ms")
        lookahead = max(2, round(look * 1e-3 * sample_rate))
        delay, window, len1, len2 = limiter_sizes(lookahead)
        self.latency_samples = int(delay)
        self._bank = polyphase_bank(4)
        hold = round(LIMITER_HOLD_MS * 1e-3 * sample_rate)
        self._params = np.array(
            [10 ** ((ceiling - LIMITER_MARGIN_DB) / 20.0), _coef(rel, sample_rate), float(hold)]
        )
        self._fstate = np.array([1.0, float(len1), float(len2), 1.0])
        self._istate = np.zeros(7, dtype=np.int64)
        self._hist = np.zeros((channels, self._bank.shape[1] - 1))
        self._delay = np.zeros((channels, delay))
        self._dv = np.ones(window)
        self._di = np.zeros(window, dtype=np.int64)
        self._b1 = np.ones(len1)
        self._b2 = np.ones(len2)
        self._to_skip = self.latency_samples
        self._received = 0
        self._emitted = 0

    @property
    def max_gain_reduction_db(self) -> float:
        return -20.0 * math.log10(max(self._fstate[3], 1e-12))

    def _run(self, x: np.ndarray) -> np.ndarray:
        (
            y,
            self._fstate,
            self._istate,
            self._hist,
            self._delay,
            self._dv,
            self._di,
            self._b1,
            self._b2,
        ) = limiter(
            x,
            self._bank,
            self._params,
            self._fstate,
            self._istate,
            self._hist,
            self._delay,
            self._dv,
            self._di,
            self._b1,
            self._b2,
        )
        if self._to_skip:
            k = min(self._to_skip, y.shape[1])
            self._to_skip -= k
            y = y[:, k:]
        return y

    def process(self, block: np.ndarray) -> np.ndarray:
        x = _block(block, self.channels)
        self._received += x.shape[1]
        y = self._run(x)
        self._emitted += y.shape[1]
        return y

    def flush(self) -> np.ndarray:
        """Push the delayed tail out; after this the limiter is spent."""
        remaining = self._received - self._emitted
        if remaining <= 0:
            return np.zeros((self.channels, 0))
        y = self._run(np.zeros((self.channels, self.latency_samples)))
        y = y[:, :remaining]
        self._emitted += y.shape[1]
        return y


def compress(audio: np.ndarray, sample_rate: int, **params: float) -> np.ndarray:
    """One-shot compressor over a ``(channels, n)`` array."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    return Compressor(sample_rate, x.shape[0], **params).process(x)


def limit(audio: np.ndarray, sample_rate: int, **params: float) -> np.ndarray:
    """One-shot limiter over a ``(channels, n)`` array (same length, aligned)."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    lim = Limiter(sample_rate, x.shape[0], **params)
    return np.concatenate([lim.process(x), lim.flush()], axis=1)
