"""Run settings and every decision that follows from them, in one place.

Which preset a track gets (built-in, TOML file, adaptive, or matched to a reference),
whether the analysis needs tempo or a fingerprint, how much decoded audio a worker
may hold, and the hash the journal keeps of everything that changes an output: all
of it is decided here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from . import __version__
from .adaptive import adaptive_preset, reference_preset
from .errors import ParameterError, given
from .limits import MIN_TIMEOUT_PER_TRACK_S, is_finite_number
from .presets import BUILTIN_PRESETS, Preset, load_preset
from .versions import PARAMETER_RULES_VERSION

#: Decoded audio (float32) and the equalised and compressed signal (float32,
#: pipeline.PROCESSED_DTYPE) a worker keeps in memory per track, so the track is decoded
#: once: the larger of the two must fit (the processed signal replaces the decoded audio
#: as it is made), or their sum when a reference's loudness range is searched (the
#: source is read again). Tracks beyond it stream (decoded again for the render); memory
#: stays bounded whatever the length.
DEFAULT_MEMORY_BUDGET_BYTES = 512 * 1024 * 1024
#: Environment variable that sets the budget, in MiB (``AURALIS_MEMORY_BUDGET_MB=256``).
MEMORY_BUDGET_ENV = "AURALIS_MEMORY_BUDGET_MB"
#: Bytes per sample the render keeps beside the decoded audio (float32, or float64 for
#: 32-bit integer and double sources: audio.decode_dtype) and the processed signal
#: while a reference match searches its compressor threshold: the equalised float64
#: (pipeline.EqualisedOnce), when that fits the budget too.
EQUALISED_BYTES_PER_SAMPLE = 8


def memory_budget_from_env() -> int:
    """The worker memory budget in bytes: ``$AURALIS_MEMORY_BUDGET_MB`` or the default.

    Raises
    ------
    ParameterError
        The variable is set but is not a number of MiB between 0 and 1,048,576.
    """
    text = os.environ.get(MEMORY_BUDGET_ENV)
    if not text:
        return DEFAULT_MEMORY_BUDGET_BYTES
    try:
        mib = float(text)
    except ValueError:
        mib = -1.0
    if not 0 <= mib <= 1024 * 1024:
        raise ParameterError(
            f"{MEMORY_BUDGET_ENV} must be a number of MiB between 0 and 1048576, got {text!r}"
        )
    return int(mib * 1024 * 1024)


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs; small and picklable (it travels to Dask workers)."""

    preset: str = "gentle"  # built-in name, "adaptive", or a path to a TOML file
    target_lufs: float | None = None
    ceiling_dbtp: float | None = None
    fmt: str = "flac"
    bit_depth: str = "24"
    album: bool = False
    write_loudness_tags: bool = False
    copy_tags: bool = True
    timeout_per_track_s: float | None = None
    use_cache: bool = True
    cache_dir: str | None = None
    reference: str | None = None
    reference_record: dict | None = None  # the reference's analysis, computed once
    tempo: bool | None = None  # None: as the preset says
    match_strength: float = 1.0  # 0..1: how much of the reference's tone to take
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES

    def check(self) -> None:
        """Every field checked up front, as the CLI checks its flags, so that a bad
        value stops the run before any work instead of failing each track.

        Raises
        ------
        ParameterError
            Naming every bad field as ``field: what is wrong`` (the allowed values,
            the range and its unit).
        PresetError
            ``preset`` names no built-in preset and no readable TOML file.
        """
        from .audio import output_subtype
        from .presets import check_range

        problems: list[str] = []
        for name in ("album", "write_loudness_tags", "copy_tags", "use_cache"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name}: must be True or False, got {getattr(self, name)!r}")
        if self.tempo is not None and not isinstance(self.tempo, bool):
            problems.append(f"tempo: must be True, False or None, got {self.tempo!r}")
        for name, limit in (
            ("target_lufs", "target_lufs"),
            ("ceiling_dbtp", "limiter.ceiling_dbtp"),
        ):
            if getattr(self, name) is not None:  # the preset's own range check
                check_range(name, limit, getattr(self, name), problems)
        if not (is_finite_number(self.match_strength) and 0.0 <= self.match_strength <= 1.0):
            problems.append(f"match_strength: must be between 0 and 1, got {self.match_strength!r}")
        timeout = self.timeout_per_track_s  # None or 0: no limit
        if timeout is not None and not (
            is_finite_number(timeout) and (timeout == 0 or timeout >= MIN_TIMEOUT_PER_TRACK_S)
        ):
            problems.append(
                f"timeout_per_track_s: must be None, 0 (no limit) or seconds >= "
                f"{MIN_TIMEOUT_PER_TRACK_S} (as --timeout-per-track), got {timeout!r}"
            )
        budget = self.memory_budget_bytes
        if not (is_finite_number(budget) and float(budget).is_integer() and budget >= 0):
            problems.append(f"memory_budget_bytes: must be a whole number >= 0, got {budget!r}")
        if not isinstance(self.preset, (str, os.PathLike)):
            from .presets import Preset

            if isinstance(self.preset, Preset):  # its repr was a kilobyte (a newcomer's)
                problems.append(
                    f"preset: must be a name or a TOML file's path, got a Preset object "
                    f"({self.preset.name!r}): a batch run journals its preset by name, "
                    "so give the name, or write its fields to a TOML file and give that path"
                )
            else:
                problems.append(f"preset: must be a name or a path, got {given(self.preset)}")
        for name in ("fmt", "bit_depth"):
            if not isinstance(getattr(self, name), str):
                problems.append(f"{name}: must be a str, got {getattr(self, name)!r}")
        if isinstance(self.fmt, str) and isinstance(self.bit_depth, str):
            try:
                output_subtype(self.fmt, self.bit_depth)
            except ParameterError as exc:
                problems.append(f"fmt, bit_depth: {exc}")
        if problems:
            raise ParameterError("; ".join(problems))
        if not adapts(self) and not self.reference:  # a reference is analysed first
            load_preset(self.preset)

    def fingerprint(self) -> str:
        """Hash of everything that changes the output (the journal keeps it), taken
        from :meth:`canonical`: a flag that restates what the preset says does not
        change it, so adding one to a nightly command redoes nothing."""
        return self.canonical()._hash()

    def fingerprints(self) -> tuple[str, ...]:
        """Every hash a journal entry may hold for these settings: :meth:`fingerprint`
        first, then the hashes that versions before the canonical form journaled for
        the same masters: these settings with any of the flags that restate the preset
        given or left out (their masters are not redone for the difference), and with
        any ``tempo``: the estimate goes into the report only, never into the audio or
        its tags, so ``--tempo`` on a finished library re-rendered every track into the
        same bytes (a user's try; ``analyze`` gives a finished library's tempi)."""
        base = self.canonical()
        variants = [base]
        restating: list[dict[str, Any]] = []
        if not adapts(base):
            preset = load_preset(base.preset)
            if base.target_lufs is None:
                restating.append({"target_lufs": preset.target_lufs})
            if base.ceiling_dbtp is None:
                restating.append({"ceiling_dbtp": preset.limiter.ceiling_dbtp})
        for flag in restating:
            variants += [dataclasses.replace(v, **flag) for v in variants]
        variants += [
            dataclasses.replace(v, tempo=t)
            for v in list(variants)
            for t in (None, True, False)
            if t is not v.tempo
        ]
        hashes = [v._hash() for v in variants] + [v._hash(spelled=True) for v in variants]
        return tuple(dict.fromkeys(hashes))

    def preset_name(self) -> str:
        """The preset's name as a master's record and journal entry give it: a TOML
        file's own ``name`` (its path is how it was given), else :attr:`preset`."""
        if adapts(self) or self.preset in BUILTIN_PRESETS:
            return self.preset
        return load_preset(self.preset).name

    def journal_flags(self) -> dict[str, Any]:
        """What a journal entry keeps of these settings beside their hash, so that a
        master redone for other settings can say which ("[replaced] ...: --bit-depth
        24, now 16"): the settings a user sets (:meth:`canonical`: a flag restating the
        preset is left out), short hashes of the preset's parameters and of the
        reference's audio, and the engine's version."""
        c = self.canonical()
        flags: dict[str, Any] = {
            "target_lufs": c.target_lufs,
            "ceiling_dbtp": c.ceiling_dbtp,
            "bit_depth": c.bit_depth,
            "album": c.album,
            "write_loudness_tags": c.write_loudness_tags,
            "copy_tags": c.copy_tags,
            "match_strength": c.match_strength,
            "engine": __version__,
        }
        if not adapts(c):
            blob = json.dumps(load_preset(c.preset).to_dict(), sort_keys=True, default=str)
            flags["preset_parameters"] = hashlib.sha256(blob.encode()).hexdigest()[:12]
        else:
            flags["rules"] = PARAMETER_RULES_VERSION
        if c.reference_record is not None:
            flags["reference"] = str(c.reference_record.get("content_sha256") or "")[:16]
        return flags

    def canonical(self) -> RunSettings:
        """These settings with every flag that restates the preset left out: a
        ``target_lufs`` or ``ceiling_dbtp`` equal to a fixed preset's own, ``tempo``
        equal to what the preset decides (``--no-tempo`` with a preset that estimates
        no tempo). Adaptive and reference runs keep their flags: their parameters come
        from each track."""
        same = self
        if not adapts(self):
            preset = load_preset(self.preset)
            if self.target_lufs is not None and self.target_lufs == preset.target_lufs:
                same = dataclasses.replace(same, target_lufs=None)
            if self.ceiling_dbtp is not None and self.ceiling_dbtp == preset.limiter.ceiling_dbtp:
                same = dataclasses.replace(same, ceiling_dbtp=None)
        if self.tempo is not None and self.tempo == needs_tempo(
            dataclasses.replace(self, tempo=None)
        ):
            same = dataclasses.replace(same, tempo=None)
        return same

    def _hash(self, *, spelled: bool = False) -> str:
        """The settings' hash. A preset file and a reference count by what they hold
        (the preset's parameters, the reference's content hash), not by how their path
        was typed: ``./mine.toml`` for ``mine.toml``, an absolute path, a link, or a run
        from another folder (a Dask run makes every path absolute) mastered a finished
        library again into the same bytes (fifth sweep). ``spelled``: the hash versions
        before that journaled, with the path as typed (accepted by :meth:`fingerprints`,
        so a library they finished is not redone for the upgrade)."""
        d = dataclasses.asdict(self)
        for k in (
            "timeout_per_track_s",
            "use_cache",
            "cache_dir",
            "reference_record",
            "memory_budget_bytes",
        ):
            d.pop(k)
        if not adapts(self):
            d["preset_parameters"] = load_preset(self.preset).to_dict()
            if not spelled and self.preset not in BUILTIN_PRESETS:
                d["preset"] = "file"  # its parameters above say which
        if self.reference_record is not None:
            d["reference_sha256"] = self.reference_record.get("content_sha256")
            if not spelled and d["reference_sha256"]:
                d.pop("reference")  # its content's hash above says which, with its layout
                d["reference_layout"] = [
                    self.reference_record.get("sample_rate"),
                    self.reference_record.get("channels"),
                ]
        d["engine"] = __version__
        if adapts(self):  # parameters computed per track: by these rules (every hash form,
            # so no master of older rules passes for done)
            d["rules"] = PARAMETER_RULES_VERSION
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def adapts(settings: RunSettings) -> bool:
    """True when the parameters come from each track's analysis (adaptive, reference)."""
    return settings.preset == "adaptive" or settings.reference_record is not None


def needs_tempo(settings: RunSettings) -> bool:
    """Whether the analysis estimates tempo: the flag, else the preset's ``tempo``."""
    if settings.tempo is not None:
        return settings.tempo
    if adapts(settings):
        return False
    return load_preset(settings.preset).tempo


def needs_fingerprint(settings: RunSettings) -> bool:
    """Whether anything will read a fingerprint: a cache keeps it, an adaptive or
    reference preset reads it, tempo lives in it. Otherwise loudness is enough."""
    return settings.use_cache or adapts(settings) or needs_tempo(settings)


def resolve_preset(settings: RunSettings, analysis: dict[str, Any] | None) -> Preset:
    """The preset for one track, with the run's target and ceiling overrides.

    Raises
    ------
    PresetError
        The named preset is missing or invalid.
    """
    if settings.reference_record is not None and analysis is not None:
        preset = reference_preset(
            analysis, settings.reference_record, strength=settings.match_strength
        )
    elif settings.preset == "adaptive":
        preset = adaptive_preset(analysis)
    else:
        preset = load_preset(settings.preset)
    return preset.with_overrides(
        target_lufs=settings.target_lufs, ceiling_dbtp=settings.ceiling_dbtp
    )
