"""The committed example clip: its format, that the script reproduces it, its level."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralis_batch.meter import measure_loudness

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CLIP = EXAMPLES / "example.flac"


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "auralis_example_script", EXAMPLES / "make_example.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, int]:
    audio, sample_rate = sf.read(CLIP, dtype="float64", always_2d=True)
    return audio.T, sample_rate


def test_committed_clip_format():
    assert CLIP.is_file()
    assert CLIP.stat().st_size <= 2 * 1024 * 1024
    info = sf.info(CLIP)
    assert info.format == "FLAC"
    assert info.subtype == "PCM_16"
    assert info.channels == 2
    assert info.samplerate == 44100
    assert 0 < info.frames / info.samplerate <= 30.0


def test_script_reproduces_committed_clip(clip):
    audio, sample_rate = clip
    script = _load_script()
    synth = script.synthesize(sample_rate)
    assert synth.dtype == np.float64
    assert synth.shape == audio.shape
    np.testing.assert_allclose(synth, audio, rtol=0, atol=2 / 32768)
    assert script.peak_dbfs(synth) < script.PEAK_CEILING_DBFS


def test_clip_is_unmastered_with_headroom(clip):
    audio, sample_rate = clip
    loudness = measure_loudness(audio, sample_rate)
    assert -24.0 <= loudness.integrated_lufs <= -16.0
    assert loudness.true_peak_dbtp < -1.0
