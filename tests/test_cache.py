"""Fingerprint cache: persistence, LRU, keys, fast path, stats, faults, safety."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from auralis_batch.cache import (
    CacheWarning,
    FingerprintCache,
    NullCache,
    PcmHasher,
    UnsafeRowError,
    make_key,
    open_cache,
    parse_duration,
    path_key,
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
    # Values are inline; SQLite's full auto-vacuum gives evicted rows' pages back.
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


def _rewrite_in_place_keeping_size_and_mtime(f) -> None:
    """Other bytes through the same inode, its mtime set back (a tagger's "keep the
    file's time", a restore): only the status-change time tells."""
    st = f.stat()
    time.sleep(0.05)  # the kernel's clock for file times ticks every few ms
    with open(f, "r+b") as fh:
        fh.seek(1)
        fh.write(b"X")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = f.stat()
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    if now.st_ctime_ns == st.st_ctime_ns:
        pytest.skip("this filesystem's ctime did not move within 50 ms")


@pytest.mark.skipif(os.name == "nt", reason="st_ctime is the creation time on Windows")
def test_fast_path_misses_a_file_rewritten_in_place_with_its_time_set_back(tmp_path):
    f = tmp_path / "song.flac"
    f.write_bytes(b"audio")
    with FingerprintCache(tmp_path / "c") as c:
        c.remember_path(f, "abc")
        _rewrite_in_place_keeping_size_and_mtime(f)
        assert c.lookup_path(f) is None and c.peek_path(f) is None
        assert c.path_changed(f)  # so it is hashed before it is analysed


def test_a_path_entry_of_an_earlier_build_without_ctime_is_a_miss(tmp_path):
    """Such an entry cannot tell an in-place rewrite: its file is hashed once (the
    analysis then comes from the content key) and remembered with the ctime."""
    f = tmp_path / "song.flac"
    f.write_bytes(b"audio")
    with FingerprintCache(tmp_path / "c") as c:
        st = f.stat()
        c.set(
            path_key(f.resolve()),
            {"identity": [st.st_size, st.st_mtime_ns, st.st_ino], "content": "abc"},
        )
        assert c.lookup_path(f) is None and c.path_changed(f)
        c.remember_path(f, "abc")
        assert c.lookup_path(f) == "abc"


def _pcm_hash(blocks) -> str:
    h = PcmHasher()
    for block in blocks:
        h.update(block)
    return h.hexdigest()


def test_pcm_hash_ignores_block_boundaries():
    x = np.random.default_rng(0).standard_normal((2, 1000))
    assert _pcm_hash([x]) == _pcm_hash([x[:, :3], x[:, 3:999], x[:, 999:]])
    assert _pcm_hash([x]) != _pcm_hash([x[::-1]])
    expected = hashlib.sha256(x.T.astype("<f4").tobytes()).hexdigest()  # interleaved
    assert _pcm_hash([x]) == expected
    six = np.random.default_rng(1).standard_normal((6, 700)).astype(np.float32)  # 5.1
    expected = hashlib.sha256(six.T.astype("<f4").tobytes()).hexdigest()
    assert _pcm_hash([six[:, :10], six[:, 10:]]) == expected
    assert _pcm_hash([x[:1]]) == hashlib.sha256(x[0].astype("<f4").tobytes()).hexdigest()


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
    assert parse_duration("0") == 0.0
    with pytest.raises(ValueError, match="with its unit"):
        parse_duration("30")  # meant as days, it would have pruned all but 30 s
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


@pytest.mark.parametrize(
    "message", ["attempt to write a readonly database", "unable to open database file"]
)
def test_a_healthy_database_it_cannot_write_is_left_in_place(tmp_path, monkeypatch, message):
    """A read-only cache.db was called corrupt and moved aside (a trust sweep's finding,
    as root without CAP_DAC_OVERRIDE; simulated here, since root writes anyway)."""
    import sqlite3

    import diskcache

    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    before = sorted(p.name for p in tmp_path.iterdir())

    def refuse(*a, **k):
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(diskcache, "Cache", refuse)
    with pytest.warns(CacheWarning, match="unusable .*running without it") as record:
        c = open_cache(tmp_path)
    assert isinstance(c, NullCache) and len(record) == 1
    assert not any("corrupt" in str(w.message) for w in record)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


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
    assert "removed 1 fingerprint and 0 file paths" in res.stdout  # as stats counts them
    with FingerprintCache(tmp_path) as c:
        assert c.get(key(1)) is None


# --------------------------------------------------------------------------- one key, one hash
def test_key_format_is_the_one_existing_caches_hold():
    sha = "0123456789abcdef" * 4
    got = make_key(sha, fingerprint_version=2, tempo=True, analysis_sample_rate=44100)
    assert got == "fp:v2:tempo1:sr44100:" + sha
    got = make_key(sha, fingerprint_version=7, tempo=False, analysis_sample_rate=22050)
    assert got == "fp:v7:tempo0:sr22050:" + sha


def test_analysis_stores_under_make_key_of_the_pcm_hash(tmp_path, write_audio):
    import soundfile as sf

    import auralis_batch.analysis as analysis
    from auralis_batch.fingerprint import ANALYSIS_SAMPLE_RATE, FINGERPRINT_VERSION

    # one definition each: the analysis calls the cache's key and hash
    assert analysis.make_key is make_key and analysis.PcmHasher is PcmHasher
    assert not hasattr(analysis, "cache_key") and not hasattr(analysis, "hash_pcm_blocks")
    x = 0.1 * np.random.default_rng(1).standard_normal((2, 44100))
    path = write_audio("a.wav", x, 44100, subtype="PCM_16")
    with FingerprintCache(tmp_path / "c") as c:
        rec = analysis.analyze_file(path, cache=c)
    pcm, _ = sf.read(path, dtype="float32", always_2d=True)  # (n, channels): interleaved
    expected_sha = hashlib.sha256(pcm.astype("<f4").tobytes()).hexdigest()
    assert rec["content_sha256"] == expected_sha
    expected_key = f"fp:v{FINGERPRINT_VERSION}:tempo1:sr{ANALYSIS_SAMPLE_RATE}:{expected_sha}"
    with sqlite3.connect(tmp_path / "c" / "cache.db") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM Cache WHERE key LIKE 'fp:%'")]
    assert keys == [expected_key]


def test_a_file_rewritten_while_it_is_analysed_is_not_remembered_by_path(tmp_path, write_audio):
    """The path entry took the file's identity after the analysis: a file rewritten
    meanwhile was remembered under its new identity with the hash of the old bytes,
    and its next analysis came from the cache, of other audio (a review)."""
    import soundfile as sf

    import auralis_batch.analysis as analysis

    rng = np.random.default_rng(2)
    path = write_audio("a.wav", 0.1 * rng.standard_normal((2, 3 * 44100)), 44100)
    other = 0.3 * rng.standard_normal((3 * 44100, 2))

    def rewriting(blocks):
        for i, block in enumerate(blocks):
            if i == 0:
                time.sleep(0.05)  # the kernel's clock for file times ticks every few ms
                sf.write(path, other, 44100)
            yield block

    with FingerprintCache(tmp_path / "c") as c:
        analysis.analyze_file(path, cache=c, watch=rewriting)
        assert c.lookup_path(path) is None  # not remembered: the next look decodes
        again = analysis.analyze_file(path, cache=c)
        assert again["cached"] is False and c.lookup_path(path) is not None


def test_cache_module_and_stats_command_load_no_numpy_or_numba(tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    code = (
        "import sys\n"
        "from auralis_batch.cli import app\n"
        "import auralis_batch.cache\n"
        "try:\n"
        f"    app(['cache', 'stats', '--json', '--cache-dir', {str(tmp_path)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print([m for m in ('numpy', 'numba') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert '"entries": 1' in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_unsafe_row_error_is_an_auralis_error():
    from auralis_batch import errors

    assert UnsafeRowError is errors.UnsafeRowError
    assert issubclass(UnsafeRowError, errors.AuralisError)


# --------------------------------------------------------------------------- tampered rows
def _tamper(directory, sql: str, params=()) -> None:
    db = sqlite3.connect(os.path.join(directory, "cache.db"))
    try:
        db.execute(sql, params)
        db.commit()
    finally:
        db.close()


def _row(directory, k: str):
    with sqlite3.connect(os.path.join(directory, "cache.db")) as db:
        return db.execute(
            "SELECT mode, filename, typeof(value) FROM Cache WHERE key = ?", (k,)
        ).fetchone()


HEX = "ab/cd/" + "e" * 28 + ".val"  # shaped like a diskcache value file


def _victim(tmp_path):
    folder = tmp_path / "victim"
    folder.mkdir(exist_ok=True)
    (folder / "victim.txt").write_text("precious")
    return folder / "victim.txt"


def _filename(kind: str, tmp_path, cache_dir) -> str:
    victim = _victim(tmp_path)
    if kind == "relative":
        return "../victim/victim.txt"
    if kind == "absolute":
        return str(victim)
    if kind == "deep-relative":  # through real sub-folders of the cache
        (cache_dir / "ab" / "cd").mkdir(parents=True)
        return "ab/cd/../../../victim/victim.txt"
    if kind == "the database":
        return "cache.db"
    if kind == "file symlink":  # a value-file name whose file links outside (the link may
        # go, the target must stay)
        (cache_dir / "ab" / "cd").mkdir(parents=True)
        (cache_dir / HEX).symlink_to(victim)
        return HEX
    if kind == "folder symlink":  # a value-file name under a sub-folder linking outside
        outside = tmp_path / "victim" / "cd"
        outside.mkdir()
        (outside / ("e" * 28 + ".val")).write_text("precious")
        (cache_dir / "ab").symlink_to(tmp_path / "victim")
        return HEX
    raise AssertionError(kind)


def _op_get(c, k):
    assert c.get(k) is None


def _op_set(c, k):
    c.set(k, VALUE)  # over the tampered row: diskcache removes the old row's file
    assert c.get(k) == VALUE


def _op_clear(c, k):
    assert c.clear() >= 1


def _op_prune(c, k):
    c._disk._sql("UPDATE Cache SET access_time = 0 WHERE key = ?", (k,))
    assert c.prune(60) == 1


def _op_cull(c, k):
    c._disk.reset("size_limit", 1)
    c._disk.cull()
    c._disk.reset("size_limit", c.size_limit_bytes)
    assert k not in c._disk


def _op_evict(c, k):
    c._disk._sql("UPDATE Cache SET tag = 'x' WHERE key = ?", (k,))
    assert c._disk.evict("x") == 1


def _op_expire(c, k):
    c._disk._sql("UPDATE Cache SET expire_time = 1 WHERE key = ?", (k,))
    assert c._disk.expire() == 1


def _op_write_culls(c, k):
    # LRU eviction on write: the tampered row is the least recently used
    c._disk._sql("UPDATE Cache SET access_time = 0 WHERE key = ?", (k,))
    c._disk.reset("size_limit", 1)
    c.set(key(50), VALUE)
    c._disk.reset("size_limit", c.size_limit_bytes)
    assert k not in c._disk


OPERATIONS = [
    _op_get,
    _op_set,
    _op_clear,
    _op_prune,
    _op_cull,
    _op_evict,
    _op_expire,
    _op_write_culls,
]
FILENAMES = [
    "relative",
    "absolute",
    "deep-relative",
    "the database",
    "file symlink",
    "folder symlink",
]


@pytest.mark.parametrize("mode", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", FILENAMES)
@pytest.mark.parametrize("op", OPERATIONS, ids=lambda f: f.__name__[4:])
def test_tampered_filename_never_touches_anything_outside(tmp_path, op, kind, mode):
    cache_dir = tmp_path / "cache"
    with FingerprintCache(cache_dir) as c:
        c.set(key(1), VALUE)
        c.set(key(2), VALUE)
    name = _filename(kind, tmp_path, cache_dir)
    _tamper(
        cache_dir,
        "UPDATE Cache SET mode = ?, value = NULL, filename = ? WHERE key = ?",
        (mode, name, key(1)),
    )
    outside = sorted(p for p in (tmp_path / "victim").rglob("*"))
    with FingerprintCache(cache_dir) as c:
        op(c, key(1))
        assert (tmp_path / "victim" / "victim.txt").read_text() == "precious"
        assert sorted(p for p in (tmp_path / "victim").rglob("*")) == outside
        assert (cache_dir / "cache.db").is_file()
        assert op is _op_set or c.get(key(1)) is None  # a miss, never the file's text
        c.set(key(3), VALUE)  # still working
    with FingerprintCache(cache_dir) as c:
        assert c.get(key(3)) == VALUE


def test_the_issue_reproduction_through_the_cli(tmp_path, write_audio):
    from auralis_batch.cli import app

    runner = CliRunner()
    victim = _victim(tmp_path)
    song = write_audio("song.wav", 0.1 * np.ones((2, 22050)), 44100)
    cache_dir = tmp_path / "cache"
    args = ["analyze", str(song), "--json", "--cache-dir", str(cache_dir)]
    assert runner.invoke(app, args).exit_code == 0
    _tamper(
        cache_dir,
        "UPDATE Cache SET mode=2, value=NULL, filename='../victim/victim.txt'"
        " WHERE key LIKE 'fp:%'",
    )
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "precious"
    res = runner.invoke(app, args)  # the miss was analysed and stored again
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["cached"] == "disk"


def test_inside_means_strictly_below_the_root(monkeypatch):
    from auralis_batch.cache import _inside

    assert _inside("/c/root", "/c/root/ab/cd/x.val")
    assert not _inside("/c/root", "/c/root")  # the cache folder itself is never removed
    assert not _inside("/c/root", "/c/rootkit/x.val")  # a shared name prefix is outside
    assert not _inside("/c/root", "/c")

    def other_drive(paths):
        raise ValueError("Paths don't have the same drive")

    monkeypatch.setattr(os.path, "commonpath", other_drive)
    assert not _inside("/c/root", "/c/root/x")


def test_a_file_outside_is_never_read_as_a_value(tmp_path):
    # A row naming a JSON file elsewhere must not serve that file's content.
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"version": 1, "value": {"forged": True}}))
    with FingerprintCache(tmp_path / "c") as c:
        c.set(key(1), VALUE)
    for mode in (1, 2, 3):
        _tamper(
            tmp_path / "c",
            "UPDATE Cache SET mode = ?, value = NULL, filename = ? WHERE key = ?",
            (mode, str(planted), key(1)),
        )
        with FingerprintCache(tmp_path / "c") as c:
            assert c.get_with_source(key(1)) == (None, "miss")
            c.set(key(1), VALUE)
    assert planted.exists()


@pytest.mark.parametrize(
    "value",
    [
        b"\x00\xffgarbage",
        b"{not json",
        pickle.dumps({"version": 1, "value": VALUE}),
        b"[1, 2, 3]",
        b"42",
        b'"text"',
        b'{"value": {"a": 1}}',
        b'{"version": 1, "value": [1]}',
        b'{"version": 1, "value": null}',
        b'{"version": 1, "value": {"a": NaN}',
        b'{"version": 1, "value": {"a": NaN}}',  # NaN is no JSON: Python's parser takes it
        b'{"version": 1, "value": {"a": -Infinity}}',
        b'{"version": 1, "value": {"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}",
        42,
        1.5,
    ],
    ids=lambda v: repr(v)[:24],
)
def test_value_column_of_wrong_content_is_a_miss_and_deleted(tmp_path, value):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    _tamper(tmp_path, "UPDATE Cache SET value = ? WHERE key = ?", (value, key(1)))
    with FingerprintCache(tmp_path) as c:
        assert c.get_with_source(key(1)) == (None, "miss")
        assert key(1) not in c._disk
        c.set(key(1), VALUE)
        c._memory.clear()
        assert c.get_with_source(key(1)) == (VALUE, "disk")


def test_pickle_in_a_raw_row_or_a_pickle_mode_row_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(str(marker)))
    with FingerprintCache(tmp_path / "c") as c:
        c.set(key(1), VALUE)
        c.set(key(2), VALUE)
    _tamper(tmp_path / "c", "UPDATE Cache SET value = ? WHERE key = ?", (payload, key(1)))
    _tamper(tmp_path / "c", "UPDATE Cache SET mode = 4, value = ? WHERE key = ?", (payload, key(2)))
    with FingerprintCache(tmp_path / "c") as c:
        assert c.get(key(1)) is None and c.get(key(2)) is None
    assert not marker.exists()


def test_values_are_stored_inline_never_as_files(tmp_path):
    big = {"blob": "x" * 200_000}  # far above diskcache's default 32 KiB file threshold
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), big)
        c._memory.clear()
        assert c.get(key(1)) == big
    assert _row(tmp_path, key(1)) == (1, None, "blob")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".val"] == []


def test_legacy_value_file_inside_the_cache_is_a_miss_and_removed(tmp_path):
    import diskcache

    raw = diskcache.Cache(str(tmp_path))  # the stock Disk writes a .val file for this
    raw.set(key(1), b"x" * 40000)
    raw.close()
    (mode, filename, _) = _row(tmp_path, key(1))
    assert mode == 2 and (tmp_path / filename).is_file()
    with FingerprintCache(tmp_path) as c:
        assert c.get(key(1)) is None
    assert not (tmp_path / filename).exists()
    assert not (tmp_path / filename).parent.parent.exists()  # emptied sub-folders go
    assert (tmp_path / "cache.db").is_file()


def test_refused_rows_raise_unsafe_row_error_inside(tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
        c._disk._sql("UPDATE Cache SET filename = 'x' WHERE key = ?", (key(1),))
        with pytest.raises(UnsafeRowError, match="names a file"):
            c._disk.get(key(1))
        c._disk._sql("UPDATE Cache SET filename = NULL, mode = 3 WHERE key = ?", (key(1),))
        with pytest.raises(UnsafeRowError, match="mode 3"):
            c._disk.get(key(1))


def test_tampered_stats_row_restarts_its_count(tmp_path):
    victim = _victim(tmp_path)
    with FingerprintCache(tmp_path / "c") as c:
        c.get(key(1))
        c._disk.set("__stats__:disk_misses", 7)  # a row an earlier version kept
    _tamper(tmp_path / "c", "UPDATE AuralisStats SET n = 'many'")
    _tamper(
        tmp_path / "c",
        "UPDATE Cache SET mode = 4, value = NULL, filename = ? WHERE key LIKE '__stats__:%'",
        (str(victim),),
    )
    with FingerprintCache(tmp_path / "c") as c:
        c.get(key(1))
        s = c.stats()
    assert s["memory"]["misses"] == 1 and s["disk"]["misses"] == 1
    assert victim.read_text() == "precious"


def test_counters_survive_eviction_and_earlier_rows_are_taken_over(tmp_path):
    """The counters were cache rows, and the LRU eviction of a full cache deleted
    them: 1,000 lookups counted 488, and the next run's 1,000 none (fourth sweep)."""
    for run in range(2):  # the second run's writes evict the oldest rows
        with FingerprintCache(tmp_path / "c", size_limit_bytes=64 * 1024) as c:
            for i in range(400 * run, 400 * run + 400):
                c.get(key(i))
                c.set(key(i), {"n": i, "pad": "x" * 1000})
    with FingerprintCache(tmp_path / "c", size_limit_bytes=64 * 1024) as c:
        c._disk.set("__stats__:disk_hits", 5)  # as an earlier version kept them
        assert len(c._disk) < 100  # evicted: the cache holds a fraction of them
        c.get(key(0))  # evicted long ago: a miss, and something to flush
        s = c.stats()
        assert s["memory"]["misses"] == 801 and s["disk"]["misses"] == 801
        assert s["disk"]["hits"] == 5
        assert "__stats__:disk_hits" not in c._disk  # moved into the table
    with FingerprintCache(tmp_path / "c") as c:
        c.clear()
        assert c.stats()["disk"] == {"hits": 0, "misses": 0, "hit_rate": 0.0}
    # a table of that name without its key (tampered): the counts still add up
    _tamper(tmp_path / "c", "DROP TABLE AuralisStats")
    _tamper(tmp_path / "c", "CREATE TABLE AuralisStats (name TEXT, n INTEGER)")
    for _ in range(3):
        with FingerprintCache(tmp_path / "c") as c:
            c.get(key(0))
    with FingerprintCache(tmp_path / "c") as c:
        assert c.stats()["disk"]["misses"] == 3


# --------------------------------------------------------------------------- flush
def _count_and_exit(directory, flush):
    c = FingerprintCache(directory)
    c.get(key(1))  # disk hit
    c.get(key(1))  # memory hit
    c.get(key(99))  # miss
    if flush:
        c.flush()
    os._exit(0)  # like a batch worker: the cache is never closed


def test_flush_adds_the_counts_of_caches_never_closed(tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    ctx = multiprocessing.get_context("spawn")
    for flush in (True, True, False):
        p = ctx.Process(target=_count_and_exit, args=(str(tmp_path), flush))
        p.start()
        p.join(60)
        assert p.exitcode == 0
    with FingerprintCache(tmp_path) as c:
        s = c.stats()
    # the two processes that flushed; the one that did not lost its counts
    assert s["memory"] == {"hits": 2, "misses": 4, "hit_rate": 0.3333}
    assert s["disk"] == {"hits": 2, "misses": 2, "hit_rate": 0.5}


def test_flush_sums_instances_and_is_idempotent(tmp_path):
    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    a, b = FingerprintCache(tmp_path), FingerprintCache(tmp_path)
    a.get(key(1))
    b.get(key(1))
    b.get(key(2))
    a.flush()
    b.flush()
    b.flush()  # nothing new pending: nothing added
    with FingerprintCache(tmp_path) as c:
        s = c.stats()
    assert s["disk"]["hits"] == 2 and s["disk"]["misses"] == 1
    assert s["memory"]["misses"] == 3
    a.close()
    b.close()


def test_flush_with_nothing_pending_touches_no_store_and_keeps_counts_on_failure(
    tmp_path, monkeypatch
):
    c = FingerprintCache(tmp_path)

    def boom(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as m:
        m.setattr(c._disk, "transact", boom)
        c.flush()  # nothing pending: no store call, no warning (warnings are errors)
        c.get(key(1))
        with pytest.warns(CacheWarning, match="disk I/O error"):
            c.flush()
    c.flush()  # the counts kept pending reach the store now
    s = c.stats()
    assert s["memory"]["misses"] == 1 and s["disk"]["misses"] == 1
    c.close()


def test_stats_count_one_lookup_per_analysed_file(tmp_path, write_audio):
    from auralis_batch.analysis import analyze_file

    path = write_audio("a.wav", 0.1 * np.ones((2, 22050)), 44100)
    with FingerprintCache(tmp_path / "c") as c:
        assert analyze_file(path, cache=c)["cached"] is False  # never seen: a miss
    with FingerprintCache(tmp_path / "c") as c:  # another process, same store
        assert analyze_file(path, cache=c)["cached"] == "disk"
        assert analyze_file(path, cache=c)["cached"] == "memory"
        s = c.stats()
    assert s["memory"] == {"hits": 1, "misses": 2, "hit_rate": 0.3333}
    assert s["disk"] == {"hits": 1, "misses": 1, "hit_rate": 0.5}


def test_counts_reach_the_store_every_stats_flush_every_counts(tmp_path):
    from auralis_batch.cache import STATS_FLUSH_EVERY

    with FingerprintCache(tmp_path) as c:
        c.set(key(1), VALUE)
    c, reader = FingerprintCache(tmp_path), FingerprintCache(tmp_path)
    c.get(key(1))  # two counts: a memory miss, a disk hit
    for _ in range(STATS_FLUSH_EVERY - 3):
        c.get(key(1))  # one memory hit each
    assert reader.stats()["disk"]["hits"] == 0  # STATS_FLUSH_EVERY - 1 counts pending in c
    c.get(key(1))
    s = reader.stats()
    assert s["disk"]["hits"] == 1 and s["memory"]["hits"] == STATS_FLUSH_EVERY - 2
    c.close()
    reader.close()


def test_null_cache_flush_is_a_no_op():
    c = NullCache()
    assert c.flush() is None
    assert c.stats()["memory"]["hits"] == 0


# --------------------------------------------------------------------------- analyze's fast path
def test_the_fast_paths_extensions_agree_with_the_decoders():
    from auralis_batch.audio import readable_extensions
    from auralis_batch.recall import AUDIO_EXTENSIONS, NOT_AUDIO_EXTENSIONS

    assert NOT_AUDIO_EXTENSIONS.isdisjoint(readable_extensions())
    assert AUDIO_EXTENSIONS <= readable_extensions()


def test_analyze_from_the_cache_lists_what_the_full_path_lists(tmp_path, write_audio):
    # symlinks under other names and files named once on the command line are known
    # to the cache, but a folder's analyze lists only audio extensions
    from auralis_batch.cli import app

    from .conftest import music_like

    lib = tmp_path / "lib"
    write_audio("lib/a.flac", music_like(seconds=1.0))
    runner = CliRunner()
    cache = ["--cache-dir", str(tmp_path / "cache")]
    odd = tmp_path / "odd.dat"
    odd.write_bytes((lib / "a.flac").read_bytes())
    assert runner.invoke(app, ["analyze", str(odd), "--json", *cache]).exit_code == 0
    (lib / "latest").symlink_to(lib / "a.flac")
    (lib / "a.flac.bak").symlink_to(lib / "a.flac")
    os.replace(odd, lib / "odd.dat")
    listed = []
    for args in (["--no-cache"], cache, cache):  # full path, then cached twice
        res = runner.invoke(app, ["analyze", str(lib), "--json", *args])
        assert res.exit_code == 0, res.output
        listed.append([r["path"] for r in json.loads(res.stdout)])
    assert listed == [[str(lib / "a.flac")]] * 3


def test_analyze_from_the_cache_answers_as_the_full_path_and_counts_once(tmp_path, write_audio):
    from auralis_batch.cli import app

    from .conftest import music_like

    write_audio("lib/a.flac", music_like(seconds=2.0))
    write_audio("lib/sub/b.wav", music_like(seconds=1.0, seed=2))
    (tmp_path / "lib" / "folder.jpg").write_bytes(b"\xff\xd8")
    cache_dir = tmp_path / "cache"
    runner = CliRunner()

    def analyze() -> list[dict]:
        res = runner.invoke(
            app, ["analyze", str(tmp_path / "lib"), "--json", "--cache-dir", str(cache_dir)]
        )
        assert res.exit_code == 0, res.output
        records = json.loads(res.stdout)
        for r in records:
            r.pop("seconds")
        return records

    cold = analyze()
    warm = analyze()  # every file from the cache, before the decoder loads
    assert [r["cached"] for r in cold] == [False, False]
    assert [r["cached"] for r in warm] == ["disk", "disk"]
    assert [{**r, "cached": None} for r in warm] == [{**r, "cached": None} for r in cold]
    # one new track: the full path; the fast path's look counted no miss of its own
    write_audio("lib/c.flac", music_like(seconds=1.0, seed=5))
    with FingerprintCache(cache_dir) as c:
        before = c.stats()["disk"]
    mixed = analyze()
    assert [r["cached"] for r in mixed] == ["disk", False, "disk"]
    with FingerprintCache(cache_dir) as c:
        after = c.stats()["disk"]
    assert after["misses"] - before["misses"] == 1  # c.flac, once (a path never seen)
    assert after["hits"] - before["hits"] == 2  # a and b, once each


def test_a_fallback_after_known_files_counts_each_lookup_once(tmp_path, write_audio):
    # b.wav's path is known but its row does not answer (analysed with tempo off,
    # asked with tempo on): the folder takes the full path, and a.flac's hit and
    # b.wav's miss are each counted once
    from auralis_batch.cli import app

    from .conftest import music_like

    a = write_audio("lib/a.flac", music_like(seconds=1.0))
    b = write_audio("lib/b.wav", music_like(seconds=1.0, seed=2))
    cache_dir = tmp_path / "cache"
    runner = CliRunner()

    def analyze(*args: str) -> None:
        res = runner.invoke(app, ["analyze", *args, "--json", "--cache-dir", str(cache_dir)])
        assert res.exit_code == 0, res.output

    analyze(str(a))
    analyze(str(b), "--no-tempo")
    with FingerprintCache(cache_dir) as c:
        before = c.stats()
    analyze(str(tmp_path / "lib"))
    with FingerprintCache(cache_dir) as c:
        after = c.stats()
    delta = {
        level: {k: after[level][k] - before[level][k] for k in ("hits", "misses")}
        for level in ("memory", "disk")
    }
    assert delta == {"memory": {"hits": 0, "misses": 2}, "disk": {"hits": 1, "misses": 1}}


def test_a_named_file_is_analysed_whatever_its_extension(tmp_path, write_audio):
    from auralis_batch.cli import app

    from .conftest import music_like

    track = write_audio("lib/a.flac", music_like(seconds=1.0))
    cover = tmp_path / "lib" / "cover.jpg"
    cover.write_bytes(b"\xff\xd8 not audio")
    runner = CliRunner()
    args = ["analyze", "--json", "--cache-dir", str(tmp_path / "cache")]
    assert runner.invoke(app, [*args, str(tmp_path / "lib")]).exit_code == 0  # all cached now
    res = runner.invoke(app, [*args, str(track), str(cover)])
    assert res.exit_code == 1, res.output
    records = json.loads(res.stdout)
    assert [r["path"] for r in records] == [str(track), str(cover)]
    assert "error" in records[1] and "not a readable audio file" in records[1]["error"]


def test_inspecting_a_cache_that_does_not_exist_creates_nothing(tmp_path):
    """`cache stats --cache-dir /nonexistent/deep/x` created that folder and a cache.db
    (a second trust sweep's note): a typo should leave nothing behind."""
    from typer.testing import CliRunner

    from auralis_batch.cli import app

    missing = tmp_path / "no" / "such" / "cache"
    for command in (["stats"], ["prune", "--older-than", "1d"], ["clear"]):
        res = CliRunner().invoke(app, ["cache", *command, "--cache-dir", str(missing)])
        assert res.exit_code == 0, res.output
        assert f"no fingerprint cache at {missing} yet" in " ".join(res.output.split())
        assert "of 0 B" not in res.output  # a limit of nothing: no cache there
    assert not (tmp_path / "no").exists()
    # a folder of the user's is not a cache: nothing is added to it (a sweep: cache.db)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for command in (["stats"], ["prune", "--older-than", "1d"], ["clear"]):
        res = CliRunner().invoke(app, ["cache", *command, "--cache-dir", str(mine)])
        assert res.exit_code == 0, res.output
        assert f"no fingerprint cache at {mine} yet" in " ".join(res.output.split())
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for command in ("stats", "path"):  # `path` printed the file as the folder in use
        res = CliRunner().invoke(app, ["cache", command, "--cache-dir", str(a_file)])
        assert res.exit_code == 2 and f"--cache-dir {a_file}: is a file, not a folder" in res.output
    # the variable chose it: the message names the variable, not a flag not given
    res = CliRunner().invoke(app, ["cache", "stats"], env={"AURALIS_CACHE_DIR": str(a_file)})
    assert res.exit_code == 2 and f"AURALIS_CACHE_DIR {a_file}: is a file" in res.output


def test_a_folder_scan_takes_mpeg_layer_2_and_leaves_header_less_raw():
    """``.mp2``/``.mpa`` decode (libsndfile's MPEG support) and were left out of
    folder scans while the same file named on the command line mastered; a ``.raw``
    file was taken and always failed (no header: no sample rate)."""
    import soundfile as sf

    from auralis_batch.audio import readable_extensions

    exts = readable_extensions()
    assert "raw" not in exts
    if "MP3" in sf.available_formats():
        assert {"mp3", "mp2", "mpa"} <= exts


def test_the_cache_size_is_set_from_the_environment(tmp_path, monkeypatch):
    """The README's 2 GiB could only be changed through the Python API."""
    from auralis_batch.cache import (
        CACHE_SIZE_ENV,
        DEFAULT_SIZE_LIMIT_BYTES,
        CacheWarning,
        open_cache,
        size_limit_from_env,
    )

    monkeypatch.setenv(CACHE_SIZE_ENV, "512")
    assert size_limit_from_env() == 512 * 2**20
    with open_cache(tmp_path / "c") as c:
        assert c.stats()["size_limit_bytes"] == 512 * 2**20
    for bad in ("lots", "0", "nan", "-5"):
        monkeypatch.setenv(CACHE_SIZE_ENV, bad)
        with pytest.warns(CacheWarning, match=f"{CACHE_SIZE_ENV}.* between 1 and 1048576:"):
            assert size_limit_from_env() == DEFAULT_SIZE_LIMIT_BYTES
    monkeypatch.delenv(CACHE_SIZE_ENV)
    assert size_limit_from_env() == DEFAULT_SIZE_LIMIT_BYTES


def test_a_surround_record_measured_with_the_old_channel_weights_is_a_miss(tmp_path):
    """7.1's back pair weighed 1.41 until the sixth sweep: a cached record of a 7- or
    8-channel file from then holds that loudness, and is analysed again; the records
    of every other layout (a music library's) stay hits."""
    from auralis_batch.analysis import analyze_file
    from auralis_batch.cache import FingerprintCache, make_key
    from auralis_batch.recall import cached_record
    from auralis_batch.versions import ANALYSIS_SAMPLE_RATE, FINGERPRINT_VERSION, WEIGHTS_KEY

    from .conftest import music_like

    cache = FingerprintCache(tmp_path / "cache")
    for channels in (2, 8):
        path = tmp_path / f"{channels}.wav"
        x = np.tile(music_like(seconds=2.0)[:1], (channels, 1))
        sf.write(path, x.T, 44100, subtype="PCM_24")
        rec = analyze_file(path, tempo=False, cache=cache)
        assert WEIGHTS_KEY not in rec
        content = rec["content_sha256"]
        hit = cached_record(cache, content, False)
        assert hit is not None and WEIGHTS_KEY not in hit  # the cache's mark stays in it
        key = make_key(
            content,
            fingerprint_version=FINGERPRINT_VERSION,
            tempo=False,
            analysis_sample_rate=ANALYSIS_SAMPLE_RATE,
        )
        old = dict(cache.get(key))
        del old[WEIGHTS_KEY]  # as written before the revision
        cache.set(key, old)
        again = cached_record(cache, content, False)
        assert (again is None) == (channels == 8)


def _genuine_record(tmp_path, write_audio) -> tuple[Path, dict]:
    from auralis_batch.analysis import analyze_file

    x = 0.1 * np.random.default_rng(3).standard_normal((2, 3 * 44100))
    path = write_audio("a.wav", x, 44100, subtype="PCM_16")
    with FingerprintCache(tmp_path / "c") as c:
        analyze_file(path, cache=c)
    with sqlite3.connect(tmp_path / "c" / "cache.db") as db:
        ((raw,),) = db.execute("SELECT value FROM Cache WHERE key LIKE 'fp:%'").fetchall()
    return path, json.loads(bytes(raw))


def _set(record: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(record))
    *parents, last = dotted.split(".")
    cur = out
    for p in parents:
        cur = cur[p]
    cur[last] = value
    return out


#: Values a tampered or rotten row may hold, each one no analysis gives (a review
#: mastered a NaN loudness as silence, failed a track on -300 LUFS, crashed on text).
TAMPERED = [
    ("loudness.integrated_lufs", None),  # "silent" beside a loud momentary maximum
    ("loudness.integrated_lufs", -300.0),
    ("loudness.integrated_lufs", "abc"),
    ("loudness.true_peak_dbtp", 1e308),
    ("loudness.lra_lu", -1.0),
    ("integrated_lufs", -20.0),  # the top level disagrees with the loudness
    ("fingerprint.band_energy.mid", None),
    ("fingerprint.band_energy.mid", 7.0),
    ("fingerprint.band_energy", "x"),
    ("fingerprint.band_energy", {"mid": 0.5}),
    ("fingerprint.spectral_centroid_hz", "high"),
    ("fingerprint.version", "8"),
    ("fingerprint.tempo_candidates", [{"bpm": "fast"}]),
    ("tempo_bpm", -5.0),
    ("tempo_confidence", 3.0),
    ("sample_rate", 44100.0),
    ("channels", 0),
    ("duration_s", True),
    ("spectrum_db", [0.0]),
    ("spectrum_db", ["x"] * 31),
    ("loudness_curve", {"step_s": 0.1, "lufs": [1e9]}),
]


def test_a_genuine_record_is_well_formed(tmp_path, write_audio):
    from auralis_batch.recall import well_formed

    _, env = _genuine_record(tmp_path, write_audio)
    assert well_formed(env["value"])


@pytest.mark.parametrize(("field", "value"), TAMPERED, ids=lambda v: str(v)[:30])
def test_a_record_no_analysis_gives_is_not_well_formed(tmp_path, write_audio, field, value):
    from auralis_batch.recall import well_formed

    _, env = _genuine_record(tmp_path, write_audio)
    assert not well_formed(_set(env["value"], field, value))


@pytest.mark.parametrize(
    ("field", "value"),
    [TAMPERED[0], TAMPERED[2], TAMPERED[7]],
    ids=lambda v: str(v)[:30],
)
def test_a_tampered_record_is_analysed_again_and_replaced(tmp_path, write_audio, field, value):
    from auralis_batch.analysis import analyze_file

    path, env = _genuine_record(tmp_path, write_audio)
    good = env["value"]
    env["value"] = _set(good, field, value)
    _tamper(
        tmp_path / "c",
        "UPDATE Cache SET value = ? WHERE key LIKE 'fp:%'",
        (json.dumps(env).encode(),),
    )
    with FingerprintCache(tmp_path / "c") as c:
        rec = analyze_file(path, cache=c)
    assert rec["cached"] is False
    assert rec["loudness"] == good["loudness"]
    assert rec["fingerprint"] == good["fingerprint"]
    with FingerprintCache(tmp_path / "c") as c:  # the row holds the analysis again
        assert analyze_file(path, cache=c)["cached"] == "disk"


@pytest.mark.parametrize("limit", [-1, 0, 2048, 1.5e9, "1", True, 2**41])
def test_a_size_limit_out_of_range_is_refused(tmp_path, limit):
    """-1 was taken and stored nothing; 2048 (meant as MiB) kept a 2 KB cache."""
    from auralis_batch.errors import ParameterError

    with pytest.raises(ParameterError, match="size_limit_bytes: must be a whole number"):
        open_cache(tmp_path, size_limit_bytes=limit)
    with pytest.raises(ParameterError):
        FingerprintCache(tmp_path, size_limit_bytes=limit)
