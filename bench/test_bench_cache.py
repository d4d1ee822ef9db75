"""Fingerprint cache speed. Goals: level-1 hit <= 50 us, level-2 hit <= 2 ms, warm
``analyze`` over a folder >= 20x faster end to end than cold, and ``master`` with a
second preset on a warm cache spends no time in analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralis_batch.analysis import analyze_file
from auralis_batch.batch import RunSettings, run_master
from auralis_batch.cache import FingerprintCache, make_key

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
VALUE = {
    "band_energy": {
        k: 0.1 for k in ("sub_bass", "bass", "low_mid", "mid", "upper_mid", "presence", "air")
    },
    **{f"feature_{i}": float(i) * 1.5 for i in range(40)},
}


def _key(i: int) -> str:
    return make_key(f"{i:064x}", fingerprint_version=1, tempo=True, analysis_sample_rate=22050)


def test_level1_hit(benchmark, tmp_path):
    benchmark.group = "cache hit"
    with FingerprintCache(tmp_path) as c:
        c.set(_key(1), VALUE)
        got = benchmark(c.get, _key(1))
    assert got == VALUE


def test_level2_hit(benchmark, tmp_path):
    benchmark.group = "cache hit"
    with FingerprintCache(tmp_path, memory_entries=1) as c:
        c.set(_key(1), VALUE)
        c.set(_key(2), VALUE)

        def get_from_disk():
            c._memory.clear()
            return c.get(_key(1))

        got = benchmark(get_from_disk)
    assert got == VALUE


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lib")
    files = sorted(CORPUS.glob("*.ogg"))
    rng = np.random.default_rng(0)
    for i in range(5):
        if files:
            x, sr = sf.read(files[i % len(files)], always_2d=True)
            x = x[: 60 * sr]
        else:
            sr = 44100
            x = 0.1 * rng.standard_normal((60 * sr, 2))
        sf.write(d / f"{i:02d}.flac", x, sr, subtype="PCM_16")
    return d


@pytest.mark.parametrize("state", ["cold", "warm"])
def test_analyze_folder(benchmark, folder, tmp_path, state):
    benchmark.group = "analyze 5 x 60 s tracks (tempo on)"
    files = sorted(folder.glob("*.flac"))
    analyze_file(files[0])  # JIT warm
    counter = iter(range(1000))

    def run():
        directory = tmp_path / (f"c{next(counter)}" if state == "cold" else "warm")
        with FingerprintCache(directory) as cache:
            return [analyze_file(f, cache=cache) for f in files]

    if state == "warm":
        run()
    recs = benchmark.pedantic(run, rounds=3, iterations=1)
    assert all((r["cached"] is False) == (state == "cold") for r in recs)


def test_second_preset_spends_no_time_in_analysis(benchmark, folder, tmp_path):
    benchmark.group = "master with a second preset on a warm cache"
    cache_dir = str(tmp_path / "cache")
    run_master(
        [folder], tmp_path / "o1", RunSettings(preset="gentle", cache_dir=cache_dir), n_jobs=1
    )
    counter = iter(range(100))

    def run():
        out = tmp_path / f"o{next(counter) + 2}"
        return run_master([folder], out, RunSettings(preset="warm", cache_dir=cache_dir), n_jobs=1)

    result = benchmark.pedantic(run, rounds=2, iterations=1)
    analysis_s = sum(r["analysis_seconds"] for r in result.records)
    benchmark.extra_info["analysis_seconds_total"] = analysis_s
    assert all(r["fingerprint_cached"] for r in result.records)
    total_s = sum(r["seconds"] for r in result.records)
    print(f"\nsecond preset, warm cache: analysis {analysis_s * 1e3:.1f} ms of {total_s:.2f} s")
    assert analysis_s <= 0.01 * total_s
