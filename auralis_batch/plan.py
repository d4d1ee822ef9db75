"""From the command line's inputs to a list of jobs, decided before any work starts.

* Only regular files are read: FIFOs, sockets and devices are listed as skipped (a
  FIFO would block the run forever). Folder symlinks are followed, each real folder
  once (no loops).
* The output folder is never input, nor is any file an earlier run wrote into a
  folder inside the inputs (its journal names it): masters are not mastered again.
* Problems that would make the run wrong as a whole (two inputs that map to one
  output, an output on an input, ``--out`` that is an input folder) are returned as
  :attr:`Plan.problems`; the CLI exits 2 naming each. The same file given twice is
  planned once.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .identity import same_entry
from .journal import STATE_DIR, written_outputs
from .limits import MAX_NAME_BYTES
from .records import (
    BROKEN_ENTRY_REASON,
    CANNOT_READ_REASON,
    FOLDER_READ_TWICE_REASON,
    LINK_INTO_OUT_REASON,
    NOT_A_FILE_REASON,
    NOT_AUDIO_REASON,
    SAME_FILE_PREFIX,
    UNREADABLE_FOLDER_REASON,
    failed_record,
    skipped_record,
    undecodable_record,
)

#: File extensions of the temporaries an output is written under before its rename.
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class Job:
    """One input file and, for master, where its output goes."""

    input: Path
    output: Path | None = None
    #: May replace a file at ``output`` (one we wrote, or ``--overwrite``), and why.
    replace: bool = False
    replace_reason: str | None = None
    #: The file at ``output`` as the journal recorded it (``bytes``, ``mtime_ns``,
    #: ``sha256``): it is replaced only if it is still exactly that when the new master
    #: takes its place; anything else there is kept aside first. None: ``--overwrite``.
    expect: dict | None = None
    #: A master of ours the user has edited is at ``output``: it is kept aside
    #: (``NAME.altered-DATE``) when the new master takes its place, not before, so a
    #: redo that fails leaves it where it was.
    keep_aside: bool = False
    #: The name an album's edited master was kept aside under while the run was
    #: planned (an album moves all of them or none, before it is rendered).
    kept_as: str | None = None


@dataclass
class Plan:
    """What a run will do: jobs, records of files it will not touch, and problems."""

    jobs: list[Job] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _masters_in(folder: Path) -> set[Path]:
    """Files in ``folder``'s tree that a run with ``--out folder`` wrote, by its journal
    (a folder can hold sources and masters both: only the masters are left out)."""
    try:
        if not (folder / STATE_DIR).is_dir():
            return set()
    except OSError:
        return set()
    return {(folder / key).resolve() for key in written_outputs(folder)}


def discover(
    inputs: Sequence[str | os.PathLike],
    *,
    extensions: frozenset[str] | None,
    exclude: Sequence[Path] = (),
    skip_masters: bool = True,
) -> tuple[list[tuple[Path, Path]], list[dict], list[str]]:
    """Expand files and folders (recursively) into ``(file, relative_name)`` pairs.

    Returns ``(audio, skipped, notes)``: regular files whose extension is in
    ``extensions``, or every regular file when it is None (a file named on the
    command line is taken whatever its extension: the decoder decides), skipped
    records for everything else found, and notes about folders left out. Hidden
    files and folders are ignored; so are the ``exclude`` folders (resolved) and,
    with ``skip_masters`` (``master``: a master is never mastered again), the files
    earlier runs wrote into a folder. ``analyze`` and ``measure`` read those too: a
    user measures a folder of masters to check them.
    """
    excluded = _Out.of(exclude)
    read = [_read_one(Path(item), extensions, excluded, skip_masters) for item in inputs]
    audio: list[tuple[Path, Path]] = []
    skipped: list[dict] = []
    notes: list[str] = []
    cover = _covers(read)
    for one, outer in zip(read, cover, strict=True):
        if outer is not None:
            note = f"{one.item}: inside {read[outer].item}, which is given too; read as part of it"
            if (one.folder or one.audio) and note not in notes:  # not a file it skips
                notes.append(note)  # once, however many times it was given
            continue
        audio.extend(one.audio)
        skipped.extend(one.skipped)
        notes.extend(one.notes)
    if skipped:  # a file named here is taken whatever its extension: met again in a
        taken = {os.path.realpath(f) for f, _ in audio}  # folder named too, not "skipped"
        listed: set[tuple[str, str]] = set()  # and one folder given twice lists once
        kept_skipped = []
        for r in skipped:
            key = (os.path.realpath(r["input"]), str(r["input"]))
            if key[0] not in taken and key not in listed:
                listed.add(key)
                kept_skipped.append(r)
        skipped = kept_skipped
    return audio, skipped, notes


@dataclass
class _Read:
    """What one input named on the command line yields, before any of it is kept."""

    item: Path
    folder: bool = False
    audio: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def found(self) -> tuple[set[str], set[str]]:
        """The files it reads, and every file it yields (read or skipped), by their
        real paths; not the folders it lists (one read already through a link: two
        walks meet different ones first)."""
        reads = {os.path.realpath(f) for f, _ in self.audio}
        listed = {os.path.realpath(r["input"]) for r in self.skipped}
        return reads, reads | {f for f in listed if not os.path.isdir(f)}


def _read_one(p: Path, extensions, excluded: _Out, skip_masters: bool) -> _Read:
    one = _Read(p)
    try:
        st = os.stat(p)
    except OSError as exc:
        one.skipped.append(skipped_record(p, f"{CANNOT_READ_REASON}{exc.strerror or exc}"))
        return one
    if stat.S_ISDIR(st.st_mode):
        one.folder = True
        masters: set[Path] | None = set() if skip_masters else None
        if masters is not None:  # a folder inside an earlier run's OUT: its masters
            for ancestor in p.resolve().parents:  # are that OUT's journal's
                masters |= _masters_in(ancestor)
        seen = {(st.st_dev, st.st_ino): p}  # each folder read, by identity: where it was
        dropped: list[Path] = []
        links: list[Path] = []
        walk = (extensions, excluded, seen, masters, one.audio, one.skipped, one.notes, dropped)
        _walk(p, p, *walk, links=links)
        # Links to folders are followed after every real folder is read, so a folder
        # reached both ways is read (and mastered into OUT) where it lies, and the link
        # is the second way in: a helper's "00_Favorites -> ../Album" took the album's
        # tracks into OUT/00_Favorites and left OUT/Album empty. A link to a folder the
        # walk does not reach otherwise (outside the input, or hidden) is read through it.
        while links:
            link = links.pop(0)
            try:
                lst = os.stat(link)
            except OSError:
                one.skipped.append(skipped_record(link, BROKEN_ENTRY_REASON))
                continue
            first = seen.get((lst.st_dev, lst.st_ino))
            if first is not None:
                one.skipped.append(skipped_record(link, f"{FOLDER_READ_TWICE_REASON}, {first}"))
                continue
            seen[(lst.st_dev, lst.st_ino)] = link
            _walk(p, link, *walk, links=links)
        one.audio.sort(key=lambda found: found[1].parts)  # the walk's own order: by name
        if dropped:  # said when some were met, not when an enclosing OUT has any
            one.notes.append(f"{p}: masters that earlier runs wrote inside it are not read")
    elif stat.S_ISREG(st.st_mode):
        real = p.resolve()
        if excluded.holds(real) and any(real in _masters_in(a) for a in real.parents):
            # a master of OUT's, named or through a link: never mastered again; asked
            # for by name, it fails (exit 1). A file of the user's there (a WAV beside
            # which its FLAC master goes) is taken as named.
            one.skipped.append(failed_record(p, _MASTER_IN_OUT_REASON))
        else:
            one.audio.append((p, Path(p.name)))
    else:
        one.skipped.append(skipped_record(p, f"{NOT_A_FILE_REASON}{_kind(st.st_mode)}"))
    return one


def _covers(read: list[_Read]) -> list[int | None]:
    """For each input, the folder among the inputs that holds it (by its path, or by
    where its links lead) and whose walk found everything it yields, if any: the
    outermost such, so that OUT mirrors it whatever the order (``master lib/sub lib``
    wrote ``lib/sub/b.flac`` as ``OUT/b.flac``, and ``master lib lib/sub`` as
    ``OUT/sub/b.flac``: a sweep). Decided by what the walks found, so an input a
    folder's walk leaves out (hidden, inside OUT, a master of an earlier run, an
    extension the walk skips) stays an input of its own. Inputs are decided in an
    order of their own (real path, shallowest first, then by name), never the order
    given, and only one that stays can cover another, so two inputs never drop each
    other (links can make each hold the other)."""
    found = [one.found() for one in read]
    given = [_absolute(one.item) for one in read]
    real = [os.path.realpath(one.item) for one in read]
    rank = [(r.count(os.sep), r, g) for r, g in zip(real, given, strict=True)]
    cover: list[int | None] = [None] * len(read)
    kept: list[int] = []
    for i in sorted(range(len(read)), key=lambda k: rank[k]):
        holders = [
            j
            for j in kept
            if read[j].folder
            and (_under(given[i], given[j]) or _under(real[i], real[j]))
            and found[i][0] <= found[j][0]  # what it reads, the folder reads
            and found[i][1] <= found[j][1]  # and what it lists as skipped, the folder lists
        ]
        if holders:
            cover[i] = min(holders, key=lambda j: rank[j])
        else:
            kept.append(i)
    return cover


def _absolute(p: Path) -> str:
    return os.path.normpath(os.path.abspath(p))


def _under(path: str, folder: str) -> bool:
    """``path`` is inside ``folder`` (both normalised, absolute), not the folder itself."""
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(
    root,
    folder,
    extensions,
    excluded,
    seen,
    masters,
    audio,
    skipped,
    notes,
    dropped=None,
    *,
    links: list[Path] | None = None,
) -> None:
    """Read ``folder`` into ``audio``/``skipped``/``notes``, recursively, in name order;
    a link to a folder goes into ``links`` (read after, by the caller) when given."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        skipped.append(skipped_record(folder, f"{UNREADABLE_FOLDER_REASON}{exc.strerror or exc}"))
        return
    if masters is not None:
        masters |= _masters_in(Path(folder))
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            st = os.stat(path)  # follows symlinks
        except OSError:
            skipped.append(skipped_record(path, BROKEN_ENTRY_REASON))
            continue
        if stat.S_ISDIR(st.st_mode):
            real, key = path.resolve(), (st.st_dev, st.st_ino)
            if excluded.holds(real, key, root):  # OUT, or a way into it
                notes.append(f"{path}: the output folder is inside the input; not read")
                _tracks_in_out(path, extensions, seen, skipped)
                continue
            if links is not None and entry.is_symlink():
                links.append(path)
                continue
            if key in seen:  # a second way into a folder already read (a bind mount)
                skipped.append(skipped_record(path, f"{FOLDER_READ_TWICE_REASON}, {seen[key]}"))
                continue
            seen[key] = path
            _walk(
                root,
                path,
                extensions,
                excluded,
                seen,
                masters,
                audio,
                skipped,
                notes,
                dropped,
                links=links,
            )
        elif not stat.S_ISREG(st.st_mode):
            skipped.append(skipped_record(path, f"{NOT_A_FILE_REASON}{_kind(st.st_mode)}"))
        elif masters and path.resolve() in masters:
            if dropped is not None:
                dropped.append(path)
            continue  # a master an earlier run wrote here: never mastered again
        elif excluded and entry.is_symlink() and excluded.holds(path.resolve(), None, root):
            # a link to a master (lib/latest.flac -> ../out/a.flac): OUT is not input
            # (it stopped the whole run as "output would overwrite the input lib/a.wav")
            skipped.append(skipped_record(path, LINK_INTO_OUT_REASON))
        elif extensions is None or path.suffix.lower().lstrip(".") in extensions:
            audio.append((path, path.relative_to(root)))
        elif (undecodable := undecodable_record(path)) is not None:
            skipped.append(undecodable)
        else:
            skipped.append(skipped_record(path, f"{NOT_AUDIO_REASON} (by extension)"))


def _inside(real: Path, folders: set[Path] | frozenset[Path]) -> bool:
    return any(parent in folders for parent in real.parents)


@dataclass(frozen=True)
class _Out:
    """The output folders a walk does not read: by real path, and by identity (device
    and inode), so that OUT reached by another path (a bind mount, a network share of
    the same disk) is OUT too: ``--out /mnt/lib`` for ``lib`` mounted there wrote every
    master over its source (a review)."""

    paths: frozenset[Path] = frozenset()
    ids: frozenset[tuple[int, int]] = frozenset()

    @classmethod
    def of(cls, folders: Sequence[str | os.PathLike]) -> _Out:
        ids = set()
        for folder in folders:
            with contextlib.suppress(OSError):
                st = os.stat(folder)
                ids.add((st.st_dev, st.st_ino))
        return cls(frozenset(Path(f).resolve() for f in folders), frozenset(ids))

    def __bool__(self) -> bool:
        return bool(self.paths)

    def holds(self, real: Path, key: tuple[int, int] | None = None, root=None) -> bool:
        """Whether ``real`` (a resolved path; ``key`` its identity, if a folder) is OUT
        or inside it. An input that itself lies inside OUT is read whole (its
        subfolders are inside OUT too: all of them were left out, as OUT's own), but
        a way out of it into the rest of OUT is not."""
        if key is not None and key in self.ids:
            return True
        if not (real in self.paths or _inside(real, self.paths)):
            return False
        if root is None:
            return True
        top = Path(root).resolve()
        return not (_inside(top, self.paths) and (real == top or _inside(real, {top})))


def _tracks_in_out(folder: Path, extensions, seen, skipped) -> None:
    """The output folder met inside an input is not read (masters are written there),
    but tracks of the user's in it are each a skipped record, counted and listed with
    why: they were left out without a word (a newcomer's ``--out music/AlbumA`` for
    ``music``)."""
    found: list[tuple[Path, Path]] = []
    _walk(folder, folder, extensions, _Out(), dict(seen), set(), found, [], [])
    skipped.extend(skipped_record(f, _IN_OUT_REASON) for f, _ in found)


#: Why a file inside OUT is not read when a walk meets it.
_IN_OUT_REASON = (
    "inside the output folder, which is not read as input: master it with an --out "
    "that holds no tracks"
)
#: Why a master of OUT's named on the command line (or a link to one) is not read (it
#: was mastered again into OUT: a sweep).
_MASTER_IN_OUT_REASON = (
    "a master this tool wrote into the output folder: masters are never mastered again "
    "(copy it out of --out to master it anew)"
)


def _chosen_paths(audio: list[tuple[Path, Path]], resolved: list[Path]) -> dict[Path, int]:
    """For each file (by real path), the index in ``audio`` of the path it is mastered
    as: the first found, unless a later one under the same input reaches it without a
    link below that input (the file where it lies, mastered into its own folder of
    OUT). Across inputs the first stays: ``master lib ext/B`` with ``lib/A -> ../ext``
    kept OUT/A/B/x.flac, where the path of the second input would have taken OUT/x.flac,
    a name ``lib/x.ogg`` may hold (a review)."""
    chosen: dict[Path, int] = {}
    for i, f_r in enumerate(resolved):
        j = chosen.get(f_r)
        if j is None or (
            _root(*audio[j]) == _root(*audio[i])
            and _through_link(*audio[j])
            and not _through_link(*audio[i])
        ):
            chosen[f_r] = i
    return chosen


def _root(path: Path, relative: Path) -> Path:
    """The input ``path`` was found under (``relative`` is its name there)."""
    return Path(*path.parts[: len(path.parts) - len(relative.parts)])


def _through_link(path: Path, relative: Path) -> bool:
    """``path`` (found as ``relative`` under its input) is a link or lies in a linked
    folder below its input."""
    walked = path
    for _ in relative.parts:
        if walked.is_symlink():
            return True
        walked = walked.parent
    return False


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _an_input_at(
    dst: Path, by_path: dict[Path, Path], by_id: dict[tuple[int, int], Path]
) -> Path | None:
    """The input that ``dst`` would overwrite: by its real path, or, where a file is
    there, by identity (OUT reached another way than the input: a bind mount). The
    maps give each input by its real path and by its identity."""
    there = by_path.get(dst.resolve())
    if there is not None:
        return there
    try:
        st = os.lstat(dst)
    except OSError:
        return None
    there = by_id.get((st.st_dev, st.st_ino))
    return there if there is not None and same_entry(dst, there) else None


def output_path(relative: Path, out_dir: Path, fmt: str) -> Path:
    return out_dir / relative.with_suffix("." + fmt)


def plan_master(
    inputs: Sequence[str | os.PathLike], out_dir: Path, fmt: str, *, extensions: frozenset[str]
) -> Plan:
    """Jobs for ``master`` with every whole-run problem found up front."""
    plan = Plan()
    out_r = out_dir.resolve()
    out_id = _identity(out_dir)  # OUT by another path (a bind mount) is OUT too
    for item in inputs:
        item_r = Path(item).resolve()
        same = item_r == out_r or (out_id is not None and _identity(item) == out_id)
        if Path(item).is_dir() and same:
            plan.problems.append(
                f"--out {out_dir} is the input folder {item}: choose a separate output folder"
            )
        elif Path(item).is_file():  # a file named whose master would take its place
            dst = output_path(Path(Path(item).name), out_dir, fmt)
            if dst.resolve() == item_r:
                plan.problems.append(f"output {dst} of {item} would overwrite the input {item}")
    if plan.problems:
        return plan
    # An input named twice is read once, with one note (a folder given twice had a
    # note for each of its files: a newcomer's try)
    unique: list[str | os.PathLike] = []
    named: dict[str, str | os.PathLike] = {}  # real path -> as it was first given
    repeated: list[str] = []
    for item in inputs:
        key = os.path.realpath(item)  # "music/link/.." is where the link leads, not music
        if key not in named:
            named[key] = item
            unique.append(item)
            continue
        what = "mastered once" if Path(item).is_file() else "read once"
        first = named[key]
        if os.path.abspath(first) == os.path.abspath(item):
            note = f"{item}: given more than once; {what}"
        else:
            note = f"{item}: the same as {first}, given too; {what}"
        if note not in repeated:
            repeated.append(note)
    audio, plan.records, found_notes = discover(unique, extensions=extensions, exclude=[out_dir])
    plan.notes = repeated + found_notes
    resolved = [f.resolve() for f, _ in audio]
    by_path: dict[Path, Path] = {}
    by_id: dict[tuple[int, int], Path] = {}
    for (f, _), f_r in zip(audio, resolved, strict=True):
        by_path.setdefault(f_r, f)
        if (key := _identity(f)) is not None:
            by_id.setdefault(key, f)
    by_output: dict[Path, Path] = {}
    chosen = _chosen_paths(audio, resolved)
    for i, (f, rel) in enumerate(audio):
        f_r = resolved[i]
        if chosen[f_r] != i:
            first = audio[chosen[f_r]][0]
            if f != first:  # reached again through a link: its own line in the report
                why = f"{SAME_FILE_PREFIX}{first} (reached by another path); mastered once, as that"
                plan.records.append(skipped_record(f, why))
            elif (note := f"{f}: given more than once; mastered once") not in plan.notes:
                plan.notes.append(note)  # once, however many times it was given
            continue
        dst = output_path(rel, out_dir, fmt)
        if (size := len(os.fsencode(dst.name))) > MAX_NAME_BYTES:
            # the name's error at the write read "... is unreadable (File name too
            # long), not a file this tool can replace; move it away" (a newcomer's)
            plan.records.append(
                failed_record(
                    f,
                    f"its master's name ({dst.suffix} in place of {f.suffix}) would be "
                    f"{size} bytes, more than a file name may have ({MAX_NAME_BYTES}): "
                    "rename the source",
                )
            )
            continue
        dst_r = dst.resolve()
        there = _an_input_at(dst, by_path, by_id)
        if there is not None:
            plan.problems.append(f"output {dst} of {f} would overwrite the input {there}")
        elif dst_r in by_output:
            plan.problems.append(
                f"{by_output[dst_r]} and {f} would both be written to {dst}: "
                + _collision_advice(by_output[dst_r], f)
            )
        else:
            by_output[dst_r] = f
            plan.jobs.append(Job(f, dst))
    for dst_r, f in by_output.items():  # a master's name that another's folder needs:
        for folder in dst_r.parents:  # the run makes the folder first, then fails the
            if folder in by_output:  # track as if a file had appeared there (a review)
                plan.problems.append(
                    f"output {folder} of {by_output[folder]} is also the folder of the "
                    f"output of {f}: rename one of them, or master them into separate --out "
                    "folders"
                )
                break
    return plan


def _collision_advice(first: Path, second: Path) -> str:
    """What to do about two inputs that map to one output: two files of one folder
    differ only by extension; files of two folders given apart keep their folders'
    names in OUT when their common folder is given instead (separate runs into the
    same OUT would replace one master by the other)."""
    if first.parent.resolve() == second.parent.resolve():
        return "rename one, or master one of them into another --out"
    try:
        common = Path(os.path.commonpath([first.resolve(), second.resolve()]))
    except ValueError:
        return "master them into separate --out folders, or rename one"
    return (
        f"give their common folder {common} instead (OUT then mirrors it), or master them "
        "into separate --out folders"
    )
