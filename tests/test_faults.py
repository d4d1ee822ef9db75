"""Fault matrix of issue 9: each case run as a user would (the console script in a
subprocess, real files, signals delivered mid-run), asserting exit code, message, no
temporary left, no source changed, no user file replaced, and a journal and report
consistent with the files on disk."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import soundfile as sf

from .conftest import music_like

EXE = Path(sys.executable).with_name("auralis-batch")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    cmd = [
        str(EXE) if EXE.exists() else sys.executable,
        *([] if EXE.exists() else ["-m", "auralis_batch.cli"]),
    ]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*cmd, *map(str, args)], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def popen(*args, env=None, **kw) -> subprocess.Popen:
    cmd = [
        str(EXE) if EXE.exists() else sys.executable,
        *([] if EXE.exists() else ["-m", "auralis_batch.cli"]),
    ]
    return subprocess.Popen(
        [*cmd, *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def journal_done(out: Path) -> list[dict]:
    path = out / ".auralis-batch" / "journal.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "output_identity" in row:
            rows.append(row)
    return rows


def assert_consistent(out: Path) -> None:
    """No temporary left; every journaled output exists with the recorded size and hash."""
    assert not list(out.rglob("*.partial")), list(out.rglob("*.partial"))
    latest = {row["output"]: row for row in journal_done(out)}  # the last entry wins
    for row in latest.values():
        p = out / row["output"]  # keys are relative to OUT
        assert p.exists(), p
        assert p.stat().st_size == row["output_identity"]["bytes"]
        assert sha(p) == row["output_identity"]["sha256"]


def wait_until_working(out: Path, timeout_s: float = 120, *, started: bool = False) -> None:
    """Until a run holds OUT's lock and has tracks in flight (``started``: and one of
    them has noted progress, so its worker is inside the engine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for folder in (out / ".auralis-batch").glob("inflight-*"):
            for mark in folder.glob("[0-9]*"):
                if not started:
                    return
                try:
                    if float(mark.read_text().strip() or 0) > 0:
                        return
                except (OSError, ValueError):
                    pass
        time.sleep(0.05)
    raise AssertionError("the run never started working")


def wait_until_alone(run_pid: int, out: Path, timeout_s: float = 120) -> None:
    """Until the run has a process of its own (``multiprocessing.spawn``, not one of
    loky's workers) re-running a track, and that track has noted progress."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == run_pid and b"multiprocessing.spawn" in cmdline:
                wait_until_working(out, timeout_s=deadline - time.monotonic(), started=True)
                return
        time.sleep(0.05)
    raise AssertionError("no track was ever re-run alone")


@pytest.fixture
def lib(tmp_path, write_audio):
    for i in range(3):
        write_audio(f"lib/{i:02d}.flac", music_like(seconds=3.0, seed=i))
    return tmp_path / "lib"


def test_a_users_file_is_never_replaced_without_overwrite(tmp_path, lib):
    out = tmp_path / "O"
    out.mkdir()
    (out / "00.flac").write_text("precious")
    before = tree_digest(lib)
    res = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache")
    assert res.returncode == 1
    assert "not written by auralis-batch" in res.stderr and "--overwrite" in res.stderr
    assert (out / "00.flac").read_text() == "precious"
    assert (out / "01.flac").exists() and (out / "02.flac").exists()
    assert tree_digest(lib) == before
    assert_consistent(out)
    res = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert sf.info(out / "00.flac").frames == 3 * 44100


def test_another_preset_replaces_our_masters_saying_so(tmp_path, lib):
    out = tmp_path / "O"
    assert cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache").returncode == 0
    res = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache", "--preset", "warm")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("[replaced]") == 3 and "other settings" in res.stderr
    assert_consistent(out)


def test_resume_redoes_a_truncated_output(tmp_path, lib):
    out = tmp_path / "O"
    report = tmp_path / "r.json"
    assert cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache").returncode == 0
    with open(out / "01.flac", "r+b") as f:
        f.truncate(1000)
    res = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache", "--report", report)
    assert res.returncode == 0, res.stderr
    status = {Path(t["input"]).name: t["status"] for t in json.loads(report.read_text())["tracks"]}
    assert status == {"00.flac": "skipped", "01.flac": "ok", "02.flac": "skipped"}
    assert sf.info(out / "01.flac").frames == 3 * 44100
    assert_consistent(out)


def test_masters_are_never_mastered_again(tmp_path, lib):
    nested = lib / "mastered"
    for _ in range(2):
        res = cli("master", lib, "--out", nested, "-q", "-j", "1", "--no-cache")
        assert res.returncode == 0, res.stderr
    assert not (nested / "mastered").exists()
    assert sorted(p.name for p in nested.glob("*.flac")) == ["00.flac", "01.flac", "02.flac"]
    # an earlier run's output folder elsewhere inside the input is not read either
    res = cli("master", lib, "--out", tmp_path / "other", "-q", "-j", "1", "--no-cache")
    assert res.returncode == 0 and "masters that earlier runs wrote" in res.stderr
    assert sorted(p.name for p in (tmp_path / "other").rglob("*.flac")) == [
        "00.flac",
        "01.flac",
        "02.flac",
    ]
    res = cli("master", lib, "--out", lib, "-q", "-j", "1", "--no-cache")
    assert res.returncode == 2 and "is the input folder" in res.stderr


def test_collisions_and_duplicates_are_found_at_start(tmp_path, write_audio):
    a = write_audio("A/x.flac", music_like(seconds=1.0))
    b = write_audio("B/x.flac", music_like(seconds=1.0, seed=2))
    res = cli("master", a, b, "--out", tmp_path / "O", "-q", "-j", "1", "--no-cache")
    assert res.returncode == 2 and "would both be written to" in res.stderr
    assert not list((tmp_path / "O").glob("*.flac"))
    res = cli("master", a, a, "--out", tmp_path / "O", "-q", "-j", "1", "--no-cache")
    assert res.returncode == 0, res.stderr
    assert "given more than once" in res.stderr
    # given once, reached twice through links: not "given more than once", and in the
    # report (a trust sweep's finding: it was missing there)
    links = tmp_path / "links"
    links.mkdir()
    (links / "a-link.flac").symlink_to(a)
    (links / "folder").symlink_to(a.parent)
    report = tmp_path / "r.json"
    res = cli("master", links, "--out", tmp_path / "L", "-j", "1", "--no-cache", "--report", report)
    assert res.returncode == 0, res.stderr
    assert "given more than once" not in res.stderr
    tracks = {Path(t["input"]).name: t for t in json.loads(report.read_text())["tracks"]}
    assert sorted(t["status"] for t in tracks.values()) == ["ok", "skipped"]
    skipped = next(t for t in tracks.values() if t["status"] == "skipped")
    assert "(reached by another path); mastered once" in skipped["error"]


def test_torn_journal_tail_does_not_swallow_the_next_entry(tmp_path, lib):
    out = tmp_path / "O"
    assert (
        cli("master", lib / "00.flac", "--out", out, "-q", "-j", "1", "--no-cache").returncode == 0
    )
    journal = out / ".auralis-batch" / "journal.jsonl"
    with open(journal, "ab") as f:
        f.write(b'{"input": "/torn')  # killed mid-append
    assert cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache").returncode == 0
    assert len({row["output"] for row in journal_done(out)}) == 3
    cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache", "--report", tmp_path / "r.json")
    assert {t["status"] for t in json.loads((tmp_path / "r.json").read_text())["tracks"]} == {
        "skipped"
    }


def test_stale_replaygain_of_the_source_is_not_carried_over(tmp_path, write_audio):
    from mutagen.flac import FLAC

    src = write_audio("s.flac", music_like(seconds=3.0, level_db=-26))
    f = FLAC(src)
    f["REPLAYGAIN_TRACK_GAIN"] = "+9.00 dB"
    f["title"] = "kept"
    f.save()
    out = tmp_path / "O"
    assert cli("master", src, "--out", out, "-q", "-j", "1", "--no-cache").returncode == 0
    g = FLAC(out / "s.flac")
    assert "replaygain_track_gain" not in g and g["title"] == ["kept"]


def test_fifo_and_socket_are_skipped_and_listed(tmp_path, lib):
    os.mkfifo(lib / "pipe.flac")
    out = tmp_path / "O"
    report = tmp_path / "r.json"
    res = cli(
        "master", lib, "--out", out, "-q", "-j", "1", "--no-cache", "--report", report, timeout=120
    )
    assert res.returncode == 0, res.stderr
    tracks = {Path(t["input"]).name: t for t in json.loads(report.read_text())["tracks"]}
    assert tracks["pipe.flac"]["status"] == "skipped" and "FIFO" in tracks["pipe.flac"]["error"]
    # said in the log, not only counted (-q too: it is not progress); a done track is not
    assert f"[skipped] {lib / 'pipe.flac'}: not read: a FIFO" in res.stderr
    again = cli("master", lib, "--out", out, "-j", "1", "--no-cache", timeout=120)
    assert again.stderr.count("[skipped]") == 1, again.stderr
    dry = cli("master", lib, "--out", tmp_path / "D", "--dry-run", timeout=120)
    assert "pipe.flac" in dry.stdout and "planned  " + str(lib / "pipe.flac") not in dry.stdout


def test_folder_symlinks_are_followed_once(tmp_path, lib):
    (lib / "link").symlink_to(lib, target_is_directory=True)  # a loop
    res = cli("master", lib, "--out", tmp_path / "O", "--dry-run")
    assert res.returncode == 0
    assert res.stdout.count("planned") == 3
    assert "folder already read" in res.stdout


def test_a_folder_or_file_met_twice_is_mastered_where_it_lies(tmp_path, write_audio):
    """``lib/0link -> Zreal`` and ``lib/00 Favorites/fav.wav -> ../Album/t.wav``: the
    link came first in name order and took the tracks (OUT/0link/, OUT/00 Favorites/),
    leaving the album's own folder in OUT without them (a helper's adversarial library);
    the real path is mastered now, and the link is the path named as read another way.
    A link to a folder the walk meets no other way is read through it."""
    from auralis_batch.plan import plan_master

    write_audio("lib/Zreal/a.wav", music_like(seconds=1.0))
    write_audio("lib/Album/t.wav", music_like(seconds=1.0, seed=2))
    write_audio("elsewhere/e.wav", music_like(seconds=1.0, seed=3))
    lib = tmp_path / "lib"
    (lib / "0link").symlink_to("Zreal", target_is_directory=True)
    (lib / "00 Favorites").mkdir()
    (lib / "00 Favorites" / "fav.wav").symlink_to("../Album/t.wav")
    (lib / "outside").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    plan = plan_master([lib], tmp_path / "O", "flac", extensions=frozenset({"wav"}))
    assert [j.output for j in plan.jobs] == [
        tmp_path / "O" / "Album" / "t.flac",
        tmp_path / "O" / "Zreal" / "a.flac",
        tmp_path / "O" / "outside" / "e.flac",
    ]
    why = {Path(r["input"]).name: r["error"] for r in plan.records}
    assert why["0link"] == f"folder already read by another path, {lib / 'Zreal'}"
    assert why["fav.wav"].startswith(f"the same file as {lib / 'Album' / 't.wav'} (reached by")
    # across two inputs the first path stays: ``lib/A -> ../ext`` with ``ext/B`` given
    # too planned ext/B's track as OUT/x.flac, on lib/x.wav's name: exit 2 (a review)
    write_audio("s/lib/x.wav", music_like(seconds=1.0, seed=4))
    write_audio("s/ext/B/x.wav", music_like(seconds=1.0, seed=5))
    s = tmp_path / "s"
    (s / "lib" / "A").symlink_to("../ext", target_is_directory=True)
    plan = plan_master([s / "lib", s / "ext" / "B"], s / "O", "flac", extensions=frozenset({"wav"}))
    assert not plan.problems
    assert [j.output for j in plan.jobs] == [s / "O" / "A" / "B" / "x.flac", s / "O" / "x.flac"]
    assert [Path(r["input"]) for r in plan.records] == [s / "ext" / "B" / "x.wav"]


def test_a_link_into_a_subfolder_of_out_is_not_read(tmp_path, write_audio):
    """``lib/y -> OUT/sub``: the masters in it were mastered again into OUT/y/ (a review);
    a link into OUT is OUT."""
    from auralis_batch.plan import plan_master

    write_audio("lib/a.wav", music_like(seconds=1.0))
    write_audio("O/sub/m.wav", music_like(seconds=1.0))
    (tmp_path / "lib" / "y").symlink_to(tmp_path / "O" / "sub", target_is_directory=True)
    plan = plan_master([tmp_path / "lib"], tmp_path / "O", "flac", extensions=frozenset({"wav"}))
    assert [j.output for j in plan.jobs] == [tmp_path / "O" / "a.flac"]
    assert any("the output folder is inside the input" in n for n in plan.notes)


def test_an_input_inside_out_is_read_whole_but_not_the_rest_of_out(tmp_path, write_audio):
    """``master O/in --out O``: the tracks in O/in's subfolders were each skipped as
    "the output folder is inside the input" (every subfolder is inside OUT), the top
    ones mastered (a review). The input is read whole; a link out of it into the rest
    of OUT is not read."""
    from auralis_batch.plan import plan_master

    write_audio("O/in/a.wav", music_like(seconds=1.0))
    write_audio("O/in/sub/b.wav", music_like(seconds=1.0))
    write_audio("O/other/m.wav", music_like(seconds=1.0))
    (tmp_path / "O" / "in" / "y").symlink_to(tmp_path / "O" / "other", target_is_directory=True)
    (tmp_path / "O" / "in" / "z.wav").symlink_to(tmp_path / "O" / "other" / "m.wav")
    out = tmp_path / "O"
    plan = plan_master([out / "in"], out, "flac", extensions=frozenset({"wav"}))
    assert [j.output for j in plan.jobs] == [out / "a.flac", out / "sub" / "b.flac"]
    assert not plan.problems
    assert not any(str(out / "in" / "sub") in n for n in plan.notes)


def test_a_master_whose_name_would_be_too_long_fails_saying_so(tmp_path, write_audio):
    """``<251 bytes>.ogg`` has a 256-byte master ``.flac``: the write failed with "...
    is unreadable (File name too long), not a file this tool can replace; move it away"
    about a file that does not exist (a newcomer's)."""
    long = write_audio("lib/" + "y" * 251 + ".wav", music_like(seconds=1.0))
    write_audio("lib/ok.wav", music_like(seconds=1.0))
    res = cli("master", tmp_path / "lib", "--out", tmp_path / "O", "-q", "-j", "1", "--no-cache")
    assert res.returncode == 1
    assert "would be 256 bytes, more than a file name may have (255)" in res.stderr
    assert "rename the source" in res.stderr and "move it away" not in res.stderr
    assert (tmp_path / "O" / "ok.flac").exists() and long.exists()


def test_no_note_of_masters_inside_a_folder_that_holds_none(tmp_path, lib):
    """``master OUT/in --out OUT`` said "masters that earlier runs wrote inside it are
    not read" whenever an enclosing OUT's journal named any master (a sweep)."""
    out = tmp_path / "O"
    res = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache")
    assert res.returncode == 0, res.stderr
    inner = out / "in"
    inner.mkdir()
    (inner / "x.flac").write_bytes((lib / "00.flac").read_bytes())
    dry = cli("master", inner, "--out", tmp_path / "O2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "masters that earlier runs wrote inside it" not in dry.stdout + dry.stderr
    dry = cli("master", out, "--out", tmp_path / "O3", "--dry-run")
    assert "masters that earlier runs wrote inside it are not read" in dry.stdout + dry.stderr
    # masters met through a link to an earlier OUT are said too
    (tmp_path / "lib2").mkdir()
    (tmp_path / "lib2" / "prev").symlink_to(out, target_is_directory=True)
    dry = cli("master", tmp_path / "lib2", "--out", tmp_path / "O4", "--dry-run")
    assert "masters that earlier runs wrote inside it are not read" in dry.stdout + dry.stderr


def test_second_run_into_the_same_out_is_refused_naming_the_first(tmp_path, write_audio):
    write_audio("lib/long.flac", music_like(seconds=30.0))
    out = tmp_path / "O"
    env = {"AURALIS_BATCH_FAULT": "slow:long.flac"}
    first = popen("master", tmp_path / "lib", "--out", out, "-q", "-j", "1", "--no-cache", env=env)
    try:
        wait_until_working(out)
        second = cli("master", tmp_path / "lib", "--out", out, "-q", "-j", "1", "--no-cache")
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr
        dry = cli("master", tmp_path / "lib", "--out", out, "--dry-run", "--no-cache")
        assert f"[note] another auralis-batch run (pid {first.pid}) is writing" in dry.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # the dead run's lock is taken over; its temporary is removed
    res = cli("master", tmp_path / "lib", "--out", out, "-q", "-j", "1", "--no-cache")
    assert res.returncode == 0, res.stderr
    assert_consistent(out)


def test_runs_into_nested_outs_at_once_are_refused(tmp_path, write_audio):
    """``--out O`` and ``--out O/sub`` at once each locked only its own OUT: one swept
    the other's temporaries and tracks failed (a review). The second is refused, which
    ever of the two comes first, and nothing of the first is touched."""
    write_audio("lib/sub/long.flac", music_like(seconds=30.0))
    write_audio("lib/a.flac", music_like(seconds=1.0))
    out = tmp_path / "O"
    env = {"AURALIS_BATCH_FAULT": "slow:long.flac"}
    for first_out, second_out in ((out, out / "sub"), (out / "sub", out)):
        shutil.rmtree(out, ignore_errors=True)
        first_lib = tmp_path / "lib" if first_out == out else tmp_path / "lib" / "sub"
        second_lib = tmp_path / "lib" if second_out == out else tmp_path / "lib" / "sub"
        args = ("-q", "-j", "1", "--no-cache")
        first = popen("master", first_lib, "--out", first_out, *args, env=env)
        try:
            wait_until_working(first_out)
            second = cli("master", second_lib, "--out", second_out, "-q", "-j", "1", "--no-cache")
            assert second.returncode == 2, second.stderr
            assert f"another auralis-batch run (pid {first.pid}) is writing to {first_out}" in (
                second.stderr
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate()


@pytest.mark.parametrize(
    ("sig", "code", "jobs"),
    [
        (signal.SIGINT, 130, "1"),  # Ctrl-C in-process
        # kill with workers: -m slow (7 s); test_sighup_stops_a_run_as_sigterm_does
        # stops a pool the same way, by the same handler, in the suite
        pytest.param(signal.SIGTERM, 143, "2", marks=pytest.mark.slow),
    ],
)
def test_signal_stops_workers_cleans_up_and_reports(tmp_path, write_audio, sig, code, jobs):
    for i in range(4):
        write_audio(f"lib/{i:02d}.flac", music_like(seconds=2.0, seed=i))
    write_audio("lib/album/zz-slow.flac", music_like(seconds=5.0, seed=9))
    src_before = tree_digest(tmp_path / "lib")
    out, report = tmp_path / "O", tmp_path / "r.json"
    env = {"AURALIS_BATCH_FAULT": "slow:zz-slow.flac"}
    proc = popen(
        "master",
        tmp_path / "lib",
        "--out",
        out,
        "-q",
        "-j",
        jobs,
        "--no-cache",
        "--report",
        report,
        env=env,
    )
    wait_until_working(out)
    deadline = time.monotonic() + 60  # until the slow track writes: its folder is made
    while not list(out.glob("album/*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(out.glob("album/*.partial")), "the slow track never started writing"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "interrupted:" in stderr and "left; the same command finishes them" in stderr
    assert "[error]" not in stderr  # a stop the user asked for is not an error
    time.sleep(0.5)  # an orphaned worker would still be writing now
    assert not list(out.rglob("*.partial"))
    assert not (out / "album").exists()  # the folder the run made for it: gone, empty
    assert not list((out / ".auralis-batch").glob("inflight-*"))
    tracks = {Path(t["input"]).name: t["status"] for t in json.loads(report.read_text())["tracks"]}
    assert tracks["zz-slow.flac"] == "interrupted"
    # the longest track goes first: with one job the others were never reached, and
    # say so (they were all "interrupted", as if each had been cut short: a newcomer)
    others = {name: status for name, status in tracks.items() if name != "zz-slow.flac"}
    if jobs == "1":
        assert set(others.values()) == {"not started"}, tracks
    assert_consistent(out)
    assert tree_digest(tmp_path / "lib") == src_before
    # nothing of the run keeps running
    ps = subprocess.run(["ps", "-eo", "ppid="], capture_output=True, text=True).stdout.split()
    assert str(proc.pid) not in ps


def test_a_failed_tracks_folder_goes_if_the_run_made_it_and_stays_if_it_was_there(
    tmp_path, write_audio
):
    write_audio("lib/good.flac", music_like(seconds=2.0, seed=1))
    for album in ("new", "old"):
        (tmp_path / "lib" / album).mkdir()
        (tmp_path / "lib" / album / "bad.flac").write_bytes(b"fLaC" + b"\0" * 200)
    out = tmp_path / "O"
    (out / "old").mkdir(parents=True)  # the user's, empty
    res = cli("master", tmp_path / "lib", "--out", out, "-q", "-j", "1", "--no-cache")
    assert res.returncode == 1 and res.stderr.count("[failed]") == 2, res.stderr
    assert (out / "good.flac").is_file()
    assert not (out / "new").exists() and (out / "old").is_dir()


def test_a_second_ctrl_c_stops_at_once_and_says_so_and_cleanup_is_not_cut_by_one(tmp_path):
    """Ctrl-C twice (an impatient user) exited 130 without a word, and a signal during
    the run's cleanup raised in the middle of it (leaving temporaries and in-flight
    notes). During cleanup a first signal is now only noted; a second ends the run at
    once, workers killed, the temporaries registered (a report's) removed, with one
    line saying what to do. In a process of its own: the second signal ends it.

    The first one's echo is not a second: GNU ``timeout -s INT`` signals the process
    and then its group, and the run took the at-once exit in 3 of 7 tries (no report,
    temporaries left; a newcomer)."""
    partial = tmp_path / ".r.json.abcdefgh.partial"
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from auralis_batch.batch import _signals_stop_the_run
        from auralis_batch.stopping import ECHO_S, removed_if_ended
        with _signals_stop_the_run() as cleaning, removed_if_ended(sys.argv[1]):
            open(sys.argv[1], "w").close()  # a report's temporary, say
            cleaning()
            os.kill(os.getpid(), signal.SIGINT)  # during cleanup: noted, not raised
            os.kill(os.getpid(), signal.SIGINT)  # its echo (the process, then its group)
            print("cleanup goes on", flush=True)
            time.sleep(ECHO_S + 0.05)
            os.kill(os.getpid(), signal.SIGINT)  # the second: at once
            time.sleep(10)
        print("not reached", flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(partial)],
        capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stdout == "cleanup goes on\n"
    assert not partial.exists()
    assert proc.stderr == (
        "[error] SIGINT again: stopped at once, workers killed; the same command finishes "
        "the tracks and removes what this run left\n"
    )


def test_a_stop_signal_is_the_first_its_echo_or_a_second(monkeypatch):
    """The one decision every stop handler asks: the same signal within ECHO_S of the
    first is its echo; later, or another signal at any time, is a second request."""
    from auralis_batch.stopping import ECHO_S, SecondSignal

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    second = SecondSignal()
    assert second.classify(signal.SIGINT) == "first"
    now[0] += ECHO_S / 2
    assert second.classify(signal.SIGINT) == "echo"
    assert second.classify(signal.SIGTERM) == "second"  # another signal: at once
    now[0] += ECHO_S
    assert second.classify(signal.SIGINT) == "second"


def test_a_ctrl_c_during_the_runs_cleanup_lets_it_finish(tmp_path, write_audio):
    """The run's cleanup (temporaries, in-flight notes, the journal's plan) keeps the
    run's signal handlers: a Ctrl-C there is noted, not raised halfway through it (it
    raised KeyboardInterrupt, or _Stop, and left the notes behind)."""
    for i in range(2):
        write_audio(f"lib/{i:02d}.flac", music_like(seconds=1.0, seed=i))
    out = tmp_path / "O"
    proc = popen(
        "master", tmp_path / "lib", "--out", out, "-q", "-j", "1", "--no-cache",
        env={"AURALIS_BATCH_FAULT": "slow-cleanup:"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    line = ""
    while "[test] cleanup" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 0, stderr  # every track was done before the cleanup
    assert not list((out / ".auralis-batch").glob("inflight-*"))
    assert len(journal_done(out)) == 2
    assert_consistent(out)


def _wait_for(proc: subprocess.Popen, marker: str, timeout_s: float = 60) -> None:
    """Read the process's stderr until ``marker`` (a fault's ``[test] STEP`` line)."""
    deadline = time.monotonic() + timeout_s
    line = ""
    while marker not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
    assert marker in line, f"no {marker!r} within {timeout_s} s"


def _in_background():
    """As a shell's ``&`` starts a job: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("step", "sig", "code"),
    [
        ("plan", signal.SIGINT, 130),  # while the run is planned, started in the background
        # inside the journal step, which runs to its end: -m slow (4 s)
        pytest.param("journal", signal.SIGTERM, 143, marks=pytest.mark.slow),
    ],
)
def test_a_signal_while_the_run_is_planned_stops_it_before_any_track(
    tmp_path, write_audio, step, sig, code
):
    """Before its first track a run had Python's default handlers: SIGTERM killed it
    without a word or a report, SIGINT ended it silently (exit 130) or, in a shell's
    background job (SIGINT ignored), was lost and the run went on to exit 0 (a sweep).
    Now it stops there: every track `not started` in the report, the usual line, 130 /
    143; a step that moves or rewrites files (the journal's) is finished first."""
    for i in range(2):
        write_audio(f"lib/{i:02d}.flac", music_like(seconds=1.0, seed=i))
    out = tmp_path / "O"
    report = tmp_path / "r.json"
    proc = popen(
        "master", tmp_path / "lib", "--out", out, "-q", "-j", "1", "--no-cache",
        "--report", report, env={"AURALIS_BATCH_FAULT": f"slow-{step}:"},
        preexec_fn=_in_background,
    )  # fmt: skip
    _wait_for(proc, f"[test] {step}")
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted: 0 done, 2 left; the same command finishes them" in stderr
    got = json.loads(report.read_text())
    assert [t["status"] for t in got["tracks"]] == ["not started"] * 2
    assert all("while the run was planned" in t["error"] for t in got["tracks"])
    assert not list(out.glob("*.flac"))
    state = out / ".auralis-batch"
    assert not list(state.glob("inflight-*")) and not list(state.glob("*.compact-*"))
    if step == "journal":  # the signal came just before the journal's step: it ran whole
        lines = [json.loads(x) for x in (state / "journal.jsonl").read_text().splitlines()]
        planned = [e["output"] for e in lines if isinstance(e, dict) and "planned" in e]
        assert sorted(planned) == ["00.flac", "01.flac"]
    if step == "journal":  # and the next run finishes them (once is enough: it is slow)
        again = run_api([tmp_path / "lib"], out)
        assert again.summary["ok"] == 2
        assert len(journal_done(out)) == 2
        assert_consistent(out)


def test_sighup_stops_a_run_as_sigterm_does(tmp_path, write_audio):
    """The terminal or ssh session closing sent SIGHUP, whose default killed the run
    like ``kill -9``: no report, its in-flight notes left. It now stops as SIGTERM does
    (exit 129); the pool's workers ignore it (it reaches the whole group)."""
    write_audio("lib/a.flac", music_like(seconds=1.0, seed=1))
    write_audio("lib/slow.flac", music_like(seconds=30.0, seed=2))
    out = tmp_path / "O"
    report = tmp_path / "r.json"
    proc = popen(
        "master", tmp_path / "lib", "--out", out, "-q", "-j", "2", "--no-cache",
        "--report", report, env={"AURALIS_BATCH_FAULT": "slow:slow.flac"},
        start_new_session=True,
    )  # fmt: skip
    wait_until_working(out, started=True)
    os.killpg(proc.pid, signal.SIGHUP)  # as a closing terminal: the whole group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 129, stderr
    assert "interrupted:" in stderr and "Traceback" not in stderr
    assert "resource_tracker" not in stderr  # loky's tracker died of it, and said so
    tracks = json.loads(report.read_text())["tracks"]
    statuses = {Path(t["input"]).name: t["status"] for t in tracks}
    assert statuses["slow.flac"] in ("interrupted", "not started")
    assert not list((out / ".auralis-batch").glob("inflight-*"))
    assert not list(out.rglob("*.partial"))


#: Where a SIGTERM to the run's process lands once its only track is done.
_AFTER_THE_LAST_TRACK = {
    # during the run's cleanup, where it is only noted
    "cleanup": "batch._cleanup_fault = lambda: os.kill(os.getpid(), signal.SIGTERM)",
    # as the last track's record comes in, before the cleanup: it was taken as a stop,
    # and a finished run said "interrupted: 1 done, 0 left" with exit 130 (a newcomer)
    "record": "kw['on_record'] = lambda rec: os.kill(os.getpid(), signal.SIGTERM)",
}


@pytest.mark.parametrize("when", sorted(_AFTER_THE_LAST_TRACK))
def test_a_signal_noted_as_an_api_run_ends_reaches_the_callers_handler(when, tmp_path, write_audio):
    """Through the Python API a SIGTERM during a run's cleanup was noted and then
    dropped: ``for d in libs: run_master(...)`` under systemd went on to the next
    run (a review). It is delivered again as run_master returns, and a run whose
    tracks were all done is not reported stopped."""
    write_audio("lib/a.flac", music_like(seconds=1.0, seed=1))
    script = textwrap.dedent(
        """
        import os, signal, sys
        from auralis_batch import batch
        from auralis_batch.settings import RunSettings
        got = []
        signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
        kw = {}
        HOOK
        result = batch.run_master([sys.argv[1]], sys.argv[2], RunSettings(use_cache=False),
                                  n_jobs=1, **kw)
        statuses = [r["status"] for r in result.records]
        print(result.signal, result.summary["ok"], got, statuses, flush=True)
        """
    ).replace("HOOK", _AFTER_THE_LAST_TRACK[when])
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "lib"), str(tmp_path / "O")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None 1 [15] ['ok']", proc.stderr


def test_sighup_is_not_taken_when_the_process_started_ignoring_it():
    """nohup's SIG_IGN is left alone (the subprocess test below is marked slow)."""
    from auralis_batch.stopping import handled_signals

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert signal.SIGHUP not in handled_signals()
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert signal.SIGHUP in handled_signals() or previous is signal.SIG_IGN


@pytest.mark.slow
def test_a_run_started_under_nohup_outlives_sighup(tmp_path, write_audio):
    """``nohup auralis-batch master ...`` asks the run to outlive the session: a run
    that stopped on SIGHUP must leave an inherited SIG_IGN alone (a review)."""
    write_audio("lib/slow.flac", music_like(seconds=2.0, seed=2))
    out = tmp_path / "O"
    proc = popen(
        "master", tmp_path / "lib", "--out", out, "-q", "-j", "1", "--no-cache",
        env={"AURALIS_BATCH_FAULT": "slow:slow.flac"},
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    wait_until_working(out, started=True)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert (out / "slow.flac").exists()


def test_a_signal_after_every_track_lets_the_reports_finish(tmp_path, write_audio):
    """SIGTERM while the reports were written killed the run (its `.partial` left for
    good under a dated name) and SIGINT ended it with no report and no summary although
    every track was done. Both now let the reports finish; the exit code is the
    tracks'."""
    write_audio("lib/a.flac", music_like(seconds=1.0, seed=1))
    out = tmp_path / "O"
    reports = [tmp_path / "r.json", tmp_path / "r.html"]
    args = [x for r in reports for x in ("--report", r)]
    proc = popen(
        "master", tmp_path / "lib", "--out", out, "-j", "1", "--no-cache", *args,
        env={"AURALIS_BATCH_FAULT": "slow-report:"},
    )  # fmt: skip
    _wait_for(proc, "[test] report")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "[note] SIGTERM came as the run was ending" in stderr
    assert json.loads(reports[0].read_text())["tracks"][0]["status"] == "ok"
    assert reports[1].read_text().startswith("<!DOCTYPE html>")
    assert not list(tmp_path.glob(".r.*.partial"))


@pytest.mark.slow  # a crash, then a signal (12 s); the suite has a crash and a signal
def test_a_signal_stops_the_lone_rerun_after_a_worker_crash(tmp_path, write_audio):
    """After a worker crash the tracks in flight run again one at a time, each in a
    process of its own; a signal then stops that process too, at once."""
    write_audio("lib/crash.flac", music_like(seconds=2.0, seed=1))
    write_audio("lib/slow.flac", music_like(seconds=40.0, seed=2))
    out = tmp_path / "O"
    env = {"AURALIS_BATCH_FAULT": "crash:crash.flac,slow:slow.flac"}
    proc = popen("master", tmp_path / "lib", "--out", out, "-q", "-j", "2", "--no-cache", env=env)
    wait_until_alone(proc.pid, out)  # the pool crashed; slow.flac runs on its own again
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=120)
    assert time.monotonic() - t0 < 15, "the lone rerun ran on after the signal"
    assert proc.returncode == 143, stderr
    assert "interrupted:" in stderr
    time.sleep(0.5)
    assert not list(out.rglob("*.partial"))
    assert not (out / "slow.flac").exists()
    ps = subprocess.run(["ps", "-eo", "ppid="], capture_output=True, text=True).stdout.split()
    assert str(proc.pid) not in ps


def test_full_disk_fails_the_track_names_it_and_cleans_up(tmp_path, lib, monkeypatch):
    """ENOSPC simulated in-process (a real small tmpfs needs root and a mount)."""
    import errno

    from auralis_batch import audio
    from auralis_batch.batch import run_master
    from auralis_batch.report import write_report
    from auralis_batch.settings import RunSettings

    real_write = audio.sf.SoundFile.write
    calls = {"n": 0}

    def full(self, data):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(audio.sf.SoundFile, "write", full)
    out = tmp_path / "O"
    result = run_master([lib], out, RunSettings(use_cache=False), n_jobs=1)
    statuses = sorted(r["status"] for r in result.records)
    assert statuses.count("failed") == 1 and "not started" in statuses
    failed = next(r for r in result.records if r["status"] == "failed")
    assert "no space left on device" in failed["error"]
    assert "skipped" not in statuses
    write_report(tmp_path / "r.json", result.records, result.summary)
    assert_consistent(out)


def test_full_disk_while_tagging_fails_the_track(tmp_path, write_audio, monkeypatch):
    import errno

    from auralis_batch import engine
    from auralis_batch.batch import run_master
    from auralis_batch.errors import OutputError
    from auralis_batch.settings import RunSettings

    src = write_audio("lib/a.flac", music_like(seconds=2.0))
    src_sha = sha(src)

    def no_space(tmp, **kw):
        raise OutputError(f"{tmp}: writing tags failed: {os.strerror(errno.ENOSPC).lower()}")

    monkeypatch.setattr(engine, "write_output_tags", no_space)
    out = tmp_path / "O"
    result = run_master([src], out, RunSettings(use_cache=False), n_jobs=1)
    assert result.summary["failed"] == 1 and result.stopped
    rec = result.records[0]
    assert "no space left on device" in rec["error"] and str(out / "a.flac") in rec["error"]
    assert not (out / "a.flac").exists()
    assert journal_done(out) == []
    assert_consistent(out)
    assert sha(src) == src_sha


def test_logs_one_plain_line_per_track_when_stderr_is_a_file(tmp_path, lib):
    """A log gets plain lines, the summary last; an unusable cache is said once, as a
    [warning] line, however many workers find it so (with -j 2 each said it again,
    with Python's file, line and source: second sweep)."""
    (lib / "bad.flac").write_bytes(b"not audio")
    log = tmp_path / "run.log"
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    args = ["master", lib, "--out", tmp_path / "O", "-j", "2", "--cache-dir", not_a_folder / "c"]
    with open(log, "w") as err:
        res = subprocess.run(
            [str(EXE), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=300,
        )
    assert res.returncode == 1
    text = log.read_text()
    assert text.count("fingerprint cache") == 1 and "[warning] fingerprint cache" in text
    assert "Warning" not in text and ".py:" not in text, text
    lines = [ln for ln in text.splitlines() if " ok " in ln]
    assert len(lines) == 3 and all("x  " in ln for ln in lines)
    *before, last = log.read_text().splitlines()  # the summary ends the run, with its time
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d 3 mastered, 1 failed, .*", last), last
    assert "[failed] " in before[-1] and "bad.flac" in before[-1]
    # every line of a log carries its time, warnings and the failures' list included
    dated = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ")
    assert all(dated.match(ln) for ln in text.splitlines()), text


@pytest.mark.slow  # two -j 2 runs (11 s); test_cache.py counts the class across processes
def test_cache_stats_count_master_runs(tmp_path, lib):
    cache = tmp_path / "cache"
    for preset in ("gentle", "warm"):  # the second run finds every analysis cached
        res = cli("master", lib, "--out", tmp_path / preset, "-q", "-j", "2", "--cache-dir", cache)
        assert res.returncode == 0, res.stderr
    stats = json.loads(cli("cache", "stats", "--json", "--cache-dir", cache).stdout)
    hits = stats["memory"]["hits"] + stats["disk"]["hits"]
    assert stats["disk"]["misses"] >= 3 and hits >= 3
    text = cli("cache", "stats", "--cache-dir", cache).stdout  # the memory level's scope
    scope = r"\(counted across commands; each starts empty\)"
    assert re.search(rf"^memory .* hit rate [\d.]+ % {scope}$", text, re.M), text


def test_version():
    from auralis_batch import __version__

    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"auralis-batch {__version__}"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    return [int(a) for a, b in (line.split() for line in out.splitlines()) if int(b) == pid]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", "rb") as f:  # a zombie is not alive
        return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_kill_9_of_the_run_leaves_no_worker_writing(tmp_path, write_audio):
    for i in range(2):
        write_audio(f"lib/{i:02d}.flac", music_like(seconds=2.0, seed=i))
    write_audio("lib/zz-slow.flac", music_like(seconds=30.0, seed=9))
    out = tmp_path / "O"
    env = {"AURALIS_BATCH_FAULT": "slow:zz-slow.flac"}
    proc = popen("master", tmp_path / "lib", "--out", out, "-q", "-j", "2", "--no-cache", env=env)
    wait_until_working(out)
    time.sleep(1.0)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived its run"
    assert not (out / "zz-slow.flac").exists()
    assert not list(out.rglob("*.partial"))


@pytest.mark.slow  # compiles into an empty Numba cache (a few seconds of two cores)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    ("flags", "kernel"),
    [
        (("-j", "2", "--tempo"), "tempo_from_acf"),
        (("-j", "1", "--tempo"), "tempo_from_acf"),
        (("-j", "1", "--reference", "REF"), "frame_features"),
    ],
    ids=["j2", "j1", "reference"],
)
def test_ctrl_c_during_a_first_runs_analysis_compile_stops_it_at_once(
    tmp_path, write_audio, flags, kernel
):
    """A first run compiles the analysis's kernels before its first track (and a
    reference's); in the run's own process a Ctrl-C then waited for the compile's end
    (a signal inside a kernel is a SystemError): 5 to 13 s on a busy machine, without
    a word (a newcomer's). It compiles in a child now, which the stop kills: the run
    reports and exits, and the child never got as far as the kernel named."""
    for i in range(3):
        write_audio(f"lib/{i:02d}.flac", music_like(seconds=2.0, seed=i))
    ref = write_audio("ref.flac", music_like(seconds=3.0, seed=9))
    out, numba_cache, tmp = tmp_path / "O", tmp_path / "numba", tmp_path / "tmp"
    tmp.mkdir()
    env = {"NUMBA_CACHE_DIR": str(numba_cache), "TMPDIR": str(tmp)}
    args = [ref if a == "REF" else a for a in flags]
    proc = popen("master", tmp_path / "lib", "--out", out, *args, env=env)
    deadline, child = time.monotonic() + 60, None
    while child is None and time.monotonic() < deadline and proc.poll() is None:
        found = [c for c in _children(proc.pid) if b"analysis_main" in _cmdline(c)]
        child = found[0] if found else None
        time.sleep(0.02)
    assert child is not None, "no analysis compile started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not _alive(child)
    assert not list(numba_cache.rglob(f"*{kernel}*.nbi")), "the compile ran to its end"
    assert not list(out.rglob("*.flac"))
    assert not list(tmp.iterdir())  # the child's short file went with it


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB tmpfs (needs root and mount; skipped where the machine forbids it)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture
def bind_mount(tmp_path):
    """``bind(folder)``: the folder reached by a second path, a bind mount (needs root
    and mount; skipped where the machine forbids it)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a bind mount needs root")
    mounted: list[Path] = []

    def bind(folder: Path) -> Path:
        alias = tmp_path / f"alias{len(mounted)}"
        alias.mkdir()
        res = subprocess.run(["mount", "--bind", str(folder), str(alias)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {res.stderr.decode().strip()}")
        mounted.append(alias)
        return alias

    try:
        yield bind
    finally:
        for alias in reversed(mounted):
            subprocess.run(["umount", str(alias)], check=False)


def test_out_that_is_the_input_by_another_path_is_refused(tmp_path, lib, bind_mount):
    """``--out /mnt/lib`` for ``lib`` bind-mounted there: each master was refused as a
    file of the user's, with "--overwrite replaces it"; with it, every source was
    replaced by its master (a review). By identity, OUT is the input folder: exit 2;
    OUT reached as a subfolder of the input is OUT, not read; and no output ever takes
    the place of its own source, whatever the plan decided."""
    (lib / "sub").mkdir()
    sf.write(lib / "sub" / "00.flac", music_like(seconds=2.0, seed=7).T, 44100)
    before = tree_digest(lib)
    alias = bind_mount(lib)
    for extra in ((), ("--overwrite",)):
        res = cli("master", lib, "--out", alias, "-q", "-j", "1", "--no-cache", *extra)
        assert res.returncode == 2 and "is the input folder" in res.stderr, res.stderr
        assert tree_digest(lib) == before and not (lib / ".auralis-batch").exists()
    # OUT is lib/sub by another path: not read as input, as --out lib/sub is not, and
    # its track is a file of the user's there, refused (lib/00.flac's master's name)
    sub_alias = bind_mount(lib / "sub")
    res = cli("master", lib, "--out", sub_alias, "-q", "-j", "1", "--no-cache")
    assert res.returncode == 1, res.stderr
    assert f"{lib / 'sub'}: the output folder is inside the input; not read" in res.stderr
    assert "not written by auralis-batch" in res.stderr
    assert sha(lib / "sub" / "00.flac") == before[str(Path("sub") / "00.flac")]
    assert sha(lib / "00.flac") == before["00.flac"]


def test_a_master_never_takes_the_place_of_its_source(tmp_path, write_audio):
    """The last guard, at the rename: an output that is its own source by another path
    (here a link to the folder, which the plan resolves; a bind mount it cannot) is
    refused even when the plan says to replace whatever is there."""
    import numpy as np

    from auralis_batch.audio import OutputFile
    from auralis_batch.errors import OutputError

    src = write_audio("lib/a.flac", music_like(seconds=1.0))
    (tmp_path / "link").symlink_to(tmp_path / "lib")
    before = sha(src)
    out = OutputFile(
        tmp_path / "link" / "a.flac",
        sample_rate=44100,
        channels=2,
        fmt="flac",
        subtype="PCM_24",
        replace=True,
        source=src,
    )
    with pytest.raises(OutputError, match="it is the source"):
        with out:
            with out.pass_writer() as w:
                w(np.zeros((4410, 2), dtype=np.float32))
            out.commit()
    assert sha(src) == before
    assert not list((tmp_path / "lib").glob(".*.partial"))


def test_a_real_full_disk(tmp_path, write_audio, small_disk):
    for i in range(4):
        write_audio(f"lib/{i:02d}.flac", music_like(seconds=3.0, seed=i))
    src_before = tree_digest(tmp_path / "lib")
    report = tmp_path / "r.json"
    res = cli(
        "master",
        tmp_path / "lib",
        "--out",
        small_disk,
        "-q",
        "-j",
        "2",
        "--no-cache",
        "--report",
        report,
    )
    assert res.returncode == 1
    assert "no space left on device" in res.stderr and "System error" not in res.stderr
    assert "tasks have been cancelled" not in res.stderr
    statuses = [t["status"] for t in json.loads(report.read_text())["tracks"]]
    assert "failed" in statuses and "skipped" not in statuses
    assert "not started" in statuses or "interrupted" in statuses
    assert_consistent(small_disk)
    assert tree_digest(tmp_path / "lib") == src_before


@pytest.mark.slow  # a pty run of 12 s; the suite checks the log lines
def test_progress_in_a_terminal_shows_tracks_in_flight_and_failures_as_they_happen(
    tmp_path, write_audio
):
    import pty
    import select

    write_audio("lib/zz-slow.flac", music_like(seconds=3.5, seed=9))
    write_audio("lib/ok.flac", music_like(seconds=2.0, seed=1))
    (tmp_path / "lib" / "bad.flac").write_bytes(b"fLaC not really")
    master_fd, slave_fd = pty.openpty()
    env = {**os.environ, "AURALIS_BATCH_FAULT": "slow:zz-slow.flac", "COLUMNS": "140"}
    proc = subprocess.Popen(
        [
            str(EXE),
            "master",
            str(tmp_path / "lib"),
            "--out",
            str(tmp_path / "O"),
            "-j",
            "2",
            "--no-cache",
        ],
        stdout=slave_fd,
        stderr=slave_fd,
        env=env,
    )
    os.close(slave_fd)
    seen, failed_at, done_at = b"", None, None
    while True:
        ready, _, _ = select.select([master_fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if failed_at is None and b"failed" in seen and b"bad.flac" in seen:
                failed_at = time.monotonic()
        elif proc.poll() is not None:
            break
    done_at = time.monotonic()
    proc.wait()
    os.close(master_fd)
    text = seen.decode("utf-8", "replace")
    assert proc.returncode == 1
    assert "zz-slow.flac" in text  # the track in flight has its own line
    assert "mastering" in text and "3/3" in text  # every track counted, the bad one too
    # the failure was shown while the slow track was still running, not at the end
    assert failed_at is not None and done_at - failed_at > 1.0


# ---------------------------------------------------------------- from the review of issue 9
def run_api(inputs, out, **kw):
    from auralis_batch.batch import run_master
    from auralis_batch.settings import RunSettings

    settings = RunSettings(use_cache=False, **kw.pop("settings", {}))
    return run_master(inputs, out, settings, n_jobs=1, **kw)


def by_name(result) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in result.records}


def test_a_file_put_where_a_finished_run_planned_one_is_refused(tmp_path, lib):
    out = tmp_path / "O"
    first = run_api([lib / "00.flac"], out)
    assert first.summary["ok"] == 1
    (out / "01.flac").write_text("mine")  # a path no run wrote, though one could have
    assert by_name(run_api([lib], out))["01.flac"]["status"] == "failed"
    assert (out / "01.flac").read_text() == "mine"


def test_forged_journal_lines_never_make_a_users_file_ours(tmp_path, lib):
    out = tmp_path / "O"
    out.mkdir()
    (out / "00.flac").write_text("mine")
    outside = tmp_path / "elsewhere.flac"
    outside.write_text("also mine")
    state = out / ".auralis-batch"
    state.mkdir()
    written = {"bytes": 4, "mtime_ns": 1, "sha256": "0" * 64}
    forged = [
        {"input": "nothing", "output": str(out / "00.flac")},  # no identity: not an entry
        {"input": "x", "output": "00.flac", "settings": "s", "identity": [1, 2, 3]},
        {"planned": "y", "output": "../elsewhere.flac", "at_ns": 0},  # never inside OUT
        {"planned": "z", "output": "00.flac", "at_ns": time.time_ns() + 10**12},  # future
        {
            "input": "x",
            "output": str(outside),
            "settings": "s",
            "identity": [1, 2, 3],
            "output_identity": written,
        },  # an absolute path: not a key
        ["not", "an", "entry"],
    ]
    (state / "journal.jsonl").write_text("".join(json.dumps(f) + "\n" for f in forged))
    result = run_api([lib], out)
    assert by_name(result)["00.flac"]["status"] == "failed"
    assert (out / "00.flac").read_text() == "mine"
    assert outside.read_text() == "also mine"


def test_only_the_masters_in_a_folder_are_left_out_not_its_sources(tmp_path, lib):
    (lib / "sub").mkdir()
    shutil.copy(lib / "00.flac", lib / "sub" / "song.flac")
    from auralis_batch.batch import PlanError

    with pytest.raises(PlanError):  # its output would land on it
        run_api([lib / "sub" / "song.flac"], lib / "sub")
    assert run_api([lib / "00.flac"], lib / "sub").summary["ok"] == 1  # sub/00.flac: a master
    result = run_api([lib], tmp_path / "O")
    names = sorted(Path(r["input"]).relative_to(lib).as_posix() for r in result.records)
    assert "sub/song.flac" in names and "sub/00.flac" not in names


def test_redoing_one_track_of_an_album_redoes_the_album(tmp_path, write_audio):
    from mutagen.flac import FLAC

    for i, level in enumerate((-18, -24, -30)):
        write_audio(f"alb/{i}.flac", music_like(seconds=3.0, seed=i, level_db=level))
    out = tmp_path / "O"
    opts = {"album": True, "write_loudness_tags": True}
    first = run_api([tmp_path / "alb"], out, settings=opts)
    assert first.summary["ok"] == 3
    gain = {r["album"]["gain_db"] for r in first.records}
    with open(out / "1.flac", "r+b") as f:
        f.truncate(5000)
    again = run_api([tmp_path / "alb"], out, settings=opts)
    assert again.summary["ok"] == 3  # the whole album, not the one track alone
    assert {r["album"]["gain_db"] for r in again.records} == gain
    assert "replaygain_album_gain" in FLAC(out / "1.flac")
    assert list(out.glob("1.flac.altered-*"))  # the broken file was kept, not destroyed


ALBUM = {"album": True, "write_loudness_tags": True}


def _mastered_album(tmp_path, write_audio) -> tuple[Path, dict]:
    """Three tracks in alb/ at -18, -24 and -30 dB, mastered as an album into O:
    ``(O, the settings used)``."""
    for i, level in enumerate((-18, -24, -30)):
        write_audio(f"alb/{i}.flac", music_like(seconds=3.0, seed=i, level_db=level))
    out = tmp_path / "O"
    assert run_api([tmp_path / "alb"], out, settings=ALBUM).summary["ok"] == 3
    return out, ALBUM


def test_an_album_with_a_track_that_fails_or_cannot_be_written_is_not_mastered_in_part(
    tmp_path, write_audio
):
    """With --album, a folder is mastered whole or not at all (a second trust sweep's
    findings): a source that broke after the album was mastered had the others
    remastered as a smaller album beside its stale master (two gains in one folder); a
    corrupt track or a user's file at one output name had the rest mastered without it,
    silently, and again on every later run."""
    from mutagen.flac import FLAC

    out, opts = _mastered_album(tmp_path, write_audio)
    before = {p.name: p.read_bytes() for p in out.glob("*.flac")}
    src = tmp_path / "alb" / "2.flac"
    src.write_bytes(src.read_bytes()[:3000])  # the source breaks
    broke = run_api([tmp_path / "alb"], out, settings=opts)
    assert broke.summary["failed"] == 3 and broke.summary["ok"] == 0
    errors = {Path(r["input"]).name: r["error"] for r in broke.records}
    assert "not mastered" not in errors["2.flac"]
    for name in ("0.flac", "1.flac"):
        assert errors[name].startswith(f"not mastered: {src}, a track of its album, failed")
    assert {p.name: p.read_bytes() for p in out.glob("*.flac")} == before  # one album, as was
    gains = {FLAC(p)["replaygain_album_gain"][0] for p in out.glob("*.flac")}
    assert len(gains) == 1

    fresh = tmp_path / "O2"  # a first run: a user's file at one output name
    fresh.mkdir()
    (fresh / "1.flac").write_bytes(b"mine")
    write_audio("alb/2.flac", music_like(seconds=3.0, seed=2, level_db=-30))
    refused = run_api([tmp_path / "alb"], fresh, settings=opts)
    assert refused.summary["failed"] == 3 and sorted(p.name for p in fresh.iterdir()) == [
        ".auralis-batch",
        "1.flac",
    ]
    errors = {Path(r["input"]).name: r["error"] for r in refused.records}
    assert errors["1.flac"].startswith("refused:")
    assert "cannot be written (its output is refused)" in errors["0.flac"]
    assert (fresh / "1.flac").read_bytes() == b"mine"


def test_an_album_whose_commit_fails_for_one_track_publishes_none(
    tmp_path, write_audio, monkeypatch
):
    """Every track of an album is prepared (tags, fsync, checksum) before any takes its
    name: a full disk while tagging the second track left the first published with the
    new gain beside the old masters (a review's finding)."""
    import errno

    from auralis_batch import engine
    from auralis_batch.errors import OutputError

    out, opts = _mastered_album(tmp_path, write_audio)
    before = {p.name: p.read_bytes() for p in out.glob("*.flac")}
    real = engine.write_output_tags

    def full_at_the_second(tmp, **kw):
        if ".1.flac." in str(tmp):
            raise OutputError(f"{tmp}: writing tags failed: no space left on device") from (
                OSError(errno.ENOSPC, "No space left on device")
            )
        return real(tmp, **kw)

    monkeypatch.setattr(engine, "write_output_tags", full_at_the_second)
    again = run_api([tmp_path / "alb"], out, settings={**opts, "preset": "warm"})
    statuses = {Path(r["input"]).name: r["status"] for r in again.records}
    assert statuses == {"0.flac": "failed", "1.flac": "failed", "2.flac": "failed"}
    assert "no space left on device" in by_name(again)["1.flac"]["error"]
    assert "a track of its album, failed" in by_name(again)["0.flac"]["error"]
    assert {p.name: p.read_bytes() for p in out.glob("*.flac")} == before
    assert not list(out.rglob("*.partial"))


def test_an_album_whose_edited_master_cannot_be_kept_aside_is_left_whole(
    tmp_path, write_audio, monkeypatch
):
    """Two masters of an album edited by hand, one in a place it cannot be renamed
    from: the album was redone without that track (a two-track gain beside a stale
    master; a review's finding). Now the one already kept aside goes back, and the
    album is not mastered, each track saying why."""
    import errno

    from mutagen.flac import FLAC

    from auralis_batch import audio, batch

    out, opts = _mastered_album(tmp_path, write_audio)
    for name in ("1.flac", "2.flac"):
        f = FLAC(out / name)
        f["title"] = f"edited {name}"
        f.save()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real = audio.keep_aside

    def read_only_for_two(path, *, dry_run=False):
        if path.name == "2.flac" and not dry_run:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(path, dry_run=dry_run)

    monkeypatch.setattr(batch, "keep_aside", read_only_for_two)
    again = run_api([tmp_path / "alb"], out, settings=opts)
    errors = {Path(r["input"]).name: r["error"] for r in again.records}
    assert again.summary["failed"] == 3, errors
    assert "could not be kept aside (read-only file system)" in errors["2.flac"]
    assert "a track of its album, cannot be written" in errors["1.flac"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_file_that_appears_at_an_album_output_before_its_publish_stops_the_album(
    tmp_path, write_audio, monkeypatch
):
    """A review dropped a file at one output of a new album between its preparation
    and its publish: the other two were published with album tags that counted the
    refused one. Every target is looked at once more before any takes its name."""
    from auralis_batch import engine

    for i, level in enumerate((-18, -24, -30)):
        write_audio(f"alb/{i}.flac", music_like(seconds=3.0, seed=i, level_db=level))
    out = tmp_path / "O"
    real = engine._commit

    def user_saves_one(p, out_file, outcome, settings, **kw):
        rec = real(p, out_file, outcome, settings, **kw)
        if p.job.input.name == "2.flac":  # all three prepared, none published yet
            (out / "1.flac").write_bytes(b"mine")
        return rec

    monkeypatch.setattr(engine, "_commit", user_saves_one)
    result = run_api([tmp_path / "alb"], out, settings=ALBUM)
    assert result.summary["failed"] == 3, result.records
    assert "a file appeared there during the run" in by_name(result)["1.flac"]["error"]
    assert sorted(p.name for p in out.iterdir()) == [".auralis-batch", "1.flac"]
    assert (out / "1.flac").read_bytes() == b"mine"


def test_a_master_changed_since_it_was_written_is_kept_aside(tmp_path, lib):
    from mutagen.flac import FLAC

    out = tmp_path / "O"
    run_api([lib / "00.flac"], out)
    f = FLAC(out / "00.flac")
    f["title"] = "my edit"
    f.save()
    result = run_api([lib / "00.flac"], out)
    rec = by_name(result)["00.flac"]
    assert rec["status"] == "ok" and "kept as" in rec["replaced"]
    (kept,) = out.glob("00.flac.altered-*")
    assert FLAC(kept)["title"] == ["my edit"]
    # --overwrite too keeps the user's edits aside (a second sweep saw them replaced)
    kept.unlink()
    f = FLAC(out / "00.flac")
    f["title"] = "my second edit"
    f.save()
    rec = by_name(run_api([lib / "00.flac"], out, overwrite=True))["00.flac"]
    assert rec["status"] == "ok" and "kept as" in rec["replaced"]
    (kept,) = out.glob("00.flac.altered-*")
    assert FLAC(kept)["title"] == ["my second edit"]
    # ... and so does an edit that kept the size and the time (a tagger's "keep file
    # time"): a finished master taken as done without reading it was replaced unseen
    kept.unlink()
    master = out / "00.flac"
    st = master.stat()
    data = bytearray(master.read_bytes())
    data[5000] ^= 0xFF
    master.write_bytes(bytes(data))
    os.utime(master, ns=(st.st_atime_ns, st.st_mtime_ns))
    rec = by_name(run_api([lib / "00.flac"], out, overwrite=True))["00.flac"]
    assert rec["status"] == "ok" and "kept as" in rec["replaced"]
    (kept,) = out.glob("00.flac.altered-*")
    assert kept.read_bytes() == bytes(data)


def test_moving_out_keeps_its_journal_valid(tmp_path, lib):
    run_api([lib], tmp_path / "O")
    (tmp_path / "O").rename(tmp_path / "moved")
    assert run_api([lib], tmp_path / "moved").summary["skipped"] == 3


def test_an_output_folder_symlinked_elsewhere_is_refused(tmp_path, write_audio):
    write_audio("lib/sub/a.flac", music_like(seconds=1.0))
    user = tmp_path / "user"
    user.mkdir()
    (tmp_path / "O").mkdir()
    (tmp_path / "O" / "sub").symlink_to(user, target_is_directory=True)
    result = run_api([tmp_path / "lib"], tmp_path / "O")
    assert "outside --out" in result.records[0]["error"]
    assert list(user.iterdir()) == []


def test_long_file_names_fit(tmp_path, write_audio):
    name = "交響曲" * 26 + ".flac"  # 239 bytes: the temporary's name must still fit 255
    write_audio(f"lib/{name}", music_like(seconds=1.0))
    assert run_api([tmp_path / "lib"], tmp_path / "O").summary["ok"] == 1


def test_journal_that_is_a_fifo_or_a_symlink_is_a_clear_error(tmp_path, lib):
    state = tmp_path / "O" / ".auralis-batch"
    state.mkdir(parents=True)
    os.mkfifo(state / "journal.jsonl")
    res = cli("master", lib, "--out", tmp_path / "O", "-q", "--no-cache", timeout=60)
    assert res.returncode == 2 and "not a regular file" in res.stderr
    (state / "journal.jsonl").unlink()
    (state / "lock").unlink()
    victim = tmp_path / "notes.txt"
    victim.write_text("keep")
    (state / "lock").symlink_to(victim)
    res = cli("master", lib, "--out", tmp_path / "O", "-q", "--no-cache", timeout=60)
    assert res.returncode == 2 and victim.read_text() == "keep"


def test_an_unwritable_report_folder_is_found_before_any_work(tmp_path, lib):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = cli("master", lib, "--out", tmp_path / "O", "--report", blocker / "r.json")
    assert res.returncode == 2 and "cannot write there" in res.stderr
    assert not (tmp_path / "O").exists() or not list((tmp_path / "O").glob("*.flac"))
    # a folder root may write by its permission bits but nobody can create files in
    if os.path.isdir("/proc"):
        res = cli("master", lib, "--out", tmp_path / "O", "--report", "/proc/nb/r.json")
        assert res.returncode == 2 and "cannot write there" in res.stderr, res.stderr
    # a folder the run creates (OUT itself) is fine, as in the README's first command
    res = cli(
        "master",
        lib / "00.flac",
        "--out",
        tmp_path / "P",
        "-q",
        "--no-cache",
        "--report",
        tmp_path / "P" / "report.json",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "P" / "report.json").read_text())["summary"]["ok"] == 1


def test_an_unreadable_folder_is_listed_not_a_crash(tmp_path, lib, monkeypatch):
    from auralis_batch import plan

    locked = lib / "lost+found"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if isinstance(path, (str, os.PathLike)) and Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(plan.os, "scandir", scandir)
    result = run_api([lib], tmp_path / "O")
    assert by_name(result)["lost+found"]["status"] == "skipped"
    assert result.summary["ok"] == 3


def test_the_journal_takes_the_inputs_identity_from_the_worker(tmp_path):
    from auralis_batch.journal import Journal

    out = tmp_path / "O"
    (out / "x.flac").parent.mkdir(parents=True)
    (out / "x.flac").write_bytes(b"x")
    journal = Journal(out)
    rec = {
        "input": str(tmp_path / "gone.flac"),  # moved away since it was read
        "output": str(out / "x.flac"),
        "status": "ok",
        "input_identity": [1, 2, 3],
        "written": {"bytes": 1, "mtime_ns": 1, "sha256": "0" * 64},
    }
    journal.record(rec, "settings")  # no stat of the input: no crash
    journal.close()
    assert Journal(out).by_output["x.flac"]["identity"] == [1, 2, 3]


def test_a_signal_inside_an_in_process_track_stops_at_the_next_block(monkeypatch):
    from auralis_batch import batch
    from auralis_batch.engine import Watch

    monkeypatch.setattr(batch, "_IN_TRACK", True)
    with batch._signals_stop_the_run():
        os.kill(os.getpid(), signal.SIGINT)  # lands "inside a kernel": no exception here
        watch = Watch(interrupt=batch._raise_if_stopped)
        with pytest.raises(batch._Stop):
            watch.check()
    batch._PENDING_STOP.clear()


def test_a_journal_of_the_earlier_format_is_honoured_once(tmp_path, lib):
    """Outputs an earlier version journaled (absolute paths, no output identity) are
    probably the tool's own, but nothing can prove it: each is kept aside and redone,
    not refused and not overwritten; foreign files stay refused."""
    out = tmp_path / "O"
    run_api([lib], out)
    state = out / ".auralis-batch" / "journal.jsonl"
    old = []
    for name in ("00.flac", "01.flac"):
        old.append(
            {
                "input": str((lib / name).resolve()),
                "identity": [1, 2, 3],
                "output": str((out / name).resolve()),
                "settings": "0123456789abcdef",
                "engine": "0.1.0",
                "preset": "gentle",
                "finished_at": "2026-11-25T00:00:00+0000",
            }
        )
    state.write_text("".join(json.dumps(e) + "\n" for e in old))
    result = run_api([lib], out)
    status = {k: r["status"] for k, r in by_name(result).items()}
    assert status == {"00.flac": "ok", "01.flac": "ok", "02.flac": "failed"}
    assert "earlier version" in by_name(result)["00.flac"]["replaced"]
    assert len([p for p in out.iterdir() if p.name.startswith("00.flac.altered-")]) == 1


# --- trust: whose file is it (a newcomer's trial, 2026-11-30) --------------------------


def _killed_right_after_a_rename(lib: Path, out: Path, name: str) -> None:
    """A run killed (``os._exit``, as by kill -9) right after ``name``'s master took its
    name in ``out``, before its journal line."""
    res = cli(
        "master", lib, "--out", out, "-q", "-j", "1", "--no-cache",
        env={"AURALIS_BATCH_FAULT": f"vanish:{name}"},
    )  # fmt: skip
    assert res.returncode == 71, res.stderr


def test_a_run_killed_between_rename_and_journal_leaves_its_output_recoverable(tmp_path, lib):
    """kill -9 right after an output took its name, before the journal line: the next
    run journals it from the worker's commit note (the file is exactly the noted
    content) and skips it, instead of refusing the tool's own master forever."""
    out = tmp_path / "O"
    _killed_right_after_a_rename(lib, out, "01.flac")
    assert (out / "01.flac").is_file()
    assert "01.flac" not in {row["output"] for row in journal_done(out)}
    again = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache", "--report",
                tmp_path / "r.json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    tracks = {
        Path(t["input"]).name: t for t in json.loads((tmp_path / "r.json").read_text())["tracks"]
    }
    assert tracks["01.flac"]["status"] == "skipped"
    assert "01.flac" in {row["output"] for row in journal_done(out)}
    assert_consistent(out)


def test_a_note_whose_output_cannot_be_read_now_is_kept_for_a_later_run(tmp_path, lib, monkeypatch):
    """After a kill -9 between rename and journal, the next run cannot read the output
    (EIO while hashing it): it cannot prove the master is its own, so it refuses it,
    but keeps the note, even when the dead run had this run's pid (a container's); the
    run after that proves it and skips it (before, the note was swept and the tool's
    own master was foreign for good)."""
    from auralis_batch import audio

    out = tmp_path / "O"
    _killed_right_after_a_rename(lib, out, "01.flac")
    state = out / ".auralis-batch"
    (dead,) = state.glob("inflight-*")
    dead.rename(state / f"inflight-{os.getpid()}")  # the dead run had this pid
    real = audio._sha256_file

    def eio(path, **kw):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(audio, "_sha256_file", eio)
    first = run_api([lib], out)
    assert by_name(first)["01.flac"]["status"] == "failed"  # not proven ours: refused
    assert len(list(state.glob("inflight-*/commit-*.json"))) == 1
    monkeypatch.setattr(audio, "_sha256_file", real)
    again = run_api([lib], out)
    assert by_name(again)["01.flac"]["status"] == "skipped", by_name(again)["01.flac"]
    assert "01.flac" in {row["output"] for row in journal_done(out)}
    assert_consistent(out)


def test_a_users_file_at_a_killed_runs_output_name_is_never_replaced(tmp_path, lib):
    out = tmp_path / "O"
    res = cli(
        "master", lib, "--out", out, "-q", "-j", "1", "--no-cache",
        env={"AURALIS_BATCH_FAULT": "crash:01.flac"},
    )  # fmt: skip
    assert res.returncode != 0 or "01.flac" in res.stdout + res.stderr
    (out / "01.flac").unlink(missing_ok=True)
    (out / "01.flac").write_text("my own file")  # newer than the dead run's plan
    again = run_api([lib], out)
    assert by_name(again)["01.flac"]["status"] == "failed"
    assert "not written by auralis-batch" in by_name(again)["01.flac"]["error"]
    assert (out / "01.flac").read_text() == "my own file"


def _journal_lines(out: Path, *entries: dict) -> None:
    with open(out / ".auralis-batch" / "journal.jsonl", "a") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")


def test_hand_written_journal_lines_cannot_vouch_for_a_users_file(tmp_path, lib):
    out = tmp_path / "O"
    run_api([lib / "02.flac"], out)  # a journal exists
    (out / "00.flac").write_text("precious 0")
    (out / "01.flac").write_text("precious 1")
    st = os.stat(out / "01.flac")
    _journal_lines(
        out,
        {"planned": "forged", "output": "00.flac", "at_ns": 0},  # a plan vouches for nothing
        {  # the right size and time, another input, but not the file's checksum
            "input": "/nowhere/x.ogg",
            "identity": [1, 2, 3],
            "output": "01.flac",
            "output_identity": {
                "bytes": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": "0" * 64,
            },
            "settings": "x",
        },
    )
    result = run_api([lib], out)
    assert by_name(result)["00.flac"]["status"] == "failed"
    assert (out / "00.flac").read_text() == "precious 0"
    # the mismatching entry's file is kept aside, never overwritten
    kept = [p for p in out.iterdir() if p.name.startswith("01.flac.altered-")]
    assert by_name(result)["01.flac"]["status"] == "ok" and len(kept) == 1
    assert kept[0].read_text() == "precious 1"


def test_only_temporaries_of_planned_outputs_are_swept(tmp_path, lib):
    out = tmp_path / "O"
    run_api([lib], out)
    videos = out / "My Videos"
    videos.mkdir()
    download = videos / ".holiday.mkv.download.partial"  # the tool's pattern, not its file
    download.write_text("half a film")
    from auralis_batch.audio import temporary_name

    dead = temporary_name(out / "00.flac")  # a temporary of an output it plans
    dead.write_text("x")
    run_api([lib], out)
    assert download.read_text() == "half a film"
    assert not dead.exists()


def test_a_symlinked_state_folder_is_refused_and_nothing_outside_is_touched(tmp_path, lib):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "inflight-1").mkdir(parents=True)
    (elsewhere / "inflight-1" / "data").write_text("keep")
    out = tmp_path / "O"
    out.mkdir()
    (out / ".auralis-batch").symlink_to(elsewhere, target_is_directory=True)
    res = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache")
    assert res.returncode == 2
    assert "symbolic link" in res.stderr
    assert (elsewhere / "inflight-1" / "data").read_text() == "keep"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["inflight-1"]


def test_a_deeply_nested_journal_line_is_just_ignored(tmp_path, lib):
    out = tmp_path / "O"
    run_api([lib], out)
    with open(out / ".auralis-batch" / "journal.jsonl", "a") as f:
        f.write("[" * 100000 + "\n")
    assert run_api([lib], out).summary["skipped"] == 3


def test_a_forged_commit_note_cannot_vouch_for_a_users_file(tmp_path, lib):
    from auralis_batch.journal import CommitLog

    out = tmp_path / "O"
    run_api([lib / "02.flac"], out)
    (out / "00.flac").write_text("precious")
    folder = out / ".auralis-batch" / "inflight-12345"
    folder.mkdir()
    st = os.stat(out / "00.flac")
    written = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": "1" * 64}
    CommitLog(folder, "s").note(lib / "00.flac", [1, 2, 3], out / "00.flac", written, "gentle")
    result = run_api([lib], out)
    assert by_name(result)["00.flac"]["status"] == "failed"
    assert (out / "00.flac").read_text() == "precious"


@pytest.mark.parametrize(
    "redirect, jobs",
    [  # both streams closed at -j 1: -m slow (4 s); stderr closed with workers is here
        pytest.param("2>&- >&-", 1, marks=pytest.mark.slow),
        ("2>&- >stdout.txt", 2),
        ("2>&1 | head -c 1 >/dev/null", 1),
    ],
)
def test_a_run_whose_output_streams_go_away_still_masters_everything(tmp_path, lib, redirect, jobs):
    """Standard error closed before the start, or a log reader that exits after its
    first byte: the batch carries on and writes every output and its report; its
    workers start as usual (none of them 'died', nothing written to stdout)."""
    exe = str(EXE) if EXE.exists() else f"{sys.executable} -m auralis_batch.cli"
    out, report = tmp_path / "O", tmp_path / "r.json"
    cmd = f"{exe} master '{lib}' --out '{out}' -j {jobs} --no-cache --report '{report}' {redirect}"
    res = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], timeout=300, cwd=tmp_path)
    assert res.returncode in (0, 141)  # 141: head's pipe, when bash saw the SIGPIPE
    assert sorted(p.name for p in out.glob("*.flac")) == ["00.flac", "01.flac", "02.flac"]
    tracks = json.loads(report.read_text())["tracks"]
    assert [t["status"] for t in tracks] == ["ok"] * 3
    assert not [t["warning"] for t in tracks if t.get("warning")]
    if "stdout.txt" in redirect:
        assert (tmp_path / "stdout.txt").read_text() == ""
    assert_consistent(out)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["presets", "list"], ["analyze", "LIB", "--json", "--no-cache"]])
def test_a_standard_output_on_a_full_disk_is_an_error_not_a_silent_success(tmp_path, lib, args):
    """``analyze --json > x.json`` on a full disk left an empty file and exit 0 (a sweep):
    only a reader that went away is quiet; a write that failed says so and exits 1."""
    exe = str(EXE) if EXE.exists() else f"{sys.executable} -m auralis_batch.cli"
    argv = " ".join(f"'{lib}'" if a == "LIB" else a for a in args)
    res = subprocess.run(
        ["bash", "-c", f"{exe} {argv} > /dev/full"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 1, res.stderr
    assert "[error] standard output: not all written (No space left on device)" in res.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["master", "", "--out", "O"], "the argument after master is empty"),
        (["master", "LIB", "--out", ""], "the argument after --out is empty"),
        (["master", "LIB", "--out="], "--out= is given an empty value"),
        (["master", "LIB", "--out", "O", "--cache-dir", ""], "the argument after --cache-dir"),
        (["master", "--album", "", "--out", "O"], "the argument after --album is empty"),
    ],
)
def test_an_empty_argument_is_a_usage_error_not_the_current_folder(tmp_path, lib, args, said):
    """``--out "$DEST"`` with DEST unset in a cron line wrote the masters and the journal
    into the current folder, and ``master "$SRC"`` mastered it (a sweep)."""
    exe = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "auralis_batch.cli"]
    argv = [str(lib) if a == "LIB" else a for a in args]
    res = subprocess.run([*exe, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert f"[error] {said}" in res.stderr and "Traceback" not in res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["lib"]  # nothing written here


def test_file_names_that_are_not_utf8_or_hold_control_characters(tmp_path):
    """A Latin-1 name from an old rip is mastered and reported; names with an escape
    sequence or a newline stay one plain line each in a log (no forged lines)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    audio = music_like(seconds=2.0).T
    names = [os.fsdecode(b"caf\xe9.wav"), "red\x1b[31m.wav", "two\n2026-11-30T00:00:00 ok x.wav"]
    for name in names:
        sf.write(os.fsencode(lib / name), audio, 44100, subtype="PCM_16")
    out = tmp_path / "O"
    reports = [tmp_path / f"r.{ext}" for ext in ("json", "csv", "html")]
    args = [a for r in reports for a in ("--report", r)]
    res = cli("master", lib, "--out", out, "-j", "1", "--no-cache", *args)
    assert res.returncode == 0, res.stderr
    assert len(list(out.glob("*.flac"))) == 3
    report = _strict_json(reports[0].read_text())  # no lone surrogates: any parser reads it
    assert report["summary"]["ok"] == 3
    assert any(t["input"].endswith("caf\\xe9.wav") for t in report["tracks"])
    assert b"caf\xe9.flac" in reports[1].read_bytes()  # the CSV keeps the name's own bytes
    reports[2].read_text(encoding="utf-8")  # the page is UTF-8
    assert "\x1b" not in res.stderr and "\x1b" not in res.stdout
    track_lines = [ln for ln in res.stderr.splitlines() if ln[:4].isdigit() and " ok " in ln]
    assert len(track_lines) == 3  # one per track: the name's newline forged none
    assert any("caf\\xe9.wav" in ln for ln in track_lines)
    # with the cache, and again from it
    for _ in range(2):
        res = cli("master", lib, "--out", tmp_path / "C", "-j", "1", "--cache-dir", tmp_path / "c")
        assert res.returncode == 0, res.stderr
    assert "3 skipped" in res.stdout + res.stderr


def test_a_name_with_a_colon_is_journaled_and_skipped_on_the_next_run(tmp_path, write_audio):
    """ "01 Act I: Dawn.flac" is an ordinary POSIX name: the journal kept refusing it
    as a drive letter, and every re-run refused the tool's own master as foreign."""
    write_audio("lib/01 Act I: Dawn.flac", music_like(seconds=2.0))
    out = tmp_path / "O"
    assert run_api([tmp_path / "lib"], out).summary["ok"] == 1
    assert run_api([tmp_path / "lib"], out).summary["skipped"] == 1


def _two_workers_busy(tmp_path, write_audio, seconds: float, slow: str):
    """``master -j 2 --report`` on a-slow.flac and b-slow.flac (``seconds`` long; the
    ``slow`` ones, comma-separated stems, 0.25 s per block), once both workers are
    up with their handlers: ``(proc, worker pids, OUT, report path)``."""
    for name in ("a-slow.flac", "b-slow.flac"):
        write_audio(f"lib/{name}", music_like(seconds=seconds, seed=len(name)))
    out, report = tmp_path / "O", tmp_path / "r.json"
    env = {"AURALIS_BATCH_FAULT": ",".join(f"slow:{stem}.flac" for stem in slow.split(","))}
    proc = popen(
        "master", tmp_path / "lib", "--out", out, "-j", "2", "--no-cache", "--report", report,
        env=env,
    )  # fmt: skip
    wait_until_working(out, started=True)  # the worker's handlers are up by then
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = [w for w in _children(proc.pid) if _alive(w) and b"LokyProcess" in _cmdline(w)]
        time.sleep(0.05)
    assert len(workers) == 2
    return proc, workers, out, report


@pytest.mark.slow  # 9 s; a worker's death fails or redoes only its track in the suite
def test_a_signal_to_one_worker_fails_at_most_its_track_and_the_batch_goes_on(
    tmp_path, write_audio
):
    """SIGINT sent to one worker (not to the run) is ignored (Ctrl-C reaches the whole
    group, and the run stops its workers itself); SIGTERM sent to the other fails the
    track it holds with a message that says so. The run finishes and reports."""
    proc, workers, out, report = _two_workers_busy(tmp_path, write_audio, 4.0, "a-slow,b-slow")
    os.kill(workers[0], signal.SIGINT)
    time.sleep(0.3)
    os.kill(workers[1], signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    tracks = {Path(t["input"]).name: t for t in json.loads(report.read_text())["tracks"]}
    assert sorted(t["status"] for t in tracks.values()) == ["failed", "ok"]
    failed = next(t for t in tracks.values() if t["status"] == "failed")
    assert "sent SIGTERM" in failed["error"] and "internal error" not in failed["error"]
    assert "mastered" in err  # the summary
    assert_consistent(out)


def test_a_worker_killed_mid_track_has_its_tracks_mastered_again_and_says_so(tmp_path, write_audio):
    """kill -9 of one worker (the OOM killer, a user): the tracks in flight are mastered
    again one at a time and came out 'ok' with nothing in the log (a trust sweep's
    finding). Their records and log lines now say a worker died."""
    # a-slow is in flight whichever worker dies
    proc, workers, out, report = _two_workers_busy(tmp_path, write_audio, 2.0, "a-slow")
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    tracks = json.loads(report.read_text())["tracks"]
    assert [t["status"] for t in tracks] == ["ok", "ok"]
    said = "a worker process died while this track was in flight"
    assert any(said in (t.get("warning") or "") for t in tracks)
    assert said in " ".join(err.split())
    assert_consistent(out)


def test_a_folder_at_an_output_name_is_refused_even_with_overwrite(tmp_path, lib):
    out = tmp_path / "O"
    (out / "00.flac").mkdir(parents=True)
    (out / "00.flac" / "keep.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        res = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache", *extra)
        assert res.returncode == 1
        assert "00.flac is a folder" in res.stderr and "--overwrite replaces" not in res.stderr
        assert (out / "00.flac" / "keep.txt").read_text() == "mine"


def test_a_dry_run_says_what_would_happen(tmp_path, lib):
    out = tmp_path / "O"
    run_api([lib], out)
    res = cli("master", lib, "--out", out, "--dry-run", "--overwrite", "--no-cache")
    assert res.returncode == 0
    assert "would replace" in res.stdout and "(replaced" not in res.stdout


def test_a_dry_run_ends_with_the_exit_code_the_real_run_would(tmp_path, lib):
    """A dry run listed 'failed ... refused' and exited 0; the real run exits 1 (a
    second trust sweep's note)."""
    out = tmp_path / "O"
    out.mkdir()
    (out / "00.flac").write_bytes(b"mine")
    dry = cli("master", lib, "--out", out, "--dry-run", "--no-cache")
    assert dry.returncode == 1 and "refused" in dry.stdout
    assert sorted(p.name for p in out.iterdir()) == ["00.flac"]
    real = cli("master", lib, "--out", out, "-q", "-j", "1", "--no-cache")
    assert real.returncode == 1


def test_a_corrupt_cache_is_announced_in_one_line(tmp_path, lib):
    cache = tmp_path / "c"
    assert (
        cli(
            "master", lib / "00.flac", "--out", tmp_path / "O", "-q", "--cache-dir", cache
        ).returncode
        == 0
    )
    (cache / "cache.db").write_bytes(b"garbage" * 1000)
    for suffix in ("-wal", "-shm"):
        (cache / f"cache.db{suffix}").unlink(missing_ok=True)
    res = cli("master", lib / "01.flac", "--out", tmp_path / "O", "-q", "--cache-dir", cache)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "corrupt" in ln]
    # one line, dated as a log's lines are (stderr is a pipe here)
    assert len(lines) == 1 and re.match(r"\d{4}-\d\d-\d\dT[\d:]{8} \[warning\] ", lines[0])
    assert "cache.py" not in res.stderr and "Warning:" not in res.stderr


def test_an_output_changed_while_the_run_runs_is_kept_aside_not_replaced(tmp_path, lib):
    """The journal's word is checked where it counts: right before the new master
    takes the name (the run may reach a track hours after it planned it)."""
    out = tmp_path / "O"
    run_api([lib], out)

    def edit_after_planning(*_):
        (out / "01.flac").write_text("my hand-edited version")

    result = run_api([lib], out, settings={"preset": "punchy"}, on_start=edit_after_planning)
    rec = by_name(result)["01.flac"]
    assert rec["status"] == "ok" and "kept as 01.flac.altered-" in rec["replaced"]
    (kept,) = [p for p in out.iterdir() if p.name.startswith("01.flac.altered-")]
    assert kept.read_text() == "my hand-edited version"
    assert sf.info(out / "01.flac").frames > 0


def test_an_album_remastered_keeps_a_finished_track_that_was_edited_in_place(tmp_path, write_audio):
    """Same size, same mtime, other bytes: a 'done' track promoted to 'replace' by its
    album is verified by SHA-256 too."""
    for i in range(2):
        write_audio(f"lib/A/{i:02d}.flac", music_like(seconds=2.0, seed=i))
    out = tmp_path / "O"
    run_api([tmp_path / "lib"], out, settings={"album": True})
    target = out / "A" / "00.flac"
    st = os.stat(target)
    data = bytearray(target.read_bytes())
    data[-10:] = b"0123456789"  # ten bytes edited in place
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    write_audio("lib/A/02.flac", music_like(seconds=2.0, seed=2))  # the album grows
    result = run_api([tmp_path / "lib"], out, settings={"album": True})
    assert all(r["status"] == "ok" for r in result.records)
    (kept,) = [p for p in (out / "A").iterdir() if p.name.startswith("00.flac.altered-")]
    assert kept.read_bytes() == bytes(data)


def _master_j2_with_fault(lib: Path, out: Path, fault: str):
    """``master -j 2 --no-cache`` of ``lib`` with one injected fault: the process result
    and the report's tracks by file name."""
    report = out.parent / f"{out.name}-report.json"
    res = cli(
        "master", lib, "--out", out, "-j", "2", "--no-cache", "--report", report,
        env={"AURALIS_BATCH_FAULT": fault},
    )  # fmt: skip
    tracks = {Path(t["input"]).name: t for t in json.loads(report.read_text())["tracks"]}
    return res, tracks


@pytest.mark.slow  # -j 2 and a stop (7 s); a stopped run's report is checked in the suite
def test_a_track_written_when_the_run_is_stopped_is_reported_with_its_line(tmp_path, lib):
    """-j 2, Ctrl-C right after 01.flac's output took its name, before its worker
    reported it: the stopped run recovers it from its commit note as ok, gives it its
    log line like every finished track, and counts its audio in the summary."""
    out = tmp_path / "O"
    res, tracks = _master_j2_with_fault(lib, out, "stopped:01.flac")
    assert res.returncode == 130, res.stderr
    rec = tracks["01.flac"]
    assert rec["status"] == "ok" and rec["recovered"] is True, rec
    assert "interrupted by SIGINT after this track's output was written" in rec["warning"]
    lines = [ln for ln in res.stderr.splitlines() if "/01.flac" in ln]
    assert any(" ok " in ln and "; warning: interrupted by SIGINT" in ln for ln in lines)
    ok = [t for t in tracks.values() if t["status"] == "ok"]
    audio = sum(t["duration_s"] for t in ok)
    m, s = divmod(round(audio), 60)
    assert f"0:{m:02d}:{s:02d} of audio" in res.stderr, res.stderr
    assert not list(out.rglob("*.partial"))


@pytest.mark.slow  # 9 s; an edited master kept aside is checked in the suite
def test_a_recovered_redo_of_an_edited_master_says_where_it_was_kept(tmp_path, lib):
    """An edited master is kept aside as its redo takes its name, in the worker; when
    that worker died before reporting, the recovered record said only "it changed since
    auralis-batch wrote it" (a review). It names the file kept aside too."""
    out = tmp_path / "O"
    assert run_api([lib], out).summary["ok"] == 3  # in this process: quicker
    master = out / "01.flac"
    edited = master.read_bytes()[:-1] + b"!"
    master.write_bytes(edited)
    (out / "02.flac").unlink()  # two tracks to do: a pool of two workers
    res, tracks = _master_j2_with_fault(lib, out, "vanish:01.flac")
    assert res.returncode == 0, res.stderr
    rec = tracks["01.flac"]
    assert rec["status"] == "ok" and rec["recovered"] is True, rec
    aside = [p for p in out.iterdir() if p.name.startswith("01.flac.altered-")]
    assert len(aside) == 1 and aside[0].read_bytes() == edited
    assert rec["replaced"].endswith(f": kept as {aside[0].name}, redone"), rec["replaced"]


def test_a_worker_that_dies_after_writing_its_output_leaves_it_journaled(tmp_path, lib):
    """-j 2: the worker holding 01.flac dies right after the rename. Its master is
    complete: journaled from its commit note, not run again (which collided with it),
    reported ok with the measurements the note carried, and the next run skips it."""
    out = tmp_path / "O"
    res, tracks = _master_j2_with_fault(lib, out, "vanish:01.flac")
    assert res.returncode == 0, res.stderr
    lost = tracks["01.flac"]
    assert lost["status"] == "ok" and lost["recovered"] is True, lost
    assert "worker process was lost" in lost["warning"] and "journaled" in lost["warning"]
    measured = lost["after"]["integrated_lufs"]  # what the worker measured, from its note
    assert measured == pytest.approx(-14.0, abs=0.1)
    assert lost["written"]["sha256"] == hashlib.sha256((out / "01.flac").read_bytes()).hexdigest()
    for name in ("00.flac", "02.flac"):  # the other worker's track: redone, or complete
        t = tracks[name]  # before the pool broke and recovered with it
        assert t["status"] == "ok", t
    assert "01.flac" in {row["output"] for row in journal_done(out)}
    rows = journal_done(out)
    assert len(rows) == 3 and not any("measured" in r for r in rows)  # one plain line each
    again = cli("master", lib, "--out", out, "-j", "2", "--no-cache", "-q")
    assert again.returncode == 0, again.stderr
    assert_consistent(out)
    assert not list((out / ".auralis-batch").glob("inflight-*"))


def test_a_worker_that_crashes_on_a_track_fails_only_that_track(tmp_path, lib):
    """-j 2: the worker holding 01.flac dies on it (os._exit), and again when it is
    re-run alone: that track fails saying so, no output at its name; the others are
    mastered and the run exits 1 (the pool's crash path, in the suite)."""
    out = tmp_path / "O"
    res, tracks = _master_j2_with_fault(lib, out, "crash:01.flac")
    assert res.returncode == 1, res.stderr
    assert tracks["01.flac"]["status"] == "failed", tracks["01.flac"]
    assert "crashed" in tracks["01.flac"]["error"]
    assert [tracks[n]["status"] for n in ("00.flac", "02.flac")] == ["ok", "ok"]
    assert not (out / "01.flac").exists()
    assert_consistent(out)


def test_measurements_read_back_from_a_commit_note_are_checked():
    """A note is bytes read back from disk: what the terminal formats as a number must
    be a finite one of a sane size, and a part the reports could not write (NaN, a
    lone surrogate, deep nesting) is dropped, not shown."""
    from auralis_batch.journal import _parse
    from auralis_batch.records import noted_measurements as _noted_measurements

    deep: dict = {}
    for _ in range(500):
        deep = {"x": deep}
    got = _noted_measurements(
        {
            "after": {"integrated_lufs": "-14; rm -rf", "true_peak_dbtp": -1.2, "x": None},
            "before": [1, 2],
            "render": {"gain_db": 3.0, "notes": ["ok"]},
            "parameters": deep,
            "duration_s": float("nan"),
            "sample_rate": True,
            "channels": 2,
            "tempo_bpm": 10**400,
        }
    )
    assert got == {
        "after": {"true_peak_dbtp": -1.2, "x": None},
        "render": {"gain_db": 3.0, "notes": ["ok"]},
        "channels": 2,
    }
    assert _noted_measurements("not a table") == {} == _noted_measurements(None)
    huge = {
        "after": {"integrated_lufs": 10**400, "lra_lu": float("inf")},
        "render": {"a": "\ud800"},
    }
    assert _noted_measurements(huge) == {}  # neither part could be written as JSON
    assert _parse(b'{"bytes": NaN}') is None and _parse(b'{"x": -Infinity}') is None


@pytest.mark.parametrize("preset", ["punchy", "adaptive"])
def test_a_real_records_measurements_pass_the_notes_check_whole(tmp_path, lib, preset):
    """What a worker notes is what a real record holds: the check read back must keep
    all of it (a check stricter than the records would drop real measurements)."""
    from auralis_batch.records import noted_measurements as _noted_measurements

    (rec, *_) = run_api([lib], tmp_path / "O", settings={"preset": preset}).records
    keys = ("duration_s", "sample_rate", "channels", "before", "after", "render", "parameters")
    measured = {k: rec[k] for k in keys}
    assert _noted_measurements(json.loads(json.dumps(measured))) == measured


def test_only_a_notes_known_fields_reach_the_journal(tmp_path):
    """A note is read back from disk: what recovery journals is rebuilt from the fields
    it checked, so an extra key (or an infinity hidden in one) never reaches a line."""
    from auralis_batch.audio import recorded_state
    from auralis_batch.journal import _as_entry, _parse, _valid_entry

    note = _parse(
        b'{"input": "/m/a.flac", "identity": [1, 2, 3], "output": "a.flac", "settings": "s",'
        b' "output_identity": {"bytes": 1, "mtime_ns": 2, "sha256": "' + b"0" * 64 + b'",'
        b' "x": 1e400}, "preset": "warm", "engine": ["x"], "extra": {"y": 1}}'
    )
    assert _valid_entry(note)
    entry = _as_entry(note)
    assert entry == {
        "input": "/m/a.flac",
        "identity": [1, 2, 3],
        "output": "a.flac",
        "output_identity": {"bytes": 1, "mtime_ns": 2, "sha256": "0" * 64},
        "settings": "s",
        "preset": "warm",
    }
    json.dumps(entry, allow_nan=False)
    (tmp_path / "file").write_text("x")  # a folder on the output's way became a file
    assert recorded_state(tmp_path / "file" / "a.flac", entry["output_identity"]) == "missing"


def test_a_recovered_track_without_measurements_still_gets_every_report(tmp_path):
    """A note whose measurements were left out (too big) or dropped: the track is ok,
    and the JSON, CSV and HTML reports and the summary are written all the same."""
    from auralis_batch.batch import _recovered
    from auralis_batch.plan import Job
    from auralis_batch.records import summarize
    from auralis_batch.report import write_report
    from auralis_batch.settings import RunSettings

    job = Job(input=tmp_path / "a.flac", output=tmp_path / "O" / "a.flac")
    ident = {"bytes": 10, "mtime_ns": 1, "sha256": "0" * 64}
    note = {"output_identity": ident, "measured": {"duration_s": "long"}}
    recs = [_recovered(job, RunSettings(), note, "a worker crash lost this track's report")]
    summary = summarize(recs)
    assert summary["ok"] == 1 and summary["audio_seconds"] == 0.0
    for ext in ("json", "csv", "html"):
        write_report(tmp_path / f"r.{ext}", recs, summary)
    assert json.loads((tmp_path / "r.json").read_text())["tracks"][0]["recovered"] is True


def test_a_plan_line_naming_out_itself_touches_nothing_beside_out(tmp_path, lib):
    out = tmp_path / "O"
    run_api([lib], out)
    beside = tmp_path / ".O.abcdefgh.partial"  # OUT's own "temporary", in OUT's parent
    beside.write_text("not yours")
    _journal_lines(
        out,
        {"planned": "dead-1", "output": ".", "at_ns": 0},
        {"planned": "dead-1", "output": "./00.flac", "at_ns": 0},
        {"planned": "dead-1", "output": "sub/.", "at_ns": 0},
    )
    run_api([lib], out)
    assert beside.read_text() == "not yours"


@pytest.mark.slow  # 6 s; test_a_terminal_that_cannot_show_a_name_gets_it_escaped in the suite
def test_names_a_terminal_cannot_encode_are_escaped_not_muted(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(os.fsencode(lib / os.fsdecode(b"caf\xe9.wav")), music_like(seconds=1.0).T, 44100)
    sf.write(lib / "plain.wav", music_like(seconds=1.0).T, 44100)
    res = cli("measure", lib, env={"PYTHONIOENCODING": "utf-8:strict", "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert "plain.wav" in res.stdout and "caf\\xe9.wav" in res.stdout
    res = cli("measure", lib, "--json", env={"PYTHONIOENCODING": "utf-8:strict"})
    assert res.returncode == 0, res.stderr
    assert {Path(r["input"]).name for r in _strict_json(res.stdout)} == {
        "caf\\xe9.wav",
        "plain.wav",
    }


def _strict_json(text: str) -> object:
    """Parse ``text`` as a strict parser would: a lone surrogate (``\\udce9``, which
    Python's json writes and reads) is not Unicode, and fails here."""
    value = json.loads(text)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return value


def test_a_changed_master_with_a_very_long_name_is_kept_aside(tmp_path, write_audio):
    """NAME.altered-DATE would pass 255 bytes: the name is cut (on a character
    boundary) to fit, instead of the run failing on every re-run."""
    name = "é" * 115 + ".flac"  # 235 bytes
    write_audio(f"lib/{name}", music_like(seconds=2.0))
    out = tmp_path / "O"
    assert run_api([tmp_path / "lib"], out).summary["ok"] == 1
    with open(out / name, "ab") as f:
        f.write(b"edited")
    result = run_api([tmp_path / "lib"], out)
    assert result.summary["ok"] == 1, result.records
    (kept,) = [p for p in out.iterdir() if ".altered-" in p.name]
    assert kept.read_bytes().endswith(b"edited") and len(os.fsencode(kept.name)) <= 255


def test_a_journal_write_failure_never_loses_a_master(tmp_path, lib, monkeypatch):
    """The journal cannot take the line (a full disk): the worker's commit note stays,
    and the next run journals the master from it instead of refusing it."""
    from auralis_batch import journal as journal_mod

    out = tmp_path / "O"
    real_append = journal_mod.Journal._append

    def full(self, entry):
        if "output_identity" in entry:
            raise OSError(28, "No space left on device")
        return real_append(self, entry)

    monkeypatch.setattr(journal_mod.Journal, "_append", full)
    first = run_api([lib / "00.flac"], out)
    assert first.stopped and "cannot write the journal" in first.stopped
    monkeypatch.setattr(journal_mod.Journal, "_append", real_append)
    again = run_api([lib / "00.flac"], out)
    assert again.summary["skipped"] == 1, again.records
    assert not list((out / ".auralis-batch").glob("inflight-*"))


def test_a_failure_after_the_rename_keeps_the_masters_proof(tmp_path, lib, monkeypatch):
    """Something fails after the output took its name: the track is reported failed,
    but its commit note is not forgotten, so the master is journaled, not orphaned."""
    from auralis_batch import engine

    def broken(*args, **kwargs):
        raise RuntimeError("after the rename")

    out = tmp_path / "O"
    monkeypatch.setattr(engine, "_after_commit_fault", broken)  # right after the rename
    assert run_api([lib / "00.flac"], out).summary["failed"] == 1
    assert (out / "00.flac").exists()
    monkeypatch.undo()
    assert run_api([lib / "00.flac"], out).summary["skipped"] == 1


def test_a_journal_key_no_filesystem_can_hold_is_ignored(tmp_path, lib):
    out = tmp_path / "O"
    run_api([lib], out)
    _journal_lines(
        out,
        {"planned": "1-2", "output": "x\\ud800.flac", "at_ns": 1},
        {"planned": "1-2", "output": "x\\u0000.flac", "at_ns": 1},
    )
    assert run_api([lib], out).summary["skipped"] == 3


def test_a_terminal_that_cannot_show_a_name_gets_it_escaped(tmp_path):
    """An ASCII-only terminal and an accented name: the line is written with escapes
    (the stream stays open), not dropped, and the run's output is all there."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("é.wav", "plain.wav"):
        sf.write(lib / name, music_like(seconds=1.0).T, 44100)
    res = cli("measure", lib, env={"PYTHONIOENCODING": "ascii:strict", "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert "plain.wav" in res.stdout and "\\xe9.wav" in res.stdout


@pytest.mark.slow  # two -j 2 album runs (15 s); albums, a lost worker: each in the suite
def test_an_album_is_never_split_by_a_worker_crash(tmp_path, write_audio):
    """A worker dies after the first track of an album took its name: the album is not
    finished as a smaller album with a gain of its own; the next run masters it whole."""
    for i, level in enumerate((-8, -30, -30)):
        write_audio(f"lib/A/{i:02d}.flac", music_like(seconds=1.0, seed=i, level_db=level))
    for i in range(2):
        write_audio(f"lib/B/{i:02d}.flac", music_like(seconds=1.0, seed=5 + i))
    out, report = tmp_path / "O", tmp_path / "r.json"
    env = {"AURALIS_BATCH_FAULT": "vanish:00.flac"}
    cli("master", tmp_path / "lib", "--out", out, "-j", "2", "--album", "--no-cache", env=env)
    assert not list(out.rglob("*.partial"))  # the dead worker's temporaries: removed
    res = cli(
        "master", tmp_path / "lib", "--out", out, "-j", "2", "--album", "--no-cache",
        "--report", report,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    tracks = json.loads(report.read_text())["tracks"]
    album_a = [t for t in tracks if Path(t["input"]).parent.name == "A"]
    assert sorted(t["status"] for t in album_a) == ["ok", "ok", "ok"]
    assert {t["album"]["tracks"] for t in album_a} == {3}
    assert len({t["album"]["gain_db"] for t in album_a}) == 1
    assert_consistent(out)


def test_a_short_journal_write_tears_no_line_and_says_so(tmp_path, monkeypatch):
    """A nearly full disk writes part of a line: it is cut back and raised, so the
    caller keeps the worker's note instead of trusting a torn entry."""
    from auralis_batch import journal as journal_mod

    out = tmp_path / "O"
    j = journal_mod.Journal(out)
    j._append({"retired": "x"})
    size = (out / ".auralis-batch" / "journal.jsonl").stat().st_size
    real_write = os.write
    calls = []

    def short(fd, data):  # part of the line fits; then the disk is full
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real_write(fd, data[:5])

    monkeypatch.setattr(journal_mod.os, "write", short)
    with pytest.raises(OSError):
        j._append({"retired": "a much longer line that does not fit"})
    monkeypatch.undo()
    j.close()
    assert (out / ".auralis-batch" / "journal.jsonl").stat().st_size == size


def test_a_master_the_disk_cuts_short_is_said_as_a_full_disk(tmp_path, small_disk):
    """libFLAC takes the samples and loses what the disk refuses at its close, which
    libsndfile does not report: the temporary read back with 2**63 - 1 frames and the
    failure said that, not the full disk that stops the run (a flaky -j 2 case). Every
    length just past what fits must fail as a full disk, however it fails."""
    import numpy as np

    from auralis_batch.audio import OutputFile
    from auralis_batch.errors import OutputError

    noise = np.random.default_rng(0).uniform(-0.9, 0.9, (44100 * 8, 2))

    def master(frames: int) -> str:
        out = OutputFile(
            small_disk / "x.flac", sample_rate=44100, channels=2, fmt="flac", subtype="PCM_24"
        )
        try:
            with out:
                with out.pass_writer() as write:
                    for i in range(0, frames, 4096):  # as the render writes, block by block
                        write(noise[i : min(i + 4096, frames)])
                out.commit()
        except OutputError as exc:
            assert not list(small_disk.iterdir())  # nothing left behind
            return str(exc)
        (small_disk / "x.flac").unlink()
        return "ok"

    fits, too_long = 44100, noise.shape[0]  # the longest master that fits: bisected
    assert master(fits) == "ok" and master(too_long) != "ok"
    while too_long - fits > 1:
        mid = (fits + too_long) // 2
        fits, too_long = (mid, too_long) if master(mid) == "ok" else (fits, mid)
    said = {master(n) for n in range(fits + 1, fits + 4096, 64)}
    assert all("no space left on device" in text for text in said), said


def test_a_file_where_an_output_folder_goes_is_named_as_such(tmp_path, write_audio):
    """``OUT/B`` a file, a track's master due in ``OUT/B/``: the refusal read "is cannot
    inspect it: Not a directory" (a review)."""
    write_audio("lib/B/a.flac", music_like(seconds=1.0))
    out = tmp_path / "O"
    out.mkdir()
    (out / "B").write_text("the user's")
    res = cli("master", tmp_path / "lib", "--out", out, "-q", "-j", "1", "--no-cache")
    assert res.returncode == 1
    assert "is below a file that stands where its folder goes" in res.stderr, res.stderr
    assert (out / "B").read_text() == "the user's"
