"""The one place that decides Numba compile options for every kernel.

``cache=True`` writes compiled machine code next to the source (or to
``NUMBA_CACHE_DIR``) so only the first run pays for compilation; ``nogil=True`` lets
threads run kernels in parallel. fastmath stays off: it would break NaN/Inf semantics
that the validation relies on, and no benchmark has shown a gain worth that.
"""

from __future__ import annotations

from numba import njit

JIT_OPTIONS: dict[str, bool] = {"cache": True, "nogil": True, "fastmath": False}


def jit(func=None, **overrides):
    """Compile ``func`` with the project's options: ``@jit`` or ``@jit(inline="always")``."""
    options = {**JIT_OPTIONS, **overrides}
    if func is None:
        return lambda f: njit(**options)(f)
    return njit(**options)(func)
