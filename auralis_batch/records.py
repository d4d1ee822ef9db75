"""Report records: one dict per track, built only here.

Every track of a run ends as exactly one record whose ``status`` is one of
:data:`STATUSES`. Records are plain JSON-safe dicts because they travel between
processes (joblib, Dask) and into the JSON/CSV report unchanged.
"""

from __future__ import annotations

import errno
import math
import os
import traceback
from collections.abc import Sequence
from pathlib import Path

from .errors import AuralisError

#: ``ok`` mastered; ``failed`` tried and failed (with ``error``); ``skipped`` not tried
#: on purpose (already done, not audio, not a regular file); ``not started`` never
#: reached because the run stopped (disk full); ``interrupted`` running or waiting when
#: the run was stopped by a signal; ``planned`` a dry run's answer.
STATUSES = ("ok", "failed", "skipped", "not started", "interrupted", "planned")

#: The loudness measurements of ``before`` and ``after`` (and of an analysis record).
LOUDNESS_KEYS = (
    "integrated_lufs",
    "true_peak_dbtp",
    "lra_lu",
    "sample_peak_dbfs",
    "max_momentary_lufs",
    "max_short_term_lufs",
)
#: Those an analysis record also holds at its top level (the same numbers).
TOP_LEVEL_LOUDNESS_KEYS = LOUDNESS_KEYS[:4]


def record(path: Path | str, status: str, error: str | None = None, output=None) -> dict:
    """A record with no measurements: ``input``, ``output``, ``status``, ``error``, ``seconds``."""
    rec: dict = {"input": str(path), "status": status, "error": error, "seconds": 0.0}
    if output is not None:
        rec["output"] = str(output)
    return rec


#: Why a file found in a folder is skipped when its extension is not audio the decoder
#: reads (what the HTML report puts at the end of its table, not in its list to look at).
NOT_AUDIO_REASON = "not an audio file this build can read"


def _skipped_for(rec: dict, reasons: str | tuple[str, ...]) -> bool:
    """A skipped record whose reason starts with (one of) ``reasons``."""
    return rec.get("status") == "skipped" and str(rec.get("error") or "").startswith(reasons)


def is_not_audio(rec: dict) -> bool:
    """A file a folder holds beside its tracks (cover art, a playlist, a rip log),
    skipped by its extension (:data:`NOT_AUDIO_REASON`)."""
    return _skipped_for(rec, NOT_AUDIO_REASON)


#: Why a track is skipped as done (the journal says it is mastered with these settings).
DONE_REASON = "already mastered with these settings (journal)"
#: How the skip of a file reached again through a link begins (plan.py adds the path
#: it is mastered as).
SAME_FILE_PREFIX = "the same file as "


def is_done(rec: dict) -> bool:
    """A track skipped as already mastered with these settings."""
    return _skipped_for(rec, DONE_REASON)


def is_read_another_way(rec: dict) -> bool:
    """A file or folder skipped as reached again by another path (a link to it)."""
    return _skipped_for(rec, (FOLDER_READ_TWICE_REASON, SAME_FILE_PREFIX))


def is_routine_skip(rec: dict) -> bool:
    """A skip nothing is to be done about: a file that is no audio, a track already
    done, or a file or folder read by another path (a link to it); the HTML report's
    "needs a look" counts the other skips (a user's try counted a library's
    deliberate links there)."""
    return is_not_audio(rec) or is_done(rec) or is_read_another_way(rec)


#: Audio formats libsndfile does not decode, by the extension their files go by: a
#: folder's ``.m4a`` tracks were "not audio" beside its covers and playlists, and an
#: iTunes library lost them from the run with only a count to show it (a helper's try).
#: Not ``.mp4`` or ``.webm``: in a music folder those are mostly videos, which are no
#: tracks to warn about every night.
UNDECODABLE_AUDIO = {
    "m4a": "MP4 audio (AAC or ALAC)",
    "m4b": "MP4 audiobook (AAC)",
    "m4p": "protected MP4 audio",
    "aac": "AAC",
    "alac": "ALAC",
    "wma": "Windows Media Audio",
    "ape": "Monkey's Audio",
    "wv": "WavPack",
    "mpc": "Musepack",
    "tta": "True Audio",
    "tak": "TAK",
    "shn": "Shorten",
    "dsf": "DSD",
    "dff": "DSD",
    "ac3": "Dolby Digital",
    "dts": "DTS",
    "amr": "AMR",
    "mka": "Matroska audio",
}
#: Why a file found in a folder is skipped when its extension names one of those.
UNDECODABLE_REASON = "audio in a format this build cannot decode"


def undecodable_reason(extension: str) -> str:
    """The skip reason of a file whose ``extension`` is in :data:`UNDECODABLE_AUDIO`."""
    return (
        f"{UNDECODABLE_REASON}: {UNDECODABLE_AUDIO[extension]}; convert it to FLAC "
        f"first (ffmpeg -i IN.{extension} OUT.flac)"
    )


def undecodable_record(path: Path) -> dict | None:
    """The skipped record of ``path`` if its extension is in :data:`UNDECODABLE_AUDIO`."""
    ext = path.suffix.lower().lstrip(".")
    return skipped_record(path, undecodable_reason(ext)) if ext in UNDECODABLE_AUDIO else None


def is_undecodable(rec: dict) -> bool:
    """A track skipped as :data:`UNDECODABLE_REASON`: music the run could not read,
    which needs a look (unlike :func:`is_not_audio`)."""
    return _skipped_for(rec, UNDECODABLE_REASON)


def undecodable_warning(command: str, records: list[dict], *, report: bool = False) -> str | None:
    """One ``[warning]`` line for the tracks a run skipped as undecodable, counted by
    extension with the first named (a library of them would otherwise fill a nightly
    log with one line each), or None if there are none; ``report``: a report was
    written, which lists them."""
    found = [str(r["input"]) for r in records if is_undecodable(r)]
    if not found:
        return None
    by_ext: dict[str, int] = {}
    for f in found:
        ext = Path(f).suffix.lower() or "?"
        by_ext[ext] = by_ext.get(ext, 0) + 1
    kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(by_ext.items()))
    what = "track" if len(found) == 1 else "tracks"
    return (
        f"[warning] {command}: {len(found)} {what} in a format this build cannot decode "
        f"({kinds}; first: {found[0]}) not read: convert them to FLAC first"
        + ("; the report lists them" if report else "")
    )


#: Why a walk passes over an entry that is no track (plan.py builds its skipped records
#: with these): a link to nothing or an entry it cannot look at, a folder it cannot list
#: or has read by another path, a named input it cannot look at, something that is not
#: a file (a FIFO, a socket: the kind follows), a link into the output folder.
BROKEN_ENTRY_REASON = "broken symlink or unreadable entry"
UNREADABLE_FOLDER_REASON = "folder not readable: "
FOLDER_READ_TWICE_REASON = "folder already read by another path"
CANNOT_READ_REASON = "cannot read: "
NOT_A_FILE_REASON = "not read: "
LINK_INTO_OUT_REASON = "a link into the output folder: not read"
_NO_TRACK_REASONS = (
    NOT_AUDIO_REASON,
    BROKEN_ENTRY_REASON,
    UNREADABLE_FOLDER_REASON,
    FOLDER_READ_TWICE_REASON,
    CANNOT_READ_REASON,
    NOT_A_FILE_REASON,
    LINK_INTO_OUT_REASON,
)


def is_no_track(rec: dict) -> bool:
    """A record of something a run found that is no audio file to master: a file of
    another kind (:func:`is_not_audio`), a broken link, a folder it could not list, ...
    A run whose records are all such found no audio file (an empty folder, a share
    that is not mounted, a folder of links into one)."""
    return _skipped_for(rec, _NO_TRACK_REASONS)


def skipped_record(path: Path | str, reason: str, output=None) -> dict:
    return record(path, "skipped", reason, output)


def failed_record(path: Path | str, error: str, output=None) -> dict:
    return record(path, "failed", error, output)


def album_not_mastered(track: Path | str, what: str) -> str:
    """The error of an album's other tracks when ``track`` cannot be mastered: with
    ``--album`` an album is mastered whole or not at all."""
    return (
        f"not mastered: {track}, a track of its album, {what}; with --album an album is "
        "mastered whole or not at all (what an earlier run wrote of it stays as it was)"
    )


#: The bytes of a file name that are not UTF-8, which reach Python as lone surrogates
#: (surrogate escapes), written as ``\\xe9``.
_NAME_BYTES = {c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)}


def _escapes() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    table.update(_NAME_BYTES)
    return table


_ESCAPES = _escapes()


def printable(text: str) -> str:
    """``text`` as one plain line for a terminal or a log: control characters (a
    newline, an escape sequence in a file name) and the bytes of a name that are not
    UTF-8 are written as escapes (``\\n``, ``\\x1b``, ``\\xe9``), so that a file name can
    neither forge a line nor recolour the terminal, and printing it cannot fail."""
    return text.translate(_ESCAPES)


def is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogates: UTF-8 can encode it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_finite_number(v: object) -> bool:
    """A finite float, or an int that a float holds exactly (not a bool): a number
    read back from disk that can be formatted, summed and written as JSON."""
    if isinstance(v, float):
        return math.isfinite(v)
    return type(v) is int and abs(v) < 2**53


def _unicode(text: str) -> str:
    """``text`` with the bytes of a name that are not UTF-8 (lone surrogates) written
    as ``\\xe9``: JSON that strict parsers accept (Python's own writes them as
    ``\\udce9``, which is not Unicode)."""
    return text if is_unicode(text) else text.translate(_SURROGATES)


_SURROGATES = _NAME_BYTES | {
    c: f"\\u{c:04x}" for c in (*range(0xD800, 0xDC80), *range(0xDD00, 0xE000))
}


def plain_json(value: object, **dumps) -> str:
    """``json.dumps(value, allow_nan=False, **dumps)`` for reports and ``--json``: every
    string is valid Unicode (see :func:`_unicode`), so any strict parser reads it."""
    import json

    def clean(v: object) -> object:
        if isinstance(v, str):
            return _unicode(v)
        if isinstance(v, dict):
            return {_unicode(k) if isinstance(k, str) else k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), allow_nan=False, **dumps)


def failure_line(path: str, error: str | None) -> str:
    """``path: error``, without the path twice when the error already starts with it
    (most errors name their file): what the CLI and the progress print of a failure,
    as one :func:`printable` line."""
    error = error or "failed"
    return printable(error if error.startswith(f"{path}: ") else f"{path}: {error}")


def error_text(exc: BaseException) -> str:
    """What the report says about an exception: our own messages as they are, OS
    errors in plain words, anything else as an internal error with where it happened."""
    if isinstance(exc, AuralisError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory while processing this track"
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{os_reason(exc)}"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"internal error {type(exc).__name__}: {exc}{where}"


def os_reason(exc: OSError) -> str:
    """``no space left on device``: the OS's words for ``exc.errno``, lower case."""
    if exc.errno is None:
        return str(exc)
    text = exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))
    return text[:1].lower() + text[1:]


#: What a track's error says when its disk is full (``os.strerror``, in lower case).
_DISK_FULL = ("no space left on device", "disk quota exceeded")


def disk_full_reason(rec: dict) -> str | None:
    """``"no space left on device"`` or ``"disk quota exceeded"`` for a failed track
    whose error is a full disk or quota, else None."""
    err = (rec.get("error") or "").lower()
    if rec.get("status") != "failed":
        return None
    return next((why for why in _DISK_FULL if why in err), None)


def add_warning(rec: dict, text: str | None) -> None:
    """Append ``text`` to ``rec["warning"]`` (``; `` between), once."""
    if text and text not in (rec.get("warning") or ""):
        rec["warning"] = "; ".join(filter(None, (rec.get("warning"), text)))


def _seconds(rec: dict, key: str) -> float:
    """A record's ``key`` if it is a finite number, else 0 (a record read back from a
    report, or recovered from a commit note, may lack it)."""
    v = rec.get(key)
    return float(v) if is_finite_number(v) else 0.0


_NOTED_DICTS = ("before", "after", "render", "parameters")
_NOTED_NUMBERS = ("duration_s", "sample_rate", "channels", "tempo_bpm", "tempo_confidence")
_NOTED_DEPTH = 4  # render and parameters: tables of tables, never deeper
_NOTED_TEXT = 2000  # characters of any one string


def noted_measurements(measured: object) -> dict:
    """The measurements a commit note carried, as far as they are well-formed: bytes
    read back from disk. A number must be a finite one (:func:`is_finite_number`: the
    terminal formats them, the JSON report refuses NaN); the nested parts must be
    plain JSON of bounded depth with valid Unicode strings (the reports write them;
    the HTML page checks them again field by field); whatever is not is left out."""
    if not isinstance(measured, dict):
        return {}
    out: dict = {k: v for k in _NOTED_NUMBERS if is_finite_number(v := measured.get(k))}
    for k in _NOTED_DICTS:
        part = measured.get(k)
        if isinstance(part, dict) and _is_plain(part, _NOTED_DEPTH):
            out[k] = part
    for k in ("before", "after"):  # the terminal's summary formats these as numbers
        if k in out:
            out[k] = {n: v for n, v in out[k].items() if v is None or is_finite_number(v)}
    return out


def _is_plain(v: object, depth: int) -> bool:
    """JSON that every report can write: finite numbers, valid Unicode, ``depth``
    levels of tables and lists at most."""
    if v is None or isinstance(v, bool) or is_finite_number(v):
        return True
    if isinstance(v, str):
        return len(v) <= _NOTED_TEXT and is_unicode(v)
    if depth <= 0:
        return False
    if isinstance(v, list):
        return all(_is_plain(x, depth - 1) for x in v)
    if isinstance(v, dict):
        return all(
            isinstance(k, str) and is_unicode(k) and _is_plain(x, depth - 1) for k, x in v.items()
        )
    return False


def display_names(paths: list[str]) -> tuple[str, list[str]]:
    """The folder all ``paths`` share, and each path below it (``a/sad.ogg`` and
    ``b/sad.ogg`` stay apart; one path alone is its file name): how the terminal's
    summary and the HTML report name tracks."""
    try:
        common = os.path.commonpath([os.path.dirname(p) or "." for p in paths])
    except ValueError:  # none, or absolute and relative paths mixed
        return "", list(paths)
    if not common or common == ".":
        return "", list(paths)
    cut = len(common.rstrip(os.sep)) + 1
    return common, [p[cut:] if p.startswith(common) and len(p) > cut else p for p in paths]


def summarize(records: Sequence[dict]) -> dict:
    """Counts per status, total processing seconds and the seconds of audio mastered."""
    counts = {status: sum(r.get("status") == status for r in records) for status in STATUSES}
    ok = [r for r in records if r.get("status") == "ok"]
    return {
        "tracks": len(records),
        "ok": counts["ok"],
        "failed": counts["failed"],
        "skipped": counts["skipped"],
        "not_started": counts["not started"],
        "interrupted": counts["interrupted"],
        "planned": counts["planned"],
        "seconds": round(sum(_seconds(r, "seconds") for r in records), 3),
        "audio_seconds": round(sum(_seconds(r, "duration_s") for r in ok), 3),
    }
