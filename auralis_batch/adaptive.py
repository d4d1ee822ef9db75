"""Parameters computed from a fingerprint: the ``adaptive`` preset and ``--reference``.

Both are deterministic functions of analysis records and produce an ordinary
:class:`~auralis_batch.presets.Preset`, validated by the same range table as the TOML
presets, with ``notes`` saying in a few words why each choice was made.

Adaptive EQ compares the track's seven band-energy shares with a reference balance
(the long-term average of well-balanced commercial masters, a pink-ish tilt) and
corrects half of the difference, at most ±3 dB per band; a band far under its share
(over :data:`ADAPTIVE_FULL_GAP_DB`) gets less boost, none from
:data:`ADAPTIVE_NO_BOOST_GAP_DB`: that is the arrangement, not the balance.
Compression follows the dynamics: material with a high crest factor or wide loudness
range gets a gentle ratio (and a quieter target, so an orchestral recording is not
squashed to pop loudness); material that is already dense gets almost none.

Reference matching (as matchering does) takes the tone, loudness and loudness range
of a reference track: the EQ is :func:`match.matching_eq` between the two long-term
third-octave spectra of the records (so a cached reference costs nothing), kept
loudness-neutral by an overall EQ gain; the target is the reference's integrated
loudness; the compressor narrows the loudness range toward the reference's when the
track's is wider, at most :data:`REFERENCE_MAX_RATIO` so nothing is crushed, and never
widens it. Records without a long-term spectrum (built by hand) fall back to the seven
band shares, limited to ±4 dB per band.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ParameterError, ParameterTypeError, PresetError, given
from .limits import SILENCE_LUFS
from .match import matching_eq, spectrum_of
from .presets import (
    REFERENCE_LIMITS,
    CompressorSettings,
    EQBand,
    EQSettings,
    LimiterSettings,
    Preset,
    validate,
)
from .versions import BAND_EDGES_HZ

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
#: A band this far (dB) under its balanced share gets the full half-way boost; one
#: further under gets less, none from ADAPTIVE_NO_BOOST_GAP_DB on. The shares cannot
#: tell a mix short of air from an arrangement without any (a string section has no
#: cymbals: the corpus's orchestral tracks hold 0.0-0.4 % of their energy above
#: 4 kHz against 6.5 % and 3.5 % balanced), and boosting what is not there raises
#: hiss, not music: every orchestral track got the full +3 dB of presence and air.
ADAPTIVE_FULL_GAP_DB = 6.0
ADAPTIVE_NO_BOOST_GAP_DB = 18.0
REFERENCE_MAX_EQ_DB = 4.0  # the seven-band fallback's limit
#: Most compression a reference match uses to narrow the loudness range.
REFERENCE_MAX_RATIO = 3.0
#: A loudness range within this of the reference's is left alone (LU).
LRA_TOLERANCE_LU = 1.0
#: Peak limiting a reference match may use to reach the reference's loudness (dB).
REFERENCE_MAX_GAIN_REDUCTION_DB = 8.0
#: A reference shorter than this (s) is refused: one short-term loudness window, the
#: least over which a loudness and a long-term spectrum (16 frames) mean anything.
MIN_REFERENCE_S = 3.0
#: ... and one shorter than this (s) has its tone and loudness matched but not its
#: loudness range. The range (EBU Tech 3342) is a spread of short-term values, one a
#: second; EBU Tech 3341 (2016) has a meter signal that it is not stable within a
#: programme's first 60 s, and R 128 s1 finds it of no use for short-form content.
MIN_RANGE_REFERENCE_S = 60.0
_FLOOR = 1e-6

#: The adaptive preset's compression and target for four kinds of dynamics:
#: ``(ratio, threshold dB, target LUFS)``. A track between two kinds gets a blend, so
#: that parameters move smoothly with the measurements: with steps, a crest factor of
#: 15.99 dB against 16.00 dB (the same music at another sample rate) gave targets 2 LU
#: apart.
DYNAMICS_KINDS: dict[str, tuple[float, float, float]] = {
    "already dense": (1.2, -6.0, -14.0),
    "typical": (2.0, -10.0, -14.0),
    "moderate": (1.8, -10.0, -16.0),
    "wide": (1.5, -8.0, -18.0),
}
#: Where a blend starts and ends, in the dynamics measure of :func:`_dynamics_lu`
#: (LU): typical to moderate, moderate to wide; and, in the density measure, dense to
#: typical. Each is centred on the edge of the former steps (9 and 15 LU; 4 LU).
#: A blend names its second kind from this weight on: a 5 % share moved nothing one
#: could hear, yet read "moderate dynamics, toward already dense" (a newcomer's try).
BLEND_NAMED_FROM = 0.1
TYPICAL_TO_MODERATE_LU = (8.0, 10.0)
MODERATE_TO_WIDE_LU = (14.0, 16.0)
DENSE_TO_TYPICAL_LU = (3.0, 5.0)


def _check_record(name: str, value: Any, call: str) -> None:
    """:class:`ParameterTypeError` unless ``value`` is an analysis record (a dict, as
    :func:`~auralis_batch.analysis.analyze` returns): a path or None given in its
    place failed as an AttributeError inside."""
    if not isinstance(value, dict):
        raise ParameterTypeError(
            f"{name} must be an analysis record (the dict analyze() returns), got "
            f"{given(value)}: {call}"
        )


def _fingerprint(record: dict[str, Any]) -> dict[str, Any]:
    fp = record.get("fingerprint") if record else None
    if not isinstance(fp, dict) or "band_energy" not in fp:
        raise PresetError("adaptive: the analysis record has no fingerprint")
    return fp


def _share_gains(
    have: dict[str, float],
    want: dict[str, float],
    *,
    amount: float,
    limit_db: float,
    taper: bool = False,
) -> dict[str, float]:
    """``amount`` of the way from the ``have`` shares to the ``want`` shares per band,
    dB, within ``limit_db``; ``taper``: a boost of a gap beyond ADAPTIVE_FULL_GAP_DB
    falls off linearly from the most it can be to none at ADAPTIVE_NO_BOOST_GAP_DB."""
    gains = {}
    for name, *_ in BAND_LAYOUT:
        h = max(float(have.get(name, 0.0)), _FLOOR)
        w = max(float(want.get(name, 0.0)), _FLOOR)
        gap = 10.0 * math.log10(w / h)
        g = amount * gap
        if taper and gap > ADAPTIVE_FULL_GAP_DB:
            top = min(limit_db, amount * ADAPTIVE_FULL_GAP_DB)
            left = (ADAPTIVE_NO_BOOST_GAP_DB - gap) / (
                ADAPTIVE_NO_BOOST_GAP_DB - ADAPTIVE_FULL_GAP_DB
            )
            g = top * max(0.0, left)
        gains[name] = round(max(-limit_db, min(limit_db, g)), 1)
    return gains


def _bands_below_nyquist(sample_rate: Any) -> tuple[str, ...]:
    """The fingerprint's bands a file at ``sample_rate`` can hold: those starting below
    its Nyquist frequency (all of them when the rate is not known)."""
    if not isinstance(sample_rate, (int, float)) or isinstance(sample_rate, bool):
        return tuple(BALANCED_SHARES)
    return tuple(n for n in BALANCED_SHARES if BAND_EDGES_HZ[n][0] < sample_rate / 2)


def _bands(gains: dict[str, float]) -> tuple[EQBand, ...]:
    return tuple(EQBand(n, k, f, gains[n], q) for n, k, f, q in BAND_LAYOUT)


def adaptive_preset(record: dict[str, Any] | None) -> Preset:
    """Parameters for one track from its analysis record.

    Raises
    ------
    PresetError
        ``record`` is None or has no fingerprint (analysed with ``fingerprint=False``).
    ParameterTypeError
        ``record`` is not a dict (a path: analyse it first).
    """
    if record is not None:
        _check_record("record", record, "adaptive_preset(analyze('track.flac'))")
    fp = _fingerprint(record or {})
    notes: list[str] = []
    present = _bands_below_nyquist((record or {}).get("sample_rate"))
    want = {n: BALANCED_SHARES[n] for n in present}
    total = sum(want.values())
    want = {n: v / total for n, v in want.items()}  # the balance of what the file can hold
    gains = _share_gains(
        fp["band_energy"], want, amount=0.5, limit_db=ADAPTIVE_MAX_EQ_DB, taper=True
    )
    for name in BALANCED_SHARES:
        if name not in present:  # an 8 kHz file was "boosted" +3 dB at 6 and 12 kHz, both
            gains[name] = 0.0  # moved under its Nyquist (an engineer's check)
            notes.append(f"{name}: none (above this file's {record['sample_rate'] / 2:g} Hz)")
    for name, g in gains.items():
        if name not in present:
            continue
        have = 100 * float(fp["band_energy"].get(name, 0.0))
        want_pct = 100 * want[name]
        gap = 10.0 * math.log10(max(want_pct, 1e-9) / max(have, 100 * _FLOOR))
        full = min(ADAPTIVE_MAX_EQ_DB, 0.5 * ADAPTIVE_FULL_GAP_DB)
        if gap > ADAPTIVE_FULL_GAP_DB and g < full - 0.5:  # noticeably under the full
            notes.append(
                f"{name} {g:+.1f} dB: {have:.1f}% of energy vs {want_pct:.1f}% balanced, "
                "so far under it that it is the arrangement's, not the mix's: boost held back"
            )
        elif abs(g) >= 1.0:
            notes.append(f"{name} {g:+.1f} dB: {have:.1f}% of energy vs {want_pct:.1f}% balanced")
    lra = float(fp.get("lra_lu", record.get("lra_lu") or 0.0) or 0.0)
    crest = float(fp.get("crest_db", 12.0))
    ratio, threshold, target, kind = _dynamics_choice(lra, crest)
    notes.append(f"{kind} (LRA {lra:.1f} LU, crest {crest:.1f} dB): {ratio:g}:1")
    notes.append(f"target {target:g} LUFS for {kind} material")  # a flag's own replaces it
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


def _dynamics_lu(lra: float, crest: float) -> tuple[float, float]:
    """``(dynamics, density)``, both in LU of loudness range. Dynamics is the wider of
    the range and the crest factor read as a range (16 dB of crest as 9 LU, 20 dB as
    15 LU); density the narrower of the range and the crest read the other way (9 dB
    as 4 LU, a dB a LU)."""
    return max(lra, 9.0 + 1.5 * (crest - 16.0)), min(lra, 4.0 + (crest - 9.0))


def _weight(value: float, edges: tuple[float, float]) -> float:
    lo, hi = edges
    return min(max((value - lo) / (hi - lo), 0.0), 1.0)


def _dynamics_choice(lra: float, crest: float) -> tuple[float, float, float, str]:
    """``(ratio, threshold_db, target_lufs, kind)`` for a track's loudness range and
    crest factor: :data:`DYNAMICS_KINDS` blended piecewise-linearly, so they are
    continuous in both. ``kind`` names the nearer kind and, in a blend, the other. A
    measurement that is not a number counts as a typical one (LRA 6 LU, crest 12 dB)."""
    lra = lra if math.isfinite(lra) else 6.0
    crest = crest if math.isfinite(crest) else 12.0
    dynamics, density = _dynamics_lu(lra, crest)
    kinds = DYNAMICS_KINDS
    low = _weight(density, DENSE_TO_TYPICAL_LU)
    up = _weight(dynamics, TYPICAL_TO_MODERATE_LU)
    top = _weight(dynamics, MODERATE_TO_WIDE_LU)
    weights = {
        "already dense": (1.0 - low) * (1.0 - up),
        "typical": low * (1.0 - up),
        "moderate": up * (1.0 - top),
        "wide": up * top,
    }
    ratio, threshold, target = (sum(w * kinds[k][i] for k, w in weights.items()) for i in range(3))
    ranked = sorted((w, k) for k, w in weights.items() if w > 0.0)
    first = ranked[-1][1]
    kind = first if first == "already dense" else f"{first} dynamics"
    if len(ranked) > 1 and ranked[-2][0] >= BLEND_NAMED_FROM:
        kind += f", toward {ranked[-2][1]}"
    return round(ratio, 2), round(threshold, 1), round(target, 1), kind


def check_reference(reference: dict[str, Any]) -> None:
    """Raise :class:`ParameterError` for a reference there is nothing to match in: shorter
    than :data:`MIN_REFERENCE_S`, or silent (no 400 ms block above BS.1770's -70 LUFS
    gate). Matching a track to either would be guesswork (a tone read from a few
    frames, a loudness of silence), and such a file is most likely not the one meant."""
    name = reference.get("path") or "the reference"
    duration = reference.get("duration_s")
    if isinstance(duration, (int, float)) and duration < MIN_REFERENCE_S:
        raise ParameterError(
            f"{name} is {duration:.2f} s long; a reference needs at least "
            f"{MIN_REFERENCE_S:g} s of audio to measure its loudness and balance"
        )
    lufs = reference.get("integrated_lufs")
    if not isinstance(lufs, (int, float)) or not math.isfinite(lufs):
        raise ParameterError(
            f"{name} is silent (no 400 ms block above -70 LUFS): it has no loudness or "
            "balance to match"
        )


def reference_target_lufs(reference_lufs: float) -> float:
    """The loudness a master matched to a reference of ``reference_lufs`` is made at:
    the reference's, within the range a preset's ``target_lufs`` may take."""
    lo, hi, _ = REFERENCE_LIMITS["target_lufs"]
    return max(lo, min(hi, reference_lufs))


#: A reference this far (LU) outside the range of targets warns on every master; a
#: loud modern master half a LU over -5 LUFS is matched at -5 without a word.
REFERENCE_CLAMP_WARN_LU = 1.0


def reference_target_warning(
    reference: dict[str, Any] | None, *, target_lufs: float | None = None
) -> str | None:
    """What every master of a run says when its reference's loudness is out of the range
    of targets by :data:`REFERENCE_CLAMP_WARN_LU` or more (None otherwise, and None when
    ``target_lufs``, a ``--target-lufs`` given with the reference, sets the loudness): a
    reference far quieter than any master (a near-silent file that passed the -70 LUFS
    gate) is rarely the one meant, and its masters came out 20 dB under what the user
    expected with nothing but a note (a sweep)."""
    if not reference or target_lufs is not None:
        return None
    lufs = reference.get("integrated_lufs")
    if not isinstance(lufs, (int, float)) or not math.isfinite(lufs):
        return None
    target = reference_target_lufs(float(lufs))
    if abs(target - lufs) < REFERENCE_CLAMP_WARN_LU:
        return None
    lo, hi, _ = REFERENCE_LIMITS["target_lufs"]
    name = reference.get("path") or "the reference"
    question = " (is it the reference meant?)" if lufs < lo else ""
    return (
        f"{name} measures {lufs:.1f} LUFS, outside the {lo:g} to {hi:g} LUFS a master can "
        f"be made at: mastered to {target:.1f} LUFS{question}"
    )


def reference_preset(
    record: dict[str, Any], reference: dict[str, Any], *, strength: float = 1.0
) -> Preset:
    """Match ``record``'s track to the ``reference`` track's tone, loudness and loudness
    range; ``strength`` (0..1) scales the tonal correction (``--match-strength``).

    Raises
    ------
    ParameterError
        A reference :func:`check_reference` refuses (too short, silent).
    ParameterTypeError
        ``record`` or ``reference`` is not an analysis record (None, a path).
    PresetError
        A record has no fingerprint.
    """
    _check_record("record", record, "reference_preset(analyze('track.flac'), reference)")
    _check_record("reference", reference, "reference_preset(record, analyze('reference.flac'))")
    check_reference(reference)
    fp = _fingerprint(record)
    ref = _fingerprint(reference)
    notes: list[str] = []
    lufs = record.get("integrated_lufs")
    if isinstance(lufs, (int, float)) and math.isfinite(lufs) and lufs >= SILENCE_LUFS:
        eq = _reference_eq(record, reference, fp, ref, strength=strength, notes=notes)
    else:
        # A track too short for a 400 ms block, or silent, has no long-term spectrum
        # worth matching, and the master gives it no loudness gain: its matching EQ
        # (with the flat gain that keeps a match loudness-neutral) raised a 0.2 s clip
        # by 17.5 dB while its record said "no loudness gain applied" (a helper's try).
        eq = EQSettings(highpass_hz=20.0)
        notes.append("no matching EQ: the track is too short or too quiet to measure")
    ref_lufs = float(reference["integrated_lufs"])
    target = reference_target_lufs(ref_lufs)
    if target != ref_lufs:
        notes.append(f"target {target:.1f} LUFS: the reference's {ref_lufs:.1f} is out of range")
    else:
        notes.append(f"target {target:.2f} LUFS = reference loudness")
    compressor, target_lra, lra_from = _reference_dynamics(
        record, reference, fp, ref, target, notes
    )
    preset = Preset(
        name="reference",
        description=f"matched to {reference.get('path') or 'reference'}",
        target_lufs=round(target, 2),
        tempo=False,
        eq=eq,
        compressor=compressor,
        limiter=LimiterSettings(max_gain_reduction_db=REFERENCE_MAX_GAIN_REDUCTION_DB),
        source="reference",
        notes=tuple(notes),
        target_lra_lu=target_lra,
        target_lra_from=lra_from,
    )
    _check(preset, limits=REFERENCE_LIMITS)
    return preset


def _reference_eq(
    record: dict[str, Any],
    reference: dict[str, Any],
    fp: dict[str, Any],
    ref: dict[str, Any],
    *,
    strength: float,
    notes: list[str],
) -> EQSettings:
    """The matching EQ from the long-term spectra, or the seven-band fallback."""
    mine, theirs = spectrum_of(record), spectrum_of(reference)
    if mine is None or theirs is None:
        gains = _share_gains(
            fp["band_energy"], ref["band_energy"], amount=strength, limit_db=REFERENCE_MAX_EQ_DB
        )
        notes.append("no long-term spectrum in the records: seven-band balance, ±4 dB")
        notes.extend(
            f"{n} {g:+.1f} dB toward the reference" for n, g in gains.items() if abs(g) >= 0.5
        )
        return EQSettings(highpass_hz=20.0, bands=_bands(gains))
    sample_rate = float(record.get("sample_rate") or 44100)
    match = matching_eq(mine, theirs, strength=strength, sample_rate=sample_rate)
    bands = tuple(
        EQBand(f"match_{i:02d}", kind, freq, gain, q)
        for i, (kind, freq, gain, q) in enumerate(match.sections)
    )
    wanted = [abs(x) for x in match.wanted_db]
    notes.append(
        f"matching EQ ({len(bands)} sections, strength {strength:g}): largest change "
        f"{max(wanted):.1f} dB, {-match.loudness_change_db:+.1f} dB overall to keep its "
        "loudness (estimated from the mid's spectrum)"
    )
    notes.extend(match.notes)
    gain = max(-40.0, min(40.0, round(-match.loudness_change_db, 2)))
    return EQSettings(highpass_hz=20.0, bands=bands, gain_db=gain)


def _reference_dynamics(
    record: dict[str, Any],
    reference: dict[str, Any],
    fp: dict[str, Any],
    ref: dict[str, Any],
    target_lufs: float,
    notes: list[str],
) -> tuple[CompressorSettings, float | None, str]:
    """A compressor that narrows the loudness range toward the reference's (never
    widens it: a narrower track is left uncompressed), the range to report against,
    and whose range that is (``Preset.target_lra_from``).

    A slow compressor (1 s release) works on the level of passages, which is what LRA
    measures; a ratio of r takes the part of the range above its threshold down to 1/r.
    The threshold starts at the peaks of the quiet end of the range (the true peak less
    the range) and the render lowers it until the range is the reference's
    (``pipeline._narrow_range``); the ratio stays at most :data:`REFERENCE_MAX_RATIO`.
    """
    lra = _lra(record, fp)
    ref_lra = _lra(reference, ref)
    none = CompressorSettings(threshold_db=0.0, ratio=1.0, knee_db=0.0)
    if lra is None or ref_lra is None:
        return none, None, "reference"
    duration = reference.get("duration_s")
    if isinstance(duration, (int, float)) and duration < MIN_RANGE_REFERENCE_S:
        # The matching EQ alone can widen a range by several LU (a full orchestra's
        # loud passages hold the bass a rock reference lifts: 7.7 -> 11.6 LU matched
        # to a 42-s clip); the track keeps its own range instead.
        notes.append(
            f"no compression toward the reference's loudness range: the reference is "
            f"{duration:.1f} s long, and a range takes at least {MIN_RANGE_REFERENCE_S:g} s "
            "to measure; a range the matching EQ widens is compressed back toward the "
            f"track's own {lra:.1f} LU (one it narrows is not expanded)"
        )
        return none, round(lra, 2), "track"
    if lra <= ref_lra + LRA_TOLERANCE_LU:
        if lra < ref_lra - LRA_TOLERANCE_LU:
            notes.append(
                f"loudness range {lra:.1f} LU is narrower than the reference's {ref_lra:.1f} LU: "
                "not expanded (no compression; the matching EQ may still move it)"
            )
        return none, round(ref_lra, 2), "reference"
    peak = _finite_or(record.get("true_peak_dbtp"), -1.0)
    source = _finite_or(record.get("integrated_lufs"), target_lufs)
    comp = range_compressor(lra, ref_lra, peak, source, target_lufs, notes)
    return comp, round(ref_lra, 2), "reference"


def range_compressor(
    lra_lu: float,
    ref_lra_lu: float,
    peak_dbtp: float,
    source_lufs: float,
    target_lufs: float,
    notes: list[str],
    *,
    whose: str = "the reference's",
) -> CompressorSettings:
    """The slow compressor that takes a range of ``lra_lu`` toward ``ref_lra_lu``
    (see :func:`_reference_dynamics`), for a signal whose true peak is ``peak_dbtp``
    at the source's level ``source_lufs``; the threshold is stated at the target level,
    as a preset states it. Also the render's rule when the matching EQ itself widened
    a range that needed no compression (``pipeline.master_stream``)."""
    # A ratio of r divides the range by r at most (everything above the threshold);
    # twice the excess leaves the render room to find the threshold that does it.
    wanted = lra_lu / max(ref_lra_lu, 1.0)
    ratio = min(REFERENCE_MAX_RATIO, 1.0 + 2.0 * (wanted - 1.0))
    note = f"compression {ratio:.1f}:1 toward {whose} range ({lra_lu:.1f} -> {ref_lra_lu:.1f} LU)"
    if lra_lu / REFERENCE_MAX_RATIO > ref_lra_lu + LRA_TOLERANCE_LU:
        note += f"; at most {REFERENCE_MAX_RATIO:g}:1, so the track is not crushed"
    notes.append(note)
    # The threshold in the source's dBFS is the quiet end's peak level, about the true
    # peak less the range; the preset states it at the target level.
    threshold = peak_dbtp - lra_lu - 1.0 + (target_lufs - source_lufs)
    return CompressorSettings(
        threshold_db=round(max(-60.0, min(0.0, threshold)), 2),
        ratio=round(ratio, 2),
        knee_db=6.0,
        attack_ms=30.0,
        release_ms=1000.0,
    )


def _finite_or(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default


def _lra(record: dict[str, Any], fp: dict[str, Any]) -> float | None:
    v = record.get("lra_lu", fp.get("lra_lu"))
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _check(preset: Preset, *, limits: dict[str, tuple[float, float, str]] | None = None) -> None:
    problems = validate(preset) if limits is None else validate(preset, limits=limits)
    if problems:  # a bug in the mapping above, never the user's fault
        raise PresetError(f"{preset.name}: " + "; ".join(problems))
