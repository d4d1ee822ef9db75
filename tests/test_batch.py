"""Overnight-run guarantees: resume, kill -9, crashing workers, album mode, tags."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from auralis_batch.audio import temporary_name
from auralis_batch.batch import RunSettings, run_master
from auralis_batch.cli import app
from auralis_batch.journal import JOURNAL_NAME
from auralis_batch.plan import STATE_DIR as JOURNAL_DIR

from .conftest import music_like

runner = CliRunner()


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def small_library(tmp_path, write_audio):
    for i in range(4):
        write_audio(f"lib/a/{i:02d}.flac", music_like(seconds=2.5, seed=i, level_db=-20 - 3 * i))
    return tmp_path / "lib"


def _statuses(result):
    return sorted((r["input"].rsplit("/", 1)[-1], r["status"]) for r in result.records)


def test_resume_skips_done_tracks_and_overwrite_redoes(tmp_path, small_library):
    out = tmp_path / "out"
    t0 = time.monotonic()
    first = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    elapsed = time.monotonic() - t0
    assert first.summary["ok"] == 4
    # the run's wall time, beside the tracks' own times added up
    assert 0 < first.summary["wall_seconds"] <= elapsed + 0.001  # rounded to ms
    assert first.summary["seconds"] <= first.summary["wall_seconds"]  # one job: no overlap
    journal = out / JOURNAL_DIR / JOURNAL_NAME
    done = [ln for ln in journal.read_text().splitlines() if '"output_identity"' in ln]
    assert len(done) == 4
    second = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    assert {s for _, s in _statuses(second)} == {"skipped"}
    # a changed input and a changed preset are redone
    sf.write(small_library / "a" / "00.flac", music_like(seconds=2.0, seed=9).T, 44100)
    third = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    assert dict(_statuses(third))["00.flac"] == "ok"
    assert sum(s == "skipped" for _, s in _statuses(third)) == 3
    warm = run_master([small_library], out, RunSettings(preset="warm", use_cache=False), n_jobs=1)
    assert warm.summary["ok"] == 4
    forced = run_master(
        [small_library], out, RunSettings(preset="warm", use_cache=False), n_jobs=1, overwrite=True
    )
    assert forced.summary["ok"] == 4


def test_a_flag_that_restates_the_preset_redoes_nothing(tmp_path, small_library):
    """--target-lufs or --ceiling-dbtp equal to the preset's own, and --tempo or
    --no-tempo, change no master: a re-run with them skips every
    track (a nightly command with one more such flag redid the whole library), also
    where an earlier version journaled the flags as given, with or without them now.
    A flag that does change the master still redoes it."""
    import dataclasses

    from auralis_batch.presets import load_preset

    warm = load_preset("warm")
    plain = RunSettings(preset="warm", use_cache=False)
    restated = dataclasses.replace(
        plain,
        target_lufs=warm.target_lufs,
        ceiling_dbtp=warm.limiter.ceiling_dbtp,
        tempo=False,
    )
    assert restated.fingerprint() == plain.fingerprint()
    assert restated.fingerprints()[0] == plain.fingerprint()
    assert set(restated.fingerprints()) == set(plain.fingerprints())
    assert restated._hash() in plain.fingerprints()  # as earlier versions journaled it
    for changed in (
        dataclasses.replace(plain, target_lufs=warm.target_lufs - 2),
        dataclasses.replace(plain, ceiling_dbtp=warm.limiter.ceiling_dbtp - 1),
        RunSettings(preset="gentle", use_cache=False),
    ):  # settings that change the master share no hash with these
        assert not set(changed.fingerprints()) & set(plain.fingerprints()), changed
    # --tempo changes the report only (the audio and tags are the same bytes): a master
    # of either is done for the other (a user's try re-rendered a library for it)
    tempo_on = dataclasses.replace(plain, tempo=True)
    assert plain.fingerprint() in tempo_on.fingerprints()
    assert tempo_on.fingerprint() in plain.fingerprints()
    out = tmp_path / "out"
    assert run_master([small_library], out, plain, n_jobs=1).summary["ok"] == 4
    assert run_master([small_library], out, restated, n_jobs=1).summary["skipped"] == 4
    # a journal of an earlier version, which hashed the flags as given, is still done
    journal = out / JOURNAL_DIR / JOURNAL_NAME
    text = journal.read_text().replace(plain.fingerprint(), restated._hash())
    journal.write_text(text)
    assert run_master([small_library], out, restated, n_jobs=1).summary["skipped"] == 4
    assert run_master([small_library], out, plain, n_jobs=1).summary["skipped"] == 4
    louder = dataclasses.replace(plain, target_lufs=warm.target_lufs + 2)
    assert louder.fingerprint() != plain.fingerprint()
    assert run_master([small_library], out, louder, n_jobs=1).summary["ok"] == 4


def test_torn_journal_line_is_ignored(tmp_path, small_library):
    out = tmp_path / "out"
    run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    journal = out / JOURNAL_DIR / JOURNAL_NAME
    lines = [ln for ln in journal.read_text().splitlines() if '"output_identity"' in ln]
    journal.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])  # killed mid-write
    again = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    # the two unjournaled outputs are not the user's: nothing says this run planned
    # them, so they are refused, never silently replaced
    assert again.summary["failed"] == 2 and again.summary["skipped"] == 2
    # the entry appended after the torn tail is a line of its own: the next run sees it
    forced = run_master(
        [small_library], out, RunSettings(use_cache=False), n_jobs=1, overwrite=True
    )
    assert forced.summary["ok"] == 4
    last = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    assert last.summary["skipped"] == 4


def test_a_users_file_shaped_like_a_temporary_is_never_removed(tmp_path, small_library):
    """A run removes the temporaries of the outputs it plans, by name: a user's file of
    that shape was deleted on every run (a trust sweep's finding). Only a regular file
    that starts as audio this tool writes (or is empty: just created) is one of ours."""
    out = tmp_path / "out"
    run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    folder = out / "a"
    users = {
        folder / ".00.flac.abcdefgh.partial": b"mine\n",
        folder / ".01.flac.ijklmnop.partial": b"RIFX not ours",
        # audio of the user's, named in the shape but not with a name of ours
        folder / ".00.flac.12345678.partial": b"fLaC" + bytes(100),
        folder / ".01.flac.userfile.partial": b"",
    }
    for path, data in users.items():
        path.write_bytes(data)
    (folder / ".01.flac.qrstuvwx.partial").symlink_to(small_library / "a" / "01.flac")
    ours = [temporary_name(folder / "00.flac"), temporary_name(folder / "01.flac")]
    ours[0].write_bytes(b"fLaC" + bytes(100))  # what a killed run leaves
    ours[1].write_bytes(b"")
    for overwrite in (False, True):  # a run that skips them all, and one that redoes them
        result = run_master(
            [small_library], out, RunSettings(use_cache=False), n_jobs=1, overwrite=overwrite
        )
        assert all(path.read_bytes() == data for path, data in users.items())
        # the FLAC named as earlier builds named theirs is said, not removed
        (legacy,) = [n for n in result.notes if "a build before 2026-12-02" in n]
        assert legacy.startswith(f"2 files such as {folder / '.00.flac.12345678.partial'}: ")
        assert (folder / ".01.flac.qrstuvwx.partial").is_symlink()
        assert not any(p.exists() for p in ours)


def test_a_copied_output_folder_and_a_renamed_input_folder_are_still_done(
    tmp_path, small_library, monkeypatch
):
    """``cp -r OUT COPY`` gives every master a new time: all were kept aside as altered
    and redone, though byte for byte the same; after ``mv lib lib2`` every track was
    mastered again 'from another input' (a trust sweep's findings). The same bytes are
    the same master, and the same file (inode, size, time) is the same input; both
    are journaled again, so the next run reads no master."""

    from auralis_batch import journal

    settings = RunSettings(use_cache=False)
    run_master([small_library], tmp_path / "out", settings, n_jobs=1)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "out", copy, copy_function=shutil.copyfile)  # no times
    masters = sorted(copy.rglob("*.flac"))
    for m in masters:
        os.utime(m, ns=(m.stat().st_atime_ns, m.stat().st_mtime_ns + 10**9))
    moved = tmp_path / "moved"
    small_library.rename(moved)
    again = run_master([moved], copy, settings, n_jobs=1)
    assert {s for _, s in _statuses(again)} == {"skipped"}
    assert sorted(copy.rglob("*.flac")) == masters  # nothing kept aside, nothing redone

    def no_hashing(*a, **k):
        raise AssertionError("a master was read again")

    monkeypatch.setattr(journal, "sha256_file", no_hashing)
    third = run_master([moved], copy, settings, n_jobs=1)
    assert {s for _, s in _statuses(third)} == {"skipped"}
    monkeypatch.undo()
    data = bytearray(masters[0].read_bytes())  # same size, other bytes: altered
    data[-1] ^= 1
    masters[0].write_bytes(bytes(data))
    fourth = run_master([moved], copy, settings, n_jobs=1)
    assert dict(_statuses(fourth))[masters[0].name] == "ok"
    assert any(".altered-" in p.name for p in masters[0].parent.iterdir())


def test_an_edited_master_stays_at_its_name_until_its_redo_is_in_place(tmp_path, write_audio):
    """An edited master was moved aside while the run was planned: when its redo then
    failed (the source corrupt, or the run stopped), nothing was left at its name and
    the report said "kept as ..., redone" (a sweep). It is now kept aside as the new
    master takes its place, and only then."""
    import soundfile as sf

    src = write_audio("lib/a.flac", music_like(seconds=2.0, seed=3))
    good = src.read_bytes()
    out = tmp_path / "O"
    run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1)
    master = out / "a.flac"
    edited = bytearray(master.read_bytes())
    edited[-1] ^= 1  # the user's edit (a tag, say): other bytes than journaled
    master.write_bytes(bytes(edited))
    src.write_bytes(good[:5000])  # the source is now cut short: its redo fails
    failed = run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1)
    assert _statuses(failed) == [("a.flac", "failed")]
    assert master.read_bytes() == bytes(edited)  # still at its name
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".flac") == ["a.flac"]
    assert not [p for p in out.iterdir() if ".altered-" in p.name]
    src.write_bytes(good)
    redone = run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1)
    rec = redone.records[0]
    assert rec["status"] == "ok"
    aside = [p for p in out.iterdir() if ".altered-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(edited)
    assert (
        rec["replaced"]
        == f"it changed since auralis-batch wrote it: kept as {aside[0].name}, redone"
    )
    assert sf.info(master).frames > 0 and master.read_bytes() != bytes(edited)


@pytest.mark.parametrize("journaled_bytes", [True, False])
def test_a_source_copied_or_touched_with_its_bytes_is_not_mastered_again(
    tmp_path, small_library, monkeypatch, journaled_bytes
):
    """A library copied to another disk without its times (new inode and mtime), or
    touched, was mastered again whole, each track "[replaced]: the input changed" (a
    newcomer's try). The journal keeps the SHA-256 of the bytes mastered: the same
    bytes are done, journaled again under the new identity; other bytes of the same
    size are mastered again. A journal of an earlier version, without it, cannot tell."""

    from auralis_batch import engine, journal

    if not journaled_bytes:
        monkeypatch.setattr(engine, "sha256_if_same", lambda *a, **k: None)
    settings = RunSettings(use_cache=False)
    out = tmp_path / "out"
    run_master([small_library], out, settings, n_jobs=1)
    masters = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    copy = tmp_path / "copy"
    shutil.copytree(small_library, copy, copy_function=shutil.copyfile)  # no times
    shutil.rmtree(small_library)
    copy.rename(small_library)  # back in its place: new inodes, new times
    for src in small_library.rglob("*.flac"):
        os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    warm = RunSettings(use_cache=False, preset="warm")
    dry = run_master([small_library], out, warm, dry_run=True)
    assert not dry.notes  # other settings: mastered again, nothing read to check
    again = run_master([small_library], out, settings, n_jobs=1)
    if not journaled_bytes:
        assert {s for _, s in _statuses(again)} == {"ok"}
        assert all("the input changed" in r["replaced"] for r in again.records)
        return
    assert {s for _, s in _statuses(again)} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == masters  # untouched
    assert again.notes == [
        "4 inputs' time or inode changed (touched, chmod, or copied without times); read to "
        "check: the bytes mastered, so not mastered again"
    ]

    def no_hashing(*a, **k):
        raise AssertionError("a source was read again")

    monkeypatch.setattr(journal, "sha256_file", no_hashing)  # journaled under the new one
    third = run_master([small_library], out, settings, n_jobs=1)
    assert {s for _, s in _statuses(third)} == {"skipped"}
    monkeypatch.undo()
    # the same bytes in another folder that is still there: not this input's master
    twin = tmp_path / "twin"
    shutil.copytree(small_library, twin, copy_function=shutil.copyfile)
    other = run_master([twin], out, settings, n_jobs=1)
    assert {s for _, s in _statuses(other)} == {"failed"}
    assert all("the master of another input" in r["error"] for r in other.records)


def test_an_album_redone_for_another_track_is_not_said_to_be_kept(tmp_path, write_audio):
    """--album: one track touched, another really changed; the album is mastered again
    whole, and the note said the touched one was not (a sweep)."""
    a = write_audio("lib/disc/a.wav", music_like(seconds=2.0, seed=1))
    b = write_audio("lib/disc/b.wav", music_like(seconds=2.0, seed=2))
    settings = RunSettings(use_cache=False, album=True)
    run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    t = a.stat().st_mtime_ns
    os.utime(a, ns=(t, t + 10**9))  # touched: the same bytes
    data = bytearray(b.read_bytes())
    data[-2] ^= 0x40  # changed: other bytes of the same size
    b.write_bytes(bytes(data))
    again = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    assert {s for _, s in _statuses(again)} == {"ok"}
    assert not any("read to check" in n for n in again.notes), again.notes


def test_a_source_with_other_bytes_of_the_same_size_is_mastered_again(tmp_path, write_audio):
    """Only the same bytes are the same input: a WAV whose samples changed in place, its
    size the same and its time moved, is mastered again."""
    src = write_audio("lib/a.wav", music_like(seconds=2.0, seed=3))
    settings = RunSettings(use_cache=False)
    run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    data = bytearray(src.read_bytes())
    data[-2] ^= 0x40  # a sample of the last frame: still a WAV of the same size
    src.write_bytes(bytes(data))
    (rec,) = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1).records
    assert rec["status"] == "ok" and "the input changed since it was mastered" in rec["replaced"]


@pytest.mark.skipif(os.name == "nt", reason="st_ctime is the creation time on Windows")
def test_a_source_rewritten_in_place_with_its_time_set_back_is_mastered_again(
    tmp_path, write_audio
):
    """Other samples written into the same file (same size and inode), its mtime set
    back as a tagger's "keep the file's time" does: the status-change time, which no
    program can set, says it changed (it read as done before)."""
    src = write_audio("lib/a.wav", music_like(seconds=2.0, seed=3))
    settings = RunSettings(use_cache=False)
    run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    st = src.stat()
    time.sleep(0.05)  # the kernel's clock for file times ticks every few ms
    with open(src, "r+b") as f:
        f.seek(-2, os.SEEK_END)
        flipped = f.read(1)[0] ^ 0x40  # a sample of the last frame: still a WAV
        f.seek(-2, os.SEEK_END)
        f.write(bytes([flipped]))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = src.stat()
    assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    if now.st_ctime_ns == st.st_ctime_ns:
        pytest.skip("this filesystem's ctime did not move within 50 ms")
    (rec,) = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1).records
    assert rec["status"] == "ok" and "the input changed since it was mastered" in rec["replaced"]


@pytest.mark.skipif(os.name == "nt", reason="st_ctime is the creation time on Windows")
def test_a_source_whose_mode_changed_is_read_once_to_check_not_mastered_again(
    tmp_path, small_library
):
    """A chmod moves the ctime the identity holds: the same bytes, so done after one
    read, journaled again under the new identity."""
    out = tmp_path / "out"
    settings = RunSettings(use_cache=False)
    run_master([small_library], out, settings, n_jobs=1)
    for src in small_library.rglob("*.flac"):
        _move_ctime(src, "chmod")
    again = run_master([small_library], out, settings, n_jobs=1)
    assert {s for _, s in _statuses(again)} == {"skipped"}
    assert len(again.notes) == 1 and again.notes[0].startswith("4 inputs' time or inode")
    third = run_master([small_library], out, settings, n_jobs=1)
    assert {s for _, s in _statuses(third)} == {"skipped"} and not third.notes


def _move_ctime(path, how: str) -> None:
    """Move ``path``'s ctime alone: a chmod or a new hard link; skips the test on a
    filesystem whose clock for file times is too coarse to show it."""
    before = path.stat().st_ctime_ns
    time.sleep(0.05)  # the kernel's clock for file times ticks every few ms
    if how == "chmod":
        path.chmod(0o600 if path.stat().st_mode & 0o077 else 0o644)
    else:
        os.link(path, path.with_name(path.name + ".snapshot"))
    if path.stat().st_ctime_ns == before:
        pytest.skip("this filesystem's ctime did not move within 50 ms")


@pytest.mark.skipif(os.name == "nt", reason="st_ctime is the creation time on Windows")
@pytest.mark.parametrize("how", ["chmod", "hard link"])
def test_a_ctime_change_during_the_render_keeps_the_hash_and_the_next_run_reads_nothing(
    tmp_path, small_library, monkeypatch, how
):
    """A chmod or a new hard link while a track renders moves only the source's ctime:
    the commit hashes it again, keeps the hash for the same bytes and journals the
    identity it has now. It dropped the hash, and the next run mastered the track
    again, saying the input changed (a sweep)."""
    from auralis_batch import engine, journal
    from auralis_batch.identity import file_identity

    src = small_library / "a" / "00.flac"
    real = engine._render

    def during(p, *a, **k):
        if p.job.input == src:
            _move_ctime(src, how)
        return real(p, *a, **k)

    monkeypatch.setattr(engine, "_render", during)
    settings = RunSettings(use_cache=False)
    out = tmp_path / "out"
    first = run_master([small_library], out, settings, n_jobs=1)
    monkeypatch.undo()
    rec = next(r for r in first.records if r["input"] == str(src))
    assert rec["status"] == "ok" and rec["input_sha256"] == sha(src)
    assert rec["input_identity"] == file_identity(src)

    def no_hashing(*a, **k):
        raise AssertionError("a source was read again")

    monkeypatch.setattr(journal, "sha256_if_same", no_hashing)
    again = run_master([small_library], out, settings, n_jobs=1)
    assert {r["status"] for r in again.records if r["input"].endswith(".flac")} == {"skipped"}
    assert not again.notes


@pytest.mark.skipif(os.name == "nt", reason="st_ctime is the creation time on Windows")
def test_a_ctime_change_while_the_source_is_hashed_is_hashed_again(
    tmp_path, small_library, monkeypatch
):
    """A chmod while the source is hashed before its decode made the hash unknown (the
    identity moved between its two looks), and the next run mastered the track again
    (a review): it is hashed once more, as it is."""
    from auralis_batch import engine, journal
    from auralis_batch.identity import file_identity

    src = small_library / "a" / "00.flac"
    real = engine.sha256_if_same
    calls = []

    def chmod_while_hashing(path, identity, **k):
        calls.append(list(identity))
        if len(calls) == 1 and path == src:
            _move_ctime(src, "chmod")
        return real(path, identity, **k)

    monkeypatch.setattr(engine, "sha256_if_same", chmod_while_hashing)
    first = run_master(
        [small_library / "a" / "00.flac"], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1
    )
    monkeypatch.undo()
    (rec,) = first.records
    assert len(calls) >= 2 and calls[1] != calls[0]
    assert rec["status"] == "ok" and rec["input_sha256"] == sha(src)
    assert rec["input_identity"] == file_identity(src)
    monkeypatch.setattr(journal, "sha256_if_same", lambda *a, **k: 1 / 0)
    again = run_master([src], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    assert [r["status"] for r in again.records] == ["skipped"]


def test_a_journal_entry_of_an_earlier_build_without_ctime_is_still_done(tmp_path, small_library):
    """Entries journaled before the identity had a ctime ([size, mtime, inode]) are
    compared on those three: an upgrade does not master a finished library again."""
    import json

    out = tmp_path / "out"
    settings = RunSettings(use_cache=False)
    run_master([small_library], out, settings, n_jobs=1)
    journal = out / JOURNAL_DIR / JOURNAL_NAME
    rows = [json.loads(ln) for ln in journal.read_text().splitlines()]
    for row in rows:
        if "identity" in row:
            assert len(row["identity"]) == 4
            row["identity"] = row["identity"][:3]
    journal.write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = run_master([small_library], out, settings, n_jobs=1)
    assert {s for _, s in _statuses(again)} == {"skipped"}
    assert not again.notes
    # journaled again with the ctime (nothing read), so the upgraded library is guarded
    # against in-place rewrites from now on (a review)
    from auralis_batch.journal import Journal

    assert all(len(e["identity"]) == 4 for e in Journal(out).by_output.values())


def test_a_source_replaced_while_it_was_read_is_not_hashed_as_the_one_read(tmp_path):
    """A sync tool's rename (other bytes, the same size and time) while a track renders:
    its hash would be journaled as the mastered bytes', and a later run would skip the
    track (a review). Hashed only while the file is the one read (inode too)."""
    from auralis_batch.identity import file_identity, sha256_if_same

    src = tmp_path / "a.flac"
    src.write_bytes(b"A" * 1000)
    identity = file_identity(src)
    assert sha256_if_same(src, identity) == hashlib.sha256(b"A" * 1000).hexdigest()

    def stop():
        raise KeyboardInterrupt  # the track's deadline or the run's stop, while it reads

    with pytest.raises(KeyboardInterrupt):
        sha256_if_same(src, identity, check=stop)
    new = tmp_path / "new.flac"
    new.write_bytes(b"B" * 1000)
    os.utime(new, ns=(identity[1], identity[1]))
    new.replace(src)  # same size, same time, another inode
    assert file_identity(src)[:2] == identity[:2]
    assert sha256_if_same(src, identity) is None
    assert sha256_if_same(tmp_path / "gone.flac", identity) is None


def test_a_source_swapped_during_its_render_is_not_journaled_as_mastered(
    tmp_path, write_audio, monkeypatch
):
    """A sweep's race: the source replaced by other bytes of the same size and time
    while the track renders. Hashed at commit time, those bytes were journaled as the
    mastered ones, and a later touch "confirmed" a master of other music. The hash is
    taken before the decode; at commit the file's ctime says it was written to, and
    hashed again it holds other bytes: the track fails, and the next run masters the
    file as it is then."""
    import json

    from auralis_batch import engine

    src = write_audio("lib/a.wav", music_like(seconds=2.0, seed=3))
    mastered = hashlib.sha256(src.read_bytes()).hexdigest()
    other = write_audio("other.wav", music_like(seconds=2.0, seed=4)).read_bytes()
    assert len(other) == src.stat().st_size
    real = engine._render

    def swapping(p, *a, **k):
        st = src.stat()
        with open(src, "r+b") as f:  # in place: the same inode, size and (below) time
            f.write(other)
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        return real(p, *a, **k)

    monkeypatch.setattr(engine, "_render", swapping)
    settings = RunSettings(use_cache=False)
    out = tmp_path / "out"
    (rec,) = run_master([tmp_path / "lib"], out, settings, n_jobs=1).records
    monkeypatch.undo()
    # the rewrite moved the source's ctime; hashed again at commit, other bytes: the
    # track fails as a source that changed while it was read, and nothing is journaled
    assert (
        rec["status"] == "failed" and "the source changed while it was being read" in (rec["error"])
    )
    assert not (out / "a.flac").exists()
    journal = out / ".auralis-batch" / "journal.jsonl"
    lines = journal.read_text().splitlines() if journal.exists() else []
    hashes = {json.loads(ln).get("input_sha256") for ln in lines if ln.strip()}
    assert hashlib.sha256(other).hexdigest() not in hashes and mastered not in hashes
    (again,) = run_master([tmp_path / "lib"], out, settings, n_jobs=1).records
    assert again["status"] == "ok" and again["input_sha256"] == hashlib.sha256(other).hexdigest()


def test_a_commit_note_keeps_the_sources_hash_only_as_written():
    """A note read back from disk carries the source's SHA-256 into the journal entry
    only when it is 64 lower-case hex digits."""
    from auralis_batch.journal import _as_entry

    good = "0123456789abcdef" * 4
    note = {
        "input": "/m/a.flac",
        "identity": [1, 2, 3],
        "output": "a.flac",
        "output_identity": {"bytes": 1, "mtime_ns": 2, "sha256": good},
        "settings": "s",
    }
    assert _as_entry(note | {"input_sha256": good})["input_sha256"] == good
    for bad in (good + "\n", good.upper(), good[:-1], 7, None, ["x"]):
        assert "input_sha256" not in _as_entry(note | {"input_sha256": bad})


def test_two_runs_of_two_folders_into_one_out_keep_the_first_ones_masters(tmp_path, write_audio):
    """A newcomer's: the collision error said "give their folders as separate runs";
    doing so into the same OUT replaced the first folder's master with the second's,
    one line saying so. The master of another input that is still there is refused
    (--overwrite replaces it); the error's advice names the common folder; an input
    that is gone (renamed, re-encoded) is still replaced."""
    from auralis_batch.plan import plan_master

    a = write_audio("dup/A/01.flac", music_like(seconds=2.0, seed=1))
    b = write_audio("dup/B/01.flac", music_like(seconds=2.0, seed=2))
    out = tmp_path / "out"
    plan = plan_master([a.parent, b.parent], out, "flac", extensions=frozenset({"flac"}))
    (problem,) = plan.problems
    assert f"give their common folder {tmp_path / 'dup'} instead" in problem
    c = write_audio("same/x.flac", music_like(seconds=1.0))
    write_audio("same/x.wav", music_like(seconds=1.0))
    plan = plan_master([c.parent], out, "flac", extensions=frozenset({"flac", "wav"}))
    assert plan.problems[0].endswith("rename one, or master one of them into another --out")

    settings = RunSettings(use_cache=False)
    assert run_master([a.parent], out, settings, n_jobs=1).summary["ok"] == 1
    first = sha(out / "01.flac")
    second = run_master([b.parent], out, settings, n_jobs=1)
    (rec,) = second.records
    assert rec["status"] == "failed" and sha(out / "01.flac") == first
    assert rec["error"] == (
        f"refused: {out / '01.flac'} is the master of another input, {a.resolve()}, which is "
        "still there: it would be lost; master both in one run (give their common folder) "
        "or into another --out; --overwrite replaces it"
    )
    forced = run_master([b.parent], out, settings, n_jobs=1, overwrite=True)
    assert forced.summary["ok"] == 1 and sha(out / "01.flac") != first
    assert forced.records[0]["replaced"].startswith("replaced the master of another input")
    b.unlink()  # B re-encoded: its master is replaced, as before
    b2 = write_audio("dup/B/01.wav", music_like(seconds=2.0, seed=3))
    again = run_master([b2.parent], out, settings, n_jobs=1)
    assert again.summary["ok"] == 1
    assert "mastered from another input" in again.records[0]["replaced"]


def test_tracks_in_an_output_folder_inside_the_input_are_listed_as_skipped(tmp_path, write_audio):
    """``master music --out music/AlbumA``: AlbumA's own tracks were left out with one
    note and counted nowhere (a newcomer's). Each is now a skipped record saying why;
    the masters written there are not (nor read as input on the next run)."""
    for name in ("AlbumA/01.flac", "AlbumA/02.flac", "AlbumB/01.flac"):
        write_audio(f"music/{name}", music_like(seconds=1.5))
    music, out = tmp_path / "music", tmp_path / "music" / "AlbumA"
    result = run_master([music], out, RunSettings(use_cache=False), n_jobs=1)
    by_input = {r["input"]: r for r in result.records}
    assert result.summary["ok"] == 1 and result.summary["skipped"] == 2
    for name in ("01.flac", "02.flac"):
        rec = by_input[str(music / "AlbumA" / name)]
        assert rec["status"] == "skipped" and "inside the output folder" in rec["error"]
    assert (out / "AlbumB" / "01.flac").exists()
    again = run_master([music], out, RunSettings(use_cache=False), n_jobs=1)
    assert sorted(r["input"] for r in again.records) == sorted(by_input)  # no master read


def test_a_file_that_appears_as_an_edited_master_is_kept_aside_is_not_replaced(
    tmp_path, write_audio, monkeypatch
):
    """The edited master is kept aside as its redo takes the name; a file written to
    the name in between is the user's: the redo fails rather than replace it (a
    review: it went through os.replace)."""
    from auralis_batch import audio

    write_audio("lib/a.flac", music_like(seconds=1.5, seed=3))
    out = tmp_path / "O"
    run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1)
    master = out / "a.flac"
    master.write_bytes(master.read_bytes()[:-1] + b"!")  # the user's edit
    real_keep_aside = audio.keep_aside

    def keep_aside_then_a_file_appears(path, **kw):
        aside = real_keep_aside(path, **kw)
        path.write_bytes(b"the user's new file")
        return aside

    monkeypatch.setattr(audio, "keep_aside", keep_aside_then_a_file_appears)
    result = run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1)
    assert result.records[0]["status"] == "failed"
    assert "replaced" not in result.records[0]
    assert master.read_bytes() == b"the user's new file"
    aside = [p for p in out.iterdir() if ".altered-" in p.name]
    assert len(aside) == 1  # it could not go back: the error says where it is
    assert result.records[0]["error"].endswith(
        "a file appeared there during the run; not replaced; its edited master is kept "
        f"aside as {aside[0].name}"
    )


def test_an_edited_master_goes_back_when_its_redo_cannot_take_the_name(
    tmp_path, write_audio, monkeypatch
):
    """The move of the new master failing after the edited one was kept aside (an I/O
    error) left nothing at the name, and nothing said where the edit was (a review)."""
    import errno as errno_

    from auralis_batch import audio

    write_audio("lib/a.flac", music_like(seconds=1.5, seed=3))
    out = tmp_path / "O"
    run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1)
    master = out / "a.flac"
    edited = master.read_bytes()[:-1] + b"!"
    master.write_bytes(edited)
    real_move = audio.move_no_clobber

    def eio_for_the_new_master(src, dst):
        if os.path.basename(src).endswith(".partial"):
            raise OSError(errno_.EIO, "Input/output error")
        return real_move(src, dst)

    monkeypatch.setattr(audio, "move_no_clobber", eio_for_the_new_master)
    result = run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1)
    assert result.records[0]["status"] == "failed"
    assert "committing the output failed (input/output error)" in result.records[0]["error"]
    assert master.read_bytes() == edited  # back at its name
    assert not [p for p in out.iterdir() if ".altered-" in p.name]


def test_an_albums_edited_master_kept_aside_is_named_when_its_redo_fails(tmp_path, write_audio):
    """An album's edited masters move aside together while the run is planned (all or
    none); when the album's redo then failed, its records did not say where they went."""
    srcs = [write_audio(f"lib/al/{i}.flac", music_like(seconds=1.5, seed=i)) for i in (1, 2)]
    out = tmp_path / "O"
    settings = RunSettings(use_cache=False, album=True)
    run_master([tmp_path / "lib"], out, settings, n_jobs=1)
    master = out / "al" / "1.flac"
    edited = bytearray(master.read_bytes())
    edited[-1] ^= 1
    master.write_bytes(bytes(edited))
    srcs[1].write_bytes(srcs[1].read_bytes()[:5000])  # the album cannot be redone
    failed = run_master([tmp_path / "lib"], out, settings, n_jobs=1)
    aside = [p for p in (out / "al").iterdir() if ".altered-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(edited)  # nothing lost
    rec = next(r for r in failed.records if r["input"].endswith("1.flac"))
    assert rec["status"] != "ok"
    assert f"its edited master was kept aside as {aside[0].name}" in rec["error"]


def test_a_file_inside_out_named_on_the_command_line_is_not_read(tmp_path, write_audio):
    """Walked into, OUT is not read; named on the command line, a master inside it (or
    a link to one) was mastered again into OUT (a sweep). Asked for by name, it fails
    saying why; a file of the user's in OUT named there is taken (``cd music && master
    song.wav --out .`` writes song.flac beside it)."""
    write_audio("lib/a.flac", music_like(seconds=1.5))
    write_audio("lib/s/b.flac", music_like(seconds=1.5, seed=2))
    out = tmp_path / "O"
    settings = RunSettings(use_cache=False)
    run_master([tmp_path / "lib"], out, settings, n_jobs=1)
    (tmp_path / "lk").mkdir()
    (tmp_path / "lk" / "linked.flac").symlink_to(out / "a.flac")
    named = [out / "s" / "b.flac", tmp_path / "lk" / "linked.flac"]  # masters of OUT's
    result = run_master(named, out, settings, n_jobs=1)
    assert [r["status"] for r in result.records] == ["failed", "failed"]
    assert all("masters are never mastered again" in r["error"] for r in result.records)
    assert not (out / "b.flac").exists() and not (out / "linked.flac").exists()
    write_audio("O/song.wav", music_like(seconds=1.5, seed=4))  # the user's, in OUT
    mine = run_master([out / "song.wav"], out, settings, n_jobs=1)
    assert mine.summary["ok"] == 1 and (out / "song.flac").exists()


def test_every_record_has_the_keys_the_readme_lists(tmp_path, write_audio):
    """A newcomer's script read ``rec["output"]`` of a skipped file (a note beside the
    tracks) and died with KeyError: skipped and refused records had no ``output`` or
    ``preset``. Every record has them, ``output`` null where there is none."""
    write_audio("lib/01.flac", music_like(seconds=1.5))
    (tmp_path / "lib" / "notes.txt").write_text("liner notes")
    settings = RunSettings(use_cache=False, preset="warm")
    for dry_run in (True, False):
        result = run_master(
            [tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1, dry_run=dry_run
        )
        for rec in result.records:
            assert {"input", "output", "status", "error", "preset", "seconds"} <= rec.keys()
            assert rec["preset"] == "warm"
        note = next(r for r in result.records if r["input"].endswith("notes.txt"))
        assert note["status"] == "skipped" and note["output"] is None


def test_a_dry_run_fails_a_file_with_more_channels_than_flac_holds(tmp_path, write_audio):
    """A newcomer's: a 10-channel WAV was "planned" (exit 0) by the dry run and failed
    in the real run (exit 1) though its header says it all. Both fail it alike."""
    write_audio("mc/ten.wav", music_like(seconds=1.0, channels=10), subtype="PCM_16")
    write_audio("mc/two.wav", music_like(seconds=1.0), subtype="PCM_16")
    settings = RunSettings(use_cache=False)
    got = {}
    for dry_run in (True, False):
        result = run_master(
            [tmp_path / "mc"], tmp_path / "out", settings, n_jobs=1, dry_run=dry_run
        )
        got[dry_run] = {
            os.path.basename(r["input"]): (r["status"], r["error"]) for r in result.records
        }
    assert got[True]["ten.wav"] == got[False]["ten.wav"]
    assert got[True]["ten.wav"] == (
        "failed",
        "FLAC holds at most 8 channels and this file has 10: master it with --format wav",
    )
    assert got[True]["two.wav"][0] == "planned" and got[False]["two.wav"][0] == "ok"


def test_a_redone_master_says_whether_the_preset_or_a_flag_changed(tmp_path, small_library):
    """A newcomer added --tempo to a finished gentle library: "it was mastered with
    other settings (preset gentle)" read as if the preset had changed; then the list of
    every flag that might have changed said nothing of which had. The journal keeps
    each entry's settings, so a redo names what changed; an entry of a build that kept
    none gets the list."""
    out = tmp_path / "out"
    run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)

    def why(**settings) -> str:
        res = run_master(
            [small_library], out, RunSettings(use_cache=False, **settings), n_jobs=1, dry_run=True
        )
        return res.records[0]["error"]

    said = "would replace an earlier master: it was mastered with other settings: "
    # tempo goes into the report only: a finished master is not redone for it
    assert why(tempo=True) == "already mastered with these settings (journal)"
    assert why(tempo=False) == "already mastered with these settings (journal)"
    assert why(bit_depth="16", target_lufs=-16.0) == said + (
        "--target-lufs: as the preset says, now -16; --bit-depth: 24, now 16"
    )
    assert why(preset="warm") == said + "preset gentle, now warm"
    mine = tmp_path / "mine.toml"
    configs = Path(__file__).resolve().parents[1] / "configs"
    mine.write_text((configs / "gentle.toml").read_text().replace("gentle", "mine"))
    run_master([small_library], tmp_path / "o2", RunSettings(use_cache=False, preset=str(mine)))
    mine.write_text(mine.read_text().replace("target_lufs = -14.0", "target_lufs = -15.0"))
    res = run_master(
        [small_library],
        tmp_path / "o2",
        RunSettings(use_cache=False, preset=str(mine)),
        n_jobs=1,
        dry_run=True,
    )
    assert res.records[0]["error"] == said + "the preset's own parameters changed"
    # an entry journaled without its settings (earlier builds): the list of candidates
    journal = out / ".auralis-batch" / "journal.jsonl"
    lines = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    journal.write_text(
        "".join(json.dumps({k: v for k, v in e.items() if k != "flags"}) + "\n" for e in lines)
    )
    assert why(bit_depth="16") == (
        "would replace an earlier master: it was mastered with the same preset, gentle, and "
        "other settings (a flag such as --target-lufs, --ceiling-dbtp, --bit-depth, --album "
        "or --match-strength, or the preset's own parameters)"
    )
    assert why(preset="warm").endswith("with other settings (preset gentle, now warm)")


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"bit_depth": "24", "unknown": 1},
        {"bit_depth": {"nested": "object"}},
        {"target_lufs": float("nan")},
        {"target_lufs": 10**400},  # JSON's ints have no bound; math.isfinite raised on it
        {"bit_depth": "x" * 65},
        {f"k{i}": 1 for i in range(40)},
    ],
)
def test_a_journal_entrys_flags_are_read_only_in_their_known_shape(bad):
    """Every byte read back from disk is distrusted: an entry's ``flags`` of another
    shape is not read, and the redo is said as for an entry that kept none."""
    from auralis_batch.journal import _other_settings

    now = RunSettings(bit_depth="16").journal_flags()
    got = _other_settings("gentle", "gentle", bad, now)
    assert got.startswith("it was mastered with the same preset, gentle, and other settings (")
    good = dict(now, bit_depth="24")
    assert _other_settings("gentle", "gentle", good, now).endswith("--bit-depth: 24, now 16")


def test_a_rate_flac_cannot_hold_fails_before_decoding(tmp_path, write_audio, monkeypatch):
    """A 96,001 Hz source was decoded and processed, then failed with "problem with
    initialization of the flac decoder" (sixth sweep): above 65,535 Hz libFLAC writes
    only multiples of 10. Now the dry run and the real run refuse it up front, naming
    --format wav, which masters it."""
    from auralis_batch import engine
    from auralis_batch.audio import flac_rate_ok

    assert [flac_rate_ok(r) for r in (8000, 65535, 65536, 96000, 96001, 384000)] == [
        True,
        True,
        False,
        True,
        False,
        True,
    ]
    write_audio("odd/a.wav", music_like(seconds=1.0, sample_rate=96001), 96001, "PCM_16")
    decoded = []
    real = engine.analyze_file
    monkeypatch.setattr(engine, "analyze_file", lambda *a, **k: decoded.append(1) or real(*a, **k))
    settings = RunSettings(use_cache=False)
    why = (
        "FLAC (as libFLAC writes it, its streamable subset) cannot hold 96001 Hz: above "
        "65,535 Hz a rate must be a multiple of 10; master it with --format wav"
    )
    for dry_run in (True, False):
        result = run_master(
            [tmp_path / "odd"], tmp_path / "out", settings, n_jobs=1, dry_run=dry_run
        )
        assert [(r["status"], r["error"]) for r in result.records] == [("failed", why)]
    assert not decoded
    wav = run_master(
        [tmp_path / "odd"], tmp_path / "out", RunSettings(use_cache=False, fmt="wav"), n_jobs=1
    )
    assert wav.summary["ok"] == 1


def test_a_link_into_out_beside_the_sources_is_skipped_not_a_stop(tmp_path, write_audio):
    """``lib/latest.flac -> ../out/a.flac`` beside the sources stopped the whole run
    with "output out/a.flac would overwrite the input lib/a.wav", naming the wrong file
    (sixth sweep). The link is skipped saying why; the master itself named on the
    command line is a collision, named as one."""
    from auralis_batch.plan import plan_master

    write_audio("lib/a.wav", music_like(seconds=1.5))
    out = tmp_path / "out"
    settings = RunSettings(use_cache=False)
    assert run_master([tmp_path / "lib"], out, settings, n_jobs=1).summary["ok"] == 1
    (tmp_path / "lib" / "latest.flac").symlink_to(out / "a.flac")
    again = run_master([tmp_path / "lib"], out, settings, n_jobs=1)
    by_name = {os.path.basename(r["input"]): r for r in again.records}
    assert by_name["latest.flac"]["status"] == "skipped"
    assert by_name["latest.flac"]["error"] == "a link into the output folder: not read"
    assert by_name["a.wav"]["status"] == "skipped"  # done before
    named = plan_master(
        [tmp_path / "lib" / "a.wav", out / "a.flac"],
        out,
        "flac",
        extensions=frozenset({"wav", "flac"}),
    )
    assert named.problems == [
        f"output {out / 'a.flac'} of {out / 'a.flac'} would overwrite the input {out / 'a.flac'}"
    ]


def test_a_folder_that_cannot_be_synced_after_the_rename_keeps_an_ok_master_with_a_warning(
    tmp_path, small_library, monkeypatch
):
    """fsync of the folder failed after the master took its name: the track said
    'failed' while the master stayed in place and the next run journaled it as done (a
    trust sweep's finding). Report and journal now agree: ok, with the doubt said."""
    import errno

    from auralis_batch import audio

    real = audio.fsync_dir

    def eio(folder):  # the output's folder, once its master is in place
        if any(folder.glob("[!.]*.flac")):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(folder)  # the commit notes' folder

    monkeypatch.setattr(audio, "fsync_dir", eio)
    out = tmp_path / "out"
    first = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    assert {s for _, s in _statuses(first)} == {"ok"}
    for rec in first.records:
        assert "its folder could not be synced" in rec["warning"]
        assert "input/output error" in rec["warning"]
        assert sf.info(rec["output"]).frames > 0
    monkeypatch.undo()
    again = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    assert {s for _, s in _statuses(again)} == {"skipped"}


def test_a_source_changed_while_it_is_read_is_not_mastered(tmp_path, small_library, monkeypatch):
    """A WAV copied over, or cut short, while its track was in flight came out as a
    master part one file and part the other, or of part of the song, reported ok (a
    third trust sweep's finding). The source is checked again before its master is
    committed: size, mtime and inode as when the track started."""
    from auralis_batch import engine

    real = engine._render

    def rewritten_meanwhile(p, out, settings):
        outcome = real(p, out, settings)
        if p.job.input.name == "01.flac":
            data = p.job.input.read_bytes()
            p.job.input.write_bytes(data[: len(data) // 2])  # in place: same inode
        return outcome

    monkeypatch.setattr(engine, "_render", rewritten_meanwhile)
    out = tmp_path / "out"
    result = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=1)
    status = dict(_statuses(result))
    assert status.pop("01.flac") == "failed" and set(status.values()) == {"ok"}
    error = next(r["error"] for r in result.records if r["input"].endswith("01.flac"))
    assert "the source changed while it was being read" in error
    assert not (out / "a" / "01.flac").exists() and not list(out.rglob("*.partial"))


def test_a_source_whose_inode_number_changes_on_reading_is_not_called_changed(
    tmp_path, small_library, monkeypatch
):
    """FAT, exFAT and some FUSE mounts give a file a new inode number when it is read
    back into the cache: only size and mtime say a source changed (a review's finding:
    healthy tracks on a USB stick would have failed every night)."""
    from auralis_batch import engine
    from auralis_batch.identity import file_identity

    calls: dict[str, int] = {}

    def renumbered(path):
        size, mtime, inode, ctime = file_identity(path)
        calls[str(path)] = calls.get(str(path), 0) + 1
        return [size, mtime, inode + calls[str(path)], ctime]

    monkeypatch.setattr(engine, "file_identity", renumbered)
    result = run_master([small_library], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    assert {s for _, s in _statuses(result)} == {"ok"}


def test_kill_9_mid_run_leaves_only_whole_files_and_rerun_completes(tmp_path, write_audio):
    """kill -9 while the third of four tracks is written (slowed down so the kill
    lands there, not by luck): every file under a final name is whole, the temporary
    is only a temporary; a rerun finishes the rest."""
    seconds = {f"{i:02d}": 5.0 for i in range(4)}  # 02 slowed: caught mid-write
    for stem, length in seconds.items():
        write_audio(f"lib/{stem}.wav", music_like(seconds=length, seed=int(stem)))
    lib, out = tmp_path / "lib", tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "auralis_batch.cli",
        "master",
        str(lib),
        "--out",
        str(out),
        "-q",
        "-j",
        "1",
        "--no-cache",
    ]
    env = {**os.environ, "AURALIS_BATCH_FAULT": "slow:02.wav"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if list(out.rglob(".02.flac.*.partial")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the slowed track was written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(out.rglob("*.partial"))  # killed mid-write: the temporary is left
    assert "02.flac" not in {p.name for p in out.glob("*.flac")}
    for f in out.glob("*.flac"):  # every file under a final name is complete
        assert sf.info(f).frames == round(seconds[f.stem] * 44100)
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.glob("*.flac")) == [f"{i:02d}.flac" for i in range(4)]
    assert not list(out.rglob("*.partial"))


def _fresh_workers() -> None:
    """Shut joblib's reusable worker pool down: workers started by an earlier test
    would not see an environment variable set now."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


@pytest.mark.slow  # a pool rebuilt twice (12-18 s); test_faults' worker crash in the suite
def test_crashing_worker_fails_only_its_track(tmp_path, small_library, monkeypatch):
    monkeypatch.setenv("AURALIS_BATCH_FAULT", "crash:01.flac")
    _fresh_workers()
    out = tmp_path / "out"
    try:
        result = run_master([small_library], out, RunSettings(use_cache=False), n_jobs=2)
    finally:
        _fresh_workers()  # no worker that knows the fault outlives the test
    status = dict(_statuses(result))
    assert status.pop("01.flac") == "failed"
    assert set(status.values()) == {"ok"}, result.records
    err = next(r["error"] for r in result.records if r["input"].endswith("01.flac"))
    assert "crashed" in err


def test_memory_error_fails_only_its_track(tmp_path, small_library, monkeypatch):
    monkeypatch.setenv("AURALIS_BATCH_FAULT", "memory:02.flac")
    result = run_master([small_library], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    status = dict(_statuses(result))
    assert status["02.flac"] == "failed" and status["00.flac"] == "ok"
    assert "out of memory" in next(
        r["error"] for r in result.records if r["input"].endswith("02.flac")
    )


def test_parallel_output_equals_serial_output(tmp_path, small_library):
    a = run_master([small_library], tmp_path / "j1", RunSettings(use_cache=False), n_jobs=1)
    b = run_master([small_library], tmp_path / "j2", RunSettings(use_cache=False), n_jobs=2)
    assert a.summary["ok"] == b.summary["ok"] == 4
    for f in (tmp_path / "j1").rglob("*.flac"):
        g = tmp_path / "j2" / f.relative_to(tmp_path / "j1")
        assert np.array_equal(sf.read(f)[0], sf.read(g)[0])


def test_album_mode_keeps_relative_levels(tmp_path, small_library):
    result = run_master(
        [small_library], tmp_path / "out", RunSettings(album=True, use_cache=False), n_jobs=1
    )
    recs = sorted((r for r in result.records if r["status"] == "ok"), key=lambda r: r["input"])
    assert len(recs) == 4
    gains = {r["album"]["gain_db"] for r in recs}
    assert len(gains) == 1  # one shared gain
    before = [r["before"]["integrated_lufs"] for r in recs]
    after = [r["after"]["integrated_lufs"] for r in recs]
    # the 3 dB steps between the tracks survive, within what EQ and the limiter change
    # (the loudest track is limited harder once the album is pulled onto its target)
    np.testing.assert_allclose(np.diff(after), np.diff(before), atol=1.5)
    # the album as written is on target, measured independently (pyloudnorm over the
    # concatenated outputs), and the record says so
    import pyloudnorm

    audio = np.concatenate([sf.read(r["output"])[0] for r in recs])
    album = pyloudnorm.Meter(44100).integrated_loudness(audio)
    assert album == pytest.approx(-14.0, abs=0.5)
    assert recs[0]["album"]["album_lufs"] == pytest.approx(album, abs=0.15)
    assert all(r["album"]["target_reached"] for r in recs)


def test_an_adaptive_albums_target_does_not_depend_on_its_files_names(tmp_path, write_audio):
    """Adaptive gives each track a target: the album took its first track's by file
    name, so renaming two files moved it by 1.7 LU, and each track's record kept its
    own target beside the album's (a newcomer's). The lowest of them now, said alike."""
    rng = np.random.default_rng(0)
    steady = 0.3 * rng.standard_normal((2, 12 * 44100))  # adaptive: -14 LUFS
    dynamic = music_like(seconds=12.0)  # a wide loudness range: -16 LUFS
    targets = set()
    for first, second in (("steady", "dynamic"), ("dynamic", "steady")):
        lib = tmp_path / f"lib-{first}"
        write_audio(f"{lib.name}/a_{first}.flac", steady if first == "steady" else dynamic)
        write_audio(f"{lib.name}/b_{second}.flac", dynamic if first == "steady" else steady)
        settings = RunSettings(album=True, use_cache=False, preset="adaptive")
        result = run_master([lib], tmp_path / f"out-{first}", settings, n_jobs=1)
        recs = [r for r in result.records if r["status"] == "ok"]
        assert len(recs) == 2
        album = {r["album"]["target_lufs"] for r in recs}
        assert album == {r["render"]["target_lufs"] for r in recs}
        targets |= album
    assert targets == {-16.0}


def test_tags_and_cover_are_copied_and_loudness_tags_written(tmp_path, write_audio):
    from mutagen.flac import FLAC, Picture

    src = write_audio("lib/song.flac", music_like(seconds=3.0))
    f = FLAC(src)
    f["title"], f["artist"] = "Night Drive", "The Testers"
    pic = Picture()
    pic.data, pic.mime, pic.type = b"\x89PNG\r\n\x1a\nfake", "image/png", 3
    f.add_picture(pic)
    f.save()
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["master", str(src), "--out", str(out), "--write-loudness-tags", "-q", "-j", "1"]
    )
    assert res.exit_code == 0, res.output
    g = FLAC(out / "song.flac")
    assert g["title"] == ["Night Drive"] and g["artist"] == ["The Testers"]
    assert g.pictures and g.pictures[0].data == pic.data
    gain = float(g["replaygain_track_gain"][0].split()[0])
    assert gain == pytest.approx(-18.0 - (-14.0), abs=0.6)


def test_dry_run_writes_nothing(tmp_path, small_library):
    out = tmp_path / "out"
    res = runner.invoke(app, ["master", str(small_library), "--out", str(out), "--dry-run"])
    assert res.exit_code == 0
    assert res.output.count("planned") == 4
    assert not out.exists()  # not even the folder or the journal
    # and the counts a real run ends with (a newcomer's try: none were given)
    assert "dry run: 4 to master, 0 skipped, 0 refused; nothing written" in res.stderr


def test_outputs_are_as_readable_as_the_umask_allows(tmp_path, small_library):
    old = os.umask(0o022)
    try:
        run_master([small_library], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    finally:
        os.umask(old)
    for f in (tmp_path / "out").rglob("*.flac"):
        assert f.stat().st_mode & 0o777 == 0o644, f


def test_out_that_is_a_file_and_failures_name_the_file_once(tmp_path, small_library):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["master", str(small_library), "--out", str(blocker)])
    assert res.exit_code == 2
    assert "is a file, not a folder" in res.output
    bad = small_library / "a" / "zz.wav"
    bad.write_text("not audio")
    res = runner.invoke(app, ["master", str(bad), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 1
    line = next(ln for ln in res.output.splitlines() if "[failed] " in ln)
    assert line.count(str(bad)) == 1, line
    # -q in a log: no summary line, so the failure carries the time (a newcomer's try)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \[failed\] ", line), line
    good = small_library / "a" / "00.flac"
    for preset in ("gentle", "warm"):  # the second replaces the first's master
        args = ["master", str(good), "--out", str(tmp_path / "o2"), "-q", "--no-cache"]
        res = runner.invoke(app, [*args, "--preset", preset])
    line = next(ln for ln in res.output.splitlines() if "[replaced] " in ln)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \[replaced\] ", line), line


def test_unwritable_out_is_a_setup_error(tmp_path, small_library):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["master", str(small_library), "--out", str(blocker / "out")])
    assert res.exit_code == 2
    assert f"[error] --out {blocker / 'out'}: cannot be created (Not a directory)" in res.output


def test_disk_full_fails_track_cleanly_and_stops(tmp_path, small_library, monkeypatch):
    import errno

    from auralis_batch import audio

    calls = {"n": 0}
    real_write = audio.sf.SoundFile.write

    def full(self, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(audio.sf.SoundFile, "write", full)
    result = run_master([small_library], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    assert result.stopped == f"disk full: no space left on device for {tmp_path / 'out'}; stopped"
    failed = [r for r in result.records if r["status"] == "failed"]
    assert len(failed) == 1 and "no space left on device" in failed[0]["error"]
    assert not list((tmp_path / "out").rglob("*.partial"))
    assert result.summary["not_started"] == 3 and result.summary["ok"] == 0


def test_report_csv(tmp_path, small_library):
    report = tmp_path / "r.csv"
    res = runner.invoke(
        app,
        [
            "master",
            str(small_library),
            "--out",
            str(tmp_path / "o"),
            "--report",
            str(report),
            "-q",
            "-j",
            "1",
        ],
    )
    assert res.exit_code == 0
    lines = report.read_text().splitlines()
    assert lines[0].startswith("input,output,status,error,preset,seconds")
    assert len(lines) == 5
    rows = list(csv.DictReader(io.StringIO(report.read_text())))
    assert {r["render.target_reached"] for r in rows} <= {"true", "false"}  # as JSON has it
    assert {r["fingerprint_cached"] for r in rows} <= {"true", "false", "memory", "disk"}


def test_dask_backend_gives_identical_outputs(tmp_path, small_library):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        host="127.0.0.1", n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    try:
        res = runner.invoke(
            app,
            [
                "master",
                str(small_library),
                "--out",
                str(tmp_path / "dask"),
                "--backend",
                "dask",
                "--scheduler",
                cluster.scheduler_address,
                "-q",
                "--no-cache",
            ],
        )
        assert res.exit_code == 0, res.output
    finally:
        cluster.close()
    res = runner.invoke(
        app,
        [
            "master",
            str(small_library),
            "--out",
            str(tmp_path / "local"),
            "-q",
            "-j",
            "1",
            "--no-cache",
        ],
    )
    assert res.exit_code == 0
    for f in (tmp_path / "local").rglob("*.flac"):
        g = tmp_path / "dask" / f.relative_to(tmp_path / "local")
        assert np.array_equal(sf.read(f)[0], sf.read(g)[0])


def test_a_dask_run_sends_the_cluster_absolute_paths(tmp_path, monkeypatch):
    """A Dask worker resolves a relative path in its own folder: started elsewhere, it
    read no inputs, wrote masters (journaled as done) into a folder of its own, and
    loaded presets and the cache from there (second sweep). The CLI makes the run's
    paths absolute first; a preset name stays a name."""
    from pathlib import Path

    from auralis_batch.cli import _absolute_paths

    monkeypatch.chdir(tmp_path)
    opts = {
        "inputs": [Path("lib"), Path("/abs/x.flac")],
        "out": Path("out"),
        "cache_dir": Path("c"),
        "reference": None,
        "preset": "presets/mine.toml",
        "report": [Path("r.json")],
    }
    got = _absolute_paths(opts)
    assert got["inputs"] == [tmp_path / "lib", Path("/abs/x.flac")]
    assert got["out"] == tmp_path / "out" and got["cache_dir"] == tmp_path / "c"
    assert got["preset"] == str(tmp_path / "presets" / "mine.toml")
    assert got["report"] == [tmp_path / "r.json"] and "reference" not in got
    assert "preset" not in _absolute_paths({**opts, "preset": "warm"})


def test_a_dask_scheduler_without_workers_is_a_setup_error(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from auralis_batch import cli

    monkeypatch.setattr(cli, "DASK_WORKER_WAIT_S", 0.5)
    cluster = distributed.LocalCluster(
        host="127.0.0.1", n_workers=0, processes=True, dashboard_address=":0"
    )
    try:
        args = ["master", str(tmp_path), "--out", str(tmp_path / "O"), "--backend", "dask"]
        res = runner.invoke(app, [*args, "--scheduler", cluster.scheduler_address])
    finally:
        cluster.close()
    assert res.exit_code == 2 and "no worker joined" in res.output, res.output
    assert not (tmp_path / "O").exists()


def test_timeout_per_track_fails_only_the_slow_track(tmp_path, write_audio):
    import soundfile as sf

    # ten minutes, written ten seconds at a time: a 600 s music_like array (and its
    # temporaries) took the test process to 3.5 GB
    piece = music_like(seconds=10.0, seed=3).T
    (tmp_path / "lib").mkdir()
    with sf.SoundFile(tmp_path / "lib" / "long.flac", "w", 44100, 2, "PCM_24") as f:
        for _ in range(60):
            f.write(piece)
    write_audio("lib/short.flac", music_like(seconds=2.0, seed=4))
    settings = RunSettings(use_cache=False, timeout_per_track_s=1.0)
    result = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    status = dict(_statuses(result))
    assert status == {"long.flac": "failed", "short.flac": "ok"}
    err = next(r["error"] for r in result.records if r["input"].endswith("long.flac"))
    assert "timed out (--timeout-per-track 1 s)" in err
    assert not (tmp_path / "out" / "long.flac").exists()
    assert not list((tmp_path / "out").rglob("*.partial"))


def test_decoded_once_and_decoded_again_give_the_same_output(tmp_path, small_library):
    """A fresh analysis hands its decoded blocks to the render (one decode); a cached
    analysis leaves the render to decode the file itself. Same bytes either way."""
    settings = RunSettings(cache_dir=tmp_path / "cache")
    fresh = run_master([small_library], tmp_path / "one", settings, n_jobs=1)
    again = run_master([small_library], tmp_path / "two", settings, n_jobs=1)
    assert {r["fingerprint_cached"] for r in fresh.records} == {False}
    assert {r["fingerprint_cached"] for r in again.records} <= {"memory", "disk"}
    # --no-cache with a fixed preset measures loudness only (no fingerprint to keep)
    light = run_master([small_library], tmp_path / "three", RunSettings(use_cache=False), n_jobs=1)
    assert light.summary["ok"] == 4
    for a in sorted((tmp_path / "one").rglob("*.flac")):
        for other in ("two", "three"):
            b = tmp_path / other / a.relative_to(tmp_path / "one")
            assert sha(a) == sha(b), (other, a.name)


def test_largest_tracks_are_scheduled_first(tmp_path):
    from auralis_batch.batch import _units
    from auralis_batch.plan import Job

    sizes = {"a.wav": 10, "b.wav": 3000, "c.wav": 200}
    jobs = []
    for name, n in sizes.items():
        (tmp_path / name).write_bytes(b"x" * n)
        jobs.append(Job(tmp_path / name, tmp_path / "out" / name))
    # unreadable headers: bytes on disk decide
    assert [u[0].input.name for u in _units(jobs, album=False)] == ["b.wav", "c.wav", "a.wav"]


def test_the_schedule_goes_by_samples_not_bytes(write_audio):
    from auralis_batch.batch import _headers, _units
    from auralis_batch.plan import Job

    rng = np.random.default_rng(0)
    # a short noisy WAV is many bytes; a long quiet Ogg file few; a mono FLAC between
    paths = {
        "short.wav": write_audio("short.wav", rng.normal(0, 0.3, (2, 44100)), subtype="PCM_24"),
        "long.ogg": write_audio("long.ogg", rng.normal(0, 0.01, (2, 6 * 44100)), subtype="VORBIS"),
        "mono.flac": write_audio("mono.flac", rng.normal(0, 0.3, (1, 3 * 48000)), 48000, "PCM_16"),
    }
    assert paths["long.ogg"].stat().st_size < paths["short.wav"].stat().st_size
    jobs = [Job(p, p.with_suffix(".out.flac")) for p in paths.values()]
    work, total_s = _headers(jobs)
    assert work[paths["long.ogg"]] == 2 * 6 * 44100
    assert total_s == pytest.approx(1 + 6 + 3)
    order = [u[0].input.name for u in _units(jobs, album=False, work=work)]
    assert order == ["long.ogg", "mono.flac", "short.wav"]


@pytest.fixture
def frames_read(monkeypatch):
    """Start counting the frames soundfile reads, per file name: returns the dict."""

    def start() -> dict[str, int]:
        read: dict[str, int] = {}
        real_read = sf.SoundFile.read

        def counting_read(self, frames=-1, *args, **kwargs):
            data = real_read(self, frames, *args, **kwargs)
            name = os.fsdecode(os.path.basename(self.name))
            read[name] = read.get(name, 0) + len(data)
            return data

        monkeypatch.setattr(sf.SoundFile, "read", counting_read)
        return read

    return start


@pytest.mark.parametrize("cache", ["cold", "warm", "none"])
def test_each_track_is_decoded_exactly_once(tmp_path, write_audio, frames_read, cache):
    """Frames decoded per track, counted at soundfile: one pass over each file whether
    the analysis is fresh, cached or loudness-only (issue 10: decode once)."""
    lengths = {"a.flac": 3 * 44100 + 17, "b.flac": 5 * 44100, "c.wav": 2 * 44100 + 1}
    for name, n in lengths.items():
        write_audio(f"lib/{name}", music_like(seconds=n / 44100, seed=len(name))[:, :n])
    settings = RunSettings(use_cache=cache != "none", cache_dir=str(tmp_path / "cache"))
    if cache == "warm":
        run_master([tmp_path / "lib"], tmp_path / "first", settings, n_jobs=1)
    read = frames_read()
    result = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    assert result.summary["ok"] == 3
    assert read == lengths
    if cache == "warm":
        assert {r["fingerprint_cached"] for r in result.records} <= {"memory", "disk"}


def test_tracks_beyond_the_memory_budget_stream_with_the_same_output(tmp_path, write_audio):
    write_audio("lib/a.flac", music_like(seconds=4.0, seed=3))
    kept = run_master([tmp_path / "lib"], tmp_path / "kept", RunSettings(use_cache=False), n_jobs=1)
    tiny = RunSettings(use_cache=False, memory_budget_bytes=1024)  # nothing fits: stream
    streamed = run_master([tmp_path / "lib"], tmp_path / "streamed", tiny, n_jobs=1)
    assert kept.summary["ok"] == streamed.summary["ok"] == 1
    assert sha(tmp_path / "kept" / "a.flac") == sha(tmp_path / "streamed" / "a.flac")


def test_memory_budget_from_the_environment(monkeypatch):
    from auralis_batch.errors import ParameterError
    from auralis_batch.settings import DEFAULT_MEMORY_BUDGET_BYTES, memory_budget_from_env

    monkeypatch.delenv("AURALIS_MEMORY_BUDGET_MB", raising=False)
    assert memory_budget_from_env() == DEFAULT_MEMORY_BUDGET_BYTES
    monkeypatch.setenv("AURALIS_MEMORY_BUDGET_MB", "256")
    assert memory_budget_from_env() == 256 * 1024 * 1024
    monkeypatch.setenv("AURALIS_MEMORY_BUDGET_MB", "lots")
    with pytest.raises(ParameterError, match="AURALIS_MEMORY_BUDGET_MB"):
        memory_budget_from_env()


def test_the_report_series_come_from_the_passes_and_match_an_independent_meter(tmp_path):
    import pyloudnorm

    src = tmp_path / "a.flac"
    sf.write(src, music_like(seconds=12.0, seed=5).T, 44100, subtype="PCM_24")
    result = run_master([src], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    (rec,) = result.records
    s = rec["series"]
    n = len(s["short_term_after"])
    assert 0 < n <= 200
    assert len(s["short_term_before"]) == len(s["compressor_gr_db"]) == len(s["limiter_gr_db"]) == n
    assert min(s["compressor_gr_db"]) >= 0 and min(s["limiter_gr_db"]) >= 0
    assert max(s["limiter_gr_db"]) == pytest.approx(
        rec["render"]["limiter_max_gain_reduction_db"], abs=0.05
    )
    # each point of a 12 s track is one 400 ms gating block: pyloudnorm on those samples
    meter = pyloudnorm.Meter(44100)
    for name, audio in (
        ("short_term_after", sf.read(rec["output"])[0]),
        ("short_term_before", sf.read(src)[0]),
    ):
        for i in (20, 60, 100):
            start = round(i * s["hop_s"] * 44100)
            got = meter.integrated_loudness(audio[start : start + 17640])
            assert s[name][i] == pytest.approx(got, abs=0.15), (name, i)
    spec = s["spectrum"]
    assert len(spec["freqs_hz"]) == len(spec["source_db"]) == len(spec["master_db"]) == 31
    lift = np.nanmedian(
        [m - b for m, b in zip(spec["master_db"], spec["source_db"], strict=True) if m and b]
    )
    assert lift == pytest.approx(rec["render"]["gain_db"], abs=2.5)


@pytest.mark.parametrize("case", ["cache", "no cache", "old record"])
def test_the_masters_spectrum_is_taken_on_the_chunks_its_sources_plot_is(
    tmp_path, write_audio, monkeypatch, case
):
    """One chunk of frames in four: the source's record holds its spectrum over those
    chunks beside the full one (the cached path), or is taken that way (loudness
    only). A record without it (an older version's) has the master take every chunk,
    as its source's full spectrum was. The report plots the source's on the same
    chunks as the master's."""
    from auralis_batch import match, pipeline
    from auralis_batch.match import SPARSE_EVERY, LongTermSpectrum
    from auralis_batch.versions import SPARSE_SPECTRUM_KEY, SPECTRUM_KEY

    seen: dict[str, int] = {}

    def spy(where: str):
        def make(*args, every: int = 1, **kwargs):
            seen[where] = every
            return LongTermSpectrum(*args, every=every, **kwargs)

        return make

    monkeypatch.setattr(pipeline, "LongTermSpectrum", spy("master"))
    if case == "old record":
        monkeypatch.setattr(match.LongTermSpectrum, "subset_levels_db", lambda self: None)
    src = write_audio("lib/a.flac", music_like(seconds=14.0, seed=2))
    settings = RunSettings(use_cache=case != "no cache", cache_dir=str(tmp_path / "c"))
    result = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    assert result.summary["ok"] == 1
    assert seen["master"] == (1 if case == "old record" else SPARSE_EVERY)
    plotted = result.records[0]["series"]["spectrum"]["source_db"]
    if case == "no cache":  # the plain mid, one chunk in four
        sparse = LongTermSpectrum(44100, 2, every=SPARSE_EVERY)
        sparse.process(sf.read(src, always_2d=True)[0].T)
        expected = sparse.levels_db()
    else:
        from auralis_batch.analysis import analyze_file

        rec = analyze_file(src, tempo=False, cache=str(tmp_path / "c"))
        assert rec["cached"]
        if case == "cache":
            assert rec[SPARSE_SPECTRUM_KEY] != rec[SPECTRUM_KEY]
        expected = rec.get(SPARSE_SPECTRUM_KEY, rec[SPECTRUM_KEY])
    assert plotted == [None if v is None else round(v, 1) for v in expected]


def test_run_master_refuses_a_silent_reference_before_writing_anything(tmp_path, write_audio):
    """The Python API checks the reference as the CLI does, once, before any track."""
    from auralis_batch.analysis import analyze_file
    from auralis_batch.errors import ParameterError

    write_audio("lib/a.flac", music_like(seconds=2.0))
    silent = analyze_file(write_audio("ref.flac", np.zeros((2, 5 * 44100))), tempo=False)
    out = tmp_path / "out"
    settings = RunSettings(use_cache=False, reference=silent["path"], reference_record=silent)
    with pytest.raises(ParameterError, match=r"ref\.flac is silent"):
        run_master([tmp_path / "lib"], out, settings, n_jobs=1)
    assert not out.exists()


def test_a_reference_match_decodes_the_reference_once_and_each_target_once(
    tmp_path, write_audio, frames_read
):
    """Issue 12: the reference is decoded and analysed once per run, each target once
    (the range passes reuse the kept signal), with a cold cache and a warm one."""
    from typer.testing import CliRunner

    from auralis_batch.cli import app

    lengths = {"a.flac": 4 * 44100, "b.flac": 3 * 44100}
    for name, n in lengths.items():
        write_audio(f"lib/{name}", music_like(seconds=n / 44100, level_db=-28.0, seed=7)[:, :n])
    ref = write_audio("ref/bright.flac", music_like(seconds=5.0, level_db=-12.0, seed=9))
    read = frames_read()
    for run in ("cold", "warm"):
        read.clear()
        out = tmp_path / f"out-{run}"
        args = ["master", str(tmp_path / "lib"), "--reference", str(ref), "--out", str(out)]
        res = CliRunner().invoke(app, [*args, "-j", "1", "-q", "--cache-dir", str(tmp_path / "c")])
        assert res.exit_code == 0, res.output
        if run == "cold":
            assert read == {**lengths, "bright.flac": 5 * 44100}
        else:  # the reference and the targets' analyses come from the cache
            assert read == lengths


@pytest.mark.parametrize("subtype, decoded_bytes", [("PCM_24", 4), ("PCM_32", 8)])
@pytest.mark.parametrize("ranged", [False, True])
def test_the_memory_budget_counts_the_decoded_audio_in_its_precision(
    tmp_path, write_audio, monkeypatch, subtype, decoded_bytes, ranged
):
    """32-bit integer sources are kept as float64. Without a loudness range to search,
    the processed float32 replaces the decoded audio as pass B makes it: the larger of
    the two must fit (a source that does not streams, and the processed signal alone
    is kept). A reference's range search reads the source again: then the
    decoded audio, the processed float32 and the equalised float64 add up."""
    import dataclasses

    from auralis_batch import engine
    from auralis_batch.engine import Watch, _prepare
    from auralis_batch.plan import Job

    if ranged:
        real = engine.resolve_preset
        monkeypatch.setattr(
            engine,
            "resolve_preset",
            lambda *a: dataclasses.replace(real(*a), target_lra_lu=6.0),
        )
    src = write_audio("a.wav", music_like(seconds=1.0), subtype=subtype)
    samples = 2 * 44100
    job = Job(src, tmp_path / "out" / "a.flac")
    settings = RunSettings(use_cache=False)

    def kept(budget: int) -> tuple[bool, bool]:
        p = _prepare(job, settings, None, Watch(), budget)
        return p.keep_processed, p.keep_equalised

    if not ranged:  # the processed float32 alone must fit (a source beyond it streams)
        assert kept(samples * max(decoded_bytes, 4))[0]
        assert kept(samples * 4)[0] and not kept(samples * 4 - 1)[0]
        return
    exact = samples * (decoded_bytes + 4 + 8)
    assert kept(exact) == (True, True)
    assert kept(exact - 1) == (True, False)
    assert kept(samples * (decoded_bytes + 4) - 1) == (False, False)


def test_the_processed_signal_takes_the_decoded_audios_place(
    tmp_path, write_audio, frames_read, monkeypatch
):
    """In a budget that holds the decoded audio or the processed signal but not both,
    the track is decoded once and equalised and compressed once (pass B lets go of
    each decoded block as it makes the processed one, which the later passes read),
    the master is the one a streamed run writes, and the run's peak of traced memory
    is lower than with both held whole by about the decoded audio's size."""
    import tracemalloc

    from auralis_batch.dynamics import Compressor
    from auralis_batch.engine import TrackSource

    seconds = 8.0
    n = int(seconds * 44100)
    write_audio("lib/a.flac", music_like(seconds=seconds, level_db=-8.0, seed=5))
    compressed: list[int] = []
    real = Compressor.process

    def counting(self, block, **kwargs):
        compressed.append(block.shape[1])
        return real(self, block, **kwargs)

    def peak_of(name: str) -> int:
        tracemalloc.start()
        try:
            assert run_master([tmp_path / "lib"], tmp_path / name, one, n_jobs=1).summary["ok"]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    one = RunSettings(use_cache=False, memory_budget_bytes=2 * n * 4)
    run_master([tmp_path / "lib"], tmp_path / "first", one, n_jobs=1)  # one-time costs
    monkeypatch.setattr(Compressor, "process", counting)
    read = frames_read()
    drained = peak_of("kept")
    assert read == {"a.flac": n} and sum(compressed) == n
    # the lower of two runs each: a one-time allocation in a worker that ran other
    # tests first (a clean clone's suite) once lifted one peak by 2 MB
    drained = min(drained, peak_of("kept-again"))
    with monkeypatch.context() as m:  # the decoded blocks kept whole beside it
        m.setattr(TrackSource, "drop_as_read", lambda self: None)
        whole = min(peak_of("whole"), peak_of("whole-again"))
    decoded = 2 * n * 4
    assert drained < whole - 0.7 * decoded, (drained, whole, decoded)
    tiny = RunSettings(use_cache=False, memory_budget_bytes=1024)  # nothing fits: stream
    run_master([tmp_path / "lib"], tmp_path / "streamed", tiny, n_jobs=1)
    assert sha(tmp_path / "kept" / "a.flac") == sha(tmp_path / "streamed" / "a.flac")
    assert sha(tmp_path / "whole" / "a.flac") == sha(tmp_path / "kept" / "a.flac")


def test_a_silent_track_is_mastered_with_a_warning(tmp_path, write_audio):
    write_audio("lib/silence.flac", np.zeros((2, 3 * 44100)))
    result = run_master(
        [tmp_path / "lib"], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1
    )
    (rec,) = result.records
    assert rec["status"] == "ok" and rec["render"]["target_reached"] is False
    assert "silent or near-silent source" in rec["warning"]


def test_a_clip_shorter_than_a_gating_block_is_called_too_short_not_silent(tmp_path, write_audio):
    write_audio("lib/blip.flac", 0.2 * music_like(seconds=0.1))  # 100 ms, peak -15 dBFS
    result = run_master(
        [tmp_path / "lib"], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1
    )
    (rec,) = result.records
    assert rec["status"] == "ok" and rec["render"]["target_reached"] is False
    assert "too short to measure" in rec["warning"] and "silent" not in rec["warning"]


def test_more_channels_than_flac_holds_fail_early_and_say_so(tmp_path, write_audio):
    """A 10-channel source failed only after it was rendered, with libsndfile's
    "Format not recognised"; it fails before it is decoded, naming the limit and the
    way out, and the batch goes on."""
    rng = np.random.default_rng(2)
    write_audio("lib/ten.wav", 0.1 * rng.standard_normal((10, 44100)))
    write_audio("lib/two.flac", music_like(seconds=1.0))
    plain = RunSettings(use_cache=False)
    result = run_master([tmp_path / "lib"], tmp_path / "out", plain, n_jobs=1)
    by_name = {os.path.basename(r["input"]): r for r in result.records}
    assert by_name["two.flac"]["status"] == "ok"
    ten = by_name["ten.wav"]
    assert ten["status"] == "failed"
    assert "at most 8 channels" in ten["error"] and "--format wav" in ten["error"]
    wav = RunSettings(use_cache=False, fmt="wav")
    again = run_master([tmp_path / "lib"], tmp_path / "out-wav", wav, n_jobs=1)
    assert {r["status"] for r in again.records} == {"ok"}


def test_an_album_track_too_short_to_measure_gets_the_albums_gain_and_says_so(
    tmp_path, write_audio
):
    """A 0.3 s track of an album gets the album's gain like the others; its note said
    "no loudness gain applied" while the file was 3 dB louder, and it had no album
    ReplayGain tags (helper's sweep)."""
    write_audio("lib/A/01.flac", music_like(seconds=6.0, level_db=-30.0, seed=1))
    write_audio("lib/A/02.flac", music_like(seconds=0.3, level_db=-30.0, seed=2))
    settings = RunSettings(use_cache=False, album=True, write_loudness_tags=True)
    result = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    recs = {os.path.basename(r["input"]): r for r in result.records}
    assert {r["status"] for r in recs.values()} == {"ok"}
    short = recs["02.flac"]["render"]
    assert short["gain_db"] == pytest.approx(recs["01.flac"]["render"]["gain_db"], abs=0.01)
    assert short["gain_db"] > 3.0
    assert any("the album's gain applied" in n for n in short["notes"]), short["notes"]
    # and the album's ReplayGain tags, with no track gain of its own (nothing to measure)
    import mutagen

    tags = mutagen.File(tmp_path / "out" / "A" / "02.flac")
    first = mutagen.File(tmp_path / "out" / "A" / "01.flac")
    assert tags["REPLAYGAIN_ALBUM_GAIN"] == first["REPLAYGAIN_ALBUM_GAIN"]
    assert "REPLAYGAIN_TRACK_GAIN" not in tags and "REPLAYGAIN_TRACK_GAIN" in first


def test_a_folder_inside_an_earlier_runs_out_is_read_without_its_masters(tmp_path, write_audio):
    """``master OUT/sub --out OUT`` mastered the masters in OUT/sub again (writing them
    over the tree beside them, journaled as inputs: third sweep). A folder inside an
    earlier run's OUT has that OUT's masters left out; a source put there is read."""
    from auralis_batch.audio import readable_extensions
    from auralis_batch.plan import discover

    write_audio("lib/sub/a.flac", music_like(seconds=1.0))
    out = tmp_path / "out"
    assert run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1).summary["ok"]
    assert (out / "sub" / "a.flac").is_file()
    write_audio("out/sub/new.wav", music_like(seconds=1.0, seed=3))  # a source put there
    audio, _, notes = discover([out / "sub"], extensions=readable_extensions())
    assert [f.name for f, _ in audio] == ["new.wav"]
    assert any("masters that earlier runs wrote" in n for n in notes)


def test_run_master_refuses_a_bare_path_and_analyses_a_reference_path(tmp_path, write_audio):
    """A str is a sequence of letters: run_master("music/", ...) planned m, u, s, i, c
    and / (all of /); and RunSettings(reference=PATH) without its record was ignored:
    the tracks were mastered with gentle (third sweep)."""
    from auralis_batch.errors import ParameterError

    write_audio("lib/a.flac", music_like(seconds=3.0, level_db=-30.0, seed=1))
    ref = write_audio("ref.flac", music_like(seconds=5.0, level_db=-12.0, seed=9))
    with pytest.raises(ParameterError, match="a list of files and folders"):
        run_master(str(tmp_path / "lib"), tmp_path / "out", RunSettings(), dry_run=True)
    settings = RunSettings(use_cache=False, reference=str(ref))
    (rec,) = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1).records
    assert rec["status"] == "ok" and rec["preset"] == "reference"
    assert rec["parameters"]["source"] == "reference"


@pytest.mark.parametrize("album", [False, True])
def test_a_reference_quieter_than_any_master_warns_on_every_track(tmp_path, write_audio, album):
    """A near-silent reference (-60 LUFS: above the -70 LUFS gate) mastered everything
    at -40 LUFS, every track ok with nothing but a note in its parameters (a sweep):
    each master now says so in its warning (the summary line counts them)."""
    write_audio("lib/a.flac", music_like(seconds=3.0, level_db=-30.0, seed=1))
    write_audio("lib/b.flac", music_like(seconds=3.0, level_db=-25.0, seed=2))
    ref = write_audio("ref.flac", music_like(seconds=5.0, level_db=-60.0, seed=9))
    settings = RunSettings(use_cache=False, reference=str(ref), album=album)
    result = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    assert [r["status"] for r in result.records] == ["ok", "ok"]
    for rec in result.records:
        assert f"{ref} measures -5" in rec["warning"]
        assert (
            "outside the -40 to -5 LUFS a master can be made at: mastered to -40.0 LUFS "
            "(is it the reference meant?)"
        ) in rec["warning"]
    loud = write_audio("loud.flac", music_like(seconds=5.0, level_db=-12.0, seed=9))
    fine = RunSettings(use_cache=False, reference=str(loud), album=album)
    result = run_master([tmp_path / "lib"], tmp_path / "out2", fine, n_jobs=1)
    assert not any("outside the" in (r.get("warning") or "") for r in result.records)
    # --target-lufs sets the loudness: nothing was clamped to say (a review)
    given = RunSettings(use_cache=False, reference=str(ref), album=album, target_lufs=-20.0)
    result = run_master([tmp_path / "lib"], tmp_path / "out3", given, n_jobs=1)
    assert not any("outside the" in (r.get("warning") or "") for r in result.records)


@pytest.mark.parametrize(
    ("lufs", "said"),
    [
        (-40.04, None),  # "measures -40.0 LUFS, outside ... -40": rounding (a review)
        (-4.5, None),  # a loud modern master: matched at -5 without a word
        (
            -41.5,
            "-41.5 LUFS, outside the -40 to -5 LUFS a master can be made at: "
            "mastered to -40.0 LUFS (is it the reference meant?)",
        ),
        (
            -3.0,
            "-3.0 LUFS, outside the -40 to -5 LUFS a master can be made at: mastered to -5.0 LUFS",
        ),
    ],
)
def test_the_reference_warning_says_only_what_is_so(lufs, said):
    from auralis_batch.adaptive import reference_target_warning

    got = reference_target_warning({"path": "r.flac", "integrated_lufs": lufs})
    assert got == (None if said is None else f"r.flac measures {said}")


def test_a_reference_whose_audio_changed_redoes_its_masters_saying_so(tmp_path, write_audio):
    """The same reference path with other audio: the masters are redone (its content
    hash is part of the settings), and the reason named the preset's flags, not the
    reference (a sweep)."""
    write_audio("lib/a.flac", music_like(seconds=3.0, level_db=-30.0, seed=1))
    ref = write_audio("ref.flac", music_like(seconds=5.0, level_db=-12.0, seed=9))
    settings = RunSettings(use_cache=False, reference=str(ref))
    run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    write_audio("ref.flac", music_like(seconds=5.0, level_db=-16.0, seed=4))
    (rec,) = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1).records
    assert rec["status"] == "ok"
    assert rec["replaced"].endswith("with other settings: the reference's audio changed")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"fmt": "mp3"}, "fmt, bit_depth: format must be one of"),
        ({"bit_depth": 24}, "bit_depth: must be a str"),
        ({"target_lufs": 5.0}, "target_lufs: must be between -40 and -5 LUFS"),
        ({"ceiling_dbtp": float("nan")}, "ceiling_dbtp: must be between"),
        ({"timeout_per_track_s": -1}, "timeout_per_track_s: must be None, 0 .no limit. or"),
        ({"match_strength": 2}, "match_strength: must be between 0 and 1"),
        ({"album": "yes"}, "album: must be True or False"),
        ({"memory_budget_bytes": 1.5}, "memory_budget_bytes: must be a whole number"),
        ({"preset": 7}, "preset: must be a name or a path"),
    ],
)
def test_run_master_checks_its_settings_before_any_work(tmp_path, write_audio, fields, match):
    """A bad setting failed every track, one by one, after decoding each (third
    sweep): now the run stops before it plans, writes or reads anything."""
    from auralis_batch.errors import ParameterError

    write_audio("lib/a.flac", music_like(seconds=1.0))
    with pytest.raises(ParameterError, match=match):
        run_master([tmp_path / "lib"], tmp_path / "out", RunSettings(**fields), n_jobs=1)
    assert not (tmp_path / "out").exists()


def test_run_master_names_every_bad_setting_and_a_missing_preset(tmp_path):
    from auralis_batch.errors import ParameterError, PresetError

    bad = RunSettings(fmt="mp3", target_lufs=0.0, match_strength=-1.0)
    with pytest.raises(ParameterError) as info:
        run_master([tmp_path], tmp_path / "out", bad, dry_run=True)
    assert [p.split(":")[0] for p in str(info.value).split("; ")] == [
        "target_lufs",
        "match_strength",
        "fmt, bit_depth",
    ]
    with pytest.raises(PresetError, match="unknown preset 'lowd'"):
        run_master([tmp_path], tmp_path / "out", RunSettings(preset="lowd"), dry_run=True)
    with pytest.raises(ParameterError, match="n_jobs"):
        run_master([tmp_path], tmp_path / "out", RunSettings(), n_jobs=0)
    # what the API took before the check stays taken (a review): a Path preset, NumPy
    # integers, a timeout of 0 (no limit)
    import numpy as np

    from auralis_batch.presets import builtin_preset_text

    mine = tmp_path / "mine.toml"
    mine.write_text(builtin_preset_text("warm"))
    fine = RunSettings(preset=mine, memory_budget_bytes=np.int64(2**28), timeout_per_track_s=0)
    fine.check()
    run_master([tmp_path], tmp_path / "out", fine, n_jobs=np.int64(1), dry_run=True)


def test_a_render_the_limiter_left_over_its_ceiling_is_never_written(
    tmp_path, write_audio, monkeypatch
):
    """The ceiling is a promise: a render over it (a limiter fault, as the fourth
    sweep's ring overflow was) is redone with the gain lowered; one still over it after
    two tries failed nowhere and was written anyway. Now the track fails, says why,
    and leaves nothing in OUT; the batch goes on."""
    import dataclasses
    from pathlib import Path

    from auralis_batch import engine, pipeline

    real = pipeline._render_pass
    faulty = {"b.flac"}
    current: list[str] = []

    def render_pass(*args, **kwargs):
        done = real(*args, **kwargs)
        if current and current[-1] in faulty:  # as if the limiter had let a peak through
            over = dataclasses.replace(done.after, true_peak_dbtp=-0.5)
            return dataclasses.replace(done, after=over)
        return done

    real_master = engine.master_stream

    def master_stream(source, **kwargs):  # which track is rendered now
        current.append(Path(source.path).name)
        return real_master(source, **kwargs)

    monkeypatch.setattr(pipeline, "_render_pass", render_pass)
    monkeypatch.setattr(engine, "master_stream", master_stream)
    write_audio("lib/a.flac", music_like(seconds=2.0, seed=1))
    write_audio("lib/b.flac", music_like(seconds=2.0, seed=2))
    settings = RunSettings(use_cache=False)
    result = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    by_name = {Path(r["input"]).name: r for r in result.records}
    assert by_name["a.flac"]["status"] == "ok"
    assert by_name["b.flac"]["status"] == "failed"
    assert "over the -1 dBTP ceiling after the gain was lowered twice" in by_name["b.flac"]["error"]
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.flac")) == ["a.flac"]


def test_a_named_file_met_again_in_a_named_folder_is_planned_once(tmp_path, write_audio):
    """``master song.dat lib`` (song.dat inside lib, a WAV by another extension)
    reported it skipped ("not an audio file") and mastered: two lines for one file;
    given three times, the "given more than once" note came twice (fourth sweep)."""
    from pathlib import Path

    from auralis_batch.audio import readable_extensions
    from auralis_batch.plan import plan_master

    dat = write_audio("lib/song.wav", music_like(seconds=0.5)).rename(tmp_path / "lib/song.dat")
    write_audio("lib/other.flac", music_like(seconds=0.5))
    (tmp_path / "lib" / "notes.txt").write_text("not audio")
    plan = plan_master(
        [dat, tmp_path / "lib", dat], tmp_path / "out", "flac", extensions=readable_extensions()
    )
    assert sorted(j.input.name for j in plan.jobs) == ["other.flac", "song.dat"]
    assert [Path(r["input"]).name for r in plan.records] == ["notes.txt"]
    assert plan.notes == [f"{dat}: given more than once; mastered once"]
    # a folder given twice: one note for it, not one for each of its files
    lib = tmp_path / "lib"
    plan = plan_master([lib, lib], tmp_path / "out", "flac", extensions=readable_extensions())
    assert plan.notes == [f"{lib}: given more than once; read once"]
    assert sorted(j.input.name for j in plan.jobs) == ["other.flac"]
    # "lib/in/.." is where the link leads, not lib: another input (a review)
    elsewhere = tmp_path / "nas"
    write_audio("nas/far.flac", music_like(seconds=0.5))
    (elsewhere / "inbox").mkdir()
    (lib / "in").symlink_to(elsewhere / "inbox")
    plan = plan_master(
        [lib, lib / "in" / ".."], tmp_path / "out", "flac", extensions=readable_extensions()
    )
    assert "far.flac" in {j.input.name for j in plan.jobs} and not plan.notes
    plan = plan_master(  # the same folder by another name: read once, said so
        [elsewhere, lib / "in" / ".."], tmp_path / "out", "flac", extensions=readable_extensions()
    )
    assert plan.notes == [f"{lib / 'in' / '..'}: the same as {elsewhere}, given too; read once"]


def test_how_a_preset_file_or_reference_is_spelled_redoes_nothing(tmp_path, write_audio):
    """``./mine.toml`` for ``mine.toml``, an absolute path, a link or another working
    folder (a Dask run makes paths absolute) counted as other settings: a finished
    library was mastered again into the same bytes (fifth sweep)."""
    from auralis_batch.presets import builtin_preset_text

    write_audio("lib/a.flac", music_like(seconds=2.0, seed=1))
    ref = write_audio("refs/ref.flac", music_like(seconds=4.0, level_db=-12.0, seed=9))
    (tmp_path / "link.flac").symlink_to(ref)
    mine = tmp_path / "p" / "mine.toml"
    mine.parent.mkdir()
    mine.write_text(builtin_preset_text("warm"))
    (tmp_path / "mine-link.toml").symlink_to(mine)
    for first, again in (
        (
            RunSettings(preset=str(mine), use_cache=False),
            RunSettings(preset=str(tmp_path / "mine-link.toml"), use_cache=False),
        ),
        (
            RunSettings(reference=str(ref), use_cache=False),
            RunSettings(reference=str(tmp_path / "link.flac"), use_cache=False),
        ),
    ):
        out = tmp_path / f"out-{first.preset != 'gentle'}-{first.reference is not None}"
        (done,) = run_master([tmp_path / "lib"], out, first, n_jobs=1).records
        assert done["status"] == "ok"
        (rerun,) = run_master([tmp_path / "lib"], out, again, n_jobs=1).records
        assert rerun["status"] == "skipped", rerun
    # a journal an earlier version wrote (the path as typed) is still accepted
    spelled = RunSettings(preset=str(mine))._hash(spelled=True)
    assert spelled != RunSettings(preset=str(mine)).fingerprint()
    assert spelled in RunSettings(preset=str(mine)).fingerprints()


def test_a_reference_this_run_would_replace_is_refused_before_any_work(tmp_path, write_audio):
    """``--reference OUT/sad.flac`` with sad in the inputs replaced the reference with
    a master matched to it, and each identical re-run matched to another (fifth
    sweep)."""
    from auralis_batch.batch import PlanError

    write_audio("lib/sad.flac", music_like(seconds=4.0, seed=1))
    write_audio("lib/b.flac", music_like(seconds=2.0, seed=2))
    out = tmp_path / "out"
    run_master([tmp_path / "lib"], out, RunSettings(use_cache=False), n_jobs=1)
    before = (out / "sad.flac").read_bytes()
    settings = RunSettings(use_cache=False, reference=str(out / "sad.flac"))
    with pytest.raises(PlanError) as info:
        run_master([tmp_path / "lib"], out, settings, n_jobs=1)
    assert "is the output of" in str(info.value.problems) and "copy it out of --out" in str(
        info.value.problems
    )
    assert (out / "sad.flac").read_bytes() == before


def test_a_unit_that_ran_counts_as_started_after_its_progress_mark_is_gone(tmp_path, write_audio):
    """A worker removes its progress mark when its unit ends, stopped or not; the run
    read "started" from those marks at its end, so a track a full disk stopped mid-way
    on the other worker was reported "not started" (fifth sweep)."""
    from auralis_batch import batch

    src = write_audio("lib/a.flac", music_like(seconds=1.0))
    inflight = tmp_path / "inflight"
    inflight.mkdir()
    unit = [batch.Job(src, tmp_path / "out" / "a.flac")]
    i, recs = batch._indexed(3, unit, RunSettings(use_cache=False), inflight, None)
    assert i == 3 and recs[0]["status"] == "ok"
    assert not (inflight / "3").exists()  # the progress mark went with the unit
    assert batch._started_units(inflight) == {3}
    (inflight / "5").write_text("0\n")  # one running now
    (inflight / "commit-0123456789abcdef.json").write_text("{}")  # not a unit's
    assert batch._started_units(inflight) == {3, 5}


@pytest.mark.parametrize(
    "order", [("lib/sub", "lib"), ("lib", "lib/sub"), ("lib/sub/b.flac", "lib")]
)
def test_out_mirrors_the_outermost_folder_given_whatever_the_order(tmp_path, write_audio, order):
    """``master lib/sub lib`` wrote lib/sub/b.flac as OUT/b.flac and ``master lib
    lib/sub`` as OUT/sub/b.flac (a sweep): an input inside another is read as part of
    it, said in a note; a hidden folder's file, which the walk skips, stays its own."""
    from auralis_batch.audio import readable_extensions
    from auralis_batch.plan import plan_master

    write_audio("lib/a.flac", music_like(seconds=0.5))
    write_audio("lib/sub/b.flac", music_like(seconds=0.5, seed=2))
    hidden = write_audio("lib/.stash/c.flac", music_like(seconds=0.5, seed=3))
    out = tmp_path / "out"
    plan = plan_master(
        [*(tmp_path / p for p in order), hidden], out, "flac", extensions=readable_extensions()
    )
    got = sorted(str(j.output.relative_to(out)) for j in plan.jobs)
    assert got == ["a.flac", "c.flac", "sub/b.flac"]
    inner = tmp_path / order[0 if order[1] == "lib" else 1]
    assert plan.notes == [
        f"{inner}: inside {tmp_path / 'lib'}, which is given too; read as part of it"
    ]


def test_a_file_inside_out_given_with_its_outer_folder_is_not_said_to_be_read(
    tmp_path, write_audio
):
    """``master lib/out/x.flac lib --out lib/out``: lib's walk leaves OUT out, so the
    file named is not 'read as part of lib'; the plan refuses it, as it would
    overwrite itself."""
    from auralis_batch.audio import readable_extensions
    from auralis_batch.plan import plan_master

    write_audio("lib/a.flac", music_like(seconds=0.5))
    x = write_audio("lib/out/x.flac", music_like(seconds=0.5, seed=2))
    plan = plan_master(
        [x, tmp_path / "lib"], tmp_path / "lib" / "out", "flac", extensions=readable_extensions()
    )
    assert not any("read as part of it" in n for n in plan.notes)
    assert any("would overwrite the input" in p for p in plan.problems)


@pytest.mark.parametrize("linked_first", [True, False])
def test_a_linked_subfolder_given_with_its_folder_lands_in_the_same_place(
    tmp_path, write_audio, linked_first
):
    """``lib/L -> ../ext/X``: ``master lib lib/L`` wrote OUT/L/y.flac and ``master
    lib/L lib`` OUT/y.flac (a review): a folder holds an input by its path too."""
    from auralis_batch.audio import readable_extensions
    from auralis_batch.plan import plan_master

    write_audio("lib/a.flac", music_like(seconds=0.5))
    write_audio("ext/X/y.flac", music_like(seconds=0.5, seed=2))
    (tmp_path / "lib" / "L").symlink_to(tmp_path / "ext" / "X")
    lib, linked = tmp_path / "lib", tmp_path / "lib" / "L"
    out = tmp_path / "out"
    order = [linked, lib] if linked_first else [lib, linked]
    plan = plan_master(order, out, "flac", extensions=readable_extensions())
    assert sorted(str(j.output.relative_to(out)) for j in plan.jobs) == ["L/y.flac", "a.flac"]


def test_an_earlier_runs_master_named_beside_its_folder_is_mastered(tmp_path, write_audio):
    """A master of an earlier run, inside a folder given too, is left out of the
    folder's walk; named on its own it was dropped as 'read as part of' the folder,
    and never planned (a review)."""
    from auralis_batch.audio import readable_extensions
    from auralis_batch.plan import plan_master

    write_audio("lib/src/a.flac", music_like(seconds=0.5))
    settings = RunSettings(use_cache=False)
    result = run_master([tmp_path / "lib" / "src"], tmp_path / "lib" / "old", settings, n_jobs=1)
    assert [r["status"] for r in result.records] == ["ok"]
    master = tmp_path / "lib" / "old" / "a.flac"
    plan = plan_master(
        [tmp_path / "lib", master], tmp_path / "o", "flac", extensions=readable_extensions()
    )
    assert master in [j.input for j in plan.jobs]
    assert not any("read as part of it" in n for n in plan.notes)


def test_the_run_removes_only_the_empty_output_folders_it_made(tmp_path):
    """The output folders are made before any worker starts, so one the user makes
    during the run is never one of the run's (a folder merely missing at the start
    was removed as the run's: a review); of the run's own, only empty ones go."""
    from auralis_batch.batch import _make_folders, _remove_empty
    from auralis_batch.plan import Job

    out = tmp_path / "out"
    (out / "B").mkdir(parents=True)  # the user's, before the run
    jobs = [
        Job(tmp_path / "x.flac", out / "A" / "x.flac"),
        Job(tmp_path / "y.flac", out / "B" / "C" / "D" / "y.flac"),
        Job(tmp_path / "z.flac", out / "z.flac"),
    ]
    made: list = []
    _make_folders(jobs, out, made)
    assert made == [out / "A", out / "B" / "C", out / "B" / "C" / "D"]
    assert all(f.is_dir() for f in made)
    (out / "A" / "notes.txt").write_text("the user's")  # put there during the run
    _remove_empty(made)
    assert (out / "A" / "notes.txt").exists() and (out / "B").is_dir()
    assert not (out / "B" / "C").exists()


@pytest.mark.parametrize("order", ["lib L", "L lib", "lib/sub lib/sub/up", "lib/sub/up lib/sub"])
def test_links_into_a_folder_given_too_give_one_layout_whatever_the_order(
    tmp_path, write_audio, order
):
    """``L -> lib/sub``: ``master lib L`` wrote OUT/sub/b.flac and ``master L lib``
    OUT/b.flac; ``lib/sub/up -> ..`` likewise (a review): inputs are decided by their
    real paths, and the folders a walk lists as read already do not count."""
    from auralis_batch.audio import readable_extensions
    from auralis_batch.plan import plan_master

    write_audio("lib/a.flac", music_like(seconds=0.5))
    write_audio("lib/sub/b.flac", music_like(seconds=0.5, seed=2))
    (tmp_path / "L").symlink_to(tmp_path / "lib" / "sub")
    (tmp_path / "lib" / "sub" / "up").symlink_to(tmp_path / "lib")
    out = tmp_path / "out"
    inputs = [tmp_path / p for p in order.split()]
    plan = plan_master(inputs, out, "flac", extensions=readable_extensions())
    got = sorted(str(j.output.relative_to(out)) for j in plan.jobs)
    assert got == ["a.flac", "sub/b.flac"]  # as lib's own layout, in every order


def test_a_masters_name_that_another_masters_folder_needs_is_found_at_start(tmp_path, write_audio):
    """``lib/x.ogg`` and ``lib/x.flac/a.flac``: OUT/x.flac is a master and a folder; the
    dry run planned both and the run failed x.ogg as if a file had appeared there."""
    from auralis_batch.audio import readable_extensions
    from auralis_batch.plan import plan_master

    write_audio("lib/x.wav", music_like(seconds=0.5))
    write_audio("lib/x.flac/a.flac", music_like(seconds=0.5, seed=2))
    plan = plan_master(
        [tmp_path / "lib"], tmp_path / "out", "flac", extensions=readable_extensions()
    )
    assert any("is also the folder of the output of" in p for p in plan.problems), plan.problems


def test_a_folder_given_twice_lists_what_it_skips_once(tmp_path, write_audio):
    from auralis_batch.plan import discover

    write_audio("lib/a.flac", music_like(seconds=0.5))
    (tmp_path / "lib" / "notes.txt").write_text("not audio")
    _, skipped, _ = discover([tmp_path / "lib"] * 2, extensions=frozenset({"flac"}))
    assert [r["input"] for r in skipped] == [str(tmp_path / "lib" / "notes.txt")]


def test_a_stop_while_the_output_folders_are_made_leaves_none_unnoted(tmp_path, monkeypatch):
    """A Ctrl-C between os.mkdir and noting the folder left it behind, empty (a
    review): the stop is raised after the folder is noted."""
    import os
    import signal

    from auralis_batch import batch
    from auralis_batch.plan import Job

    out = tmp_path / "out"
    out.mkdir()
    jobs = [Job(tmp_path / f"{i}.flac", out / f"d{i}" / "x.flac") for i in range(3)]
    real_mkdir = os.mkdir

    def mkdir_then_ctrl_c(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)

    made: list = []
    monkeypatch.setattr(batch.os, "mkdir", mkdir_then_ctrl_c)
    with pytest.raises(batch._Stop), batch._signals_stop_the_run():
        batch._make_folders(jobs, out, made)
    assert len(made) == 1 and list(out.iterdir()) == made  # the one made, and noted


def test_a_journal_mostly_of_superseded_lines_is_rewritten_with_its_live_entries(
    tmp_path, small_library, monkeypatch
):
    """Each refresh (a library chmod'ed, touched, copied without its times) and each
    run's plan is a line, and every run reads the whole file: past three lines a live
    entry (and 1,000 lines) the next run rewrites it with its live entries only, whole
    and fsynced, then renamed over the old one. Legacy entries are kept; a rewrite that
    fails leaves the journal as it was."""
    import json

    from auralis_batch import journal as jmod
    from auralis_batch.journal import Journal

    out = tmp_path / "out"
    settings = RunSettings(use_cache=False)
    run_master([small_library], out, settings, n_jobs=1)
    path = out / JOURNAL_DIR / JOURNAL_NAME
    live = Journal(out).by_output
    entries = [ln for ln in path.read_text().splitlines() if '"output_identity"' in ln]
    legacy = {
        "input": str(tmp_path / "old.wav"),
        "identity": [1, 2, 3],
        "output": str(out / "old.flac"),
        "settings": "s",
        "engine": "0.1.0",
    }
    (out / "old.flac").write_bytes(b"an old master")
    elsewhere = dict(legacy, output="/media/old-name/x.flac")  # OUT mounted elsewhere then
    future = {"kind": "a later build's line", "n": 1}
    with open(path, "a") as f:
        f.write(json.dumps(legacy) + "\n" + json.dumps(elsewhere) + "\n")
        f.write(json.dumps(future) + "\n")
        for _ in range(300):
            f.write("\n".join(entries) + "\n")  # superseded copies of the live entries
    grown = len(path.read_text().splitlines())
    assert grown > jmod.COMPACT_MIN_LINES

    real_replace = os.replace

    def failing(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jmod.os, "replace", failing)
    again = run_master([small_library], out, settings, n_jobs=1)
    assert {s for _, s in _statuses(again)} == {"skipped"}
    assert len(path.read_text().splitlines()) == grown  # as it was
    assert not list(path.parent.glob(f"{JOURNAL_NAME}.compact-*"))
    monkeypatch.setattr(jmod.os, "replace", real_replace)

    sf.write(small_library / "a" / "00.flac", music_like(seconds=2.0, seed=9).T, 44100)
    path.chmod(0o640)  # the rewrite keeps the journal's mode (and, as root, its owner)
    third = run_master([small_library], out, settings, n_jobs=1)  # rewritten, then a master
    assert dict(_statuses(third)) == {
        "00.flac": "ok",
        "01.flac": "skipped",
        "02.flac": "skipped",
        "03.flac": "skipped",
    }
    assert len(path.read_text().splitlines()) < 20
    kept = path.read_text()
    assert json.dumps(elsewhere) in kept and json.dumps(future) in kept  # not ours to drop
    after = Journal(out)
    assert {k: v for k, v in after.by_output.items() if k != "a/00.flac"} == {
        k: v for k, v in live.items() if k != "a/00.flac"
    }
    assert after.by_output["a/00.flac"]["output_identity"]["sha256"] == sha(out / "a" / "00.flac")
    assert "old.flac" in after.legacy
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    fourth = run_master([small_library], out, settings, n_jobs=1)
    assert {s for _, s in _statuses(fourth)} == {"skipped"} and not fourth.notes


def test_a_line_a_rewrite_cannot_write_back_leaves_the_journal_as_it_is(tmp_path, small_library):
    """A legacy line holding 1e999 (read as infinity) made the rewrite raise, a traceback
    at every run (a sweep): the journal is then kept as it is, and the run goes on."""
    import json

    from auralis_batch import journal as jmod

    out = tmp_path / "out"
    settings = RunSettings(use_cache=False)
    run_master([small_library], out, settings, n_jobs=1)
    path = out / JOURNAL_DIR / JOURNAL_NAME
    lines = path.read_text().splitlines()
    odd = {"kind": "another build's", "gain": float("inf")}
    with open(path, "a") as f:
        f.write(json.dumps(odd).replace("Infinity", "1e999") + "\n")
        f.write("\n".join(lines * (jmod.COMPACT_MIN_LINES // len(lines) + 1)) + "\n")
    grown = path.read_text()
    again = run_master([small_library], out, settings, n_jobs=1)
    assert {s for _, s in _statuses(again)} == {"skipped"}
    assert path.read_text() == grown


def test_a_top_level_name_starting_with_a_backslash_is_journaled_and_read_back(
    tmp_path, write_audio
):
    """``lib/\\intro.wav`` (a legal POSIX name): its journal line was refused on reading
    (a key starting with a backslash was taken for a Windows absolute path), so the next
    run refused its own master as not written by auralis-batch (a sweep)."""
    if os.name == "nt":
        pytest.skip("a backslash separates folders on Windows")
    write_audio("lib/\\intro.wav", music_like(seconds=1.5))
    settings = RunSettings(use_cache=False)
    first = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    assert [r["status"] for r in first.records] == ["ok"]
    again = run_master([tmp_path / "lib"], tmp_path / "out", settings, n_jobs=1)
    assert [r["status"] for r in again.records] == ["skipped"]


@pytest.mark.skipif(os.name == "nt", reason="st_ctime is the creation time on Windows")
def test_a_ctime_that_moves_again_while_the_commit_hashes_is_hashed_again(
    tmp_path, small_library, monkeypatch
):
    """A chmod loop during a render: the commit's hash found the ctime moved again and
    gave up, the entry kept no hash, and the next run mastered the track again (a
    sweep). The commit hashes up to HASH_TRIES times."""
    from auralis_batch import engine

    src = small_library / "a" / "00.flac"
    real_render, real_hash = engine._render, engine.sha256_if_same
    state = {"rendered": False, "dropped": 0}

    def render(p, *a, **k):
        if p.job.input == src:
            _move_ctime(src, "chmod")
            state["rendered"] = True
        return real_render(p, *a, **k)

    def hashing(path, identity, **k):
        if state["rendered"] and path == src and not state["dropped"]:
            state["dropped"] += 1
            _move_ctime(src, "chmod")  # moved again while it was hashed
            return None
        return real_hash(path, identity, **k)

    monkeypatch.setattr(engine, "_render", render)
    monkeypatch.setattr(engine, "sha256_if_same", hashing)
    first = run_master([src], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    monkeypatch.undo()
    (rec,) = first.records
    assert state["dropped"] == 1
    assert rec["status"] == "ok" and rec["input_sha256"] == sha(src)
    again = run_master([src], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    assert [r["status"] for r in again.records] == ["skipped"]


@pytest.mark.parametrize("journaled_rules", [1, None])
def test_masters_of_older_adaptive_rules_are_redone_and_say_why(
    tmp_path, small_library, monkeypatch, journaled_rules
):
    """The parameters of ``adaptive`` (and ``--reference``) are computed per track by
    rules that change between versions: a finished library re-run with the same flags
    kept the older rules' masters. A fixed preset's run does not depend on them."""
    from auralis_batch import settings as settings_module
    from auralis_batch.journal import _other_settings
    from auralis_batch.versions import PARAMETER_RULES_VERSION

    good = small_library / "a" / "00.flac"
    args = ["master", str(good), "--out", str(tmp_path / "o"), "-q", "--no-cache"]
    monkeypatch.setattr(settings_module, "PARAMETER_RULES_VERSION", PARAMETER_RULES_VERSION - 1)
    assert runner.invoke(app, [*args, "--preset", "adaptive"]).exit_code == 0
    monkeypatch.undo()
    res = runner.invoke(app, [*args, "--preset", "adaptive"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "[replaced] " in ln)
    assert "the adaptive and reference rules changed" in line, line
    again = runner.invoke(
        app, [*args, "--preset", "adaptive", "--report", str(tmp_path / "r.json")]
    )
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "r.json").read_text())["tracks"][0]["status"] == "skipped"
    # an entry written before the rules were kept says so too
    now = RunSettings(preset="adaptive").journal_flags()
    then = {k: v for k, v in now.items() if k != "rules"}
    if journaled_rules is not None:
        then["rules"] = journaled_rules
    assert _other_settings("adaptive", "adaptive", then, now).endswith(
        "the adaptive and reference rules changed"
    )
    fixed = RunSettings(preset="gentle")
    assert "rules" not in fixed.journal_flags()
