"""Batch figures end to end, as a user (or a cron job) runs them.

Every figure is one fresh process per run of the console script ``auralis-batch`` (the
executable beside ``sys.executable``) on the bench library of ``make_library.py``
(seven tracks, 30 minutes: Ogg Vorbis, MP3, FLAC 16/24-bit, 44.1/48/96 kHz, one mono),
with ``--quiet`` and a fresh fingerprint cache unless a figure says otherwise. The I/O
floor (``io_floor.py``: soundfile decode plus FLAC 24-bit encode of the same files,
nothing else, one core; with ``--jobs 2`` beside ``-j 2``, two worker processes) runs
in a fresh process in the same rounds. Each command starts through ``rusage.py``,
which times it from its fork to its reaping and takes its peak RSS, CPU time and page
faults from ``os.wait4`` (the process and the workers it reaped), so the figures are
the command's own, not pytest's (see there). ``AURALIS_BENCH_ROUNDS`` sets best-of-N
(default 3; the first-master compile rows run one round each).

Goals (issue 10): ``master -j 1`` at most 1.5x the floor on the default path with a cold
cache and 1.3x with ``--no-cache``, at least 100x realtime per core; ``-j 2`` at least
1.85x ``-j 1``; a re-run over 2,000 finished tracks at most 3 s; warm ``analyze`` at
least 50x cold; ``--help``, ``--version``, ``presets list``, ``cache stats`` at most
0.15 s over a bare interpreter; first ``master`` of the example at most 5 s of
compilation into an empty Numba cache. ``AURALIS_BENCH_LONG=1`` adds peak RSS of a
2-hour 96 kHz file (at most 500 MB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, compare

CLI = Path(sys.executable).with_name("auralis-batch")
IO_FLOOR = Path(__file__).with_name("io_floor.py")
RUSAGE = Path(__file__).with_name("rusage.py")
EXAMPLE = ROOT / "examples" / "example.flac"
ROUNDS = int(os.environ.get("AURALIS_BENCH_ROUNDS", "3"))

pytestmark = pytest.mark.skipif(not CLI.exists(), reason=f"console script not found: {CLI}")


# --------------------------------------------------------------------------- processes
@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    minor_faults: int
    returncode: int
    stdout: str
    stderr: str


def argv(*parts: object) -> list[str]:
    """A command line: paths stay whole, other strings split at spaces (``"-j 1"``)."""
    return [a for p in parts for a in ([str(p)] if isinstance(p, Path) else str(p).split())]


def run_fresh(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Run:
    """Run ``cmd`` in a new process, started through ``rusage.py`` so that its peak
    RSS is its own (see there); wall time, CPU time, peak RSS and minor faults of the
    command (and the children it waited for) from that process's ``os.wait4``."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        usage_file = Path(tmp) / "rusage.json"
        proc = subprocess.run(
            [sys.executable, str(RUSAGE), str(usage_file), *(str(c) for c in cmd)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            check=False,
        )
        out.seek(0)
        err.seek(0)
        if not usage_file.exists():  # the command could not start: say why
            raise AssertionError(f"{cmd[0]}: not run\n{err.read().decode(errors='replace')}")
        usage = json.loads(usage_file.read_text())
        return Run(
            wall_s=usage["wall_s"],
            cpu_s=usage["cpu_s"],
            peak_rss_mb=usage["peak_rss_mb"],
            minor_faults=usage["minor_faults"],
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


@dataclass
class Contender:
    """One command, run in a fresh process per call with a fresh work folder (outputs,
    fingerprint cache) that is removed after the timing (``cleanup``)."""

    name: str
    make_cmd: Callable[[Path], list]
    env: dict[str, str]
    scratch: Path
    expect_rc: int = 0
    check: Callable[[Run, Path], None] | None = None
    make_env: Callable[[Path], dict[str, str]] | None = None
    runs: list[Run] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._work: Path | None = None

    def __call__(self) -> Run:
        self.scratch.mkdir(parents=True, exist_ok=True)
        work = self._work = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.scratch))
        env = self.make_env(work) if self.make_env else self.env
        run = run_fresh(self.make_cmd(work), env, cwd=work)
        if run.returncode != self.expect_rc:
            raise AssertionError(
                f"{self.name}: exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
            )
        if self.check is not None:
            self.check(run, work)
        self.runs.append(run)
        return run

    def cleanup(self) -> None:
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)

    @property
    def peak_rss_mb(self) -> float:
        return max(r.peak_rss_mb for r in self.runs)

    @property
    def best_cpu_s(self) -> float:
        return min(r.cpu_s for r in self.runs)

    @property
    def cores_used(self) -> float:
        """CPU seconds per wall second of the fastest run: about 2 when ``-j 2`` got both
        cores, less when other work on the machine took them."""
        fastest = min(self.runs, key=lambda r: r.wall_s)
        return fastest.cpu_s / fastest.wall_s


def _info(benchmark, key: str, value) -> None:
    benchmark.extra_info[key] = round(value, 4) if isinstance(value, float) else value


def _say(text: str) -> None:
    print(f"\n{text}", flush=True)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def env(scratch) -> dict[str, str]:
    """The user's environment, with the default fingerprint cache redirected into the
    scratch folder (no run reads or fills the user's own cache). The Numba cache is the
    user's (as installed); the ``warm`` fixture fills it before any timing."""
    e = dict(os.environ)
    e["AURALIS_CACHE_DIR"] = str(scratch / "default-fingerprint-cache")
    e.pop("NUMBA_DISABLE_JIT", None)
    return e


def _clip(src: Path, dst: Path, seconds: float) -> None:
    """The first ``seconds`` of ``src`` written in its own format, rate and channels."""
    info = sf.info(src)
    x, sr = sf.read(src, frames=int(seconds * info.samplerate), dtype="float32", always_2d=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    extra = {"compression_level": 0.0, "bitrate_mode": "CONSTANT"} if info.format == "MP3" else {}
    sf.write(dst, x, sr, subtype=info.subtype, format=info.format, **extra)


@pytest.fixture(scope="module")
def warm(library, env, scratch) -> dict[str, float]:
    """Every command the timed runs use, run once on 20 s clips of the library's tracks
    (same formats, rates and channels), so no timed run compiles a kernel: a stale or
    empty Numba cache is filled here. Returns the wall seconds of each warm-up."""
    clips = scratch / "warm-library"
    for t in library.tracks:
        _clip(library.music / t["name"], clips / t["name"], 20.0)
    w = scratch
    cmds = {
        "master (cold cache)": argv(
            CLI, "master", clips, "--out", w / "w1", "--cache-dir", w / "c1"
        ),
        "master --no-cache": argv(CLI, "master", clips, "--out", w / "w2", "--no-cache"),
        "master -j 2": argv(
            CLI, "master", clips, "--out", w / "w3", "--cache-dir", w / "c3", "-j 2"
        ),
        "analyze": argv(CLI, "analyze", clips, "--cache-dir", w / "c4"),
        "master example": argv(CLI, "master", EXAMPLE, "--out", w / "w5", "--cache-dir", w / "c5"),
    }
    took = {}
    for what, cmd in cmds.items():
        run = run_fresh([*cmd, "--quiet"] if "master" in cmd else cmd, env)
        assert run.returncode == 0, f"warm-up {what}: exit {run.returncode}\n{run.stderr[-3000:]}"
        took[what] = run.wall_s
    _say("warm-up (fills the Numba cache): " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    return took


def _floor(library, env, scratch, jobs: int = 1) -> Contender:
    return Contender(
        "io-floor" if jobs == 1 else f"io-floor-j{jobs}",
        lambda work: [sys.executable, IO_FLOOR, work / "out", "--jobs", jobs, *library.files],
        env,
        scratch,
    )


def _master(library, env, scratch, name: str, *flags: str) -> Contender:
    def cmd(work: Path) -> list:
        cache = ["--no-cache"] if "--no-cache" in flags else ["--cache-dir", work / "cache"]
        rest = [f for f in flags if f != "--no-cache"]
        return [CLI, "master", library.music, "--out", work / "out", *cache, "--quiet", *rest]

    def check(run: Run, work: Path) -> None:
        written = list((work / "out").rglob("*.flac"))
        assert len(written) == len(library.tracks), f"{name}: {len(written)} outputs"

    return Contender(name, cmd, env, scratch, check=check)


# --------------------------------------------------------------------------- master
@pytest.mark.benchmark(group="e2e master: realistic library, -j 1")
@pytest.mark.parametrize("path", ["cold cache", "no cache"])
def test_master_j1_against_io_floor(benchmark, goals, library, env, scratch, warm, path):
    """``master -j 1`` on the default path with a fresh fingerprint cache, or with
    ``--no-cache``, alternating with the I/O floor."""
    flags = ("-j", "1") + (("--no-cache",) if path == "no cache" else ())
    ours = _master(library, env, scratch, f"master-j1-{path.replace(' ', '-')}", *flags)
    floor = _floor(library, env, scratch)
    best = compare(benchmark, ours, {"io_floor": floor}, rounds=ROUNDS, name="master")
    audio = library.audio_seconds
    ratio = best["master"] / best["io_floor"]
    realtime = audio / best["master"]
    floor_realtime = audio / best["io_floor"]
    _info(benchmark, "audio_seconds", audio)
    _info(benchmark, "ratio_to_io_floor", ratio)
    _info(benchmark, "x_realtime_per_core", realtime)
    _info(benchmark, "io_floor_x_realtime", floor_realtime)
    _info(benchmark, "peak_rss_mb", ours.peak_rss_mb)
    _info(benchmark, "io_floor_peak_rss_mb", floor.peak_rss_mb)
    _info(benchmark, "cpu_s", ours.best_cpu_s)
    _info(benchmark, "cores_used", ours.cores_used)
    _info(benchmark, "io_floor_cpu_s", floor.best_cpu_s)
    _info(benchmark, "cpu_ratio_to_io_floor", ours.best_cpu_s / floor.best_cpu_s)
    _info(benchmark, "minor_faults", min(r.minor_faults for r in ours.runs))
    limit = 1.5 if path == "cold cache" else 1.3
    label = f"master -j 1, {path}"
    goals.check(
        f"{label}: x I/O floor",
        f"{best['master']:.1f} s vs {best['io_floor']:.1f} s: {ratio:.2f}x",
        f"<= {limit}x",
        ratio <= limit,
    )
    goals.check(
        f"{label}: x realtime per core",
        f"{realtime:.0f}x (floor {floor_realtime:.0f}x)",
        ">= 100x",
        realtime >= 100 if floor_realtime >= 100 else None,
    )
    goals.report(
        f"{label}: CPU time x I/O floor",
        f"{ours.best_cpu_s:.1f} s vs {floor.best_cpu_s:.1f} s: "
        f"{ours.best_cpu_s / floor.best_cpu_s:.2f}x",
    )
    goals.report(
        f"{label}: peak RSS", f"{ours.peak_rss_mb:.0f} MB (floor {floor.peak_rss_mb:.0f} MB)"
    )
    _say(
        f"{label}: {best['master']:.1f} s, {realtime:.0f}x realtime, {ratio:.2f}x the I/O floor "
        f"({best['io_floor']:.1f} s, {floor_realtime:.0f}x); peak RSS {ours.peak_rss_mb:.0f} MB, "
        f"CPU {ours.best_cpu_s:.1f} s"
    )
    goals.assert_met()


@pytest.mark.benchmark(group="e2e master: realistic library, -j 2")
def test_master_j2_against_j1(benchmark, goals, library, env, scratch, warm):
    """``master -j 2`` against ``-j 1``, both on the default path with a fresh cache;
    beside them the I/O floor with one and with two worker processes (largest file
    first, as ``master`` schedules), which says how far this library's work divides
    between two cores of this machine with nothing but decoding and encoding."""
    j2 = _master(library, env, scratch, "master-j2", "-j", "2")
    j1 = _master(library, env, scratch, "master-j1-peer", "-j", "1")
    floor1 = _floor(library, env, scratch)
    floor2 = _floor(library, env, scratch, jobs=2)
    best = compare(
        benchmark, j2, {"j1": j1, "floor_j1": floor1, "floor_j2": floor2}, rounds=ROUNDS, name="j2"
    )
    speedup = best["j1"] / best["j2"]
    floor_speedup = best["floor_j1"] / best["floor_j2"]
    _info(benchmark, "io_floor_speedup_j2_vs_j1", floor_speedup)
    _info(benchmark, "speedup_vs_j1", speedup)
    _info(benchmark, "x_realtime_per_core", library.audio_seconds / best["j2"] / 2)
    _info(benchmark, "peak_rss_mb", j2.peak_rss_mb)
    _info(benchmark, "cores_used", {"j2": j2.cores_used, "j1": j1.cores_used})
    _info(benchmark, "cpu_s", {"j2": j2.best_cpu_s, "j1": j1.best_cpu_s})
    goals.check(
        "master -j 2 vs -j 1",
        f"{best['j2']:.1f} s vs {best['j1']:.1f} s: {speedup:.2f}x "
        f"(cores used {j2.cores_used:.2f} vs {j1.cores_used:.2f})",
        ">= 1.85x",
        speedup >= 1.85,
    )
    goals.report(
        "I/O floor, 2 processes vs 1 (same files)",
        f"{best['floor_j2']:.1f} s vs {best['floor_j1']:.1f} s: {floor_speedup:.2f}x",
    )
    goals.report("master -j 2: peak RSS (largest process)", f"{j2.peak_rss_mb:.0f} MB")
    _say(
        f"-j 2 {best['j2']:.1f} s, -j 1 {best['j1']:.1f} s: {speedup:.2f}x; CPU {j2.best_cpu_s:.1f}"
        f" s vs {j1.best_cpu_s:.1f} s, cores used {j2.cores_used:.2f} vs {j1.cores_used:.2f}"
    )
    goals.assert_met()


@pytest.mark.benchmark(group="e2e master: re-run over 2,000 finished tracks")
def test_rerun_of_finished_library(benchmark, goals, many_short, env, scratch, warm):
    """A second ``master`` over 2,000 mastered tracks: everything is skipped. The finished
    output lives beside the library in the bench cache, so only the first session (or a
    change of the engine or its journal) pays for mastering it."""
    done = many_short.root.with_name(many_short.root.name + "-mastered")
    report = done / "report.json"
    cmd = argv(
        CLI, "master", many_short.music, "--out", done / "out", "--cache-dir", done / "cache"
    )
    cmd += argv("--quiet --report", report)
    prepare = run_fresh(cmd, env)  # masters what is not done yet (all of it, the first time)
    summary = json.loads(report.read_text())["summary"]
    assert summary["failed"] == 0, summary
    n = len(many_short.tracks)

    def check(run: Run, work: Path) -> None:
        s = json.loads(report.read_text())["summary"]
        assert s["skipped"] == n and s["ok"] == 0, f"re-run did work: {s}"

    rerun = Contender("rerun", lambda work: cmd, env, scratch, check=check)
    best = compare(benchmark, rerun, rounds=ROUNDS + 2, name="rerun")
    _info(benchmark, "tracks", n)
    _info(benchmark, "peak_rss_mb", rerun.peak_rss_mb)
    _info(benchmark, "ms_per_track", 1000 * best["rerun"] / n)
    goals.check(
        f"re-run over {n:,} finished tracks",
        f"{best['rerun']:.2f} s",
        "<= 3 s",
        best["rerun"] <= 3.0,
    )
    goals.report(f"re-run over {n:,} tracks: peak RSS", f"{rerun.peak_rss_mb:.0f} MB")
    _say(
        f"re-run over {n} finished tracks: {best['rerun']:.2f} s (preparing took "
        f"{prepare.wall_s:.1f} s); peak RSS {rerun.peak_rss_mb:.0f} MB"
    )
    goals.assert_met()


# --------------------------------------------------------------------------- analyze
@pytest.mark.benchmark(group="e2e analyze: realistic library")
def test_analyze_warm_against_cold(benchmark, goals, library, env, scratch, warm):
    """``analyze`` of the library folder answered from a warm cache, against a cold one."""
    warm_cache = scratch / "analyze-warm-cache"
    cold = Contender(
        "analyze-cold",
        lambda work: [CLI, "analyze", library.music, "--cache-dir", work / "cache"],
        env,
        scratch,
    )
    hot = Contender(
        "analyze-warm",
        lambda work: [CLI, "analyze", library.music, "--cache-dir", warm_cache],
        env,
        scratch,
    )
    fill = run_fresh(hot.make_cmd(scratch), env)  # fills the warm cache
    assert fill.returncode == 0, fill.stderr[-3000:]
    best = compare(benchmark, hot, {"cold": cold}, rounds=ROUNDS, name="warm")
    speedup = best["cold"] / best["warm"]
    _info(benchmark, "speedup_vs_cold", speedup)
    _info(benchmark, "peak_rss_mb", hot.peak_rss_mb)
    _info(benchmark, "cold_peak_rss_mb", cold.peak_rss_mb)
    goals.check(
        "analyze warm vs cold",
        f"{best['warm']:.2f} s vs {best['cold']:.1f} s: {speedup:.1f}x",
        ">= 50x",
        speedup >= 50,
    )
    _say(f"analyze: warm {best['warm']:.2f} s, cold {best['cold']:.1f} s: {speedup:.1f}x")
    goals.assert_met()


# --------------------------------------------------------------------------- start-up
STARTUP = {
    "--help": ["--help"],
    "--version": ["--version"],
    "presets list": ["presets", "list"],
    "cache stats": ["cache", "stats"],
}


@pytest.mark.benchmark(group="e2e start-up")
@pytest.mark.parametrize("command", list(STARTUP))
def test_startup_over_bare_python(benchmark, goals, env, scratch, command):
    """A command that computes nothing, against ``python -c pass``, best of 3N."""
    args = STARTUP[command]
    probe = run_fresh([CLI, *args], env)
    if probe.returncode != 0:
        goals.skip(f"{command}: over bare python", f"not measured: exits {probe.returncode}")
    ours = Contender(command.replace(" ", "-"), lambda work: [CLI, *args], env, scratch)
    bare = Contender("bare-python", lambda work: [sys.executable, "-c", "pass"], env, scratch)
    best = compare(benchmark, ours, {"bare_python": bare}, rounds=3 * ROUNDS, name="command")
    over = best["command"] - best["bare_python"]
    _info(benchmark, "over_bare_python_s", over)
    _info(benchmark, "peak_rss_mb", ours.peak_rss_mb)
    goals.check(
        f"{command}: over bare python",
        f"{best['command'] * 1e3:.0f} ms vs {best['bare_python'] * 1e3:.0f} ms: "
        f"+{over * 1e3:.0f} ms",
        "<= +150 ms",
        over <= 0.15,
    )
    goals.assert_met()


# --------------------------------------------------------------------------- first call
@pytest.mark.benchmark(group="e2e first master: compile into an empty Numba cache")
@pytest.mark.parametrize("flags", ["default", "--no-cache", "--reference"])
def test_first_master_compile(benchmark, goals, env, scratch, warm, flags):
    """``master`` of the bundled example with an empty ``NUMBA_CACHE_DIR`` (every kernel
    the command uses compiles and is written), against the same run with the cache the
    warm-up filled; compilation is the difference. The three paths compile different
    sets: the meter alone (a fixed preset without the cache), meter and fingerprint
    (the default), and a reference match (its matching EQ, the reference's analysis)."""
    extra = {
        "default": [],
        "--no-cache": ["--no-cache"],
        "--reference": ["--reference", EXAMPLE],
    }[flags]

    def cmd(work: Path) -> list:
        cache = [] if "--no-cache" in extra else ["--cache-dir", work / "cache"]
        return [CLI, "master", EXAMPLE, "--out", work / "out", *cache, *extra, "--quiet"]

    first = Contender(
        "first-master",
        cmd,
        env,
        scratch,
        make_env=lambda work: {**env, "NUMBA_CACHE_DIR": str(work / "numba")},
    )
    cached = Contender("cached-master", cmd, env, scratch)
    best = compare(benchmark, first, {"cached": cached}, rounds=1, name="first")
    compile_s = best["first"] - best["cached"]
    compile_cpu = first.best_cpu_s - cached.best_cpu_s
    _info(benchmark, "compile_s", compile_s)
    _info(benchmark, "compile_cpu_s", compile_cpu)
    _info(benchmark, "peak_rss_mb", first.peak_rss_mb)
    goals.check(
        f"first master of the example ({flags}): compile",
        f"{compile_s:.1f} s ({best['first']:.1f} s vs {best['cached']:.1f} s cached; "
        f"CPU +{compile_cpu:.1f} s)",
        "<= 5 s",
        compile_s <= 5.0,
    )
    _say(f"first master ({flags}): {best['first']:.1f} s, cached {best['cached']:.1f} s")
    goals.assert_met()


# --------------------------------------------------------------------------- memory
@pytest.mark.skipif(
    not os.environ.get("AURALIS_BENCH_LONG"), reason="set AURALIS_BENCH_LONG=1 (a 2-hour file)"
)
@pytest.mark.benchmark(group="e2e bounded memory: 2-hour 96 kHz stereo FLAC")
def test_two_hour_96k_peak_rss(benchmark, goals, env, scratch, warm):
    """Peak RSS of ``master`` (default path, cold cache) on a 2-hour 96 kHz stereo file."""
    src = scratch / "long" / "long.flac"
    src.parent.mkdir(exist_ok=True)
    sr, block = 96000, 96000 * 60
    rng = np.random.default_rng(0)
    with sf.SoundFile(src, "w", sr, 2, "PCM_16", format="FLAC") as f:
        t = np.arange(block) / sr
        base = 0.25 * np.sin(2 * np.pi * 220 * t)
        for minute in range(120):
            x = base * (0.5 + 0.5 * np.sin(minute)) + 0.01 * rng.standard_normal(block)
            f.write(np.stack([x, x * 0.9], axis=1))

    def cmd(work: Path) -> list[str]:
        return argv(CLI, "master", src, "--out", work / "out", "--cache-dir", work / "c", "-j 1 -q")

    long = Contender("long", cmd, env, scratch)
    best = compare(benchmark, long, rounds=1, name="long")
    _info(benchmark, "peak_rss_mb", long.peak_rss_mb)
    goals.check(
        "2-hour 96 kHz FLAC: peak RSS",
        f"{long.peak_rss_mb:.0f} MB (mastered in {best['long']:.0f} s)",
        "<= 500 MB",
        long.peak_rss_mb <= 500,
    )
    goals.assert_met()
