"""Streaming equaliser: preset EQ bands as an RBJ biquad cascade."""

from __future__ import annotations

import numpy as np

from .filters import (
    HIGH_PASS,
    HIGH_SHELF,
    LOW_PASS,
    LOW_SHELF,
    PEAKING,
    design_cascade,
    sos_filter,
    sos_steady_state,
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
    """The second-order-section cascade of a preset's EQ.

    Bands with 0 dB gain (peaks and shelves) are left out: they are identities. The
    subsonic high-pass (``highpass_hz``, 0 disables it) is a Butterworth (Q 0.707)
    second-order section first in the chain. Band frequencies are kept at or below
    ``MAX_FREQUENCY_FRACTION * sample_rate``. A flat ``gain_db`` (a matching EQ's
    loudness compensation) scales the first section's numerator, or is a section of
    its own when there is no other.

    Parameters
    ----------
    settings : EQSettings, validated by the preset loader (band frequencies in Hz,
        gains in dB, Q > 0, kinds from ``presets.EQ_KINDS``)
    sample_rate : int, Hz

    Returns
    -------
    sos : np.ndarray [shape=(sections, 6)], float64, rows ``b0 b1 b2 a0 a1 a2`` with
        ``a0 == 1`` (``scipy.signal`` layout); ``(0, 6)`` when every band is flat

    Raises
    ------
    KeyError
        A band's ``kind`` is not one of ``presets.EQ_KINDS`` (settings built by hand,
        not by the preset loader, which reports it as a ``PresetError``).
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
        sos = np.zeros((0, 6))
    else:
        sos = design_cascade(
            np.asarray(kinds, dtype=np.int64),
            np.asarray(freqs, dtype=np.float64),
            np.asarray(gains, dtype=np.float64),
            np.asarray(qs, dtype=np.float64),
            float(sample_rate),
        )
    if settings.gain_db != 0.0:
        if not sos.shape[0]:
            sos = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
        sos[0, :3] *= 10.0 ** (settings.gain_db / 20.0)
    return sos


#: The EQ starts from the steady state of the stream's mean over its first this many
#: seconds (:func:`~auralis_batch.filters.sos_steady_state`): a DC offset present from
#: the first sample does not ring through the high-pass (a 0.78 peak from an offset of
#: 0.5 set the limiter's gain for a whole track, fourth sweep), while music that starts
#: mid-waveform (a gapless album's cut) starts as from zero: over 160 random cuts of
#: corpus and synthetic music, the first 20 ms within 1 % of a zero start's error
#: against the uncut stream. Taken from the first sample alone, its value was treated
#: as a step and that step's response subtracted (worse in 29 of 40 cuts, a review);
#: from the first 50 ms, the bass still moved the mean.
DC_LEAD_S = 0.5


def dc_lead_frames(sample_rate: int) -> int:
    """Frames of :data:`DC_LEAD_S` at ``sample_rate``: what :func:`dc_levels` averages."""
    return max(1, round(DC_LEAD_S * sample_rate))


def dc_levels(start: np.ndarray, sample_rate: int) -> np.ndarray:
    """A stream's DC offset per channel for ``Equalizer(start_levels=...)``: the mean
    of its first :data:`DC_LEAD_S` seconds (``start``: at least that much of the stream
    where it is that long, as ``pipeline.equalised_blocks`` gathers it from its blocks,
    so that any block size gives the same levels)."""
    return np.asarray(start[:, : dc_lead_frames(sample_rate)], dtype=np.float64).mean(axis=1)


class Equalizer:
    """Stateful EQ of one stream: :func:`design_eq`'s cascade in transposed direct
    form II (the samples of ``scipy.signal.sosfilt``); blocks of any size give the
    samples of one piece.

    Parameters
    ----------
    sample_rate : int, Hz
    channels : int
    settings : EQSettings, as for :func:`design_eq`
    start_levels : np.ndarray [shape=(channels,)], optional
        The stream's DC offset per channel (:func:`dc_levels`): the filters start from
        their steady state for it instead of from silence

    Attributes
    ----------
    sos : np.ndarray [shape=(sections, 6)], the cascade

    Raises
    ------
    KeyError
        A band's ``kind`` is unknown (see :func:`design_eq`).
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        settings: EQSettings,
        *,
        start_levels: np.ndarray | None = None,
    ) -> None:
        self.sos = design_eq(settings, sample_rate)
        if start_levels is None:  # sosfilt's layout; from silence
            self._zi = np.zeros((channels, self.sos.shape[0], 2))
        else:  # as if the stream had always sat at these levels (its DC offset)
            self._zi = sos_steady_state(self.sos, np.asarray(start_levels, dtype=np.float64))

    def process(self, block: np.ndarray) -> np.ndarray:
        """Equalise the next block of the stream.

        Parameters
        ----------
        block : np.ndarray [shape=(channels, n)], float64

        Returns
        -------
        y : np.ndarray [shape=(channels, n)], float64; ``block`` itself when there is
            nothing to do (no sections, or ``n == 0``)
        """
        if self.sos.shape[0] == 0 or block.shape[1] == 0:
            return block
        y, self._zi = sos_filter(block, self.sos, self._zi)
        return y
