"""Preset loading: schema, validation messages that name the culprit, immutability."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from auralis_batch.errors import PresetError
from auralis_batch.presets import BUILTIN_PRESETS, builtin_preset_text, load_preset

CHARACTER = {
    # name: (ratio bounds, what the EQ must do)
    "gentle": ((1.5, 2.5), lambda g: max(abs(v) for v in g.values()) <= 1.0),
    "warm": (
        (2.0, 3.0),
        lambda g: g["sub_bass"] + g["bass"] + g["low_mid"] > g["presence"] + g["air"],
    ),
    "bright": ((1.5, 2.0), lambda g: g["presence"] + g["air"] > g["sub_bass"] + g["bass"] + 2),
    "punchy": ((3.5, 6.0), lambda g: sum(v > 0 for v in g.values()) >= 4),
}


@pytest.mark.parametrize("name", BUILTIN_PRESETS)
def test_builtin_presets_have_seven_named_bands_and_their_character(name):
    p = load_preset(name)
    assert p.name == name
    assert len(p.eq.bands) == 7
    gains = {b.name: b.gain_db for b in p.eq.bands}
    assert set(gains) == {"sub_bass", "bass", "low_mid", "mid", "upper_mid", "presence", "air"}
    lo, hi = CHARACTER[name][0]
    assert lo <= p.compressor.ratio <= hi
    assert CHARACTER[name][1](gains)
    assert p.tempo is False
    assert -24 <= p.target_lufs <= -9
    assert p.limiter.ceiling_dbtp <= -1.0
    assert p.description
    # intent is documented in the file itself
    assert builtin_preset_text(name).lstrip().startswith("#")


def test_bright_is_faster_than_gentle():
    assert load_preset("bright").compressor.attack_ms < load_preset("gentle").compressor.attack_ms


def test_presets_are_immutable_and_memoised():
    p = load_preset("gentle")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.target_lufs = -9.0  # type: ignore[misc]
    assert load_preset("gentle") is p


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bad_field_is_named_with_file_path_range_and_value(tmp_path):
    text = builtin_preset_text("punchy").replace("ratio = 4.0", "ratio = 0.5")
    path = _write(tmp_path, "punchy.toml", text)
    with pytest.raises(PresetError) as info:
        load_preset(path)
    assert "punchy.toml: compressor.ratio: must be between 1 and 20, got 0.5" in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path):
    text = (
        builtin_preset_text("gentle")
        .replace("ratio = 2.0", "ratio = 'two'")
        .replace("ceiling_dbtp = -1.0", "ceiling_dbtp = 3.0")
        .replace('kind = "peaking"', 'kind = "notch"', 1)
        + "\nbogus = 1\n"
    )
    path = _write(tmp_path, "mine.toml", text)
    with pytest.raises(PresetError) as info:
        load_preset(path)
    msg = str(info.value)
    assert "mine.toml: compressor.ratio: must be a number, got 'two'" in msg
    assert "mine.toml: limiter.ceiling_dbtp: must be between -20 and 0 dBTP, got 3.0" in msg
    kinds = "peaking, low_shelf, high_shelf, high_pass, low_pass"
    assert f"mine.toml: eq.bands[1].kind: must be one of {kinds}" in msg  # not a list's repr
    assert "bogus: unknown key (expected one of " in msg and "['" not in msg


def test_names_must_be_text(tmp_path):
    """``name = 7`` made a preset called "7", and a band named by a table was taken
    (fourth sweep): every field is checked."""
    text = (
        builtin_preset_text("gentle")
        .replace('name = "gentle"', "name = 7")
        .replace('name = "bass"', "name = {a = 1}")
    )
    path = _write(tmp_path, "mine.toml", text)
    with pytest.raises(PresetError) as info:
        load_preset(path)
    assert "mine.toml: name: must be a non-empty string, got 7" in str(info.value)
    assert "mine.toml: eq.bands[1].name: must be a string, got {'a': 1}" in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(PresetError, match="not valid TOML"):
        load_preset(_write(tmp_path, "broken.toml", "target_lufs = = 3"))
    with pytest.raises(PresetError, match="preset file not found"):
        load_preset(tmp_path / "nope.toml")
    with pytest.raises(PresetError, match="unknown preset 'loud'"):
        load_preset("loud")


def test_user_preset_path_and_reload_after_edit(tmp_path):
    path = _write(tmp_path, "mine.toml", builtin_preset_text("warm"))
    first = load_preset(str(path))
    assert first.compressor.ratio == 2.5
    import os

    path.write_text(builtin_preset_text("warm").replace("ratio = 2.5", "ratio = 3.0"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_preset(str(path)).compressor.ratio == 3.0


def test_overrides_are_validated():
    p = load_preset("gentle").with_overrides(target_lufs=-16.0, ceiling_dbtp=-2.0)
    assert (p.target_lufs, p.limiter.ceiling_dbtp) == (-16.0, -2.0)
    assert load_preset("gentle").target_lufs == -14.0
    with pytest.raises(PresetError, match="target_lufs: must be between -40 and -5 LUFS"):
        load_preset("gentle").with_overrides(target_lufs=3.0)


def test_overrides_apply_to_a_reference_match_whose_eq_is_beyond_a_presets_limits():
    """--reference with --target-lufs or --ceiling-dbtp failed every track: the
    override checked the whole matched preset against a hand-written preset's limits
    (its +15.7 dB band, its overall EQ gain). Only the overrides are checked now."""
    base = load_preset("gentle")
    bands = tuple(dataclasses.replace(b, gain_db=15.7) for b in base.eq.bands)
    matched = dataclasses.replace(
        base, name="reference", eq=dataclasses.replace(base.eq, bands=bands, gain_db=6.9)
    )
    got = matched.with_overrides(target_lufs=-20.0, ceiling_dbtp=-3.0)
    assert got.target_lufs == -20.0 and got.limiter.ceiling_dbtp == -3.0
    assert got.eq == matched.eq
    with pytest.raises(PresetError, match="target_lufs: must be between"):
        matched.with_overrides(target_lufs=-2.0)


def test_a_preset_saved_with_a_byte_order_mark_loads(tmp_path):
    """Windows editors start a UTF-8 file with a BOM; it was refused as invalid TOML
    at line 1, column 1 (second sweep)."""
    path = tmp_path / "mine.toml"
    path.write_bytes(b"\xef\xbb\xbf" + builtin_preset_text("warm").encode("utf-8"))
    got = load_preset(str(path))
    assert got.eq == load_preset("warm").eq and got.target_lufs == load_preset("warm").target_lufs


def test_several_bad_fields_are_named_in_the_same_order_every_run(tmp_path):
    """The fields were checked in a set's order, which Python's hash seed changes per
    process: a preset's two errors came out in either order over six runs (a
    newcomer's try). Each process here has its own seed."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "mine.toml"
    bad.write_text('name = "mine"\n[compressor]\nattack_ms = -3\nratio = 0.5\n')
    code = (
        "import sys\nfrom auralis_batch.presets import load_preset\n"
        "try:\n    load_preset(sys.argv[1])\nexcept Exception as e:\n    print(e)\n"
    )
    said = set()
    for seed in ("1", "2", "3", "4"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = subprocess.run(
            [sys.executable, "-c", code, str(bad)], env=env, capture_output=True, text=True
        )
        said.add(run.stdout)
    (only,) = said
    assert only.index("compressor.ratio") < only.index("compressor.attack_ms")  # field order
