"""Typed errors. The library raises these; the CLI maps them to exit codes."""

from __future__ import annotations


class AuralisError(Exception):
    """Root of every error auralis-batch raises on purpose."""


class ParameterError(AuralisError, ValueError):
    """A parameter is out of range: the message names it, its value, the range and unit."""


class PresetError(AuralisError, ValueError):
    """A preset file is missing or invalid; the message is ``file: dotted.path: problem``."""


class AudioError(AuralisError):
    """The audio itself cannot be processed (empty, NaN/inf, wrong layout)."""


class DecodeError(AudioError):
    """The file could not be read as audio (corrupt, truncated, unsupported format)."""


class OutputError(AuralisError):
    """The output could not be written (refused path, disk full, permission)."""


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
