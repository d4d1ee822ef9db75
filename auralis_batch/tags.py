"""Tags and cover art of an output, written into its temporary file before the rename.

:func:`write_output_tags` copies the source's text tags and cover art and writes the
result's loudness tags in one mutagen load and save of the temporary file, so a crash
while tagging can only break a file that is not yet under its final name, and the caller
fsyncs audio and tags together. Text tags are mapped between ID3 frames and Vorbis
comments with mutagen's own EasyID3 table (title, artist, album, date, track number,
genre, MusicBrainz ids, ...); fields it does not know travel as ID3 ``TXXX`` frames.
Cover art becomes FLAC pictures (FLAC) or ID3 ``APIC`` frames (WAV).

Loudness tags follow ReplayGain 2.0 (reference -18 LUFS). The source's own loudness
tags describe the source, not the re-levelled master, so they are never copied.

A source whose tags cannot be read costs only its tags (a note; the master is fine);
a failure to write the output's tags fails the track (:class:`OutputError`).
"""

from __future__ import annotations

import base64
import functools
import math
import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OutputError, ParameterError

if TYPE_CHECKING:
    from mutagen.flac import Picture
    from mutagen.id3 import ID3

__all__ = [
    "REPLAYGAIN_REFERENCE_LUFS",
    "TAG_OUTPUT_FORMATS",
    "is_loudness_tag",
    "loudness_tag_values",
    "write_output_tags",
]

REPLAYGAIN_REFERENCE_LUFS = -18.0

#: Output formats :func:`write_output_tags` can tag, and how each stores its tags.
TAG_OUTPUT_FORMATS = {"flac": "Vorbis comments + FLAC pictures", "wav": "ID3 chunk"}

#: Tag names (lower case) that describe the source's level: ReplayGain 1/2 (track and
#: album gain and peak, reference loudness), Opus R128 gains, mp3gain's undo records,
#: vorbisgain's pre-2.0 names, and iTunes' Sound Check (iTunNORM) and gapless
#: (iTunSMPB: the source encoder's delay and padding, wrong for a new encode).
_LOUDNESS_TAG_PREFIXES = ("replaygain_", "r128_", "mp3gain_")
_LOUDNESS_TAG_NAMES = frozenset({"rg_radio", "rg_audiophile", "rg_peak", "itunnorm", "itunsmpb"})

#: Fields that describe how the source file was encoded (Vorbis ENCODER, ID3 TSSE as
#: EasyID3's "encodersettings"): wrong for the master, which is a new encode.
_ENCODING_FIELDS = frozenset({"encoder", "encodersettings", "encoder_options", "encoding"})

#: ID3 frames that are binary volume adjustments (RVA2; RVAD and XRVA of ID3v2.3).
_LOUDNESS_ID3_FRAMES = frozenset({"RVA2", "RVAD", "XRVA"})

#: Vorbis comment fields that carry pictures, not text.
_PICTURE_FIELDS = frozenset({"metadata_block_picture", "coverart", "coverartmime"})

#: A FLAC metadata block stores its length in 24 bits.
_FLAC_BLOCK_MAX_BYTES = 2**24 - 1


def is_loudness_tag(name: str) -> bool:
    """True if the tag ``name`` (any case) states a loudness or gain of the audio."""
    name = name.strip().lower()
    return name.startswith(_LOUDNESS_TAG_PREFIXES) or name in _LOUDNESS_TAG_NAMES


def write_output_tags(
    tmp_path: str | os.PathLike,
    *,
    fmt: str,
    source: str | os.PathLike | None,
    loudness: dict[str, str] | None,
) -> list[str]:
    """Write tags and cover art into a finished (closed) temporary output file.

    The source's text tags and cover art are copied except its loudness tags (see
    :func:`is_loudness_tag`; ID3 ``RVA2`` volume frames and iTunes normalisation
    comments included), which describe the source's level and not the master's;
    ``loudness`` is written instead. The file is loaded and saved once with the
    format's own mutagen class, never guessed from the name (a temporary ends in
    ``.partial``), and only if something changes. The audio stream is not touched
    (FLAC frames may move to make room for the tags; they are not re-encoded).

    Parameters
    ----------
    tmp_path : str or os.PathLike
        The temporary output, already closed by the audio writer (libsndfile writes
        the FLAC STREAMINFO on close). This function does not fsync it: the caller
        fsyncs after tagging, then renames.
    fmt : {"flac", "wav"}
        Format of ``tmp_path``. FLAC gets Vorbis comments and FLAC pictures; WAV gets
        an ID3 chunk (common fields as their ID3 frames, others as ``TXXX``, cover
        art as ``APIC``).
    source : str or os.PathLike or None
        File to copy text tags and cover art from (read with mutagen, any format it
        knows: ID3 in MP3/WAV/AIFF, Vorbis comments in FLAC/Ogg). None copies
        nothing.
    loudness : dict of str to str or None
        Tag name to value, as returned by :func:`loudness_tag_values`; None writes
        no loudness tags (any the file already holds are still removed).

    Returns
    -------
    notes : list of str
        One line for the report per thing not copied: a source whose tags are
        unreadable or of a format mutagen does not know, a field or picture the
        output format cannot hold. Empty when everything was copied.

    Raises
    ------
    ParameterError
        ``fmt`` is not ``"flac"`` or ``"wav"``.
    OutputError
        The output could not be opened, read or rewritten. For an ``OSError`` the
        message ends in its ``strerror`` in lower case (``"<tmp_path>: writing tags
        failed: no space left on device"``) and ``__cause__`` is that ``OSError``,
        so ``exc.__cause__.errno`` tells a full disk (``errno.ENOSPC``) apart. After
        this error the temporary file may be damaged: remove it.
    """
    if fmt not in TAG_OUTPUT_FORMATS:
        raise ParameterError(
            f"fmt must be one of {', '.join(sorted(TAG_OUTPUT_FORMATS))}, got {fmt!r}"
        )
    notes: list[str] = []
    fields: dict[str, list[str]] = {}
    pictures: list[Picture] = []
    if source is not None:
        fields, pictures, from_id3 = _read_source(source, notes)
        if from_id3 and fmt == "flac":  # ID3's "3/10" is two fields in Vorbis comments
            fields = _vorbis_numbers(fields)
    if source is None and loudness is None:
        return notes
    try:
        with open(tmp_path, "rb+") as fh:
            if fmt == "wav" and fh.read(4) == b"RF64":  # audio.wav_container's choice
                notes.append(
                    "no tags or cover art: a WAV master over 4 GiB is written as RF64, "
                    "which the tag writer cannot edit (the source's tags are not carried over)"
                )
                return notes
            fh.seek(0)
            tag = _tag_flac if fmt == "flac" else _tag_wav
            tag(fh, fields, pictures, loudness, notes, replace=source is not None)
    except Exception as exc:  # mutagen wraps OSError in its own types; see _os_error
        os_error = _os_error(exc)
        if os_error is not None and os_error.errno is not None:
            reason = os.strerror(os_error.errno).lower()
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise OutputError(f"{tmp_path}: writing tags failed: {reason}") from (os_error or exc)
    return notes


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: mutagen re-raises it as ``MutagenError(oserror)``."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError):
            return e
        todo.extend([e.__cause__, e.__context__, *e.args])
    return None


# ---------------------------------------------------------------- reading the source


def _read_source(source: str | os.PathLike, notes: list[str]) -> tuple[dict, list, bool]:
    """Text fields (lower-case name -> values, loudness tags removed), pictures, and
    whether they came from ID3 (whose conventions differ: ``TRCK 3/10``)."""
    import mutagen
    from mutagen.id3 import ID3

    try:
        src = mutagen.File(source)
        if src is None:
            kind = Path(source).suffix or Path(source).name
            notes.append(f"tags not copied: mutagen reads no tags from {kind} files")
            return {}, [], False
        tags = src.tags
        if isinstance(tags, ID3):
            fields = _fields_from_id3(tags)
        elif tags is not None:
            fields = _fields_from_mapping(tags)
        else:
            fields = {}
        pictures = _source_pictures(src, notes)
    except Exception as exc:  # a corrupt tag in a source costs its tags, not the master
        notes.append(
            f"tags not copied: the source's tags are unreadable ({type(exc).__name__}: {exc})"
        )
        return {}, [], False
    if _has_text_chunks(src):  # after ID3, which wins where both name a field
        for name, value in _sndfile_strings(source).items():
            fields.setdefault(name, [value])
    kept = {k: v for k, v in fields.items() if not is_loudness_tag(k)}
    fields = {k: v for k, v in kept.items() if k not in _ENCODING_FIELDS}
    return fields, pictures, isinstance(tags, ID3)


#: libsndfile's string fields (``SoundFile.copy_metadata``) as Vorbis field names: what
#: a WAV's RIFF INFO chunk (INAM, IART, IPRD, ICMT, ICRD, IGNR, ITRK, ICOP) or an AIFF's
#: NAME/AUTH/ANNO/(c) chunks hold. ``software`` (ISFT) names the source's encoder: not
#: the master's, like ENCODER.
_SNDFILE_FIELDS = {
    "title": "title",
    "artist": "artist",
    "album": "album",
    "comment": "comment",
    "date": "date",
    "genre": "genre",
    "tracknumber": "tracknumber",
    "copyright": "copyright",
    "license": "license",
}


def _has_text_chunks(src) -> bool:
    """WAV and AIFF keep text in chunks mutagen does not read (it reads their ID3
    chunk): RIFF INFO is what libsndfile, Audacity and many DAWs write by default, and
    its title and artist were lost (fourth sweep)."""
    from mutagen.aiff import AIFF
    from mutagen.wave import WAVE

    return isinstance(src, (WAVE, AIFF))


def _sndfile_strings(source: str | os.PathLike) -> dict[str, str]:
    """The text libsndfile reads from ``source``'s INFO or AIFF text chunks (empty if
    it cannot open the file: the track's own decoding says why)."""
    import soundfile as sf

    from .audio import sf_path

    try:
        with sf.SoundFile(sf_path(source)) as f:
            found = _raw_strings(sf, f)
    except Exception:
        return {}
    return {_SNDFILE_FIELDS[k]: v for k, v in found.items() if k in _SNDFILE_FIELDS and v.strip()}


def _raw_strings(sf, f) -> dict[str, str]:
    """``f.copy_metadata()``, decoded as UTF-8 or else as Windows-1252 (what Windows
    tools write in RIFF INFO): soundfile decodes UTF-8 with replacement characters, and
    a Latin-1 "Café" reached the master as "Caf\ufffd" (a review). soundfile's own
    decoding where its internals are not there."""
    try:
        get, ffi, ids = sf._snd.sf_get_string, sf._ffi, sf._str_types
    except AttributeError:
        return f.copy_metadata()
    found: dict[str, str] = {}
    for name, strid in ids.items():
        data = get(f._file, strid)
        if data:
            raw = ffi.string(data)
            try:
                found[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                found[name] = raw.decode("cp1252", "replace")
    return found


def _tag_names(tags) -> list[str]:
    """The names of a tag mapping in a fixed order: Vorbis comments in the source's own
    order (mutagen's ``VComment.keys()`` is a set, whose order changes from process to
    process, and the master's bytes with it); any other mapping sorted."""
    from mutagen._vorbis import VComment

    if isinstance(tags, VComment):
        return list(dict.fromkeys(k.lower() for k, _ in tags))
    return sorted(tags.keys())


def _fields_from_mapping(tags) -> dict[str, list[str]]:
    """Vorbis comments (FLAC, Ogg) and other name -> list-of-text tag mappings."""
    fields: dict[str, list[str]] = {}
    for key in _tag_names(tags):
        values = tags[key]
        name = key.lower()
        if name in _PICTURE_FIELDS or not isinstance(values, list):
            continue
        if all(isinstance(v, str) for v in values):
            fields.setdefault(name, []).extend(values)
    return fields


def _fields_from_id3(id3: ID3) -> dict[str, list[str]]:
    """ID3 frames as Vorbis-style fields through mutagen's EasyID3 table; TXXX frames it
    does not know by their description, the plain comment and the lyrics as well."""
    from mutagen.easyid3 import EasyID3

    fields: dict[str, list[str]] = {}
    for key, getter in EasyID3.Get.items():
        names = EasyID3.List[key](id3, key) if key in EasyID3.List else [key]
        for name in names:
            if "*" in name or is_loudness_tag(name):  # replaygain_*: RVA2 frames
                continue
            try:
                fields[name] = [str(v) for v in getter(id3, name)]
            except KeyError:
                continue
    known_txxx = _easy_id3_frame_keys()
    for frame in id3.values():
        if frame.FrameID == "TXXX" and frame.HashKey not in known_txxx and frame.desc:
            fields.setdefault(frame.desc.lower(), []).extend(str(t) for t in frame.text)
        elif frame.FrameID == "COMM" and not frame.desc:  # described COMMs are iTunes data
            fields.setdefault("comment", []).extend(str(t) for t in frame.text)
        elif frame.FrameID == "USLT":
            fields.setdefault("lyrics", []).append(frame.text)
    return fields


@functools.cache
def _easy_id3_frame_keys() -> frozenset[str]:
    """ID3 frame keys EasyID3's fields use ("TIT2", "TXXX:MusicBrainz Album Id"),
    found by letting each of its setters write into an empty tag."""
    from mutagen.easyid3 import EasyID3
    from mutagen.id3 import ID3

    keys: set[str] = set()
    for name, setter in EasyID3.Set.items():
        if "*" in name:
            continue
        probe = ID3()
        try:
            setter(probe, name, ["2000"])
        except Exception:  # a setter that refuses the probe value maps nothing we copy
            continue
        keys.update(probe.keys())
    return frozenset(keys)


def _source_pictures(src, notes: list[str]) -> list[Picture]:
    """Cover art of a mutagen file (FLAC blocks, ID3 APIC, Ogg Vorbis comments)."""
    from mutagen.flac import Picture

    pics: list[Picture] = list(getattr(src, "pictures", None) or [])
    tags = src.tags
    if tags is not None and hasattr(tags, "getall"):  # ID3 (MP3, WAV, AIFF)
        for frame in tags.getall("APIC"):
            p = Picture()
            p.data, p.mime, p.type, p.desc = frame.data, frame.mime, int(frame.type), frame.desc
            pics.append(p)
    elif tags is not None:  # Vorbis comments (Ogg Vorbis, Opus)
        for b64 in tags.get("metadata_block_picture", []) or []:
            try:
                pics.append(Picture(base64.b64decode(b64)))
            except Exception:
                notes.append("a cover picture of the source is unreadable and was not copied")
        for b64, mime in zip(
            tags.get("coverart", []) or [], tags.get("coverartmime", []) or [], strict=False
        ):  # the pre-2009 way of storing cover art in Vorbis comments
            p = Picture()
            try:
                p.data = base64.b64decode(b64)
            except ValueError:
                notes.append("a cover picture of the source is unreadable and was not copied")
                continue
            p.mime, p.type = mime, 3
            pics.append(p)
    unique: dict[tuple, Picture] = {}
    for p in pics:
        unique.setdefault((p.type, p.desc, bytes(p.data)), p)
    return list(unique.values())


# ---------------------------------------------------------------- writing the output


_NUMBER_TOTALS = {"tracknumber": "tracktotal", "discnumber": "disctotal"}


def _vorbis_numbers(fields: dict[str, list[str]]) -> dict[str, list[str]]:
    """``fields`` read from ID3, with ``TRACKNUMBER=3/10`` (``TRCK``) and ``DISCNUMBER=1/2``
    split the Vorbis way, ``TRACKNUMBER=3`` and ``TRACKTOTAL=10``, unless a total is
    there. (A Vorbis source's own ``3/10`` is copied as it is: the user's choice.)"""
    out = dict(fields)
    for number, total in _NUMBER_TOTALS.items():
        values = out.get(number)
        if not values or total in out or len(values) != 1 or values[0].count("/") != 1:
            continue
        n, m = (part.strip() for part in values[0].split("/"))
        if n.isdigit() and m.isdigit():
            out[number], out[total] = [n], [m]
    return out


def _tag_flac(fh, fields, pictures, loudness, notes, *, replace: bool) -> None:
    """Vorbis comments and pictures into the FLAC open as ``fh``; saved if changed."""
    from mutagen.flac import FLAC

    audio = FLAC(fh)
    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    changed = False
    for key in [k for k in tags.keys() if is_loudness_tag(k)]:
        del tags[key]
        changed = True
    # The comment block's length is a 24-bit field: 16 MiB for all of them (mutagen
    # failed with AttributeError on a 17 MiB lyrics tag, failing the track: fourth
    # sweep). A field that would not fit is left out, like oversized cover art; 4 kB
    # stay free for the loudness tags and the vendor string.
    room = _FLAC_BLOCK_MAX_BYTES - 4096 - sum(_comment_bytes(k, v) for k, v in tags)
    for name, values in fields.items():
        if not _is_vorbis_name(name):
            notes.append(f"tag {name!r} not copied: FLAC comment names are printable ASCII")
            continue
        size = sum(_comment_bytes(name, v) for v in values)
        if size > room:
            notes.append(
                f"tag {name!r} ({size / 2**20:.1f} MiB) not copied: a FLAC comment block "
                "holds at most 16 MiB"
            )
            continue
        room -= size
        tags[name.upper()] = list(values)
        changed = True
    for name, value in (loudness or {}).items():
        tags[name.upper()] = [value]
        changed = True
    if replace and audio.pictures:
        audio.clear_pictures()
        changed = True
    for p in pictures:
        if len(p.write()) > _FLAC_BLOCK_MAX_BYTES:
            notes.append(
                f"cover art ({len(p.data) / 2**20:.1f} MiB) not copied: "
                "a FLAC picture holds at most 16 MiB"
            )
            continue
        audio.add_picture(p)
        changed = True
    if changed:
        fh.seek(0)  # mutagen reads the header from where the file object stands
        audio.save(fh)


def _comment_bytes(name: str, value: str) -> int:
    """Bytes one ``NAME=value`` comment takes in a Vorbis comment block."""
    return 4 + len(name.encode("ascii", "replace")) + 1 + len(value.encode("utf-8", "replace"))


def _is_vorbis_name(name: str) -> bool:
    """Vorbis comment field names are ASCII 0x20..0x7D without '='."""
    return bool(name) and all(" " <= c <= "}" and c != "=" for c in name)


def _tag_wav(fh, fields, pictures, loudness, notes, *, replace: bool) -> None:
    """An ID3 chunk into the WAV open as ``fh``; saved if changed."""
    from mutagen.id3 import APIC, COMM, TXXX, USLT
    from mutagen.wave import WAVE

    audio = WAVE(fh)
    if audio.tags is None:
        audio.add_tags()
    id3 = audio.tags
    changed = False
    for key, frame in list(id3.items()):
        if frame.FrameID in _LOUDNESS_ID3_FRAMES or (
            frame.FrameID in ("TXXX", "COMM") and is_loudness_tag(frame.desc)
        ):
            del id3[key]
            changed = True
    for name, values in fields.items():
        try:
            if name == "comment":
                id3.add(COMM(encoding=3, lang="eng", desc="", text=list(values)))
            elif name == "lyrics":
                id3.add(USLT(encoding=3, lang="eng", desc="", text="\n".join(values)))
            elif (setter := _easy_id3_setter(name)) is not None:
                setter(id3, name, list(values))
            else:
                id3.add(TXXX(encoding=3, desc=name.upper(), text=list(values)))
        except (ValueError, TypeError, KeyError) as exc:  # e.g. a non-numeric track number
            notes.append(f"tag {name!r} not copied: ID3 cannot hold {values!r} ({exc})")
            continue
        changed = True
    for name, value in (loudness or {}).items():
        id3.add(TXXX(encoding=3, desc=name, text=[value]))
        changed = True
    if replace and id3.getall("APIC"):
        id3.delall("APIC")
        changed = True
    taken: set[str] = set()
    for p in pictures:
        # ID3 keys a picture by its description: two with the same one (a front and a
        # back cover, both undescribed) would keep only the last; a space makes each unique
        desc = p.desc
        while desc in taken:
            desc += " "
        taken.add(desc)
        id3.add(APIC(encoding=3, mime=p.mime, type=p.type, desc=desc, data=p.data))
        changed = True
    if changed:
        fh.seek(0)  # mutagen reads the header from where the file object stands
        audio.save(fh)


def _easy_id3_setter(name: str):
    """mutagen's EasyID3 setter for the field ``name``, or None."""
    from mutagen.easyid3 import EasyID3

    if name in EasyID3.Set:
        return EasyID3.Set[name]
    for pattern, setter in EasyID3.Set.items():  # "performer:*"
        if "*" in pattern and fnmatchcase(name, pattern) and not is_loudness_tag(name):
            return setter
    return None


# ---------------------------------------------------------------- loudness values


def loudness_tag_values(
    integrated_lufs: float,
    true_peak_dbtp: float,
    *,
    album_lufs: float | None = None,
    album_peak_dbtp: float | None = None,
) -> dict[str, str]:
    """ReplayGain 2.0 tag values (gain to -18 LUFS, peak as a linear amplitude). A
    value that is not finite (a track too short or too quiet to measure) has no tag: an
    album's track of that kind still gets the album's."""
    values = {"REPLAYGAIN_REFERENCE_LOUDNESS": f"{REPLAYGAIN_REFERENCE_LUFS:.1f} LUFS"}
    if math.isfinite(integrated_lufs):
        values["REPLAYGAIN_TRACK_GAIN"] = f"{REPLAYGAIN_REFERENCE_LUFS - integrated_lufs:+.2f} dB"
    if math.isfinite(true_peak_dbtp):
        values["REPLAYGAIN_TRACK_PEAK"] = f"{10 ** (true_peak_dbtp / 20):.6f}"
    if album_lufs is not None:
        values["REPLAYGAIN_ALBUM_GAIN"] = f"{REPLAYGAIN_REFERENCE_LUFS - album_lufs:+.2f} dB"
    if album_peak_dbtp is not None:
        values["REPLAYGAIN_ALBUM_PEAK"] = f"{10 ** (album_peak_dbtp / 20):.6f}"
    return values
