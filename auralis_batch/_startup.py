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
"""

from __future__ import annotations

import importlib.abc
import os
import sys

#: Set by the CLI for itself and the workers it starts.
OWN_PROCESS_ENV = "AURALIS_BATCH_OWN_PROCESS"


class _HideScipyLinalg(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "scipy.linalg" or name.startswith("scipy.linalg."):
            raise ModuleNotFoundError(f"{name} is not loaded by auralis-batch", name=name)
        return None


def load_numba_numpy_support() -> None:
    """Import ``numba.np.arraymath`` without ``scipy.linalg`` in a process this package
    owns (:data:`OWN_PROCESS_ENV`); elsewhere, or once imported, do nothing."""
    if os.environ.get(OWN_PROCESS_ENV) != "1":
        return
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    finder = _HideScipyLinalg()
    sys.meta_path.insert(0, finder)
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        sys.meta_path.remove(finder)
