"""The command line: exit codes, JSON keys, bad input that never stops the run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import auralis_batch as ab
from auralis_batch.cli import app

from .conftest import music_like

runner = CliRunner()
LOUDNESS_KEYS = {"integrated_lufs", "true_peak_dbtp", "lra_lu", "sample_peak_dbfs"}


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def library(tmp_path, write_audio):
    """A folder with good tracks in a sub-folder and every kind of bad file."""
    lib = tmp_path / "lib"
    write_audio("lib/album/01 good.wav", music_like(seconds=4.0, seed=1))
    write_audio("lib/album/02 mono.flac", music_like(seconds=3.0, channels=1, seed=2), 48000)
    (lib / "empty.wav").write_bytes(b"")
    (lib / "notes.txt").write_text("not audio")
    (lib / "fake.flac").write_text("definitely not a flac file\n" * 50)
    x = np.zeros((4410, 2), dtype=np.float32)
    x[100, 0] = np.nan
    sf.write(lib / "nan.wav", x, 44100, subtype="FLOAT")
    # finite but absurd: music scaled by 1e18 (an unscaled render); its squares overflow
    sf.write(lib / "huge.wav", 1e18 * music_like(seconds=1.0).T, 44100, subtype="FLOAT")
    good = (lib / "album" / "01 good.wav").read_bytes()
    (lib / "truncated.wav").write_bytes(good[: len(good) // 2][:200])
    return lib


def test_help_is_instant_no_kernels_no_numpy():
    code = (
        "import sys; from auralis_batch.cli import app\n"
        "mods = ('numpy', 'numba', 'soundfile', 'scipy', 'kernels')\n"
        "heavy = [m for m in mods if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    res = subprocess.run(
        [sys.executable, "-m", "auralis_batch.cli", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "master" in res.stdout


def test_master_folder_with_bad_files_goes_on_and_reports(tmp_path, library):
    before = {p: sha(p) for p in library.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    res = runner.invoke(
        app, ["master", str(library), "--out", str(out), "--report", str(report), "-j", "1", "-q"]
    )
    assert res.exit_code == 1, res.output
    data = json.loads(report.read_text())
    assert set(data) == {"tracks", "summary"}
    by_name = {p.split("/")[-1]: t for t in data["tracks"] for p in [t["input"]]}
    for t in data["tracks"]:
        assert {"input", "status", "error", "seconds"} <= set(t)
    ok = by_name["01 good.wav"]
    assert ok["status"] == "ok" and ok["error"] is None and ok["preset"] == "gentle"
    assert set(ok["before"]) >= LOUDNESS_KEYS and set(ok["after"]) >= LOUDNESS_KEYS
    assert ok["after"]["integrated_lufs"] == pytest.approx(-14.0, abs=0.5)
    assert ok["after"]["true_peak_dbtp"] <= -1.0
    assert ok["output"].endswith("out/album/01 good.flac")
    assert by_name["02 mono.flac"]["status"] == "ok"
    assert by_name["notes.txt"]["status"] == "skipped"
    for bad, words in {
        "empty.wav": "empty",
        "fake.flac": "not a readable audio file",
        "nan.wav": "NaN",
        "huge.wav": "times full scale",
        "truncated.wav": "",
    }.items():
        assert by_name[bad]["status"] == "failed", bad
        assert words in by_name[bad]["error"], by_name[bad]["error"]
    assert data["summary"]["ok"] == 2 and data["summary"]["failed"] == 5
    # outputs mirror the tree, are FLAC 24-bit, nothing partial is left, sources untouched
    info = sf.info(out / "album" / "01 good.flac")
    assert info.subtype == "PCM_24" and info.samplerate == 44100
    assert sf.info(out / "album" / "02 mono.flac").channels == 1
    assert not [p for p in out.rglob("*.partial")]
    assert not (out / "empty.flac").exists()
    assert before == {p: sha(p) for p in library.rglob("*") if p.is_file()}


def test_master_wav_16_bit_and_overrides(tmp_path, write_audio):
    src = write_audio("a.wav", music_like(seconds=4.0))
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "master",
            str(src),
            "--out",
            str(out),
            "--format",
            "wav",
            "--bit-depth",
            "16",
            "--target-lufs",
            "-16",
            "--ceiling-dbtp",
            "-2",
            "--preset",
            "warm",
            "-q",
            "-j",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    info = sf.info(out / "a.wav")
    assert info.subtype == "PCM_16"
    res = runner.invoke(app, ["measure", str(out / "a.wav"), "--json"])
    rec = json.loads(res.stdout)[0]
    assert rec["integrated_lufs"] == pytest.approx(-16.0, abs=0.5)
    assert rec["true_peak_dbtp"] <= -2.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "loud"], "unknown preset"),
        (["--format", "flac", "--bit-depth", "32f"], "32f"),
        (["--format", "mp3"], "format must be one of"),
        (["--target-lufs", "3"], "--target-lufs 3: must be between -40 and -5 LUFS"),
        (["--ceiling-dbtp", "2"], "--ceiling-dbtp 2: must be between -20 and 0 dBTP"),
        (["--tempo", "--no-tempo"], "--tempo and --no-tempo contradict each other"),
    ],
)
def test_usage_errors_exit_2(tmp_path, write_audio, args, message):
    src = write_audio("a.wav", music_like(seconds=1.0))
    res = runner.invoke(app, ["master", str(src), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2
    assert message in res.output


def test_master_estimates_tempo_for_the_report_only_when_asked(tmp_path, write_audio):
    """The built-in presets need no tempo: 120 BPM at confidence 0 (not estimated);
    ``--tempo`` estimates it (a drum pattern at 100 BPM) and leaves the audio as it is."""
    from .signals import drum_pattern

    src = write_audio("beat.flac", drum_pattern(100.0, seconds=12.0))
    got = {}
    for flags in ([], ["--tempo"]):
        out, report = tmp_path / f"o{len(flags)}", tmp_path / f"r{len(flags)}.json"
        args = ["master", str(src), "--out", str(out), "-q", "--report", str(report)]
        res = runner.invoke(app, [*args, "--no-cache", *flags])
        assert res.exit_code == 0, res.output
        (rec,) = json.loads(report.read_text())["tracks"]
        got[bool(flags)] = (rec["tempo_bpm"], rec["tempo_confidence"])
        assert sf.read(out / "beat.flac")[0].shape[0] == 12 * 44100
    assert got[False] == (120.0, 0.0)
    assert got[True][0] == pytest.approx(100.0, rel=0.04) and got[True][1] > 0
    assert sha(tmp_path / "o0" / "beat.flac") == sha(tmp_path / "o1" / "beat.flac")


def test_output_onto_input_is_refused(tmp_path, write_audio):
    src = write_audio("a.flac", music_like(seconds=2.0))
    digest = sha(src)
    res = runner.invoke(app, ["master", str(src), "--out", str(tmp_path), "-q", "-j", "1"])
    assert res.exit_code == 2  # found before any work starts
    assert "would overwrite the input" in res.output
    assert sha(src) == digest


def test_measure_json_keys_and_failures(tmp_path, write_audio):
    good = write_audio("good.wav", music_like(seconds=3.0))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    res = runner.invoke(app, ["measure", str(good), str(bad), "--json"])
    assert res.exit_code == 1
    recs = json.loads(res.stdout)
    assert {r["input"].split("/")[-1]: r["status"] for r in recs} == {
        "good.wav": "ok",
        "bad.wav": "failed",
    }
    ok = next(r for r in recs if r["status"] == "ok")
    assert LOUDNESS_KEYS <= set(ok) and {"input", "status", "error", "seconds"} <= set(ok)


def test_presets_commands():
    res = runner.invoke(app, ["presets", "list"])
    assert res.exit_code == 0
    for name in ("gentle", "warm", "bright", "punchy"):
        assert name in res.stdout
    res = runner.invoke(app, ["presets", "show", "punchy", "--json"])
    data = json.loads(res.stdout)
    assert data["compressor"]["ratio"] == 4.0 and len(data["eq"]["bands"]) == 7
    assert runner.invoke(app, ["presets", "show", "nope"]).exit_code == 2


def test_master_with_a_reference_track(tmp_path, write_audio):
    """`--reference REF`: the CLI run completes (exit 0), takes the reference's loudness
    as the target, and a re-run with the same reference is resumed from the journal."""
    ref = write_audio("ref.wav", music_like(seconds=6.0, seed=5, level_db=-12.0))
    src = write_audio("lib/a.wav", music_like(seconds=6.0, seed=6, level_db=-26.0))
    out = tmp_path / "out"
    report = tmp_path / "r.json"
    args = ["master", str(src), "--out", str(out), "--reference", str(ref), "-q"]
    res = runner.invoke(app, [*args, "--report", str(report)])
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    track = data["tracks"][0]
    assert track["status"] == "ok"
    # the reference's analysis comes before the run, and is said beside its time
    assert 0.0 < data["summary"]["reference_seconds"] < 60.0
    ref_lufs = ab.analyze(str(ref))["integrated_lufs"]
    assert track["after"]["integrated_lufs"] == pytest.approx(ref_lufs, abs=0.6)
    again = runner.invoke(app, [*args, "--report", str(report)])
    assert again.exit_code == 0
    assert json.loads(report.read_text())["tracks"][0]["status"] == "skipped"


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((2, 44100 * 5)), "ref.wav is silent (no 400 ms block above -70 LUFS)"),
        (music_like(seconds=1.0, seed=5), "ref.wav is 1.00 s long; a reference needs at least 3 s"),
    ],
)
def test_a_reference_with_nothing_to_match_stops_the_run_before_it_starts(
    tmp_path, write_audio, audio, message
):
    ref = write_audio("ref.wav", audio)
    src = write_audio("lib/a.wav", music_like(seconds=2.0, seed=6))
    out = tmp_path / "out"
    res = runner.invoke(app, ["master", str(src), "--out", str(out), "--reference", str(ref)])
    assert res.exit_code == 2
    assert "--reference: " in res.output and message in " ".join(res.output.split())
    assert not out.exists()


def test_measure_and_analyze_read_a_folder_of_masters(tmp_path, write_audio):
    """`measure OUT` after a run listed nothing: the folder's journal made its masters
    'files this tool wrote', which only `master` must leave out (it never masters a
    master again). A user measures the masters to check them."""
    src = write_audio("lib/a.flac", music_like(seconds=2.0))
    out = tmp_path / "out"
    res = runner.invoke(app, ["master", str(src), "--out", str(out), "-q", "--no-cache"])
    assert res.exit_code == 0, res.output
    for command in (["measure", str(out), "--json"], ["analyze", str(out), "--json", "--no-cache"]):
        res = runner.invoke(app, command)
        assert res.exit_code == 0, res.output
        rows = json.loads(res.stdout)
        assert [Path(r.get("input") or r.get("path")).name for r in rows] == ["a.flac"]
        assert rows[0]["integrated_lufs"] == pytest.approx(-14.0, abs=0.1)
    again = runner.invoke(app, ["master", str(out), "--out", str(tmp_path / "o2"), "-q"])
    assert again.exit_code == 0 and not (tmp_path / "o2" / "a.flac").exists()  # never remastered


def test_a_dry_run_with_a_reference_writes_nothing_not_even_the_cache(tmp_path, write_audio):
    """A second trust sweep saw a dry run with --reference store the reference's
    analysis in the fingerprint cache."""
    ref = write_audio("ref.wav", music_like(seconds=4.0, seed=5))
    src = write_audio("lib/a.wav", music_like(seconds=2.0, seed=6))
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ["master", str(src), "--out", str(out), "--reference", str(ref), "--dry-run"]
    res = runner.invoke(app, [*args, "--cache-dir", str(cache)])
    assert res.exit_code == 0, res.output
    assert not cache.exists() and not out.exists()


def test_usage_problems_found_late_leave_no_out_folder_and_say_each_on_its_line(
    tmp_path, write_audio
):
    """Second-sweep notes: outputs that collide (exit 2) left an empty OUT behind; a
    preset's several problems came out on one line joined by a literal backslash-n;
    --scheduler without --backend dask was ignored and the run went local."""
    a = write_audio("r1/A/x.flac", music_like(seconds=1.0))
    b = write_audio("r2/A/x.flac", music_like(seconds=1.0, seed=2))
    out = tmp_path / "out"
    deep = tmp_path / "new" / "deep" / "out"  # every folder the run made goes
    for target in (out, deep):
        res = runner.invoke(
            app, ["master", str(a.parents[1]), str(b.parents[1]), "--out", str(target)]
        )
        assert res.exit_code == 2 and "would both be written to" in res.output
        assert not out.exists() and not (tmp_path / "new").exists()
    mine = tmp_path / "mine"  # a review's: new2/../mine led the clean-up to the user's
    mine.mkdir()
    via = tmp_path / "new2" / ".." / "mine"
    res = runner.invoke(app, ["master", str(a.parents[1]), str(b.parents[1]), "--out", str(via)])
    assert res.exit_code == 2 and mine.is_dir()
    preset = tmp_path / "p.toml"
    preset.write_text('name = "p"\n[compressor]\nratio = 100.0\nthreshold_db = 5.0\n')
    res = runner.invoke(app, ["presets", "show", str(preset)])
    lines = [ln for ln in res.output.splitlines() if ln.startswith("[error]")]
    assert res.exit_code == 2 and len(lines) == 2 and "\\n" not in res.output
    assert sorted(ln.split(": ")[1] for ln in lines) == [
        "compressor.ratio",
        "compressor.threshold_db",
    ]
    res = runner.invoke(app, ["master", str(a), "--out", str(out), "--scheduler", "tcp://x:1"])
    assert res.exit_code == 2 and "needs --backend dask" in res.output and not out.exists()
    res = runner.invoke(app, ["master", str(a), "--out", str(out), "--match-strength", "0.5"])
    assert res.exit_code == 2 and "needs --reference" in res.output and not out.exists()


def test_several_reports_in_one_run(tmp_path, write_audio):
    src = write_audio("lib/a.flac", music_like(seconds=2.0))
    js, csv = tmp_path / "r.json", tmp_path / "r.csv"
    args = ["master", str(src), "--out", str(tmp_path / "o"), "-q", "-j", "1", "--no-cache"]
    res = runner.invoke(app, [*args, "--report", str(js), "--report", str(csv)])
    assert res.exit_code == 0, res.output
    assert json.loads(js.read_text())["summary"]["ok"] == 1
    assert csv.read_text().splitlines()[0].startswith("input,output,status")
    res = runner.invoke(app, [*args, "--report", str(tmp_path / "r.txt")])
    assert res.exit_code == 2 and "r.txt" in res.output


def test_a_report_path_holding_a_users_file_is_refused_unless_overwrite(tmp_path, write_audio):
    """--report replaced whatever was there, a user's index.html in the input folder
    included (a trust sweep's finding). Its own reports it replaces run after run."""
    from auralis_batch.report import is_report_of_ours

    src = write_audio("lib/a.flac", music_like(seconds=2.0))
    args = ["master", str(src), "--out", str(tmp_path / "o"), "-q", "-j", "1", "--no-cache"]
    users = {  # a second sweep's: a playlist and a CSV that begin as reports do
        "index.html": "mine\n",
        "notes.csv": "mine\n",
        "meta.json": "mine\n",
        "playlist.json": '{\n  "tracks": [\n    "my favourite playlist"\n  ]\n}\n',
        "sheet.csv": "input,output,status,when\na,b,c,d\n",
    }
    for name, text in users.items():
        user = tmp_path / "lib" / name
        user.write_text(text)
        res = runner.invoke(app, [*args, "--report", str(user)])
        assert res.exit_code == 2
        kind = {".html": "html", ".csv": "csv"}.get(user.suffix, "json")
        said = f"a file that is not an auralis-batch {kind} report is there"
        assert said in " ".join(res.output.split())
        assert user.read_text() == text
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "lib" / "meta.json")
    res = runner.invoke(app, [*args, "--report", str(link), "--overwrite"])
    assert res.exit_code == 2 and "is a symbolic link" in res.output and link.is_symlink()
    assert not (tmp_path / "o").exists()
    reports = [tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.html"]
    flags = [x for r in reports for x in ("--report", str(r))]
    for _ in range(2):  # the second run replaces the first run's three reports
        res = runner.invoke(app, [*args, *flags])
        assert res.exit_code == 0, res.output
        assert all(is_report_of_ours(r) for r in reports)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    res = runner.invoke(app, [*args, "--report", str(user), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert is_report_of_ours(user)


def test_a_users_file_that_appears_at_the_report_path_during_the_run_is_not_replaced(
    tmp_path, write_audio, monkeypatch
):
    """The --report path was checked only when the run started; a file the user saved
    there during the run was replaced at its end (a review's finding)."""
    from auralis_batch import batch

    src = write_audio("lib/a.flac", music_like(seconds=1.0))
    mine = tmp_path / "mine.csv"
    real = batch.run_master

    def user_saves_meanwhile(*a, **kw):
        result = real(*a, **kw)
        mine.write_text("my,own,spreadsheet\n")
        return result

    monkeypatch.setattr(batch, "run_master", user_saves_meanwhile)
    args = ["master", str(src), "--out", str(tmp_path / "o"), "-q", "-j", "1", "--no-cache"]
    res = runner.invoke(app, [*args, "--report", str(mine)])
    assert res.exit_code == 1
    said = "not written (a file that is not an auralis-batch report is there)"
    assert said in " ".join(res.output.split())
    assert mine.read_text() == "my,own,spreadsheet\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_a_report_that_cannot_be_written_after_the_run_is_one_clear_line(tmp_path, write_audio):
    src = write_audio("lib/a.flac", music_like(seconds=1.0))
    (tmp_path / "is-a-folder.json").mkdir()
    args = ["master", str(src), "--out", str(tmp_path / "o"), "-q", "-j", "1", "--no-cache"]
    res = runner.invoke(app, [*args, "--report", str(tmp_path / "is-a-folder.json")])
    assert res.exit_code == 2 and "is a folder" in res.output


def test_tables_keep_whole_paths_when_piped(tmp_path, write_audio):
    src = write_audio(
        "a-rather-long-folder-name/another-long-folder/track.wav", music_like(seconds=1.0)
    )
    res = subprocess.run(
        [sys.executable, "-m", "auralis_batch.cli", "measure", str(src)],
        capture_output=True,
        text=True,
    )
    assert str(src) in res.stdout


def _numba_index(path, source: str, *, stamp: bytes | None = None) -> None:
    """An index as numba 0.68 writes one: its version, then (stamp, overloads) where
    the stamp is the SHA-256 of the module's source."""
    import pickle

    import numba

    if stamp is None:
        with open(source, "rb") as f:
            stamp = hashlib.sha256(f.read()).digest()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(numba.__version__, f, protocol=-1)
        f.write(pickle.dumps((stamp, {}), protocol=-1))


def test_compiled_kernels_are_found_where_numba_keeps_them(tmp_path, monkeypatch):
    import auralis_batch

    kernels = auralis_batch._kernels_dir()
    loudness_py = os.path.join(kernels, "loudness.py")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert not auralis_batch._kernels_compiled()
    name = "loudness.kweighted_subblock_power-70.py311.nbi"
    # another source folder's cache (another checkout, an old venv) does not count
    other = tmp_path / "numba" / "kernels_0123" / name
    _numba_index(other, loudness_py)
    assert not auralis_batch._kernels_compiled()
    ours = tmp_path / "numba" / ("kernels_" + hashlib.sha1(kernels.encode()).hexdigest()) / name
    ours.parent.mkdir(parents=True)
    ours.write_bytes(b"")  # no stamp: nothing Numba would load
    assert not auralis_batch._kernels_compiled()
    _numba_index(ours, loudness_py)
    assert auralis_batch._kernels_compiled()
    # the index of another source (an upgrade changed the kernels) is stale, however new
    _numba_index(ours, loudness_py, stamp=hashlib.sha256(b"older kernels").digest())
    assert not auralis_batch._kernels_compiled()
    # ... and the index of this source is fresh, however old: a reinstall or a checkout
    # that rewrote the unchanged file made every run announce a compile and start the
    # warm-up process (Numba compared contents and loaded its cache)
    _numba_index(ours, loudness_py)
    old = os.stat(loudness_py).st_mtime - 3600
    os.utime(ours, (old, old))
    assert auralis_batch._kernels_compiled()
    # a command that also fingerprints needs that kernel compiled too
    both = (auralis_batch.METER_KERNEL, auralis_batch.FINGERPRINT_KERNEL)
    assert not auralis_batch._kernels_compiled(both)
    _numba_index(
        ours.parent / "spectral.frame_features-92.py311.nbi", os.path.join(kernels, "spectral.py")
    )
    assert auralis_batch._kernels_compiled(both)


def test_a_real_numba_index_is_read_as_fresh(tmp_path, monkeypatch):
    """The index format is Numba's, not ours: the index Numba wrote for the meter's
    kernel (loaded or compiled here) is fresh for its source's bytes, stale for others."""
    import numpy as np

    import auralis_batch
    from auralis_batch.meter import measure_loudness

    measure_loudness(np.zeros((2, 48000)), sample_rate=48000)  # Numba's index exists
    kernels = auralis_batch._kernels_dir()
    pattern = f"{auralis_batch.METER_KERNEL}-*.nbi"
    found = list(Path(auralis_batch._numba_cache_folder(kernels)).glob(pattern))
    assert found, "Numba kept no index of the meter's kernel"
    with open(os.path.join(kernels, "loudness.py"), "rb") as f:
        source = f.read()
    copy = tmp_path / "kernels"
    copy.mkdir()
    monkeypatch.setattr(auralis_batch, "_kernels_dir", lambda: str(copy))
    moved = Path(auralis_batch._numba_cache_folder(str(copy)))
    moved.mkdir(parents=True)
    for index in found:
        shutil.copy(index, moved / index.name)
    (copy / "loudness.py").write_bytes(source)
    assert auralis_batch._kernels_compiled()
    (copy / "loudness.py").write_bytes(source + b"\n")
    assert not auralis_batch._kernels_compiled()


@pytest.mark.parametrize("command", ["master", "analyze", "measure"])
def test_a_first_run_says_it_compiles(tmp_path, write_audio, monkeypatch, command):
    import auralis_batch

    src = write_audio("a.flac", music_like(seconds=1.0))
    monkeypatch.setattr(auralis_batch, "_kernels_compiled", lambda *kernels: False)
    args = [command, str(src)] + ([] if command == "measure" else ["--no-cache"])
    if command == "master":
        args += ["--out", str(tmp_path / "out"), "-j", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "[note] compiling the DSP kernels this command needs" in res.stderr
    if command == "master":  # and --quiet keeps it quiet
        quiet = ["master", str(src), "--no-cache", "--out", str(tmp_path / "o2"), "-j", "1", "-q"]
        res = runner.invoke(app, quiet)
        assert res.exit_code == 0 and "first run" not in res.stderr


def test_a_first_run_with_a_reference_says_it_compiles_before_the_reference_and_once(
    tmp_path, write_audio, monkeypatch
):
    """The reference is analysed before the run's progress exists: a first run sat
    10 s without a word, then said nothing of compiling (a newcomer's)."""
    import auralis_batch

    src = write_audio("a.flac", music_like(seconds=1.0))
    ref = write_audio("ref.flac", music_like(seconds=4.0, seed=4))
    # nothing is compiled but an empty list of kernels, as the real check answers
    monkeypatch.setattr(auralis_batch, "_kernels_compiled", lambda kernels=(): not kernels)
    args = ["master", str(src), "--out", str(tmp_path / "o"), "-j", "1", "--reference", str(ref)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    said = [i for i, line in enumerate(lines) if "compiling the DSP kernels" in line]
    assert len(said) == 1
    assert said[0] < next(i for i, line in enumerate(lines) if "a.flac" in line)
    # kernels that cannot be kept: the warning first, once, and under -q too (a review)
    monkeypatch.setattr(auralis_batch, "_NUMBA_CACHE_NOTE", "KEPT NOWHERE")
    for quiet in ([], ["-q"]):
        out = str(tmp_path / f"o{len(quiet)}")
        args = ["master", str(src), "--out", out, "-j", "1", "--reference", str(ref), *quiet]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        lines = res.stderr.splitlines()
        warned = [i for i, line in enumerate(lines) if "[warning] KEPT NOWHERE" in line]
        noted = [i for i, line in enumerate(lines) if "compiling the DSP kernels" in line]
        assert len(warned) == 1 and len(noted) == (0 if quiet else 1), lines
        assert all(w < n for w in warned for n in noted)


def test_no_first_run_note_when_the_cache_answers(tmp_path, write_audio, monkeypatch):
    import auralis_batch

    write_audio("lib/a.flac", music_like(seconds=1.0))
    args = ["analyze", str(tmp_path / "lib"), "--json", "--cache-dir", str(tmp_path / "c")]
    assert runner.invoke(app, args).exit_code == 0
    (tmp_path / "lib" / "notes.xyz").write_text("?")  # the fast path gives up; no decode
    monkeypatch.setattr(auralis_batch, "_kernels_compiled", lambda *kernels: False)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "first run" not in res.stderr


def test_the_first_run_note_looks_for_the_kernels_every_render_compiles():
    """The meter's and the render's: a run whose analyses all come from the cache
    never compiles the fingerprint's or tempo's kernels, and looking for those said
    "first run" on every run after an upgrade (a newcomer's trial, 2026-11-30)."""
    import auralis_batch as ab
    from auralis_batch.cli import _master_kernels
    from auralis_batch.settings import RunSettings

    render = {ab.METER_KERNEL, ab.RENDER_KERNEL}
    for settings in (RunSettings(use_cache=False), RunSettings(), RunSettings(tempo=True)):
        assert set(_master_kernels(settings)) == render


def test_presets_show_adaptive_explains_it_is_computed():
    res = runner.invoke(app, ["presets", "show", "adaptive"])
    assert res.exit_code == 0 and "fingerprint" in res.stdout
    res = runner.invoke(app, ["presets", "show", "adaptive", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["name"] == "adaptive"


def test_a_failure_line_names_the_file_once(tmp_path):
    import io

    from rich.console import Console

    from auralis_batch.progress import BatchProgress

    progress = BatchProgress(enabled=True, interactive=True)
    progress.console = Console(file=io.StringIO(), width=200)
    progress._fail({"input": "/m/a.flac", "error": "/m/a.flac: file is empty (0 bytes)"})
    progress._fail({"input": "/m/b.flac", "error": "[Errno 28] No space left on device"})
    out = progress.console.file.getvalue()
    assert out.count("/m/a.flac") == 1
    assert "/m/b.flac: [Errno 28] No space left on device" in out
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    res = runner.invoke(app, ["measure", str(empty)])
    assert res.stderr.count(str(empty)) == 1, res.stderr


def test_the_summary_counts_a_track_recovered_after_a_stop():
    """A track whose output was complete when the run stopped is reported ok from its
    commit note, after the workers are gone: its audio is in the summary's total (the
    run's count, as in the JSON report), not only what the workers reported."""
    import io
    from pathlib import Path

    from rich.console import Console

    from auralis_batch.batch import _recovered
    from auralis_batch.plan import Job
    from auralis_batch.progress import BatchProgress
    from auralis_batch.records import record, summarize
    from auralis_batch.settings import RunSettings

    progress = BatchProgress(enabled=True, interactive=False)
    progress.console = Console(file=io.StringIO(), width=200)
    done = record(Path("/m/a.flac"), "ok", None, Path("/o/a.flac")) | {"duration_s": 20.0}
    progress.update(done)  # a worker's report; the recovered track has none
    note = {"output_identity": {}, "measured": {"duration_s": 30.0}}
    late = _recovered(Job(Path("/m/b.flac"), Path("/o/b.flac")), RunSettings(), note, "stop")
    progress.print_summary([done, late], summarize([done, late]))
    out = progress.console.file.getvalue()
    assert "2 mastered" in out and "0:00:50 of audio" in out


def test_a_log_gets_a_line_for_a_track_refused_at_planning(capsys):
    from auralis_batch.progress import BatchProgress

    progress = BatchProgress(enabled=True, interactive=False)
    refused = {
        "input": "/m/a.flac",
        "status": "failed",
        "error": "refused: /o/a.flac exists and was not written by auralis-batch",
    }
    progress.start(0, 0.0, [refused, {"input": "/m/b.flac", "status": "skipped"}])
    err = capsys.readouterr().err
    assert err.count("failed") == 1 and "refused: /o/a.flac exists" in err
    assert "/m/b.flac" not in err


def test_a_rerun_with_nothing_to_do_prints_no_empty_table():
    import io

    from rich.console import Console

    from auralis_batch.progress import BatchProgress

    progress = BatchProgress(enabled=True, interactive=True)
    progress.console = Console(file=io.StringIO(), width=200)
    skipped = [{"input": "/m/a.flac", "status": "skipped"}]
    progress.print_summary(skipped, {"ok": 0, "failed": 0, "skipped": 1})
    out = progress.console.file.getvalue()
    assert "auralis-batch summary" not in out and "0 mastered, 0 failed, 1 skipped" in out


@pytest.mark.parametrize(("before_s", "said"), [(None, False), (0.01, False), (2.25, True)])
def test_the_summary_line_says_the_time_a_reference_took_before_the_run(before_s, said):
    """The run's speed is its own; a reference analysed first (not a cache hit) is said
    beside it: a user timing the command saw seconds nothing accounted for."""
    import io

    from rich.console import Console

    from auralis_batch.progress import BatchProgress

    progress = BatchProgress(enabled=True, interactive=True)
    progress.console = Console(file=io.StringIO(), width=200)
    progress.before_s = before_s
    skipped = [{"input": "/m/a.flac", "status": "skipped"}]
    progress.print_summary(skipped, {"ok": 0, "failed": 0, "skipped": 1})
    out = progress.console.file.getvalue()
    assert ("after 2.2 s analysing the reference" in out) is said
    assert ("analysing the reference" in out) is said


def test_the_summary_line_says_what_each_skip_was():
    """A re-run said "5 skipped" for 3 tracks done and 2 links (a user's try): only
    "done" says the library is finished."""
    import io

    from rich.console import Console

    from auralis_batch.progress import BatchProgress
    from auralis_batch.records import DONE_REASON, FOLDER_READ_TWICE_REASON, skipped_record

    progress = BatchProgress(enabled=True, interactive=False)
    progress.console = Console(file=io.StringIO(), width=200)
    records = [skipped_record(f"/m/{i}.flac", DONE_REASON) for i in range(3)]
    records += [skipped_record("/m/Best", f"{FOLDER_READ_TWICE_REASON}, /m/Album")]
    records += [skipped_record("/m/fav.flac", "the same file as /m/Album/1.flac (reached by")]
    progress.print_summary(records, {"ok": 0, "failed": 0, "skipped": 5})
    out = progress.console.file.getvalue()
    assert "0 mastered, 0 failed, 5 skipped (3 done, 2 read another way);" in out


def test_the_summary_line_counts_the_masters_with_a_warning():
    """'5 mastered' read as five clean masters when all five missed their target
    (a newcomer's try: --target-lufs -5)."""
    import io

    from rich.console import Console

    from auralis_batch.progress import BatchProgress

    progress = BatchProgress(enabled=True, interactive=False)
    progress.console = Console(file=io.StringIO(), width=200)
    records = [
        {"input": "/m/a.flac", "status": "ok", "warning": "target -5 LUFS not reached"},
        {"input": "/m/b.flac", "status": "ok"},
        {"input": "/m/c.flac", "status": "failed", "error": "x", "warning": "not counted"},
    ]
    progress.print_summary(records, {"ok": 2, "failed": 1, "skipped": 0})
    out = progress.console.file.getvalue()
    assert "2 mastered (1 with a warning), 1 failed, 0 skipped;" in out


def test_the_summary_line_says_how_many_skipped_files_are_not_audio(tmp_path, write_audio):
    """A nightly log's "8 skipped" mixed tracks done before with covers and texts, so
    it did not say whether the library was finished (a newcomer's try)."""
    write_audio("lib/a.flac", music_like(seconds=1.0))
    (tmp_path / "lib" / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (tmp_path / "lib" / "notes.txt").write_text("mine")
    args = ["master", str(tmp_path / "lib"), "--out", str(tmp_path / "O"), "-j", "1", "--no-cache"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "1 mastered, 0 failed, 2 skipped (2 not audio);" in first.output
    again = runner.invoke(app, args)
    assert "0 mastered, 0 failed, 3 skipped (1 done, 2 not audio);" in again.output


def test_tracks_in_a_format_the_decoder_lacks_are_named_not_counted_as_not_audio(
    tmp_path, write_audio
):
    """A folder's .m4a and .wma tracks were skipped as "not an audio file", counted with
    the covers, and an iTunes library lost them from the run with only that count to
    show it (a helper's adversarial library): each is skipped as music this build
    cannot decode, counted apart, said by one warning line (also with -q and in
    ``analyze``, answered from the cache or not) and listed in the report."""
    write_audio("lib/a.flac", music_like(seconds=1.0))
    (tmp_path / "lib" / "b.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A not decoded here")
    (tmp_path / "lib" / "c.WMA").write_bytes(b"0&\xb2u not decoded here")
    (tmp_path / "lib" / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    lib, report = tmp_path / "lib", tmp_path / "r.json"
    args = ["master", str(lib), "--out", str(tmp_path / "O"), "-j", "1", "--no-cache"]
    res = runner.invoke(app, [*args, "--report", str(report)])
    assert res.exit_code == 0, res.output
    assert "1 mastered, 0 failed, 3 skipped (1 not audio, 2 cannot be decoded);" in res.output
    warning = "2 tracks in a format this build cannot decode (1 .m4a, 1 .wma; first: "
    assert f"[warning] master: {warning}" in res.output
    why = {Path(t["input"]).name: t["error"] for t in json.loads(report.read_text())["tracks"]}
    assert why["b.m4a"].startswith("audio in a format this build cannot decode: MP4 audio")
    assert "Windows Media Audio" in why["c.WMA"] and "not an audio file" in why["cover.jpg"]
    quiet = runner.invoke(app, [*args, "-q"])
    assert quiet.exit_code == 0 and f"[warning] master: {warning}" in quiet.output
    cache = ["--cache-dir", str(tmp_path / "cache")]
    for _ in range(2):  # analysed, then answered from the cache
        res = runner.invoke(app, ["analyze", str(lib), "--json", *cache])
        assert res.exit_code == 0, res.output
        assert f"[warning] analyze: {warning}" in res.output
    res = runner.invoke(app, ["measure", str(lib)])  # as analyze says them
    assert res.exit_code == 0 and f"[warning] measure: {warning}" in res.output
    assert "[skipped]" not in res.output  # no line per cover or per undecodable track


@pytest.mark.parametrize("width", [20, 200])
def test_a_terminal_too_narrow_for_the_table_gets_the_line_alone(width):
    """COLUMNS=20: the table's borders were drawn with every cell blank (second sweep)."""
    import io

    from rich.console import Console

    from auralis_batch.progress import BatchProgress

    progress = BatchProgress(enabled=True, interactive=True)
    progress.console = Console(file=io.StringIO(), width=width)
    done = [{"input": "/m/a.flac", "status": "ok", "seconds": 1.0}]
    progress.print_summary(done, {"ok": 1, "failed": 0, "skipped": 0})
    out = progress.console.file.getvalue()
    assert ("auralis-batch summary" in out) == (width == 200)
    assert "mastered" in out


def test_the_summary_table_tells_same_named_tracks_apart():
    from auralis_batch.records import display_names

    def _short_names(paths):  # what the summary shows
        return display_names(paths)[1]

    assert _short_names(["/m/a/sad.ogg", "/m/b/sad.ogg"]) == ["a/sad.ogg", "b/sad.ogg"]
    assert _short_names(["/m/x.flac", "/m/y.flac"]) == ["x.flac", "y.flac"]
    assert _short_names(["/m/a/x.flac"]) == ["x.flac"]
    assert _short_names([]) == []


def test_a_run_with_nothing_to_do_claims_no_speed(tmp_path, write_audio):
    src = write_audio("a.flac", music_like(seconds=1.0))
    args = ["master", str(src), "--out", str(tmp_path / "o"), "-j", "1", "--no-cache"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "x realtime" in first.stderr
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "1 skipped" in again.stderr
    assert "realtime" not in again.stderr


def test_analyze_says_why_it_skips_a_fifo_named_on_its_command_line(tmp_path):
    """``analyze pipe.flac --json`` printed [] with nothing said (third sweep)."""
    import os

    pipe = tmp_path / "pipe.flac"
    os.mkfifo(pipe)
    res = runner.invoke(app, ["analyze", str(pipe), "--json", "--no-cache"])
    assert res.exit_code == 0
    assert f"[skipped] {pipe}: not read: not a regular file" in res.output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_reference_is_analysed_says_so(tmp_path, monkeypatch, capsys, signum):
    """Before any track starts, the reference is analysed: SIGTERM killed the command
    without a word there, and a shell's background run (SIGINT ignored) went on
    (fifth sweep). The stop comes between two blocks, never inside a kernel."""
    import soundfile as sf
    import typer

    from auralis_batch import analysis, cli

    ref = tmp_path / "ref.flac"
    sf.write(ref, music_like(seconds=5.0).T, 44100, subtype="PCM_24")
    real = analysis.iter_blocks

    def blocks(*args, **kwargs):
        for i, block in enumerate(real(*args, block_frames=16384, **kwargs)):
            if i == 1:
                signal.raise_signal(signum)  # as if sent now, from outside
            yield block

    monkeypatch.setattr(analysis, "iter_blocks", blocks)
    before = signal.getsignal(signum)
    with pytest.raises(typer.Exit) as info:
        cli._analyse_reference(ref, no_cache=True, cache_dir=None)
    assert info.value.exit_code == 128 + signum
    name = signal.Signals(signum).name
    assert f"interrupted by {name} while the reference was analysed" in capsys.readouterr().err
    assert signal.getsignal(signum) is before


@pytest.mark.parametrize("value", ["nan", "inf", "0.5"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_a_usage_error(tmp_path, value):
    """click's range check lets NaN and inf through; the settings then said
    "must be None, 0 (no limit) or seconds >= 1", the Python API's words (a sweep)."""
    res = runner.invoke(
        app,
        ["master", str(tmp_path), "--out", str(tmp_path / "O"), "--timeout-per-track", value],
    )
    assert res.exit_code == 2
    assert "--timeout-per-track" in res.output and "must be a number of seconds >= 1" in res.output
    assert "None" not in res.output and not (tmp_path / "O").exists()
    assert "Usage:" not in res.output  # one [error] line, as every other bad value


@pytest.mark.parametrize("value", ["0", "-2"])
def test_jobs_below_one_is_one_error_line_like_every_other_bad_value(tmp_path, value):
    """click's range check printed its usage block and 'Invalid value for ...'; every
    other bad value gets one [error] line (a newcomer's try)."""
    res = runner.invoke(app, ["master", str(tmp_path), "--out", str(tmp_path / "O"), "-j", value])
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"[error] --jobs {value}: must be at least 1 worker process (default: all cores)"
    )
    assert not (tmp_path / "O").exists()


def test_an_output_format_or_depth_error_names_its_flag(tmp_path, write_audio):
    src = write_audio("a.flac", music_like(seconds=1.0))
    out = str(tmp_path / "o")
    res = runner.invoke(app, ["master", str(src), "--out", out, "--format", "mp3"])
    assert res.exit_code == 2 and "[error] --format mp3: format must be one of" in res.stderr
    res = runner.invoke(app, ["master", str(src), "--out", out, "--bit-depth", "32f"])
    assert res.exit_code == 2 and "[error] --bit-depth 32f: bit depth '32f'" in res.stderr
    assert not (tmp_path / "o").exists()
