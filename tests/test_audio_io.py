"""The I/O edge: layout validation, specific decode errors, atomic writes, dither."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import soundfile as sf

from auralis_batch.audio import OutputFile, Quantizer, as_audio, iter_blocks, probe, read_audio
from auralis_batch.errors import AudioError, DecodeError, OutputError


def test_as_audio_layout_rules():
    assert as_audio(np.zeros(10)).shape == (1, 10)
    assert as_audio(np.zeros((2, 10), dtype=np.float32)).dtype == np.float64
    with pytest.raises(AudioError, match="more channels than samples"):
        as_audio(np.zeros((8, 2)))
    # a real track as soundfile reads it, (samples, channels): the same hint, not
    # "channels must be between 1 and 64, got 661500" (a newcomer's)
    from auralis_batch.meter import measure_loudness

    for call in (as_audio, lambda a: measure_loudness(a, 44100)):
        with pytest.raises(AudioError, match="transpose a \\(samples, channels\\) array"):
            call(np.zeros((661500, 2)))
    with pytest.raises(AudioError, match="NaN or infinite"):
        as_audio(np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(AudioError, match=r"expected shape \(channels, samples\)"):
        as_audio(np.zeros((1, 2, 3)))


def _write_tone(path, seconds=1.0, sr=44100, channels=2, subtype="PCM_16", fmt=None):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.tile(x[:, None], (1, channels)), sr, subtype=subtype, format=fmt)


def test_specific_errors_for_bad_files(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty"):
        probe(empty)
    text = tmp_path / "notes.flac"
    text.write_text("this is not audio\n" * 100)
    with pytest.raises(DecodeError, match="not a readable audio file"):
        probe(text)
    with pytest.raises(DecodeError, match="no such file"):
        probe(tmp_path / "missing.wav")
    with pytest.raises(DecodeError, match="a folder, not an audio file"):
        probe(tmp_path)  # e.g. --reference DIR said "no such file"
    # random bytes named .mp3: libsndfile says "does not exist or is not a regular
    # file"; the message says what is wrong instead
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(DecodeError) as err:
        probe(noise)
    assert "not audio in a format libsndfile reads" in str(err.value)
    assert "does not exist" not in str(err.value)


def test_truncated_flac_fails_clearly(tmp_path):
    good = tmp_path / "good.flac"
    _write_tone(good, seconds=5.0)
    bad = tmp_path / "bad.flac"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    # Either the header check or the decode must fail, never return garbage silently.
    try:
        audio, _ = read_audio(bad)
    except DecodeError as exc:
        assert "bad.flac" in str(exc)
    else:
        assert audio.shape[1] < 5 * 44100


def test_nan_in_float_wav_is_rejected(tmp_path):
    path = tmp_path / "nan.wav"
    x = np.zeros((1000, 2), dtype=np.float32)
    x[500, 1] = np.nan
    sf.write(path, x, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        list(iter_blocks(path))


@pytest.mark.parametrize("scale", [1e4, 1e10, 1e30])
def test_samples_beyond_the_magnitude_limit_are_rejected(tmp_path, scale):
    path = tmp_path / "huge.wav"
    x = np.zeros((70000, 2), dtype=np.float32)
    x[69000, 0] = -scale  # in the second block: every block is checked
    sf.write(path, x, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"times full scale \(\+60 dBFS\)"):
        list(iter_blocks(path))
    with pytest.raises(AudioError, match="times full scale"):
        as_audio(x.T)


def test_samples_over_full_scale_within_the_limit_are_kept(tmp_path):
    path = tmp_path / "hot.wav"
    x = np.zeros((1000, 1), dtype=np.float32)
    x[10, 0], x[20, 0] = 999.0, -4.0  # a hot float render is audio
    sf.write(path, x, 44100, subtype="FLOAT")
    got = np.concatenate(list(iter_blocks(path)), axis=1)
    assert got[0, 10] == 999.0 and got[0, 20] == -4.0
    assert as_audio(x.T)[0, 10] == 999.0


def test_blocks_concatenate_to_the_file(tmp_path):
    path = tmp_path / "tone.wav"
    _write_tone(path, seconds=2.0, subtype="FLOAT")
    whole, sr = read_audio(path)
    blocks = list(iter_blocks(path, block_frames=1000))
    assert sr == 44100
    assert np.array_equal(np.concatenate(blocks, axis=1), whole)
    expected = sf.read(path, always_2d=True)[0].T
    assert np.array_equal(whole, expected)


def write_output(dst, pcm, *, sample_rate=44100, channels=2, subtype="PCM_24", replace=False):
    """One pass and a commit, as the engine writes every output."""
    with OutputFile(
        dst,
        sample_rate=sample_rate,
        channels=channels,
        fmt="flac",
        subtype=subtype,
        replace=replace,
    ) as out:
        with out.pass_writer() as write:
            write(pcm)
        return out.commit()


def test_output_file_leaves_nothing_on_error(tmp_path):
    dst = tmp_path / "out" / "song.flac"
    with (
        pytest.raises(RuntimeError),
        OutputFile(dst, sample_rate=44100, channels=2, fmt="flac", subtype="PCM_24") as out,
    ):
        with out.pass_writer() as write:
            write(Quantizer("24")(np.zeros((2, 1000))))
            raise RuntimeError("crash mid-write")
    assert not dst.exists()
    assert list(dst.parent.iterdir()) == []


def test_output_file_uncommitted_leaves_nothing(tmp_path):
    dst = tmp_path / "song.flac"
    with OutputFile(dst, sample_rate=44100, channels=2, fmt="flac", subtype="PCM_24") as out:
        with out.pass_writer() as write:
            write(Quantizer("24")(np.zeros((2, 1000))))
        assert out.temporary_path is not None and out.temporary_path.name.endswith(".partial")
    assert list(tmp_path.iterdir()) == []


def test_output_file_renames_on_commit(tmp_path):
    dst = tmp_path / "song.flac"
    x = 0.25 * np.ones((2, 1000))
    written = write_output(dst, Quantizer("24")(x), sample_rate=48000)
    assert [p.name for p in tmp_path.iterdir()] == ["song.flac"]
    assert written.bytes == dst.stat().st_size
    got, sr = read_audio(dst)
    assert sr == 48000
    assert np.allclose(got, x, atol=2**-23)


def test_unwritable_destination_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        write_output(blocker / "sub" / "a.flac", np.zeros((10, 1), dtype=np.int16), channels=1)


@pytest.mark.parametrize(
    ("bit_depth", "subtype", "lsb"), [("16", "PCM_16", 2**-15), ("24", "PCM_24", 2**-23)]
)
def test_quantizer_roundtrip_through_soundfile(tmp_path, bit_depth, subtype, lsb):
    rng = np.random.default_rng(0)
    x = 0.5 * rng.uniform(-1, 1, (2, 20000))
    q = Quantizer(bit_depth, seed=1)
    pcm = q(x)
    path = tmp_path / "q.wav"
    sf.write(path, pcm, 44100, subtype=subtype)
    back = sf.read(path, always_2d=True, dtype="float64")[0].T
    assert np.array_equal(back, q.as_float(pcm))  # what we measure is what is written
    err = back - x
    assert np.abs(err).max() <= (1.5 if bit_depth == "16" else 0.5) * lsb + 1e-12


def test_tpdf_dither_noise_power_and_independence():
    # TPDF (+-1 LSB) plus rounding: error variance 1/12 + 1/6 = 1/4 LSB^2, mean 0,
    # and the error does not follow the signal (no harmonic distortion).
    n = 200000
    t = np.arange(n)
    x = (3.3 / 32768) * np.sin(2 * np.pi * 0.01 * t)[None, :]  # a very quiet tone
    q = Quantizer("16", seed=3)
    err = (q.as_float(q(x)) - x)[0] * 32768
    assert np.var(err) == pytest.approx(0.25, rel=0.03)
    assert abs(err.mean()) < 0.01
    assert abs(np.corrcoef(err, x[0])[0, 1]) < 0.01


def test_digital_silence_stays_silent_in_16_bit():
    """Dither turned a silent source, and the silence between tracks, into noise at
    about -85 dBFS (fourth sweep): exact zeros get none ("auto-blanking"); the
    music beside them is dithered as before."""
    x = np.zeros((2, 30000))
    x[:, 10000:20000] = (3.3 / 32768) * np.sin(2 * np.pi * 0.01 * np.arange(10000))
    pcm = Quantizer("16", seed=3)(x)
    assert not pcm[:10000].any() and not pcm[20000:].any()
    tail = x.copy()  # a decay after the music, never exactly zero (an IIR's, a release's)
    tail[:, 20000:] = 1e-3 * np.exp(-np.arange(10000) / 50.0) / 32768
    assert not Quantizer("16", seed=3)(tail)[20100:].any()
    err = pcm[10001:20000, 0] / 32768 - x[0, 10001:20000]
    assert np.var(err * 32768) == pytest.approx(0.25, rel=0.1)  # TPDF on the tone


def test_finished_output_sweeps_temporaries_of_a_killed_run(tmp_path):
    import os

    from auralis_batch.audio import temporary_name

    dst = tmp_path / "a.flac"
    stale = temporary_name(dst)  # left by a run killed mid-write
    stale.write_bytes(b"fLaC" + bytes(200))  # half a FLAC file
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    other = tmp_path / ".b.flac.x.partial"  # another output's: not ours to touch
    other.write_bytes(b"x")
    os.utime(other, (1_000_000_000, 1_000_000_000))
    # a FLAC of the user's in that shape, whose name does not prove it ours (a review's)
    users = tmp_path / ".a.flac.12345678.partial"
    users.write_bytes(b"fLaC" + bytes(200))
    os.utime(users, (1_000_000_000, 1_000_000_000))
    write_output(dst, np.zeros((100, 1), dtype=np.int16), channels=1, subtype="PCM_16")
    assert dst.exists() and not stale.exists() and other.exists() and users.exists()


@pytest.mark.parametrize("bit_depth", ["16", "24", "32f"])
def test_one_pass_quantize_equals_numpy_quantize_and_decode(bit_depth):
    rng = np.random.default_rng(7)
    x = 0.6 * rng.standard_normal((2, 5000))
    x[0, :6] = [1.0, -1.0, 1.5, -1.5, 0.99999, -0.99999]  # clipping at both ends
    x[:, 100:400] = 0.0  # digital silence: no dither
    reference, fused = Quantizer(bit_depth, seed=11), Quantizer(bit_depth, seed=11)
    pcm_ref = _numpy_quantize(x, bit_depth, np.random.default_rng(11))
    pcm, back = fused.quantize(x)
    assert pcm.dtype == pcm_ref.dtype and pcm.flags.c_contiguous
    assert np.array_equal(pcm, pcm_ref)
    assert np.array_equal(back, reference.as_float(pcm_ref))


def _numpy_quantize(x: np.ndarray, bit_depth: str, rng: np.random.Generator) -> np.ndarray:
    """The plain NumPy chain the kernel must equal: scale, dither (16-bit, not on exact
    zeros and near-zeros under 1/256 of a step), round, clip."""
    frames = x.T
    if bit_depth == "16":
        dither = rng.random(frames.shape) - rng.random(frames.shape)
        dither[np.abs(frames * 32768.0) < 1.0 / 256.0] = 0.0
        q = np.floor(frames * 32768.0 + dither + 0.5)
        return np.clip(q, -32768, 32767).astype(np.int16)
    if bit_depth == "24":
        q = np.clip(np.floor(frames * 8388608.0 + 0.5), -8388608, 8388607).astype(np.int32)
        return q << 8
    return np.ascontiguousarray(frames, dtype=np.float32)


def test_a_cut_ogg_stream_is_refused_as_truncated(tmp_path):
    x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(44100 * 4) / 44100)
    whole = tmp_path / "whole.ogg"
    sf.write(whole, np.tile(x[:, None], (1, 2)), 44100, format="OGG", subtype="VORBIS")
    assert probe(whole).frames == 44100 * 4
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with pytest.raises(DecodeError, match="truncated"):
        probe(cut)
    chained = tmp_path / "chained.ogg"  # two files joined: libsndfile reads the first
    chained.write_bytes(whole.read_bytes() * 2)
    with pytest.raises(DecodeError, match="holds chained streams"):
        probe(chained)


def _first_frame(data: bytes) -> tuple[int, int]:
    """Offset and length of an MPEG-1 Layer III file's first frame (after its ID3v2 tag)."""
    start = 0
    if data[:3] == b"ID3":
        start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    i = start
    while not (data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0):
        i += 1
    kbps = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320][data[i + 2] >> 4]
    rate = [44100, 48000, 32000][(data[i + 2] >> 2) & 3]
    return i, 144 * kbps * 1000 // rate + ((data[i + 2] >> 1) & 1)


def test_a_cut_mp3_or_aiff_is_refused_as_truncated(tmp_path):
    """mpg123 stops at the end of a cut MP3 without an error, and libsndfile reads a cut
    AIFF to its end: both were mastered as 'ok' from part of the song (a trust sweep's
    finding). An MP3 whose first frame states its length (LAME's Info tag) is held to
    it; one without a length tag has only an estimate, and is not."""
    rng = np.random.default_rng(3)
    x = 0.2 * rng.standard_normal((44100 * 12, 2))
    whole = tmp_path / "whole.mp3"
    sf.write(whole, x, 44100, format="MP3", subtype="MPEG_LAYER_III")
    data = whole.read_bytes()
    start, size = _first_frame(data)
    assert b"Info" in data[start : start + size] or b"Xing" in data[start : start + size]
    assert sum(b.shape[1] for b in iter_blocks(whole)) == probe(whole).frames  # stated = decoded
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match=r"truncated: its header states 12\.0 s of audio"):
        list(iter_blocks(cut))
    untagged = tmp_path / "untagged_cut.mp3"  # the Info frame removed, then cut
    untagged.write_bytes((data[:start] + data[start + size :])[: len(data) // 2])
    assert 0 < sum(b.shape[1] for b in iter_blocks(untagged)) < 44100 * 11  # no error

    aiff = tmp_path / "whole.aiff"
    sf.write(aiff, x[: 44100 * 2], 44100, subtype="PCM_16")
    half = tmp_path / "half.aiff"
    half.write_bytes(aiff.read_bytes()[: aiff.stat().st_size // 2])
    with pytest.raises(DecodeError, match="truncated: the header declares"):
        list(iter_blocks(half))
    assert sum(b.shape[1] for b in iter_blocks(aiff)) == 44100 * 2


def test_a_temporarys_name_fits_and_stays_utf8_for_a_long_name():
    """A name near the 255-byte limit: its temporary's name is cut on a character
    boundary (filesystems that require UTF-8 names refuse a split character), and a
    name that is not UTF-8 keeps its own bytes."""
    import os
    from pathlib import Path

    from auralis_batch.audio import MAX_NAME_BYTES, partial_prefix

    for name in ("é" * 120 + ".flac", "a" * 250 + ".flac", os.fsdecode(b"caf\xe9" * 60 + b".flac")):
        prefix = os.fsencode(partial_prefix(Path("/x") / name))
        assert len(prefix) + len("XXXXXXXX.partial") <= MAX_NAME_BYTES
        if name.isascii() or "é" in name:
            prefix.decode("utf-8")  # no split character
        assert os.fsencode(name).startswith(prefix[1:-1])


@pytest.mark.parametrize(
    ("refused", "reason"),
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (None, None),
    ],
)
def test_a_system_error_from_libsndfile_is_named_by_asking_the_filesystem(
    tmp_path, monkeypatch, refused, reason
):
    """libsndfile reports a full disk as "System error."; ext4 keeps 16 MiB back even
    from root, so free space looked ample and a full disk went on, track after track,
    as "System error." (a trust sweep's finding). The filesystem is asked instead."""
    from auralis_batch import audio

    real = os.posix_fallocate

    def fallocate(fd, offset, length):
        if refused is not None:
            raise OSError(refused, os.strerror(refused))
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    err = audio._write_failure(tmp_path / "a.flac", RuntimeError("System error."), "writing audio")
    monkeypatch.delattr(os, "posix_fallocate")  # macOS has none: the probe writes instead
    plain = audio._write_failure(tmp_path / "a.flac", RuntimeError("System error."), "writing")
    assert "failed: " in str(plain)
    got = str(err).split("writing audio failed: ")[1]
    assert got == (reason or audio._reason(RuntimeError("System error.")))
    assert got != "no space left on device" or refused == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # the probe is gone


#: WAV order's speakers, and the order Vorbis I (4.3.9) and Opus family 1 store them in.
_WAV_SPEAKERS = {
    3: ("L", "R", "C"),
    5: ("L", "R", "C", "Ls", "Rs"),
    6: ("L", "R", "C", "LFE", "Ls", "Rs"),
    7: ("L", "R", "C", "LFE", "Cs", "Ls", "Rs"),
    8: ("L", "R", "C", "LFE", "Lrs", "Rrs", "Lss", "Rss"),
}
_VORBIS_SPEAKERS = {
    3: ("L", "C", "R"),
    5: ("L", "C", "R", "Ls", "Rs"),
    6: ("L", "C", "R", "Ls", "Rs", "LFE"),
    7: ("L", "C", "R", "Ls", "Rs", "Cs", "LFE"),
    8: ("L", "C", "R", "Lss", "Rss", "Lrs", "Rrs", "LFE"),
}


@pytest.mark.parametrize("channels", sorted(_WAV_SPEAKERS))
def test_an_ogg_files_channels_are_read_in_wav_order(tmp_path, channels):
    """A 5.1 Ogg Vorbis file (encoded by ffmpeg, in the Vorbis order) was measured
    with a surround taken for the LFE and mastered into FLAC with its centre in the
    right speaker: libsndfile hands the stream's own order through (sixth sweep). Each
    speaker gets a tone of its own here, stored in the order the Vorbis spec gives."""
    sr = 48000
    t = np.arange(sr) / sr
    tone = {name: 200.0 + 150.0 * i for i, name in enumerate(_WAV_SPEAKERS[channels])}
    tone["LFE"] = 60.0  # the encoder low-passes that channel
    stored = np.stack([0.2 * np.sin(2 * np.pi * tone[s] * t) for s in _VORBIS_SPEAKERS[channels]])
    path = tmp_path / "surround.ogg"
    sf.write(path, stored.T, sr, format="OGG", subtype="VORBIS")
    got = np.concatenate(list(iter_blocks(path)), axis=1)
    assert got.flags.c_contiguous
    spectrum_hz = np.fft.rfftfreq(got.shape[1], 1 / sr)
    heard = [spectrum_hz[np.argmax(np.abs(np.fft.rfft(row)))] for row in got]
    assert heard == pytest.approx([tone[s] for s in _WAV_SPEAKERS[channels]])
    # a WAV file's channels are its own order already
    sf.write(tmp_path / "surround.wav", stored.T, sr, subtype="DOUBLE")
    np.testing.assert_array_equal(read_audio(tmp_path / "surround.wav")[0], stored)


def test_a_wav_master_a_riff_header_cannot_size_is_written_as_rf64(tmp_path, monkeypatch):
    """A 4.4 GB WAV master was written with its RIFF sizes at their maximum and read
    back 10 s short, reported ok (sixth sweep). Past the RIFF limit the master is RF64
    (what the limit is made small for here), whole, under its .wav name, and says it
    carries no tags; every pass's output is read back for its frame count."""
    from auralis_batch import audio
    from auralis_batch.batch import RunSettings, run_master

    from .conftest import music_like

    assert audio.wav_container(None, 2, "PCM_24") == "WAV"
    limit_frames = (audio.RIFF_MAX_BYTES - (1 << 16)) // (2 * 4)
    assert audio.wav_container(limit_frames, 2, "FLOAT") == "WAV"
    assert audio.wav_container(limit_frames + 1, 2, "FLOAT") == "RF64"
    src = tmp_path / "in" / "long.flac"
    src.parent.mkdir()
    sf.write(src, music_like(seconds=3.0).T, 44100, subtype="PCM_24")
    monkeypatch.setattr(audio, "RIFF_MAX_BYTES", (1 << 16) + 3 * 44100 * 2 * 3 - 1)
    result = run_master(
        [src.parent], tmp_path / "out", RunSettings(use_cache=False, fmt="wav"), n_jobs=1
    )
    (rec,) = result.records
    out = tmp_path / "out" / "long.wav"
    assert rec["status"] == "ok" and out.read_bytes()[:4] == b"RF64"
    assert sf.info(out).frames == 3 * 44100
    assert any("RF64" in note for note in rec["tag_notes"])
    with pytest.raises(OutputError, match=r"reads back as 132300 frames of the 132301 written"):
        audio._check_read_back(out, out, 132301)


def test_a_folders_bwf_wave_and_snd_files_are_mastered(tmp_path):
    """Broadcast WAV takes (.bwf), .wave and Sun .snd files in a folder were skipped as
    "not an audio file this build can read", though the same file named alone was
    mastered (sixth sweep)."""
    from auralis_batch.batch import RunSettings, run_master

    from .conftest import music_like

    lib = tmp_path / "takes"
    lib.mkdir()
    x = music_like(seconds=1.0).T
    sf.write(lib / "take1.bwf", x, 48000, format="WAV", subtype="PCM_24")
    sf.write(lib / "take2.wave", x, 48000, format="WAV", subtype="PCM_24")
    sf.write(lib / "take3.snd", x, 48000, format="AU", subtype="PCM_16")
    result = run_master([lib], tmp_path / "out", RunSettings(use_cache=False), n_jobs=1)
    assert [(r["input"].rsplit("/", 1)[1], r["status"]) for r in result.records] == [
        ("take1.bwf", "ok"),
        ("take2.wave", "ok"),
        ("take3.snd", "ok"),
    ]


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_a_file_of_more_channels_than_the_engine_takes_is_named_as_such(tmp_path, fmt):
    """A 70-channel WAV failed with the meter's "channels must be between 1 and 64, got
    70", which read like a parameter of the user's; with --format flac the master's
    8-channel limit spoke first and sent the user to --format wav for nothing (a sweep)."""
    from typer.testing import CliRunner

    from auralis_batch.cli import app

    src = tmp_path / "lib" / "array.wav"
    src.parent.mkdir()
    sf.write(src, np.zeros((4410, 70)), 44100, subtype="PCM_16")
    with pytest.raises(DecodeError, match=r"has 70 channels; auralis-batch reads files of 1 to 64"):
        probe(src)
    args = ["master", str(src.parent), "--out", str(tmp_path / "out"), "--no-cache", "-q"]
    res = CliRunner().invoke(app, [*args, "--format", fmt])
    assert res.exit_code == 1
    assert "has 70 channels" in res.output and "--format wav" not in res.output


def test_an_output_format_or_depth_that_does_not_exist_names_the_choices_in_words():
    """The choices read as words, not as a Python list (``['16', '24']``: a newcomer)."""
    from auralis_batch.audio import output_subtype
    from auralis_batch.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^format must be one of flac, wav, got 'mp3'$"):
        output_subtype("mp3", "24")
    with pytest.raises(ParameterError, match="for flac: choose one of 16, 24 "):
        output_subtype("flac", "12")
