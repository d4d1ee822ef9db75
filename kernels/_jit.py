"""The one place that decides Numba compile options for every kernel.

Every kernel is compiled with :data:`BASE_OPTIONS`:

* ``cache=True`` writes compiled machine code next to the source (or to
  ``NUMBA_CACHE_DIR``) so only the first run pays for compilation;
* ``nogil=True`` lets threads run kernels in parallel;
* ``fastmath=False``: IEEE 754 arithmetic, evaluated as written;
* Numba's default error model (``"python"``): a float division by zero raises
  ``ZeroDivisionError``.

A kernel may ask for a few named variations of that, and for nothing else. Each is
here with the reason it exists and the kernels that use it; a new one belongs in this
file, beside a benchmark that shows the gain and reference tests that still pass.

``fast="fma"``
    fastmath ``{"contract"}``: ``a * b + c`` may become one fused multiply-add. The
    limiter's interpolator (``dynamics._phases_into``): the tap sums become a chain
    of FMAs. One rounding instead of two per tap changes the last bit against a
    plain loop, the same way on every run and for every block cut.
``fast="sums"``
    fastmath ``{"reassoc", "contract"}``: sums may also be reassociated, so LLVM
    splits them into vector lanes. The sums of the fingerprint's feature kernels
    (``spectral``, ``tempo.band_powers``); their modules say why a different
    summation order is acceptable there.
``ieee_division=True``
    ``error_model="numpy"``: a division by zero does not raise; a float one gives
    ``inf`` / ``nan`` as IEEE 754 says. Without the check per division, branch-free loops
    vectorise; for kernels whose selects already handle ``inf`` and ``nan`` (the
    compressor's log and exp, the limiter's parabola vertex).
``inline=True``
    ``inline="always"``: Numba inlines the function into its callers before
    optimising, so a small named step costs nothing over writing it out in place.
    An inlined function is compiled as part of its caller, with the caller's
    options: give it the same ones, so that its decorator tells the truth.

What costs compile time (measured on the first ``master`` of the example into an empty
cache, 2026-11-30): assigning an array to a slice (``y[:] = x``, ``sos[i] = row``) makes
Numba compile, for its shape-mismatch message, string formatting (``str``, ``join``,
f-strings): about 3 s in a process's first such kernel. ``np.sort`` compiles a quicksort
(about 1 s). Kernels copy element by element instead; together with selecting the loudness
range's percentiles without a sort, that took the first compile from 18 s to 12 s. And
every kernel costs about 0.1-0.2 s to compile however small it is: work on a few values
(filter design, the gating of ten sub-block powers a second) is plain NumPy in
``auralis_batch`` (``filters.design_cascade``, ``meter.gated_loudness``), not a kernel:
1.5 s less again.

Both fastmath sets keep NaN/Inf semantics: NaN and Inf inputs still propagate, and
the meter's and the validation's checks rely on that (a NaN sample reaches the filter
state, where one check of a small array finds it). Not offered: ``nnan`` and ``ninf``
(a NaN or Inf would be undefined behaviour), ``afn`` (approximate libm calls: other
bits), ``fastmath=True`` (all of these), nor ``nsz`` or ``arcp``, which keep NaN/Inf
semantics but have shown no gain in any kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit

#: Options every kernel is compiled with.
BASE_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False}

#: The fastmath flag sets a kernel may ask for by name: ``jit(fast="fma")``.
FASTMATH_SETS: dict[str, frozenset[str]] = {
    "fma": frozenset({"contract"}),
    "sums": frozenset({"reassoc", "contract"}),
}


def jit_options(
    *,
    fast: str | None = None,
    ieee_division: bool = False,
    inline: bool | str = False,
    fastmath: set[str] | frozenset[str] | None = None,
) -> dict[str, Any]:
    """The ``numba.njit`` keyword arguments of one kernel (see the module docstring).

    ``fastmath`` is the older spelling of ``fast``, accepted only with a set equal to
    one of :data:`FASTMATH_SETS` (``jit(fastmath={"reassoc", "contract"})`` is
    ``jit(fast="sums")``). ``inline`` also accepts Numba's ``"always"``.

    Raises
    ------
    ValueError
        An unknown ``fast`` name, a ``fastmath`` set that is not one of
        :data:`FASTMATH_SETS`, or both given.
    """
    options = dict(BASE_OPTIONS)
    if fastmath is not None:
        if fast is not None:
            raise ValueError("give fast= or fastmath=, not both")
        is_set = isinstance(fastmath, (set, frozenset))
        names = [k for k, v in FASTMATH_SETS.items() if is_set and v == frozenset(fastmath)]
        if not names:
            known = ", ".join(f"{k}={set(v)}" for k, v in FASTMATH_SETS.items())
            raise ValueError(
                f"fastmath={fastmath!r} is not one of kernels._jit.FASTMATH_SETS "
                f"({known}): name a new set there"
            )
        fast = names[0]
    if fast is not None:
        if fast not in FASTMATH_SETS:
            raise ValueError(f"fast must be one of {sorted(FASTMATH_SETS)}, got {fast!r}")
        options["fastmath"] = set(FASTMATH_SETS[fast])
    if ieee_division:
        options["error_model"] = "numpy"
    if inline is True or inline == "always":
        options["inline"] = "always"
    elif inline not in (False, "never"):
        raise ValueError(f"inline must be True, False or 'always', got {inline!r}")
    return options


def jit(func: Callable | None = None, **variations: Any) -> Any:
    """Compile ``func`` with the project's options: ``@jit``, or ``@jit(fast="fma")``,
    ``@jit(ieee_division=True, inline=True)``, ... (the names of :func:`jit_options`)."""
    options = jit_options(**variations)
    if func is None:
        return lambda f: njit(**options)(f)
    return njit(**options)(func)
