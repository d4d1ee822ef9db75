"""The batch engine: many tracks, many cores, one journal, nothing broken.

* Work units are single tracks, or whole folders in album mode. joblib fans them out
  with ``prefer="processes"`` and ``return_as="generator_unordered"``; the backend is
  not hard-coded, so ``joblib.parallel_config(backend="dask")`` runs the same units on
  a Dask cluster.
* Every unit catches its own errors and returns failed records (joblib would abort
  the whole batch on the first exception). A worker process that dies (segfault,
  ``os._exit``, OOM killer) breaks the pool: the units it may have held are re-run one
  at a time, so only the culprit fails.
* A journal in ``OUT/.auralis-batch/journal.jsonl`` records each finished track with
  what produced it; a re-run skips those and does the rest. It is appended and
  fsynced by the parent only, and a torn last line (``kill -9``) is ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .engine import Job, plan_jobs, skipped_record, summarize

JOURNAL_DIR = ".auralis-batch"
JOURNAL_NAME = "journal.jsonl"
#: Below this much free space after a failed write, the disk is considered full.
DISK_FULL_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs; small and picklable (it travels to Dask workers)."""

    preset: str = "gentle"  # built-in name, "adaptive", or a path to a TOML file
    target_lufs: float | None = None
    ceiling_dbtp: float | None = None
    fmt: str = "flac"
    bit_depth: str = "24"
    album: bool = False
    write_loudness_tags: bool = False
    copy_tags: bool = True
    timeout_per_track_s: float | None = None
    use_cache: bool = True
    cache_dir: str | None = None
    reference: str | None = None
    reference_record: dict | None = None  # the reference's analysis, computed once
    tempo: bool | None = None  # None: as the preset says

    def fingerprint(self) -> str:
        """Hash of everything that changes the output (for the journal)."""
        from .presets import load_preset

        d = dataclasses.asdict(self)
        for k in ("timeout_per_track_s", "use_cache", "cache_dir", "reference_record"):
            d.pop(k)
        if self.preset not in ("adaptive", "reference") and self.reference_record is None:
            d["preset_parameters"] = load_preset(self.preset).to_dict()
        if self.reference_record is not None:
            d["reference_sha256"] = self.reference_record.get("content_sha256")
        d["engine"] = __version__
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- journal
def input_identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class Journal:
    """Append-only record of finished tracks in the output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir / JOURNAL_DIR
        self.path = self.dir / JOURNAL_NAME
        self.done: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self.done[entry["input"]] = entry
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn line from a killed run
        self._fh = None

    def is_done(self, job: Job, settings_hash: str) -> bool:
        entry = self.done.get(str(job.input.resolve()))
        if entry is None or job.output is None:
            return False
        try:
            same_input = entry.get("identity") == input_identity(job.input)
        except OSError:
            return False
        return (
            same_input
            and entry.get("settings") == settings_hash
            and entry.get("output") == str(job.output.resolve())
            and job.output.exists()
        )

    def record(self, rec: dict, settings_hash: str) -> None:
        if rec.get("status") != "ok" or not rec.get("output"):
            return
        entry = {
            "input": str(Path(rec["input"]).resolve()),
            "identity": input_identity(Path(rec["input"])),
            "output": str(Path(rec["output"]).resolve()),
            "settings": settings_hash,
            "engine": __version__,
            "preset": rec.get("preset"),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if self._fh is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(entry) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def check_output_writable(out_dir: Path, *, create: bool = True) -> None:
    """Raise OSError (usage/setup error, exit 2) if OUT cannot take files.

    ``create=False`` (a dry run) writes nothing: the folder, or its nearest existing
    parent, must be a writable directory.
    """
    if not create:
        probe = out_dir
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not (probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)):
            raise PermissionError(errno.EACCES, "permission denied", str(probe))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    probe_path = out_dir / JOURNAL_DIR / f".probe-{os.getpid()}"
    probe_path.parent.mkdir(parents=True, exist_ok=True)
    probe_path.write_bytes(b"ok")
    probe_path.unlink()


# --------------------------------------------------------------------------- workers
_WORKER_CACHE: dict[tuple, Any] = {}


def _open_worker_cache(settings: RunSettings):
    if not settings.use_cache:
        return None
    key = (settings.cache_dir,)
    cache = _WORKER_CACHE.get(key)
    if cache is None:
        from .cache import open_cache

        cache = open_cache(settings.cache_dir, enabled=True)
        _WORKER_CACHE[key] = cache
    return cache


def _resolve_preset(settings: RunSettings, record: dict | None):
    from .presets import load_preset

    if settings.reference_record is not None and record is not None:
        from .adaptive import reference_preset

        preset = reference_preset(record, settings.reference_record)
    elif settings.preset == "adaptive":
        from .adaptive import adaptive_preset

        preset = adaptive_preset(record)
    else:
        preset = load_preset(settings.preset)
    return preset.with_overrides(
        target_lufs=settings.target_lufs, ceiling_dbtp=settings.ceiling_dbtp
    )


def _needs_tempo(settings: RunSettings) -> bool:
    if settings.tempo is not None:
        return settings.tempo
    if settings.preset in ("adaptive",) or settings.reference_record is not None:
        return False
    from .presets import load_preset

    return load_preset(settings.preset).tempo


#: Fault injection for the test suite only: "crash:NAME" makes the worker process die
#: (os._exit) on the input file named NAME, "memory:NAME" raises MemoryError there.
FAULT_ENV = "AURALIS_BATCH_FAULT"


def _inject_fault(unit: Sequence[Job]) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kind, _, name = spec.partition(":")
    if any(job.input.name == name for job in unit):
        if kind == "crash":
            os._exit(70)
        if kind == "memory":
            raise MemoryError


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Keep the per-block buffers (about 1 MB each, several per block) in the heap.

    glibc serves allocations of that size with fresh mmap pages and returns them on
    free, so every block paid ~200 page faults per buffer and the kernel zeroed the
    pages again: 14 % of a track's time in the kernel, and memory bandwidth that two
    workers then fight over. Above these thresholds glibc behaves as before. Once per
    process; Linux only (elsewhere, or where libc has no ``mallopt``, skipped). It
    changes just these two thresholds, in the process it runs in (with ``n_jobs=1``,
    the caller's own).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)  # the process's own symbols: glibc's, no ldconfig call
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        libc.mallopt(m_mmap_threshold, 16 * 1024 * 1024)
        libc.mallopt(m_trim_threshold, 32 * 1024 * 1024)
    except (OSError, AttributeError):
        pass


def master_unit(unit: Sequence[Job], settings: RunSettings) -> list[dict]:
    """Master one track, or one album (same folder, one shared gain). Never raises."""
    from .engine import _error_text, failed_record, master_track

    _tune_malloc()

    try:
        _inject_fault(unit)
    except MemoryError as exc:
        return [failed_record(job.input, _error_text(exc), job.output) for job in unit]
    try:
        cache = _open_worker_cache(settings)
    except Exception:  # the cache is an optimisation, never a point of failure
        cache = None
    try:
        if settings.album and len(unit) > 1:
            from .engine import master_album

            return master_album(unit, settings, cache=cache)
        return [master_track(job, settings, cache=cache) for job in unit]
    except Exception as exc:  # a bug must not take the batch down: fail the unit
        return [failed_record(job.input, _error_text(exc), job.output) for job in unit]


# --------------------------------------------------------------------------- the run
@dataclass
class BatchResult:
    records: list[dict]
    summary: dict
    stopped: str | None = None


ProgressCallback = Callable[[dict], None]


def _units(jobs: list[Job], album: bool) -> list[list[Job]]:
    """Work units, largest first (by bytes on disk, a proxy for duration): the long
    tracks start early instead of one of them running alone at the end of the night."""
    if not album:
        units = [[j] for j in jobs]
    else:
        groups: dict[Path, list[Job]] = {}
        for j in jobs:
            groups.setdefault(j.input.parent, []).append(j)
        units = list(groups.values())
    return sorted(units, key=lambda unit: -sum(_size(j.input) for j in unit))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _is_disk_full(rec: dict, out_dir: Path) -> bool:
    if rec.get("status") != "failed" or not rec.get("output"):
        return False
    err = (rec.get("error") or "").lower()
    if "no space left" in err or "disk full" in err:
        return True
    if "write failed" in err or "cannot finish output" in err or "cannot create output" in err:
        with contextlib.suppress(OSError):
            return shutil.disk_usage(out_dir).free < DISK_FULL_BYTES
    return False


def run_master(
    inputs: Sequence[str | os.PathLike],
    out_dir: Path,
    settings: RunSettings,
    *,
    n_jobs: int = -1,
    overwrite: bool = False,
    dry_run: bool = False,
    on_start: Callable[[int, float], None] | None = None,
    on_record: ProgressCallback | None = None,
) -> BatchResult:
    """Plan, skip what the journal says is done, run the rest in parallel."""
    jobs, records = plan_jobs(inputs, out_dir, settings.fmt)
    settings_hash = settings.fingerprint()
    journal = Journal(out_dir)
    todo: list[Job] = []
    for job in jobs:
        if not overwrite and journal.is_done(job, settings_hash):
            rec = skipped_record(job.input, "already mastered with these settings (journal)")
            rec["output"] = str(job.output)
            records.append(rec)
        else:
            todo.append(job)
    if dry_run:
        for job in todo:
            records.append(
                {
                    "input": str(job.input),
                    "output": str(job.output),
                    "status": "planned",
                    "error": None,
                    "seconds": 0.0,
                }
            )
        return BatchResult(records, summarize(records))

    units = _units(todo, settings.album)
    if on_start is not None:
        total_audio = 0.0
        for job in todo:
            with contextlib.suppress(Exception):
                import soundfile as sf

                total_audio += sf.info(str(job.input)).duration
        on_start(len(todo), total_audio)
    stopped: str | None = None
    try:
        inflight = out_dir / JOURNAL_DIR / f"inflight-{os.getpid()}"
        for rec in _execute(units, settings, n_jobs, inflight):
            records.append(rec)
            journal.record(rec, settings_hash)
            if on_record is not None:
                on_record(rec)
            if _is_disk_full(rec, out_dir):
                stopped = "disk full: stopped before the remaining tracks"
                break
    finally:
        journal.close()
        shutil.rmtree(out_dir / JOURNAL_DIR / f"inflight-{os.getpid()}", ignore_errors=True)
    if stopped:
        finished = {r["input"] for r in records}
        for job in todo:
            if str(job.input) not in finished:
                records.append(skipped_record(job.input, f"not processed: {stopped}"))
    records.sort(key=lambda r: str(r.get("input", "")))  # input order, however it ran
    return BatchResult(records, summarize(records), stopped)


def _execute(
    units: list[list[Job]], settings: RunSettings, n_jobs: int, inflight_dir: Path | None = None
) -> Iterable[dict]:
    """Yield records as units finish; survive worker processes that die.

    Each unit marks itself in ``inflight_dir`` while it runs. When a worker dies the
    pool is lost; the units still marked are the suspects and are re-run one at a time
    in a fresh process (the culprit fails alone), then the rest resume in parallel.
    """
    if not units:
        return
    if n_jobs == 1:  # in-process: no pool to lose
        for unit in units:
            yield from master_unit(unit, settings)
        return
    from joblib import Parallel, delayed

    if inflight_dir is not None:
        inflight_dir.mkdir(parents=True, exist_ok=True)
    pending = dict(enumerate(units))
    while pending:
        try:
            parallel = Parallel(n_jobs=n_jobs, prefer="processes", return_as="generator_unordered")
            tasks = (
                delayed(_indexed)(i, pending[i], settings, inflight_dir) for i in sorted(pending)
            )
            for idx, recs in parallel(tasks):
                pending.pop(idx, None)
                yield from recs
        except Exception as exc:
            if not _is_pool_crash(exc):
                raise
            suspects = [i for i in sorted(pending) if _marked(inflight_dir, i)] or sorted(pending)
            for i in suspects:
                yield from _run_alone(i, pending.pop(i), settings, inflight_dir)


def _run_alone(
    i: int, unit: list[Job], settings: RunSettings, inflight_dir: Path | None
) -> list[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # A process of its own (joblib with n_jobs=1 would run in this one, and a crash
    # would take the whole run down); spawn, so nothing of this process is inherited.
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as solo:
            _, recs = solo.submit(_indexed, i, unit, settings, inflight_dir, True).result()
        return recs
    except Exception as exc:
        if not _is_pool_crash(exc):
            raise
        _unmark(inflight_dir, i)
        return [
            {
                "input": str(job.input),
                "output": str(job.output) if job.output else None,
                "status": "failed",
                "error": "worker process crashed while processing this track "
                f"({type(exc).__name__}); no output written",
                "preset": settings.preset,
                "seconds": 0.0,
            }
            for job in unit
        ]


def _marked(inflight_dir: Path | None, i: int) -> bool:
    return inflight_dir is not None and (inflight_dir / str(i)).exists()


def _unmark(inflight_dir: Path | None, i: int) -> None:
    if inflight_dir is not None:
        with contextlib.suppress(FileNotFoundError):
            (inflight_dir / str(i)).unlink()


def _indexed(
    i: int,
    unit: list[Job],
    settings: RunSettings,
    inflight_dir: Path | None = None,
    solo: bool = False,
) -> tuple[int, list[dict]]:
    if inflight_dir is not None:
        with contextlib.suppress(OSError):
            (inflight_dir / str(i)).touch()
    recs = master_unit(unit, settings)
    _unmark(inflight_dir, i)
    return i, recs


def _is_pool_crash(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in {"TerminatedWorkerError", "BrokenProcessPool", "WorkerLostError"} or (
        "worker" in str(exc).lower() and "terminat" in str(exc).lower()
    )
