"""Tags written into the temporary output: copied, stale loudness dropped, audio untouched,
I/O failures raised as OutputError, unreadable sources reported as notes."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from auralis_batch import tags
from auralis_batch.errors import OutputError, ParameterError
from auralis_batch.tags import (
    is_loudness_tag,
    loudness_tag_values,
    write_output_tags,
)

SR = 44100
COVER = b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(3000)
TEXT = {
    "title": "Night Drive",
    "artist": "The Testers",
    "album": "Overnight",
    "date": "2001",
    "tracknumber": "3/12",
    "genre": "Synthpop",
    "musicbrainz_albumid": "9e6a4a3e-0b1f-4c41-9f52-2b1e5c6e0a11",
    "comment": "kept",
}
# Loudness of the *source*, with values found nowhere else, in several spellings.
STALE = {
    "REPLAYGAIN_TRACK_GAIN": "-7.77 dB",
    "replaygain_track_peak": "0.777111",
    "ReplayGain_Album_Gain": "-7.66 dB",
    "REPLAYGAIN_ALBUM_PEAK": "0.766222",
    "REPLAYGAIN_REFERENCE_LOUDNESS": "89.1 dB",
    "R128_TRACK_GAIN": "-7771",
    "r128_album_gain": "-7661",
}
ITUNNORM = " 00000777 00000778 00000779 0000077A 00024CA8 00024CA8"
NEW = loudness_tag_values(-9.5, -1.2, album_lufs=-10.0, album_peak_dbtp=-0.9)
# ID3 frame key of each TEXT field, for reading WAV outputs
ID3_KEY = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "date": "TDRC",
    "tracknumber": "TRCK",
    "genre": "TCON",
    "musicbrainz_albumid": "TXXX:MusicBrainz Album Id",
    "comment": "COMM::eng",
}


def _audio(seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.2 * rng.standard_normal((int(seconds * SR), 2)), -1, 1)


def _partial(tmp_path, fmt: str, seconds: float = 0.5, subtype: str = "PCM_24"):
    """A closed temporary output as OutputFile leaves it: a dot name ending .partial."""
    path = tmp_path / f".song.{fmt}.k3x9q.partial"
    sf.write(path, _audio(seconds), SR, format=fmt.upper(), subtype=subtype)
    return path


def _picture(data: bytes = COVER):
    from mutagen.flac import Picture

    p = Picture()
    p.data, p.mime, p.type, p.desc = data, "image/png", 3, "front"
    return p


def _add_id3(id3) -> None:
    from mutagen import id3 as f

    id3.add(f.TIT2(encoding=3, text=[TEXT["title"]]))
    id3.add(f.TPE1(encoding=3, text=[TEXT["artist"]]))
    id3.add(f.TALB(encoding=3, text=[TEXT["album"]]))
    id3.add(f.TDRC(encoding=3, text=[TEXT["date"]]))
    id3.add(f.TRCK(encoding=3, text=[TEXT["tracknumber"]]))
    id3.add(f.TCON(encoding=3, text=[TEXT["genre"]]))
    id3.add(f.TXXX(encoding=3, desc="MusicBrainz Album Id", text=[TEXT["musicbrainz_albumid"]]))
    id3.add(f.COMM(encoding=3, lang="eng", desc="", text=[TEXT["comment"]]))
    for name, value in STALE.items():
        id3.add(f.TXXX(encoding=1, desc=name, text=[value]))  # UTF-16, as foobar2000 does
    id3.add(f.RVA2(desc="track", channel=1, gain=-7.77, peak=0.777))
    id3.add(f.COMM(encoding=0, lang="eng", desc="iTunNORM", text=[ITUNNORM]))
    id3.add(f.APIC(encoding=3, mime="image/png", type=3, desc="front", data=COVER))


def _add_vorbis(comments) -> None:
    for name, value in TEXT.items():
        comments[name.upper()] = [value]
    for name, value in STALE.items():
        comments[name] = [value]
    comments["iTunNORM"] = [ITUNNORM]


def _source(tmp_path, kind: str):
    """A source carrying text tags, cover art and stale loudness tags."""
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    path = tmp_path / f"src.{kind}"
    sf.write(path, _audio(seed=2), SR)
    if kind == "flac":
        f = FLAC(path)
        _add_vorbis(f.tags)
        f.add_picture(_picture())
    elif kind == "ogg":
        f = OggVorbis(path)
        _add_vorbis(f.tags)
        f["metadata_block_picture"] = [base64.b64encode(_picture().write()).decode("ascii")]
    else:
        f = MP3(path) if kind == "mp3" else WAVE(path)
        f.add_tags()
        _add_id3(f.tags)
    f.save()
    return path


def _read(path, fmt: str) -> tuple[dict[str, list[str]], list[bytes], set[str]]:
    """(field -> values, picture data, frame ids) of an output; WAV fields by ID3 key,
    TXXX also by description in lower case."""
    from mutagen.flac import FLAC
    from mutagen.wave import WAVE

    if fmt == "flac":
        f = FLAC(path)
        return {k: f.tags[k] for k in f.tags.keys()}, [p.data for p in f.pictures], set()
    id3 = WAVE(path).tags
    fields: dict[str, list[str]] = {}
    for key, frame in id3.items():
        if hasattr(frame, "text"):
            text = [str(t) for t in frame.text] if isinstance(frame.text, list) else [frame.text]
            fields[key] = text
            if frame.FrameID == "TXXX":
                fields[frame.desc.lower()] = text
    pics = [frame.data for frame in id3.getall("APIC")]
    return fields, pics, {frame.FrameID for frame in id3.values()}


@pytest.mark.parametrize("with_loudness", [True, False], ids=["new-loudness", "no-loudness"])
@pytest.mark.parametrize("fmt", ["flac", "wav"])
@pytest.mark.parametrize("kind", ["flac", "ogg", "mp3", "wav"])
def test_tags_and_cover_are_copied_and_stale_loudness_is_not(tmp_path, kind, fmt, with_loudness):
    src = _source(tmp_path, kind)
    out = _partial(tmp_path, fmt)
    notes = write_output_tags(out, fmt=fmt, source=src, loudness=NEW if with_loudness else None)
    assert notes == []
    fields, pics, frame_ids = _read(out, fmt)
    expected = dict(TEXT)
    if kind in ("mp3", "wav") and fmt == "flac":  # ID3's TRCK 3/12: number and total
        number, total = TEXT["tracknumber"].split("/")
        expected["tracknumber"] = number
        assert fields["tracktotal"] == [total]
    for name, value in expected.items():
        assert fields[name if fmt == "flac" else ID3_KEY[name]] == [value], name
    assert pics == [COVER]
    dump = repr(fields)
    raw = out.read_bytes()
    for value in [*STALE.values(), ITUNNORM]:
        assert value not in dump
        assert value.encode() not in raw and value.encode("utf-16-le") not in raw
    assert not frame_ids & {"RVA2", "RVAD"} and b"RVA2" not in raw
    assert "itunnorm" not in dump.lower()
    loudness = {k.upper(): v for k, v in fields.items() if is_loudness_tag(k)}
    assert loudness == ({k: [v] for k, v in NEW.items()} if with_loudness else {})


def _decoded(path) -> np.ndarray:
    """Every sample exactly: integers for PCM, float64 (exact for float32) for float."""
    dtype = "float64" if sf.info(path).subtype == "FLOAT" else "int32"
    data, _ = sf.read(path, dtype=dtype, always_2d=True)
    return data


def _flac_md5_matches(path) -> bool:
    """What ``flac -t`` checks: the decoded samples hash to STREAMINFO's MD5."""
    from mutagen.flac import FLAC

    info = FLAC(path).info
    pcm = (_decoded(path) >> (32 - info.bits_per_sample)).astype("<i4")
    per_sample = pcm.view(np.uint8).reshape(-1, 4)[:, : info.bits_per_sample // 8]
    return int(hashlib.md5(per_sample.tobytes()).hexdigest(), 16) == info.md5_signature


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [("flac", "PCM_16"), ("flac", "PCM_24"), ("wav", "PCM_24"), ("wav", "FLOAT")],
)
def test_tags_do_not_change_the_audio(tmp_path, fmt, subtype):
    from mutagen.flac import FLAC

    src = tmp_path / "src.flac"
    sf.write(src, _audio(seed=3), SR)
    f = FLAC(src)
    f["title"] = "Big Cover"
    big = b"\x89PNG\r\n\x1a\n" + np.random.default_rng(4).bytes(300_000)
    f.add_picture(_picture(big))  # far more than any padding: FLAC frames must move
    f.save()
    out = _partial(tmp_path, fmt, seconds=2.0, subtype=subtype)
    expected, size = _decoded(out), out.stat().st_size
    if fmt == "flac":
        assert _flac_md5_matches(out)
    assert write_output_tags(out, fmt=fmt, source=src, loudness=NEW) == []
    assert out.stat().st_size > size + len(big)
    got = _decoded(out)  # soundfile decodes to the end (FLAC frame CRCs checked)
    assert sf.info(out).frames == len(expected) == 2 * SR
    np.testing.assert_array_equal(got, expected)
    if fmt == "flac":
        assert _flac_md5_matches(out)
        assert FLAC(out).pictures[0].data == big
        if shutil.which("flac"):
            subprocess.run(["flac", "-t", "-s", str(out)], check=True)


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_one_load_and_one_save_per_output(tmp_path, monkeypatch, fmt):
    from mutagen.flac import FLAC
    from mutagen.wave import WAVE

    cls = FLAC if fmt == "flac" else WAVE
    calls = []
    for method in ("load", "save"):
        original = getattr(cls, method)

        def spy(self, *args, _original=original, _method=method, **kwargs):
            calls.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, spy)
    out = _partial(tmp_path, fmt)
    write_output_tags(out, fmt=fmt, source=_source(tmp_path, "mp3"), loudness=NEW)
    assert calls == ["load", "save"]


def test_loudness_only_and_nothing_to_do(tmp_path):
    out = _partial(tmp_path, "flac")
    before = out.read_bytes()
    assert write_output_tags(out, fmt="flac", source=None, loudness=None) == []
    untagged = tmp_path / "plain.wav"
    sf.write(untagged, _audio(), SR)  # a source without tags: nothing to save either
    assert write_output_tags(out, fmt="flac", source=untagged, loudness=None) == []
    assert out.read_bytes() == before
    assert write_output_tags(out, fmt="flac", source=None, loudness=NEW) == []
    fields, pics, _ = _read(out, "flac")
    assert fields == {k.lower(): [v] for k, v in NEW.items()} and pics == []


@pytest.mark.parametrize("fmt", ["flac", "wav"])
@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("corrupt.flac", b"fLaC" + b"\xff" * 64, "unreadable"),
        ("corrupt.mp3", b"ID3\x04\x00\x00\x00\x00\x7f\x7f" + b"\x00" * 32, "unreadable"),
        ("missing.ogg", None, "unreadable"),
        ("noise.au", "au", "mutagen reads no tags from .au files"),
    ],
)
def test_an_unreadable_source_is_a_note_and_loudness_is_still_written(
    tmp_path, fmt, name, content, words
):
    src = tmp_path / name
    if content == "au":
        sf.write(src, _audio(), SR)
    elif content is not None:
        src.write_bytes(content)
    out = _partial(tmp_path, fmt)
    expected = _decoded(out)
    notes = write_output_tags(out, fmt=fmt, source=src, loudness=NEW)
    assert len(notes) == 1 and words in notes[0], notes
    fields, _, _ = _read(out, fmt)
    assert fields["replaygain_track_gain"] == [NEW["REPLAYGAIN_TRACK_GAIN"]]
    np.testing.assert_array_equal(_decoded(out), expected)


def test_a_field_flac_cannot_hold_is_a_note(tmp_path):
    from mutagen.id3 import TXXX
    from mutagen.mp3 import MP3

    src = _source(tmp_path, "mp3")
    f = MP3(src)
    f.tags.add(TXXX(encoding=3, desc="Künstler", text=["Ö"]))
    f.save()
    out = _partial(tmp_path, "flac")
    notes = write_output_tags(out, fmt="flac", source=src, loudness=None)
    assert len(notes) == 1 and "'künstler' not copied" in notes[0], notes
    assert _read(out, "flac")[0]["title"] == [TEXT["title"]]
    wav = _partial(tmp_path, "wav")  # ID3 holds any description
    assert write_output_tags(wav, fmt="wav", source=src, loudness=None) == []
    assert _read(wav, "wav")[0]["künstler"] == ["Ö"]


def test_the_format_comes_from_the_argument_not_the_name(tmp_path):
    out = _partial(tmp_path, "flac")
    before = out.read_bytes()
    with pytest.raises(ParameterError, match="fmt must be one of flac, wav, got 'mp3'"):
        write_output_tags(out, fmt="mp3", source=None, loudness=NEW)
    with pytest.raises(OutputError, match="writing tags failed"):
        write_output_tags(out, fmt="wav", source=None, loudness=NEW)
    assert out.read_bytes() == before


class _FailingWrites(io.FileIO):
    """A file whose every non-empty write fails with ``code`` (a full disk, a dead disk)."""

    code = errno.ENOSPC

    def write(self, b):
        if len(b):
            raise OSError(self.code, os.strerror(self.code))
        return 0


@pytest.mark.parametrize("fmt", ["flac", "wav"])
@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EIO, "input/output error"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_an_io_error_on_the_output_is_an_output_error(tmp_path, monkeypatch, fmt, code, words):
    monkeypatch.setattr(_FailingWrites, "code", code)

    def failing_open(path, mode):
        assert mode == "rb+"
        return io.BufferedRandom(_FailingWrites(path, "r+"))

    monkeypatch.setattr(tags, "open", failing_open, raising=False)
    out = _partial(tmp_path, fmt)
    with pytest.raises(OutputError) as info:
        write_output_tags(out, fmt=fmt, source=_source(tmp_path, "flac"), loudness=NEW)
    assert str(info.value) == f"{out}: writing tags failed: {words}"
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == code


def test_real_io_errors_are_output_errors(tmp_path):
    with pytest.raises(OutputError, match=r"writing tags failed: is a directory$"):
        write_output_tags(tmp_path, fmt="flac", source=None, loudness=NEW)
    with pytest.raises(OutputError, match=r"writing tags failed: no such file or directory$"):
        write_output_tags(tmp_path / "gone.partial", fmt="wav", source=None, loudness=NEW)


def test_a_write_the_kernel_refuses_is_an_output_error(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse to grow the file (EFBIG): a real failed
    write in the middle of mutagen's rewrite, without needing a full filesystem."""
    resource = pytest.importorskip("resource")
    src = tmp_path / "src.flac"
    sf.write(src, _audio(), SR)
    from mutagen.flac import FLAC

    f = FLAC(src)
    f.add_picture(_picture(np.random.default_rng(5).bytes(200_000)))
    f.save()
    out = _partial(tmp_path, "flac")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (out.stat().st_size + 4096, hard))
    try:
        with pytest.raises(OutputError, match=r"writing tags failed: file too large$"):
            write_output_tags(out, fmt="flac", source=src, loudness=None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize(
    ("name", "stale"),
    [
        ("REPLAYGAIN_TRACK_GAIN", True),
        ("replaygain_album_peak", True),
        ("ReplayGain_Reference_Loudness", True),
        ("R128_TRACK_GAIN", True),
        ("r128_album_gain", True),
        ("MP3GAIN_MINMAX", True),
        ("iTunNORM", True),
        ("RG_RADIO", True),
        ("title", False),
        ("replaygain", False),
        ("comment", False),
    ],
)
def test_is_loudness_tag(name, stale):
    assert is_loudness_tag(name) is stale


def test_the_sources_encoder_is_not_carried_to_the_master(tmp_path):
    from mutagen.flac import FLAC

    src = tmp_path / "src.flac"
    sf.write(src, _audio(), SR, subtype="PCM_16")
    tags = FLAC(src)
    tags["TITLE"], tags["ENCODER"] = "Song", "Ogg Drop b3"
    tags.save()
    out = _partial(tmp_path, "flac")
    write_output_tags(out, fmt="flac", source=src, loudness=None)
    fields, _, _ = _read(out, "flac")
    assert fields.get("title") == ["Song"] and "encoder" not in fields


def test_copied_tags_are_written_in_the_same_order_whatever_the_hash_seed(tmp_path):
    """mutagen's VComment.keys() is a set: the master's tag order, and so its bytes,
    changed from process to process (a trust sweep saw two runs' masters differ at byte
    87). Copied in the source's order, the same source gives the same bytes in any
    process (-j 1, -j 2 and Dask workers alike)."""
    import sys

    from mutagen.flac import FLAC

    src = tmp_path / "src.flac"
    sf.write(src, _audio(), SR, subtype="PCM_16")
    meta = FLAC(src)
    names = ["TITLE", "ARTIST", "ALBUM", "GENRE", "DISCNUMBER", "TRACKNUMBER", "DATE", "LABEL"]
    for i, name in enumerate(names):
        meta[name] = f"value {i}"
    meta.save()
    script = (
        "import sys, shutil, hashlib\n"
        "from auralis_batch.tags import write_output_tags\n"
        "shutil.copy(sys.argv[1], sys.argv[2])\n"
        "write_output_tags(sys.argv[2], fmt='flac', source=sys.argv[1], loudness=None)\n"
        "print(hashlib.sha256(open(sys.argv[2], 'rb').read()).hexdigest())\n"
    )
    digests = set()
    for seed in ("1", "2", "3", "4"):
        out = tmp_path / f"out-{seed}.flac"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", script, str(src), str(out)],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            check=True,
        )
        digests.add(run.stdout.strip())
    assert len(digests) == 1
    written = [k.lower() for k, _ in FLAC(tmp_path / "out-1.flac").tags]
    assert [n for n in written if n in {n.lower() for n in names}] == [n.lower() for n in names]


def test_two_pictures_with_one_description_both_reach_a_wav(tmp_path):
    """ID3 keys APIC frames by description: a FLAC's front and back covers, both
    undescribed, came out of a WAV master as the back cover alone (a second sweep)."""
    from mutagen.flac import FLAC
    from mutagen.wave import WAVE

    src = tmp_path / "src.flac"
    sf.write(src, _audio(), SR, subtype="PCM_16")
    f = FLAC(src)
    for kind, data in ((3, COVER), (4, COVER[::-1])):
        pic = _picture(data)
        pic.type, pic.desc = kind, ""
        f.add_picture(pic)
    f.save()
    out = _partial(tmp_path, "wav")
    write_output_tags(out, fmt="wav", source=src, loudness=None)
    frames = WAVE(out).tags.getall("APIC")
    assert sorted((fr.type, fr.data) for fr in frames) == [(3, COVER), (4, COVER[::-1])]


def test_an_id3_track_number_of_a_total_becomes_vorbis_number_and_total(tmp_path):
    """ID3's TRCK 3/10 was copied into FLAC as TRACKNUMBER=3/10; Vorbis comments keep
    the total apart (TRACKTOTAL), as players read them (a second sweep's note)."""
    from mutagen import id3
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3

    src = tmp_path / "src.mp3"
    sf.write(src, _audio(), SR, format="MP3")
    f = MP3(src)
    f.add_tags()
    f.tags.add(id3.TRCK(encoding=3, text=["3/10"]))
    f.tags.add(id3.TPOS(encoding=3, text=["1/2"]))
    f.save()
    out = _partial(tmp_path, "flac")
    write_output_tags(out, fmt="flac", source=src, loudness=None)
    tags = FLAC(out).tags
    assert (tags["tracknumber"], tags["tracktotal"]) == (["3"], ["10"])
    assert (tags["discnumber"], tags["disctotal"]) == (["1"], ["2"])


@pytest.mark.parametrize("fmt", ["flac", "wav"])
@pytest.mark.parametrize("container", ["WAV", "AIFF"])
def test_text_in_riff_info_and_aiff_chunks_reaches_the_master(tmp_path, fmt, container):
    """A WAV's RIFF INFO chunk and an AIFF's text chunks (libsndfile's, Audacity's and
    many DAWs' default) were read by nothing: title and artist were lost without a note
    (fourth sweep). The software field names the source's encoder and stays behind."""
    src = tmp_path / f"src.{container.lower()}"
    with sf.SoundFile(src, "w", SR, 2, subtype="PCM_16", format=container) as f:
        f.title, f.artist, f.comment, f.software = "Night Drive", "The Testers", "kept", "DAW 1"
        f.write(_audio())
    out = _partial(tmp_path, fmt)
    notes = write_output_tags(out, fmt=fmt, source=src, loudness=None)
    fields, _, _ = _read(out, fmt)
    title, artist, comment = ("title", "artist", "comment")
    if fmt == "wav":
        title, artist, comment = "TIT2", "TPE1", "COMM::eng"
    assert fields[title] == ["Night Drive"] and fields[artist] == ["The Testers"]
    assert fields[comment] == ["kept"] and notes == []
    assert not any("DAW 1" in v for values in fields.values() for v in values)


def test_id3_in_a_wav_wins_over_its_info_chunk(tmp_path):
    from mutagen.wave import WAVE

    src = tmp_path / "src.wav"
    with sf.SoundFile(src, "w", SR, 2, subtype="PCM_16") as f:
        f.title, f.album = "from INFO", "Overnight"
        f.write(_audio())
    wav = WAVE(src)
    wav.add_tags()
    from mutagen.id3 import TIT2

    wav.tags.add(TIT2(encoding=3, text=["from ID3"]))
    wav.save()
    out = _partial(tmp_path, "flac")
    write_output_tags(out, fmt="flac", source=src, loudness=None)
    fields, _, _ = _read(out, "flac")
    assert fields["title"] == ["from ID3"] and fields["album"] == ["Overnight"]


def test_a_text_tag_too_long_for_a_flac_comment_block_is_left_out_with_a_note(tmp_path):
    """A 17 MiB text field (lyrics, a log pasted into a comment) made mutagen fail with
    AttributeError writing the FLAC, and the track failed (fourth sweep). A FLAC's
    comment block holds 16 MiB: the field is left out, as oversized cover art is."""
    from mutagen.id3 import TIT2, TXXX
    from mutagen.wave import WAVE

    src = tmp_path / "src.wav"
    sf.write(src, _audio(), SR, subtype="PCM_16")
    wav = WAVE(src)
    wav.add_tags()
    wav.tags.add(TIT2(encoding=3, text=["Song"]))
    wav.tags.add(TXXX(encoding=3, desc="notes", text=["x" * (17 * 2**20)]))
    wav.save()
    out = _partial(tmp_path, "flac")
    notes = write_output_tags(
        out, fmt="flac", source=src, loudness={"REPLAYGAIN_TRACK_GAIN": "-1.00 dB"}
    )
    fields, _, _ = _read(out, "flac")
    assert fields["title"] == ["Song"] and "notes" not in fields
    assert fields["replaygain_track_gain"] == ["-1.00 dB"]
    assert notes == ["tag 'notes' (17.0 MiB) not copied: a FLAC comment block holds at most 16 MiB"]
    assert sf.info(out).frames == _audio().shape[0]


def test_riff_info_text_in_windows_1252_is_read_as_such(tmp_path):
    """libsndfile hands INFO text over as bytes; read as UTF-8 with replacement, a
    Latin-1 "Café" (what Windows tools write) became "Caf\\ufffd" (a review)."""
    import struct

    src = tmp_path / "src.wav"
    sf.write(src, _audio(), SR, subtype="PCM_16")
    data = src.read_bytes()
    title = "Café Olé".encode("cp1252") + b"\0"
    info = b"INFO" + b"INAM" + struct.pack("<I", len(title)) + title
    info += b"\0" * (len(info) % 2)
    chunk = b"LIST" + struct.pack("<I", len(info)) + info
    body = data[12:] + chunk
    src.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    with sf.SoundFile(src) as f:
        assert "\ufffd" in f.copy_metadata()["title"]  # soundfile's own reading
    out = _partial(tmp_path, "flac")
    write_output_tags(out, fmt="flac", source=src, loudness=None)
    fields, _, _ = _read(out, "flac")
    assert fields["title"] == ["Café Olé"]
