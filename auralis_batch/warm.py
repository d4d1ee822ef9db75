"""A machine's first ``master`` compiles its kernels in child processes.

Numba compiles each kernel the first time a process calls it and keeps the machine
code in its cache (``NUMBA_CACHE_DIR``); on an empty cache that is about 9 s of one
core, half for the analysis (meters, fingerprint) and half for the render (EQ,
compressor, limiter, quantiser). A track is analysed before it is rendered, so the
two halves would compile one after the other. When the render's kernels are not in
the cache, :func:`start` runs a process that compiles them (on a short synthetic
signal, through the same wrappers the render uses, so the same specialisations)
while the analysis's compile in a second child before the first track
(:func:`compile_analysis_first`: a child, because a signal cannot stop a compile in
the run's own process, and a Ctrl-C waited seconds for it); :func:`wait`, called when a track's
analysis is done, first compiles the run's own share of the render's stages (a
``-j 1`` run keeps one, :data:`METER_ONLY_SHARE` or :data:`FINGERPRINT_SHARE`, so
that neither process idles), then waits for the warm-up, and the render then loads
its kernels from the cache. A failed or killed warm-up costs nothing but time:
whatever it did not compile, the render compiles. With ``--reference`` the CLI starts
the warm-up before it analyses the reference, and the batch adopts it.

The two processes never compile different specialisations of one kernel at the same
time: Numba's cache index of a kernel is read, extended and written back without a
lock, and two such writers could each claim the same data file for their own. Each
stage is compiled by one of the two only (the run's share is the run's own process's,
never its workers'), and every render waits for the warm-up first; the one kernel the
analysis may call meanwhile (the cascade, for tempo's decimation of a high sample
rate) it calls with the same types, so both would write the same entry
(``tests/test_warm.py`` checks the specialisations).

Only the CLI's own process does this (``_startup.OWN_PROCESS_ENV``): a program that
imports the package is not handed a process it did not ask for. Batch workers
inherit the warm-up's pid in :data:`WARM_PID_ENV` and wait for it the same way.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import stat
import subprocess
import sys
import threading
import time

#: ``"<run's pid>:<warm-up's pid>:<stages the run compiles itself>"``, for the run's
#: process and the workers it starts (a process that is neither, a cluster's worker
#: say, does not wait).
WARM_PID_ENV = "AURALIS_BATCH_WARMUP_PID"

#: The render's stages, in the order the warm-up compiles them.
STAGES = ("limiter", "compressor", "eq", "quantizer")
#: The stages a run compiles itself, after its analysis and before it waits, so that
#: neither process idles (each stage is compiled by one process only). A run whose
#: analysis is the meter alone (no fingerprint: a fixed preset without the cache)
#: compiles it in about 3 s against 4.5 s for the four stages: it takes the EQ ...
METER_ONLY_SHARE = ("eq",)
#: ... and one with the fingerprint (about 4 s) the quantiser (0.2 s).
FINGERPRINT_SHARE = ("quantizer",)


def run_share(*, fingerprint: bool, one_job: bool) -> tuple[str, ...]:
    """The stages a run compiles itself: with one job (the run's own process), its
    share for its analysis; with workers none (each would compile it), the warm-up
    compiles them all."""
    if not one_job:
        return ()
    return FINGERPRINT_SHARE if fingerprint else METER_ONLY_SHARE


#: How long a render waits for the warm-up before compiling what it still needs.
WAIT_LIMIT_S = 120.0

_POLL_S = 0.02


class Warmup:
    """The running warm-up process (see the module docstring)."""

    #: The one this process started and has not stopped: a later :func:`start`
    #: (the batch, after the CLI started it before analysing a reference) adopts it.
    current: Warmup | None = None

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        # Reaped as soon as it ends, so that its pid stops answering (a zombie would
        # keep workers waiting on it).
        self._reaper = threading.Thread(target=proc.wait, daemon=True)
        self._reaper.start()

    def stop(self) -> None:
        """End it now if it still runs (the run is over, or stopped)."""
        if Warmup.current is self:
            Warmup.current = None
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        run, pid, _ = _parse(os.environ.get(WARM_PID_ENV))
        if (run, pid) == (str(os.getpid()), str(self.proc.pid)):
            del os.environ[WARM_PID_ENV]


def _env_value(pid: int, run_share: tuple[str, ...] = ()) -> str:
    return f"{os.getpid()}:{pid}:{','.join(run_share)}"


def _parse(value: str | None) -> tuple[str, str, tuple[str, ...]]:
    """``(run's pid, warm-up's pid, the run's share)`` of a :data:`WARM_PID_ENV` value
    (empty strings where missing; an older two-field value has no share)."""
    run, _, rest = (value or "").partition(":")
    pid, _, share = rest.partition(":")
    return run, pid, tuple(s for s in share.split(",") if s in STAGES)


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's share, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def start(bit_depth: str = "24", *, run_share: tuple[str, ...] = ()) -> Warmup | None:
    """Start compiling the render's kernels (for output of ``bit_depth``) in a process
    of their own if this is the CLI's process, the machine has a second core and the
    cache lacks them; else None. The stages of ``run_share`` (names of
    :data:`STAGES`) are left to the run, which compiles them in :func:`wait`."""
    from . import RENDER_KERNEL, _kernels_compiled
    from ._startup import OWN_PROCESS_ENV

    if Warmup.current is not None:
        return Warmup.current
    if os.environ.get(OWN_PROCESS_ENV) != "1" or _usable_cpus() < 2:
        return None
    if os.environ.get(WARM_PID_ENV) or _kernels_compiled((RENDER_KERNEL,)):
        return None
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _child_code("main"),
                bit_depth,
                str(os.getpid()),
                ",".join(s for s in STAGES if s not in run_share),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    os.environ[WARM_PID_ENV] = _env_value(proc.pid, run_share)
    Warmup.current = Warmup(proc)
    return Warmup.current


def _child_code(entry: str) -> str:
    """The ``python -c`` program of a compiling child that runs ``entry`` of this
    module. ``-c`` puts the current folder first on the import path: run from a
    checkout (the README's quickstart) with the package installed, the child imported
    the checkout's ``auralis_batch``, which has no ``kernels`` there, and died unseen.
    It imports the package this process runs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"import sys; sys.path[0] = {root!r}; from auralis_batch.warm import {entry}; {entry}()"


def wait(limit_s: float = WAIT_LIMIT_S, *, check=None, bit_depth: str = "24") -> None:
    """Compile this process's share of the render's stages (if the run kept one),
    then wait until the warm-up (if any) has ended, at most ``limit_s``; ``check`` is
    called while waiting (a stopped run raises from it)."""
    # once is enough for this process
    run, pid, own = _parse(os.environ.pop(WARM_PID_ENV, None))
    if not pid.isdigit() or (str(os.getpid()) != run and str(os.getppid()) != run):
        return
    if own and str(os.getpid()) == run:  # the run itself, never its workers
        compile_render(bit_depth=bit_depth, stages=own)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except OSError:
            return
        if check is not None:
            check()
        time.sleep(_POLL_S)


def compile_render(
    sample_rate: int = 48000,
    channels: int = 2,
    bit_depth: str = "24",
    stages: tuple[str, ...] = STAGES,
) -> None:
    """Call the render's kernels of ``stages`` (names of :data:`STAGES`) once, through
    its wrappers, on a short signal: Numba compiles them (or loads them) with the
    types a render uses."""
    import numpy as np

    from .audio import Quantizer
    from .eq import Equalizer
    from .pipeline import compressor_for, limiter_for
    from .presets import load_preset

    preset = load_preset("punchy")  # every kind of stage; the types do not depend on it
    t = np.arange(4096) / sample_rate
    x = np.ascontiguousarray(np.tile(0.5 * np.sin(2 * np.pi * 997.0 * t), (channels, 1)))
    if "limiter" in stages:
        lim = limiter_for(preset, sample_rate, channels)
        lim.process(x, gain_db=6.0)
        lim.flush()
    if "compressor" in stages:
        comp = compressor_for(preset, sample_rate, channels, threshold_db=-30.0)
        comp.process(x)
        comp.process(x, return_gain_reduction=True)
    if "eq" in stages:
        Equalizer(sample_rate, channels, preset.eq).process(x)
    if "quantizer" in stages:
        Quantizer(bit_depth).quantize(x)


def _die_with(parent_pid: int) -> None:
    """End with the run, even if it is killed (``kill -9``): Linux sends SIGKILL to
    this process when its parent dies (``PR_SET_PDEATHSIG``); elsewhere it ends on
    its own within seconds. Numba writes each cache file whole (a temporary, then a
    rename), so a warm-up killed at any point leaves nothing half-written."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes
            import signal

            pr_set_pdeathsig = 1  # <sys/prctl.h>
            ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the run died before the guard was up
        os._exit(0)


#: The warm-up signal's length, s: long enough for the tempo estimator to run to its
#: end (four beats of its slowest tempo, 6 s at 40 BPM, and some; 6 s fell just short).
WARM_SECONDS = 8.0


def compile_analysis(
    *, tempo: bool, fingerprint: bool, seconds: float = WARM_SECONDS, path: str | None = None
) -> None:
    """Analyse a short synthetic file once, as a track's analysis reads one (decoded
    by libsndfile, in blocks, through the same wrappers): Numba compiles (or loads)
    the analysis's kernels with the types a worker's analysis uses.

    A ``-j N`` run's first track in each worker compiled them in every worker at
    once, beside the warm-up's render: three compiles on two cores (a first ``-j 2``
    run of the corpus took 16.3 s against 13.0 s at ``-j 1``). The run compiles them
    here, once, before its pool starts, while the warm-up compiles the render's.
    ``path``: the file to write the signal to (a temporary folder of its own if None)."""
    import tempfile

    import numpy as np
    import soundfile as sf

    from .analysis import analyze_file

    def analyse(file: str) -> None:
        rng = np.random.default_rng(0)
        frames = int(seconds * 44100)
        sf.write(file, 0.1 * rng.standard_normal((frames, 2)), 44100, subtype="PCM_16")
        analyze_file(file, tempo=tempo, cache=None, hash_content=False, fingerprint=fingerprint)

    if path is not None:
        analyse(path)
        return
    with tempfile.TemporaryDirectory(prefix="auralis-batch-warm-") as folder:
        analyse(os.path.join(folder, "warm.wav"))


def compile_analysis_first(*, tempo: bool, fingerprint: bool, check=None) -> None:
    """:func:`compile_analysis_apart` if the analysis's kernels (with the tempo
    estimator's and the fingerprint's if asked) are not compiled yet; only in the CLI's
    own process, as the warm-up (a program that imports the package is not handed
    processes it did not ask for)."""
    from . import FINGERPRINT_KERNEL, METER_KERNEL, TEMPO_KERNEL, _kernels_compiled
    from ._startup import OWN_PROCESS_ENV

    if os.environ.get(OWN_PROCESS_ENV) != "1":
        return
    kernels = (METER_KERNEL,) + (FINGERPRINT_KERNEL,) * fingerprint + (TEMPO_KERNEL,) * tempo
    if not _kernels_compiled(kernels):
        compile_analysis_apart(tempo=tempo, fingerprint=fingerprint, check=check)


def compile_analysis_apart(*, tempo: bool, fingerprint: bool, check=None) -> None:
    """:func:`compile_analysis` in a process of its own, waited for here: a first
    SIGINT or SIGTERM of the run (raised in this thread while it sleeps) ends the wait
    at once, and the child is killed on the way out. In the run's own process the
    compile could not be interrupted (a signal raised inside a kernel is a
    SystemError), so a Ctrl-C waited up to the compile's end, seconds on a first run.
    ``check`` is called while waiting (a caller whose handler only notes a signal
    raises from it). A child that fails costs nothing but time: the analysis
    compiles what it did not."""
    import tempfile

    from .stopping import removed_if_ended

    # The child's short file is this process's to remove: the child is killed on a
    # stop, and left it behind in /tmp (1 MB each time: a newcomer's); one a killed
    # run left (kill -9) the next first run removes (_sweep_warm_files)
    folder = tempfile.gettempdir()
    _sweep_warm_files(folder)
    try:
        fd, path = tempfile.mkstemp(prefix=f"{_WARM_PREFIX}{os.getpid()}-", suffix=".wav")
        os.close(fd)
    except OSError:
        return
    try:
        with removed_if_ended(path):  # a second signal ends the run at once
            _compile_in_child(path, tempo=tempo, fingerprint=fingerprint, check=check)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


#: The warm-up file's name: this prefix, the run's pid, mkstemp's eight characters.
_WARM_PREFIX = "auralis-batch-warm-"
_WARM_NAME = re.compile(re.escape(_WARM_PREFIX) + r"(\d+)-[A-Za-z0-9_]{8}\.wav")
#: Larger than any warm-up file (8 s of 16-bit stereo at 44.1 kHz, 1.4 MB).
_WARM_MAX_BYTES = 2_000_000


def _sweep_warm_files(folder: str) -> None:
    """Remove the warm-up files that runs killed at once (``kill -9``) left in
    ``folder``: named as ours with the pid of a process that is gone, regular files
    of this user's, no larger than a warm-up file. Anything else is left alone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        m = _WARM_NAME.fullmatch(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _WARM_MAX_BYTES:
                continue
            if hasattr(os, "getuid") and st.st_uid != os.getuid():
                continue
            os.kill(int(m.group(1)), 0)  # its run is alive (or the pid is another's now)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        except (OSError, OverflowError, ValueError):
            continue


def _compile_in_child(path: str, *, tempo: bool, fingerprint: bool, check) -> None:
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _child_code("analysis_main"),
                str(os.getpid()),
                "tempo" if tempo else "-",
                "fingerprint" if fingerprint else "-",
                path,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return
    try:
        while proc.poll() is None:
            if check is not None:
                check()
            time.sleep(_POLL_S)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


def analysis_main() -> None:
    """The child of :func:`compile_analysis_apart`. Arguments: the run's pid,
    ``tempo`` and ``fingerprint`` (or ``-`` for either not needed), and the file to
    write its short signal to."""
    from ._startup import load_numba_numpy_support

    args = sys.argv[1:]
    if len(args) != 4 or not args[0].isdigit():
        return
    _die_with(int(args[0]))
    load_numba_numpy_support()
    gc.disable()  # as the warm-up: only compiles
    compile_analysis(tempo=args[1] == "tempo", fingerprint=args[2] == "fingerprint", path=args[3])


def main() -> None:
    """The warm-up process: quiet, and nothing to report (the run checks nothing).
    Arguments: the run's bit depth, its pid and the stages to compile (all of
    :data:`STAGES` when not given)."""
    from ._startup import load_numba_numpy_support

    args = sys.argv[1:]
    if len(args) > 1 and args[1].isdigit():
        _die_with(int(args[1]))
    load_numba_numpy_support()
    # Compiling is all this short process does: no collections at all while it does
    # (about 0.1 GB more at its peak, 0.5 s less CPU than the CLI's thresholds).
    gc.disable()
    stages = tuple(x for x in args[2].split(",") if x in STAGES) if len(args) > 2 else STAGES
    compile_render(bit_depth=args[0] if args else "24", stages=stages)
