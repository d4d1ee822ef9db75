"""Typed errors. The library raises these; the CLI maps them to exit codes."""

from __future__ import annotations

from typing import Any


class AuralisError(Exception):
    """Root of every error auralis-batch raises on purpose."""


class ParameterError(AuralisError, ValueError):
    """A parameter is out of range: the message names it, its value, the range and unit."""


class ParameterTypeError(ParameterError, TypeError):
    """A parameter of the wrong type (a cache given as a folder name, None for a
    record): a :class:`ParameterError`, and the ``TypeError`` Python raises for a wrong
    type, so code that caught the bare ``TypeError`` these calls raised before still
    catches it."""


class PresetError(AuralisError, ValueError):
    """A preset file is missing or invalid; the message is ``file: dotted.path: problem``."""


class AudioError(AuralisError):
    """The audio itself cannot be processed (empty, NaN/inf, wrong layout)."""


class DecodeError(AudioError):
    """The file could not be read as audio (corrupt, truncated, unsupported format)."""


class OutputError(AuralisError):
    """The output could not be written (refused path, disk full, permission)."""


class CeilingError(AuralisError):
    """A render stayed over its true-peak ceiling after the gain was lowered: nothing is
    written (the limiter's construction should make this unreachable)."""


class NoCacheFolderError(AuralisError, OSError):
    """No folder for a cache could be found: no home folder (``HOME`` unset and no
    user entry, as a service user under cron may have) and none given."""


class UnsafeRowError(AuralisError):
    """A fingerprint-cache row that is not inline JSON (a pickle, a file name, a foreign
    value): refused unread; the cache counts it as a miss and deletes it."""


class TrackTimeoutError(AuralisError):
    """The track took longer than ``--timeout-per-track``."""


class TrackStoppedError(AuralisError):
    """The worker process mastering the track was told to stop (SIGTERM) while its run
    goes on: the track fails, and the batch carries on."""


class RunAbandonedError(AuralisError):
    """The run that handed this worker its track is gone (killed); the track stops."""


def check_float_samples(arr: Any, name: str = "audio") -> None:
    """:class:`AudioError` unless ``arr`` (a NumPy array) holds floating-point samples
    (full scale 1.0); no NumPy import here, the dtype says it.
    Integer PCM read as numbers is 32768 or 2**31 times too loud: an int16 array
    measured +76 LUFS and mastered to a wrong level without a word (third sweep)."""
    if arr.dtype.kind == "f":
        return
    if arr.dtype.kind in "iu":
        scale = 2 ** (8 * arr.dtype.itemsize - 1)
        raise AudioError(
            f"{name}: expected float samples (full scale 1.0), got {arr.dtype} integers: "
            f"divide by {scale} (or read the file with soundfile's dtype='float32')"
        )
    raise AudioError(f"{name}: expected float samples, got dtype {arr.dtype}")


def given(value: Any, limit: int = 60) -> str:
    """``value`` as an error message names what was given: its repr when short, else
    its type (and an array's shape), so a message about a record or an array stays a
    line long."""
    text = repr(value)
    if len(text) <= limit:
        return text
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)}"
    return f"{type(value).__name__} {text[: limit - 5]}..."
