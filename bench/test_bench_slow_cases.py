"""The test suite's long cases (``-m slow``) run with the benches.

The README's test command keeps pytest within its 3-minute budget (issue 10) by
leaving out the tests marked ``slow``: every preset on every whole corpus track, the
fault matrix's variants (a crash and then a signal, a signal to one worker, both
output streams closed, a pty's progress display, an album split by a worker crash)
and the 2,000-track HTML page. They run here, in a fresh pytest process with the
suite's own configuration, so the suite and ``python -m pytest bench`` together run
every test the repository has.

This is a pass/fail check, not a timing: it takes no ``benchmark`` fixture, so
``--benchmark-compare-fail`` never compares its duration (which moves with the
corpus, Chromium and the cases marked), and ``--benchmark-only`` skips it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_suites_long_cases_pass():
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
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    print(f"\nthe suite's -m slow cases: {tail} ({time.perf_counter() - t0:.0f} s)")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
