"""A file's identity on disk, in a module that loads nothing (no NumPy, no decoder):
the journal, the plan and the cache's fast path use it."""

from __future__ import annotations

import os
from pathlib import Path


def file_identity(path: str | os.PathLike | Path) -> list[int]:
    """``[size, mtime_ns, inode]``: changes whenever the file is rewritten."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]
