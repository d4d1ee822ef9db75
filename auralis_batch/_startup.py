"""Start-up cost of a process that runs only this package's kernels.

When SciPy is installed, Numba's NumPy support probes for BLAS at import by importing
``scipy.linalg.cython_blas``, and with it all of ``scipy.linalg``: about 0.2 s of
every process that loads the kernels, for BLAS routines no kernel calls (none uses
``np.dot``, ``@`` or ``np.linalg``). :func:`load_numba_numpy_support` imports that
part of Numba with ``scipy.linalg`` out of sight, so the probe finds no BLAS, as it
does on a machine without SciPy.

Only the CLI's process and the batch workers it starts do this (the CLI sets
:data:`OWN_PROCESS_ENV`): in a program that imports the package, other Numba code may
need BLAS, and that process is left as it is.

The CLI also keeps freed memory in its heap (:func:`keep_freed_memory`).
"""

from __future__ import annotations

import gc
import importlib.abc
import os
import sys
import time

#: Set by the CLI for itself and the workers it starts.
OWN_PROCESS_ENV = "AURALIS_BATCH_OWN_PROCESS"

#: Allocations between young-generation collections in the CLI's processes (Python's
#: default is 700).
GC_THRESHOLD = 10_000


class _HideScipyLinalg(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "scipy.linalg" or name.startswith("scipy.linalg."):
            raise ModuleNotFoundError(f"{name} is not loaded by auralis-batch", name=name)
        return None


def load_numba_numpy_support() -> None:
    """Import ``numba.np.arraymath`` without ``scipy.linalg``, and collect garbage less
    often (:data:`GC_THRESHOLD`, then ``gc.freeze``) in a process this package owns
    (:data:`OWN_PROCESS_ENV`), before it loads or compiles kernels; elsewhere, or once
    imported, do nothing."""
    if os.environ.get(OWN_PROCESS_ENV) != "1":
        return
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    # Numba's compiler allocates millions of small objects that live as long as the
    # compile; at Python's default thresholds (700, 10, 10) the collector ran 1,700
    # times during a first run's compile, 1.0-1.4 s of its 12 s of CPU. Compiled
    # kernels hold no Python objects, so fewer collections change nothing else.
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    finder = _HideScipyLinalg()
    sys.meta_path.insert(0, finder)
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        sys.meta_path.remove(finder)
    # What is loaded now (Python, NumPy, Numba: modules that live as long as the
    # process) is left out of every later collection: the full ones during a compile
    # walked it each time (0.3-0.5 s of a first analysis's 11 s of CPU).
    gc.freeze()


def log_stamp() -> str:
    """The time that starts a line of a log (stderr not a terminal): a log appended to
    night after night says which night each line is of."""
    return time.strftime("%Y-%m-%dT%H:%M:%S ")


def one_line_warnings() -> None:
    """A warning (a damaged cache moved aside, say) as one ``[warning]`` line, like the
    CLI's other messages, not Python's file, line number and source line: in the CLI's
    process and its pool workers."""
    import warnings

    dated = not sys.stderr.isatty()  # a log's lines carry their time (a newcomer's cron try)

    def one_line(message, category, filename, lineno, line=None) -> str:
        from .records import printable

        return f"{log_stamp() if dated else ''}[warning] {printable(str(message))}\n"

    warnings.formatwarning = one_line


#: glibc's malloc serves a block of 128 KiB or more (the about 1 MB buffers a pass
#: allocates per block of audio, several per block) with fresh mmap pages, returns
#: them on free, and the kernel zeroes them again for the next: 14 % of a track's
#: time was in the kernel, and memory bandwidth that two workers then fought over.
#: Blocks up to this size stay in the heap instead ...
MMAP_THRESHOLD_BYTES = 32 << 20
#: ... and the heap keeps this much free memory at its top before trimming it. The
#: peak is unchanged (the memory is reused, not added); a reference match of two
#: 3-minute tracks takes a third fewer page faults and about 0.1 s less CPU.
TRIM_THRESHOLD_BYTES = 512 << 20
#: The same settings for the processes the CLI starts (glibc reads it at their start).
GLIBC_TUNABLES = (
    f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD_BYTES}"
    f":glibc.malloc.trim_threshold={TRIM_THRESHOLD_BYTES}"
)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_kept = False


def keep_freed_memory(*, children: bool = False) -> bool:
    """Keep freed blocks up to :data:`MMAP_THRESHOLD_BYTES` in this process's heap, and
    with ``children`` (the CLI) in the processes it starts (workers, the compile
    warm-up) through ``GLIBC_TUNABLES``. Once per process; on glibc only, and not when
    the process started with a malloc threshold of the user's (or ours, inherited).
    True when the settings are in effect."""
    global _kept
    if _kept:
        return True
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if not sys.platform.startswith("linux") or "glibc.malloc.mmap_threshold" in tunables:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc's
    except (OSError, AttributeError):  # musl, or no glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _kept = (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    )
    if _kept and children and not tunables:
        os.environ["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    return _kept
