"""An analysis answered from the fingerprint cache, loading nothing of the DSP stack.

:func:`recall` is the cache's fast path for one file: the file's identity (path, size,
mtime, inode, ctime) gives its content hash, the hash and the analysis options give the key,
and a row of the shape this version writes is the answer. :func:`analysis.analyze_file`
takes it first; ``analyze`` takes it for a whole folder before loading NumPy, the
decoder or Numba (:func:`recall_all`), so a fully cached folder costs the interpreter,
typer and SQLite.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from .cache import make_key
from .records import LOUDNESS_KEYS, UNDECODABLE_AUDIO
from .versions import (
    ANALYSIS_SAMPLE_RATE,
    CHANNEL_WEIGHTS_REVISION,
    CURVE_KEY,
    DEFAULT_TEMPO_BPM,
    FINGERPRINT_VERSION,
    SPECTRUM_KEY,
    THIRD_OCTAVE_HZ,
    WEIGHTS_KEY,
)

#: Extensions every build of libsndfile this package installs with decodes: the full
#: path's ``audio.readable_extensions()`` holds them all (a test checks), so a file
#: in a folder with one of them is listed by ``analyze`` either way.
AUDIO_EXTENSIONS = frozenset(
    "wav flac ogg oga opus mp3 aiff aif aifc caf w64 rf64 bwf wave".split()
)
#: Extensions that are never audio (cover art, playlists, rip logs, notes): files a
#: folder of music holds beside its tracks. ``analyze`` would list none of them (none
#: is an extension libsndfile reads: a test checks), so :func:`recall_all` may pass
#: over them without loading the decoder to ask.
NOT_AUDIO_EXTENSIONS = frozenset(
    "jpg jpeg png gif bmp webp tif tiff heic ico svg txt log cue m3u m3u8 pls xspf nfo "
    "pdf json xml ini md rtf html htm csv toml yaml yml sfv md5 sha1 sha256 ffp accurip "
    "url lrc db zip rar 7z par2 torrent".split()
) | frozenset(UNDECODABLE_AUDIO)  # music, but never listed either: skipped with a warning


def well_formed(value: dict) -> bool:
    """A cached record is used only if it has the shape this version writes (a row
    of the right envelope but foreign content is a miss, not a crash; so is a record
    written before the long-term spectrum was, and one of 7 or more channels measured
    with other channel weights)."""
    fp = value.get("fingerprint")
    loud = value.get("loudness")
    spectrum = value.get(SPECTRUM_KEY)
    return (
        isinstance(fp, dict)
        and isinstance(spectrum, list)
        and len(spectrum) == len(THIRD_OCTAVE_HZ)
        and isinstance(value.get(CURVE_KEY), dict)
        and isinstance(loud, dict)
        and all(k in loud for k in LOUDNESS_KEYS)
        and all(isinstance(value.get(k), (int, float)) for k in ("duration_s", "tempo_bpm"))
        and isinstance(value.get("sample_rate"), int)
        and isinstance(value.get("channels"), int)
        and (value["channels"] < 7 or value.get(WEIGHTS_KEY) == CHANNEL_WEIGHTS_REVISION)
    )


def _key(content: str, tempo: bool) -> str:
    return make_key(
        content,
        fingerprint_version=FINGERPRINT_VERSION,
        tempo=tempo,
        analysis_sample_rate=ANALYSIS_SAMPLE_RATE,
    )


def _answers(tempo: bool) -> tuple[bool, ...]:
    # A tempo-on record also answers a tempo-off request (report the default tempo).
    return (True,) if tempo else (False, True)


def cached_record(
    cache, content: str, tempo: bool, *, layout: tuple[int, int] | None = None
) -> dict[str, Any] | None:
    """The record stored for PCM with hash ``content``, or None. A tempo-on record
    also answers a tempo-off request (it then reports the default tempo).
    ``layout``: the file's ``(sample_rate, channels)``; a record of another layout is
    a miss (the hash is of the samples alone: the same samples at another rate, or one
    channel's samples read as two, hash alike: a review)."""
    for with_tempo in _answers(tempo):
        value, source = cache.get_with_source(_key(content, with_tempo))
        if value is None or not well_formed(value):
            continue
        if layout is None or (value.get("sample_rate"), value.get("channels")) == layout:
            rec = dict(value)
            rec.pop(WEIGHTS_KEY, None)  # the cache's own mark, not the analysis's
            if not tempo and with_tempo:
                rec["tempo_bpm"] = DEFAULT_TEMPO_BPM
                rec["tempo_confidence"] = 0.0
                rec["tempo_candidates"] = []
                fp = dict(rec["fingerprint"])
                fp["tempo_bpm"], fp["tempo_confidence"] = DEFAULT_TEMPO_BPM, 0.0
                fp["tempo_candidates"] = []
                rec["fingerprint"] = fp
            rec["cached"] = source
            return rec
    return None


def recall(cache, path: str | os.PathLike, *, tempo: bool) -> dict[str, Any] | None:
    """The analysis record of an unchanged file from ``cache``, or None (a changed or
    unknown file, a missing or malformed row)."""
    t0 = time.perf_counter()
    content = cache.lookup_path(path)
    if content is None:
        return None
    hit = cached_record(cache, content, tempo)
    if hit is not None:
        hit["path"] = str(path)
        hit["seconds"] = round(time.perf_counter() - t0, 4)
    return hit


def would_answer(cache, path: Path, tempo: bool) -> bool:
    """Whether :func:`recall` would answer ``path``, looked up without counting."""
    content = cache.peek_path(path)
    if content is None:
        return False
    for with_tempo in _answers(tempo):
        value = cache.peek(_key(content, with_tempo))
        if value is not None and well_formed(value):
            return True
    return False


def recall_all(
    cache, files: Sequence[Path], *, tempo: bool, named: Collection[Path] = ()
) -> list[dict[str, Any]] | None:
    """Records for every file of a discovery made with every extension accepted, when
    the cache answers for exactly the files ``analyze`` would list, or None (and the
    caller analyses properly).

    Files ``named`` on the command line are always listed; in folders, files with an
    :data:`AUDIO_EXTENSIONS` extension are listed and :data:`NOT_AUDIO_EXTENSIONS`
    ones are not; a file with any other extension needs the decoder to decide, so it
    makes the answer None. Everything is first looked up without counting, so a
    fallback does not count hits or misses twice in ``cache stats``."""
    audio = []
    for f in files:
        ext = f.suffix.lower().lstrip(".")
        if f in named or ext in AUDIO_EXTENSIONS:
            audio.append(f)
        elif ext not in NOT_AUDIO_EXTENSIONS:
            return None
    if not all(would_answer(cache, f, tempo) for f in audio):
        return None
    records = []
    for f in audio:
        rec = recall(cache, f, tempo=tempo)
        if rec is None:  # gone since the look (another process evicted it)
            return None
        records.append(rec)
    return records
