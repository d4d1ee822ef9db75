"""Where a first run's compilation goes: each kernel's compile time by Numba's timers.

``compile_timers.py`` runs in a fresh process with an empty ``NUMBA_CACHE_DIR``: it
analyses a synthetic clip with tempo and masters it, then reports each kernel's
``compiler_lock`` and LLVM time. The end-to-end goal (the first ``master`` of the
example within 5 s of compilation) is ``test_bench_e2e.test_first_master_compile``;
this says which kernels that time is made of (a kernel's figure includes the helpers
that compiled with it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("compile_timers.py")
#: Kernels below this (s) are summed into one row.
SMALL_S = 0.3


@pytest.mark.benchmark(group="kernels: compile time by kernel (empty Numba cache)")
def test_compile_time_by_kernel(benchmark, goals):
    got: dict[str, dict[str, float]] = {}

    def run() -> None:
        with tempfile.TemporaryDirectory() as numba_cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": numba_cache}
            env.pop("NUMBA_DISABLE_JIT", None)
            proc = subprocess.run(
                [sys.executable, str(SCRIPT)],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
        got.update(json.loads(proc.stdout))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert got, "no kernel compiled"
    benchmark.extra_info["compile_s_by_kernel"] = {
        k: round(v["total_s"], 3) for k, v in sorted(got.items())
    }
    big = sorted(((v["total_s"], v["llvm_s"], k) for k, v in got.items()), reverse=True)
    for total, llvm, name in big:
        if total >= SMALL_S:
            goals.report(f"compile {name}", f"{total:.2f} s (LLVM {llvm:.2f} s)")
    small = [t for t, _, _ in big if t < SMALL_S]
    goals.report("compile, the other kernels", f"{sum(small):.2f} s in {len(small)} kernels")
    goals.assert_met()
