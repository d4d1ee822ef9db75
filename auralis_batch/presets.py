"""Mastering presets: TOML files validated into frozen dataclasses.

Settings resolve ``defaults < preset TOML < CLI flags``. Every bad field is reported
as ``file: dotted.path: message`` and all of them at once, so a user fixes a preset in
one go. Loaded presets are immutable and memoised: a lookup after the first load is a
dict hit plus one ``stat`` (to notice an edited file), well under 1 ms.

The compressor threshold is in dBFS *of the signal as it will be at the target
loudness*: the engine offsets it by the gain that takes the equalised track to its
target, so one preset treats a quiet 1970s master and a loud modern one alike.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ParameterTypeError, PresetError, given
from .limits import MIN_LOOKAHEAD_MS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTIN_PRESETS: tuple[str, ...] = ("gentle", "warm", "bright", "punchy")
EQ_KINDS: tuple[str, ...] = ("peaking", "low_shelf", "high_shelf", "high_pass", "low_pass")

# (minimum, maximum, unit) for every numeric field: the one table of limits.
LIMITS: dict[str, tuple[float, float, str]] = {
    "target_lufs": (-40.0, -5.0, "LUFS"),
    "eq.highpass_hz": (0.0, 200.0, "Hz"),
    "eq.bands.frequency_hz": (10.0, 20000.0, "Hz"),
    "eq.bands.gain_db": (-12.0, 12.0, "dB"),
    "eq.bands.q": (0.1, 10.0, ""),
    "compressor.threshold_db": (-60.0, 0.0, "dBFS"),
    "compressor.ratio": (1.0, 20.0, ""),
    "compressor.knee_db": (0.0, 24.0, "dB"),
    "compressor.attack_ms": (0.1, 500.0, "ms"),
    "compressor.release_ms": (1.0, 5000.0, "ms"),
    "compressor.makeup_db": (-12.0, 24.0, "dB"),
    "limiter.ceiling_dbtp": (-20.0, 0.0, "dBTP"),
    "limiter.lookahead_ms": (MIN_LOOKAHEAD_MS, 20.0, "ms"),
    "limiter.release_ms": (1.0, 2000.0, "ms"),
    "limiter.max_gain_reduction_db": (0.0, 24.0, "dB"),
}
#: The limits of presets built in code from a reference (adaptive.reference_preset):
#: a matching EQ follows another track's tone, which takes wider bands than a
#: hand-written preset needs (match.MAX_BOOST_DB, match.MAX_CUT_DB), and an overall
#: gain that keeps it loudness-neutral; the rest as LIMITS.
REFERENCE_LIMITS: dict[str, tuple[float, float, str]] = {
    **LIMITS,
    "eq.bands.gain_db": (-30.0, 18.0, "dB"),
    "eq.gain_db": (-40.0, 40.0, "dB"),
    "target_lra_lu": (0.0, 40.0, "LU"),
}


@dataclass(frozen=True)
class EQBand:
    """One EQ band: an RBJ biquad."""

    name: str
    kind: str
    frequency_hz: float
    gain_db: float
    q: float = 0.707


@dataclass(frozen=True)
class EQSettings:
    highpass_hz: float = 20.0  # 0 disables the subsonic high-pass
    bands: tuple[EQBand, ...] = ()
    # A flat gain folded into the first section (no pass of its own): keeps a matching
    # EQ loudness-neutral, so the compressor sees the level its threshold assumes.
    # Presets built in code only; not part of the TOML schema.
    gain_db: float = 0.0


@dataclass(frozen=True)
class CompressorSettings:
    threshold_db: float = -12.0
    ratio: float = 2.0
    knee_db: float = 6.0
    attack_ms: float = 20.0
    release_ms: float = 200.0
    makeup_db: float = 0.0


@dataclass(frozen=True)
class LimiterSettings:
    ceiling_dbtp: float = -1.0
    lookahead_ms: float = 5.0
    release_ms: float = 80.0
    # The most peak reduction the limiter may apply to reach the target. Beyond it the
    # engine lowers the gain instead and reports that the target was not reached.
    max_gain_reduction_db: float = 6.0


@dataclass(frozen=True)
class Preset:
    """A complete, validated set of mastering parameters."""

    name: str
    description: str = ""
    target_lufs: float = -14.0
    tempo: bool = False
    eq: EQSettings = field(default_factory=EQSettings)
    compressor: CompressorSettings = field(default_factory=CompressorSettings)
    limiter: LimiterSettings = field(default_factory=LimiterSettings)
    source: str = ""
    notes: tuple[str, ...] = ()  # why each parameter was chosen (adaptive/reference)
    # The loudness range to reach (a reference's), or None; the render reports whether
    # it was. Presets built in code only; not part of the TOML schema.
    target_lra_lu: float | None = None
    # Whose range that is: the reference's, or the track's own ("track") when the
    # reference is too short to read one: a range the matching EQ widens comes back.
    target_lra_from: str = "reference"

    def with_overrides(
        self, *, target_lufs: float | None = None, ceiling_dbtp: float | None = None
    ) -> Preset:
        """A copy with CLI overrides applied; the overrides are validated (the rest was,
        when the preset was built: a reference match's EQ against its own wider
        limits, which a check of the whole against :data:`LIMITS` refused)."""
        preset = self
        problems: list[str] = []
        if target_lufs is not None:
            check_range("target_lufs", "target_lufs", target_lufs, problems)
            # a matched or adaptive preset's note on where its own target came from
            # ("= reference loudness") gives way to the one that holds (fifth sweep)
            notes = preset.notes
            kept = tuple(n for n in notes if not n.startswith("target "))
            if kept != notes and float(target_lufs) != preset.target_lufs:
                notes = (*kept, f"target {float(target_lufs):g} LUFS from --target-lufs")
            preset = dataclasses.replace(preset, target_lufs=float(target_lufs), notes=notes)
        if ceiling_dbtp is not None:
            check_range("limiter.ceiling_dbtp", "limiter.ceiling_dbtp", ceiling_dbtp, problems)
            lim = dataclasses.replace(preset.limiter, ceiling_dbtp=float(ceiling_dbtp))
            preset = dataclasses.replace(preset, limiter=lim)
        if problems:
            raise PresetError("; ".join(f"{preset.name}: {p}" for p in problems))
        return preset

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe parameters, as written in the report."""
        d = dataclasses.asdict(self)
        d["eq"]["bands"] = [dataclasses.asdict(b) for b in self.eq.bands]
        d["notes"] = list(self.notes)
        # Fields only code-built presets set are left out at their defaults, so the
        # parameters (and the journal's settings hash) of every other preset stay as
        # they were.
        if self.eq.gain_db == 0.0:
            del d["eq"]["gain_db"]
        if self.target_lra_lu is None:
            del d["target_lra_lu"]
        if self.target_lra_from == "reference":
            del d["target_lra_from"]
        return d

    @property
    def target_lra_whose(self) -> str:
        """``"the reference's"`` or ``"the track's own"``, for notes on the range."""
        return "the track's own" if self.target_lra_from == "track" else "the reference's"


def check_range(
    path: str,
    key: str,
    value: Any,
    problems: list[str],
    limits: dict[str, tuple[float, float, str]] = LIMITS,
) -> float | None:
    """``value`` as a float within ``limits[key]``, or None with a problem ``path: ...``
    added to ``problems`` (a preset's fields, a run's overrides, ``RunSettings``)."""
    lo, hi, unit = limits[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # NumPy's too
        problems.append(f"{path}: must be a number, got {value!r}")
        return None
    try:
        v = float(value)
    except OverflowError:  # an int of hundreds of digits (TOML's and JSON's have no bound)
        v = math.inf
    if not math.isfinite(v) or v < lo or v > hi:
        unit_s = f" {unit}" if unit else ""
        problems.append(f"{path}: must be between {lo:g} and {hi:g}{unit_s}, got {value!r}")
        return None
    return v


def validate(preset: Preset, *, limits: dict[str, tuple[float, float, str]] = LIMITS) -> list[str]:
    """Range-check a preset built in code (adaptive/reference) against ``limits``
    (:data:`LIMITS`, or :data:`REFERENCE_LIMITS` for a reference match); list of
    problems."""
    problems: list[str] = []

    def check(path: str, key: str, value: Any) -> None:
        check_range(path, key, value, problems, limits)

    check("target_lufs", "target_lufs", preset.target_lufs)
    check("eq.highpass_hz", "eq.highpass_hz", preset.eq.highpass_hz)
    if preset.eq.gain_db != 0.0:
        if "eq.gain_db" in limits:
            check("eq.gain_db", "eq.gain_db", preset.eq.gain_db)
        else:
            problems.append("eq.gain_db: only a reference match sets an overall EQ gain")
    if preset.target_lra_lu is not None:
        if "target_lra_lu" in limits:
            check("target_lra_lu", "target_lra_lu", preset.target_lra_lu)
        else:
            problems.append("target_lra_lu: only a reference match sets a loudness range")
    for i, band in enumerate(preset.eq.bands):
        for key in ("frequency_hz", "gain_db", "q"):
            check(f"eq.bands[{i}].{key}", f"eq.bands.{key}", getattr(band, key))
        if band.kind not in EQ_KINDS:
            problems.append(f"eq.bands[{i}].kind: must be one of {', '.join(EQ_KINDS)}")
    for section in ("compressor", "limiter"):
        obj = getattr(preset, section)
        for f in dataclasses.fields(obj):
            check(f"{section}.{f.name}", f"{section}.{f.name}", getattr(obj, f.name))
    return problems


def _parse(data: dict[str, Any], *, name: str, source: str) -> Preset:
    problems: list[str] = []
    known_top = {"name", "description", "target_lufs", "tempo", "eq", "compressor", "limiter"}
    for key in data:
        if key not in known_top:
            problems.append(f"{key}: unknown key (expected one of {', '.join(sorted(known_top))})")

    def number(section: dict[str, Any], path: str, key: str, default: float) -> float:
        if key not in section:
            return default
        v = check_range(path, path_key(path), section[key], problems)
        return default if v is None else v

    def path_key(path: str) -> str:
        # "eq.bands[3].gain_db" -> "eq.bands.gain_db"
        parts = [p.split("[")[0] for p in path.split(".")]
        return ".".join(parts)

    target = number(data, "target_lufs", "target_lufs", Preset.target_lufs)
    tempo = data.get("tempo", False)
    if not isinstance(tempo, bool):
        problems.append(f"tempo: must be true or false, got {tempo!r}")
        tempo = False
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append("description: must be a string")
        description = ""
    title = data.get("name", name)
    if not isinstance(title, str) or not title.strip():
        problems.append(f"name: must be a non-empty string, got {title!r}")

    eq_data = data.get("eq", {})
    bands: list[EQBand] = []
    highpass = EQSettings.highpass_hz
    if not isinstance(eq_data, dict):
        problems.append("eq: must be a table")
    else:
        for key in eq_data:
            if key not in ("highpass_hz", "bands"):
                problems.append(f"eq.{key}: unknown key (expected highpass_hz or bands)")
        highpass = number(eq_data, "eq.highpass_hz", "highpass_hz", highpass)
        raw_bands = eq_data.get("bands", [])
        if not isinstance(raw_bands, list):
            problems.append("eq.bands: must be an array of tables ([[eq.bands]])")
            raw_bands = []
        if len(raw_bands) > 16:
            problems.append(f"eq.bands: at most 16 bands, got {len(raw_bands)}")
        for i, band in enumerate(raw_bands):
            p = f"eq.bands[{i}]"
            if not isinstance(band, dict):
                problems.append(f"{p}: must be a table")
                continue
            for key in band:
                if key not in ("name", "kind", "frequency_hz", "gain_db", "q"):
                    problems.append(f"{p}.{key}: unknown key")
            if not isinstance(band.get("name", ""), str):
                problems.append(f"{p}.name: must be a string, got {band['name']!r}")
            kind = band.get("kind", "peaking")
            if kind not in EQ_KINDS:
                problems.append(f"{p}.kind: must be one of {', '.join(EQ_KINDS)}, got {kind!r}")
            if "frequency_hz" not in band:
                problems.append(f"{p}.frequency_hz: missing")
            bands.append(
                EQBand(
                    name=str(band.get("name", f"band{i + 1}")),
                    kind=str(kind),
                    frequency_hz=number(band, f"{p}.frequency_hz", "frequency_hz", 1000.0),
                    gain_db=number(band, f"{p}.gain_db", "gain_db", 0.0),
                    q=number(band, f"{p}.q", "q", 0.707),
                )
            )

    def section(name_: str, cls: type) -> Any:
        raw = data.get(name_, {})
        if not isinstance(raw, dict):
            problems.append(f"{name_}: must be a table")
            return cls()
        defaults = cls()
        names = [f.name for f in dataclasses.fields(cls)]  # the fields' order, every run
        for key in raw:
            if key not in names:
                problems.append(
                    f"{name_}.{key}: unknown key (expected one of {', '.join(sorted(names))})"
                )
        values = {f: number(raw, f"{name_}.{f}", f, getattr(defaults, f)) for f in names}
        return cls(**values)

    compressor = section("compressor", CompressorSettings)
    limiter = section("limiter", LimiterSettings)
    if problems:
        raise PresetError("\n".join(f"{source}: {p}" for p in problems))
    return Preset(
        name=str(data.get("name", name)),
        description=description.strip(),
        target_lufs=target,
        tempo=tempo,
        eq=EQSettings(highpass_hz=highpass, bands=tuple(bands)),
        compressor=compressor,
        limiter=limiter,
        source=source,
    )


def parse_preset_text(text: str, *, name: str, source: str) -> Preset:
    """Parse TOML text into a validated :class:`Preset`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{source}: not valid TOML ({exc})") from None
    return _parse(data, name=name, source=source)


_MEMO: dict[str, tuple[int, Preset]] = {}


def _load_file(path: Path) -> Preset:
    try:
        st = path.stat()
    except OSError:
        raise PresetError(
            f"{path}: preset file not found; built-in presets are "
            f"{', '.join(BUILTIN_PRESETS)} and 'adaptive'"
        ) from None
    key = str(path)
    hit = _MEMO.get(key)
    if hit is not None and hit[0] == st.st_mtime_ns:
        return hit[1]
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not TOML's, and
        # tomllib refused the whole file as "Invalid statement at line 1, column 1"
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path.name}: cannot read preset ({exc})") from None
    preset = parse_preset_text(text, name=path.stem, source=path.name)
    _MEMO[key] = (st.st_mtime_ns, preset)
    return preset


_BUILTIN: dict[str, Preset] = {}


def builtin_preset_text(name: str) -> str:
    """Text of a built-in preset: installed package data, or ``configs/`` in a checkout."""
    try:
        return resources.files("auralis_batch.configs").joinpath(f"{name}.toml").read_text("utf-8")
    except ModuleNotFoundError:  # running from a source tree that is not installed
        return (Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml").read_text("utf-8")


def load_preset(name_or_path: str | os.PathLike) -> Preset:
    """A built-in preset by name (``gentle``, ``warm``, ``bright``, ``punchy``) or any
    TOML file in the same schema.

    Raises
    ------
    PresetError
        The name is not a built-in preset and no such file exists, or the file is not
        valid TOML or breaks the schema (every problem listed as
        ``file: dotted.path: message``).
    ParameterTypeError
        ``name_or_path`` is not a str or path (None, a :class:`Preset` already).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ParameterTypeError(
            f"load_preset: name_or_path must be a preset name or a .toml path (str or "
            f"os.PathLike), got {given(name_or_path)}: the built-in presets are "
            f"{', '.join(BUILTIN_PRESETS)} (load_preset('gentle'))"
        )
    key = os.fspath(name_or_path)
    hit = _BUILTIN.get(key)
    if hit is not None:
        return hit
    if key in BUILTIN_PRESETS:
        preset = parse_preset_text(builtin_preset_text(key), name=key, source=f"{key}.toml")
        _BUILTIN[key] = preset
        return preset
    path = Path(key)
    if path.suffix.lower() == ".toml" or path.exists():
        return _load_file(path.resolve())
    if key == "adaptive":  # the CLI's name for a preset computed per track
        raise PresetError(
            "'adaptive' is computed from each track's analysis, not loaded: "
            "adaptive_preset(analyze(audio, sample_rate=sr)) (auralis_batch)"
        )
    raise PresetError(
        f"unknown preset {key!r}: choose one of {', '.join(BUILTIN_PRESETS)} or adaptive, "
        "or give a path to a .toml file"
    )


def list_presets() -> list[Preset]:
    return [load_preset(n) for n in BUILTIN_PRESETS]
