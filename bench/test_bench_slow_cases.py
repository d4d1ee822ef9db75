"""The test suite's long cases (``-m slow``) run with the benches.

The README's test command keeps pytest within its 3-minute budget (issue 10) by
leaving out the tests marked ``slow``: every preset on every whole corpus track, the
fault matrix's variants (a crash and then a signal, a signal to one worker, closed
output streams, a pty's progress display, an album split by a worker crash) and the
2,000-track HTML page. They run here, in a fresh pytest process with the suite's own
configuration, so ``python -m pytest bench`` still runs every test the repository has;
the time they took is recorded, and a failing case fails this benchmark.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.benchmark(group="suite: the long test cases (-m slow)")
def test_the_suites_long_cases_pass(benchmark, goals):
    got: dict[str, object] = {}

    def run() -> None:
        jobs = "2" if (os.cpu_count() or 1) >= 2 else "0"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "tests", "-m", "slow", "-q", "-n", jobs, "-p",
             "no:cacheprovider"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )  # fmt: skip
        got.update(seconds=time.perf_counter() - t0, rc=proc.returncode, out=proc.stdout)

    benchmark.pedantic(run, rounds=1, iterations=1)
    tail = str(got["out"]).strip().splitlines()[-1:] or [""]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", tail[0])}
    benchmark.extra_info.update(slow_cases=counts, slow_cases_s=round(float(got["seconds"]), 1))
    goals.check(
        "the suite's -m slow cases",
        f"{tail[0]} ({got['seconds']:.0f} s)",
        "all pass",
        got["rc"] == 0,
    )
    assert got["rc"] == 0, str(got["out"])[-4000:]
