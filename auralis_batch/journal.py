"""What a run leaves in ``OUT/.auralis-batch/``: the journal of finished outputs and
the lock that keeps a second run out.

The journal is append-only JSON lines, written and fsynced by the parent process
only, after the output it names is on disk (written, fsynced, renamed, folder
fsynced). Every line is distrusted when read back: a line that is not a complete
entry of the right shape is ignored (a torn tail after ``kill -9``), and an entry
counts only while the output file still has the size and modification time the
entry recorded, so a truncated or replaced output is redone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import OutputError
from .identity import file_identity as input_identity

if TYPE_CHECKING:
    from .plan import Job

#: Folder in OUT that holds the journal, the lock and in-flight markers.
STATE_DIR = ".auralis-batch"

JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "lock"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class OutputState:
    """What the journal says about an output that already exists.

    ``action``: ``"new"`` (nothing there: write, never replacing anything that
    appears meanwhile), ``"done"`` (written by us with these settings from this very
    input: skip), ``"replace"`` (written by us, but with other settings or from a
    changed input: redo and replace, saying why in ``reason``), ``"altered"``
    (written by us, changed since: kept aside, then redone), ``"foreign"`` (a file we
    did not write: refused unless ``--overwrite``), ``"outside"`` (the output path
    leads out of OUT through a symlink: refused).
    """

    action: str
    reason: str | None = None


def _relative_key(text: object) -> bool:
    """A journal's output key: a path relative to OUT that stays inside it."""
    if not isinstance(text, str) or not text or text.startswith(("/", "\\")):
        return False
    return ".." not in Path(text).parts and ":" not in Path(text).parts[0]


def _valid_entry(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    ident, out_ident = entry.get("identity"), entry.get("output_identity")
    return (
        isinstance(entry.get("input"), str)
        and _relative_key(entry.get("output"))
        and isinstance(entry.get("settings"), str)
        and isinstance(ident, list)
        and len(ident) == 3
        and all(type(v) is int for v in ident)
        and isinstance(out_ident, dict)
        and type(out_ident.get("bytes")) is int
        and type(out_ident.get("mtime_ns")) is int
        and isinstance(out_ident.get("sha256"), str)
        and bool(_SHA256.match(out_ident["sha256"]))
    )


def _valid_plan(entry: object) -> bool:
    """``{"planned": RUN, "output": KEY, "at_ns": T}``: a run's list of what it may write."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("planned"), str)
        and _relative_key(entry.get("output"))
        and type(entry.get("at_ns")) is int
    )


def _valid_legacy(entry: object) -> bool:
    """An entry of auralis-batch 0.1 before this journal format: an absolute output path,
    the input's identity and the settings hash, but no record of the output itself."""
    if not isinstance(entry, dict) or "output_identity" in entry:
        return False
    ident = entry.get("identity")
    return (
        isinstance(entry.get("input"), str)
        and isinstance(entry.get("output"), str)
        and os.path.isabs(entry["output"])
        and isinstance(entry.get("settings"), str)
        and isinstance(entry.get("engine"), str)
        and isinstance(ident, list)
        and len(ident) == 3
        and all(type(v) is int for v in ident)
    )


def _valid_retire(entry: object) -> bool:
    """``{"retired": RUN}``: that run's plan is settled (it ended, or was taken over)."""
    return isinstance(entry, dict) and isinstance(entry.get("retired"), str) and len(entry) == 1


def _open_regular(path: Path, flags: int) -> int:
    """Open ``path`` only if it is a regular file: never through a symlink, never a
    FIFO (that would block the run forever). Raises :class:`OutputError`."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | nofollow | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise OutputError(f"{path}: cannot open ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"{path}: not a regular file; move it away")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


class Journal:
    """Append-only record of finished outputs in ``OUT/.auralis-batch/journal.jsonl``.

    Outputs are named relative to OUT, so a journal never speaks of a file outside
    its folder, and moving OUT keeps it valid. Besides finished entries, a run notes
    before any work which outputs it may write (``planned`` under its run id) and
    retires that plan when it ends: only the plan of a run that died (``kill -9``, a
    power cut) is still open, and the next run takes a file it finds at such a path,
    written after the plan was made, as that run's unjournaled output. Then it
    retires the dead run's plan too.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.dir = out_dir / STATE_DIR
        self.path = self.dir / JOURNAL_NAME
        self.run_id = f"{os.getpid()}-{time.time_ns()}"
        self.by_output: dict[str, dict] = {}
        #: Open plans of runs that died: output key -> (run id, planned at, ns).
        self.planned: dict[str, tuple[str, int]] = {}
        #: Outputs an earlier version journaled (inside OUT): ours, but unverifiable.
        self.legacy: set[str] = set()
        self.ignored_lines = 0
        self._fd: int | None = None
        try:
            fd = _open_regular(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        with os.fdopen(fd, "rb") as f:
            try:
                data = f.read()
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot read ({exc.strerror})") from None
        retired: set[str] = set()
        plans: list[dict] = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                entry = json.loads(line.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                entry = None
            if _valid_entry(entry):
                self.by_output[entry["output"]] = entry
            elif _valid_plan(entry):
                plans.append(entry)
            elif _valid_retire(entry):
                retired.add(entry["retired"])
            elif _valid_legacy(entry) and (key := self.key(Path(entry["output"]))) is not None:
                self.legacy.add(key)
            else:
                self.ignored_lines += 1
        for plan in plans:
            if plan["planned"] not in retired:
                self.planned[plan["output"]] = (plan["planned"], plan["at_ns"])

    def key(self, output: Path) -> str | None:
        """``output`` relative to OUT, or None if it is not inside OUT (a symlinked
        subfolder that leads elsewhere)."""
        try:
            rel = output.resolve().relative_to(self.out_dir.resolve())
        except ValueError:
            return None
        return rel.as_posix()

    def state(self, job: Job, settings_hash: str) -> OutputState:
        """What to do with ``job.output`` (see :class:`OutputState`)."""
        assert job.output is not None
        out = job.output
        key = self.key(out)
        if key is None:
            return OutputState("outside")
        try:
            st = os.lstat(out)
        except FileNotFoundError:
            return OutputState("new")
        except OSError as exc:
            return OutputState("foreign", f"cannot inspect it: {exc.strerror}")
        if not stat.S_ISREG(st.st_mode):
            return OutputState("foreign", "not a regular file")
        entry = self.by_output.get(key)
        if entry is None:
            plan = self.planned.get(key)
            if plan is not None and st.st_mtime_ns >= plan[1]:
                return OutputState(
                    "replace", "left by a run that stopped before journaling it (redone)"
                )
            if key in self.legacy:
                return OutputState(
                    "replace", "it was mastered by an earlier version (not verifiable; redone)"
                )
            return OutputState("foreign")
        written = entry["output_identity"]
        if st.st_size != written["bytes"] or st.st_mtime_ns != written["mtime_ns"]:
            return OutputState("altered", "it changed since auralis-batch wrote it")
        if entry["input"] != str(job.input.resolve()):
            return OutputState("replace", f"it was mastered from another input, {entry['input']}")
        try:
            same_input = entry["identity"] == input_identity(job.input)
        except OSError:
            same_input = False
        if not same_input:
            return OutputState("replace", "the input changed since it was mastered")
        if entry["settings"] != settings_hash:
            preset = entry.get("preset")
            was = f" (preset {preset})" if isinstance(preset, str) else ""
            return OutputState("replace", f"it was mastered with other settings{was}")
        return OutputState("done")

    def plan(self, jobs: list[Job]) -> None:
        """Retire the plans of dead runs (this run has just decided about their
        files) and note, before any work, every output this run may write."""
        for run_id in sorted({run for run, _ in self.planned.values()}):
            self._append({"retired": run_id})
        self.planned.clear()
        now = time.time_ns()
        for job in jobs:
            assert job.output is not None
            key = self.key(job.output)
            if key is not None:
                self._append({"planned": self.run_id, "output": key, "at_ns": now})
        self._sync()

    def retire(self) -> None:
        """This run's plan is settled: what it wrote is journaled, the rest it removed."""
        if self._fd is not None:
            self._append({"retired": self.run_id})
            self._sync()

    def record(self, rec: dict, settings_hash: str) -> None:
        """Append and fsync the entry of a finished output (``rec`` from a worker).

        Raises
        ------
        OSError
            The journal could not be written (a full disk): the caller stops the run.
        """
        written = rec.get("written")
        key = self.key(Path(rec["output"])) if rec.get("output") else None
        if rec.get("status") != "ok" or key is None or not written:
            return
        identity = rec.get("input_identity")
        if not (isinstance(identity, list) and len(identity) == 3):
            identity = input_identity(Path(rec["input"]))
        entry = {
            "input": str(Path(rec["input"]).resolve()),
            "identity": identity,
            "output": key,
            "output_identity": {
                "bytes": written["bytes"],
                "mtime_ns": written["mtime_ns"],
                "sha256": written["sha256"],
            },
            "settings": settings_hash,
            "engine": __version__,
            "preset": rec.get("preset"),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._append(entry)
        self._sync()
        self.by_output[key] = entry

    def _append(self, entry: dict) -> None:
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            self._fd = fd
            size = os.fstat(fd).st_size
            if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")  # a torn tail from a killed run: end it first
        os.write(self._fd, json.dumps(entry).encode("utf-8") + b"\n")

    def _sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def written_outputs(out_dir: Path) -> set[str]:
    """Outputs (relative to ``out_dir``) the journal there says this tool wrote; an
    unreadable or absent journal gives none."""
    try:
        journal = Journal(out_dir)
    except (OSError, OutputError):
        return set()
    return set(journal.by_output)


class RunLockedError(OutputError):
    """Another run is writing into the same output folder."""


class RunLock:
    """An exclusive lock on ``OUT`` for the length of a run.

    ``flock`` on ``OUT/.auralis-batch/lock``: the kernel drops it when the holder
    dies, so a lock left by a killed run is simply taken over. The holder's pid is
    written in the file for the message a second run prints.
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / STATE_DIR / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises :class:`RunLockedError` naming the running run's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_regular(self.path, os.O_RDWR | os.O_CREAT)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            self._fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"another auralis-batch run (pid {holder}) is writing to "
                f"{self.path.parent.parent}; wait for it or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
