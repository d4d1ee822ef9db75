"""A first run compiles the render's kernels in a second process (``auralis_batch.warm``)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralis_batch import warm
from auralis_batch._startup import OWN_PROCESS_ENV
from auralis_batch.batch import run_master
from auralis_batch.settings import RunSettings

from .conftest import music_like

# The specialisations each kernel of the package holds after some work, per process.
SIGNATURES = """
import json, sys
import numpy as np

def signatures():
    from numba.core.registry import CPUDispatcher
    out = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith("auralis_batch.kernels."):
            continue
        for attr, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.signatures:
                out[name + "." + attr] = sorted(str(s) for s in obj.signatures)
    return out

what = sys.argv[1]
snap = {}
if what == "warm":
    from auralis_batch.warm import compile_render
    compile_render()
    snap["warm"] = signatures()
elif what == "analysis-warm":  # what a -j N run compiles before its pool starts
    from auralis_batch.warm import compile_analysis
    compile_analysis(tempo=True, fingerprint=True)
    snap["analysis-warm"] = signatures()
elif what == "stages":  # each stage alone, in a process of its own
    from auralis_batch.warm import compile_render
    compile_render(stages=tuple(sys.argv[2].split(",")))
    snap["stages"] = signatures()
else:
    from auralis_batch import analyze_file, load_preset, master_array
    for path in sys.argv[2:]:
        analyze_file(path, tempo=True)
    snap["analysis"] = signatures()
    import soundfile as sf
    for path in sys.argv[2:4]:  # stereo and mono; the kernels' types depend on neither
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        master_array(audio.T, sr, preset=load_preset("punchy"), bit_depth="24")
    snap["master"] = signatures()
print("SIGS", json.dumps(snap))
"""


def _signatures(*args: str, numba_cache: Path | None = None) -> dict:
    env = None
    if numba_cache is not None:  # compiled for the signatures only: unoptimised, faster
        env = {**os.environ, "NUMBA_CACHE_DIR": str(numba_cache), "NUMBA_OPT": "0"}
    res = subprocess.run(
        [sys.executable, "-c", SIGNATURES, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("SIGS ")), None)
    assert line is not None, res.stderr[-3000:]
    return json.loads(line[len("SIGS ") :])


def test_the_warm_up_compiles_what_the_render_uses_and_nothing_the_analysis_compiles_otherwise(
    tmp_path,
):
    stereo, mono, hires = tmp_path / "stereo.flac", tmp_path / "mono.wav", tmp_path / "96k.flac"
    sf.write(stereo, music_like(seconds=3.0).T, 44100)
    sf.write(mono, music_like(seconds=3.0)[0], 48000)
    sf.write(hires, music_like(seconds=3.0, sample_rate=96000).T, 96000)  # tempo decimates
    warm_sigs = _signatures("warm")["warm"]
    run = _signatures("run", str(stereo), str(mono), str(hires))
    analysis, master = run["analysis"], run["master"]
    render = {
        k: sorted(set(v) - set(analysis.get(k, ())))
        for k, v in master.items()
        if set(v) - set(analysis.get(k, ()))
    }
    assert {
        "auralis_batch.kernels.dynamics.limiter",
        "auralis_batch.kernels.quantize.quantize_into",
    } <= set(render)  # the test sees the render
    assert "auralis_batch.kernels.biquad.sos_filter_into" in analysis  # and a shared kernel
    # every specialisation the render needs beyond the analysis's is compiled by the
    # warm-up, so the render compiles nothing after waiting for it ...
    missing = {k: v for k, v in render.items() if not set(v) <= set(warm_sigs.get(k, ()))}
    assert missing == {}
    # ... and a kernel both use has the same specialisations in both: the two processes
    # never write different entries of one kernel's cache index at the same time
    shared = set(warm_sigs) & set(analysis)
    assert {k: (warm_sigs[k], analysis[k]) for k in shared if warm_sigs[k] != analysis[k]} == {}


def test_the_runs_analysis_compile_is_what_a_workers_analysis_uses(tmp_path):
    """A ``-j N`` run compiles the analysis's kernels before its pool starts
    (``warm.compile_analysis``), beside the warm-up's render: its specialisations must
    be the ones a worker's analysis of a 44.1 or 48 kHz track uses (else every worker
    compiles its own again), and those of a kernel the render's warm-up compiles at the
    same time must be the warm-up's (one cache index, written by both)."""
    stereo, mono = tmp_path / "stereo.flac", tmp_path / "mono.wav"
    # long enough for the tempo estimator to run to its end (a 6-s warm-up compiled
    # 3 of its 20 kernels, and every worker the rest: a review)
    sf.write(stereo, music_like(seconds=9.0).T, 44100)
    sf.write(mono, music_like(seconds=9.0)[0], 48000)
    first = _signatures("analysis-warm")["analysis-warm"]
    analysis = _signatures("run", str(stereo), str(mono))["analysis"]
    assert "auralis_batch.kernels.loudness.kweighted_subblock_power" in first
    assert "auralis_batch.kernels.tempo.onset_envelopes" in first
    assert "auralis_batch.kernels.tempo.tempo_from_acf" in analysis
    assert "auralis_batch.kernels.tempo.tempo_from_acf" in first
    assert {k: v for k, v in analysis.items() if not set(v) <= set(first.get(k, ()))} == {}
    render = _signatures("warm")["warm"]
    shared = set(first) & set(render)
    assert {k: (first[k], render[k]) for k in shared if first[k] != render[k]} == {}


@pytest.mark.slow
def test_each_render_stage_compiles_kernels_of_its_own(tmp_path):
    """Any split of the stages between the run and the warm-up compiles what the whole
    warm-up does, and no kernel in both: each stage alone, in an empty cache of its
    own (a kernel loaded from a cache does not list the helpers it was compiled with),
    two processes at a time. Slow (9 s on a clean clone: five empty-cache compiles);
    run it with ``-m slow`` after changing warm.STAGES or a kernel's helpers; the
    first-compile benchmark catches what a broken split costs."""
    from concurrent.futures import ThreadPoolExecutor

    def alone(stage: str) -> dict:
        return _signatures("stages", stage, numba_cache=tmp_path / stage)["stages"]

    with ThreadPoolExecutor(max_workers=2) as pool:
        whole = pool.submit(lambda: _signatures("warm", numba_cache=tmp_path / "all")["warm"])
        each = dict(zip(warm.STAGES, pool.map(alone, warm.STAGES), strict=True))
    for a, b in itertools.combinations(warm.STAGES, 2):
        assert set(each[a]).isdisjoint(each[b]), (a, b)
    assert {k: v for sigs in each.values() for k, v in sigs.items()} == whole.result()
    assert set(warm.METER_ONLY_SHARE) | set(warm.FINGERPRINT_SHARE) <= set(warm.STAGES)


def test_start_does_nothing_for_a_program_that_imports_the_package(monkeypatch):
    monkeypatch.delenv(OWN_PROCESS_ENV, raising=False)
    monkeypatch.setattr("auralis_batch._kernels_compiled", lambda kernels=(): False)
    assert warm.start() is None


def test_start_does_nothing_when_the_render_kernels_are_compiled(monkeypatch):
    monkeypatch.setenv(OWN_PROCESS_ENV, "1")
    monkeypatch.setattr("auralis_batch._kernels_compiled", lambda kernels=(): True)
    assert warm.start() is None


@pytest.mark.parametrize(
    ("own", "compiled", "settings", "expected"),
    [
        ("1", False, RunSettings(), [{"tempo": False, "fingerprint": True}]),
        (
            "1",
            False,
            RunSettings(use_cache=False, tempo=True),
            [{"tempo": True, "fingerprint": True}],
        ),
        ("1", False, RunSettings(use_cache=False), [{"tempo": False, "fingerprint": False}]),
        ("1", True, RunSettings(), []),  # compiled: nothing to do
        (None, False, RunSettings(), []),  # a program's own process: left alone
    ],
)
def test_a_run_with_workers_compiles_the_analysis_once_before_its_pool(
    monkeypatch, own, compiled, settings, expected
):
    """Each -j N worker compiled the analysis's kernels at once on a first run (16.3 s
    against 13.0 s at -j 1 for the corpus); the run compiles them first, once, with the
    kernels its analysis needs, in the CLI's own process only."""
    from auralis_batch import batch

    if own is None:
        monkeypatch.delenv(OWN_PROCESS_ENV, raising=False)
    else:
        monkeypatch.setenv(OWN_PROCESS_ENV, own)
    monkeypatch.setattr("auralis_batch._kernels_compiled", lambda kernels=(): compiled)
    calls: list[dict] = []

    def apart(*, check, **kw):
        assert check is None
        calls.append(kw)

    monkeypatch.setattr(warm, "compile_analysis_apart", apart)
    batch._compile_analysis_first(settings)
    assert calls == expected


def test_a_stop_while_the_analysis_compiles_apart_kills_the_child(monkeypatch):
    """``compile_analysis_apart`` waits in Python (a run's signal handler raises there)
    and kills its child on the way out, whatever raised."""
    import signal

    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop

    monkeypatch.setattr(warm, "_child_code", lambda entry: "import time; time.sleep(60)")
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen(*args, **kw):
        started.append(real_popen(*args, **kw))
        return started[-1]

    monkeypatch.setattr(warm.subprocess, "Popen", popen)
    old = signal.signal(signal.SIGALRM, stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Stop):
            warm.compile_analysis_apart(tempo=True, fingerprint=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(started) == 1
    assert started[0].returncode == -signal.SIGKILL


def test_the_analysis_compile_apart_passes_what_the_run_needs(monkeypatch):
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(args, **kw):
        seen.append(args[3:])
        return real_popen([sys.executable, "-c", "pass"], **kw)

    monkeypatch.setattr(warm.subprocess, "Popen", popen)
    warm.compile_analysis_apart(tempo=False, fingerprint=True)
    assert len(seen) == 1 and seen[0][:3] == [str(os.getpid()), "-", "fingerprint"]
    assert not os.path.exists(seen[0][3])  # the child's file goes with it


def test_wait_returns_when_the_process_has_ended(monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    monkeypatch.setenv(warm.WARM_PID_ENV, f"{os.getpid()}:{proc.pid}")
    t0 = time.monotonic()
    threading_reaper = warm.Warmup(proc)  # reaps it, as the run does
    warm.wait(limit_s=30)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ProcessLookupError):  # gone (proc.poll() can answer None while
        os.kill(proc.pid, 0)  # the reaper thread still holds Popen's waitpid lock)
    assert warm.WARM_PID_ENV not in os.environ
    threading_reaper.stop()


def test_wait_gives_up_at_its_limit(monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monkeypatch.setenv(warm.WARM_PID_ENV, f"{os.getpid()}:{proc.pid}")
        t0 = time.monotonic()
        warm.wait(limit_s=0.3)
        assert time.monotonic() - t0 < 5 and proc.poll() is None
        # a process the run did not start (a cluster's worker) does not wait at all
        monkeypatch.setenv(warm.WARM_PID_ENV, f"{os.getpid() + 999999}:{proc.pid}")
        t0 = time.monotonic()
        warm.wait(limit_s=30)
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait()


def test_a_run_with_a_warm_up_waits_for_it_and_leaves_nothing_running(
    tmp_path, monkeypatch, write_audio
):
    """The warm-up really runs (the kernels load from the cache, so it is quick): the
    master is the one a run without it writes, bit for bit, and the process is gone."""
    write_audio("lib/a.flac", music_like(seconds=2.0))
    settings = RunSettings(preset="gentle", use_cache=False)
    plain = run_master([tmp_path / "lib"], tmp_path / "plain", settings, n_jobs=1)
    assert plain.summary["failed"] == 0

    started: list[warm.Warmup] = []
    real_start = warm.start

    def spy(bit_depth: str = "24", **kw) -> warm.Warmup | None:
        w = real_start(bit_depth, **kw)
        if w is not None:
            started.append(w)
        return w

    monkeypatch.setenv(OWN_PROCESS_ENV, "1")
    monkeypatch.setattr("auralis_batch._kernels_compiled", lambda kernels=(): False)
    monkeypatch.setattr(warm, "start", spy)
    waited: list[str | None] = []
    real_wait = warm.wait
    monkeypatch.setattr(
        warm,
        "wait",
        lambda **kw: (waited.append(os.environ.get(warm.WARM_PID_ENV)), real_wait(**kw)),
    )
    res = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    assert res.summary["failed"] == 0
    # a fixed preset without the cache: the run compiles the EQ itself, then waits
    assert len(started) == 1
    assert waited == [f"{os.getpid()}:{started[0].proc.pid}:{','.join(warm.METER_ONLY_SHARE)}"]
    assert started[0].proc.poll() is not None  # ended, and reaped
    assert warm.WARM_PID_ENV not in os.environ
    got, _ = sf.read(tmp_path / "out" / "a.flac", dtype="int32")
    expected, _ = sf.read(tmp_path / "plain" / "a.flac", dtype="int32")
    np.testing.assert_array_equal(got, expected)


def test_a_reference_run_starts_the_warm_up_before_analysing_the_reference(
    tmp_path, monkeypatch, write_audio
):
    """The reference is analysed before the batch starts: the warm-up starts before
    it, and the batch adopts that warm-up (one process, ended with the run)."""
    from typer.testing import CliRunner

    from auralis_batch import analysis
    from auralis_batch.cli import app

    write_audio("lib/a.flac", music_like(seconds=2.0))
    ref = write_audio("ref.flac", music_like(seconds=3.0, seed=3))
    events: list[str] = []
    real_start, real_analyze = warm.start, analysis.analyze_file

    shares: list[tuple[str, ...]] = []

    def spy_start(bit_depth: str = "24", **kw) -> warm.Warmup | None:
        w = real_start(bit_depth, **kw)
        events.append(f"start {w.proc.pid if w else None}")
        shares.append(kw.get("run_share", ()))
        return w

    def spy_analyze(path, **kw):
        events.append(f"analyse {Path(path).name}")
        return real_analyze(path, **kw)

    monkeypatch.setenv(OWN_PROCESS_ENV, "1")
    monkeypatch.setattr("auralis_batch._kernels_compiled", lambda kernels=(): False)
    monkeypatch.setattr(warm, "start", spy_start)
    monkeypatch.setattr(analysis, "analyze_file", spy_analyze)
    args = ["master", str(tmp_path / "lib"), "--reference", str(ref), "-j", "1", "-q"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert events[0].startswith("start ") and events[1] == "analyse ref.flac"
    pids = {e for e in events if e.startswith("start ")}
    assert len(pids) == 1 and "start None" not in pids  # adopted, not a second one
    assert shares == [warm.FINGERPRINT_SHARE] * 2  # -j 1: the CLI's and the batch's agree
    assert warm.Warmup.current is None and warm.WARM_PID_ENV not in os.environ


@pytest.mark.parametrize(("n_jobs", "use_cache", "share"), [
    (1, False, warm.METER_ONLY_SHARE),
    (1, True, warm.FINGERPRINT_SHARE),
    (2, False, ()),  # each worker would compile the run's share: the warm-up does it all
])  # fmt: skip
def test_the_run_keeps_a_share_of_the_compile_only_with_one_job(
    tmp_path, monkeypatch, write_audio, n_jobs, use_cache, share
):
    write_audio("lib/a.flac", music_like(seconds=1.0))
    write_audio("lib/b.flac", music_like(seconds=1.0, seed=2))
    shares: list[tuple[str, ...]] = []

    def spy(bit_depth: str = "24", *, run_share: tuple[str, ...] = ()) -> None:
        shares.append(run_share)
        return None  # no process: the share is what is checked

    monkeypatch.setattr(warm, "start", spy)
    settings = RunSettings(preset="gentle", use_cache=use_cache, cache_dir=str(tmp_path / "c"))
    res = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=n_jobs)
    assert res.summary["failed"] == 0
    assert shares == [share]


def test_a_warm_up_started_for_a_reference_ends_when_the_run_is_refused(
    tmp_path, monkeypatch, write_audio
):
    """OUT is the input folder (exit 2 after the reference was analysed): the warm-up
    the CLI started for the reference ends with the refusal, not later."""
    from typer.testing import CliRunner

    from auralis_batch.cli import app

    write_audio("lib/a.flac", music_like(seconds=2.0))
    ref = write_audio("ref.flac", music_like(seconds=3.0, seed=3))
    started: list[warm.Warmup] = []
    real_start = warm.start

    def spy(bit_depth: str = "24", **kw) -> warm.Warmup | None:
        w = real_start(bit_depth, **kw)
        started.append(w)
        return w

    monkeypatch.setenv(OWN_PROCESS_ENV, "1")
    monkeypatch.setattr("auralis_batch._kernels_compiled", lambda kernels=(): False)
    monkeypatch.setattr(warm, "start", spy)
    lib = str(tmp_path / "lib")
    res = CliRunner().invoke(app, ["master", lib, "--out", lib, "--reference", str(ref), "-q"])
    assert res.exit_code == 2, res.output
    assert "--reference" not in res.output  # refused for its --out, after the analysis
    assert len(started) == 1 and started[0] is not None
    assert started[0].proc.poll() is not None  # ended, and reaped
    assert warm.Warmup.current is None and warm.WARM_PID_ENV not in os.environ


def test_the_warm_up_imports_the_package_of_its_run_whatever_the_folder(tmp_path, monkeypatch):
    """Started from a folder that holds another ``auralis_batch`` (a checkout, with the
    package installed), the warm-up imports the run's package and finishes."""
    decoy = tmp_path / "checkout" / "auralis_batch"
    decoy.mkdir(parents=True)
    marker = tmp_path / "decoy-imported"
    (decoy / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise ImportError('the checkout')\n"
    )
    monkeypatch.chdir(decoy.parent)
    monkeypatch.setenv(OWN_PROCESS_ENV, "1")
    monkeypatch.setattr("auralis_batch._kernels_compiled", lambda kernels=(): False)
    monkeypatch.setattr(warm, "_usable_cpus", lambda: 2)
    w = warm.start()
    assert w is not None
    try:
        assert w.proc.wait(timeout=300) == 0
        assert not marker.exists()
    finally:
        w.stop()


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_stop_kills_a_warm_up_that_still_runs():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    w = warm.Warmup(proc)
    os.environ[warm.WARM_PID_ENV] = f"{os.getpid()}:{proc.pid}"
    w.stop()
    assert proc.poll() is not None
    assert warm.WARM_PID_ENV not in os.environ


CHILD = """
import sys, time
import auralis_batch.warm as w
w._die_with(int(sys.argv[1]))
print("guarded", flush=True)
time.sleep(60)
"""
PARENT = """
import os, subprocess, sys, time
p = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())], stdout=subprocess.PIPE)
p.stdout.readline()  # the child's guard is up
print(p.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is dead enough)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_the_warm_up_dies_with_a_killed_run():
    """kill -9 of the run: its warm-up does not go on compiling for nobody."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.communicate()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(child):
        os.kill(child, 9)
        pytest.fail("the warm-up outlived its run")


@pytest.mark.parametrize(("tracks", "expected"), [(1, [True]), (2, [False, False])])
def test_only_a_run_of_one_track_decodes_ahead(
    tmp_path, monkeypatch, write_audio, tracks, expected
):
    """One track leaves the second core idle: its decode runs a block ahead. A
    library's tracks keep one core each, as -j says."""
    from auralis_batch import engine

    for i in range(tracks):
        write_audio(f"lib/{i}.flac", music_like(seconds=1.0, seed=i))
    seen: list[bool] = []
    real = engine.analyze_file

    def spy(path, **kw):
        seen.append(kw.get("decode_ahead", False))
        return real(path, **kw)

    monkeypatch.setattr(engine, "analyze_file", spy)
    monkeypatch.setattr(warm, "_usable_cpus", lambda: 2)
    settings = RunSettings(preset="gentle", use_cache=False)
    res = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    assert res.summary["failed"] == 0
    assert seen == expected


def test_warm_files_of_killed_runs_are_swept_and_nothing_else(tmp_path):
    """A run killed at once (kill -9) during its first compile left its warm-up file
    in /tmp (a review); the next first run removes it, and only such a file."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"auralis-batch-warm-{gone.pid}-abcd1234.wav"
    alive = tmp_path / f"auralis-batch-warm-{os.getpid()}-abcd1234.wav"
    big = tmp_path / f"auralis-batch-warm-{gone.pid}-bigbig12.wav"
    users = tmp_path / f"auralis-batch-warm-{gone.pid}-mine.wav"
    for path in (dead, alive, users):
        path.write_bytes(b"RIFF" + bytes(100))
    big.write_bytes(bytes(warm._WARM_MAX_BYTES + 1))
    warm._sweep_warm_files(str(tmp_path))
    assert not dead.exists()
    assert alive.exists() and big.exists() and users.exists()
