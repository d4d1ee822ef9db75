"""Streaming equaliser: preset EQ bands as an RBJ biquad cascade."""

from __future__ import annotations

import numpy as np

from .kernels.biquad import (
    HIGH_PASS,
    HIGH_SHELF,
    LOW_PASS,
    LOW_SHELF,
    PEAKING,
    design_cascade,
    sos_filter,
)
from .presets import EQSettings

_KIND_CODES = {
    "peaking": PEAKING,
    "low_shelf": LOW_SHELF,
    "high_shelf": HIGH_SHELF,
    "high_pass": HIGH_PASS,
    "low_pass": LOW_PASS,
}

#: Bands are kept below this fraction of the sample rate (the bilinear transform
#: cramps responses near Nyquist); a 12 kHz shelf at 22.05 kHz moves to 9.9 kHz.
MAX_FREQUENCY_FRACTION = 0.45


def design_eq(settings: EQSettings, sample_rate: int) -> np.ndarray:
    """The ``(sections, 6)`` sos cascade for ``settings`` at ``sample_rate``.

    Bands with 0 dB gain (peaks and shelves) are left out: they are identities. The
    subsonic high-pass (``highpass_hz``, 0 disables it) is a Butterworth (Q 0.707)
    second-order section first in the chain.
    """
    kinds: list[int] = []
    freqs: list[float] = []
    gains: list[float] = []
    qs: list[float] = []
    f_max = MAX_FREQUENCY_FRACTION * sample_rate
    if settings.highpass_hz > 0:
        kinds.append(HIGH_PASS)
        freqs.append(min(settings.highpass_hz, f_max))
        gains.append(0.0)
        qs.append(0.7071067811865476)
    for band in settings.bands:
        code = _KIND_CODES[band.kind]
        if code in (PEAKING, LOW_SHELF, HIGH_SHELF) and band.gain_db == 0.0:
            continue
        kinds.append(code)
        freqs.append(min(band.frequency_hz, f_max))
        gains.append(band.gain_db)
        qs.append(band.q)
    if not kinds:
        return np.zeros((0, 6))
    return design_cascade(
        np.asarray(kinds, dtype=np.int64),
        np.asarray(freqs, dtype=np.float64),
        np.asarray(gains, dtype=np.float64),
        np.asarray(qs, dtype=np.float64),
        float(sample_rate),
    )


class Equalizer:
    """Stateful EQ: ``process`` successive blocks of one stream."""

    def __init__(self, sample_rate: int, channels: int, settings: EQSettings) -> None:
        self.sos = design_eq(settings, sample_rate)
        self._zi = np.zeros((channels, self.sos.shape[0], 2))

    def process(self, block: np.ndarray) -> np.ndarray:
        """``block`` (channels, n) float64 -> equalised block of the same shape."""
        if self.sos.shape[0] == 0 or block.shape[1] == 0:
            return block
        y, self._zi = sos_filter(block, self.sos, self._zi)
        return y
