"""Parameters computed from a fingerprint: the ``adaptive`` preset and ``--reference``.

Both are deterministic functions of analysis records and produce an ordinary
:class:`~auralis_batch.presets.Preset`, validated by the same range table as the TOML
presets, with ``notes`` saying in a few words why each choice was made.

Adaptive EQ compares the track's seven band-energy shares with a reference balance
(the long-term average of well-balanced commercial masters, a pink-ish tilt) and
corrects half of the difference, at most ±3 dB per band. Compression follows the
dynamics: material with a high crest factor or wide loudness range gets a gentle
ratio (and a quieter target, so an orchestral recording is not squashed to pop
loudness); material that is already dense gets almost none.

Reference matching (as matchering does) takes the band balance of the reference
track, corrects the full smoothed difference limited to ±4 dB per band, and takes the
reference's integrated loudness as the target.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import PresetError
from .presets import (
    CompressorSettings,
    EQBand,
    EQSettings,
    LimiterSettings,
    Preset,
    validate,
)

# (band name, filter kind, frequency Hz, Q) for the seven-band EQ both modes use.
BAND_LAYOUT: tuple[tuple[str, str, float, float], ...] = (
    ("sub_bass", "low_shelf", 45.0, 0.707),
    ("bass", "peaking", 120.0, 0.8),
    ("low_mid", "peaking", 350.0, 0.9),
    ("mid", "peaking", 1000.0, 0.7),
    ("upper_mid", "peaking", 3000.0, 0.9),
    ("presence", "peaking", 6000.0, 0.9),
    ("air", "high_shelf", 11000.0, 0.707),
)

#: Energy share per band of a balanced master (sums to 1).
BALANCED_SHARES: dict[str, float] = {
    "sub_bass": 0.08,
    "bass": 0.33,
    "low_mid": 0.15,
    "mid": 0.25,
    "upper_mid": 0.09,
    "presence": 0.065,
    "air": 0.035,
}

ADAPTIVE_MAX_EQ_DB = 3.0
REFERENCE_MAX_EQ_DB = 4.0
_FLOOR = 1e-6


def _fingerprint(record: dict[str, Any]) -> dict[str, Any]:
    fp = record.get("fingerprint") if record else None
    if not isinstance(fp, dict) or "band_energy" not in fp:
        raise PresetError("adaptive: the analysis record has no fingerprint")
    return fp


def _share_gains(
    have: dict[str, float], want: dict[str, float], *, amount: float, limit_db: float
) -> dict[str, float]:
    gains = {}
    for name, *_ in BAND_LAYOUT:
        h = max(float(have.get(name, 0.0)), _FLOOR)
        w = max(float(want.get(name, 0.0)), _FLOOR)
        g = amount * 10.0 * math.log10(w / h)
        gains[name] = round(max(-limit_db, min(limit_db, g)), 1)
    return gains


def _bands(gains: dict[str, float]) -> tuple[EQBand, ...]:
    return tuple(EQBand(n, k, f, gains[n], q) for n, k, f, q in BAND_LAYOUT)


def adaptive_preset(record: dict[str, Any] | None) -> Preset:
    """Parameters for one track from its analysis record."""
    fp = _fingerprint(record or {})
    notes: list[str] = []
    gains = _share_gains(
        fp["band_energy"], BALANCED_SHARES, amount=0.5, limit_db=ADAPTIVE_MAX_EQ_DB
    )
    for name, g in gains.items():
        if abs(g) >= 1.0:
            have = 100 * float(fp["band_energy"].get(name, 0.0))
            want = 100 * BALANCED_SHARES[name]
            notes.append(f"{name} {g:+.1f} dB: {have:.1f}% of energy vs {want:.1f}% balanced")
    lra = float(fp.get("lra_lu", record.get("lra_lu") or 0.0) or 0.0)
    crest = float(fp.get("crest_db", 12.0))
    if lra > 15 or crest > 20:
        ratio, threshold, target = 1.5, -8.0, -18.0
        notes.append(f"wide dynamics (LRA {lra:.1f} LU, crest {crest:.1f} dB): 1.5:1, -18 LUFS")
    elif lra > 9 or crest > 16:
        ratio, threshold, target = 1.8, -10.0, -16.0
        notes.append(f"moderate dynamics (LRA {lra:.1f} LU, crest {crest:.1f} dB): 1.8:1, -16 LUFS")
    elif crest < 9 or lra < 4:
        ratio, threshold, target = 1.2, -6.0, -14.0
        notes.append(f"already dense (LRA {lra:.1f} LU, crest {crest:.1f} dB): 1.2:1, -14 LUFS")
    else:
        ratio, threshold, target = 2.0, -10.0, -14.0
        notes.append(f"typical dynamics (LRA {lra:.1f} LU, crest {crest:.1f} dB): 2:1, -14 LUFS")
    percussive = float(fp.get("percussive_ratio", 0.5))
    attack = 30.0 if percussive > 0.6 else 15.0  # let drum transients through
    notes.append(
        f"attack {attack:g} ms ({'percussive' if percussive > 0.6 else 'sustained'} material)"
    )
    preset = Preset(
        name="adaptive",
        description="derived from the track's fingerprint",
        target_lufs=target,
        tempo=False,
        eq=EQSettings(highpass_hz=20.0, bands=_bands(gains)),
        compressor=CompressorSettings(
            threshold_db=threshold, ratio=ratio, knee_db=8.0, attack_ms=attack, release_ms=200.0
        ),
        limiter=LimiterSettings(),
        source="adaptive",
        notes=tuple(notes),
    )
    _check(preset)
    return preset


def reference_preset(
    record: dict[str, Any], reference: dict[str, Any], *, strength: float = 1.0
) -> Preset:
    """Match ``record``'s track to the ``reference`` track's balance and loudness;
    ``strength`` (0..1) scales the tonal correction (``--match-strength``)."""
    fp = _fingerprint(record)
    ref = _fingerprint(reference)
    gains = _share_gains(
        fp["band_energy"], ref["band_energy"], amount=strength, limit_db=REFERENCE_MAX_EQ_DB
    )
    notes = [f"{n} {g:+.1f} dB toward the reference" for n, g in gains.items() if abs(g) >= 0.5]
    ref_lufs = reference.get("integrated_lufs")
    if ref_lufs is None or not math.isfinite(ref_lufs):
        target = -14.0
        notes.append("reference is silent: target -14 LUFS")
    else:
        target = max(-40.0, min(-5.0, float(ref_lufs)))
        notes.append(f"target {target:.1f} LUFS = reference loudness")
    crest_gap = float(fp.get("crest_db", 12.0)) - float(ref.get("crest_db", 12.0))
    ratio = max(1.2, min(4.0, 1.5 + 0.25 * crest_gap))
    notes.append(f"ratio {ratio:.1f}:1 (crest {crest_gap:+.1f} dB vs reference)")
    preset = Preset(
        name="reference",
        description=f"matched to {reference.get('path') or 'reference'}",
        target_lufs=round(target, 2),
        tempo=False,
        eq=EQSettings(highpass_hz=20.0, bands=_bands(gains)),
        compressor=CompressorSettings(
            threshold_db=-10.0, ratio=round(ratio, 2), knee_db=6.0, attack_ms=20.0, release_ms=150.0
        ),
        limiter=LimiterSettings(max_gain_reduction_db=8.0),
        source="reference",
        notes=tuple(notes),
    )
    _check(preset)
    return preset


def _check(preset: Preset) -> None:
    problems = validate(preset)
    if problems:  # a bug in the mapping above, never the user's fault
        raise PresetError(f"{preset.name}: " + "; ".join(problems))
