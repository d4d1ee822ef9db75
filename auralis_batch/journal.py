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
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import OutputError
from .plan import STATE_DIR, Job

JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "lock"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def input_identity(path: Path) -> list[int]:
    """``[size, mtime_ns, inode]``: changes whenever the file is rewritten."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


@dataclass(frozen=True)
class OutputState:
    """What the journal says about an output that already exists.

    ``action``: ``"new"`` (nothing there: write, never replacing anything that
    appears meanwhile), ``"done"`` (written by us with these settings from this very
    input: skip), ``"replace"`` (written by us, but with other settings, from a
    changed input, or altered since: redo and replace, saying why in ``reason``),
    ``"foreign"`` (a file we did not write: refused unless ``--overwrite``).
    """

    action: str
    reason: str | None = None


def _valid_entry(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    ident, out_ident = entry.get("identity"), entry.get("output_identity")
    return (
        isinstance(entry.get("input"), str)
        and isinstance(entry.get("output"), str)
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
    """A planned-output line, or an entry of an older version (no output identity)."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("input"), str)
        and isinstance(entry.get("output"), str)
        and (entry.get("planned") is True or "output_identity" not in entry)
    )


class Journal:
    """Append-only record of finished outputs in ``OUT/.auralis-batch/journal.jsonl``."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir / STATE_DIR
        self.path = self.dir / JOURNAL_NAME
        self.by_output: dict[str, dict] = {}
        #: Outputs an earlier run planned to write (and older-format entries): a file
        #: found there without a finished entry was written by us, then not journaled.
        self.planned: dict[str, str] = {}
        self.ignored_lines = 0
        self._fh = None
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot read the journal ({exc.strerror})") from None
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
                self.planned[entry["output"]] = entry["input"]
            else:
                self.ignored_lines += 1

    def state(self, job: Job, settings_hash: str) -> OutputState:
        """What to do with ``job.output`` (see :class:`OutputState`)."""
        assert job.output is not None
        out = job.output
        try:
            st = os.lstat(out)
        except FileNotFoundError:
            return OutputState("new")
        except OSError as exc:
            return OutputState("foreign", f"cannot inspect it: {exc.strerror}")
        key = str(out.resolve())
        entry = self.by_output.get(key)
        if entry is None:
            if key in self.planned:
                return OutputState(
                    "replace", "left by a run that stopped before journaling it (redone)"
                )
            return OutputState("foreign")
        written = entry["output_identity"]
        if not (
            os.path.isfile(out)
            and not os.path.islink(out)
            and st.st_size == written["bytes"]
            and st.st_mtime_ns == written["mtime_ns"]
        ):
            return OutputState(
                "replace", "the existing output no longer matches what was written (redone)"
            )
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
        """Note, before any work, every output this run may write (one fsync): a
        crash between an output's rename and its entry leaves a file the next run
        then knows as its own."""
        for job in jobs:
            assert job.output is not None
            entry = {
                "planned": True,
                "input": str(job.input.resolve()),
                "output": str(job.output.resolve()),
            }
            self._append(entry)
            self.planned[entry["output"]] = entry["input"]
        self._sync()

    def record(self, rec: dict, settings_hash: str) -> None:
        """Append and fsync the entry of a finished output (``rec`` from a worker)."""
        written = rec.get("written")
        if rec.get("status") != "ok" or not rec.get("output") or not written:
            return
        entry = {
            "input": str(Path(rec["input"]).resolve()),
            "identity": input_identity(Path(rec["input"])),
            "output": str(Path(rec["output"]).resolve()),
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
        self.by_output[entry["output"]] = entry

    def _append(self, entry: dict) -> None:
        if self._fh is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")
            if self._fh.tell() > 0:  # a torn tail from a killed run: end it first
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        self._fh.write(b"\n")
        self._fh.write(json.dumps(entry).encode("utf-8") + b"\n")

    def _sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
