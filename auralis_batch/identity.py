"""A file's identity on disk, in a module that loads nothing (no NumPy, no decoder):
the journal, the plan and the cache's fast path use it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_identity(path: str | os.PathLike | Path) -> list[int]:
    """``[size, mtime_ns, inode]``: changes whenever the file is rewritten."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def sha256_file(path: str | os.PathLike | Path, *, follow_links: bool = True) -> str:
    """The file's SHA-256; ``follow_links=False`` refuses a symbolic link (OSError)."""
    flags = os.O_RDONLY | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    h = hashlib.sha256()
    with os.fdopen(os.open(path, flags), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
