"""The public API refuses a wrong argument with the library's own error, naming the
parameter, the value, what is allowed and a fix; convenient forms a user would
expect (a str folder, a single input, a cache folder) are taken. Each of these
escaped as a bare AttributeError / TypeError / IndexError, or was silently accepted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import auralis_batch as ab
from auralis_batch.errors import AuralisError, ParameterError, ParameterTypeError

from .conftest import music_like


@pytest.fixture
def one_track(write_audio) -> Path:
    return write_audio("lib/a.flac", music_like(seconds=3.5))


def _planned(result: ab.BatchResult) -> list[tuple[str, str]]:
    return [(Path(r["input"]).name, r["status"]) for r in result.records]


# ---------------------------------------------------------------- 1. run_master
@pytest.mark.parametrize("as_given", [str, Path], ids=["str", "Path"])
def test_run_master_takes_a_str_folder_and_default_settings(tmp_path, one_track, as_given):
    """``out_dir`` as a str failed with "'str' object has no attribute 'resolve'" and
    ``settings=None`` with "'NoneType' object has no attribute 'check'"."""
    expected = ab.run_master([one_track.parent], tmp_path / "out", ab.RunSettings(), dry_run=True)
    got = ab.run_master([as_given(one_track.parent)], as_given(tmp_path / "out"), dry_run=True)
    assert _planned(got) == _planned(expected) == [("a.flac", "planned")]
    assert got.records[0]["output"] == expected.records[0]["output"]


@pytest.mark.parametrize(
    ("inputs", "out_dir", "settings", "match"),
    [
        (None, "out", None, r"inputs must be a list .* got None: run_master\(\['music/'\]"),
        ("lib", "out", None, r"inputs must be a list .* single path 'lib': pass \['lib'\]"),
        (b"lib", "out", None, r"inputs must be a list .* single path b'lib'"),
        (["lib"], None, None, r"out_dir must be a folder's path .* got None"),
        (["lib"], b"out", None, r"out_dir must be a folder's path .* got b'out'"),
        (["lib"], "out", {"preset": "warm"}, r"settings must be a RunSettings or None"),
        (["lib"], "out", "warm", r"settings must be a RunSettings .* RunSettings\(preset="),
        (["lib", None], "out", None, r"inputs\[1\] must be a file's or folder's path .* None"),
        ([b"lib"], "out", None, r"inputs\[0\] must be a file's or folder's path .* b'lib'"),
    ],
)
def test_run_master_refuses_wrong_types_up_front(
    tmp_path, monkeypatch, inputs, out_dir, settings, match
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParameterTypeError, match=match) as info:
        ab.run_master(inputs, out_dir, settings, dry_run=True)
    assert isinstance(info.value, TypeError)  # what code catching the old error expects
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 2. reference_preset
@pytest.mark.parametrize(
    ("record", "reference", "match"),
    [
        ({}, None, r"reference must be an analysis record .* got None: .*analyze\('reference"),
        ({}, "ref.flac", r"reference must be an analysis record .* got 'ref.flac'"),
        (None, {}, r"record must be an analysis record .* got None: .*analyze\('track"),
    ],
)
def test_reference_preset_refuses_what_is_not_a_record(record, reference, match):
    with pytest.raises(ParameterTypeError, match=match):
        ab.reference_preset(record, reference)


def test_adaptive_preset_refuses_a_path_for_a_record():
    with pytest.raises(ParameterTypeError, match=r"record must be .* adaptive_preset\(analyze"):
        ab.adaptive_preset("song.flac")
    with pytest.raises(ab.PresetError, match="no fingerprint"):  # None: as before
        ab.adaptive_preset(None)


# ---------------------------------------------------------------- 3. analyze(cache=...)
@pytest.mark.parametrize("as_given", [str, Path], ids=["str", "Path"])
def test_analyze_takes_a_cache_folder(tmp_path, one_track, as_given):
    """A folder was used as a cache object: "'str' object has no attribute ..."."""
    folder = as_given(tmp_path / "cache")
    first = ab.analyze(one_track, tempo=False, cache=folder)
    second = ab.analyze(one_track, tempo=False, cache=folder)
    assert first["cached"] is False and second["cached"] == "disk"
    assert second["integrated_lufs"] == first["integrated_lufs"]


@pytest.mark.parametrize("cache", [True, 3, {"dir": "x"}])
def test_analyze_refuses_what_is_not_a_cache(one_track, cache):
    with pytest.raises(
        ParameterTypeError, match=r"cache must be None, a cache folder .*open_cache"
    ):
        ab.analyze(one_track, cache=cache)


# ---------------------------------------------------------------- 4. true_peak_oversample
@pytest.mark.parametrize("oversample", [0, -1, 17, 2.5, math.nan, True, "4"])
def test_meter_refuses_a_true_peak_oversample_out_of_range(oversample):
    with pytest.raises(ParameterError, match=r"true_peak_oversample must be .* 1 and 16, got"):
        ab.LoudnessMeter(44100, 2, true_peak_oversample=oversample)


@pytest.mark.parametrize("oversample", [1, 4, 16, np.int64(8), 4.0])
def test_meter_takes_every_true_peak_oversample_in_range(oversample):
    meter = ab.LoudnessMeter(44100, 2, true_peak_oversample=oversample)
    assert meter._bank.shape[0] == int(oversample)


# ---------------------------------------------------------------- 5. analyze_file(array)
def test_analyze_file_points_an_array_to_analyze_array():
    with pytest.raises(
        ParameterTypeError, match=r"got an array of shape \(2, 1000\).*analyze_array"
    ):
        ab.analyze_file(np.zeros((2, 1000)))


def test_analyze_refuses_samples_that_are_not_an_array():
    with pytest.raises(ParameterTypeError, match=r"path_or_array must be .* got \[0.1, 0.2\]"):
        ab.analyze([0.1, 0.2], sample_rate=44100)


# ---------------------------------------------------------------- 6. load_preset(None)
@pytest.mark.parametrize("name", [None, 3])
def test_load_preset_refuses_a_non_name_and_lists_the_built_ins(name):
    with pytest.raises(ParameterTypeError, match="gentle, warm, bright, punchy") as info:
        ab.load_preset(name)
    assert f"got {name!r}" in str(info.value)


# ---------------------------------------------------------------- 7. channel_weights
@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["meter", "measure_loudness"])
def test_channel_weights_must_be_finite_and_not_negative(bad, where):
    audio = music_like(seconds=1.0)
    with pytest.raises(ParameterError, match=r"channel_weights\[1\] must be a finite number >= 0"):
        if where == "meter":
            ab.LoudnessMeter(44100, 2, channel_weights=[1.0, bad])
        else:
            ab.measure_loudness(audio, 44100, channel_weights=[1.0, bad])


def test_channel_weights_of_another_kind_or_count_are_refused_and_zero_is_taken():
    with pytest.raises(ParameterError, match=r"channel_weights must be 2 numbers, .* got 'ab'"):
        ab.LoudnessMeter(44100, 2, channel_weights="ab")
    with pytest.raises(ParameterError, match=r"channel_weights must be 2 numbers, .* got 3 values"):
        ab.LoudnessMeter(44100, 2, channel_weights=[1.0, 1.0, 1.0])
    ab.LoudnessMeter(44100, 2, channel_weights=[0.0, 1.41])  # 0 leaves a channel out


# ---------------------------------------------------------------- 8. timeout_per_track_s
@pytest.mark.parametrize("timeout", [0.5, 0.001, -1, math.nan, math.inf])
def test_run_settings_timeout_holds_the_cli_range(timeout):
    with pytest.raises(ParameterError, match=r"timeout_per_track_s: .* seconds >= 1 \(as --time"):
        ab.RunSettings(timeout_per_track_s=timeout).check()


@pytest.mark.parametrize("timeout", [None, 0, 1, 2.5, np.float64(60.0)])
def test_run_settings_timeout_in_range_or_no_limit_is_taken(timeout):
    ab.RunSettings(timeout_per_track_s=timeout).check()


def test_the_cli_and_run_settings_share_one_timeout_bound(tmp_path):
    """One constant: the CLI's ``--timeout-per-track`` refuses what is under the
    minimum the settings check, and its help names it."""
    from typer.testing import CliRunner

    from auralis_batch.cli import app
    from auralis_batch.limits import MIN_TIMEOUT_PER_TRACK_S

    under = f"{MIN_TIMEOUT_PER_TRACK_S * 0.99:g}"
    res = CliRunner().invoke(
        app, ["master", str(tmp_path), "--out", str(tmp_path / "O"), "--timeout-per-track", under]
    )
    assert res.exit_code == 2 and f">= {MIN_TIMEOUT_PER_TRACK_S:g}" in res.output
    text = CliRunner().invoke(app, ["master", "--help"], env={"COLUMNS": "200"}).output
    assert f"(at least {MIN_TIMEOUT_PER_TRACK_S:g})" in text


# ---------------------------------------------------------------- 9. analyze(path, sample_rate)
def test_analyze_refuses_a_sample_rate_that_is_not_the_files(one_track):
    """``sample_rate=8000`` for a 44.1 kHz file was ignored without a word."""
    with pytest.raises(ParameterError, match=r"sample_rate=8000 Hz .* own rate is 44100 Hz"):
        ab.analyze(one_track, sample_rate=8000, tempo=False)
    with pytest.raises(ParameterError, match=r"sample_rate must be .* got '44100'"):
        ab.analyze(one_track, sample_rate="44100", tempo=False)  # no rate to compare
    record = ab.analyze(one_track, sample_rate=44100, tempo=False)  # its own: taken
    assert record["sample_rate"] == 44100


def test_every_error_here_is_the_librarys_own():
    assert issubclass(ParameterTypeError, ParameterError)
    assert issubclass(ParameterTypeError, AuralisError)
    assert issubclass(ParameterTypeError, TypeError)
    assert issubclass(ParameterError, ValueError)


def test_run_master_refuses_an_input_that_does_not_exist(tmp_path, one_track):
    """The CLI exits 2 on a missing input; the API returned a result of 0 failed with
    the folder as a "skipped" record, which a script reads as a good run (a newcomer's
    try of the README's API example without a music/ folder)."""
    from auralis_batch.batch import PlanError

    with pytest.raises(PlanError, match=r"input .*music does not exist") as info:
        ab.run_master([one_track, tmp_path / "music"], tmp_path / "out")
    assert info.value.problems == [f"input {tmp_path / 'music'} does not exist"]
    assert not (tmp_path / "out").exists()


def test_an_int_too_large_for_a_float_is_out_of_range_not_a_traceback():
    """``float(10**400)`` raises OverflowError: a setting (or a TOML preset's field, or
    a journal line read back) of hundreds of digits came out as a traceback."""
    from auralis_batch.limits import is_finite_number

    with pytest.raises(ParameterError, match="target_lufs: must be between -40 and -5 LUFS"):
        ab.RunSettings(target_lufs=10**400).check()
    assert not is_finite_number(10**400) and is_finite_number(10**15)


def test_run_master_refuses_an_empty_list_of_inputs(tmp_path):
    """``run_master([], out)`` returned an empty result and left OUT with a lock file
    in it (a user's try): nothing given is a plan error, and nothing is made."""
    from auralis_batch.batch import PlanError

    with pytest.raises(PlanError, match=r"no inputs given"):
        ab.run_master([], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_array_and_a_missing_rate_are_typed_errors():
    """Bare AuralisErrors before, and master_array returned a (2, 0) "silent" master
    (a newcomer's)."""
    import numpy as np

    import auralis_batch as ab
    from auralis_batch.errors import AudioError, ParameterError

    empty = np.zeros((2, 0), np.float32)
    with pytest.raises(AudioError, match="has no samples"):
        ab.analyze(empty, sample_rate=44100)
    with pytest.raises(AudioError, match="has no samples"):
        ab.master_array(empty, 44100, preset="gentle")
    with pytest.raises(ParameterError, match=r"sample_rate: required .* 8000 to 384000"):
        ab.analyze(np.zeros((2, 4410), np.float32))


def test_a_preset_object_given_to_a_batch_run_is_said_in_a_line():
    import auralis_batch as ab

    with pytest.raises(ParameterError) as info:
        ab.run_master(["x"], "/nonexistent-out", ab.RunSettings(preset=ab.load_preset("warm")))
    message = str(info.value)
    assert "got a Preset object ('warm')" in message and len(message) < 300
