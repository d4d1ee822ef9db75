"""Run a command and write its own resource use: ``python rusage.py OUT.json CMD...``.

The end-to-end benches start every timed command through this small process rather
than straight from pytest. Linux keeps a process's peak RSS across ``exec``
(``signal->maxrss`` takes the old address space's high-water mark), so a command
forked from the bench's pytest process, which holds the peers' libraries and arrays
(about 1 GB by the time the e2e benches run in a full bench session), reported that
gigabyte as its own peak: every e2e row read 1051 MB, the I/O floor's included. Forked
from this interpreter instead, the command's peak RSS is its own (plus this process's
few MB, which a command's own peak far exceeds).

``OUT.json`` gets ``wall_s`` (from the fork to the reaping, without this process's own
start), ``cpu_s`` (user + system, the command's and the children it waited for),
``peak_rss_mb`` and ``minor_faults``. The exit code is the command's (128 + N when a
signal N ended it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: rusage.py OUT.json CMD...", file=sys.stderr)
        return 2
    out, cmd = argv[0], argv[1:]
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd)
    except OSError as exc:  # no JSON: the caller reports this line
        print(f"rusage.py: cannot start {cmd[0]}: {exc}", file=sys.stderr)
        return 127
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen need not wait
    with open(out, "w") as f:
        json.dump(
            {
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
                "minor_faults": usage.ru_minflt,
            },
            f,
        )
    code = proc.returncode
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
