"""The mastering chain for one track, streamed in blocks.

EQ -> compressor -> gain to the loudness target -> true-peak lookahead limiter.

Passes over the audio (each reads the source again, or a stored copy of the
equalised and compressed signal when it fits the memory budget):

A. measure the source (skipped when the caller already has its loudness, e.g. from
   the fingerprint cache);
B. EQ and compressor, measuring the loudness and true peak of the result;
C. gain to the target, limiter, quantise, write, and measure what was written.

If limiting pulled the result more than :data:`TARGET_TOLERANCE_LU` off target, C runs
once more with the gain corrected; if the written true peak is above the ceiling (it
never should be) C runs again with the gain lowered by the excess. When the target
would need more than ``limiter.max_gain_reduction_db`` of peak limiting, the gain is
lowered instead and the outcome says the target was not reached: a mastering tool
should not crush a dynamic track to hit a number.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from .audio import BLOCK_FRAMES, Quantizer, iter_blocks
from .dynamics import Compressor, Limiter
from .eq import Equalizer
from .meter import Loudness, LoudnessMeter
from .presets import Preset

#: Largest make-up gain the chain applies, dB: near-silent tracks are not blown up.
MAX_GAIN_DB = 30.0
#: The result should land this close to the target (LU); otherwise a corrective pass.
TARGET_TOLERANCE_LU = 0.2
#: Extra render passes allowed to pull the result onto the target.
MAX_CORRECTIONS = 2
#: Outcome counts as on target within this (LU), the issue's acceptance band.
TARGET_ACCEPT_LU = 0.5
#: Below this the track is treated as silent: no gain, no compression offset.
SILENCE_LUFS = -70.0
BlockSource = Callable[[], Iterable[np.ndarray]]
SinkFactory = Callable[[], AbstractContextManager[Callable[[np.ndarray], None]]]


def array_source(audio: np.ndarray, *, block_frames: int = BLOCK_FRAMES) -> BlockSource:
    """A :data:`BlockSource` over an in-memory ``(channels, n)`` array."""

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, audio.shape[1], block_frames):
            yield audio[:, start : start + block_frames]

    return blocks


def file_source(path, *, block_frames: int = BLOCK_FRAMES) -> BlockSource:
    """A :data:`BlockSource` that decodes ``path`` afresh each time it is iterated."""
    return lambda: iter_blocks(path, block_frames=block_frames)


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
    silent = not _finite(before.integrated_lufs) or before.integrated_lufs < SILENCE_LUFS
    offset = 0.0 if silent else float(np.clip(preset.target_lufs - before.integrated_lufs, -40, 40))
    return float(np.clip(preset.compressor.threshold_db - offset, -60.0, 0.0))


def processed_stream(
    source: BlockSource, *, sample_rate: int, channels: int, preset: Preset, threshold_db: float
) -> Iterator[np.ndarray]:
    """EQ then compressor over a fresh pass of ``source``."""
    cfg = preset.compressor
    eq = Equalizer(sample_rate, channels, preset.eq)
    comp = Compressor(
        sample_rate,
        channels,
        threshold_db=threshold_db,
        ratio=cfg.ratio,
        knee_db=cfg.knee_db,
        attack_ms=cfg.attack_ms,
        release_ms=cfg.release_ms,
        makeup_db=cfg.makeup_db,
    )
    for block in source():
        if block.shape[1]:  # kept blocks are in the decoder's float32: the DSP is float64
            yield comp.process(eq.process(np.ascontiguousarray(block, dtype=np.float64)))


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

    def to_dict(self) -> dict:
        return {
            "target_lufs": self.target_lufs,
            "ceiling_dbtp": self.ceiling_dbtp,
            "gain_db": round(self.gain_db, 2),
            "compressor_threshold_db": round(self.compressor_threshold_db, 2),
            "limiter_max_gain_reduction_db": round(self.limiter_max_gain_reduction_db, 2),
            "target_reached": self.target_reached,
            "render_passes": self.passes,
            "notes": list(self.notes),
        }


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


@contextlib.contextmanager
def _discard() -> Iterator[Callable[[np.ndarray], None]]:
    yield lambda pcm: None


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
    seed: int = 0,
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
        passes (float64, 8 bytes per sample) instead of recomputing it from ``source``
    seed : dither seed (re-runs write identical files)
    """
    notes: list[str] = []
    if before is None:
        before = measure_stream(source, sample_rate=sample_rate, channels=channels)
    target = preset.target_lufs
    ceiling = preset.limiter.ceiling_dbtp
    silent = not _finite(before.integrated_lufs) or before.integrated_lufs < SILENCE_LUFS
    if silent:
        notes.append("silent or near-silent source: no loudness gain applied")

    threshold = effective_threshold_db(preset, before)

    def eq_comp() -> Iterator[np.ndarray]:
        return processed_stream(
            source,
            sample_rate=sample_rate,
            channels=channels,
            preset=preset,
            threshold_db=threshold,
        )

    # Pass B: loudness and true peak after EQ and compression.
    stored: list[np.ndarray] | None = [] if keep_processed else None
    meter_b = LoudnessMeter(sample_rate, channels)
    for y in eq_comp():
        meter_b.process(y)
        if stored is not None:
            stored.append(y)
    mid = meter_b.result()

    def processed() -> Iterable[np.ndarray]:
        return stored if stored is not None else eq_comp()

    if gain_db is not None:
        gain = float(gain_db)
        album = True
    else:
        album = False
        gain = 0.0 if silent or not _finite(mid.integrated_lufs) else target - mid.integrated_lufs
    if gain > MAX_GAIN_DB:
        notes.append(f"gain capped at +{MAX_GAIN_DB:g} dB (would need {gain:+.1f} dB)")
        gain = MAX_GAIN_DB

    max_gr = preset.limiter.max_gain_reduction_db
    capped = False

    def cap(g: float) -> float:
        nonlocal capped
        if not _finite(mid.true_peak_dbtp):
            return g
        needed = mid.true_peak_dbtp + g - ceiling
        if needed > max_gr + 1e-9:
            capped = True
            return g - (needed - max_gr)
        return g

    gain = cap(gain)

    after_powers: list[np.ndarray] = []

    def render(g: float) -> tuple[Loudness, float]:
        lim = Limiter(
            sample_rate,
            channels,
            ceiling_dbtp=ceiling,
            lookahead_ms=preset.limiter.lookahead_ms,
            release_ms=preset.limiter.release_ms,
        )
        quant = Quantizer(bit_depth, seed=seed)
        meter = LoudnessMeter(sample_rate, channels)
        with (sink or _discard)() as write:

            def emit(z: np.ndarray) -> None:
                if z.shape[1] == 0:
                    return
                pcm, back = quant.quantize(z)
                write(pcm)
                meter.process(back)

            for y in processed():
                emit(lim.process(y, gain_db=g))  # gain applied on the way in, no pass
            emit(lim.flush())
        after_powers[:] = [meter.gating_block_powers()]
        return meter.result(), lim.max_gain_reduction_db

    passes = 1
    after, lim_gr = render(gain)
    # Limiting costs loudness: correct the gain with what was measured (secant steps,
    # at most MAX_CORRECTIONS extra renders; usually one).
    prev: tuple[float, float] | None = None
    for _ in range(MAX_CORRECTIONS):
        if silent or album or not _finite(after.integrated_lufs):
            break
        error = target - after.integrated_lufs
        if abs(error) <= TARGET_TOLERANCE_LU:
            break
        slope = 1.0
        if prev is not None and abs(gain - prev[0]) > 1e-6:
            slope = float(np.clip((after.integrated_lufs - prev[1]) / (gain - prev[0]), 0.3, 1.0))
        corrected = cap(gain + error / slope)
        if abs(corrected - gain) <= 0.01:
            break
        prev = (gain, after.integrated_lufs)
        gain = corrected
        passes += 1
        after, lim_gr = render(gain)
    for _ in range(2):  # the ceiling is a promise: never write above it
        if not (_finite(after.true_peak_dbtp) and after.true_peak_dbtp > ceiling):
            break
        gain -= after.true_peak_dbtp - ceiling + 0.02
        passes += 1
        after, lim_gr = render(gain)
        notes.append("gain lowered slightly to keep the true peak under the ceiling")

    reached = (
        silent
        or album
        or (
            _finite(after.integrated_lufs)
            and abs(target - after.integrated_lufs) <= TARGET_ACCEPT_LU
        )
    )
    if not reached:
        if capped:
            notes.append(
                f"target {target:g} LUFS not reached ({after.integrated_lufs:.1f} LUFS): it would "
                f"need more than {max_gr:g} dB of peak limiting (limiter.max_gain_reduction_db); "
                "the track was not crushed to hit the number"
            )
        else:
            notes.append(
                f"result {after.integrated_lufs:.2f} LUFS is off the {target:g} LUFS target"
            )
    return MasterOutcome(
        before=before,
        after=after,
        target_lufs=target,
        ceiling_dbtp=ceiling,
        gain_db=gain,
        compressor_threshold_db=threshold,
        limiter_max_gain_reduction_db=lim_gr,
        target_reached=bool(reached),
        passes=passes,
        notes=notes,
        after_block_powers=after_powers[0] if after_powers else None,
    )


def master_array(
    audio: np.ndarray, sample_rate: int, *, preset: Preset, bit_depth: str = "32f"
) -> tuple[np.ndarray, MasterOutcome]:
    """Master an in-memory ``(channels, n)`` array; returns ``(mastered, outcome)``."""
    from .audio import as_audio

    x = as_audio(audio)
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
