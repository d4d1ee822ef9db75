"""Shared bench inputs and the one way contenders are measured.

* ``track``: one 4-minute stereo 44.1 kHz track decoded once per session (the corpus
  track loyalists.ogg looped, or a synthesised mix without the corpus);
* ``library`` / ``many_short``: the bench libraries of ``make_library.py`` (a realistic
  30-minute library; 2,000 short tracks), built once into a cache folder; tests that use
  them skip when they cannot be built (no corpus);
* :func:`compare`: the only measurement path. The subject is timed by pytest-benchmark
  (its stats are what ``--benchmark-autosave`` stores and ``--benchmark-compare``
  checks); its peers run in the untimed ``setup`` of each round, so every round runs
  all contenders in turn and machine load hits them alike. Best-of-N seconds of each
  contender and the subject's time ratio to each peer go into ``extra_info``;
* ``goals``: the issue's goals, recorded in ``extra_info`` and printed as one table at
  the end of the session (met, MISSED or reported), then asserted (unless
  ``AURALIS_BENCH_GOALS=report``).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.signals: the synthetic drum mix

SR = 44100
CORPUS = Path(os.environ.get("AURALIS_CORPUS") or ROOT.parent / "shared" / "corpus")


@pytest.fixture(scope="session")
def track() -> np.ndarray:
    """``(2, 240 * 44100)`` float64, C-contiguous."""
    n = 240 * SR
    src = CORPUS / "loyalists.ogg"
    if src.exists():
        import soundfile as sf

        x, sr = sf.read(src, always_2d=True)
        assert sr == SR
        x = np.tile(x.T, (1, n // x.shape[0] + 1))[:, :n]
    else:
        from tests.signals import drum_pattern

        x = drum_pattern(124.0, seconds=240.0, bass=True, pads=True)
    return np.ascontiguousarray(x * (0.5 / np.abs(x).max()))


# --------------------------------------------------------------------------- libraries
def _library(build):
    from make_library import LibraryUnavailable

    try:
        return build(log=lambda msg: print(msg, file=sys.stderr))
    except LibraryUnavailable as exc:
        pytest.skip(f"bench library unavailable: {exc}")


@pytest.fixture(scope="session")
def library():
    """The realistic library (``make_library.build_library``)."""
    from make_library import build_library

    return _library(build_library)


@pytest.fixture(scope="session")
def many_short():
    """2,000 short tracks (``make_library.build_many_short``)."""
    from make_library import build_many_short

    return _library(build_many_short)


# --------------------------------------------------------------------------- measuring
def compare(
    benchmark,
    subject: Callable[[], object],
    peers: dict[str, Callable[[], object]] | None = None,
    *,
    rounds: int,
    warmup_rounds: int = 0,
    name: str = "subject",
) -> dict[str, float]:
    """Best wall seconds of ``subject`` (as ``name``) and of each peer, run in turn.

    Each round runs every peer (timed here, in pytest-benchmark's untimed ``setup``),
    then the subject (timed by pytest-benchmark, and here too, so the figures exist
    with ``--benchmark-disable`` as well). A contender with a ``cleanup()`` method has
    it called after each of its runs, outside the timing. Records in
    ``benchmark.extra_info``: ``best_s`` per contender, ``time_ratio`` of the subject to
    each peer (< 1: the subject is faster), rounds, and the 1-minute load average
    before and after.
    """
    peers = dict(peers or {})
    samples: dict[str, list[float]] = {name: [], **{k: [] for k in peers}}

    def timed(key: str, fn: Callable[[], object]) -> object:
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
        # a fresh process's own wall time (bench/rusage.py), without its launch
        samples[key].append(getattr(result, "wall_s", elapsed))
        return result

    def cleanup(fn: Callable[[], object]) -> None:
        getattr(fn, "cleanup", lambda: None)()

    def setup() -> None:
        for key, fn in peers.items():
            timed(key, fn)
            cleanup(fn)

    load_before = os.getloadavg()[0]
    benchmark.pedantic(
        lambda: timed(name, subject),
        setup=setup,
        teardown=lambda: cleanup(subject),  # untimed, after each round
        rounds=rounds,
        warmup_rounds=warmup_rounds,
        iterations=1,
    )
    cleanup(subject)  # --benchmark-disable runs no teardown
    best = {k: min(v[warmup_rounds:] or v) for k, v in samples.items()}
    info = benchmark.extra_info
    info["best_s"] = {k: round(v, 6) for k, v in best.items()}
    if peers:
        info["time_ratio"] = {k: round(best[name] / best[k], 4) for k in peers}
    info["rounds"] = rounds
    info["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return best


def fmt_s(seconds: float) -> str:
    """A duration with a unit that keeps three significant digits or so."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.2f} µs"


def benchmark_min(benchmark) -> float | None:
    """Best round of a plain ``benchmark(...)`` call (None with --benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.min


# --------------------------------------------------------------------------- goals
@dataclass
class GoalRow:
    group: str
    figure: str
    measured: str
    goal: str
    met: bool | None  # None: reported, no goal


_ROWS: list[GoalRow] = []
_SESSION: dict[str, object] = {}


@dataclass
class Goals:
    """Goal figures of one benchmark: recorded as they are measured, asserted last."""

    benchmark: object
    rows: list[GoalRow] = field(default_factory=list)

    def check(self, figure: str, measured: str, goal: str, met: bool | None) -> None:
        row = GoalRow(self.benchmark.group or "", figure, measured, goal, met)
        self.rows.append(row)
        _ROWS.append(row)
        self.benchmark.extra_info.setdefault("goals", {})[figure] = {
            "measured": measured,
            "goal": goal,
            "met": met,
        }

    def speedup(
        self, figure: str, best: dict[str, float], *, ours: str, peer: str, at_least: float | None
    ) -> float:
        """``best[peer] / best[ours]`` as a goal (``at_least``) or reported (None)."""
        x = best[peer] / best[ours]
        self.benchmark.extra_info.setdefault("speedup", {})[peer] = round(x, 3)
        self.check(
            figure,
            f"{fmt_s(best[ours])} vs {fmt_s(best[peer])}: {x:.2f}x",
            "reported" if at_least is None else f">= {at_least:g}x",
            None if at_least is None else x >= at_least,
        )
        return x

    def best_within(self, figure: str, limit_s: float) -> None:
        """The best round of a plain ``benchmark(fn)`` as a goal (nothing with
        ``--benchmark-disable``, which times nothing)."""
        best = benchmark_min(self.benchmark)
        if best is not None:
            self.check(figure, fmt_s(best), f"<= {fmt_s(limit_s)}", best <= limit_s)

    def report(self, figure: str, measured: str) -> None:
        self.check(figure, measured, "reported", None)

    def skip(self, figure: str, why: str) -> None:
        """Skip the benchmark, with a row in the table saying why."""
        _ROWS.append(GoalRow(self.benchmark.group or "", figure, why, "", None))
        pytest.skip(why)

    def assert_met(self) -> None:
        """Fail on a missed goal (``AURALIS_BENCH_GOALS=report``: only the table says so,
        e.g. when a run is for ``--benchmark-compare`` regression tracking)."""
        missed = [f"{r.figure}: {r.measured} (goal {r.goal})" for r in self.rows if r.met is False]
        if missed and os.environ.get("AURALIS_BENCH_GOALS", "assert") != "report":
            pytest.fail("goal missed: " + "; ".join(missed), pytrace=False)


@pytest.fixture
def goals(benchmark) -> Goals:
    return Goals(benchmark)


def pytest_sessionstart(session) -> None:
    _SESSION["load_start"] = os.getloadavg()
    _SESSION["t_start"] = time.time()
    # the peers were installed by pip, byte-code included; so is a user's copy
    from tests.bytecode import write_package_bytecode

    write_package_bytecode()


def pytest_terminal_summary(terminalreporter) -> None:
    if not _ROWS:
        return
    tr = terminalreporter
    tr.section("bench goals")
    load_end = os.getloadavg()
    load_start = _SESSION.get("load_start", (math.nan,) * 3)
    tr.write_line(
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_start)} at start, "
        f"{'/'.join(f'{x:.1f}' for x in load_end)} at end; "
        f"{(time.time() - float(_SESSION.get('t_start', time.time()))) / 60:.1f} min"
    )
    widths = [
        max(len(getattr(r, k)) for r in _ROWS) for k in ("group", "figure", "measured", "goal")
    ]
    widths = [min(w, 60) for w in widths]
    for r in _ROWS:
        status = {True: "met", False: "MISSED", None: "-"}[r.met]
        cells = (r.group, r.figure, r.measured, r.goal)
        tr.write_line(
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + status
        )
