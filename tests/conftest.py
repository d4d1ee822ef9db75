"""Shared fixtures: the real-music corpus (skipped when missing) and small signals."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from .bytecode import write_package_bytecode

# CI runs the property tests on a fixed sequence of examples, so that a red run can be
# reproduced and a green one means the same thing every time; a developer's runs
# explore new examples (and keep the failing ones in .hypothesis/ to replay).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

#: ../shared/corpus beside the checkout, or AURALIS_CORPUS (a clone kept elsewhere).
CORPUS = Path(
    os.environ.get("AURALIS_CORPUS")
    or Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
)

_warmup: subprocess.Popen | None = None

#: A tiny library the session's warm-up masters and analyses through the CLI, so
#: that every kernel a command calls is compiled before the test workers start. The
#: clip is 8 s: under 6 s (four beats of the slowest tempo) the tempo estimate stops
#: before its autocorrelation, and each worker compiled the rest of tempo's kernels
#: in its first test that needed them (about 8 s each in a clean clone).
_WARM_RUN = """
import os, subprocess, sys, tempfile
import numpy as np, soundfile as sf
d = tempfile.mkdtemp(prefix="auralis-tests-warm-")
os.makedirs(os.path.join(d, "in"))
t = np.arange(8 * 44100) / 44100  # over four beats of 40 BPM: tempo runs its estimate
x = 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))
x = x + 0.01 * np.random.default_rng(0).standard_normal(t.size)
sf.write(os.path.join(d, "in", "a.flac"), np.stack([x, 0.9 * x], 1), 44100, subtype="PCM_24")
env = {**os.environ, "AURALIS_CACHE_DIR": os.path.join(d, "cache")}
cli = [sys.executable, "-m", "auralis_batch.cli"]
for args in (["master", "in", "--out", "out", "-q"], ["analyze", "in", "--json"]):
    subprocess.run(cli + args, cwd=d, env=env, capture_output=True)
import shutil
shutil.rmtree(d, ignore_errors=True)
"""


def _xdist_worker(config) -> str | None:
    """The id of this pytest-xdist worker (``gw0``...), or None in the run's own process."""
    return getattr(config, "workerinput", {}).get("workerid")


def _source_folders_with_kernels() -> list[str]:
    """The folders whose modules Numba compiles with ``cache=True`` in the tests: our
    kernels and librosa's (found without importing either)."""
    from auralis_batch import _kernels_dir

    folders = [_kernels_dir()]
    spec = importlib.util.find_spec("librosa")
    if spec is not None and spec.submodule_search_locations:
        root = os.path.abspath(next(iter(spec.submodule_search_locations)))
        for here, subfolders, _files in os.walk(root):
            subfolders[:] = [s for s in subfolders if s != "__pycache__"]
            folders.append(here)
    return folders


def pytest_configure(config) -> None:
    """Each pytest-xdist worker compiles into a Numba cache of its own, a copy of the
    shared one (which the session's warm-up filled before the workers started).

    Numba reads a kernel's cache index, adds an entry and writes it back without a
    lock: two workers compiling two specialisations of one kernel at once could each
    claim the same data file, and a later load would get the other's code. What a
    worker compiles stays in its copy (removed at the end); the CLI processes a test
    starts inherit it."""
    worker = _xdist_worker(config)
    if worker is None or "numba" in sys.modules:
        return
    import shutil
    import tempfile

    from auralis_batch import _numba_cache_folder

    private = tempfile.mkdtemp(prefix=f"auralis-tests-numba-{worker}-")
    for source in _source_folders_with_kernels():
        shared = _numba_cache_folder(source)
        if not os.path.isdir(shared):
            continue
        copy = _numba_cache_folder(source, root=private)
        os.makedirs(copy, exist_ok=True)
        for name in os.listdir(shared):
            if name.endswith((".nbi", ".nbc")):
                shutil.copy2(os.path.join(shared, name), copy)
    os.environ["NUMBA_CACHE_DIR"] = private
    config.add_cleanup(lambda: shutil.rmtree(private, ignore_errors=True))


def pytest_sessionstart(session) -> None:
    """librosa compiles its Numba functions the first time it is imported in an
    environment (about 15 s of one core on a fresh machine: a clean clone's CI run).
    ``tests/test_fingerprint.py`` compares against it, so it is imported once here in a
    low-priority process of its own, on the second core, while the first test files
    run; :func:`import_librosa` waits for it. The same process then compiles the
    render's kernels (auralis_batch.warm, as a run's warm-up does), if not yet.

    Under pytest-xdist (the README's command: two workers) the run's own process does
    this before the workers start, and waits for it, in two processes (librosa in one;
    a ``master`` and an ``analyze`` of a tiny library through the CLI in the other),
    so that no worker compiles what the other compiles too."""
    from auralis_batch import FINGERPRINT_KERNEL, TEMPO_KERNEL, _kernels_compiled

    if _xdist_worker(session.config) is not None:
        return  # the run's own process has warmed up before starting this one
    write_package_bytecode()  # before the CLI processes the tests start
    code = "import os; os.nice(10)\n"
    spec = importlib.util.find_spec("librosa")
    if spec is not None and spec.submodule_search_locations:
        cache = Path(next(iter(spec.submodule_search_locations))) / "util" / "__pycache__"
        if not any(cache.glob("*.nbi")):  # not compiled yet
            code += (  # librosa loads lazily: what the tests call, on a tiny signal
                "import numpy as np, librosa\n"
                "s = np.abs(librosa.stft(np.ones(4096), n_fft=2048, hop_length=512, "
                "center=False))\n"
                "librosa.feature.spectral_centroid(S=s); librosa.feature.spectral_rolloff(S=s)\n"
                "librosa.feature.spectral_flatness(S=s)\n"
            )
    distributed = bool(getattr(session.config.option, "numprocesses", None))
    if distributed:
        if not _kernels_compiled(("dynamics.limiter", FINGERPRINT_KERNEL, TEMPO_KERNEL)):
            run = subprocess.Popen([sys.executable, "-c", _WARM_RUN])
            _start_warmup(code)
            run.wait()
        else:
            _start_warmup(code)
        if _warmup is not None:  # librosa compiled before the workers import it
            try:
                _warmup.wait(timeout=300)
            except subprocess.TimeoutExpired:
                _warmup.kill()
        return
    if not _kernels_compiled(("dynamics.limiter",)):
        # then the render's kernels, into the cache the tests load them from: the first
        # test that masters loads them instead of compiling them itself (a clean clone)
        code += "from auralis_batch.warm import compile_render\ncompile_render()\n"
    _start_warmup(code)


def _start_warmup(code: str) -> None:
    global _warmup
    if code.count("\n") == 1:  # compiled already: nothing to gain
        return
    _warmup = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def pytest_sessionfinish(session, exitstatus) -> None:
    if _warmup is not None and _warmup.poll() is None:
        _warmup.kill()
        _warmup.wait()


def import_librosa():
    """``import librosa``, after the session's warm-up import has compiled it."""
    if _warmup is not None:
        try:
            _warmup.wait(timeout=300)
        except subprocess.TimeoutExpired:
            _warmup.kill()
    import librosa

    return librosa


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.ogg")) if CORPUS.is_dir() else []


@pytest.fixture
def corpus() -> list[Path]:
    files = corpus_files()
    if not files:
        pytest.skip(f"real-music corpus not found at {CORPUS} (set AURALIS_CORPUS to its folder)")
    return files


def music_like(
    seconds: float = 8.0,
    sample_rate: int = 44100,
    channels: int = 2,
    seed: int = 0,
    level_db: float = -20.0,
) -> np.ndarray:
    """A deterministic mix (peak-to-loudness ratio about 14 dB, like real mixes) with
    drums (kick, snare noise, hats), bass and a chord pad, with dynamics (a quiet intro,
    a loud chorus), scaled to roughly ``level_db`` RMS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    beat = 60.0 / 120.0
    out = np.zeros((channels, n))
    env_t = t % beat
    kick = 0.6 * np.sin(2 * np.pi * (50 + 100 * np.exp(-env_t * 40)) * env_t) * np.exp(-env_t * 12)
    snare_t = (t + beat) % (2 * beat)
    snare = rng.standard_normal(n) * np.exp(-snare_t * 25) * 0.25
    hats_t = t % (beat / 2)
    # hats: high-passed noise, band-limited at 16 kHz as a recording chain would be
    from scipy import signal

    noise = signal.sosfilt(
        signal.butter(4, [6000, 16000], "bandpass", fs=sample_rate, output="sos"),
        rng.standard_normal(n),
    )
    hats = noise * np.exp(-hats_t * 80) * 0.3
    bass = 0.4 * np.sin(2 * np.pi * 55 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * t / (4 * beat)))
    pad = sum(0.15 * np.sin(2 * np.pi * f * t + k) for k, f in enumerate((220, 277.2, 329.6, 440)))
    dyn = np.where(t < seconds / 3, 0.3, 1.0)  # quiet intro, loud rest
    mix = kick + snare + hats + bass + pad
    mix = np.tanh(1.5 * mix / np.abs(mix).max()) * dyn  # a mix bus that is already glued
    for c in range(channels):
        pan = 1.0 if channels == 1 else 0.8 + 0.4 * c / max(channels - 1, 1)
        out[c] = mix * pan + 0.005 * rng.standard_normal(n)
    rms = np.sqrt(np.mean(out**2))
    return np.ascontiguousarray(out * (10 ** (level_db / 20) / rms))


@pytest.fixture
def write_audio(tmp_path):
    """Write ``(channels, n)`` audio to ``tmp_path/name`` with soundfile."""
    import soundfile as sf

    def _write(name: str, audio: np.ndarray, sample_rate: int = 44100, subtype: str = "PCM_24"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio.T, sample_rate, subtype=subtype)
        return path

    return _write


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's real fingerprint cache from tests."""
    if "AURALIS_CACHE_DIR" not in os.environ or not os.environ["AURALIS_CACHE_DIR"].startswith(
        str(tmp_path_factory.getbasetemp())
    ):
        monkeypatch.setenv("AURALIS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
