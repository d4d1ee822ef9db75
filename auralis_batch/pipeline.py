"""The mastering chain for one track, streamed in blocks.

EQ -> compressor -> gain to the loudness target -> true-peak lookahead limiter.

Passes over the audio (each reads the source again, or a stored copy of the
equalised and compressed signal when it fits the memory budget):

A. measure the source (skipped when the caller already has its loudness, e.g. from
   the fingerprint cache);
B. EQ and compressor, measuring the loudness and true peak of the result;
C. gain to the target, limiter, quantise, write, and measure what was written.

Limiting costs loudness. When the gain will drive the processed signal's true peak
into the limiter, the gain is first settled by measuring passes (limiter and meter
only: no quantisation, no encoding) until the loudness is within
:data:`TARGET_PRECISION_LU` of the target (secant steps, at most
:data:`MAX_MEASURING_PASSES`); then C runs once and writes. A gain that leaves the
peaks under the ceiling changes the loudness by exactly itself, so such tracks are
written at once. If what was written is still more than the precision off (it should
not be: quantisation moves loudness by far less), C runs again with the gain
corrected, at most :data:`MAX_CORRECTIONS` times; if the written true peak is above
the ceiling (it never should be) C runs again with the gain lowered by the excess.
When the target would need more than ``limiter.max_gain_reduction_db`` of peak
limiting, the gain is lowered instead and the outcome says the target was not reached:
a mastering tool should not crush a dynamic track to hit a number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from .adaptive import range_compressor
from .audio import BLOCK_FRAMES, Quantizer
from .dynamics import LIMITER_MARGIN_DB, Compressor, Limiter
from .eq import Equalizer, dc_lead_frames, dc_levels
from .errors import AudioError, CeilingError, ParameterError
from .limits import MAX_THRESHOLD_DBFS, SILENCE_LUFS
from .match import LongTermSpectrum
from .meter import Loudness, LoudnessMeter
from .presets import Preset, load_preset

#: Largest rise in loudness the chain gives a track, dB, source to master: near-silent
#: tracks are not blown up. The gain after the EQ and compressor is what is left of it
#: once their own change of loudness is counted (:func:`_max_gain`).
MAX_GAIN_DB = 30.0
#: A track's gain is settled until its loudness is this close to the target (LU): half
#: of the +/-0.1 LU promised, the rest for meters that disagree by a few hundredths.
TARGET_PRECISION_LU = 0.05
#: A result further than this from its target (LU) is not on target: its record says
#: ``target_reached: false`` with a warning saying by how much and why.
TARGET_PROMISE_LU = 0.1
#: Measuring passes (limiter and meter only) allowed to settle a limited track's gain.
MAX_MEASURING_PASSES = 4
#: A measuring pass this close to the target (LU) settles the gain: the secant step
#: from there lands within TARGET_PRECISION_LU, which the written pass checks.
SETTLED_STEP_LU = 0.15
#: Peaks limited by at most this much (dB) cost too little loudness to measure first:
#: the track is written at once (and corrected, rarely, by a written pass).
LIGHT_LIMITING_DB = 0.5
#: An album's shared gain is corrected while its loudness is further off than this
#: (LU): each correction renders and writes every track of the album again.
TARGET_TOLERANCE_LU = 0.2
#: Written passes allowed to correct a track that still missed (rare: quantisation).
MAX_CORRECTIONS = 2
#: A loudness range this far (LU) from a reference's is reported as not matched.
LRA_REPORT_LU = 1.0
#: Pass B is run again (a lower compressor threshold) while its loudness range is
#: more than this above a reference's (LU) ...
LRA_PRECISION_LU = 0.5
#: ... at most this many more times, ...
MAX_RANGE_PASSES = 2
#: ... the threshold at most this far below the preset's (dB) ...
MAX_RANGE_THRESHOLD_DROP_DB = 24.0
#: ... starting from this many dB of threshold per LU of range (secant afterwards).
RANGE_DB_PER_LU = 3.0

#: The equalised and compressed signal between the passes: float32, as the decoders
#: give the source. Its rounding (a relative 6e-8, -144 dB) is that of a 24-bit or
#: float output's own; the limiter and the meters read exactly these samples, so the
#: ceiling and the measurements hold for what is rendered. Kept in memory it costs 4
#: bytes a sample (engine._prepare's budget counts its itemsize), half of float64's.
PROCESSED_DTYPE = np.float32

BlockSource = Callable[[], Iterable[np.ndarray]]
SinkFactory = Callable[[], AbstractContextManager[Callable[[np.ndarray], None]]]


def array_source(audio: np.ndarray, *, block_frames: int = BLOCK_FRAMES) -> BlockSource:
    """A :data:`BlockSource` over an in-memory ``(channels, n)`` array."""

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, audio.shape[1], block_frames):
            yield audio[:, start : start + block_frames]

    return blocks


def measure_stream(source: BlockSource, *, sample_rate: int, channels: int) -> Loudness:
    """Loudness of a stream (pass A)."""
    meter = LoudnessMeter(sample_rate, channels)
    for block in source():
        meter.process(block)
    return meter.result()


def effective_threshold_db(preset: Preset, before: Loudness) -> float:
    """Compressor threshold in the source's dBFS.

    Presets define the threshold at the target level; a source that is ``d`` dB below
    its target gets a threshold ``d`` dB lower, so the compressor works alike on quiet
    and loud sources. Silent sources keep the preset's value.
    """
    threshold = preset.compressor.threshold_db - _level_offset_db(preset, before)
    return float(np.clip(threshold, -60, MAX_THRESHOLD_DBFS))


def _level_offset_db(preset: Preset, before: Loudness) -> float:
    """How far the source is below its target, dB (:func:`effective_threshold_db`)."""
    silent = not _finite(before.integrated_lufs) or before.integrated_lufs < SILENCE_LUFS
    return 0.0 if silent else float(np.clip(preset.target_lufs - before.integrated_lufs, -40, 40))


class EqualisedOnce:
    """``source`` through the preset's EQ, computed on the first full pass and then
    served from memory (float64, 8 bytes per sample): a :data:`BlockSource`.

    The EQ does not depend on the compressor threshold that :func:`_narrow_range`
    moves, so its passes compress the same equalised blocks again instead of filtering
    the source again (a reference match's EQ is a bank of about 30 sections). A pass
    that stops early is not kept; :meth:`release` frees the copy.
    """

    def __init__(
        self,
        source: BlockSource,
        *,
        sample_rate: int,
        channels: int,
        preset: Preset,
        check: Callable[[], None] | None = None,
    ):
        self._source, self._preset, self._check = source, preset, check
        self._sample_rate, self._channels = sample_rate, channels
        self._stored: list[np.ndarray] = []
        self._complete = False

    def __call__(self) -> Iterator[np.ndarray]:
        if self._complete:
            yield from _replay(self._stored, self._check)()
            return
        self._stored = []
        for y in equalised_blocks(self._source(), self._preset, self._sample_rate, self._channels):
            self._stored.append(y)
            yield y
        self._complete = True

    def release(self) -> None:
        """Free the stored copy (a later pass would filter the source again)."""
        self._stored, self._complete = [], False


def equalised_blocks(
    blocks: Iterable[np.ndarray], preset: Preset, sample_rate: int, channels: int
) -> Iterator[np.ndarray]:
    """``blocks`` through ``preset``'s EQ (float64), started from the stream's DC offset
    (:func:`~auralis_batch.eq.dc_levels` of its first :data:`~auralis_batch.eq.DC_LEAD_S`
    seconds, gathered from as many blocks as that takes, so that any block size gives
    the same samples): a source offset from its first sample opened with the
    high-pass's step response, and that one peak set the limiter's gain for the whole
    track (fourth sweep). Empty blocks are left out."""
    lead = dc_lead_frames(sample_rate)
    it = iter(blocks)
    held: list[np.ndarray] = []
    have = 0
    for block in it:
        if block.shape[1]:
            held.append(block)
            have += block.shape[1]
            if have >= lead:
                break
    if not held:
        return
    start = np.concatenate([b[:, :lead] for b in held], axis=1)  # dc_levels takes lead
    eq = Equalizer(sample_rate, channels, preset.eq, start_levels=dc_levels(start, sample_rate))
    del start
    for block in itertools.chain(held, it):
        if block.shape[1]:
            yield eq.process(np.ascontiguousarray(block, dtype=np.float64))


def compressor_for(
    preset: Preset, sample_rate: int, channels: int, *, threshold_db: float
) -> Compressor:
    """The render's compressor of ``preset`` (at ``threshold_db``, see
    :func:`effective_threshold_db`)."""
    cfg = preset.compressor
    return Compressor(
        sample_rate,
        channels,
        threshold_db=threshold_db,
        ratio=cfg.ratio,
        knee_db=cfg.knee_db,
        attack_ms=cfg.attack_ms,
        release_ms=cfg.release_ms,
        makeup_db=cfg.makeup_db,
    )


def limiter_for(preset: Preset, sample_rate: int, channels: int) -> Limiter:
    """The render's limiter of ``preset``."""
    cfg = preset.limiter
    return Limiter(
        sample_rate,
        channels,
        ceiling_dbtp=cfg.ceiling_dbtp,
        lookahead_ms=cfg.lookahead_ms,
        release_ms=cfg.release_ms,
    )


def processed_stream(
    source: BlockSource,
    *,
    sample_rate: int,
    channels: int,
    preset: Preset,
    threshold_db: float,
    gain_reduction_db: list[float] | None = None,
    equalised: bool = False,
) -> Iterator[np.ndarray]:
    """EQ then compressor over a fresh pass of ``source``. A compressor at 1:1 without
    make-up gain is left out: it would give its input back, bit for bit, at the cost
    of a pass (a reference match of a track narrower than the reference uses none).

    ``gain_reduction_db``: when given, emptied and then filled with the compressor's
    largest gain reduction in each block (dB >= 0), for the report.
    ``equalised``: ``source`` is already through the preset's EQ
    (:class:`EqualisedOnce`); only the compressor runs.

    The blocks come out in :data:`PROCESSED_DTYPE`, computed in float64: the form in
    which pass B measures them and the later passes read them, kept or recomputed."""
    cfg = preset.compressor
    if gain_reduction_db is not None:
        gain_reduction_db.clear()
    if equalised:
        blocks = (np.ascontiguousarray(b, dtype=np.float64) for b in source() if b.shape[1])
    else:
        blocks = equalised_blocks(source(), preset, sample_rate, channels)
    if cfg.ratio == 1.0 and cfg.makeup_db == 0.0:
        for x in blocks:
            yield x.astype(PROCESSED_DTYPE)
        return
    comp = compressor_for(preset, sample_rate, channels, threshold_db=threshold_db)
    for x in blocks:  # kept blocks: float32 in, float64 from the EQ
        if gain_reduction_db is None:
            yield comp.process(x).astype(PROCESSED_DTYPE)
        else:
            y, trace = comp.process(x, return_gain_reduction=True)
            gain_reduction_db.append(round(float(trace.max()), 2) if trace.size else 0.0)
            yield y.astype(PROCESSED_DTYPE)


def measure_processed(
    source: BlockSource, *, sample_rate: int, channels: int, preset: Preset, before: Loudness
) -> tuple[Loudness, np.ndarray]:
    """Loudness after EQ and compression, with its gating-block powers (album mode)."""
    meter = LoudnessMeter(sample_rate, channels)
    threshold = effective_threshold_db(preset, before)
    for y in processed_stream(
        source, sample_rate=sample_rate, channels=channels, preset=preset, threshold_db=threshold
    ):
        meter.process(y)
    return meter.result(), meter.gating_block_powers()


@dataclass
class MasterOutcome:
    """What the chain did to one track."""

    before: Loudness
    after: Loudness
    target_lufs: float
    ceiling_dbtp: float
    gain_db: float
    compressor_threshold_db: float  # effective threshold in the source's dBFS
    limiter_max_gain_reduction_db: float
    target_reached: bool
    passes: int
    notes: list[str] = field(default_factory=list)
    #: Gating-block powers of what was written (pooled into an album's loudness).
    after_block_powers: np.ndarray | None = field(default=None, repr=False)
    #: For the report: the compressor's and the limiter's largest gain reduction in
    #: each block (dB), and the written signal's long-term third-octave spectrum.
    compressor_gr_db: list[float] = field(default_factory=list, repr=False)
    limiter_gr_db: list[float] = field(default_factory=list, repr=False)
    spectrum_db: list[float | None] | None = field(default=None, repr=False)
    #: The preset the render ran: the given one, or, with a loudness range to reach (a
    #: reference match), with the compressor it chose (its threshold stated at the
    #: target level, as a preset states it). None: the given one.
    preset: Preset | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "target_lufs": self.target_lufs,
            "ceiling_dbtp": self.ceiling_dbtp,
            "gain_db": round(self.gain_db, 2) + 0.0,  # + 0.0: never -0.0
            "compressor_threshold_db": round(self.compressor_threshold_db, 2) + 0.0,
            "limiter_max_gain_reduction_db": round(self.limiter_max_gain_reduction_db, 2) + 0.0,
            "target_reached": self.target_reached,
            "render_passes": self.passes,
            "notes": list(self.notes),
        }


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


@contextlib.contextmanager
def _discard() -> Iterator[Callable[[np.ndarray], None]]:
    yield lambda pcm: None


@dataclass(frozen=True)
class _Stream:
    """What every pass needs to know about the stream."""

    sample_rate: int
    channels: int
    preset: Preset
    #: Called before each block a pass replays from memory (the track's deadline,
    #: interrupt and parent checks: blocks read from the source are checked there).
    check: Callable[[], None] | None = None
    #: ``every`` of the written master's long-term spectrum: its source's
    #: (:func:`~auralis_batch.match.master_spectrum_every`), so the two compare like
    #: for like.
    spectrum_every: int = 1


def _replay(blocks: list[np.ndarray], check: Callable[[], None] | None) -> BlockSource:
    """A :data:`BlockSource` over blocks kept in memory, ``check``-ed one by one."""

    def replay() -> Iterator[np.ndarray]:
        for block in blocks:
            if check is not None:
                check()
            yield block

    return replay


def _processed_pass(
    stream: _Stream, eq_comp: Callable[[], Iterator[np.ndarray]], *, keep: bool
) -> tuple[Loudness, BlockSource]:
    """Pass B: loudness and true peak after EQ and compression.

    Returns the measurement and a :data:`BlockSource` of the processed signal: the
    blocks kept in memory (``keep``), or ``eq_comp`` itself, which recomputes them.
    """
    stored: list[np.ndarray] | None = [] if keep else None
    meter = LoudnessMeter(stream.sample_rate, stream.channels)
    for y in eq_comp():
        meter.process(y)
        if stored is not None:
            stored.append(y)
    if stored is None:
        return meter.result(), eq_comp
    return meter.result(), _replay(stored, stream.check)


def _max_gain(before: Loudness, mid: Loudness) -> float:
    """The largest gain after the EQ and compressor: what takes the master to
    :data:`MAX_GAIN_DB` over the source's loudness (what they took off is given back
    first; what they added, a preset's make-up gain, counts against it)."""
    if _finite(before.integrated_lufs) and _finite(mid.integrated_lufs):
        return MAX_GAIN_DB + before.integrated_lufs - mid.integrated_lufs
    return MAX_GAIN_DB


def _gain_to_target(
    target: float, mid: Loudness, *, silent: bool, max_gain: float, notes: list[str]
) -> float:
    """The gain that takes the processed signal to ``target``, at most ``max_gain``."""
    gain = 0.0 if silent or not _finite(mid.integrated_lufs) else target - mid.integrated_lufs
    return _capped_makeup(gain, notes, max_gain)


def _capped_makeup(gain: float, notes: list[str], max_gain: float = MAX_GAIN_DB) -> float:
    if gain > max_gain:
        notes.append(f"gain capped at {max_gain:+.1f} dB (would need {gain:+.1f} dB)")
        return max_gain
    return gain


@dataclass
class _LimitingCap:
    """Lowers a gain that would need more peak limiting than the preset allows
    (``limiter.max_gain_reduction_db``), or that is over ``max_gain_db``
    (:func:`_max_gain`), and remembers that it did (``capped``, ``gain_capped``): every
    gain the chain tries, the corrections' included, goes through it."""

    peak_dbtp: float  # true peak of the processed signal, before the gain
    ceiling_dbtp: float
    max_gain_reduction_db: float
    max_gain_db: float = MAX_GAIN_DB
    capped: bool = False
    gain_capped: bool = False

    def __call__(self, gain: float) -> float:
        if gain > self.max_gain_db:
            self.gain_capped = True
            gain = self.max_gain_db
        if not _finite(self.peak_dbtp):
            return gain
        # the limiter holds its ceiling with a margin: count it, as _limits does
        needed = self.peak_dbtp + gain - (self.ceiling_dbtp - LIMITER_MARGIN_DB)
        if needed > self.max_gain_reduction_db + 1e-9:
            self.capped = True
            return gain - (needed - self.max_gain_reduction_db)
        return gain


@dataclass
class _Rendered:
    """One render pass: what was written, measured, and the limiting it took."""

    gain_db: float
    after: Loudness
    limiter_gain_reduction_db: float
    block_powers: np.ndarray
    limiter_gr_db: list[float] = field(default_factory=list)  # per block, dB
    spectrum_db: list[float | None] | None = None  # of what was written


def _render_pass(
    stream: _Stream,
    processed: BlockSource,
    gain_db: float,
    *,
    sink: SinkFactory | None,
    bit_depth: str,
    seed: int,
) -> _Rendered:
    """Pass C: gain (applied on the limiter's way in, no pass of its own), limiter,
    quantisation, the sink, and the loudness of exactly the quantised samples."""
    return _limited_pass(
        stream, processed, gain_db, quant=Quantizer(bit_depth, seed=seed), sink=sink
    )


def _measuring_pass(stream: _Stream, processed: BlockSource, gain_db: float) -> _Rendered:
    """Pass C without quantisation or a sink: the loudness the gain gives."""
    return _limited_pass(stream, processed, gain_db, quant=None, sink=None)


def _limited_pass(
    stream: _Stream,
    processed: BlockSource,
    gain_db: float,
    *,
    quant: Quantizer | None,
    sink: SinkFactory | None,
) -> _Rendered:
    lim = limiter_for(stream.preset, stream.sample_rate, stream.channels)
    # A measuring pass settles the gain on loudness alone: no peaks (their
    # interpolator took about a fifth of such a pass's time); a written one reads them.
    meter = LoudnessMeter(stream.sample_rate, stream.channels, peaks=quant is not None)
    # The report's spectrum of the master, from the pass that writes it (no extra pass).
    spectrum = (
        LongTermSpectrum(stream.sample_rate, stream.channels, every=stream.spectrum_every)
        if quant
        else None
    )
    gr_db: list[float] = []
    with (sink or _discard)() as write:

        def emit(z: np.ndarray) -> None:
            gr_db.append(round(lim.last_gain_reduction_db, 2))
            if z.shape[1] == 0:
                return
            if quant is None:
                meter.process(z)
                return
            pcm, back = quant.quantize(z)
            write(pcm)
            meter.process(back)
            if spectrum is not None:
                spectrum.process(back)

        for y in processed():
            emit(lim.process(y, gain_db=gain_db))
        emit(lim.flush())
    return _Rendered(
        gain_db,
        meter.result(),
        lim.max_gain_reduction_db,
        meter.gating_block_powers(),
        gr_db,
        spectrum.levels_db() if spectrum is not None else None,
    )


def _correct_to_target(
    render: Callable[[float], _Rendered],
    first: _Rendered,
    target: float,
    cap: _LimitingCap,
    *,
    tolerance_lu: float,
    max_passes: int,
) -> tuple[_Rendered, int]:
    """Limiting costs loudness: correct the gain with what was measured (secant steps,
    at most ``max_passes`` more renders) until within ``tolerance_lu``. Returns the
    last render and the number of passes it took."""
    done, extra = first, 0
    prev: tuple[float, float] | None = None
    for _ in range(max_passes):
        if not _finite(done.after.integrated_lufs):
            break
        error = target - done.after.integrated_lufs
        if abs(error) <= tolerance_lu:
            break
        gain = done.gain_db
        corrected = cap(gain + error / _slope(prev, gain, done.after.integrated_lufs))
        if abs(corrected - gain) <= 0.01:
            break
        prev = (gain, done.after.integrated_lufs)
        done = render(corrected)
        extra += 1
    return done, extra


def _narrow_range(
    stream: _Stream,
    eq_comp_at: Callable[[float], Callable[[], Iterator[np.ndarray]]],
    threshold_db: float,
    mid: Loudness,
    kept: list[BlockSource],
    *,
    keep: bool,
    notes: list[str],
) -> tuple[float, Loudness, BlockSource, int]:
    """Move the compressor threshold until pass B's loudness range is the preset's
    ``target_lra_lu`` (a reference's): down while the range is wider, up (less
    compression) while it is narrower, by secant steps of at most
    :data:`MAX_RANGE_PASSES` more B passes, within :data:`MAX_RANGE_THRESHOLD_DROP_DB`
    of the preset's threshold and at most 0 dBFS. The ratio stays the preset's (a
    reference match caps it so nothing is crushed). Returns the threshold, pass B's
    measurement, the processed signal and the passes it took.

    ``kept`` holds pass B's processed signal, the only reference to it: each new pass
    drops the previous one first, so no more than one stored copy is alive."""
    goal = float(stream.preset.target_lra_lu or 0.0)
    floor = max(-60.0, threshold_db - MAX_RANGE_THRESHOLD_DROP_DB)
    top = min(0.0, threshold_db + MAX_RANGE_THRESHOLD_DROP_DB)
    first = threshold_db
    prev: tuple[float, float] | None = None
    passes = 0
    for _ in range(MAX_RANGE_PASSES):
        excess = mid.lra_lu - goal
        if not _finite(mid.lra_lu) or abs(excess) <= LRA_PRECISION_LU:
            break
        if (excess > 0 and threshold_db <= floor) or (excess < 0 and threshold_db >= top):
            break
        slope = RANGE_DB_PER_LU
        if prev is not None and abs(mid.lra_lu - prev[1]) > 1e-3:
            slope = float(np.clip((threshold_db - prev[0]) / (mid.lra_lu - prev[1]), 1.0, 12.0))
        prev = (threshold_db, mid.lra_lu)
        threshold_db = min(top, max(floor, threshold_db - slope * excess))
        kept.clear()
        mid, processed = _processed_pass(stream, eq_comp_at(threshold_db), keep=keep)
        kept.append(processed)
        del processed  # kept holds the only reference while the next trial runs
        passes += 1
    if passes:
        notes.append(
            f"compressor threshold {threshold_db - first:+.1f} dB (to {threshold_db:.1f} dBFS) "
            f"to bring the loudness range to {mid.lra_lu:.1f} LU before limiting"
        )
    return threshold_db, mid, kept.pop(), passes


def _limits(mid: Loudness, gain_db: float, ceiling_dbtp: float) -> bool:
    """Whether the limiter will take more than :data:`LIGHT_LIMITING_DB` off the peaks
    of the processed signal at ``gain_db`` (its margin below the ceiling included):
    only then does the gain change loudness measurably less than itself."""
    peak = mid.true_peak_dbtp
    over = peak + gain_db - (ceiling_dbtp - LIMITER_MARGIN_DB)
    return _finite(peak) and over > LIGHT_LIMITING_DB


def _settle_gain(
    stream: _Stream, processed: BlockSource, gain_db: float, target: float, cap: _LimitingCap
) -> tuple[float, int]:
    """The gain that takes the limited signal onto the target, from measuring passes
    (no quantisation, nothing written; secant steps). A pass that lands within
    :data:`SETTLED_STEP_LU` ends it with the corrected gain unmeasured: the written
    pass measures that. Returns the gain and the passes it took."""
    gain, passes = gain_db, 0
    prev: tuple[float, float] | None = None
    for _ in range(MAX_MEASURING_PASSES):
        got = _measuring_pass(stream, processed, gain).after.integrated_lufs
        passes += 1
        if not _finite(got):
            break
        error = target - got
        if abs(error) <= TARGET_PRECISION_LU:
            break
        wanted = gain + error / _slope(prev, gain, got)
        corrected = cap(wanted)
        if abs(corrected - gain) <= 0.01:
            break
        prev, gain = (gain, got), corrected
        if abs(error) <= SETTLED_STEP_LU or _capped_short(corrected, wanted, got, prev[0], target):
            break
    return gain, passes


def _capped_short(
    gain_db: float, wanted_db: float, lufs: float, at_db: float, target: float
) -> bool:
    """Whether ``gain_db``, which the cap lowered from ``wanted_db``, stays under the
    target: a limiter's loudness rises by at most the gain it is given (more gain, as
    much or more limiting), so ``lufs`` measured at ``at_db`` bounds it. Such a gain
    is final (every raise is capped too): a measuring pass could only confirm it,
    and the written pass measures it (the bench library's capped track under punchy
    took three limiter passes, two of them at this gain). Were it over the target
    after all, the written pass's correction would take it down."""
    return gain_db < wanted_db - 1e-9 and lufs + (gain_db - at_db) < target - TARGET_PRECISION_LU


def _slope(prev: tuple[float, float] | None, gain_db: float, lufs: float) -> float:
    """LU of loudness per dB of gain through the limiter: 1 until two passes give a
    secant, which is kept within 0.3 .. 1."""
    if prev is None or abs(gain_db - prev[0]) <= 1e-6:
        return 1.0
    return float(np.clip((lufs - prev[1]) / (gain_db - prev[0]), 0.3, 1.0))


def _range_notes(
    after: Loudness,
    target_lra_lu: float | None,
    notes: list[str],
    *,
    whose: str = "the reference's",
    album: bool = False,
) -> None:
    """A note when the loudness range is not the reference's (or the track's own, when
    the reference was too short to read one; the parameters' notes say why: no
    expansion, or compression held back so nothing is crushed)."""
    if target_lra_lu is None or not _finite(after.lra_lu):
        return
    if abs(after.lra_lu - target_lra_lu) > LRA_REPORT_LU:
        side = "wider" if after.lra_lu > target_lra_lu else "narrower"
        notes.append(
            f"loudness range {after.lra_lu:.1f} LU, {side} than {whose} "
            f"{target_lra_lu:.1f} LU "
            + (
                "(--album: a range is not searched for, the tracks share one gain)"
                if album
                else "(see the parameters' notes)"
            )
        )


def _hold_ceiling(
    render: Callable[[float], _Rendered], done: _Rendered, ceiling: float, notes: list[str]
) -> tuple[_Rendered, int]:
    """The ceiling is a promise: never write above it (a render over it, which the
    limiter's construction should prevent, is redone with the gain lowered, twice at
    most; a render still over it fails the track and is not written).

    Raises
    ------
    CeilingError
        The last render's true peak is still above ``ceiling``.
    """
    extra = 0
    for attempt in range(3):
        peak = done.after.true_peak_dbtp
        if not (_finite(peak) and peak > ceiling):
            break
        if attempt == 2:
            raise CeilingError(
                f"true peak {peak:.2f} dBTP over the {ceiling:g} dBTP ceiling after the gain "
                "was lowered twice: not written (please report this with the preset used)"
            )
        done = render(done.gain_db - (peak - ceiling + 0.02))
        extra += 1
        notes.append("gain lowered slightly to keep the true peak under the ceiling")
    return done, extra


def _target_notes(
    after: Loudness, target: float, cap: _LimitingCap, *, exempt: bool, notes: list[str]
) -> bool:
    """Whether the result is on target, within the promised :data:`TARGET_PROMISE_LU`
    (``exempt``: silent source or album gain); when not, a note saying by how much and
    why. (A result 0.4 LU off, held back by the limiting cap, counted as reached under
    an acceptance band of 0.5 LU: no warning, and "reached" on the report's page.)"""
    if exempt:
        return True
    if _finite(after.integrated_lufs) and abs(target - after.integrated_lufs) <= TARGET_PROMISE_LU:
        return True
    measured = _finite(after.integrated_lufs)
    level = f"{after.integrated_lufs:.2f} LUFS" if measured else "unmeasurable"
    if cap.capped:
        notes.append(
            f"target {target:g} LUFS not reached ({level}): it would need more than "
            f"{cap.max_gain_reduction_db:g} dB of peak limiting "
            "(limiter.max_gain_reduction_db); the track was not crushed to hit the number"
        )
    elif cap.gain_capped:
        notes.append(
            f"target {target:g} LUFS not reached ({level}): it would need a rise of more "
            f"than {MAX_GAIN_DB:g} dB over the source's loudness, which a near-silent source "
            "is not given"
        )
    else:
        by = f", {abs(target - after.integrated_lufs):.2f} LU off" if measured else ""
        notes.append(f"target {target:g} LUFS not reached ({level}{by})")
    return False


def master_stream(
    source: BlockSource,
    *,
    sample_rate: int,
    channels: int,
    preset: Preset,
    before: Loudness | None = None,
    sink: SinkFactory | None = None,
    bit_depth: str = "32f",
    gain_db: float | None = None,
    keep_processed: bool = True,
    keep_equalised: bool = False,
    seed: int = 0,
    check: Callable[[], None] | None = None,
    last_read: Callable[[], None] | None = None,
    spectrum_every: int = 1,
) -> MasterOutcome:
    """Master one stream.

    Parameters
    ----------
    source : callable returning a fresh iterable of float64 (channels, n) blocks
    sample_rate : int, Hz
    channels : int
    preset : validated :class:`Preset`
    before : loudness of the source if already known (skips pass A)
    sink : context-manager factory yielding a ``write(pcm)`` function; opened once per
        render pass, so a corrective pass replaces the previous output atomically
    bit_depth : "16", "24" or "32f": what the sink stores; the after-measurement is of
        exactly those quantised samples
    gain_db : fixed gain (album mode) instead of the gain to the track's own target
    keep_processed : keep the equalised and compressed signal in memory between the
        passes (:data:`PROCESSED_DTYPE`, 4 bytes per sample) instead of recomputing it
        from ``source``
    keep_equalised : when the compressor threshold is searched for a loudness range (a
        reference match), keep the equalised signal too (another 8 bytes per sample)
        so that each trial only compresses again (:class:`EqualisedOnce`)
    seed : dither seed (re-runs write identical files)
    check : called before each block a pass replays from memory; may raise to stop
        the track (the batch's deadline, interrupt and parent checks)
    last_read : called before pass B when that pass is the last to read ``source``
        (the processed signal is kept and no loudness range is searched), so that
        the source can let go of what it holds as it is read
    spectrum_every : the master's long-term spectrum analyses one chunk of frames in
        this many, as its source's plotted one was
        (:func:`~auralis_batch.match.master_spectrum_every`)

    Raises
    ------
    ParameterError
        ``sample_rate`` or ``channels`` out of range for the meter or dynamics.
    OutputError
        From ``sink``: the output could not be written.
    """
    notes: list[str] = []
    stream = _Stream(sample_rate, channels, preset, check, spectrum_every)
    if before is None:
        before = measure_stream(source, sample_rate=sample_rate, channels=channels)
    target = preset.target_lufs
    ceiling = preset.limiter.ceiling_dbtp
    silent = not _finite(before.integrated_lufs) or before.integrated_lufs < SILENCE_LUFS
    if silent:
        short = not _finite(before.max_momentary_lufs) and _finite(before.sample_peak_dbfs)
        # an album's gain is the album's: applied to this track as to the others
        applied = "the album's gain applied" if gain_db is not None else "no loudness gain applied"
        notes.append(
            f"too short to measure its loudness (BS.1770 needs a 400 ms block): {applied}"
            if short
            else f"silent or near-silent source: {applied}"
        )
    threshold = effective_threshold_db(preset, before)

    comp_gr: list[float] = []  # the last full pass's, for the report
    album = gain_db is not None
    # An album keeps its tracks' compression as the album gain was measured with it.
    ranged = not (silent or album) and preset.target_lra_lu is not None
    narrow = ranged and preset.compressor.ratio > 1
    equalised = ranged and keep_processed and keep_equalised
    eq_source: BlockSource = source
    if equalised:
        eq_source = EqualisedOnce(
            source, sample_rate=sample_rate, channels=channels, preset=preset, check=check
        )

    def eq_comp_at(threshold_db: float) -> Callable[[], Iterator[np.ndarray]]:
        return lambda: processed_stream(
            eq_source,
            sample_rate=sample_rate,
            channels=channels,
            preset=preset,
            threshold_db=threshold_db,
            gain_reduction_db=comp_gr,
            equalised=equalised,
        )

    if last_read is not None and keep_processed and not ranged:
        last_read()
    mid, processed = _processed_pass(stream, eq_comp_at(threshold), keep=keep_processed)
    passes = 0
    goal_lra = preset.target_lra_lu
    if (
        ranged
        and not narrow
        and goal_lra is not None
        and _finite(mid.lra_lu)
        and mid.lra_lu > goal_lra + LRA_PRECISION_LU
    ):
        # The source's range needed no compression, but the matching EQ widened it
        # past the reference's: compress toward it after all, by the same rule.
        notes.append(
            f"the matching EQ widened the loudness range to {mid.lra_lu:.1f} LU, past "
            f"{preset.target_lra_whose} {goal_lra:.1f} LU"
        )
        comp = range_compressor(
            mid.lra_lu,
            goal_lra,
            mid.true_peak_dbtp if _finite(mid.true_peak_dbtp) else -1.0,
            before.integrated_lufs,
            preset.target_lufs,
            notes,
            whose=preset.target_lra_whose,
        )
        preset = dataclasses.replace(preset, compressor=comp)
        stream = _Stream(sample_rate, channels, preset, check, spectrum_every)
        threshold = effective_threshold_db(preset, before)
        del processed  # one stored copy at a time
        mid, processed = _processed_pass(stream, eq_comp_at(threshold), keep=keep_processed)
        passes += 1
        narrow = True
    used = preset  # the preset the render runs, for the report
    if narrow:
        kept = [processed]  # _narrow_range lets go of it before computing the next
        del processed
        threshold, mid, processed, range_passes = _narrow_range(
            stream, eq_comp_at, threshold, mid, kept, keep=keep_processed, notes=notes
        )
        passes += range_passes
        if range_passes:  # the report's parameters say the threshold the render used
            # within a preset's range (-60 to 0 dBFS at the target level): a threshold
            # raised past it on a quiet source reads 0 there; its note gives the dBFS
            at_target = float(np.clip(threshold + _level_offset_db(preset, before), -60, 0))
            compressor = dataclasses.replace(preset.compressor, threshold_db=round(at_target, 2))
            used = dataclasses.replace(preset, compressor=compressor)
        if isinstance(eq_source, EqualisedOnce):
            eq_source.release()  # the render reads the kept processed signal
    max_gain = MAX_GAIN_DB if album else _max_gain(before, mid)
    if album:
        gain = _capped_makeup(float(gain_db), notes)
    else:
        gain = _gain_to_target(target, mid, silent=silent, max_gain=max_gain, notes=notes)
    cap = _LimitingCap(
        mid.true_peak_dbtp, ceiling, preset.limiter.max_gain_reduction_db, max_gain_db=max_gain
    )
    gain = cap(gain)

    def render(g: float) -> _Rendered:
        return _render_pass(stream, processed, g, sink=sink, bit_depth=bit_depth, seed=seed)

    # Pass B measured the signal unlimited, so it bounds every gain: one the caps
    # lowered from the gain that reaches the target unlimited is final (_capped_short;
    # 1 track in 7 of the bench library under gentle was measured once before it was
    # written at the same gain).
    unlimited = target - mid.integrated_lufs
    if (
        not (silent or album)
        and _limits(mid, gain, ceiling)
        and not _capped_short(gain, unlimited, mid.integrated_lufs, 0.0, target)
    ):
        gain, settling = _settle_gain(stream, processed, gain, target, cap)
        passes += settling
    done = render(gain)
    passes += 1
    if not (silent or album):
        done, extra = _correct_to_target(
            render, done, target, cap, tolerance_lu=TARGET_PRECISION_LU, max_passes=MAX_CORRECTIONS
        )
        passes += extra
    done, extra = _hold_ceiling(render, done, ceiling, notes)
    passes += extra
    # a silent source gets no gain: it is not on target, and its warning says why
    reached = not silent and _target_notes(done.after, target, cap, exempt=album, notes=notes)
    _range_notes(
        done.after, preset.target_lra_lu, notes, whose=preset.target_lra_whose, album=album
    )
    return MasterOutcome(
        before=before,
        after=done.after,
        target_lufs=target,
        ceiling_dbtp=ceiling,
        gain_db=done.gain_db,
        compressor_threshold_db=threshold,
        limiter_max_gain_reduction_db=done.limiter_gain_reduction_db,
        target_reached=bool(reached),
        passes=passes,
        notes=notes,
        after_block_powers=done.block_powers,
        compressor_gr_db=list(comp_gr),
        limiter_gr_db=done.limiter_gr_db,
        spectrum_db=done.spectrum_db,
        preset=used,
    )


def master_array(
    audio: np.ndarray, sample_rate: int, *, preset: Preset | str, bit_depth: str = "32f"
) -> tuple[np.ndarray, MasterOutcome]:
    """Master an in-memory ``(channels, n)`` array; returns ``(mastered, outcome)``.

    Parameters
    ----------
    audio : np.ndarray [shape=(channels, n) or (n,)], float, finite
    sample_rate : int, 8000 .. 384000 Hz
    preset : :class:`~auralis_batch.presets.Preset` (``load_preset``,
        ``adaptive_preset``), or a built-in preset's name or a TOML file's path
    bit_depth : "16", "24" or "32f": the result is what that format would hold

    Raises
    ------
    AudioError
        ``audio`` is not ``(channels, samples)`` or holds NaN/inf.
    ParameterError
        ``sample_rate`` is out of range, or ``preset`` is not a preset.
    PresetError
        ``preset`` names no built-in preset and no readable TOML file.
    """
    from .audio import as_audio

    if isinstance(preset, (str, os.PathLike)):  # a name: AttributeError deep in the chain
        preset = load_preset(preset)
    if not isinstance(preset, Preset):
        raise ParameterError(
            f"preset must be a Preset (load_preset, adaptive_preset) or a preset's name or "
            f"TOML path, got {preset!r}"
        )
    x = as_audio(audio)
    if x.shape[1] == 0:  # returned as (2, 0), "silent" (a newcomer's)
        raise AudioError("audio: has no samples")
    out: list[np.ndarray] = []

    @contextlib.contextmanager
    def collect() -> Iterator[Callable[[np.ndarray], None]]:
        out.clear()
        quant = Quantizer(bit_depth)
        yield lambda pcm: out.append(quant.as_float(pcm))

    outcome = master_stream(
        array_source(x),
        sample_rate=sample_rate,
        channels=x.shape[0],
        preset=preset,
        sink=collect,
        bit_depth=bit_depth,
    )
    y = np.concatenate(out, axis=1) if out else np.zeros_like(x)
    return y, outcome
