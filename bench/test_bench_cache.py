"""Fingerprint cache speed. Goals: level-1 hit <= 50 us, level-2 hit <= 2 ms, and
``master`` with a second preset on a warm cache spends no time in analysis. (Warm
``analyze`` of a folder against cold is measured end to end in ``test_bench_e2e.py``.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import CORPUS, compare

import auralis_batch as ab
from auralis_batch.cache import FingerprintCache, make_key

VALUE = {
    "band_energy": {
        k: 0.1 for k in ("sub_bass", "bass", "low_mid", "mid", "upper_mid", "presence", "air")
    },
    **{f"feature_{i}": float(i) * 1.5 for i in range(40)},
}


def _key(i: int) -> str:
    return make_key(f"{i:064x}", fingerprint_version=1, tempo=True, analysis_sample_rate=22050)


@pytest.mark.benchmark(group="cache hit")
def test_level1_hit(benchmark, goals, tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(_key(1), VALUE)
        got = benchmark(c.get, _key(1))
    assert got == VALUE
    goals.best_within("cache level-1 hit", 50e-6)
    goals.assert_met()


@pytest.mark.benchmark(group="cache hit")
def test_level2_hit(benchmark, goals, tmp_path):
    with FingerprintCache(tmp_path, memory_entries=1) as c:
        c.set(_key(1), VALUE)
        c.set(_key(2), VALUE)

        def get_from_disk():
            c._memory.clear()
            return c.get(_key(1))

        got = benchmark(get_from_disk)
    assert got == VALUE
    goals.best_within("cache level-2 hit (diskcache)", 2e-3)
    goals.assert_met()


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


@pytest.mark.benchmark(group="master with a second preset on a warm cache")
def test_second_preset_spends_no_time_in_analysis(benchmark, goals, folder, tmp_path):
    cache_dir = str(tmp_path / "cache")
    ab.run_master(
        [folder], tmp_path / "o1", ab.RunSettings(preset="gentle", cache_dir=cache_dir), n_jobs=1
    )
    counter = iter(range(100))
    results = []

    def run():
        out = tmp_path / f"o{next(counter) + 2}"
        settings = ab.RunSettings(preset="warm", cache_dir=cache_dir)
        results.append(ab.run_master([folder], out, settings, n_jobs=1))

    compare(benchmark, run, rounds=2)
    records = results[-1].records
    analysis_s = sum(r["analysis_seconds"] for r in records)
    total_s = sum(r["seconds"] for r in records)
    benchmark.extra_info["analysis_seconds_total"] = analysis_s
    assert all(r["fingerprint_cached"] for r in records)
    goals.check(
        "master with a second preset, warm cache: analysis",
        f"{analysis_s * 1e3:.1f} ms of {total_s:.2f} s",
        "<= 1 % of the run",
        analysis_s <= 0.01 * total_s,
    )
    goals.assert_met()
