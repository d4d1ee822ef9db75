"""Compile time of each kernel a first ``master`` runs, by Numba's own timers.

Run in a fresh process with an empty ``NUMBA_CACHE_DIR`` (the bench does:
``python bench/compile_timers.py``): analyses a synthetic 8-second stereo clip with
tempo and masters it to 24-bit through the library's API, one thread, then prints
JSON ``{kernel: {"total_s": ..., "llvm_s": ...}}`` for every top-level kernel that
compiled. ``total_s`` is Numba's ``compiler_lock`` time (type inference, its own
passes, lowering, LLVM and the kernels it calls that compiled with it); ``llvm_s``
the part of it in LLVM. One core does all of it here; a ``master`` run splits it
between its own process and the warm-up (``auralis_batch.warm``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import auralis_batch as ab
    from auralis_batch import kernels
    from auralis_batch.pipeline import master_array
    from tests.signals import drum_pattern

    x = np.ascontiguousarray(drum_pattern(120.0, seconds=8.0, bass=True, pads=True))
    ab.analyze(x, sample_rate=44100, tempo=True)
    master_array(x, 44100, preset="gentle", bit_depth="24")
    timers: dict[str, dict[str, float]] = {}
    for module in (
        kernels.biquad,
        kernels.dynamics,
        kernels.loudness,
        kernels.quantize,
        kernels.spectral,
        kernels.tempo,
        kernels.truepeak,
    ):
        for name, obj in vars(module).items():
            for cres in getattr(obj, "overloads", {}).values():
                t = (cres.metadata or {}).get("timers") or {}
                if t.get("compiler_lock"):
                    row = timers.setdefault(f"{module.__name__.rsplit('.', 1)[1]}.{name}", {})
                    row["total_s"] = row.get("total_s", 0.0) + t["compiler_lock"]
                    row["llvm_s"] = row.get("llvm_s", 0.0) + t.get("llvm_lock", 0.0)
    json.dump(timers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
