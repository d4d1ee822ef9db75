"""Track-level jobs: measure or master one file, never raising.

Each job catches its own errors and returns a record with ``status`` ``ok`` /
``failed`` / ``skipped`` and a specific ``error``, so one bad file never stops a
batch (joblib would abort every worker on the first exception it sees).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import AtomicWriter, output_subtype, probe, readable_extensions
from .errors import AuralisError, OutputError
from .meter import Loudness
from .pipeline import MEMORY_BUDGET_BYTES, file_source, master_stream, measure_stream
from .presets import Preset

#: A track whose decoded audio fits in this many bytes is decoded once: the analysis
#: keeps the blocks for the render (which keeps its own processed copy under
#: ``MEMORY_BUDGET_BYTES``). About 12.7 minutes of 44.1 kHz stereo.
KEEP_DECODED_BYTES = MEMORY_BUDGET_BYTES // 2


@dataclass(frozen=True)
class Job:
    """One input file and, for master, where its output goes."""

    input: Path
    output: Path | None = None


def discover(
    inputs: Sequence[str | os.PathLike],
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Expand files and folders (recursively) into ``(file, relative_name)`` pairs.

    Returns ``(audio, other)``: files whose extension libsndfile can read, and the
    rest (listed as skipped). Hidden files and our own ``.partial`` temporaries are
    ignored. A named file is taken whatever its extension (the decoder decides).
    """
    exts = readable_extensions()
    audio: list[tuple[Path, Path]] = []
    other: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    f = Path(root) / name
                    if f.suffix.lower().lstrip(".") in exts:
                        audio.append((f, f.relative_to(p)))
                    else:
                        other.append(f)
        else:
            audio.append((p, Path(p.name)))
    return audio, other


def output_path(relative: Path, out_dir: Path, fmt: str) -> Path:
    return out_dir / relative.with_suffix("." + fmt)


def plan_jobs(
    inputs: Sequence[str | os.PathLike], out_dir: Path, fmt: str
) -> tuple[list[Job], list[dict]]:
    """Jobs for ``master``, plus ``skipped``/``failed`` records for files that will not
    be processed (non-audio files in folders, outputs that would overwrite an input or
    collide with another output)."""
    audio, other = discover(inputs)
    inputs_resolved = {f.resolve() for f, _ in audio} | {f.resolve() for f in other}
    jobs: list[Job] = []
    records: list[dict] = [
        skipped_record(f, "not an audio file this build can read (by extension)") for f in other
    ]
    seen: dict[Path, Path] = {}
    for f, rel in audio:
        dst = output_path(rel, out_dir, fmt)
        dst_r = dst.resolve()
        if dst_r in inputs_resolved:
            records.append(
                failed_record(f, f"refused: output {dst} would overwrite an input file", dst)
            )
            continue
        if dst_r in seen:
            records.append(
                failed_record(f, f"refused: output {dst} is also the output of {seen[dst_r]}", dst)
            )
            continue
        seen[dst_r] = f
        jobs.append(Job(f, dst))
    return jobs, records


def skipped_record(path: Path, reason: str) -> dict:
    return {"input": str(path), "status": "skipped", "error": reason, "seconds": 0.0}


def failed_record(path: Path, error: str, output: Path | None = None) -> dict:
    rec = {"input": str(path), "status": "failed", "error": error, "seconds": 0.0}
    if output is not None:
        rec["output"] = str(output)
    return rec


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, AuralisError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory while processing this track"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__}: {exc}"
    # An unexpected bug: keep the last frame so the report points at it.
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"internal error {type(exc).__name__}: {exc}{where}"


def measure_file(path: str | os.PathLike) -> dict:
    """Loudness of one file as a ``measure`` record."""
    t0 = time.perf_counter()
    p = Path(path)
    try:
        info = probe(p)
        loud = measure_stream(file_source(p), sample_rate=info.sample_rate, channels=info.channels)
        rec = {"input": str(p), "status": "ok", "error": None}
        rec.update(loud.to_dict())
        rec.update(
            {
                "duration_s": round(info.duration_s, 3),
                "sample_rate": info.sample_rate,
                "channels": info.channels,
            }
        )
    except Exception as exc:
        rec = {"input": str(p), "status": "failed", "error": _error_text(exc)}
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


def _dither_seed(path: Path) -> int:
    return zlib.crc32(str(path.name).encode())


def master_file(
    job: Job,
    preset: Preset,
    *,
    fmt: str = "flac",
    bit_depth: str = "24",
    before: Loudness | None = None,
    gain_db: float | None = None,
    after_write: Callable[[Path], None] | None = None,
    deadline: float | None = None,
    decoded: list[np.ndarray] | None = None,
) -> dict:
    """Master one file to ``job.output``; a report record, never an exception.

    ``decoded``: the file's blocks, already decoded (by the analysis), so the chain
    reads them from memory instead of decoding the file again.
    """
    t0 = time.perf_counter()
    src = job.input
    dst = job.output
    rec: dict = {
        "input": str(src),
        "output": str(dst) if dst else None,
        "status": "ok",
        "error": None,
        "preset": preset.name,
    }
    try:
        if dst is None:
            raise OutputError("no output path")
        subtype = output_subtype(fmt, bit_depth)
        info = probe(src)
        with contextlib.suppress(OSError):
            if dst.exists() and os.path.samefile(dst, src):
                raise OutputError(f"refused: output {dst} is the input file")

        @contextlib.contextmanager
        def sink() -> Iterator[Callable[[np.ndarray], None]]:
            with AtomicWriter(
                dst,
                sample_rate=info.sample_rate,
                channels=info.channels,
                fmt=fmt,
                subtype=subtype,
            ) as writer:
                yield writer.write

        source = file_source(src) if not decoded else (lambda: iter(decoded))
        if deadline is not None:
            source = _with_deadline(source, deadline)
        outcome = master_stream(
            source,
            sample_rate=info.sample_rate,
            channels=info.channels,
            preset=preset,
            before=before,
            sink=sink,
            bit_depth=bit_depth,
            gain_db=gain_db,
            total_frames=info.frames,
            seed=_dither_seed(src),
        )
        if after_write is not None:
            after_write(dst)
        rec.update(
            {
                "duration_s": round(info.duration_s, 3),
                "sample_rate": info.sample_rate,
                "channels": info.channels,
                "before": outcome.before.to_dict(),
                "after": outcome.after.to_dict(),
                "render": outcome.to_dict(),
                "parameters": preset.to_dict(),
            }
        )
        if not outcome.target_reached:
            rec["warning"] = "; ".join(outcome.notes) or "target not reached"
    except Exception as exc:
        rec["status"] = "failed"
        rec["error"] = _error_text(exc)
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


class TrackTimeoutError(AuralisError):
    """The track took longer than ``--timeout-per-track``."""


def _with_deadline(source, deadline: float):
    def blocks():
        for block in source():
            if time.monotonic() > deadline:
                raise TrackTimeoutError("timed out (--timeout-per-track); no output written")
            yield block

    return blocks


def _analysis_for(
    job: Job, settings, cache, deadline: float | None, keep: list[np.ndarray] | None = None
) -> dict:
    """The track's analysis (cached). With ``keep``, a track small enough to hold
    (:data:`KEEP_DECODED_BYTES`) leaves its decoded blocks there for the render."""
    from .analysis import analyze_file
    from .batch import _needs_tempo

    if deadline is not None and time.monotonic() > deadline:
        raise TrackTimeoutError("timed out before analysis")
    if keep is not None:
        info = probe(job.input)
        if info.frames * info.channels * 8 > KEEP_DECODED_BYTES:
            keep = None
    tempo = _needs_tempo(settings)
    adapts = settings.preset == "adaptive" or settings.reference_record is not None
    return analyze_file(
        job.input,
        tempo=tempo,
        cache=cache,
        keep_blocks=keep,
        hash_content=False,  # with no cache nothing needs the PCM hash
        # With no cache to keep a fingerprint and a preset that does not adapt, nothing
        # would read one: the analysis is the source's loudness (and tempo if asked).
        fingerprint=adapts or tempo,
    )


def _finish_outputs(rec: dict, job: Job, settings, *, album_lufs=None, album_peak=None) -> None:
    from .tags import copy_tags, loudness_tag_values, write_loudness_tags

    notes = []
    if settings.copy_tags:
        notes.append(copy_tags(job.input, job.output))
    if settings.write_loudness_tags:
        after = rec["after"]
        if after["integrated_lufs"] is not None and after["true_peak_dbtp"] is not None:
            values = loudness_tag_values(
                after["integrated_lufs"],
                after["true_peak_dbtp"],
                album_lufs=album_lufs,
                album_peak_dbtp=album_peak,
            )
            notes.append(write_loudness_tags(job.output, values))
    notes = [n for n in notes if n]
    if notes:
        rec["tag_notes"] = notes


def master_track(job: Job, settings, *, cache=None) -> dict:
    """Analyse (cached), choose parameters, master, tag. A record, never an exception."""
    from .analysis import loudness_from_record
    from .batch import _resolve_preset

    t0 = time.perf_counter()
    deadline = (
        time.monotonic() + settings.timeout_per_track_s if settings.timeout_per_track_s else None
    )
    decoded: list[np.ndarray] = []
    try:
        analysis = _analysis_for(job, settings, cache, deadline, keep=decoded)
        preset = _resolve_preset(settings, analysis)
    except Exception as exc:
        rec = failed_record(job.input, _error_text(exc), job.output)
        rec["preset"] = settings.preset
        rec["seconds"] = round(time.perf_counter() - t0, 4)
        return rec
    rec = master_file(
        job,
        preset,
        fmt=settings.fmt,
        bit_depth=settings.bit_depth,
        before=loudness_from_record(analysis),
        deadline=deadline,
        decoded=decoded,
    )
    decoded.clear()
    _decorate(rec, analysis)
    if rec["status"] == "ok":
        _finish_outputs(rec, job, settings)
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


def _decorate(rec: dict, analysis: dict) -> None:
    rec["tempo_bpm"] = analysis.get("tempo_bpm")
    rec["tempo_confidence"] = analysis.get("tempo_confidence")
    rec["fingerprint_cached"] = analysis.get("cached") or False
    rec["analysis_seconds"] = analysis.get("seconds")


def master_album(unit: Sequence[Job], settings, *, cache=None) -> list[dict]:
    """One shared gain for every track of a folder, from the album's loudness.

    Each track goes through its own EQ and compressor; the gating blocks of all the
    processed tracks are pooled and gated together (BS.1770 album loudness, as
    loudgain/r128gain do) and one gain takes the album to the target, lowered if any
    track would need more than the preset's limiting allowance. Relative levels stay
    as the artist made them.
    """
    import numpy as np

    from .analysis import loudness_from_record
    from .batch import _resolve_preset
    from .meter import integrated_from_block_powers
    from .pipeline import measure_processed

    t0 = time.perf_counter()
    prepared = []
    records: list[dict] = []
    for job in unit:
        try:
            analysis = _analysis_for(job, settings, cache, None)
            preset = _resolve_preset(settings, analysis)
            info = probe(job.input)
            before = loudness_from_record(analysis)
            mid, powers = measure_processed(
                file_source(job.input),
                sample_rate=info.sample_rate,
                channels=info.channels,
                preset=preset,
                before=before,
            )
            prepared.append((job, analysis, preset, before, mid, powers))
        except Exception as exc:
            rec = failed_record(job.input, _error_text(exc), job.output)
            rec["preset"] = settings.preset
            records.append(rec)
    if not prepared:
        return records
    pooled = np.concatenate([p[5] for p in prepared]) if prepared else np.zeros(0)
    album_mid = integrated_from_block_powers(pooled)
    target = prepared[0][2].target_lufs
    gain = 0.0 if not np.isfinite(album_mid) else target - album_mid
    for _, _, preset, _, mid, _ in prepared:
        if np.isfinite(mid.true_peak_dbtp):
            allowed = preset.limiter.ceiling_dbtp + preset.limiter.max_gain_reduction_db
            gain = min(gain, allowed - mid.true_peak_dbtp)
    album_peak = -np.inf
    album_records = []
    for job, analysis, preset, before, _, _ in prepared:
        rec = master_file(
            job, preset, fmt=settings.fmt, bit_depth=settings.bit_depth, before=before, gain_db=gain
        )
        _decorate(rec, analysis)
        rec["album"] = {
            "folder": str(job.input.parent),
            "tracks": len(prepared),
            "gain_db": round(float(gain), 2),
            "album_lufs_before_gain": None
            if not np.isfinite(album_mid)
            else round(float(album_mid), 2),
        }
        if rec["status"] == "ok" and rec["after"]["true_peak_dbtp"] is not None:
            album_peak = max(album_peak, rec["after"]["true_peak_dbtp"])
        album_records.append(rec)
    album_after = album_mid + gain if np.isfinite(album_mid) else None
    for (job, *_), rec in zip(prepared, album_records, strict=False):
        if rec["status"] == "ok":
            _finish_outputs(
                rec,
                job,
                settings,
                album_lufs=album_after,
                album_peak=album_peak if np.isfinite(album_peak) else None,
            )
            rec["album"]["album_lufs"] = None if album_after is None else round(album_after, 2)
    elapsed = round(time.perf_counter() - t0, 4)
    for rec in album_records:
        rec.setdefault("seconds", elapsed / max(len(album_records), 1))
    return records + album_records


def summarize(records: Sequence[dict]) -> dict:
    ok = [r for r in records if r["status"] == "ok"]
    return {
        "tracks": len(records),
        "ok": len(ok),
        "failed": sum(r["status"] == "failed" for r in records),
        "skipped": sum(r["status"] == "skipped" for r in records),
        "seconds": round(sum(r.get("seconds", 0.0) for r in records), 3),
        "audio_seconds": round(sum(r.get("duration_s", 0.0) for r in ok), 3),
    }


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
