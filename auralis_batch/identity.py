"""A file's identity on disk, and moving one without replacing another, in a module
that loads nothing (no NumPy, no decoder): the journal, the plan, the reports and the
cache's fast path use it."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

#: ``os.open`` flags where the platform has them, none where it has not (Windows has
#: neither ``O_NOFOLLOW`` nor ``O_NONBLOCK``; an AttributeError failed every output
#: there: a review), and ``O_BINARY`` where it has it (Windows translates newlines
#: without it).
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_BINARY = getattr(os, "O_BINARY", 0)


def file_identity(path: str | os.PathLike | Path) -> list[int]:
    """``[size, mtime_ns, inode, ctime_ns]``: changes whenever the file is rewritten.

    The status-change time is the one a program cannot set: a file rewritten in place
    with its size kept and its mtime set back (a tagger's "keep the file's time", a
    restore) still gets a new ctime. So does a chmod, a rename or a new hard link of
    the same bytes; those cost a re-read where the callers compare hashes, nothing
    else."""
    return _identity(os.stat(path))


def identity_or_none(path: str | os.PathLike | Path) -> list[int] | None:
    """:func:`file_identity`, or None when the file cannot be stat'ed (gone, unreadable)."""
    try:
        return file_identity(path)
    except OSError:
        return None


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def valid_identity(value: object) -> bool:
    """A :func:`file_identity` as read back from disk: 4 integers, or the 3 (no ctime)
    that earlier builds kept (see :func:`same_identity`)."""
    return isinstance(value, list) and len(value) in (3, 4) and all(type(v) is int for v in value)


def same_identity(stored: list[int], now: list[int]) -> bool:
    """Whether ``now`` (:func:`file_identity`) is the file ``stored`` was taken of. A
    stored identity of an earlier build has no ctime: it is compared on the size,
    mtime and inode it has (as that build did), so an upgrade does not redo a finished
    library; its entry is journaled again with the ctime by the first run that finds
    its track done."""
    return list(stored) == list(now[: len(stored)]) if len(stored) == 3 else stored == now


def sha256_if_same(
    path: str | os.PathLike | Path,
    identity: list[int] | None,
    *,
    check: Callable[[], None] | None = None,
) -> str | None:
    """The SHA-256 of the file at ``path`` if it is the file of ``identity``
    (:func:`file_identity` when it was read) before and after it is hashed, through
    one descriptor; else None, and None when it cannot be read. A file replaced by
    another of the same size and time (a sync tool's rename, a tagger that keeps the
    time) has another inode: its bytes must not be taken for the ones that were read.
    ``check`` is called before each MiB (a track's deadline and stop: it may raise)."""
    if identity is None:
        return None
    try:
        with open(path, "rb") as f:
            if _identity(os.fstat(f.fileno())) != list(identity):
                return None
            h = hashlib.sha256()
            while True:
                if check is not None:
                    check()
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
            same = _identity(os.fstat(f.fileno())) == list(identity)
    except OSError:
        return None
    return h.hexdigest() if same else None


def sha256_file(path: str | os.PathLike | Path, *, follow_links: bool = True) -> str:
    """The file's SHA-256; ``follow_links=False`` refuses a symbolic link (OSError)."""
    flags = os.O_RDONLY | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    h = hashlib.sha256()
    with os.fdopen(os.open(path, flags), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def same_entry(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one directory entry: the same file in the same folder
    under the same name but for case, by identity, so that a bind mount, a second
    mount of a share or a name that differs only in case (a case-insensitive disk) is
    seen for what it is. A hard link is not the same entry, in the same folder or
    another: replacing one name leaves the other's file as it was."""
    real_b = Path(os.path.realpath(b))
    if Path(a).name.casefold() != real_b.name.casefold():
        return False
    try:
        sa, sb = os.lstat(a), os.stat(b)
        pa, pb = os.stat(Path(a).parent), os.stat(real_b.parent)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino, pa.st_dev, pa.st_ino) == (
        sb.st_dev,
        sb.st_ino,
        pb.st_dev,
        pb.st_ino,
    )


def move_no_clobber(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` without ever replacing a file there.

    A hard link fails atomically if ``dst`` exists; where the filesystem has no hard
    links (FAT, some network shares) a check right before the rename stands in.

    Raises
    ------
    FileExistsError
        Something is at ``dst``.
    """
    try:
        os.link(src, dst, follow_symlinks=False)  # a link is moved as the link
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # folders some filesystems can't sync
            raise
    finally:
        os.close(fd)
