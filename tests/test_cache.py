"""Fingerprint cache: persistence, LRU, keys, fast path, stats, faults, safety."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest
from typer.testing import CliRunner

from auralis_batch.cache import (
    CacheWarning,
    FingerprintCache,
    NullCache,
    hash_pcm_blocks,
    make_key,
    open_cache,
    parse_duration,
)

VALUE = {"band_energy": {"bass": 0.3, "mid": 0.7}, "tempo_bpm": 121.5, "crest_db": 14.2}


def key(i: int, tempo: bool = True) -> str:
    return make_key(f"{i:064x}", fingerprint_version=1, tempo=tempo, analysis_sample_rate=22050)


def test_persists_across_instances(tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    with FingerprintCache(tmp_path) as c:
        assert c.get_with_source(key(1)) == (VALUE, "disk")
        assert c.get_with_source(key(1)) == (VALUE, "memory")


def _writer(directory, start, n):
    with FingerprintCache(directory) as c:
        for i in range(start, start + n):
            c.set(key(i), dict(VALUE, i=i))
            assert c.get(key(i))["i"] == i


def test_concurrent_writers_from_several_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), k * 50, 50)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with FingerprintCache(tmp_path) as c:
        assert all(c.get(key(i))["i"] == i for i in range(200))
        assert c.stats()["entries"] == 200


def test_options_are_part_of_the_key(tmp_path):
    assert key(1, tempo=True) != key(1, tempo=False)
    assert make_key(
        "a" * 64, fingerprint_version=1, tempo=True, analysis_sample_rate=22050
    ) != make_key("a" * 64, fingerprint_version=2, tempo=True, analysis_sample_rate=22050)
    with FingerprintCache(tmp_path) as c:
        c.set(key(1, tempo=True), VALUE)
        assert c.get(key(1, tempo=False)) is None


def test_memory_level_holds_50_entries(tmp_path):
    with FingerprintCache(tmp_path, memory_entries=50) as c:
        for i in range(51):
            c.set(key(i), VALUE)
        assert c.get_with_source(key(0))[1] == "disk"  # fell out of level 1, still on disk
        assert c.get_with_source(key(50))[1] == "memory"


def test_size_limit_evicts_least_recently_used(tmp_path):
    # Values above diskcache's min_file_size live in files, so eviction frees space
    # measurably (SQLite's own file never shrinks).
    big = {"blob": "x" * 40000}
    with FingerprintCache(tmp_path, size_limit_bytes=400_000, memory_entries=1) as c:
        for i in range(30):
            c.set(key(i), big)
            c._memory.clear()
            assert c.get(key(0)) is not None  # key 0 is read all the time: recently used
            c._disk.cull()
        c._memory.clear()
        assert c.get(key(0)) is not None
        assert c.get(key(1)) is None  # least recently used: evicted
        assert c.get(key(29)) is not None
        assert c.stats()["bytes_used"] <= 600_000


def test_version_mismatch_and_garbage_are_misses_and_deleted(tmp_path):
    with FingerprintCache(tmp_path, value_version=1) as c:
        c.set(key(1), VALUE)
    with FingerprintCache(tmp_path, value_version=2) as c:
        assert c.get(key(1)) is None
        assert key(1) not in c._disk
    import diskcache

    raw = diskcache.Cache(str(tmp_path))
    raw.set(key(2), b"{not json", read=False)
    raw.close()
    with FingerprintCache(tmp_path) as c:
        assert c.get(key(2)) is None


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickle_is_never_unpickled(tmp_path):
    import diskcache

    marker = tmp_path / "pwned"
    raw = diskcache.Cache(str(tmp_path / "c"))
    raw.set(key(3), _Evil(str(marker)))  # stored with diskcache's pickle mode
    raw.close()
    with FingerprintCache(tmp_path / "c") as c:
        assert c.get_with_source(key(3)) == (None, "miss")
    assert not marker.exists()


def test_fast_path_hits_unchanged_file_and_misses_changed(tmp_path):
    f = tmp_path / "song.flac"
    f.write_bytes(b"audio")
    with FingerprintCache(tmp_path / "c") as c:
        assert c.lookup_path(f) is None
        c.remember_path(f, "abc")
        assert c.lookup_path(f) == "abc"
        f.write_bytes(b"other audio")
        assert c.lookup_path(f) is None


def test_pcm_hash_ignores_block_boundaries():
    import numpy as np

    x = np.random.default_rng(0).standard_normal((2, 1000))
    assert hash_pcm_blocks([x]) == hash_pcm_blocks([x[:, :3], x[:, 3:999], x[:, 999:]])
    assert hash_pcm_blocks([x]) != hash_pcm_blocks([x[::-1]])


def _reader(directory):
    with FingerprintCache(directory) as c:
        c.get(key(1))
        c.get(key(99))


def test_stats_count_across_processes(tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    ctx = multiprocessing.get_context("spawn")
    for _ in range(2):
        p = ctx.Process(target=_reader, args=(str(tmp_path),))
        p.start()
        p.join(60)
        assert p.exitcode == 0
    with FingerprintCache(tmp_path) as c:
        s = c.stats()
    assert s["disk"]["hits"] == 2 and s["disk"]["misses"] == 2
    assert s["memory"]["misses"] == 4 and s["disk"]["hit_rate"] == 0.5
    assert s["entries"] == 1 and s["size_limit_bytes"] == 2 * 1024**3


def test_prune_removes_entries_not_used_recently(tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
        c.set(key(2), VALUE)
        c._disk._sql(
            "UPDATE Cache SET access_time = access_time - 40 * 86400 WHERE key = ?", (key(1),)
        )
        assert c.prune(parse_duration("30d")) == 1
        c._memory.clear()
        assert c.get(key(1)) is None and c.get(key(2)) is not None


def test_parse_duration():
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("90m") == 5400
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_corrupt_database_is_moved_aside_with_one_warning(tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    (tmp_path / "cache.db").write_bytes(b"garbage" * 1000)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"cache.db{suffix}").unlink(missing_ok=True)
    with pytest.warns(CacheWarning, match="corrupt") as record:
        c = FingerprintCache(tmp_path)
    assert len(record) == 1
    with c:
        assert c.get(key(1)) is None
        c.set(key(1), VALUE)
        assert c.get(key(1)) == VALUE
    assert list(tmp_path.glob("cache.db.corrupt-*"))


def test_unwritable_location_runs_uncached_with_one_warning(tmp_path):
    blocker = tmp_path / "a-file"  # a file where the folder should be: fails even as root
    blocker.write_text("x")
    with pytest.warns(CacheWarning, match="unusable") as record:
        c = open_cache(blocker / "cache")
    assert isinstance(c, NullCache) and len(record) == 1
    c.set("k", VALUE)
    assert c.get("k") is None


def test_failing_store_degrades_to_uncached(tmp_path, monkeypatch):
    with FingerprintCache(tmp_path) as c:

        def boom(*a, **k):
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(c._disk, "set", boom)
        with pytest.warns(CacheWarning, match="disk is full") as record:
            c.set(key(1), VALUE)
            c.set(key(2), VALUE)
        assert len(record) == 1
        assert c.get(key(1)) == VALUE  # still served from level 1


def test_null_cache_and_disabled():
    c = open_cache(enabled=False)
    assert isinstance(c, NullCache)
    c.set("k", VALUE)
    assert c.get("k") is None and c.stats()["entries"] == 0


def test_cache_commands(tmp_path):
    from auralis_batch.cli import app

    runner = CliRunner()
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
        c.get(key(1))
    res = runner.invoke(app, ["cache", "stats", "--json", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    import json

    data = json.loads(res.stdout)
    assert data["entries"] == 1 and data["memory"]["hits"] == 1
    assert runner.invoke(
        app, ["cache", "path", "--cache-dir", str(tmp_path)]
    ).stdout.strip() == str(tmp_path)
    res = runner.invoke(
        app, ["cache", "prune", "--older-than", "30d", "--cache-dir", str(tmp_path)]
    )
    assert res.exit_code == 0 and "removed 0" in res.stdout
    assert runner.invoke(app, ["cache", "prune", "--older-than", "soon"]).exit_code == 2
    res = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0
    with FingerprintCache(tmp_path) as c:
        assert c.get(key(1)) is None
