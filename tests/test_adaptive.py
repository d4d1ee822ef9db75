"""Adaptive and reference parameters: deterministic, bounded, explained."""

from __future__ import annotations

import pytest

from auralis_batch.adaptive import (
    ADAPTIVE_MAX_EQ_DB,
    BALANCED_SHARES,
    REFERENCE_MAX_EQ_DB,
    adaptive_preset,
    reference_preset,
)
from auralis_batch.presets import validate


def record(shares: dict[str, float], *, lra=6.0, crest=12.0, lufs=-20.0, percussive=0.5) -> dict:
    total = sum(shares.values())
    return {
        "integrated_lufs": lufs,
        "lra_lu": lra,
        "fingerprint": {
            "band_energy": {k: v / total for k, v in shares.items()},
            "lra_lu": lra,
            "crest_db": crest,
            "percussive_ratio": percussive,
        },
    }


def test_balanced_track_gets_a_flat_eq():
    p = adaptive_preset(record(BALANCED_SHARES))
    assert all(b.gain_db == 0.0 for b in p.eq.bands)
    assert validate(p) == []


def test_dark_track_gets_air_and_presence_within_bounds():
    dark = dict(BALANCED_SHARES, air=0.0005, presence=0.01)
    p = adaptive_preset(record(dark))
    gains = {b.name: b.gain_db for b in p.eq.bands}
    assert 1.0 < gains["air"] <= ADAPTIVE_MAX_EQ_DB
    assert gains["presence"] > 0
    assert any(n.startswith("air +") for n in p.notes)


def test_extreme_imbalance_is_clamped_and_deterministic():
    weird = dict.fromkeys(BALANCED_SHARES, 1e-9)
    weird["bass"] = 1.0
    a, b = adaptive_preset(record(weird)), adaptive_preset(record(weird))
    assert a == b
    assert all(abs(band.gain_db) <= ADAPTIVE_MAX_EQ_DB for band in a.eq.bands)


@pytest.mark.parametrize(
    ("lra", "crest", "ratio", "target"),
    [
        (18.0, 22.0, 1.5, -18.0),
        (11.0, 14.0, 1.8, -16.0),
        (6.0, 12.0, 2.0, -14.0),
        (3.0, 8.0, 1.2, -14.0),
    ],
)
def test_compression_and_target_follow_dynamics(lra, crest, ratio, target):
    p = adaptive_preset(record(BALANCED_SHARES, lra=lra, crest=crest))
    assert p.compressor.ratio == ratio and p.target_lufs == target
    assert validate(p) == []


def test_reference_matching_moves_toward_reference_and_takes_its_loudness():
    track = record(dict(BALANCED_SHARES, bass=0.15))
    ref = record(dict(BALANCED_SHARES, bass=0.45), lufs=-9.5)
    p = reference_preset(track, ref)
    gains = {b.name: b.gain_db for b in p.eq.bands}
    assert 0 < gains["bass"] <= REFERENCE_MAX_EQ_DB
    assert p.target_lufs == -9.5
    assert validate(p) == []


def test_adaptive_needs_a_fingerprint():
    from auralis_batch.errors import PresetError

    with pytest.raises(PresetError, match="no fingerprint"):
        adaptive_preset({"integrated_lufs": -20})
