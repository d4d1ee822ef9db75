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
from .limits import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
    SILENCE_LUFS,
    is_finite_number,
)
from .records import LOUDNESS_KEYS, TOP_LEVEL_LOUDNESS_KEYS, UNDECODABLE_AUDIO
from .versions import (
    ANALYSIS_SAMPLE_RATE,
    BAND_EDGES_HZ,
    CHANNEL_WEIGHTS_REVISION,
    CURVE_KEY,
    DEFAULT_TEMPO_BPM,
    FINGERPRINT_VERSION,
    SPARSE_SPECTRUM_KEY,
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
    """A cached record is used only if it has the shape this version writes and every
    value in it is one an analysis can give (a row of the right envelope but foreign
    or tampered content is a miss, and deleted, not a crash or a wrong master: a
    review's NaN loudness was mastered as silence, a -300 LUFS one failed its track;
    so is a record written before the long-term spectrum was, and one of 7 or more
    channels measured with other channel weights)."""
    fp = value.get("fingerprint")
    loud = value.get("loudness")
    rate, channels = value.get("sample_rate"), value.get("channels")
    return (
        type(rate) is int
        and MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ
        and type(channels) is int
        and 1 <= channels <= MAX_CHANNELS
        and (channels < 7 or value.get(WEIGHTS_KEY) == CHANNEL_WEIGHTS_REVISION)
        and _number(value.get("duration_s"), 0.0, _MAX_SECONDS)
        and _number(value.get("tempo_bpm"), 0.0, _MAX_BPM)
        and _number(value.get("tempo_confidence"), 0.0, 1.0)
        and isinstance(loud, dict)
        and all(_loudness(k, loud.get(k, False)) for k in LOUDNESS_KEYS)
        and all(value.get(k, False) == loud[k] for k in TOP_LEVEL_LOUDNESS_KEYS)
        and _gated(loud["integrated_lufs"], loud["max_momentary_lufs"])
        and _levels(value.get(SPECTRUM_KEY), len(THIRD_OCTAVE_HZ))
        and (SPARSE_SPECTRUM_KEY not in value or _levels(value[SPARSE_SPECTRUM_KEY], None))
        and _curve(value.get(CURVE_KEY))
        and _candidates(value.get("tempo_candidates", []))
        and _fingerprint(fp)
    )


#: Bounds of a record's numbers, wide enough for any analysis of any file this
#: version reads (samples up to limits.MAX_SAMPLE_MAGNITUDE, +60 dBFS, on up to 64
#: channels), narrow enough that a value outside is not one.
_MAX_DB = 100.0
_MIN_DB = -1000.0
_MAX_SECONDS = 1e7
_MAX_BPM = 1000.0
_MAX_FEATURE = 1e7  # Hz, dB, ratios, counts per second


def _number(v: Any, lo: float, hi: float) -> bool:
    return is_finite_number(v) and lo <= v <= hi


def _loudness(key: str, v: Any) -> bool:
    """One of the meter's values: a level, or None where there is none (silence)."""
    if v is None:
        return True
    if key == "lra_lu":
        return _number(v, 0.0, 200.0)
    if key == "integrated_lufs":  # the mean of blocks above the absolute gate
        return _number(v, SILENCE_LUFS - 1.0, _MAX_DB)
    return _number(v, _MIN_DB, _MAX_DB)


def _gated(integrated: float | None, max_momentary: float | None) -> bool:
    """BS.1770's gating in two values: no integrated loudness means no momentary block
    above the absolute gate (or none at all: under 0.4 s), and a gated mean of
    momentary blocks is never above their maximum (both rounded to 0.01). A record of
    a loud track whose loudness was nulled ("silent source") fails it."""
    if integrated is None:
        return max_momentary is None or max_momentary <= SILENCE_LUFS + 0.01
    return max_momentary is not None and max_momentary >= integrated - 0.011


def _levels(v: Any, n: int | None) -> bool:
    return (
        isinstance(v, list)
        and (n is None or len(v) == n)
        and all(x is None or _number(x, _MIN_DB, _MAX_DB) for x in v)
    )


def _curve(v: Any) -> bool:
    return (
        isinstance(v, dict) and _number(v.get("step_s"), 1e-3, 1e3) and _levels(v.get("lufs"), None)
    )


def _candidates(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(c, dict)
        and _number(c.get("bpm"), 0.0, _MAX_BPM)
        and _number(c.get("score"), -_MAX_FEATURE, _MAX_FEATURE)
        for c in v
    )


def _fingerprint(fp: Any) -> bool:
    """The fingerprint's fields as :meth:`Fingerprint.to_dict` writes them: the band
    shares by name, each in [0, 1]; every other field a bounded number, or None
    where the analysis had none."""
    if not isinstance(fp, dict):
        return False
    bands = fp.get("band_energy")
    if not (isinstance(bands, dict) and list(bands) == list(BAND_EDGES_HZ)):
        return False
    if not all(_number(e, 0.0, 1.0) for e in bands.values()):
        return False
    if type(fp.get("version")) is not int or not _candidates(fp.get("tempo_candidates", [])):
        return False
    return all(
        v is None or _number(v, -_MAX_FEATURE, _MAX_FEATURE)
        for k, v in fp.items()
        if k not in ("band_energy", "version", "tempo_candidates")
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
        key = _key(content, with_tempo)
        value, source = cache.get_with_source(key)
        if value is None:
            continue
        if not well_formed(value):
            discard = getattr(cache, "discard", None)  # a cache of the caller's may lack it
            if discard is not None:
                discard(key)
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
