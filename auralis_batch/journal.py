"""What a run leaves in ``OUT/.auralis-batch/``: the journal of finished outputs and
the lock that keeps a second run out.

The journal is append-only JSON lines, written and fsynced by the parent process
only, after the output it names is on disk (written, fsynced, renamed, folder
fsynced). Every line is distrusted when read back: a line that is not a complete
entry of the right shape is ignored (a torn tail after ``kill -9``), an entry counts
only while the output file still has the size and modification time the entry
recorded, so a truncated or replaced output is redone, and nothing is replaced on an
entry's word unless the file's SHA-256 is the one the entry recorded.

A worker notes each output it is about to rename into place (:class:`CommitLog`),
so that a run killed between the rename and the journal line leaves proof of what
it wrote: the next run journals such a file if it is exactly that content
(:meth:`Journal.recover`). Nothing else makes a file ours: a file the journal does
not vouch for is refused, whatever its name or age.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from . import __version__
from .errors import OutputError
from .identity import (
    O_NONBLOCK,
    fsync_dir,
    identity_or_none,
    same_identity,
    sha256_file,
    sha256_if_same,
    valid_identity,
)
from .identity import file_identity as input_identity
from .limits import is_finite_number

if TYPE_CHECKING:
    from .plan import Job

#: Folder in OUT that holds the journal, the lock and in-flight markers.
STATE_DIR = ".auralis-batch"

JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "lock"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: A worker's commit note in its run's in-flight folder (:class:`CommitLog`).
_COMMIT_NOTE = re.compile(r"^commit-[0-9a-f]{16}\.json$")
_COMMIT_NOTE_MAX_BYTES = 1 << 16


def state_dir(out_dir: Path) -> Path:
    """``OUT/.auralis-batch``, checked: a real folder or nothing yet, never a symbolic
    link (which would take the journal, the lock and what the run removes elsewhere).

    Raises
    ------
    OutputError
        It is a symbolic link or not a folder.
    """
    path = out_dir / STATE_DIR
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise OutputError(f"{path}: cannot inspect it ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(
            f"{path} is a symbolic link: auralis-batch keeps its journal there and follows "
            "no link out of --out; move it away"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(
            f"{path} is not a folder: auralis-batch keeps its journal there; move it away"
        )
    return path


def _parse(data: bytes) -> object:
    """One JSON value from bytes read back from disk, or None: malformed text, bad
    UTF-8, NaN or Infinity (not JSON; this tool never writes them) and nesting too
    deep for the parser are all just not an entry."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def output_key(out_dir: Path, output: Path) -> str | None:
    """``output`` relative to ``out_dir``, or None if it is not inside it (a symlinked
    subfolder that leads elsewhere)."""
    try:
        rel = output.resolve().relative_to(out_dir.resolve())
    except ValueError:
        return None
    return rel.as_posix()


def _entry(
    input_path: str | os.PathLike,
    identity: list[int],
    key: str,
    written: dict,
    settings_hash: str,
    preset: object,
    input_sha256: object = None,
    flags: object = None,
) -> dict:
    """A journal entry of a finished output; ``input_sha256``, the SHA-256 of the
    input's bytes that were mastered, when known; ``flags``, what the settings were
    (:meth:`~auralis_batch.settings.RunSettings.journal_flags`)."""
    entry = {
        "input": str(Path(input_path).resolve()),
        "identity": identity,
        "output": key,
        "output_identity": {
            "bytes": written["bytes"],
            "mtime_ns": written["mtime_ns"],
            "sha256": written["sha256"],
        },
        "settings": settings_hash,
        "engine": __version__,
        "preset": preset,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if _is_sha256(input_sha256):
        entry["input_sha256"] = input_sha256
    if _valid_flags(flags):
        entry["flags"] = dict(flags)
    return entry


#: What a journal entry's ``flags`` may hold, with how a change of each is said (a key
#: read back from disk that is not here makes the whole ``flags`` unread).
_FLAG_NAMES = {
    "target_lufs": "--target-lufs",
    "ceiling_dbtp": "--ceiling-dbtp",
    "bit_depth": "--bit-depth",
    "album": "--album",
    "write_loudness_tags": "--write-loudness-tags",
    "copy_tags": "tag copying",
    "match_strength": "--match-strength",
    "engine": "auralis-batch version",
    "preset_parameters": "the preset's own parameters",
    "reference": "the reference's audio",
    "rules": "the adaptive and reference rules",
}
#: Keys said as "changed", without their values (short hashes, a version).
_HASHED_FLAGS = ("preset_parameters", "reference", "rules")


def _valid_flags(flags: object) -> bool:
    """``flags`` is a dict of known keys to None, a bool, a finite number or a short
    string: the only shape an entry's ``flags`` read back from disk is used in."""
    if not isinstance(flags, dict) or len(flags) > len(_FLAG_NAMES):
        return False
    for k, v in flags.items():
        if k not in _FLAG_NAMES:
            return False
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            if not is_finite_number(v):  # an int of 400 digits overflowed math.isfinite
                return False
        elif not (isinstance(v, str) and len(v) <= 64):
            return False
    return True


def _flag_value(value: object) -> str:
    if value is None:
        return "as the preset says"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _changed_flags(then: object, now: object, *, same_preset: bool) -> list[str]:
    """Each setting that differs between two entries' ``flags``, said as the flag that
    sets it (``--bit-depth: 24, now 16``); none if either cannot be read. The preset's
    parameters count only when the preset is the same (its file was edited)."""
    if not (_valid_flags(then) and _valid_flags(now)):
        return []
    changed = []
    for key, name in _FLAG_NAMES.items():
        was, is_ = then.get(key), now.get(key)
        if was == is_ and type(was) is type(is_):
            continue
        if key in _HASHED_FLAGS:
            # an entry of a version before the rules were kept has none: they changed
            older = key == "rules" and key in now
            if ((key in then and key in now) or older) and (
                same_preset or key != "preset_parameters"
            ):
                changed.append(f"{name} changed")
            continue
        changed.append(f"{name}: {_flag_value(was)}, now {_flag_value(is_)}")
    return changed


@dataclass(frozen=True)
class OutputState:
    """What the journal says about an output that already exists.

    ``action``: ``"new"`` (nothing there: write, never replacing anything that
    appears meanwhile), ``"done"`` (written by us with these settings from this very
    input: skip), ``"replace"`` (written by us, but with other settings or from a
    changed input: redo and replace, saying why in ``reason``), ``"altered"``
    (written by us, changed since: kept aside, then redone), ``"foreign"`` (a file we
    did not write: refused unless ``--overwrite``), ``"blocked"`` (a folder, a link
    or a device is there: refused, ``--overwrite`` or not), ``"outside"`` (the output
    path leads out of OUT through a symlink: refused), ``"other"`` (written by us from
    another input that is still there: its master, refused unless ``--overwrite``; an
    input that is gone, renamed or re-encoded, is ``"replace"``).
    """

    action: str
    reason: str | None = None
    #: The output as journaled (``bytes``, ``mtime_ns``, ``sha256``), for ``done`` and
    #: ``replace``: the worker replaces it only if it still is exactly that.
    expect: dict | None = None


def _other_settings(
    then: object, now: str | None, then_flags: object = None, now_flags: object = None
) -> str:
    """Why a master of other settings is redone, as far as the journal can tell: the
    preset it names, or, with the same preset, the flags (``(preset gentle)`` alone read
    as if the preset had changed when ``--tempo`` had: a newcomer's); an entry that
    kept its flags names the ones that changed (the list of every flag that might have
    said nothing: a newcomer's)."""
    if isinstance(then, str) and now is not None:
        changed = _changed_flags(then_flags, now_flags, same_preset=then == now)
        if then != now:
            changed.insert(0, f"preset {then}, now {now}")
        if changed and _valid_flags(then_flags) and _valid_flags(now_flags):
            return "it was mastered with other settings: " + "; ".join(changed)
    if not isinstance(then, str):
        return "it was mastered with other settings"
    if now is None:
        return f"it was mastered with other settings (preset {then})"
    if then != now:
        return f"it was mastered with other settings (preset {then}, now {now})"
    if now == "reference":
        return (
            "it was mastered with other settings: another reference (or other audio in "
            "the reference's file) or a flag such as --match-strength, --target-lufs, "
            "--ceiling-dbtp, --bit-depth or --album"
        )
    return (
        f"it was mastered with the same preset, {then}, and other settings (a flag such as "
        "--target-lufs, --ceiling-dbtp, --bit-depth, --album or --match-strength, "
        "or the preset's own parameters)"
    )


def _still_there(earlier_input: object, here: str) -> bool:
    """Whether the input an output was mastered from is still a file, and not the one
    at ``here`` (resolved) under another name."""
    if not isinstance(earlier_input, str):
        return False
    try:
        return os.path.isfile(earlier_input) and not os.path.samefile(earlier_input, here)
    except OSError:
        return False


def _relative_key(text: object) -> bool:
    """A journal's output key: a path relative to OUT that stays inside it."""
    if not isinstance(text, str) or not text or text.startswith("/") or "\0" in text:
        return False
    if os.name == "nt" and text.startswith("\\"):  # a POSIX name may start with one
        return False
    try:
        os.fsencode(text)  # a name a filesystem can hold (no stray surrogate)
    except UnicodeEncodeError:
        return False
    # written as this tool writes keys: no "." or empty parts ("." would name OUT
    # itself, and the temporaries "beside" it would be in OUT's parent), no ".."
    if PurePosixPath(text).as_posix() != text or text == ".":
        return False
    parts = Path(text).parts
    # a colon is an ordinary character in a POSIX name ("01 Act I: Dawn.flac"); on
    # Windows one in the first part is a drive ("C:x"), which leads out of OUT
    return ".." not in parts and not (os.name == "nt" and ":" in parts[0])


def _valid_entry(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    ident, out_ident = entry.get("identity"), entry.get("output_identity")
    return (
        isinstance(entry.get("input"), str)
        and _relative_key(entry.get("output"))
        and isinstance(entry.get("settings"), str)
        and valid_identity(ident)
        and isinstance(out_ident, dict)
        and type(out_ident.get("bytes")) is int
        and type(out_ident.get("mtime_ns")) is int
        and isinstance(out_ident.get("sha256"), str)
        and bool(_SHA256.match(out_ident["sha256"]))
    )


def _as_entry(note: dict) -> dict:
    """The journal entry in a commit note (valid by :func:`_valid_entry`), rebuilt from
    its known fields only: nothing else a note read back from disk holds reaches the
    journal."""
    ident = note["output_identity"]
    entry = {
        "input": note["input"],
        "identity": list(note["identity"]),
        "output": note["output"],
        "output_identity": {k: ident[k] for k in ("bytes", "mtime_ns", "sha256")},
        "settings": note["settings"],
    }
    for k in ("engine", "preset", "finished_at"):
        if isinstance(note.get(k), str) and len(note[k]) <= 4096:
            entry[k] = note[k]
    if _is_sha256(note.get("input_sha256")):
        entry["input_sha256"] = note["input_sha256"]
    if _valid_flags(note.get("flags")):
        entry["flags"] = dict(note["flags"])
    return entry


def _is_sha256(value: object) -> bool:
    """A SHA-256 as this tool writes it: 64 lower-case hex digits, nothing else."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def _same_bytes(path: Path, now: list[int], entry: dict) -> bool:
    """Whether the input at ``path`` (identity ``now``) holds the bytes the entry's
    master was made from: same size and SHA-256 (an entry of an earlier version keeps
    no SHA-256: then it is not known to be the same)."""
    expected = entry.get("input_sha256")
    if not _is_sha256(expected):  # read back from disk: an entry of another shape
        return False
    if now[0] != entry["identity"][0]:  # another size: other bytes, nothing to read
        return False
    # through the descriptor of the file stat'ed as ``now``: a file swapped in between
    # would be journaled under ``now`` with the other one's hash (a sweep's race)
    return sha256_if_same(path, now) == expected


def _valid_plan(entry: object) -> bool:
    """``{"planned": RUN, "output": KEY, "at_ns": T}``: a run's list of what it may write."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("planned"), str)
        and _relative_key(entry.get("output"))
        and type(entry.get("at_ns")) is int
    )


#: :meth:`Journal.plan` rewrites a journal with its live entries only when it holds
#: more than this many lines a live entry, and at least COMPACT_MIN_LINES lines: each
#: master again, each refresh (a library touched, chmod'ed, copied without its times)
#: and each run's plan is a line, and the whole file is read at every run.
COMPACT_LINES_PER_ENTRY = 3
COMPACT_MIN_LINES = 1000
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _as_legacy(entry: dict) -> dict:
    """A legacy entry (valid by :func:`_valid_legacy`) rebuilt from the fields it is
    read by: nothing else a line read back from disk holds is written again."""
    return {k: entry[k] for k in ("input", "identity", "output", "settings", "engine")}


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
        and valid_identity(ident)
    )


def _valid_retire(entry: object) -> bool:
    """``{"retired": RUN}``: that run's plan is settled (it ended, or was taken over)."""
    return isinstance(entry, dict) and isinstance(entry.get("retired"), str) and len(entry) == 1


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` or none of it: a short write (a nearly full disk, a file
    size limit) is cut back to where it started and raised, so no line is torn and
    nobody is told it was written.

    Raises
    ------
    OSError
        ENOSPC for a short write, or the write's own error.
    """
    start = os.lseek(fd, 0, os.SEEK_END)
    done = 0
    try:
        while done < len(data):
            n = os.write(fd, data[done:])
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += n
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise


def _open_regular(path: Path, flags: int) -> int:
    """Open ``path`` only if it is a regular file: never through a symlink, never a
    FIFO (that would block the run forever). Raises :class:`OutputError`."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | nofollow | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        if exc.errno == errno.ELOOP and nofollow:
            raise OutputError(f"{path} is a symbolic link; move it away") from None
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
    power cut) is still open, and the next run removes the temporaries of those
    outputs (and no other file). A plan says nothing about whose a file is.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.dir = state_dir(out_dir)
        self.path = self.dir / JOURNAL_NAME
        self.run_id = f"{os.getpid()}-{time.time_ns()}"
        self.by_output: dict[str, dict] = {}
        #: Open plans of runs that died: output key -> (run id, planned at, ns).
        self.planned: dict[str, tuple[str, int]] = {}
        #: Outputs an earlier version journaled (inside OUT): ours, but unverifiable.
        self.legacy: set[str] = set()
        self.ignored_lines = 0
        #: commit notes (and in-flight folders) :meth:`recover` could not prove either
        #: way (the output, the note or the folder unreadable just now): kept for a
        #: later run, never swept
        self.unproven: set[Path] = set()
        self._folders: dict[Path, str | None] = {}  # key() of folders, resolved once
        #: entries :meth:`state` found true under a new time or input path (an output
        #: copied without its times, an input folder renamed), written by :meth:`plan`
        self.refreshed: dict[str, dict] = {}
        #: Outputs (keys) whose inputs :meth:`state` found under another time or inode
        #: and read to find them the bytes that were mastered (the run says how many).
        self.rechecked: set[str] = set()
        self._fd: int | None = None
        #: Lines read (every kind), and the lines other than this format's entries and
        #: plans that a rewrite keeps (legacy entries, objects of another build's
        #: format): what :meth:`_compact` weighs and keeps.
        self._lines = 0
        self._kept: list[dict] = []
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
            self._lines += 1
            entry = _parse(line)
            if _valid_entry(entry):
                self.by_output[entry["output"]] = entry
            elif _valid_plan(entry):
                plans.append(entry)
            elif _valid_retire(entry):
                retired.add(entry["retired"])
            elif _valid_legacy(entry):
                # kept by a rewrite even when OUT is reached by another path just now
                # (a drive mounted under another name): its key is then unknown
                self._kept.append(_as_legacy(entry))
                if (key := self.key(Path(entry["output"]))) is not None:
                    self.legacy.add(key)
            else:
                self.ignored_lines += 1
                if isinstance(entry, dict):  # another build's line, say: not ours to drop
                    self._kept.append(entry)
        for plan in plans:
            if plan["planned"] not in retired:
                self.planned[plan["output"]] = (plan["planned"], plan["at_ns"])

    def key(self, output: Path) -> str | None:
        """``output`` relative to OUT, or None if it is not inside OUT (a symlinked
        subfolder that leads elsewhere). Each folder is resolved once (a re-run of a
        big library asks for thousands of names in a few folders); the name itself is
        not followed, and a link there is refused by :meth:`state` as not a file."""
        name = output.name
        if name in ("", ".", ".."):
            return output_key(self.out_dir, output)
        folder = output.parent
        if folder not in self._folders:
            self._folders[folder] = output_key(self.out_dir, folder)
        parent = self._folders[folder]
        if parent is None:
            return None
        return name if parent == "." else f"{parent}/{name}"

    def recover(self, *, write: bool = True) -> dict[str, dict]:
        """Journal the outputs that workers renamed into place but nobody journaled
        (a run that died, or this run's workers when it stopped or one crashed), from
        their commit notes (:class:`CommitLog`): each only if the file there is exactly
        the noted content (size, time and SHA-256). Call under the lock, when no worker
        runs, before the in-flight folders are removed. Returns the keys journaled,
        each with its note: the journal entry, and under ``"measured"`` the record's
        measurements when the note carried them (plain JSON read back from disk: the
        caller checks them before use). ``write=False`` (a dry run): the same answer,
        known in memory only.
        """
        from .audio import recorded_state  # the audio layer (NumPy): only when recovering

        recovered: dict[str, dict] = {}
        for path, entry in self._notes():
            if entry is None:  # a note that could not be read now
                self.unproven.add(path)
                continue
            known = self.by_output.get(entry["output"])
            if known is not None and known["output_identity"] == entry["output_identity"]:
                continue
            out = self.out_dir / entry["output"]
            state = recorded_state(out, entry["output_identity"])
            if state == "unreadable":  # not proven; the note stays for a later run
                self.unproven.add(path)
            if state != "same":
                continue
            note, entry = entry, _as_entry(entry)
            if write:
                self._append(entry)  # a journal that cannot be written raises: none lost
                self._sync()
            self.by_output[entry["output"]] = entry
            recovered[entry["output"]] = note
        return recovered

    def _notes(self) -> list[tuple[Path, dict | None]]:
        """The well-formed commit notes of every in-flight folder, each naming an
        output inside OUT; one that cannot be read now comes with None."""
        notes: list[tuple[Path, dict | None]] = []
        for folder in sorted(self.dir.glob("inflight-*")):
            try:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    continue
                listing = sorted(folder.iterdir())
            except FileNotFoundError:
                continue
            except OSError:  # cannot be listed now: all of it is kept for a later run
                self.unproven.add(folder)
                continue
            for note in listing:
                try:
                    entry = self._read_note(note)
                except OSError:
                    notes.append((note, None))
                    continue
                if entry is None:
                    continue
                if self.key(self.out_dir / entry["output"]) == entry["output"]:
                    notes.append((note, entry))
        return notes

    @staticmethod
    def _read_note(note: Path) -> dict | None:
        """The note's entry; None if it is no well-formed note (not a regular file,
        malformed). Raises OSError if it cannot be read now."""
        if not _COMMIT_NOTE.match(note.name):
            return None
        try:  # a link, a FIFO or a folder is no note of ours; EACCES, EIO: not now
            if not stat.S_ISREG(os.lstat(note).st_mode):
                return None
            fd = os.open(note, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | O_NONBLOCK)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = f.read(_COMMIT_NOTE_MAX_BYTES + 1)
        entry = _parse(data) if len(data) <= _COMMIT_NOTE_MAX_BYTES else None
        return entry if _valid_entry(entry) else None

    def state(
        self,
        job: Job,
        settings_hashes: tuple[str, ...],
        preset: str | None = None,
        flags: dict | None = None,
    ) -> OutputState:
        """What to do with ``job.output`` (see :class:`OutputState`); ``settings_hashes``:
        every hash that stands for this run's settings
        (:meth:`~auralis_batch.settings.RunSettings.fingerprints`); ``flags``, what
        they are (:meth:`~auralis_batch.settings.RunSettings.journal_flags`), to say
        which changed."""
        assert job.output is not None
        out = job.output
        key = self.key(out)
        if key is None:
            return OutputState("outside")
        try:
            st = os.lstat(out)
        except FileNotFoundError:
            return OutputState("new")
        except NotADirectoryError:  # "is cannot inspect it: Not a directory" (a review)
            return OutputState("blocked", "below a file that stands where its folder goes")
        except OSError as exc:
            return OutputState("blocked", f"unreadable ({exc.strerror})")
        if not stat.S_ISREG(st.st_mode):
            what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            return OutputState("blocked", what)
        entry = self.by_output.get(key)
        if entry is None:
            if key in self.legacy:  # ours, probably; but nothing to check it against
                return OutputState(
                    "altered", "it was mastered by an earlier version that kept no checksum"
                )
            return OutputState("foreign")
        written = entry["output_identity"]
        if st.st_size != written["bytes"]:
            return OutputState("altered", "it changed since auralis-batch wrote it")
        if st.st_mtime_ns != written["mtime_ns"]:
            # copied without its times (cp -r, rsync without -t) or touched: the same
            # bytes are the same master, re-journaled with the new time
            try:
                same_bytes = sha256_file(out, follow_links=False) == written["sha256"]
            except OSError:
                same_bytes = False
            if not same_bytes:
                return OutputState("altered", "it changed since auralis-batch wrote it")
            written = dict(written, mtime_ns=st.st_mtime_ns)
            entry = self.refreshed[key] = dict(entry, output_identity=written)
        here = str(job.input.resolve())
        now = identity_or_none(job.input)  # the same file as journaled, wherever it is now?
        same_input = now is not None and same_identity(entry["identity"], now)
        if (
            now is not None
            and not same_input
            and entry["settings"] in settings_hashes  # else mastered again whatever it is
            and not _still_there(entry["input"], here)  # a copy beside it is not it
            and _same_bytes(job.input, now, entry)
        ):
            # copied without its times (cp -r, rsync without -t), touched, or on another
            # disk: the bytes that were mastered, journaled again under the new identity
            same_input = True
            entry = self.refreshed[key] = dict(entry, identity=now, input=here)
            self.rechecked.add(key)
        if entry["input"] != here and not same_input:
            if _still_there(entry["input"], here):
                # two runs of two folders into one OUT: the first's master would be lost
                return OutputState(
                    "other", f"the master of another input, {entry['input']}", written
                )
            why = f"it was mastered from another input, {entry['input']}"
        elif entry["settings"] not in settings_hashes:
            why = _other_settings(entry.get("preset"), preset, entry.get("flags"), flags)
        elif same_input:
            if entry["input"] != here or entry["identity"] != now:
                # its folder renamed: journaled under the new path; an entry of a build
                # before the ctime: journaled with it (one line, nothing read), so an
                # upgraded library is guarded against in-place rewrites from now on
                self.refreshed[key] = dict(entry, input=here, identity=now)
            return OutputState("done", expect=written)
        else:
            why = "the input changed since it was mastered"
        # Replaced on the journal's word only if it is still what was written: the
        # worker checks (size, time, SHA-256) right before its master takes the name.
        return OutputState("replace", why, written)

    def plan(self, jobs: list[Job]) -> None:
        """Retire the plans of dead runs (this run has just decided about their
        files), journal again the outputs :meth:`state` found under a new time or input
        path, and note, before any work, every output this run may write."""
        if self._compact_due():
            self.by_output.update(self.refreshed)
            if self._compact():  # the dead runs' plans are not in it: retired
                self.planned.clear()
                self.refreshed.clear()
        for run_id in sorted({run for run, _ in self.planned.values()}):
            self._append({"retired": run_id})
        self.planned.clear()
        for key, entry in self.refreshed.items():
            self._append(entry)
            self.by_output[key] = entry
        self.refreshed.clear()
        now = time.time_ns()
        for job in jobs:
            assert job.output is not None
            key = self.key(job.output)
            if key is not None:
                self._append({"planned": self.run_id, "output": key, "at_ns": now})
        self._sync()

    def _compact_due(self) -> bool:
        """More than :data:`COMPACT_LINES_PER_ENTRY` lines a live entry, and at least
        :data:`COMPACT_MIN_LINES`: superseded entries (each refresh and each master
        again is a line) and settled plans make up most of the file."""
        kept = len(self.by_output) + len(self._kept)
        return self._lines >= COMPACT_MIN_LINES and self._lines > COMPACT_LINES_PER_ENTRY * max(
            kept, 1
        )

    def _compact(self) -> bool:
        """Rewrite the journal with its live entries only (each rebuilt from its known
        fields, as a commit note's is), in the order SQLite and git use: a new file
        written whole and fsynced, renamed over the old one, the folder fsynced. Call
        under the lock, before this run's plan, with no worker running. The old file
        stays whole until the rename, so a crash or a full disk loses nothing; then
        this returns False and the journal is appended to as before."""
        entries = [_as_entry(e) for _, e in sorted(self.by_output.items())]
        try:
            data = b"".join(
                json.dumps(e, allow_nan=False).encode("utf-8") + b"\n"
                for e in [*entries, *self._kept]
            )
        except (TypeError, ValueError):  # a kept line JSON cannot write back (1e999)
            return False
        try:  # the journal's owner and mode, as an append keeps them
            st = os.stat(self.path)
        except OSError:
            return False
        for stale in self.dir.glob(f"{JOURNAL_NAME}.compact-*"):  # of a run that died
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(stale).st_mode):
                    os.unlink(stale)
        tmp = self.dir / f"{JOURNAL_NAME}.compact-{self.run_id}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o600)
        except OSError:
            return False
        try:
            try:
                if hasattr(os, "fchown"):
                    with contextlib.suppress(OSError):  # as root: the user's journal
                        os.fchown(fd, st.st_uid, st.st_gid)
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, stat.S_IMODE(st.st_mode))
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if self._fd is not None:  # appends go to the new file from here on
                os.close(self._fd)
                self._fd = None
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        fsync_dir(self.dir)
        self.by_output = {e["output"]: e for e in entries}
        self._lines = len(entries) + len(self._kept)
        return True

    def retire(self) -> None:
        """This run's plan is settled: what it wrote is journaled, the rest it removed."""
        if self._fd is not None:
            self._append({"retired": self.run_id})
            self._sync()

    def record(self, rec: dict, settings_hash: str, flags: dict | None = None) -> bool:
        """Append and fsync the entry of a finished output (``rec`` from a worker);
        True when an entry was written (a failed track has none).

        Raises
        ------
        OSError
            The journal could not be written (a full disk): the caller stops the run.
        """
        written = rec.get("written")
        key = self.key(Path(rec["output"])) if rec.get("output") else None
        if rec.get("status") != "ok" or key is None or not written:
            return False
        known = self.by_output.get(key)
        if known is not None and known["output_identity"] == written:
            return False  # journaled already (recovered from its commit note)
        identity = rec.get("input_identity")
        if not valid_identity(identity):
            identity = input_identity(Path(rec["input"]))
        entry = _entry(
            rec["input"],
            identity,
            key,
            written,
            settings_hash,
            rec.get("preset"),
            rec.get("input_sha256"),
            flags,
        )
        self._append(entry)
        self._sync()
        self.by_output[key] = entry
        return True

    def _append(self, entry: dict) -> None:
        if self._fd is None:
            state_dir(self.out_dir).mkdir(parents=True, exist_ok=True)
            try:
                fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                fd = _open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            self._fd = fd
            size = os.fstat(fd).st_size
            if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                _write_all(fd, b"\n")  # a torn tail from a killed run: end it first
        _write_all(self._fd, json.dumps(entry, allow_nan=False).encode("utf-8") + b"\n")

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


class CommitLog:
    """Where a worker notes an output it is about to rename into place.

    The journal is the parent's, written after a worker reports: a run killed between
    a worker's rename and that line would leave a finished master nobody vouches for,
    which every later run must refuse as foreign. So before the rename the worker
    writes the output's complete journal entry (its size, time and SHA-256 included)
    into its run's in-flight folder, durably, and :meth:`Journal.recover` journals it
    on the next run if the file is exactly that content.
    """

    def __init__(self, folder: Path, settings_hash: str, flags: dict | None = None) -> None:
        self.folder = folder  # OUT/.auralis-batch/inflight-<run>
        self.out_dir = folder.parent.parent
        self.settings_hash = settings_hash
        self.flags = flags

    def note(
        self,
        input_path: Path,
        identity: list[int],
        output: Path,
        written: dict,
        preset: object,
        *,
        measured: dict | None = None,
        input_sha256: str | None = None,
    ) -> None:
        """Durably note ``output`` (not renamed yet) as ``written``; ``measured``, the
        record's measurements, lets a run that loses the worker's report still report
        the master (left out if it would make the note too big to be read back);
        ``input_sha256``, the source's SHA-256, as the journal entry keeps it.

        Raises
        ------
        OSError
            The note could not be written: the output is not committed either.
        """
        key = output_key(self.out_dir, output)
        if key is None:
            return
        entry = _entry(
            input_path, identity, key, written, self.settings_hash, preset, input_sha256, self.flags
        )
        # written as recovery reads it back (no NaN): measurements that cannot be are
        # left out, never the proof
        data = json.dumps(entry, allow_nan=False).encode("utf-8")
        if measured is not None:
            with contextlib.suppress(ValueError):
                fuller = json.dumps(entry | {"measured": measured}, allow_nan=False)
                if len(fuller.encode("utf-8")) <= _COMMIT_NOTE_MAX_BYTES:
                    data = fuller.encode("utf-8")
        name = _note_name(key)
        tmp = self.folder / f".{name}.tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644
        )
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.folder / name)
        fsync_dir(self.folder)


def _note_name(key: str) -> str:
    return f"commit-{hashlib.sha1(key.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}.json"


def forget_commit_note(folder: Path, key: str | None) -> None:
    """Remove the commit note of output ``key`` once its journal line is on disk (the
    folder then holds only the notes of outputs not yet journaled)."""
    if key is not None:
        with contextlib.suppress(OSError):
            (folder / _note_name(key)).unlink()


class RunLockedError(OutputError):
    """Another run is writing into the same output folder (or one holding it, or one
    inside it)."""


def check_no_run_in(folder: Path, out_dir: Path) -> None:
    """:class:`RunLockedError` if a run holds ``folder``'s lock: an OUT around this
    run's ``out_dir`` or inside it. Each locked only its own OUT, so ``--out o`` and
    ``--out o/sub`` at once swept each other's temporaries and failed tracks (a
    review)."""
    holder = RunLock(folder).holder()
    if holder is not None:
        raise RunLockedError(
            f"another auralis-batch run (pid {holder}) is writing to {folder}, which "
            f"{'holds' if _is_inside(out_dir, folder) else 'is inside'} --out {out_dir}; "
            "wait for it or choose an --out apart from it"
        )


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True


#: Tries, 10 ms apart, to take a run's lock before another run is said to hold it.
_LOCK_TRIES = 5


class RunLock:
    """An exclusive lock on ``OUT`` for the length of a run.

    ``flock`` on ``OUT/.auralis-batch/lock``: the kernel drops it when the holder
    dies, so a lock left by a killed run is simply taken over. The holder's pid is
    written in the file for the message a second run prints.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / STATE_DIR / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises :class:`RunLockedError` naming the running run's pid (and
        :class:`OutputError` if the state folder is a link or a file)."""
        state_dir(self.out_dir).mkdir(parents=True, exist_ok=True)
        fd = _open_regular(self.path, os.O_RDWR | os.O_CREAT)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            self._fd = fd
            return
        for attempt in range(_LOCK_TRIES):  # a dry run's look (holder) holds it briefly
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt + 1 < _LOCK_TRIES:
                    time.sleep(0.01)
        else:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"another auralis-batch run (pid {holder}) is writing to "
                f"{self.path.parent.parent}; wait for it or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        try:
            for folder in Path(os.path.realpath(self.out_dir)).parents:
                check_no_run_in(folder, self.out_dir)
        except RunLockedError:
            self.release()
            raise

    def holder(self) -> str | None:
        """The pid of the run holding this lock now, or None; takes nothing and writes
        nothing (a dry run asks)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | O_NONBLOCK)
        except OSError:
            return None
        try:
            import fcntl

            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            return None  # closing the descriptor drops the shared lock
        except ImportError:  # pragma: no cover - not POSIX
            return None
        finally:
            os.close(fd)

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
