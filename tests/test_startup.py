"""Commands that compute nothing load neither Numba nor the kernels (issue 10)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from .conftest import music_like

PROBE = """
import json, sys
from auralis_batch.cli import main
sys.argv = ["auralis-batch", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in sys.modules if m == "numba" or m.startswith("auralis_batch.kernels"))
stack = sorted(m for m in ("numpy", "soundfile", "scipy.linalg") if m in sys.modules)
print("PROBE", json.dumps({"code": code, "heavy": heavy, "stack": stack}))
"""


def run_probe(*args: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([str(a) for a in args])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("PROBE "))
    return json.loads(line[len("PROBE ") :])


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["presets", "list"], ["presets", "show", "warm"]]
)
def test_light_commands_do_not_load_numba(args, tmp_path):
    got = run_probe(*args)
    assert got["heavy"] == [], got


def test_cache_stats_does_not_load_numba(tmp_path):
    got = run_probe("cache", "stats", "--cache-dir", tmp_path / "cache")
    assert got["code"] == 0 and got["heavy"] == []


def test_a_finished_master_rerun_does_not_load_numba(tmp_path, write_audio):
    write_audio("lib/a.flac", music_like(seconds=2.0))
    args = ["master", tmp_path / "lib", "--out", tmp_path / "out", "-q", "--no-cache", "-j", "1"]
    first = run_probe(*args)
    assert first["code"] == 0 and first["heavy"]  # the first run did compute
    assert "scipy.linalg" not in first["stack"]  # Numba's BLAS probe: nothing to load
    again = run_probe(*args)
    assert again["code"] == 0 and again["heavy"] == []


def test_an_analyze_answered_from_the_cache_does_not_load_numba(tmp_path, write_audio):
    write_audio("lib/a.flac", music_like(seconds=2.0))
    write_audio("lib/disc 2/b.wav", music_like(seconds=1.0, seed=3))
    (tmp_path / "lib" / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (tmp_path / "lib" / "playlist.m3u").write_text("a.flac\n")
    args = ["analyze", tmp_path / "lib", "--json", "--cache-dir", tmp_path / "cache"]
    first = run_probe(*args)
    assert first["code"] == 0 and first["heavy"]
    again = run_probe(*args)
    # nor NumPy nor the decoder: cover art and playlists need no decoder to be left out
    assert again == {"code": 0, "heavy": [], "stack": []}


def test_a_file_the_cache_does_not_know_takes_the_full_path(tmp_path, write_audio):
    write_audio("lib/a.flac", music_like(seconds=2.0))
    args = ["analyze", tmp_path / "lib", "--json", "--cache-dir", tmp_path / "cache"]
    assert run_probe(*args)["code"] == 0
    (tmp_path / "lib" / "notes.xyz").write_text("what is this?")  # unknown: ask the decoder
    got = run_probe(*args)
    assert got["code"] == 0 and got["stack"] == ["numpy", "soundfile"] and got["heavy"] == []


@pytest.mark.parametrize("own_process", [False, True])
def test_only_the_clis_processes_hide_scipy_linalg_from_numba(own_process):
    # a program that imports the package keeps Numba's BLAS; the CLI's processes
    # (which set the variable) analyse without loading scipy.linalg
    pytest.importorskip("scipy.linalg")
    code = (
        "import sys, numpy as np, auralis_batch as ab\n"
        "rng = np.random.default_rng(0)\n"
        "ab.analyze(0.1 * rng.standard_normal((2, 48000)), sample_rate=48000, tempo=False)\n"
        "from numba.np import arraymath\n"
        "print('BLAS', arraymath._HAVE_BLAS, 'scipy.linalg' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AURALIS_BATCH_OWN_PROCESS"}
    if own_process:
        env["AURALIS_BATCH_OWN_PROCESS"] = "1"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    expected = "BLAS False False" if own_process else "BLAS True True"
    assert expected in res.stdout, res.stdout + res.stderr


KEEP_FREED = """
import json, os, subprocess, sys
from auralis_batch import _startup
took = _startup.keep_freed_memory(children=True)
child = subprocess.run(
    [sys.executable, "-c", "import os; print(os.environ.get('GLIBC_TUNABLES'))"],
    capture_output=True, text=True,
).stdout.strip()
print("KEEP", json.dumps({"took": took, "env": os.environ.get("GLIBC_TUNABLES"), "child": child}))
"""


def _keep_freed(env: dict[str, str]) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", KEEP_FREED], capture_output=True, text=True, timeout=60, env=env
    )
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("KEEP "))
    return json.loads(line[len("KEEP ") :])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc only",
)
def test_cli_keeps_freed_memory_in_its_heap_and_its_childrens():
    """glibc takes the thresholds, and the processes the CLI starts inherit them; a
    user's own GLIBC_TUNABLES is left alone, and a malloc threshold of theirs wins."""
    from auralis_batch._startup import GLIBC_TUNABLES

    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    ours = GLIBC_TUNABLES
    assert _keep_freed(env) == {"took": True, "env": ours, "child": ours}
    mine = "glibc.malloc.arena_max=2"
    got = _keep_freed({**env, "GLIBC_TUNABLES": mine})
    assert got == {"took": True, "env": mine, "child": mine}
    mine = "glibc.malloc.mmap_threshold=65536"
    got = _keep_freed({**env, "GLIBC_TUNABLES": mine})
    assert got == {"took": False, "env": mine, "child": mine}


def test_an_unwritable_kernel_cache_falls_back_to_a_temporary_folder(tmp_path):
    """Cron as a service user with a read-only home, a read-only install: Numba found no
    writable place for its cache and every command that computes stopped with a
    traceback. The kernels compile into a temporary folder instead (removed at exit),
    and the run says why, once."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    code = (
        "import os, auralis_batch as ab; d = os.environ['NUMBA_CACHE_DIR']; "
        "print(d); print(os.path.isdir(d)); print(ab._NUMBA_CACHE_NOTE)"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(blocked / "numba")}  # under a file
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    folder, existed, note = out
    assert folder != str(blocked / "numba") and existed == "True"
    assert not os.path.exists(folder)  # removed when the process ended
    assert "cannot be kept" in note and str(blocked / "numba") in note
    usable = tmp_path / "numba"  # a writable one of the user's is kept as it is
    env["NUMBA_CACHE_DIR"] = str(usable)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [str(usable), "True", "None"]


def test_the_cli_says_once_that_the_kernels_cannot_be_kept(monkeypatch, capsys):
    import auralis_batch
    from auralis_batch.progress import BatchProgress

    monkeypatch.setattr(auralis_batch, "_NUMBA_CACHE_NOTE", "the compiled kernels cannot be kept")
    BatchProgress(enabled=False, interactive=False).first_run_note()
    # in a log (not a terminal) dated, as its other lines are
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \[warning\] the compiled kernels cannot be kept\n", err
    )
    BatchProgress(enabled=False, interactive=True).first_run_note()
    assert capsys.readouterr().err == "[warning] the compiled kernels cannot be kept\n"


def test_the_compile_note_does_not_promise_a_cache_that_cannot_be_kept(monkeypatch, capsys):
    """With the kernels' cache unwritable, "[warning] ... cannot be kept" was followed
    by "[note] compiling ... once (later runs load them)" (a sweep)."""
    import auralis_batch
    from auralis_batch.progress import BatchProgress

    monkeypatch.setattr(auralis_batch, "_kernels_compiled", lambda kernels: False)
    monkeypatch.setattr(auralis_batch, "_NUMBA_CACHE_NOTE", "the compiled kernels cannot be kept")
    BatchProgress(enabled=True, interactive=False).first_run_note()
    err = capsys.readouterr().err
    assert "at every run while they cannot be kept" in err and "later runs load them" not in err
    monkeypatch.setattr(auralis_batch, "_NUMBA_CACHE_NOTE", None)
    BatchProgress(enabled=True, interactive=False).first_run_note()
    assert "once (later runs load them)" in capsys.readouterr().err


INTERRUPTED_IMPORT = """
import importlib.abc, sys
class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "typer":  # the CLI's import is under way: a Ctrl-C lands here
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
from auralis_batch.__main__ import main
main()
"""


def test_a_ctrl_c_while_the_cli_loads_is_one_line_not_a_traceback():
    res = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 130, res.stderr
    assert res.stderr == "[error] interrupted by SIGINT: nothing was done, as it started\n"


def test_the_console_script_is_the_guarded_entry_point():
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "auralis-batch"]
    assert script.value == "auralis_batch.__main__:main"


@pytest.mark.parametrize(
    ("tempo_compiled", "expected"), [(False, "10 to 20 s"), (True, "5 to 12 s")]
)
def test_the_compile_note_counts_the_tempo_estimators_compile(
    monkeypatch, tempo_compiled, expected
):
    """A first ``analyze`` compiled for 16.5 s under a note saying "5 to 12 s" (a user's
    try): when the tempo estimator compiles too, the note says so in its figure."""
    import auralis_batch
    from auralis_batch import FINGERPRINT_KERNEL, METER_KERNEL, TEMPO_KERNEL
    from auralis_batch.progress import first_run_notes

    monkeypatch.setattr(auralis_batch, "_NUMBA_CACHE_NOTE", None)
    monkeypatch.setattr(
        auralis_batch,
        "_kernels_compiled",
        lambda kernels: tempo_compiled and kernels == (TEMPO_KERNEL,),
    )
    ((kind, text),) = first_run_notes((METER_KERNEL, FINGERPRINT_KERNEL, TEMPO_KERNEL))
    assert kind == "note" and expected in text
    ((_, text),) = first_run_notes((METER_KERNEL,))  # no tempo asked for: the usual figure
    assert "5 to 12 s" in text
