"""The batch engine: many tracks, many cores, one journal, nothing broken.

* The plan (:mod:`auralis_batch.plan`) is made before any work: whole-run problems
  stop the run before it starts, and each output is checked against the journal. A
  file at an output's place that this tool did not write (for this OUT) is never
  replaced without ``--overwrite``; one it wrote with other settings, from a changed
  input, or that no longer matches what it wrote, is redone and the record says why.
* A lock on OUT keeps a second run out; temporaries a killed run left are removed
  under that lock.
* Work units are single tracks, or whole folders in album mode. joblib fans them out
  with ``prefer="processes"`` and ``return_as="generator_unordered"``; the backend is
  not hard-coded, so ``joblib.parallel_config(backend="dask")`` runs the same units on
  a Dask cluster. Every unit catches its own errors and returns records. A worker
  process that dies breaks the pool: the units it may have held are re-run one at a
  time, so only the culprit fails.
* SIGINT and SIGTERM stop the run: no new tracks, the workers are stopped, their
  temporaries removed, and the result says what finished and what was interrupted.
  A second signal exits at once. A full disk stops the run the same way.
* The journal is appended and fsynced by this process only, after the worker has
  made the output durable.
"""

from __future__ import annotations

import contextlib
import errno
import numbers
import os
import secrets
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import stopping, warm
from .adaptive import check_reference
from .audio import (
    check_output_channels,
    is_legacy_temporary,
    is_our_temporary,
    keep_aside,
    kept_aside_since,
    partial_prefix,
    partials_of,
    readable_extensions,
    sf_path,
)
from .errors import (
    AuralisError,
    OutputError,
    ParameterError,
    ParameterTypeError,
    RunAbandonedError,
    TrackStoppedError,
    given,
)
from .identity import move_no_clobber
from .journal import (
    STATE_DIR,
    CommitLog,
    Journal,
    OutputState,
    RunLock,
    RunLockedError,
    check_no_run_in,
    forget_commit_note,
)
from .plan import Job, Plan, plan_master
from .records import (
    DONE_REASON,
    add_warning,
    album_not_mastered,
    disk_full_reason,
    error_text,
    failed_record,
    noted_measurements,
    os_reason,
    record,
    skipped_record,
    summarize,
)
from .settings import RunSettings, needs_fingerprint, needs_tempo

if TYPE_CHECKING:
    from .engine import Watch

__all__ = ["BatchResult", "PlanError", "RunLockedError", "RunSettings", "run_master"]

#: Fault injection for the test suite only: "crash:NAME" makes the worker process die
#: (os._exit) on the input file named NAME, "memory:NAME" raises MemoryError there,
#: "slow:NAME" sleeps 0.25 s per block there (a track to interrupt), "vanish:NAME"
#: makes the process die right after that output is renamed into place, before the
#: run journals it (``kill -9`` at the worst moment), "stopped:NAME" sends the run
#: SIGINT right after that rename and hangs until the stopping run kills it (Ctrl-C
#: at the worst moment), "slow-cleanup:", "slow-plan:" and "slow-journal:" make the
#: run's cleanup, its planning (after the inputs are walked) and its journal step
#: (inside the rewrite's deferral) wait 1 s, and "slow-report:" the CLI before its
#: reports (a signal during each).
FAULT_ENV = "AURALIS_BATCH_FAULT"


def fault_pause(step: str) -> None:
    """The test suite's "slow-STEP:" faults (see :data:`FAULT_ENV`): say ``[test]
    STEP`` on stderr and wait a second."""
    if f"slow-{step}:" in os.environ.get(FAULT_ENV, ""):
        print(f"[test] {step}", file=sys.stderr, flush=True)
        time.sleep(1.0)


def _cleanup_fault() -> None:
    fault_pause("cleanup")


class PlanError(AuralisError):
    """The run as a whole is wrong (colliding outputs, OUT that is an input folder);
    ``problems`` lists each one."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass
class BatchResult:
    records: list[dict]
    summary: dict
    stopped: str | None = None  # why the run stopped early, if it did
    signal: int | None = None  # the signal that stopped it
    notes: list[str] = field(default_factory=list)


ProgressCallback = Callable[[dict], None]


# --------------------------------------------------------------------------- workers
_WORKER_CACHE: dict[tuple, object] = {}


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


def _quiet_pool_worker() -> None:
    """A pool worker's warnings are one ``[warning]`` line each, as the run's own, and
    the cache's are left to the run, which opened the cache before starting the pool
    and said once what was wrong with it (each worker said it again, with Python's
    file, line number and source line: helper's sweep)."""
    import warnings

    from ._startup import one_line_warnings
    from .cache import CacheWarning

    one_line_warnings()
    warnings.filterwarnings("ignore", category=CacheWarning)


def _inject_fault(unit: Sequence[Job], watch: Watch) -> None:
    # "KIND:NAME[,KIND:NAME...]": the test suite's faults, one per track name
    for spec in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        kind, _, name = spec.partition(":")
        if any(job.input.name == name for job in unit):
            if kind == "crash":
                os._exit(70)
            if kind == "memory":
                raise MemoryError
            if kind == "slow":
                watch.throttle_s = 0.25
            if kind == "vanish":
                watch.vanish_after_commit = True
            if kind == "stopped":
                watch.stop_after_commit = True


_ORPHAN_GUARD = False
#: This process is inside a track (its errors become a failed record), or in a step a
#: signal must not cut (:func:`_stops_deferred`): a first SIGINT/SIGTERM is noted and
#: raised at the next check instead.
_IN_TRACK = False
_TERM_PENDING: list[int] = []  # a pool worker got SIGTERM inside a track: its run's pid


def _die_with_the_run(parent_pid: int | None) -> None:
    """In a pool worker whose parent is the run: when the run dies (even ``kill -9``),
    get SIGTERM (Linux ``PR_SET_PDEATHSIG``); the track in hand stops at its next
    block the way any failure does (its temporary removed) and the worker exits. A
    SIGTERM sent to the worker alone while its run goes on fails just that track
    (:class:`TrackStoppedError`); SIGINT is ignored: Ctrl-C reaches the whole process
    group, and the run stops its workers itself. Once per process; elsewhere the
    per-block parent check alone stops the track."""
    global _ORPHAN_GUARD
    if _ORPHAN_GUARD or parent_pid is None or os.getppid() != parent_pid:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    _ORPHAN_GUARD = True

    def on_term(signum, frame):
        if not _IN_TRACK:
            os._exit(0)  # idle: nothing to clean up
        # Raising here could land inside a kernel's return; the track checks this at
        # its next block (Watch.check -> _raise_if_stopped).
        _TERM_PENDING.append(parent_pid)

    signal.signal(signal.SIGTERM, on_term)
    for name in ("SIGINT", "SIGHUP"):  # sent to the whole group: the run stops its workers
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            pr_set_pdeathsig = 1  # <sys/prctl.h>
            ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != parent_pid:  # died before the guard was up
        os._exit(0)


def master_unit(
    unit: Sequence[Job],
    settings: RunSettings,
    *,
    parent_pid: int | None = None,
    progress_file: Path | None = None,
    decode_ahead: bool = False,
) -> list[dict]:
    """Master one track, or one album (same folder, one shared gain). Never raises.

    ``parent_pid``: the run's process; a worker whose parent it is stops its track
    when that process dies (no outputs nobody would journal). ``progress_file``: where
    the worker notes how far the unit is. ``decode_ahead``: the run has a core to
    spare (see :class:`~auralis_batch.engine.Watch`).
    """
    # The engine (and with it NumPy's DSP, Numba and the kernels) loads here, in the
    # worker, when there is a track to master: a re-run with nothing left to do, and
    # the parent of a pool, never pay for it.
    from ._startup import keep_freed_memory, load_numba_numpy_support
    from .engine import Watch, master_album, master_track

    load_numba_numpy_support()
    keep_freed_memory()
    _die_with_the_run(parent_pid)
    pool_worker = parent_pid is not None and parent_pid != os.getpid()
    if pool_worker and os.getppid() != parent_pid:
        os._exit(0)  # a pool worker whose run died before this unit started: nobody waits
    if pool_worker:
        _quiet_pool_worker()
    timeout = settings.timeout_per_track_s
    commits = (
        None
        if progress_file is None
        else CommitLog(progress_file.parent, settings.fingerprint(), settings.journal_flags())
    )
    watch = Watch(
        commits=commits,
        deadline=None if not timeout else time.monotonic() + timeout * len(unit),
        limit_s=None if not timeout else timeout * len(unit),
        parent_pid=parent_pid if parent_pid is not None and os.getppid() == parent_pid else None,
        progress_file=progress_file,
        interrupt=_raise_if_stopped,
        decode_ahead=decode_ahead,
    )
    try:
        _inject_fault(unit, watch)
    except MemoryError as exc:
        return [failed_record(job.input, error_text(exc), job.output) for job in unit]
    try:
        cache = _open_worker_cache(settings)
    except Exception:  # the cache is an optimisation, never a point of failure
        cache = None
    global _IN_TRACK
    _TERM_PENDING.clear()  # a SIGTERM after the last unit's last check was for that one
    _IN_TRACK = True
    try:
        if settings.album:
            return master_album(unit, settings, cache=cache, watch=watch)
        return [master_track(job, settings, cache=cache, watch=watch) for job in unit]
    except Exception as exc:  # a bug must not take the batch down: fail the unit
        return [failed_record(job.input, error_text(exc), job.output) for job in unit]
    finally:
        _IN_TRACK = False
        if cache is not None:
            with contextlib.suppress(Exception):
                cache.flush()  # hits and misses reach `cache stats` after every unit
        if watch.parent_pid is not None and os.getppid() != watch.parent_pid:
            os._exit(0)  # the run is gone: nobody will read this result


# --------------------------------------------------------------------------- planning
def check_output_writable(out_dir: Path, *, create: bool = True) -> None:
    """Raise OSError (a setup error, exit 2) if OUT cannot take files.

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
    import tempfile

    fd, probe_path = tempfile.mkstemp(prefix=".auralis-probe-", dir=out_dir)
    os.close(fd)
    os.unlink(probe_path)


def _decide(
    plan: Plan,
    journal: Journal,
    settings_hashes: tuple[str, ...],
    *,
    overwrite: bool,
    album: bool,
    dry_run: bool,
    preset: str | None = None,
    known: dict | None = None,
    flags: dict | None = None,
) -> list[Job]:
    """Check every planned output against the journal; returns the jobs to run (also
    as ``known["todo"]``, before a signal may stop the run) and adds records for the
    rest to ``plan.records``.

    In album mode a folder is one unit: when any of its tracks is to be done, its
    finished tracks are redone with it (one shared gain, album tags of the whole).
    An output that changed since this tool wrote it is kept aside (renamed to
    ``NAME.altered-DATE``) as its redo takes its place (``Job.keep_aside``); an
    album's are moved here, all or none, unless ``dry_run``.
    """
    # Reading the states may take long (inputs touched since are hashed again) and
    # may be stopped; what follows moves edited masters aside: a signal waits for it.
    states = {job: journal.state(job, settings_hashes, preset, flags) for job in plan.jobs}
    with _stops_deferred(raise_after=False):  # the caller raises it, once it is noted
        todo = _decided(plan, journal, states, overwrite=overwrite, album=album, dry_run=dry_run)
        if known is not None:
            known["todo"] = todo
        return todo


def _decided(
    plan: Plan,
    journal: Journal,
    states: dict[Job, OutputState],
    *,
    overwrite: bool,
    album: bool,
    dry_run: bool,
) -> list[Job]:
    """:func:`_decide` once every planned output's state is known."""
    refused_in: dict[Path, Job] = {}  # album folder -> a track whose output is refused
    refused: set[Job] = set()
    kept: dict[Job, Path] = {}  # altered masters already kept aside (album mode)
    aside_failed: dict[Job, str] = {}  # ... or that could not be: why
    if album:
        for job, state in states.items():
            if _refused_why(job, state, overwrite=overwrite) is not None:
                refused.add(job)
                refused_in.setdefault(job.input.parent, job)
        todo_folders = {
            job.input.parent for job, state in states.items() if state.action != "done" or overwrite
        }
        for job, state in states.items():
            if state.action == "done" and job.input.parent in todo_folders:
                states[job] = OutputState("replace", "its album is mastered again", state.expect)
        _keep_albums_aside(states, refused_in, refused, kept, aside_failed, dry_run=dry_run)
    todo: list[Job] = []
    for job, state in states.items():
        first = refused_in.get(job.input.parent)
        if first is not None and job not in refused:
            # An album is mastered whole or not at all: one that cannot be written whole
            # keeps what it has (an earlier run's masters, one gain) until it can be.
            what = "cannot be written (its output is refused)"
            why = album_not_mastered(first.input, what)
            if job in kept:  # moved aside, and it could not be put back
                why += f"; its edited master could not be put back: it is {kept[job].name}"
            plan.records.append(failed_record(job.input, why, job.output))
            continue
        refusal = _refused_why(job, state, overwrite=overwrite)
        if state.action == "done" and not overwrite:
            plan.records.append(skipped_record(job.input, DONE_REASON, job.output))
        elif refusal is not None:
            plan.records.append(failed_record(job.input, refusal, job.output))
        elif state.action == "new":
            todo.append(job)
        elif state.action == "altered" and job not in kept and job not in aside_failed:
            # a master with the user's edits: kept, --overwrite or not, when the new one
            # takes its place (moved aside here, a failed redo left nothing at its name)
            if dry_run:
                aside = keep_aside(job.output, dry_run=True)
                todo.append(
                    replace(job, replace_reason=f"{state.reason}: kept as {aside.name}, redone")
                )
            else:
                todo.append(
                    replace(job, replace=True, keep_aside=True, replace_reason=state.reason)
                )
        elif state.action == "altered":  # an album's, moved aside above (all or none)
            try:
                if job in aside_failed:
                    raise OutputError(aside_failed[job])
                aside = kept[job]
            except (OSError, OutputError) as exc:
                why = os_reason(exc) if isinstance(exc, OSError) else str(exc)
                plan.records.append(
                    failed_record(
                        job.input,
                        f"{job.output}: {state.reason}, and it could not be kept aside "
                        f"({why}); left as it is, not redone",
                        job.output,
                    )
                )
                continue
            todo.append(
                replace(
                    job,
                    replace_reason=f"{state.reason}: kept as {aside.name}, redone",
                    kept_as=aside.name,
                )
            )
        else:
            reason = {
                "done": "replaced (--overwrite)",
                "foreign": "replaced a file auralis-batch did not write (--overwrite)",
                "other": f"replaced {state.reason} (--overwrite)",
            }.get(state.action, f"replaced an earlier master: {state.reason}")
            # --overwrite replaces whatever is there, but a master of ours edited since
            # it was journaled is kept aside first, as without it (state.expect: none
            # for a file we did not write)
            expect = state.expect
            todo.append(replace(job, replace=True, replace_reason=reason, expect=expect))
    _note_rechecked(plan, journal, todo)
    return todo


def _note_rechecked(plan: Plan, journal: Journal, todo: list[Job]) -> None:
    """Say how many inputs were read to find them unchanged after a touch or a copy
    without times (a library copied to another disk: said once), counting only those
    not mastered again all the same (an album redone for another track's sake)."""
    again = {job.input for job in todo}
    n = sum(
        1
        for job in plan.jobs
        if job.output is not None
        and journal.key(job.output) in journal.rechecked
        and job.input not in again
    )
    if n:
        what = "1 input's" if n == 1 else f"{n} inputs'"
        plan.notes.append(
            f"{what} time or inode changed (touched, chmod, or copied without times); read to "
            "check: the bytes mastered, so not mastered again"
        )


def _refused_why(job: Job, state: OutputState, *, overwrite: bool) -> str | None:
    """Why the output of ``job`` is refused (the track fails saying so and nothing
    is written), or None: not a file this tool may replace, a symlink leading out of
    --out, or a file it did not write (unless --overwrite)."""
    if state.action == "blocked":
        return (
            f"refused: {job.output} is {state.reason}, not a file this tool can replace; "
            "move it away"
        )
    if state.action == "outside":
        return f"refused: {job.output} leads outside --out through a symlink"
    if state.action == "other" and not overwrite:
        return (
            f"refused: {job.output} is {state.reason}, which is still there: it would be "
            "lost; master both in one run (give their common folder) or into another "
            "--out; --overwrite replaces it"
        )
    if state.action == "foreign" and not overwrite:
        why = f" ({state.reason})" if state.reason else ""
        return (
            f"refused: {job.output} exists and was not written by auralis-batch{why}; "
            "--overwrite replaces it"
        )
    return None


def _keep_albums_aside(
    states: dict[Job, OutputState],
    refused_in: dict[Path, Job],
    refused: set[Job],
    kept: dict[Job, Path],
    aside_failed: dict[Job, str],
    *,
    dry_run: bool,
) -> None:
    """Keep aside the altered masters of each album folder to be redone, all or none:
    when one cannot be moved (a folder it may not rename in), those already moved go
    back, and the album is refused as one whose output is refused (its other tracks
    fail naming it). Fills ``kept`` (job -> where its master went) and ``aside_failed``
    (job -> why not); adds to ``refused_in`` and ``refused``."""
    by_folder: dict[Path, list[Job]] = {}
    for job, state in states.items():
        if state.action == "altered" and job.input.parent not in refused_in:
            by_folder.setdefault(job.input.parent, []).append(job)
    for folder, jobs in by_folder.items():
        moved: list[tuple[Job, Path]] = []
        for job in jobs:
            try:
                moved.append((job, keep_aside(job.output, dry_run=dry_run)))
            except (OSError, OutputError) as exc:
                aside_failed[job] = os_reason(exc) if isinstance(exc, OSError) else str(exc)
                refused.add(job)
                refused_in[folder] = job
                if not dry_run:
                    for done, aside in moved:  # put back: the album stays as it was
                        try:
                            move_no_clobber(aside, done.output)
                        except OSError:  # FileExistsError included: it stays aside,
                            kept[done] = aside  # and its record says where it went
                moved = []
                break
        kept.update(moved)


def _layout_refusal(job: Job, fmt: str) -> str | None:
    """Why the real run would fail ``job`` from its header alone (more channels, or a
    sample rate, than ``fmt`` holds), or None; a header that cannot be read is the
    real run's to say."""
    import soundfile as sf

    try:
        info = sf.info(sf_path(job.input))
    except Exception:
        return None
    try:
        check_output_channels(fmt, info.channels, int(info.samplerate))
    except OutputError as exc:
        return str(exc)
    return None


def _would(reason: str | None) -> str | None:
    """A decision's reason as a dry run tells it: what would happen, not what did."""
    if reason is None:
        return None
    for done, would in (
        ("replaced", "would replace"),
        ("kept as", "would be kept as"),
        (", redone", ", and redone"),
    ):
        reason = reason.replace(done, would)
    return reason


def _units(jobs: list[Job], album: bool, work: dict[Path, float] | None = None) -> list[list[Job]]:
    """Work units, largest first, so the long tracks start early instead of one of them
    running alone at the end of the night (longest-processing-time-first scheduling).

    A track's work is ``work[job.input]`` (samples to process, from
    :func:`_headers`); without it, bytes on disk, a poor proxy across formats: a
    6-minute Ogg file is a quarter of a 4-minute FLAC's size and twice its work.
    """
    if not album:
        units = [[j] for j in jobs]
    else:
        groups: dict[Path, list[Job]] = {}
        for j in jobs:
            groups.setdefault(j.input.parent, []).append(j)
        units = list(groups.values())

    def size(job: Job) -> float:
        if work is not None and work.get(job.input):
            return work[job.input]
        return float(_size(job.input))

    return sorted(units, key=lambda unit: -sum(size(j) for j in unit))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _headers(jobs: Sequence[Job]) -> tuple[dict[Path, float], float]:
    """``(samples per input, total seconds)`` from each file's header, read once for
    the schedule and the progress bar; an unreadable header counts as nothing here
    (the track's own run reports why)."""
    import soundfile as sf

    work: dict[Path, float] = {}
    total_s = 0.0
    for job in jobs:
        with contextlib.suppress(Exception):
            info = sf.info(sf_path(job.input))
            work[job.input] = float(info.frames) * info.channels
            total_s += info.duration
    return work, total_s


def _sweep_dead_runs(journal: Journal, jobs: Iterable[Job]) -> list[Path]:
    """Remove what killed runs left in OUT: the temporaries (``.NAME.XXXXXXXX.partial``)
    of outputs a dead run planned or this run may write, and in-flight folders (after
    :meth:`Journal.recover` read them; a note it could not read, or whose output it
    could not read, is kept for a later run). A file of that shape anywhere else, or
    one that is not audio as this tool writes it (:func:`is_our_temporary`), is the
    user's: left alone. Each folder is listed once. Call only under the lock. Returns
    the temporaries an earlier build may have left (:func:`is_legacy_temporary`),
    which are said, not removed."""
    outputs = {journal.out_dir / key for key in journal.planned}
    outputs.update(job.output for job in jobs if job.output is not None)
    prefixes: dict[Path, set[str]] = {}
    for output in outputs:
        key = journal.key(output)  # None unless its folder is inside OUT, resolved
        if key is None or key == ".":
            continue  # OUT itself, or through a link out of OUT: not ours to touch
        prefixes.setdefault(output.parent, set()).add(partial_prefix(output))
    out_real = Path(os.path.realpath(journal.out_dir))
    inside: set[Path] = set()  # every folder it writes into, and those between it and OUT
    for folder in prefixes:
        for f in (folder, *folder.parents):
            if Path(os.path.realpath(f)) == out_real or f in inside:
                break
            inside.add(f)
    for folder in sorted(inside):  # a run into an --out inside this one: refused
        check_no_run_in(folder, journal.out_dir)
    tail = len("XXXXXXXX.partial")
    legacy: list[Path] = []
    for folder, wanted in prefixes.items():
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name[:-tail] not in wanted:
                    continue
                if is_our_temporary(entry.path):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                elif is_legacy_temporary(entry.path):
                    legacy.append(Path(entry.path))
    for folder in journal.dir.glob("inflight-*"):
        _clear_inflight(folder, journal)
    return sorted(legacy)


def _legacy_note(paths: list[Path]) -> str:
    """What to say of the temporaries an earlier build may have left (a killed run's):
    this build removes only those whose names prove them its own (a file of the user's
    could look like an earlier one's), so the user is told, once a run."""
    if len(paths) == 1:
        what, tail = f"{paths[0]}", "delete it if it is not yours"
    else:
        what, tail = f"{len(paths)} files such as {paths[0]}", "delete them if they are not yours"
    return (
        f"{what}: named as a build before 2026-12-02 named its temporaries (a killed "
        f"run's), which this build cannot tell from a file of yours and leaves alone; {tail}"
    )


def _clear_inflight(folder: Path, journal: Journal) -> None:
    """Remove an in-flight folder after :meth:`Journal.recover` read it, except the
    notes it could not prove either way (their output, the note or the folder could
    not be read): those are kept for a later run."""
    if folder in journal.unproven:
        return
    keep = {note for note in journal.unproven if note.parent == folder}
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry in keep:
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def _make_folders(jobs: Iterable[Job], out_dir: Path, made: list[Path]) -> None:
    """Make the output folders under ``out_dir`` that are missing, one level at a time,
    adding each to ``made`` as it is made (parents first): the run's own, which it may
    remove again while empty. Made here, before any worker starts, so that a folder the user
    makes at one of these paths during the run is never taken for one of ours (a
    review: a folder missing at the start was removed as the run's). One that cannot
    be made is left to the track's own output, which says why."""
    wanted: set[Path] = set()
    for job in jobs:
        if job.output is None:
            continue
        folder = job.output.parent
        while folder != out_dir and out_dir in folder.parents:
            wanted.add(folder)
            folder = folder.parent
    for folder in sorted(wanted, key=lambda f: len(f.parts)):  # parents first
        with _stops_deferred():  # a folder made is a folder noted (a Ctrl-C in between
            try:  # left one behind: a review)
                os.mkdir(folder)
            except OSError:  # there already (the user's, or an earlier run's), or refused
                continue
            made.append(folder)


@contextlib.contextmanager
def _stops_deferred(*, raise_after: bool = True) -> Iterator[None]:
    """A first SIGINT/SIGTERM/SIGHUP during the block is noted, not raised, and
    raised as it ends (as inside a track: :data:`_IN_TRACK`), unless ``raise_after``
    is False: then the caller's next :func:`_raise_if_stopped` raises it."""
    global _IN_TRACK
    before = _IN_TRACK
    _IN_TRACK = True
    try:
        yield
    finally:
        _IN_TRACK = before
    if raise_after:
        _raise_if_stopped()


def _remove_empty(made: list[Path]) -> None:
    """Remove each folder of ``made`` (parents first: removed last) that is empty: a
    failed or interrupted album's first track left its empty folder in OUT (a
    newcomer's Ctrl-C of -j 2). A folder that holds anything, a master or a file of
    the user's, stays."""
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _remove_partials(jobs: Iterable[Job]) -> int:
    """Remove every temporary of these outputs (call only while holding the lock:
    then no other run is writing them)."""
    removed = 0
    for job in jobs:
        if job.output is None:
            continue
        for tmp in partials_of(job.output):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


# --------------------------------------------------------------------------- signals
_Stop = stopping.Stop


def _kill_children() -> None:
    """SIGKILL every child process (the workers): no orphan keeps writing."""
    me = os.getpid()
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:  # pragma: no cover - not Linux
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == me:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def _stop_pool(wait_s: float = 5.0) -> None:
    """Kill joblib's worker processes (loky's reusable pool) at once, and wait (at
    most ``wait_s``) until they are gone: a stopped run leaves no worker writing, and
    what they put in place can be recovered once none can put more. joblib's own abort
    waits for running tasks."""
    try:
        from joblib.externals.loky import reusable_executor
    except ImportError:  # pragma: no cover
        return
    executor = getattr(reusable_executor, "_executor", None)
    if executor is None:
        return
    procs = list(getattr(executor, "_processes", {}).values())
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()
    with contextlib.suppress(Exception):
        executor.shutdown(wait=False, kill_workers=True)
    deadline = time.monotonic() + wait_s
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(max(deadline - time.monotonic(), 0.0))


#: Signals received while a track ran in this process, not yet acted on.
_PENDING_STOP: list[int] = []


def _raise_if_stopped() -> None:
    if _PENDING_STOP:
        raise _Stop(_PENDING_STOP[0])
    if _TERM_PENDING:
        run = _TERM_PENDING.pop()
        _TERM_PENDING.clear()
        if os.getppid() != run:
            raise RunAbandonedError("the run that started this track is gone; stopped")
        raise TrackStoppedError("its worker process was sent SIGTERM; stopped, no output written")


#: The one line a second signal leaves (its cleanup is the next run's: temporaries and
#: commit notes of a run that did not end are removed or journaled when it starts).
_AT_ONCE = (
    "[error] {} again: stopped at once, workers killed; the same command finishes the "
    "tracks and removes what this run left\n"
)


#: ``cleaning()`` of the handlers in place, while :func:`_signals_stop_the_run` is
#: (a nested use shares them: the CLI's whole command, run_master, its run).
_STOP_CLEANING: list[Callable[[], None]] = []


@contextlib.contextmanager
def _signals_stop_the_run() -> Iterator[Callable[[], None]]:
    """First SIGINT/SIGTERM/SIGHUP raises :class:`_Stop` in the main thread; a second
    one kills the workers, removes the temporaries registered in
    :data:`~auralis_batch.stopping.AT_ONCE_REMOVE` and exits at once (128 + signal),
    saying so in one line. Re-entrant: within an outer use, an inner one changes
    nothing (the command's handlers cover its planning, run and reports alike).

    Yields ``cleaning()``: call it before the run's cleanup, which must run to its end
    (a ``_Stop`` or ``KeyboardInterrupt`` in it would leave temporaries and in-flight
    notes behind): from then on a first signal is only noted, and a second one still
    ends the run at once."""
    if _STOP_CLEANING:
        yield _STOP_CLEANING[0]
        return
    raising = [True]

    def cleaning() -> None:
        raising[0] = False

    if threading.current_thread() is not threading.main_thread():
        yield cleaning
        return
    received = _PENDING_STOP
    received.clear()
    second = stopping.SecondSignal()

    def handler(signum, frame):
        kind = second.classify(signum)
        if kind == "echo":
            return  # the first one's echo (stopping.ECHO_S), not a second request
        if kind == "second":
            _kill_children()
            for path in list(stopping.AT_ONCE_REMOVE):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            with contextlib.suppress(OSError):  # a closed stderr: exit all the same
                os.write(2, _AT_ONCE.format(stopping.signal_name(signum)).encode())
            os._exit(128 + signum)
        received.append(signum)
        if raising[0] and not _IN_TRACK:
            raise _Stop(signum)
        # Inside a track in this process (-j 1) the signal may land inside a Numba
        # kernel, where an exception turns into a SystemError a track would report as
        # its own failure: the track's next block raises it instead (_raise_if_stopped).

    # SIGHUP killed the run without a report and left its in-flight notes; under nohup
    # it stays ignored (stopping.handled_signals)
    previous = {s: signal.signal(s, handler) for s in stopping.handled_signals()}
    _STOP_CLEANING.append(cleaning)
    try:
        yield cleaning
    finally:
        raising[0] = False  # a signal now is noted: the handlers go back whole
        _STOP_CLEANING.clear()
        for s, h in previous.items():
            signal.signal(s, h)
        received.clear()  # a later run (a thread's, the API's) starts unstopped


def stop_signal() -> int | None:
    """The signal that asked the run to stop, if one came (while
    :func:`_signals_stop_the_run` is in place)."""
    return _PENDING_STOP[0] if _PENDING_STOP else None


# --------------------------------------------------------------------------- the run
def _is_text_path(value: object) -> bool:
    """A str or os.PathLike that is not bytes: what run_master takes for a path."""
    return isinstance(value, (str, os.PathLike)) and not isinstance(os.fspath(value), bytes)


def run_master(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: RunSettings | None = None,
    *,
    n_jobs: int = -1,
    overwrite: bool = False,
    dry_run: bool = False,
    on_start: Callable[[int, float, list[dict]], None] | None = None,
    on_record: ProgressCallback | None = None,
    on_progress: Callable[[dict[str, float]], None] | None = None,
) -> BatchResult:
    """Plan, skip what the journal says is done, run the rest in parallel.

    Parameters
    ----------
    inputs : files and folders, a list of str or os.PathLike (a single path is
        refused: ``[path]``)
    out_dir : str or os.PathLike, output folder (mirrors the input tree)
    settings : :class:`~auralis_batch.settings.RunSettings`, optional; default
        ``RunSettings()``, what the CLI does with no flags (preset ``gentle``)
    n_jobs : worker processes (1: in this process)
    overwrite : redo finished tracks and replace files this tool did not write
    dry_run : plan only; nothing is written
    on_start : ``(tracks_to_do, seconds_of_audio, records_already_decided)``
    on_record : each finished record, as it comes
    on_progress : ``{input: fraction}`` of the tracks in flight, about twice a second

    Returns
    -------
    BatchResult
        Records in input order; ``stopped`` and ``signal`` say if and why the run
        stopped early (a signal, a full disk).

    Raises
    ------
    PlanError
        Whole-run problems found before any work (nothing is written), an input that
        does not exist among them.
    ParameterError
        A field of ``settings`` or ``n_jobs`` is out of range
        (:meth:`RunSettings.check`), or the reference is one there is nothing to match
        in (:func:`~auralis_batch.adaptive.check_reference`).
    ParameterTypeError
        ``inputs`` is a single path, not a list of them, or ``inputs``, ``out_dir``
        or ``settings`` is of another type (None, bytes, a dict for the settings).
    PresetError
        ``settings.preset`` names no built-in preset and no readable TOML file.
    AudioError
        ``settings.reference`` cannot be read (when no ``reference_record`` is given,
        the reference is analysed here, as the CLI does).
    RunLockedError
        Another run holds the lock on ``out_dir``.
    """
    t0 = time.monotonic()
    if isinstance(inputs, (str, bytes, os.PathLike)):  # a str is a sequence of letters:
        raise ParameterTypeError(  # "music/" was planned as m, u, s, i, c and / (all of /)
            f"inputs must be a list of files and folders, got the single path {inputs!r}: "
            f"pass [{inputs!r}]"
        )
    if not isinstance(inputs, Iterable):
        raise ParameterTypeError(
            f"inputs must be a list of files and folders (str or os.PathLike), got "
            f"{given(inputs)}: run_master(['music/'], 'out')"
        )
    inputs = list(inputs)
    for i, item in enumerate(inputs):  # None or bytes in the list failed as a TypeError
        if not _is_text_path(item):
            raise ParameterTypeError(
                f"inputs[{i}] must be a file's or folder's path (str or os.PathLike), got "
                f"{given(item)}: run_master(['music/'], 'out')"
            )
    if not _is_text_path(out_dir):
        raise ParameterTypeError(
            f"out_dir must be a folder's path (str or os.PathLike), got {given(out_dir)}: "
            "run_master(inputs, 'out')"
        )
    out_dir = Path(out_dir)
    if settings is None:  # the CLI's defaults, as a command with no flags
        settings = RunSettings()
    elif not isinstance(settings, RunSettings):
        raise ParameterTypeError(
            f"settings must be a RunSettings or None (the defaults), got {given(settings)}: "
            "run_master(inputs, out_dir, RunSettings(preset='warm'))"
        )
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ParameterError(f"n_jobs must be a non-zero int (-1: every core), got {n_jobs!r}")
    n_jobs = int(n_jobs)
    settings.check()  # every bad field now, not once per track
    # As the CLI refuses it (exit 2): a missing folder was a "skipped" record and a
    # result of 0 failed, which a script reads as a good run (a newcomer's API try).
    if not inputs:  # nothing to do, but OUT and its lock were made (a user's API try)
        raise PlanError(["no inputs given: run_master(['music/'], 'out')"])
    missing = [f"input {item} does not exist" for item in inputs if not os.path.exists(item)]
    if missing:
        raise PlanError(missing)
    known: dict = {}  # the plan and the tracks to do, once known
    outermost = not _STOP_CLEANING  # no command around this call handles signals
    with _signals_stop_the_run():
        late = None
        try:
            result = _timed(
                _plan_and_run(
                    inputs,
                    out_dir,
                    settings,
                    n_jobs,
                    overwrite,
                    dry_run,
                    on_start,
                    on_record,
                    on_progress,
                    known,
                ),
                t0,
            )
            late = stop_signal() if result.signal is None else None
        except _Stop as stop:  # before the first track started: nothing was written
            return _timed(_stopped_before_start(known, stop.signum, settings.preset), t0)
    if outermost and late is not None and hasattr(signal, "raise_signal"):
        # noted while the run finished (its cleanup), never acted on: the caller's own
        # handling gets it now, as if it had come just after (a loop of runs stops)
        signal.raise_signal(late)
    return result


def _stopped_before_start(known: dict, signum: int, preset: str) -> BatchResult:
    """The result of a run stopped while it was planned: the tracks it would have done
    (or, before that was decided, every planned one) are not started."""
    stopped = f"interrupted by {stopping.signal_name(signum)} while the run was planned"
    plan = known.get("plan")
    if plan is None:
        return _result([], preset, stopped, signum)
    # what planning decided stays (files skipped or refused, tracks already done);
    # before the journal was read every track is "not started"
    done = {r["input"] for r in plan.records}
    jobs = known.get("todo", [j for j in plan.jobs if str(j.input) not in done])
    records = list(plan.records)
    for job in jobs:
        records.append(record(job.input, "not started", f"not started: {stopped}", job.output))
        _say_kept(records[-1], job)  # an album's edited master already kept aside
    return _result(records, preset, stopped, signum, plan.notes)


def _plan_and_run(
    inputs: list,
    out_dir: Path,
    settings: RunSettings,
    n_jobs: int,
    overwrite: bool,
    dry_run: bool,
    on_start,
    on_record,
    on_progress,
    known: dict,
) -> BatchResult:
    """:func:`run_master` once its arguments are checked, under the run's signal
    handlers; fills ``known`` (``plan``, ``todo``) as it learns them."""
    if settings.reference and settings.reference_record is None:
        from .analysis import analyze_file

        with _stops_deferred():  # a signal inside a kernel would be a SystemError
            ref = analyze_file(settings.reference, tempo=False, cache=_open_worker_cache(settings))
        settings = replace(settings, reference_record=ref, preset="reference")
    if settings.reference_record is not None:
        check_reference(settings.reference_record)  # before anything is planned or written
    plan = plan_master(inputs, out_dir, settings.fmt, extensions=readable_extensions())
    known["plan"] = plan
    fault_pause("plan")
    if settings.reference:  # matched against what this run replaces: it never settles
        ref = Path(settings.reference).resolve()
        for job in plan.jobs:
            if job.output is not None and job.output.resolve() == ref:
                plan.problems.append(
                    f"--reference {settings.reference} is the output of {job.input} in this "
                    "run: each run would replace its own reference (copy it out of --out)"
                )
    if plan.problems:
        raise PlanError(plan.problems)
    # the journal's hash of these settings, and every other hash of the same masters
    settings_hashes = settings.fingerprints()
    settings_hash = settings_hashes[0]
    if dry_run:
        holder = RunLock(out_dir).holder()
        if holder is not None:
            plan.notes.append(
                f"another auralis-batch run (pid {holder}) is writing to {out_dir} now: "
                "this plan may change when it ends, and a real run now would exit 2"
            )
        journal = Journal(out_dir)
        journal.recover(write=False)  # what a real run would journal first
        todo = _decide(
            plan,
            journal,
            settings_hashes,
            overwrite=overwrite,
            album=settings.album,
            dry_run=True,
            preset=settings.preset_name(),
            flags=settings.journal_flags(),
        )
        _raise_if_stopped()
        for job in todo:
            refusal = _layout_refusal(job, settings.fmt)
            if refusal is not None:  # the real run fails it before decoding: so does this
                plan.records.append(failed_record(job.input, refusal, job.output))
                continue
            rec = record(job.input, "planned", _would(job.replace_reason), job.output)
            rec["preset"] = settings.preset
            plan.records.append(rec)
        return _result(plan.records, settings.preset, notes=plan.notes)
    with contextlib.ExitStack() as held:
        with _stops_deferred():  # the lock taken is the lock released
            held.enter_context(RunLock(out_dir))
        journal = Journal(out_dir)
        held.callback(journal.close)
        try:  # outputs a killed run renamed into place but did not journal
            with _stops_deferred():
                journal.recover()
        except OSError as exc:  # nothing is swept before they are journaled
            raise OutputError(f"{journal.path}: cannot write ({os_reason(exc)})") from None
        todo = _decide(
            plan,
            journal,
            settings_hashes,
            overwrite=overwrite,
            album=settings.album,
            dry_run=False,
            preset=settings.preset_name(),
            flags=settings.journal_flags(),
            known=known,
        )
        _raise_if_stopped()  # a signal while edited masters were kept aside
        try:
            with _stops_deferred():  # the journal's rewrite runs to its end
                fault_pause("journal")
                # we hold the lock: nobody else writes
                legacy = _sweep_dead_runs(journal, plan.jobs)
                journal.plan(todo)
        except OSError as exc:
            raise OutputError(f"{journal.path}: cannot write ({os_reason(exc)})") from None
        if legacy:
            plan.notes.append(_legacy_note(legacy))
        return _run(
            plan,
            todo,
            journal,
            settings,
            settings_hash,
            n_jobs,
            out_dir,
            on_start,
            on_record,
            on_progress,
        )


def _timed(result: BatchResult, t0: float) -> BatchResult:
    """The run's wall time in its summary (``seconds`` adds up the tracks' own times,
    which overlap when workers run side by side)."""
    result.summary["wall_seconds"] = round(time.monotonic() - t0, 3)
    return result


def _result(records, preset, stopped=None, signum=None, notes=()) -> BatchResult:
    records.sort(key=lambda r: str(r.get("input", "")))  # input order, however it ran
    for rec in records:  # every track has the keys the README lists (a user's script
        rec.setdefault("output", None)  # read rec["output"] of a skipped file: KeyError)
        rec.setdefault("preset", preset)
    return BatchResult(records, summarize(records), stopped, signum, list(notes))


def _compile_analysis_first(settings: RunSettings) -> None:
    """On a first run, compile the analysis's kernels once, before any track, in a
    child a signal stops at once (:func:`warm.compile_analysis_first`): with workers,
    each would compile them at the same time; in the run's own process (``-j 1``) a
    Ctrl-C waited for the compile's end, 5 to 13 s on a busy machine (a newcomer's)."""
    tempo, fingerprint = needs_tempo(settings), needs_fingerprint(settings)
    warm.compile_analysis_first(tempo=tempo, fingerprint=fingerprint)


def _run(
    plan, todo, journal, settings, settings_hash, n_jobs, out_dir, on_start, on_record, on_progress
) -> BatchResult:
    records = plan.records
    flags = settings.journal_flags()  # journaled with each entry: a redo says what changed
    _RUN_STARTED[:] = [time.time()]
    work, total_s = _headers(todo)
    units = _units(todo, settings.album, work)
    n_jobs = _pool_size(n_jobs, len(units))
    if on_start is not None:
        on_start(len(todo), total_s, list(records))
    # A folder of this run's own: a dead run of the same pid (a container's) may have
    # left one whose notes are kept for a later proof.
    inflight = out_dir / STATE_DIR / f"inflight-{os.getpid()}-{secrets.token_hex(4)}"
    inflight.mkdir(parents=True)
    made: list[Path] = []  # the output folders this run made (_make_folders)
    finished: dict[str, str] = {}  # input -> the status of its record
    stopped: str | None = None
    signum: int | None = None
    poller = _Poller(inflight, units, on_progress)
    unit_of = {str(job.input): i for i, unit in enumerate(units) for job in unit}
    job_of = {str(job.input): job for job in todo}
    warmup = None
    with _signals_stop_the_run() as cleaning:
        try:
            try:
                # A machine's first run: the render's kernels compile beside the
                # analysis's, here (a cluster's workers compile their own).
                local = units and (n_jobs == 1 or _local_backend())
                if local and n_jobs != 1:
                    # the cache opened here first: what is wrong with it is said once,
                    # by the run (its pool workers leave that to it: _quiet_pool_worker)
                    _open_worker_cache(settings)
                share = warm.run_share(fingerprint=needs_fingerprint(settings), one_job=n_jobs == 1)
                warmup = warm.start(settings.bit_depth, run_share=share) if local else None
                if local:
                    _compile_analysis_first(settings)
                _make_folders(todo, out_dir, made)
                poller.start()
                for rec in _execute(units, settings, n_jobs, inflight, journal):
                    _say_kept(rec, job_of.get(rec["input"]))
                    records.append(rec)
                    finished[rec["input"]] = rec["status"]
                    try:
                        # after the output is durable; its note goes once it is journaled
                        if journal.record(rec, settings_hash, flags):
                            forget_commit_note(inflight, journal.key(Path(rec["output"])))
                    except OSError as exc:
                        stopped = f"cannot write the journal ({os_reason(exc)}); stopped"
                    if on_record is not None:
                        on_record(rec)
                    full = disk_full_reason(rec)
                    if full and not stopped:
                        stopped = f"disk full: {full} for {out_dir}; stopped"
                    if stopped and _unit_done(units, unit_of.get(rec["input"]), finished):
                        break  # after its unit's last record (an album's are all made)
                _raise_if_stopped()  # a signal during the last in-process track
                cleaning()  # from here a signal is noted: the cleanup below runs whole
            except _Stop as stop:
                cleaning()
                if stopped or len(finished) < len(todo):
                    signum = stop.signum
                    stopped = f"interrupted by {stopping.signal_name(signum)}"
                # else every track had its record: it stopped nothing (a user saw a
                # finished run reported "interrupted: 1 done, 0 left", exit 130). It
                # stays noted, and the CLI says it came as the run was ending.
        finally:
            cleaning()  # runs to its end: a signal now is noted (a second: at once)
            _cleanup_fault()
            poller.stop()
            if warmup is not None:
                warmup.stop()
            if n_jobs != 1 and len(finished) < len(todo):
                _stop_pool()  # stopped, or an error: none of the workers may go on writing
            # every track without a master in place, finished ones included: a worker
            # that crashed left its temporary, and none is writing now
            _remove_partials(j for j in todo if finished.get(str(j.input)) != "ok")
            _remove_empty(made)
            started = _started_units(inflight)
            recovered: dict[str, dict] = {}
            try:  # outputs renamed into place, not yet journaled
                recovered = journal.recover()
            except OSError:  # the journal cannot be written: the next run's recovery reads
                for mark in inflight.glob("[0-9]*"):  # the notes; only the progress marks go
                    mark.unlink(missing_ok=True)
            else:  # what is left are notes of outputs that never took their name (or
                _clear_inflight(inflight, journal)  # that could not be checked: kept)
            with contextlib.suppress(OSError):
                journal.retire()
    if stopped:
        for i, unit in enumerate(units):
            for job in unit:
                if str(job.input) in finished:
                    continue
                note = _note(recovered, journal, job)
                if note is not None:  # complete and journaled from its commit note
                    why = f"{stopped} after this track's output was written"
                    records.append(_recovered(job, settings, note, why))
                    if on_record is not None:  # its line, as every finished track's
                        on_record(records[-1])
                else:
                    records.append(_unfinished(job, i in started, stopped))
                    _say_kept(records[-1], job)
    return _result(records, settings.preset, stopped, signum, plan.notes)


def _say_kept(rec: dict, job: Job | None) -> None:
    """A track of an album whose edited master was kept aside while the run was
    planned, and that was not redone: its record says where the edited master is (it
    said nothing, and nothing was at its name: a sweep)."""
    if job is not None and job.kept_as and rec.get("status") != "ok":
        rec["error"] = (
            f"{rec.get('error') or rec.get('status')}; its edited master was kept aside "
            f"as {job.kept_as} before the album was rendered"
        )


def _unit_done(units: list[list[Job]], i: int | None, finished: dict[str, str]) -> bool:
    """Whether every track of unit ``i`` has its record (a unit's records come
    together: a stop waits for the rest of them, which are already made)."""
    return i is None or all(str(job.input) in finished for job in units[i])


def _unfinished(job: Job, started: bool, stopped: str) -> dict:
    """The record of a track a stopped run did not finish: ``interrupted`` if its unit
    had started, ``not started`` if it never had (so a report tells the tracks a stop
    cut short from those it never reached; both are done by the next run)."""
    if not started:
        return record(job.input, "not started", f"not started: {stopped}", job.output)
    return record(job.input, "interrupted", f"{stopped}; no output written", job.output)


def _start_resource_tracker() -> None:
    """Start loky's resource tracker with SIGHUP ignored (it inherits that across its
    exec; its own handlers cover SIGINT and SIGTERM only): a terminal closing sends
    SIGHUP to the whole process group, and the tracker died of it, to be relaunched
    with a warning and dozens of tracebacks in the run's log (a review). The run
    itself stops on SIGHUP; its workers ignore it (:func:`_die_with_the_run`)."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return
    try:
        from joblib.externals.loky.backend.resource_tracker import ensure_running
    except ImportError:  # pragma: no cover - another joblib
        return
    # blocked, not ignored, while it starts: the tracker inherits the mask (loky
    # unblocks SIGINT and SIGTERM only), and a SIGHUP meanwhile reaches the run after
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        ensure_running()
    except Exception:  # pragma: no cover - the pool starts it as before
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _local_backend() -> bool:
    """True when joblib runs our tasks in processes of this machine (loky or
    multiprocessing), not on a cluster (``parallel_config(backend="dask")``)."""
    try:
        from joblib.parallel import get_active_backend

        backend, _ = get_active_backend(prefer="processes")
    except Exception:  # pragma: no cover - a joblib without it: assume local
        return True
    return type(backend).__name__ in {"LokyBackend", "MultiprocessingBackend"}


def _pool_size(n_jobs: int, n_units: int) -> int:
    """Workers for ``n_units`` units: never more than there is work for (an idle
    worker would have no unit to learn when its run dies)."""
    if n_jobs == 1 or not _local_backend():
        return n_jobs
    cpus = os.cpu_count() or 1
    wanted = n_jobs if n_jobs > 0 else max(cpus + 1 + n_jobs, 1)
    return max(min(wanted, n_units), 1)


class _Poller:
    """Reads the workers' progress notes (``inflight/<unit>``) twice a second."""

    def __init__(self, folder: Path, units: list[list[Job]], callback) -> None:
        self.folder, self.units, self.callback = folder, units, callback
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.callback is None:
            return
        self._thread = threading.Thread(target=self._loop, name="auralis-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            running: dict[str, float] = {}
            with contextlib.suppress(OSError):
                for p in self.folder.iterdir():
                    try:
                        i = int(p.name)
                        text = p.read_text().strip()
                        fraction = float(text) if text else 0.0
                    except (ValueError, OSError):
                        continue
                    if 0 <= i < len(self.units):
                        for job in self.units[i]:
                            running[str(job.input)] = fraction
            with contextlib.suppress(Exception):
                self.callback(running)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


def _execute(
    units: list[list[Job]],
    settings: RunSettings,
    n_jobs: int,
    inflight_dir: Path,
    journal: Journal,
) -> Iterable[dict]:
    """Yield records as units finish; survive worker processes that die.

    Each unit marks itself in ``inflight_dir`` while it runs (the mark holds its
    progress). When a worker dies the pool is lost; the units still marked are the
    suspects and are re-run one at a time in a fresh process (the culprit fails
    alone), then the rest resume in parallel. A suspect whose outputs the dead workers
    had already put in place (``journal.recover`` journals them from their commit
    notes) is not run again: its master is complete.
    """
    if not units:
        return
    if n_jobs == 1:  # in-process: no pool to lose
        # One track and a second core that would idle: its decode runs a block ahead
        # (a library's tracks keep one core each, as -j says).
        ahead = len(units) == 1 and len(units[0]) == 1 and warm._usable_cpus() > 1
        for i, unit in enumerate(units):
            yield from _indexed(i, unit, settings, inflight_dir, None, decode_ahead=ahead)[1]
        return
    from joblib import Parallel, delayed

    _start_resource_tracker()
    pending = dict(enumerate(units))
    parent = os.getpid() if _local_backend() else None  # a cluster's workers have others
    while pending:
        gen = None
        try:
            parallel = Parallel(n_jobs=n_jobs, prefer="processes", return_as="generator_unordered")
            tasks = (
                delayed(_indexed)(i, pending[i], settings, inflight_dir, parent)
                for i in sorted(pending)
            )
            gen = parallel(tasks)
            for idx, recs in gen:
                pending.pop(idx, None)
                yield from recs
        except Exception as exc:
            if not _is_pool_crash(exc):
                raise
            suspects = {i for i in pending if _marked(inflight_dir, i)} or set(pending)
            if parent is not None:
                _stop_pool()  # the broken pool's other workers may still be finishing
            # Masters already in place are journaled from their commit notes and not
            # run again (joblib drops results it had not handed over when a pool
            # breaks, so finished units may still be pending here).
            done = journal.recover()
            for i in sorted(pending):
                unit = pending[i]
                left = [job for job in unit if _note(done, journal, job) is None]
                if left and settings.album and len(left) < len(unit):
                    # an album is never split: it is mastered again whole, its tracks
                    # already in place replaced only if they still are what was noted
                    pending[i] = [
                        job
                        if job in left
                        else replace(
                            job,
                            replace=True,
                            replace_reason="its album is mastered again",
                            expect=_note(done, journal, job)["output_identity"],
                        )
                        for job in unit
                    ]
                    continue
                for job in unit:
                    if job not in left:
                        note = _note(done, journal, job)
                        yield _recovered(
                            job, settings, note, _LOST_WORKER if i in suspects else _LOST_REPORT
                        )
                if left:
                    pending[i] = left
                else:
                    del pending[i]
                    _unmark(inflight_dir, i)
            for i in sorted(suspects & set(pending)):
                for rec in _run_alone(i, pending.pop(i), settings, inflight_dir, journal):
                    if rec["status"] == "ok":
                        add_warning(rec, _RUN_AGAIN)
                    yield rec
        finally:
            if gen is not None and pending:  # stopped early: joblib aborts the rest quietly
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    gen.close()


def _run_alone(
    i: int,
    unit: list[Job],
    settings: RunSettings,
    inflight_dir: Path,
    journal: Journal,
) -> list[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # A process of its own (joblib with n_jobs=1 would run in this one, and a crash
    # would take the whole run down); spawn, so nothing of this process is inherited.
    try:
        solo = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            _, recs = solo.submit(_indexed, i, unit, settings, inflight_dir, os.getpid()).result()
            return recs
        except BaseException:
            # Told to stop (a signal) while the track runs: it goes now, not at its
            # end; the run's cleanup removes its temporary. (A crash: already gone.)
            for proc in list(getattr(solo, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    proc.kill()
            raise
        finally:
            solo.shutdown(wait=True, cancel_futures=True)
    except Exception as exc:
        if not _is_pool_crash(exc):
            raise
        _unmark(inflight_dir, i)
        done = journal.recover()
        crashed = f"worker process crashed while processing this track ({type(exc).__name__})"
        return [
            _recovered(job, settings, note, _LOST_WORKER)
            if (note := _note(done, journal, job)) is not None
            else failed_record(job.input, _crashed(crashed, job), job.output)
            | {"preset": settings.preset}
            for job in unit
        ]


def _crashed(crashed: str, job: Job) -> str:
    """The crash's message for ``job``: a master of its own from an earlier pass (an
    album mastered again whole after a crash) stays where it is."""
    if job.expect is None:
        return f"{crashed}; no output written"
    return f"{crashed}; no new output written (the master already in place is kept)"


def _note(done: dict[str, dict], journal: Journal, job: Job) -> dict | None:
    """``job``'s commit note if its output is among those ``done`` recovered."""
    return done.get(journal.key(job.output)) if job.output is not None else None


_LOST_WORKER = "its worker process was lost after this track's output was written"
#: Said of a track mastered again alone because a worker died while it was in flight
#: (killed, out of memory, a crash in a decoder): the master is sound, the machine or
#: another track may not be.
_RUN_AGAIN = (
    "a worker process died while this track was in flight (killed, out of memory or a "
    "crash); mastered again in a process of its own"
)
_LOST_REPORT = "a worker crash lost this track's report"


def _recovered(job: Job, settings: RunSettings, note: dict, why: str) -> dict:
    """The record of a track whose master was complete and in place when its report
    was lost (a worker crash, a stopped run): ``ok``, journaled from its commit note
    ``note`` (the file is exactly the noted content), with the measurements the note
    carried; ``why`` says what lost the report."""
    rec = record(job.input, "ok", None, job.output) | {"preset": settings.preset}
    rec.update(noted_measurements(note.get("measured")))
    rec["written"] = note["output_identity"]
    rec["recovered"] = True
    if job.replace_reason:
        rec["replaced"] = job.replace_reason
        aside = _kept_aside_by_this_run(job)
        if aside is not None:  # the worker named it in the report that was lost
            rec["replaced"] += f": kept as {aside.name}, redone"
    nxt = (
        "the next run skips it unless another track of its album is not done (an album "
        "is mastered again whole)"
        if settings.album
        else "the next run skips it"
    )
    rec["warning"] = (
        f"{why}; the output is complete (exactly what its commit note recorded) and "
        f"journaled, and {nxt}"
    )
    return rec


#: When this process's run began (``time.time()``).
_RUN_STARTED: list[float] = []


def _kept_aside_by_this_run(job: Job) -> Path | None:
    """Where this run kept ``job``'s edited master aside (its ``keep_aside``), read from
    the folder when the worker's report was lost."""
    if not job.keep_aside or job.output is None or not _RUN_STARTED:
        return None
    return kept_aside_since(job.output, _RUN_STARTED[0] - 1.0)


#: A unit's "it started" mark in the in-flight folder, beside its progress mark
#: (``inflight/<i>``), which the unit removes when it ends, stopped or not: read from
#: those alone, a track a full disk or a signal stopped mid-way was "not started"
#: (fifth sweep).
STARTED_PREFIX = "started-"


def _started_units(inflight_dir: Path) -> set[int]:
    """The units that started in this run (their progress or started marks)."""
    units: set[int] = set()
    with contextlib.suppress(OSError):
        for entry in inflight_dir.iterdir():
            name = entry.name.removeprefix(STARTED_PREFIX)
            if name.isdigit():
                units.add(int(name))
    return units


def _marked(inflight_dir: Path, i: int) -> bool:
    return (inflight_dir / str(i)).exists()


def _unmark(inflight_dir: Path, i: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        (inflight_dir / str(i)).unlink()


def _indexed(
    i: int,
    unit: list[Job],
    settings: RunSettings,
    inflight_dir: Path,
    parent_pid: int | None,
    *,
    decode_ahead: bool = False,
) -> tuple[int, list[dict]]:
    mark = inflight_dir / str(i)
    with contextlib.suppress(OSError):
        mark.write_text("0\n")
        (inflight_dir / f"{STARTED_PREFIX}{i}").touch()  # kept when the mark goes
    recs = master_unit(
        unit,
        settings,
        parent_pid=parent_pid,
        progress_file=mark if mark.exists() else None,
        decode_ahead=decode_ahead,
    )
    _unmark(inflight_dir, i)
    return i, recs


def _is_pool_crash(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in {"TerminatedWorkerError", "BrokenProcessPool", "WorkerLostError"} or (
        "worker" in str(exc).lower() and "terminat" in str(exc).lower()
    )
