"""Preset lookup after the first load: goal well under 1 ms."""

from __future__ import annotations

import pytest

from auralis_batch.presets import load_preset


@pytest.mark.benchmark(group="preset lookup")
@pytest.mark.parametrize("name", ["gentle", "punchy"])
def test_builtin_preset_lookup(benchmark, goals, name):
    load_preset(name)  # first load parses the TOML
    result = benchmark(load_preset, name)
    assert result.name == name
    goals.best_within(f"preset lookup, built-in {name}", 1e-3)
    goals.assert_met()


@pytest.mark.benchmark(group="preset lookup")
def test_user_preset_file_lookup(benchmark, goals, tmp_path):
    from auralis_batch.presets import builtin_preset_text

    path = tmp_path / "mine.toml"
    path.write_text(builtin_preset_text("warm"))
    load_preset(path)
    result = benchmark(load_preset, path)
    assert result.compressor.ratio == 2.5
    goals.best_within("preset lookup, user TOML path", 1e-3)
    goals.assert_met()
