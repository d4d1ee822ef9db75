"""Preset lookup after the first load: goal well under 1 ms."""

from __future__ import annotations

import pytest

from auralis_batch.presets import load_preset


@pytest.mark.parametrize("name", ["gentle", "punchy"])
def test_builtin_preset_lookup(benchmark, name):
    load_preset(name)  # first load parses the TOML
    benchmark.group = "preset lookup"
    result = benchmark(load_preset, name)
    assert result.name == name


def test_user_preset_file_lookup(benchmark, tmp_path):
    from auralis_batch.presets import builtin_preset_text

    path = tmp_path / "mine.toml"
    path.write_text(builtin_preset_text("warm"))
    load_preset(path)
    benchmark.group = "preset lookup"
    result = benchmark(load_preset, path)
    assert result.compressor.ratio == 2.5
