"""Tags and cover art, copied from source to output with mutagen.

Text tags go through mutagen's "easy" interface, which maps the common fields
(title, artist, album, date, track number, genre, ...) between ID3, Vorbis comments
and MP4 atoms. Cover art is copied as FLAC pictures (FLAC/Ogg outputs) or an ID3
APIC frame (WAV). Loudness tags follow ReplayGain 2.0 (reference -18 LUFS) and, for
Opus, RFC 7845 R128 gains (reference -23 LUFS). Tag problems never fail a track: the
functions return a note instead.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

REPLAYGAIN_REFERENCE_LUFS = -18.0


def _pictures(src) -> list:
    """Cover art of any mutagen file as ``mutagen.flac.Picture`` objects."""
    from mutagen.flac import Picture

    pics: list[Picture] = []
    tags = getattr(src, "tags", None)
    if hasattr(src, "pictures"):  # FLAC
        pics.extend(src.pictures)
    if tags is None:
        return pics
    if hasattr(tags, "getall"):  # ID3 (MP3, WAV, AIFF)
        for frame in tags.getall("APIC"):
            p = Picture()
            p.data, p.mime, p.type, p.desc = frame.data, frame.mime, int(frame.type), frame.desc
            pics.append(p)
    elif hasattr(tags, "get"):
        for b64 in tags.get("metadata_block_picture", []) or []:  # Ogg Vorbis / Opus
            try:
                pics.append(Picture(base64.b64decode(b64)))
            except Exception:
                continue
        for cover in tags.get("covr", []) or []:  # MP4
            p = Picture()
            p.data, p.type = bytes(cover), 3
            p.mime = "image/png" if bytes(cover[:4]) == b"\x89PNG" else "image/jpeg"
            pics.append(p)
    return pics


def copy_tags(src_path: str | os.PathLike, dst_path: str | os.PathLike) -> str | None:
    """Copy text tags and cover art; returns a note if something could not be copied."""
    try:
        import mutagen

        src_easy = mutagen.File(src_path, easy=True)
        src_full = mutagen.File(src_path)
        if Path(dst_path).suffix.lower() == ".wav":
            if src_easy is not None and src_easy.tags is not None:
                _copy_to_wav_id3(dict(src_easy.tags.items()), dst_path)
            pics = _pictures(src_full) if src_full is not None else []
            if pics:
                _add_pictures(dst_path, pics)
            return None
        dst = mutagen.File(dst_path, easy=True)
        if dst is None:
            return f"tags not copied: {Path(dst_path).suffix} output has no tag support"
        if src_easy is None or src_easy.tags is None:
            return None
        if dst.tags is None:
            dst.add_tags()
        for key, values in src_easy.tags.items():
            try:
                dst[key] = list(values)
            except (KeyError, ValueError, TypeError):
                continue  # a field the output's tag format cannot hold
        dst.save()
        pics = _pictures(src_full) if src_full is not None else []
        if pics:
            _add_pictures(dst_path, pics)
    except Exception as exc:  # a broken tag never fails a mastered track
        return f"tags not copied: {type(exc).__name__}: {exc}"
    return None


_ID3_FRAMES = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "albumartist": "TPE2",
    "date": "TDRC",
    "tracknumber": "TRCK",
    "discnumber": "TPOS",
    "genre": "TCON",
    "composer": "TCOM",
    "copyright": "TCOP",
    "isrc": "TSRC",
}


def _copy_to_wav_id3(tags: dict, dst_path: str | os.PathLike) -> None:
    """WAV has no "easy" mapping in mutagen: write the common fields as ID3 frames."""
    import mutagen
    from mutagen import id3

    f = mutagen.File(dst_path)
    if f.tags is None:
        f.add_tags()
    for key, values in tags.items():
        frame = _ID3_FRAMES.get(key.lower())
        text = [str(v) for v in values]
        if frame is not None:
            f.tags.add(getattr(id3, frame)(encoding=3, text=text))
        else:
            f.tags.add(id3.TXXX(encoding=3, desc=key.upper(), text=text))
    f.save()


def _add_pictures(dst_path: str | os.PathLike, pics: list) -> None:
    import mutagen
    from mutagen.flac import FLAC

    suffix = Path(dst_path).suffix.lower()
    if suffix == ".flac":
        f = FLAC(dst_path)
        f.clear_pictures()
        for p in pics:
            f.add_picture(p)
        f.save()
    elif suffix == ".wav":
        from mutagen.id3 import APIC

        f = mutagen.File(dst_path)
        if f.tags is None:
            f.add_tags()
        for p in pics:
            f.tags.add(APIC(encoding=3, mime=p.mime, type=p.type, desc=p.desc, data=p.data))
        f.save()


def loudness_tag_values(
    integrated_lufs: float,
    true_peak_dbtp: float,
    *,
    album_lufs: float | None = None,
    album_peak_dbtp: float | None = None,
) -> dict[str, str]:
    """ReplayGain 2.0 tag values (gain to -18 LUFS, peak as a linear amplitude)."""
    values = {
        "REPLAYGAIN_TRACK_GAIN": f"{REPLAYGAIN_REFERENCE_LUFS - integrated_lufs:+.2f} dB",
        "REPLAYGAIN_TRACK_PEAK": f"{10 ** (true_peak_dbtp / 20):.6f}",
        "REPLAYGAIN_REFERENCE_LOUDNESS": f"{REPLAYGAIN_REFERENCE_LUFS:.1f} LUFS",
    }
    if album_lufs is not None:
        values["REPLAYGAIN_ALBUM_GAIN"] = f"{REPLAYGAIN_REFERENCE_LUFS - album_lufs:+.2f} dB"
    if album_peak_dbtp is not None:
        values["REPLAYGAIN_ALBUM_PEAK"] = f"{10 ** (album_peak_dbtp / 20):.6f}"
    return values


def write_loudness_tags(dst_path: str | os.PathLike, values: dict[str, str]) -> str | None:
    """Write ReplayGain tags: Vorbis comments for FLAC/Ogg, ID3 TXXX frames for WAV."""
    try:
        import mutagen

        f = mutagen.File(dst_path)
        if f is None:
            return "loudness tags not written: unsupported output"
        if f.tags is None:
            f.add_tags()
        if hasattr(f.tags, "getall"):  # ID3
            from mutagen.id3 import TXXX

            for key, value in values.items():
                f.tags.add(TXXX(encoding=3, desc=key, text=[value]))
        else:
            for key, value in values.items():
                f.tags[key] = [value]
        f.save()
    except Exception as exc:
        return f"loudness tags not written: {type(exc).__name__}: {exc}"
    return None
