"""What a newcomer meets at an 80-column terminal: the progress and tables fit it,
``--help`` shows every option whole, and every message says what happened."""

from __future__ import annotations

import errno
import io
import os
import re
import select
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from auralis_batch.cli import app

from .conftest import music_like

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

#: A library whose names do not fit 80 columns whole.
LONG_FOLDER = "A rather long artist name/Their album title (Deluxe Edition, 2009)"
LONG_NAMES = ("01 - The first track of the album (extended).flac", "02 - The second one.flac")


def in_terminal(*args, columns: int = 80, timeout: float = 300) -> tuple[int, str]:
    """Run the CLI in a pseudo-terminal ``columns`` wide, as a user sees it: its exit
    code and everything it drew (escape sequences included)."""
    import fcntl
    import pty
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "auralis_batch.cli", *map(str, args)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    drawn = bytearray()
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no output for {timeout} s: {drawn[-500:]!r}")
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        code = proc.wait(timeout=timeout)
    return code, drawn.decode("utf-8", "replace")


def screen_lines(drawn: str) -> list[str]:
    """Every line the terminal was asked to draw, colours and cursor moves taken out."""
    plain = re.sub(r"\x1b\[[0-9;]*m|\x1b\[\?25[lh]", "", drawn)  # colours, the cursor shown
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", plain)  # moves and erasures
    return [line for line in re.split(r"\r\n|\r|\n", plain) if line.strip()]


@pytest.mark.slow  # 5 s; analyze's 80 columns are checked in the suite
def test_master_fits_an_80_column_terminal(tmp_path, write_audio):
    """Progress and summary in 80 columns: the run's row keeps its bar and count (they
    were squeezed to ``…``), a track's name is cut in the middle, and each track of the
    summary is one line (a path took five)."""
    for i, name in enumerate(LONG_NAMES):
        write_audio(f"lib/{LONG_FOLDER}/{name}", music_like(seconds=3.0, seed=i))
    code, drawn = in_terminal(
        "master", tmp_path / "lib", "--out", tmp_path / "out", "-j", "2", "--no-cache"
    )
    lines = screen_lines(drawn)
    assert code == 0, drawn
    assert all(cell_len(line) <= 80 for line in lines), [ln for ln in lines if cell_len(ln) > 80]
    runs = [line for line in lines if line.startswith("mastering")]
    assert runs, drawn
    for line in runs:
        assert "…" not in line, line
        assert re.match(r"mastering +[━╸╺]{10,} +\d/2 ", line), line
    rows = [line for line in lines if re.search(r"│ ok +│", line)]
    assert len(rows) == 2, "\n".join(lines)
    for row, name in zip(sorted(rows), LONG_NAMES, strict=True):
        assert name[-10:] in row and re.search(r"-\d+\.\d │ +-?\d+\.\d │", row), row


@pytest.mark.parametrize("width", [80, 100, 200])
def test_the_run_s_row_keeps_its_columns_and_the_names_fit(width):
    """The bar's layout, drawn at ``width``: one line per task, no line wider."""
    from auralis_batch.progress import BatchProgress

    progress = BatchProgress(enabled=True, interactive=True)
    progress.console = Console(file=io.StringIO(), width=width, force_terminal=True)
    tracks = [f"/m/{LONG_FOLDER}/{name}" for name in LONG_NAMES]
    with progress:
        progress.start(2, 600.0, [{"input": "/m/cover.jpg", "status": "skipped"}])
        progress.running({tracks[0]: 0.25, tracks[1]: 0.5})
        drawn = Console(file=io.StringIO(), width=width, color_system=None)
        drawn.print(progress._progress.make_tasks_table(progress._progress.tasks))
    lines = drawn.file.getvalue().splitlines()
    assert len(lines) == 3 and all(cell_len(line) <= width for line in lines), lines
    assert re.match(r"mastering +[━╸╺]+ +1/3 0 failed, ", lines[0]), lines[0]
    assert "of 0:10:00 audio" in lines[0] or width < 120  # the short form when narrow
    assert LONG_NAMES[0][:8] in lines[1] and LONG_NAMES[0][-12:] in lines[1]
    assert LONG_NAMES[1] in lines[2] and lines[1].rstrip().endswith("-:--:--")


def test_fit_name_cuts_in_the_middle_and_keeps_the_file_name():
    from auralis_batch.progress import fit_name

    path = "Wesnoth Ensemble/Heir to the Throne (2009)/02 - The Long March.ogg"
    assert fit_name(path, 200) == path
    assert fit_name(path, 34) == "Wesnoth E…/02 - The Long March.ogg"
    assert fit_name(path, 25) == "…/02 - The Long March.ogg"
    assert fit_name("02 - Transience (extended).flac", 24) == "02 - Transi…tended).flac"
    for width in range(0, 40):
        assert cell_len(fit_name(path, width)) <= width
    assert cell_len(fit_name("新しい曲のとても長い名前です.flac", 12)) <= 12


def test_every_option_shows_whole_in_help_at_80_columns():
    """``--write-loudness-ta…``: rich squeezed the widest option's name."""
    import typer.main

    def commands(command, path):
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from commands(sub, [*path, name])

    checked = 0
    for path, command in commands(typer.main.get_command(app), []):
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert res.exit_code == 0, (path, res.output)
        shown = set()
        for line in res.output.splitlines():
            shown.update(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)(?![\w…-])", line))
        for param in command.params:
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("-"):
                    assert opt in shown, (path, opt, res.output)
                    checked += 1
        assert "…" not in res.output, (path, res.output)
    assert checked > 30


def test_match_strength_out_of_range_is_a_usage_error(tmp_path, write_audio):
    src = write_audio("a.flac", music_like(seconds=1.0))
    args = ["master", str(src), "--out", str(tmp_path / "o"), "--reference", str(src)]
    res = runner.invoke(app, [*args, "--match-strength", "1.5"])
    assert res.exit_code == 2
    assert "[error] --match-strength 1.5: must be between 0 and 1" in res.stderr
    assert not (tmp_path / "o").exists()


def test_a_preset_given_with_a_reference_is_said_to_be_unused(tmp_path, write_audio):
    """The reference decides every parameter (settings.resolve_preset): a ``--preset``
    beside it was silently ignored. Said, and the run goes on."""
    src = write_audio("a.flac", music_like(seconds=4.0))
    ref = write_audio("ref.flac", music_like(seconds=4.0, seed=5))
    args = ["master", str(src), "--out", str(tmp_path / "o"), "--reference", str(ref)]
    for preset in ("warm", "adaptive"):
        res = runner.invoke(app, [*args, "--preset", preset, "--dry-run", "--no-cache"])
        assert res.exit_code == 0, res.output
        assert f"[note] --preset {preset} is not used with --reference" in res.stderr
        assert "--target-lufs and --ceiling-dbtp still apply" in res.stderr
    res = runner.invoke(app, [*args, "--dry-run", "--no-cache"])
    assert res.exit_code == 0 and "[note]" not in res.stderr
    res = runner.invoke(app, ["master", str(src), "--out", str(tmp_path / "o"), "-p", "warm"])
    assert res.exit_code == 0 and "not used" not in res.stderr


def test_analyze_tells_same_named_files_apart(tmp_path, write_audio):
    write_audio("lib/a/01.flac", music_like(seconds=1.0, seed=1))
    write_audio("lib/b/01.flac", music_like(seconds=1.0, seed=2))
    write_audio("lib/b/02.flac", music_like(seconds=1.0, seed=3))
    res = runner.invoke(app, ["analyze", str(tmp_path / "lib"), "--no-tempo", "--no-cache"])
    assert res.exit_code == 0, res.output
    for name in ("a/01.flac", "b/01.flac", "b/02.flac"):
        assert f"│ {name} " in res.stdout, res.stdout
    res = runner.invoke(app, ["analyze", str(tmp_path / "lib" / "b"), "--no-tempo", "--no-cache"])
    assert "│ 01.flac " in res.stdout and "│ 02.flac " in res.stdout  # no clash: bare names


def test_analyze_fits_an_80_column_terminal(tmp_path, write_audio):
    for i, name in enumerate(LONG_NAMES):
        write_audio(f"lib/{name}", music_like(seconds=1.0, seed=i))
    code, drawn = in_terminal("analyze", tmp_path / "lib", "--no-tempo", "--no-cache")
    lines = screen_lines(drawn)
    assert code == 0 and all(cell_len(line) <= 80 for line in lines), drawn
    rows = [line for line in lines if ".flac" in line]
    assert len(rows) == 2 and all("…" not in row.split("│")[2] for row in rows), rows


def test_measure_of_a_file_that_is_not_audio_says_why_and_prints_no_empty_table(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio\n")
    res = runner.invoke(app, ["measure", str(notes)])
    assert res.exit_code == 1
    assert res.stdout == ""  # no table with no row
    assert (
        res.stderr.strip()
        == f"[failed] {notes}: not a readable audio file (Format not recognised.)"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("measure", "analyze"):
        res = runner.invoke(app, [command, str(empty)])
        assert res.exit_code == 0 and res.stdout == ""
        assert f"[note] {command}: no audio file found in {empty}" in res.stderr
    res = runner.invoke(app, ["analyze", str(notes), "--no-cache"])
    assert res.exit_code == 1 and res.stdout == "" and f"[failed] {notes}: " in res.stderr


def test_a_master_that_finds_no_audio_warns_even_when_quiet(tmp_path):
    """An empty folder (an unmounted share's mount point) or one of covers and notes
    ended "0 mastered" with exit 0 and no other word: a cron job's night that looked
    good (a newcomer). Not an error, as for measure and analyze: a warning, under -q
    too, stamped like the other lines of a log."""
    empty, notes, links = tmp_path / "empty", tmp_path / "notes", tmp_path / "links"
    for folder in (empty, notes, links):
        folder.mkdir()
    (notes / "liner.txt").write_text("not audio\n")
    # links into a share that is not mounted: broken links named like tracks
    (links / "01.flac").symlink_to(tmp_path / "share" / "01.flac")
    for folder in (empty, notes, links):
        for quiet in ([], ["-q"]):
            out = tmp_path / f"O-{folder.name}-{len(quiet)}"
            res = runner.invoke(app, ["master", str(folder), "--out", str(out), *quiet])
            assert res.exit_code == 0, res.stderr
            line = f"[warning] master: no audio file found in {folder}; nothing was mastered"
            assert line in res.stderr
            # the --out it made for nothing goes again (its state folder was left)
            assert not out.exists()
    # a folder of music beside an empty one: the run masters, no warning
    write = notes / "tone.flac"
    sf.write(write, music_like(seconds=1.0).T, 44100, subtype="PCM_24")
    res = runner.invoke(app, ["master", str(notes), str(empty), "--out", str(tmp_path / "M")])
    assert res.exit_code == 0 and "[warning]" not in res.stderr, res.stderr


def _mp3_with_a_bad_id3_frame(path: Path) -> Path:
    """An MP3 whose ID3v2 tag holds a COMM frame with no text: libmpg123 writes
    ``error: No comment text / valid description?`` to stderr each time it opens it."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    t = np.arange(2 * 44100) / 44100
    x = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    plain = path.with_suffix(".plain.mp3")
    sf.write(plain, np.stack([x, x], 1), 44100, format="MP3", subtype="MPEG_LAYER_III")
    frame = b"COMM" + struct.pack(">I", 4) + b"\x00\x00" + b"\x00eng"
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    path.write_bytes(b"ID3\x03\x00\x00" + syncsafe + frame + plain.read_bytes())
    plain.unlink()
    return path


@pytest.mark.parametrize("command", [["measure"], ["analyze", "--no-cache", "--no-tempo"]])
def test_a_decoder_note_is_printed_once_and_names_its_file(tmp_path, command):
    """libmpg123's notes went to stderr once per opening of the file: twice for a
    ``measure`` (header, then audio), naming no file."""
    mp3 = _mp3_with_a_bad_id3_frame(tmp_path / "tagged.mp3")
    res = subprocess.run(
        [sys.executable, "-m", "auralis_batch.cli", command[0], str(mp3), *command[1:]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("No comment text") == 1, res.stderr
    assert f"[note] {mp3}: libmpg123: error: No comment text" in res.stderr


def test_out_through_a_dangling_link_says_so(tmp_path, write_audio):
    """``--out`` a link to a folder that is gone said "not writable (File exists)"."""
    src = write_audio("a.flac", music_like(seconds=1.0))
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone" / "masters")
    for out, where in ((link, ": is"), (link / "sub", f": {link}, on its way, is")):
        res = runner.invoke(app, ["master", str(src), "--out", str(out)])
        assert res.exit_code == 2
        assert res.stderr == (
            f"[error] --out {out}{where} a symbolic link to {tmp_path / 'gone' / 'masters'}, "
            "which does not exist: create that folder, or give --out a real folder\n"
        )
    assert not (tmp_path / "gone").exists()


def test_readme_names_every_module_and_the_cache_variable():
    readme = (ROOT / "README.md").read_text()
    how = readme.split("## How it works", 1)[1].split("\n## ", 1)[0]
    modules = sorted(p.stem for p in (ROOT / "auralis_batch").glob("*.py"))
    missing = [m for m in modules if m != "__init__" and not re.search(rf"\b{m}\b", how)]
    assert missing == []
    assert "AURALIS_CACHE_DIR" in readme
    assert re.search(r"/\.venv/bin/auralis-batch master .* 2>>", readme)


@pytest.mark.parametrize(
    ("terminal", "err", "lost"),
    [
        (True, errno.EIO, False),  # a terminal that hung up: nobody is left to read
        (False, errno.EIO, True),  # a file on a failing disk: what was written is lost
        (False, errno.ENOSPC, True),
        (False, errno.EPIPE, False),
    ],
)
def test_a_stream_that_fails_is_counted_lost_unless_its_reader_left(
    monkeypatch, terminal, err, lost
):
    from auralis_batch import cli

    class Failing:
        def isatty(self):
            return terminal

        def fileno(self):
            raise OSError("no descriptor")

        def write(self, text):
            exc = BrokenPipeError if err == errno.EPIPE else OSError
            raise exc(err, os.strerror(err))

        def flush(self):
            pass

    monkeypatch.setattr(cli._SturdyStream, "failures", {})
    stream = cli._SturdyStream(Failing(), "standard output")
    assert stream.write("x") == 1  # never raises: the run goes on
    assert ("standard output" in cli._SturdyStream.failures) is lost
    stream._stream.close()  # the null device it now writes to
    assert cli._exit_code_after_streams(0) == (1 if lost else 0)
