"""End-to-end batch speed, scaling, start-up time and bounded memory.

Goals (issue 6): ``master`` on a folder >= 100x realtime per core including decoding
and encoding, within 2x of the I/O floor (decode + encode alone, same files, same
run); ``-j 2`` >= 1.8x ``-j 1`` on 2 cores; ``--help`` within 0.3 s of a bare
interpreter; a 2-hour 96 kHz stereo file masters in <= 500 MB peak RSS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralis_batch.batch import RunSettings, run_master

SR = 44100
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
N_TRACKS = 16  # a small library: enough tracks that one slow track does not decide -j 2
SECONDS = 30


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lib")
    files = sorted(CORPUS.glob("*.ogg"))
    rng = np.random.default_rng(0)
    for i in range(N_TRACKS):
        if files:
            x, _ = sf.read(files[i % len(files)], always_2d=True)
            x = np.tile(x, (SECONDS * SR // x.shape[0] + 1, 1))[: SECONDS * SR]
        else:
            t = np.arange(SECONDS * SR) / SR
            x = 0.3 * np.sin(2 * np.pi * 110 * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
        sf.write(d / f"{i:02d}.flac", x, SR, subtype="PCM_24")
    return d


def _audio_seconds(folder: Path) -> float:
    return sum(sf.info(f).duration for f in folder.glob("*.flac"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_master_folder(benchmark, folder, tmp_path, jobs):
    benchmark.group = f"master {N_TRACKS} x {SECONDS} s tracks end to end"
    run_master([folder], tmp_path / "warm", RunSettings(use_cache=False), n_jobs=1)  # JIT warm
    counter = iter(range(100))

    def run():
        out = tmp_path / f"out{next(counter)}"
        res = run_master([folder], out, RunSettings(use_cache=False), n_jobs=jobs)
        assert res.summary["ok"] == N_TRACKS
        return res

    benchmark.pedantic(run, rounds=2, iterations=1)
    realtime = _audio_seconds(folder) / benchmark.stats.stats.mean
    benchmark.extra_info["x_realtime"] = round(realtime, 1)
    benchmark.extra_info["x_realtime_per_core"] = round(realtime / jobs, 1)


def test_io_floor(benchmark, folder, tmp_path):
    """Decode + encode alone (FLAC 24-bit), block by block, one core."""
    benchmark.group = f"master {N_TRACKS} x {SECONDS} s tracks end to end"

    def run():
        for f in sorted(folder.glob("*.flac")):
            with (
                sf.SoundFile(f) as src,
                sf.SoundFile(
                    tmp_path / f.name,
                    "w",
                    samplerate=src.samplerate,
                    channels=src.channels,
                    format="FLAC",
                    subtype="PCM_24",
                ) as dst,
            ):
                for block in src.blocks(65536, dtype="float64"):
                    q = np.clip(np.floor(block * 8388608.0 + 0.5), -8388608, 8388607).astype(
                        np.int32
                    )
                    dst.write(q << 8)

    benchmark.pedantic(run, rounds=2, iterations=1)
    benchmark.extra_info["x_realtime"] = round(
        _audio_seconds(folder) / benchmark.stats.stats.mean, 1
    )


@pytest.mark.parametrize("what", ["bare python", "auralis-batch --help"])
def test_cli_help_startup(benchmark, what):
    benchmark.group = "start-up"
    cmd = (
        [sys.executable, "-c", "pass"]
        if what == "bare python"
        else [sys.executable, "-m", "auralis_batch.cli", "--help"]
    )
    benchmark.pedantic(
        lambda: subprocess.run(cmd, check=True, capture_output=True), rounds=10, iterations=1
    )


@pytest.mark.skipif(
    not os.environ.get("AURALIS_BENCH_LONG"),
    reason="set AURALIS_BENCH_LONG=1 (writes a 2-hour file)",
)
def test_two_hour_96k_peak_rss(benchmark, tmp_path):
    """Peak RSS of mastering a 2-hour 96 kHz stereo file in a fresh process."""
    benchmark.group = "bounded memory"
    src = tmp_path / "long.flac"
    sr, block = 96000, 96000 * 60
    rng = np.random.default_rng(0)
    with sf.SoundFile(src, "w", samplerate=sr, channels=2, format="FLAC", subtype="PCM_16") as f:
        t = np.arange(block) / sr
        base = 0.25 * np.sin(2 * np.pi * 220 * t)
        for minute in range(120):
            x = base * (0.5 + 0.5 * np.sin(minute)) + 0.01 * rng.standard_normal(block)
            f.write(np.stack([x, x * 0.9], axis=1))
    code = (
        "import resource, sys; from pathlib import Path;"
        "from auralis_batch.batch import RunSettings, run_master;"
        f"src, out = Path({str(src)!r}), Path({str(tmp_path / 'out')!r});"
        "r = run_master([src], out, RunSettings(use_cache=False), n_jobs=1);"
        "assert r.summary['ok'] == 1, r.records;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )

    def run():
        return subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        )

    res = benchmark.pedantic(run, rounds=1, iterations=1)
    peak_mb = int(res.stdout.strip().splitlines()[-1]) / 1024
    benchmark.extra_info["peak_rss_mb"] = round(peak_mb, 1)
    print(f"\n2 h 96 kHz stereo FLAC: peak RSS {peak_mb:.0f} MB")
    assert peak_mb <= 500


def test_batch_goals(folder, tmp_path):
    """The issue's goals in one measurement, best of 2 with the contenders alternating:
    >= 100x realtime per core end to end, within 2x of the I/O floor, -j 2 >= 1.8x -j 1,
    and --help within 0.3 s of a bare interpreter. The goals are checked on --no-cache
    runs (a fixed preset then needs only the source's loudness); the default path with
    a cold cache (full fingerprint, PCM hash, cache writes) is measured and printed."""
    import time

    from conftest import best_alternating

    run_master([folder], tmp_path / "warm", RunSettings(use_cache=False), n_jobs=1)
    counter = iter(range(100))

    def master(jobs: int, cold_cache: bool = False) -> None:
        i = next(counter)
        settings = (
            RunSettings(cache_dir=str(tmp_path / f"cache{i}"))  # the default path, cold
            if cold_cache
            else RunSettings(use_cache=False)  # loudness-only analysis (fixed preset)
        )
        res = run_master([folder], tmp_path / f"out{i}", settings, n_jobs=jobs)
        assert res.summary["ok"] == N_TRACKS

    def io_floor() -> None:
        for f in sorted(folder.glob("*.flac")):
            with (
                sf.SoundFile(f) as src,
                sf.SoundFile(
                    tmp_path / f"io_{f.name}", "w", samplerate=src.samplerate,
                    channels=src.channels, format="FLAC", subtype="PCM_24",
                ) as dst,
            ):  # fmt: skip
                for block in src.blocks(65536, dtype="float64"):
                    q = np.clip(np.floor(block * 8388608.0 + 0.5), -8388608, 8388607)
                    dst.write(q.astype(np.int32) << 8)

    best = best_alternating(
        {
            "j1": lambda: master(1),
            "j2": lambda: master(2),
            "io": io_floor,
            "j1_cold_cache": lambda: master(1, cold_cache=True),
        },
        rounds=2,
    )
    audio = _audio_seconds(folder)

    def startup(cmd: list[str]) -> float:
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return min(times)

    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)
    master(1)
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults = after.ru_minflt - before.ru_minflt
    kernel_s = after.ru_stime - before.ru_stime
    bare = startup([sys.executable, "-c", "pass"])
    helps = startup([sys.executable, "-m", "auralis_batch.cli", "--help"])
    print(
        f"\nbatch {N_TRACKS} x {SECONDS} s: -j 1 {audio / best['j1']:.0f}x realtime, "
        f"-j 2 {audio / best['j2']:.0f}x ({best['j1'] / best['j2']:.2f}x -j 1), "
        f"I/O floor {audio / best['io']:.0f}x ({best['j1'] / best['io']:.2f}x of it); "
        f"-j 1 with a cold cache (fingerprints computed and stored) "
        f"{audio / best['j1_cold_cache']:.0f}x ({best['j1_cold_cache'] / best['io']:.2f}x "
        "the floor); "
        f"--help {helps * 1e3:.0f} ms vs bare python {bare * 1e3:.0f} ms; "
        f"a -j 1 run: {faults} page faults, {kernel_s:.2f} s in the kernel"
    )
    assert audio / best["j1"] >= 100
    assert best["j1"] <= 2 * best["io"]
    assert best["j1"] / best["j2"] >= 1.8
    assert helps - bare <= 0.3
