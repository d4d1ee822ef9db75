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
from .pipeline import file_source, master_stream, measure_stream
from .presets import Preset


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
) -> dict:
    """Master one file to ``job.output``; a report record, never an exception."""
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

        outcome = master_stream(
            file_source(src),
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
