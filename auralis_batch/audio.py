"""The one audio layout and the I/O edge.

Inside auralis-batch audio is always ``(channels, samples)``, C-contiguous float64.
:func:`as_audio` is the single place that validates and converts (librosa's
``valid_audio`` idea); files are read and written only here, in blocks, so memory does
not grow with track length. Every output goes through :class:`OutputFile`: a
temporary in the destination folder, tags into it, fsync, rename (never over a file
it may not replace), fsync of the folder; a crash never leaves a half-written file
under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import math
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError, DecodeError, OutputError, ParameterError, check_float_samples
from .identity import O_BINARY, O_NOFOLLOW, O_NONBLOCK, fsync_dir, move_no_clobber, same_entry
from .identity import sha256_file as _sha256_file  # a module name the fault tests replace
from .limits import (
    MAX_CHANNELS,
    MAX_NAME_BYTES,
    MAX_SAMPLE_MAGNITUDE,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
)

#: Frames per block when streaming files (about 1.5 s at 44.1 kHz).
BLOCK_FRAMES = 65536


def check_sample_rate(sample_rate: int, *, where: str) -> None:
    """Raise :class:`DecodeError` for a rate outside the accepted range."""
    if not MIN_SAMPLE_RATE_HZ <= sample_rate <= MAX_SAMPLE_RATE_HZ:
        raise DecodeError(
            f"{where}: sample rate {sample_rate} Hz outside "
            f"{MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz"
        )


#: Output formats and the bit depths each supports -> soundfile subtype.
OUTPUT_SUBTYPES: dict[str, dict[str, str]] = {
    "flac": {"16": "PCM_16", "24": "PCM_24"},
    "wav": {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"},
}


def as_audio(audio: np.ndarray, *, name: str = "audio", finite: bool = True) -> np.ndarray:
    """Validate ``audio`` and return it as C-contiguous float64 ``(channels, samples)``.

    A 1-D array is mono. A 2-D array must be channels-first; an array with more
    channels than samples is refused rather than guessed (a likely transposed input).
    ``finite=False`` leaves the NaN/inf check to the caller (the loudness meter finds
    them on its way through the samples).
    """
    arr = np.asarray(audio)
    check_float_samples(arr, name)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise AudioError(f"{name}: expected shape (channels, samples), got {arr.shape}")
    # the transposed layout first: soundfile's (samples, channels) is the common slip,
    # and "channels must be between 1 and 64, got 661500" did not say so (a newcomer's)
    if arr.shape[0] > arr.shape[1] and arr.shape[1] > 0:
        raise AudioError(
            f"{name}: shape {arr.shape} has more channels than samples; "
            "audio must be (channels, samples): transpose a (samples, channels) array"
        )
    if arr.shape[0] == 0 or arr.shape[0] > MAX_CHANNELS:
        raise AudioError(
            f"{name}: channels must be between 1 and {MAX_CHANNELS}, got {arr.shape[0]}"
        )
    out = np.ascontiguousarray(arr, dtype=np.float64)
    check_samples(out, where=name, finite=finite)
    return out


def check_samples(block: np.ndarray, *, where: str, finite: bool = True) -> None:
    """Raise :class:`AudioError` if ``block`` holds NaN or inf (unless ``finite`` is
    False: the caller's meter finds them) or a sample beyond
    :data:`~auralis_batch.limits.MAX_SAMPLE_MAGNITUDE`."""
    if block.size == 0:
        return
    hi, lo = float(block.max()), float(block.min())  # NaN and inf propagate
    if not (math.isfinite(hi) and math.isfinite(lo)):
        if finite:
            raise AudioError(f"{where}: contains NaN or infinite samples")
        return
    peak = max(hi, -lo)
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise AudioError(
            f"{where}: holds a sample of magnitude {peak:.3g} ({20 * math.log10(peak):+.0f} "
            f"dBFS), more than {MAX_SAMPLE_MAGNITUDE:g} times full scale (+60 dBFS): a float "
            "file with corrupt or unscaled samples; rescale it to about full scale first"
        )


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header. Raises :class:`DecodeError` with the reason."""
    p = Path(path)
    if not p.is_file():
        if p.is_dir():
            raise DecodeError(f"{p}: a folder, not an audio file")
        if p.exists():
            raise DecodeError(f"{p}: not a regular file")
        raise DecodeError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise DecodeError(f"{p}: file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise DecodeError(f"{p}: permission denied (cannot read it)")
    try:
        info = sf.info(sf_path(p))
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError
        raise DecodeError(f"{p}: not a readable audio file ({_reason(exc)})") from None
    if info.frames <= 0:
        raise DecodeError(f"{p}: holds no audio frames")
    if info.channels > MAX_CHANNELS:  # the meter's "channels must be between 1 and 64,
        raise DecodeError(  # got 70" read like a parameter of the user's (a sweep)
            f"{p}: has {info.channels} channels; auralis-batch reads files of 1 to "
            f"{MAX_CHANNELS} channels: split it into files of {MAX_CHANNELS} channels or fewer"
        )
    check_sample_rate(int(info.samplerate), where=str(p))
    if str(info.format).upper() == "OGG":
        if info.frames >= _UNKNOWN_LENGTH or _ogg_is_chained(p):
            raise DecodeError(
                f"{p}: libsndfile cannot tell this Ogg file's length: it holds chained "
                "streams (files joined end to end), of which only the first would be "
                "read, or its end is broken; split it into its streams to master them"
            )
        _refuse_cut_ogg(p)
    return AudioInfo(
        path=p,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def decode_dtype(info: AudioInfo) -> str:
    """The precision a file is decoded and kept in: float32, which holds every sample
    of 8-24-bit PCM, float and lossy formats exactly, or float64 for 32-bit integer
    and 64-bit float files."""
    return "float64" if info.subtype in ("DOUBLE", "PCM_32") else "float32"


#: What libsndfile reports as the frame count of an Ogg file whose length it cannot
#: find (2**63 - 1 for chained streams): no real file is this long.
_UNKNOWN_LENGTH = 1 << 62
#: Ogg page header: "OggS", version 0, then the header-type flags (RFC 3533).
_OGG_CAPTURE = b"OggS\x00"
_OGG_BOS = 0x02
_OGG_EOS = 0x04


def _ogg_is_chained(p: Path) -> bool:
    """Whether a stream begins after one has ended (a beginning-of-stream page after an
    end-of-stream page: files joined end to end, RFC 3533 section 4), walking the page
    headers only. libsndfile reads the first stream and, when the serial numbers
    repeat, reports its length as the file's."""
    ended = False
    try:
        with open(p, "rb") as f:
            while True:
                head = f.read(27)
                if len(head) < 27 or head[:5] != _OGG_CAPTURE:
                    return False  # the end, or not pages we can walk: libsndfile decides
                table = f.read(head[26])
                if len(table) < head[26]:
                    return False
                if head[5] & _OGG_BOS and ended:
                    return True
                ended = ended or bool(head[5] & _OGG_EOS)
                f.seek(sum(table), os.SEEK_CUR)
    except OSError:
        return False


def _refuse_cut_ogg(p: Path) -> None:
    """An Ogg stream (Vorbis, Opus) whose last page is not an end-of-stream page was
    cut short: libsndfile plays it to where it stops and reports that as its length,
    and a mastered copy of part of a song would be silently wrong (RFC 3533, 6)."""
    try:
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - 65536))
            tail = f.read()
    except OSError:
        return
    k = tail.rfind(_OGG_CAPTURE)
    if k >= 0 and k + 5 < len(tail) and not tail[k + 5] & _OGG_EOS:
        raise DecodeError(
            f"{p}: truncated: the Ogg stream ends without its end-of-stream page "
            "(the file was cut short)"
        )


def sf_path(path: str | os.PathLike) -> str | bytes:
    """``path`` as soundfile should open it: the name's own bytes on POSIX. soundfile
    encodes a ``str`` strictly, which fails on a file name that is not UTF-8 (a
    Latin-1 name from an old rip reaches Python with surrogate escapes)."""
    return os.fsencode(path) if os.name == "posix" else os.fspath(path)


_OPENING = re.compile(r"^Error opening .*?: ")


def _reason(exc: BaseException) -> str:
    """The library's last line, without libsndfile's "Error opening '<path>': " (our
    messages name the file already)."""
    text = str(exc).strip().splitlines()
    reason = _OPENING.sub("", text[-1]) if text else type(exc).__name__
    if "does not exist or is not a regular file" in reason:
        # what libsndfile says of an existing regular file whose MPEG data it cannot
        # sync to (the callers checked that the file exists and is regular)
        return "its contents are not audio in a format libsndfile reads"
    return reason


#: libsndfile's header report of a WAV (``data``) or AIFF (``SSND``) audio chunk that is
#: longer than the file: "data : 3528000 (should be 1764000)".
_DATA_LINE = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _refuse_truncated(handle: sf.SoundFile, p: Path) -> None:
    """A WAV/AIFF whose header declares more audio than the file holds is truncated.

    libsndfile plays such a file up to where it ends and notes the mismatch in its
    header report; a mastered copy of half a song would be silently wrong. Streaming
    writers' placeholder sizes (0, 0xFFFFFFFF) are not a truncation.
    """
    m = _DATA_LINE.search(handle.extra_info or "")
    if m is None:
        return
    declared, actual = int(m.group(1)), int(m.group(2))
    if 0 < declared < 0xFFFFFFF0 and declared > actual:
        raise DecodeError(
            f"{p}: truncated: the header declares {declared} bytes of audio, "
            f"the file holds {actual}"
        )


#: The tags by which an MP3's first frame states the stream's length (LAME and Xing
#: write ``Info``/``Xing``, Fraunhofer ``VBRI``); without one, libsndfile's length is
#: mpg123's estimate from the file size and the first frame's bit rate.
_MP3_LENGTH_TAGS = (b"Xing", b"Info", b"VBRI")
#: An MP3 that decodes this much shorter than its stated length (frames; or 1 % of
#: it, if more) was cut short: encoder delay and padding account for about 2,000.
MP3_SHORT_FRAMES = 4608


def _mp3_states_length(p: Path) -> bool:
    """Whether the MP3's first frame carries a length tag (:data:`_MP3_LENGTH_TAGS`),
    so that the length libsndfile reports is the encoder's count, not a guess."""
    try:
        with open(p, "rb") as f:
            head = f.read(10)
            start = 0
            if head[:3] == b"ID3" and len(head) == 10:  # ID3v2: a syncsafe size
                size = 0
                for b in head[6:10]:
                    size = (size << 7) | (b & 0x7F)
                start = 10 + size + (10 if head[5] & 0x10 else 0)
            f.seek(start)
            data = f.read(4096)
    except OSError:
        return False
    for i in range(len(data) - 1):
        if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0:  # the first frame's sync
            frame = data[i : i + 200]
            return any(tag in frame for tag in _MP3_LENGTH_TAGS)
    return False


def _refuse_short_mp3(handle: sf.SoundFile, p: Path, decoded: int) -> None:
    """An MP3 whose first frame states a length (:func:`_mp3_states_length`) and that
    decodes well short of it was cut short: mpg123 stops at the end of the data without
    an error, and a master of part of a song would be silently wrong."""
    stated = int(handle.frames)
    if handle.format != "MP3" or decoded >= stated - max(MP3_SHORT_FRAMES, stated // 100):
        return
    if _mp3_states_length(p):
        sr = handle.samplerate
        raise DecodeError(
            f"{p}: truncated: its header states {stated / sr:.1f} s of audio, "
            f"the file holds {decoded / sr:.1f} s (the file was cut short)"
        )


#: Where each channel of WAV's order (FL FR FC LFE BL BR SL SR, as WAVEFORMATEXTENSIBLE
#: numbers them, and as FLAC and this tool's meter take them) sits in an Ogg Vorbis or
#: Opus stream, by channel count (Vorbis I spec, 4.3.9; Opus channel mapping family 1
#: uses the same orders): 3 is L C R, 5 FL C FR RL RR, 5.1 FL C FR RL RR LFE, 6.1
#: FL C FR SL SR RC LFE (WAV: FL FR FC LFE BC SL SR), 7.1 FL C FR SL SR RL RR LFE.
#: libsndfile hands the stream's order through, so a 5.1 Ogg file was measured with a
#: surround channel taken for the LFE and mastered into FLAC with its centre in the
#: right speaker (sixth sweep). 1, 2 and 4 channels are in WAV's order already.
VORBIS_TO_WAV = {
    3: (0, 2, 1),
    5: (0, 2, 1, 3, 4),
    6: (0, 2, 1, 5, 3, 4),
    7: (0, 2, 1, 6, 5, 3, 4),
    8: (0, 2, 1, 7, 5, 6, 3, 4),
}


def wav_channel_order(container: str, channels: int) -> np.ndarray | None:
    """The rows that put a file's channels in WAV order, or None when they are already
    (every container but Ogg, whose Vorbis and Opus streams have an order of their own)."""
    order = VORBIS_TO_WAV.get(channels) if container.upper() == "OGG" else None
    return None if order is None else np.array(order)


def iter_blocks(
    path: str | os.PathLike, *, block_frames: int = BLOCK_FRAMES, dtype: str = "float64"
) -> Iterator[np.ndarray]:
    """Yield the file as ``(channels, n)`` blocks of ``dtype``, opened read-only.

    ``dtype="float32"`` is the decoders' own precision (what a decoded track is kept
    in); the DSP converts each block to float64, which gives the same values as
    decoding to float64 directly.

    Raises :class:`DecodeError` for a corrupt or truncated stream and
    :class:`AudioError` for NaN/inf samples (float files can hold them).
    """
    p = Path(path)
    try:
        handle = sf.SoundFile(sf_path(p), mode="r")
    except Exception as exc:
        raise DecodeError(f"{p}: not a readable audio file ({_reason(exc)})") from None
    with handle:
        _refuse_truncated(handle, p)
        order = wav_channel_order(str(handle.format), handle.channels)
        total = 0
        while True:
            try:
                data = handle.read(block_frames, dtype=dtype, always_2d=True)
            except Exception as exc:
                raise DecodeError(
                    f"{p}: decoding failed after {total} frames ({_reason(exc)}); "
                    "the file is corrupt or truncated"
                ) from None
            if data.shape[0] == 0:
                break
            total += data.shape[0]
            # rows in WAV order: fancy indexing makes the contiguous copy by itself
            block = np.ascontiguousarray(data.T) if order is None else data.T[order]
            check_samples(block, where=str(p))
            yield block
            if data.shape[0] < block_frames:
                break
        if total == 0:
            raise DecodeError(f"{p}: decoded no audio frames (empty or truncated)")
        _refuse_short_mp3(handle, p, total)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a whole file as ``(audio (channels, n) float64, sample_rate)``."""
    info = probe(path)
    blocks = list(iter_blocks(path))
    audio = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return np.ascontiguousarray(audio), info.sample_rate


#: Most channels an output format holds (FLAC's frame header has 3 bits for them).
OUTPUT_MAX_CHANNELS = {"flac": 8}


def check_output_channels(fmt: str, channels: int, sample_rate: int | None = None) -> None:
    """:class:`OutputError` when ``fmt`` cannot hold ``channels`` channels, or (given)
    ``sample_rate``: said before the track is decoded, not by the encoder once it is
    rendered (a 96,001 Hz source was decoded and processed, then failed with
    "problem with initialization of the flac decoder": sixth sweep)."""
    most = OUTPUT_MAX_CHANNELS.get(fmt)
    if most is not None and channels > most:
        raise OutputError(
            f"{fmt.upper()} holds at most {most} channels and this file has {channels}: "
            "master it with --format wav"
        )
    if fmt == "flac" and sample_rate is not None and not flac_rate_ok(sample_rate):
        raise OutputError(
            f"FLAC (as libFLAC writes it, its streamable subset) cannot hold {sample_rate} Hz: "
            "above 65,535 Hz a rate must be a multiple of 10; master it with --format wav"
        )


def flac_rate_ok(sample_rate: int) -> bool:
    """Whether a FLAC frame header can state ``sample_rate``: in Hz up to 65,535, in
    tens of Hz up to 655,350 (the FLAC format's sample rate codes 13 and 14)."""
    return sample_rate <= 65535 or (sample_rate % 10 == 0 and sample_rate <= 655350)


def output_subtype(fmt: str, bit_depth: str) -> str:
    """soundfile subtype for ``fmt`` and ``bit_depth``; :class:`ParameterError` if invalid."""
    if fmt not in OUTPUT_SUBTYPES:
        raise ParameterError(
            f"format must be one of {', '.join(sorted(OUTPUT_SUBTYPES))}, got {fmt!r}"
        )
    depths = OUTPUT_SUBTYPES[fmt]
    if bit_depth not in depths:
        raise ParameterError(
            f"bit depth {bit_depth!r} is not available for {fmt}: choose one of "
            f"{', '.join(sorted(depths))}"
            + (" (use --format wav for 32-bit float)" if fmt == "flac" else "")
        )
    return depths[bit_depth]


class Quantizer:
    """Float to integer PCM with TPDF dither for 16-bit output.

    TPDF dither (the difference of two uniform variables, ±1 LSB peak) decorrelates the
    16-bit quantisation error from the signal. 24-bit is rounded without dither (its
    error sits near -144 dBFS) and 32-bit float is written as is. The generator is
    seeded per track so re-runs write identical files.
    """

    #: The bit depths a master can have, from ``OUTPUT_SUBTYPES`` (which says which
    #: format takes which).
    BIT_DEPTHS = tuple(sorted({d for depths in OUTPUT_SUBTYPES.values() for d in depths}))

    def __init__(self, bit_depth: str, *, seed: int = 0) -> None:
        if bit_depth not in self.BIT_DEPTHS:  # 24 (an int), "32", "8" came back as float
            raise ParameterError(
                f"bit_depth must be one of {', '.join(self.BIT_DEPTHS)} (a str), got {bit_depth!r}"
            )
        self.bit_depth = bit_depth
        self._rng = np.random.default_rng(seed)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """``block`` (channels, n) float64 -> (n, channels) array soundfile writes."""
        return self.quantize(block)[0]

    def quantize(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pcm, back)``: the (n, channels) array soundfile writes and, from the same
        pass, what a reader will decode from it (the after-measurement's input).

        16/24-bit: ``floor(x * 2**(bits-1) (+ dither) + 0.5)``, clipped to the format's
        range (:func:`kernels.quantize.quantize_into`); 24-bit values sit in the top
        bits of an int32, as soundfile takes them for PCM_24.
        """
        x = np.ascontiguousarray(block, dtype=np.float64)
        if self.bit_depth not in ("16", "24"):
            pcm = np.ascontiguousarray(x.T, dtype=np.float32)
            return pcm, self.as_float(pcm)
        from .kernels.quantize import quantize_into

        ch, n = x.shape
        if self.bit_depth == "16":
            shape = (n, ch)
            dither = self._rng.random(shape) - self._rng.random(shape)
            pcm = np.empty(shape, dtype=np.int16)
            scale, shift = 32768.0, 0
        else:
            dither = np.zeros((0, 0))
            pcm = np.empty((n, ch), dtype=np.int32)
            scale, shift = 8388608.0, 8
        back = np.empty((ch, n))
        quantize_into(x, scale, dither, shift, pcm, back)
        return pcm, back

    def as_float(self, pcm: np.ndarray) -> np.ndarray:
        """What a reader will decode from ``pcm``: (channels, n) float64."""
        if pcm.dtype == np.int16:
            return np.ascontiguousarray(pcm.T / 32768.0)
        if pcm.dtype == np.int32:
            return np.ascontiguousarray((pcm >> 8).T / 8388608.0)
        return np.ascontiguousarray(pcm.T, dtype=np.float64)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    avail = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return avail * st.f_frsize


#: A write that fails with less free space than this is reported as a full disk
#: (libsndfile says only "System error.") even when the probe cannot tell.
FULL_DISK_BYTES = 1024 * 1024
#: What :func:`_space_refused` asks the filesystem for after a failed write.
PROBE_BYTES = 64 * 1024


def _space_refused(folder: Path) -> int | None:
    """``ENOSPC`` or ``EDQUOT`` when the filesystem refuses :data:`PROBE_BYTES` more in
    ``folder`` now, else None. Asked, not computed from ``statvfs``: ext4 keeps blocks
    back even from root (its reserved clusters, 16 MiB on a small volume), so a volume
    that refuses writes can still show megabytes free."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".auralis-probe-", dir=folder)
    except OSError as exc:  # no room even for the probe's inode
        return exc.errno if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None
    fallocate = getattr(os, "posix_fallocate", None)  # not on macOS
    try:
        try:
            if fallocate is None:
                raise OSError(errno.ENOSYS, "no posix_fallocate")
            fallocate(fd, 0, PROBE_BYTES)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return exc.errno
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return None
            os.write(fd, bytes(PROBE_BYTES))  # a filesystem (or system) without fallocate
            os.fsync(fd)
        return None
    except OSError as exc:
        return exc.errno if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _write_failure(path: Path, exc: BaseException, action: str) -> OutputError:
    """An :class:`OutputError` in plain words; ``no space left on device`` (or ``disk
    quota exceeded``) when it is, though libsndfile reports that as "System error."."""
    if isinstance(exc, OSError) and exc.errno is not None:
        text = exc.strerror or str(exc)
        reason = text[:1].lower() + text[1:]
    else:
        refused = _disk_full(path.parent)
        reason = os.strerror(refused).lower() if refused else _reason(exc)
    return OutputError(f"{path}: {action} failed: {reason}")


def _disk_full(folder: Path) -> int | None:
    """``ENOSPC`` or ``EDQUOT`` when ``folder``'s filesystem is full for this user (it
    refuses :data:`PROBE_BYTES`, or has less than :data:`FULL_DISK_BYTES` free), else
    None: what a write that failed without an errno most likely met."""
    refused = _space_refused(folder)
    free = _free_bytes(folder)
    if refused is None and free is not None and free < FULL_DISK_BYTES:
        refused = errno.ENOSPC
    return refused


@dataclass(frozen=True)
class Written:
    """What an output is on disk once committed: the journal keeps it to recognise the
    file later (``bytes`` and ``mtime_ns``) and its SHA-256 for whoever wants to check."""

    bytes: int
    mtime_ns: int
    sha256: str

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "mtime_ns": self.mtime_ns, "sha256": self.sha256}


#: The most bytes a RIFF (WAV) header can size: larger masters go in RF64 (EBU Tech
#: 3306), which libsndfile, ffmpeg, sox and DAWs read; its name stays ``.wav``.
RIFF_MAX_BYTES = 2**32 - 1
#: Bytes per sample of the WAV subtypes this tool writes.
_WAV_SAMPLE_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}


def wav_container(frames: int | None, channels: int, subtype: str) -> str:
    """``"WAV"``, or ``"RF64"`` when ``frames`` of ``channels`` would pass
    :data:`RIFF_MAX_BYTES` (a header's few kB of room kept): a plain WAV of 4.4 GB was
    written with its sizes at their maximum and read back 10 s short, reported ok
    (sixth sweep)."""
    if frames is None:
        return "WAV"
    data = frames * channels * _WAV_SAMPLE_BYTES.get(subtype, 8)
    return "RF64" if data > RIFF_MAX_BYTES - (1 << 16) else "WAV"


def _check_read_back(tmp: Path, final: Path, frames: int) -> None:
    """The written file, read back by its header, holds every frame written:
    :class:`OutputError` if not (a container that could not size it, say)."""
    try:
        got = sf.info(sf_path(tmp)).frames
    except Exception as exc:
        got, unread = None, exc
    if got != frames and (refused := _disk_full(final.parent)):
        # libFLAC's encoder takes the samples and loses what the disk refused at its
        # close, which libsndfile does not report: the file reads back with no length
        # (2**63 - 1 frames). A full disk must be said as one: it stops the run.
        raise OutputError(f"{final}: finishing the audio failed: {os.strerror(refused).lower()}")
    if got is None:
        raise OutputError(
            f"{final}: the written audio cannot be read back ({_reason(unread)})"
        ) from None
    if got != frames:
        raise OutputError(
            f"{final}: the written audio reads back as {got} frames of the {frames} written; "
            "not kept"
        )


class OutputFile:
    """One output, written under temporary names and put in place once, durably.

    Each render pass writes a fresh temporary (``.NAME.XXXX.partial`` in the output's
    folder) through :meth:`pass_writer`; the previous pass's temporary is removed when
    the next one completes. :meth:`commit` then finishes the last one in this order:
    ``finish(temporary)`` (tags and cover art go into the temporary, never the final
    file), fsync, rename into place, fsync the folder. Only after that does the batch
    engine journal it. Leaving the context without a commit removes every temporary.

    ``replace=False`` never replaces a file: the commit hard-links the temporary to the
    final name, which fails if anything appeared there meanwhile (where the filesystem
    has no hard links, a check right before the rename stands in).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        sample_rate: int,
        channels: int,
        fmt: str,
        subtype: str,
        replace: bool = False,
        expect: dict | None = None,
        keep_existing: bool = False,
        frames: int | None = None,
        source: str | os.PathLike | None = None,
    ) -> None:
        self.path = Path(path)
        #: The input this is the master of: never replaced by it, whatever the plan
        #: decided (OUT reached by another path than the input: a bind mount).
        self.source = source
        self.sample_rate = sample_rate
        self.channels = channels
        self.fmt = fmt
        self.subtype = subtype
        #: libsndfile's container: RF64 for a WAV master of ``frames`` that a RIFF
        #: header cannot size (:func:`wav_container`)
        self.container = wav_container(frames, channels, subtype) if fmt == "wav" else fmt.upper()
        self.replace = replace
        self.expect = expect
        #: Whatever is at ``path`` when the output takes its name is kept aside
        #: (with ``replace``): an edited master of ours.
        self.keep_existing = keep_existing
        #: Where the file found at ``path`` went, if it was not what ``expect`` says
        #: (or ``keep_existing``).
        self.kept_aside: Path | None = None
        #: set by :meth:`commit` when the master took its name but its folder could not
        #: be synced: in place and journaled, with this said in its record
        self.unsynced: str | None = None
        self.temporary_path: Path | None = None  # the last completed pass
        self._open_tmp: Path | None = None
        self._started = time.time()

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.discard()

    def _new_temporary(self) -> Path:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(100):
                tmp = temporary_name(self.path)
                try:  # the umask's mode, as the master will have (0600 hid the library)
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_BINARY
                    fd = os.open(tmp, flags, 0o666)
                except FileExistsError:
                    continue
                os.close(fd)
                return tmp
            raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.path))
        except OSError as exc:
            raise _write_failure(self.path, exc, "creating the output") from None

    @contextlib.contextmanager
    def pass_writer(self) -> Iterator[Callable[[np.ndarray], None]]:
        """Open a temporary for one render pass; yields ``write(pcm)``."""
        tmp = self._new_temporary()
        self._open_tmp = tmp
        handle = None
        try:
            try:
                handle = sf.SoundFile(
                    sf_path(tmp),
                    mode="w",
                    samplerate=self.sample_rate,
                    channels=self.channels,
                    format=self.container,
                    subtype=self.subtype,
                )
            except Exception as exc:
                raise _write_failure(self.path, exc, "creating the output") from None
            count = [0]

            def write(pcm: np.ndarray) -> None:
                try:
                    handle.write(pcm)
                except Exception as exc:
                    raise _write_failure(self.path, exc, "writing audio") from None
                count[0] += pcm.shape[0]  # (frames, channels)

            yield write
            try:
                handle.close()  # the encoder's last frames and header (STREAMINFO) land here
            except Exception as exc:
                raise _write_failure(self.path, exc, "finishing the audio") from None
            _check_read_back(tmp, self.path, count[0])
        except BaseException:
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
            _unlink(tmp)
            self._open_tmp = None
            raise
        self._open_tmp = None
        if self.temporary_path is not None:
            _unlink(self.temporary_path)
        self.temporary_path = tmp

    def commit(
        self,
        finish: Callable[[Path], None] | None = None,
        *,
        intent: Callable[[Written], None] | None = None,
    ) -> Written:
        """:meth:`prepare` then :meth:`publish`: tags (``finish``), fsync, ``intent``
        (told what the file is, before it takes its name), rename into place, fsync the
        folder (a failure of that last step leaves the master in place and sets
        :attr:`unsynced`).

        Raises
        ------
        OutputError
            Nothing was written yet, a file appeared at the final name (with
            ``replace=False``), or the disk refused (``no space left on device``).
        """
        written = self.prepare(finish, intent=intent)
        self.publish()
        return written

    def prepare(
        self,
        finish: Callable[[Path], None] | None = None,
        *,
        intent: Callable[[Written], None] | None = None,
    ) -> Written:
        """Every step of :meth:`commit` that can fail before the output takes its name:
        tags, fsync, checksum, ``intent``. An album prepares all its tracks before any
        is published, so a full disk while tagging one leaves the others unpublished."""
        tmp = self.temporary_path
        if tmp is None:
            raise OutputError(f"{self.path}: nothing was written")
        if finish is not None:
            try:
                finish(tmp)
            except OutputError as exc:  # name the output, not its temporary
                raise OutputError(str(exc).replace(str(tmp), str(self.path))) from exc.__cause__
        try:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            digest = _sha256_file(tmp)
            st = os.stat(tmp)  # a rename keeps size and time
            written = Written(bytes=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest)
            if intent is not None:
                intent(written)
        except OSError as exc:
            raise _write_failure(self.path, exc, "committing the output") from None
        return written

    def publish(self) -> None:
        """The prepared temporary takes its name (never over a file that appeared
        there, unless ``replace``), then the folder is synced (see :meth:`commit`)."""
        tmp = self.temporary_path
        if tmp is None:
            raise OutputError(f"{self.path}: nothing was written")
        try:
            self._rename(tmp)
            self.temporary_path = None
        except OSError as exc:
            raise _write_failure(self.path, exc, "committing the output") from None
        try:
            fsync_dir(self.path.parent)
        except OSError as exc:
            # The master is complete and in place (the next run would journal it from
            # its commit note anyway): reported as written, with the doubt said.
            reason = (exc.strerror or str(exc)).lower()
            self.unsynced = (
                f"its folder could not be synced after the master took its name ({reason}): "
                "it is in place, but a power cut now could lose it"
            )
        self._sweep_stale()

    def _rename(self, tmp: Path) -> None:
        if self.source is not None and same_entry(self.path, self.source):
            raise OutputError(
                f"{self.path}: refused: it is the source {self.source}, reached by another "
                "path; not replaced (choose an --out that is not the input folder)"
            )
        if self.replace and self.keep_existing:
            if os.path.lexists(self.path):
                self.kept_aside = keep_aside(self.path)  # edited since we wrote it
            try:  # the name is free now: a file that appears there meanwhile is the user's
                move_no_clobber(tmp, self.path)
            except OSError as exc:
                raise self._not_placed(exc) from None
            return
        if self.replace:
            if self.expect is not None and not is_recorded(self.path, self.expect):
                # changed since it was journaled (by hand, during this run, or a forged
                # entry): not ours to destroy
                self.kept_aside = keep_aside(self.path)
            os.replace(tmp, self.path)
            return
        try:
            move_no_clobber(tmp, self.path)
        except FileExistsError:
            raise OutputError(
                f"{self.path}: refused: a file appeared there during the run; not replaced"
            ) from None

    def _not_placed(self, exc: OSError) -> OutputError:
        """The new master could not take the name its edited one was moved from: that
        one goes back if it can (else the error says where it is)."""
        aside, where = self.kept_aside, ""
        if aside is not None:
            try:
                move_no_clobber(aside, self.path)
                self.kept_aside = None
            except OSError:
                where = f"; its edited master is kept aside as {aside.name}"
        if isinstance(exc, FileExistsError):
            why = "refused: a file appeared there during the run; not replaced"
        else:
            why = f"committing the output failed ({(exc.strerror or str(exc)).lower()})"
        return OutputError(f"{self.path}: {why}{where}")

    def discard(self) -> None:
        """Remove every temporary this output still has."""
        for tmp in (self._open_tmp, self.temporary_path):
            if tmp is not None:
                _unlink(tmp)
        self._open_tmp = self.temporary_path = None

    def _sweep_stale(self) -> None:
        """Remove temporaries of this output left by a run that was killed (kill -9,
        power loss) before it could clean up: those last written before we started."""
        for stale in partials_of(self.path):
            with contextlib.suppress(OSError):
                if stale.stat().st_mtime < self._started:
                    stale.unlink()


#: ``.`` + ``.`` + mkstemp's 8 random characters + ``.partial``.
_PARTIAL_EXTRA_BYTES = 18
_PARTIAL_NAME = re.compile(r"^(\..+\.)([0-9a-f]{4})([0-9a-f]{4})\.partial$")


def _name_check(prefix: str, token: str) -> str:
    """The last four characters of a temporary's eight: a digest of its prefix and its
    four random ones, so that a file of the user's of that shape (``.a.flac.notes123
    .partial``) is not taken for one of ours and removed (a review's), and a name of
    ours read back from disk proves itself."""
    data = b"auralis-batch temporary\0" + os.fsencode(prefix + token)
    return hashlib.sha256(data).hexdigest()[:4]


def temporary_name(path: Path) -> Path:
    """A fresh name for a temporary of output ``path``, beside it (not created):
    ``.NAME.XXXXYYYY.partial``, four random hex digits and their check."""
    prefix = partial_prefix(path)
    token = secrets.token_hex(2)
    return path.parent / f"{prefix}{token}{_name_check(prefix, token)}.partial"


def partial_prefix(path: Path) -> str:
    """``.NAME.``, with NAME cut (on a character boundary) so that the temporary's
    name fits :data:`MAX_NAME_BYTES` even when the output's own name nearly does."""
    return f".{_cut_name(path.name, MAX_NAME_BYTES - _PARTIAL_EXTRA_BYTES)}."


def _cut_name(name: str, budget: int) -> str:
    """``name`` cut to at most ``budget`` bytes, at the start of a UTF-8 character
    (continuation bytes are ``10xxxxxx``); a name that is not UTF-8 keeps its bytes."""
    raw = os.fsencode(name)
    if len(raw) <= budget:
        return name
    cut = budget
    while cut > 0 and raw[cut] & 0xC0 == 0x80:
        cut -= 1
    return os.fsdecode(raw[:cut])


def is_partial_name(name: str) -> bool:
    """True for a name this tool gives its temporaries (:func:`temporary_name`)."""
    m = _PARTIAL_NAME.match(name)
    return m is not None and m.group(3) == _name_check(m.group(1), m.group(2))


def is_recorded(path: Path, expect: dict) -> bool:
    """Whether ``path`` is missing, or exactly the recorded file (size, mtime, then
    SHA-256, read without following a link); a file that cannot be read is not."""
    return recorded_state(path, expect) in ("missing", "same")


def recorded_state(path: Path, expect: dict) -> str:
    """``path`` against a recorded identity: ``"missing"``, ``"same"`` (size, mtime and
    SHA-256, read without following a link), ``"different"``, or ``"unreadable"`` (an
    error other than its absence: cannot tell now)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a folder on the way is gone
        return "missing"
    except OSError:
        return "unreadable"
    if not stat.S_ISREG(st.st_mode):
        return "different"
    if st.st_size != expect.get("bytes") or st.st_mtime_ns != expect.get("mtime_ns"):
        return "different"
    try:
        same = _sha256_file(path, follow_links=False) == expect.get("sha256")
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError:
        return "unreadable"
    return "same" if same else "different"


def keep_aside(path: Path, *, dry_run: bool = False) -> Path:
    """Rename ``path`` to a free ``NAME.altered-YYYYmmdd-HHMMSS[-N]`` beside it (never
    over anything); ``dry_run``: only the name it would take."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        suffix = f".altered-{stamp}" + (f"-{n}" if n else "")
        aside = path.with_name(_cut_name(path.name, MAX_NAME_BYTES - len(suffix)) + suffix)
        if dry_run:
            return aside
        try:
            move_no_clobber(path, aside)
        except FileExistsError:
            continue
        return aside
    raise OutputError(f"{path}: cannot find a free name to keep the changed file")


def kept_aside_since(path: Path, since: float) -> Path | None:
    """The file :func:`keep_aside` renamed ``path`` to at or after ``since``
    (``time.time()``; a rename sets the file's ctime), the latest if several, or None:
    its name's stamp would trust the clock and the time zone, and a long NAME is cut in
    it."""
    prefix = _cut_name(path.name, MAX_NAME_BYTES - len(".altered-YYYYmmdd-HHMMSS-NNN"))
    found: list[tuple[float, str]] = []
    try:
        with os.scandir(path.parent) as entries:
            for e in entries:
                if e.name.startswith(prefix) and ".altered-" in e.name[len(prefix) :]:
                    ctime = e.stat(follow_symlinks=False).st_ctime
                    if ctime >= since:
                        found.append((ctime, e.name))
    except OSError:
        return None
    return path.parent / max(found)[1] if found else None


#: How the audio this tool writes begins: FLAC's stream marker, WAV's RIFF or RF64.
_OUTPUT_MAGIC = (b"fLaC", b"RIFF", b"RF64")


def is_our_temporary(path: str | os.PathLike) -> bool:
    """A temporary of this tool's, by name (:func:`is_partial_name`) and by content: a
    regular file that starts as the audio it writes, or holds less than that (a killed
    run had just created it). A user's file of that shape (notes, a link, a folder) is
    not one, and is never removed."""
    return is_partial_name(os.path.basename(path)) and _starts_as_output(path)


#: The name builds before 2026-12-02 gave their temporaries (mkstemp's characters),
#: which a file of the user's could have too.
_LEGACY_PARTIAL_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")


def is_legacy_temporary(path: str | os.PathLike) -> bool:
    """A file an earlier build's killed run may have left (its name's shape, the audio
    this tool writes), which this build cannot prove its own: said, never removed."""
    name = os.path.basename(path)
    return (
        bool(_LEGACY_PARTIAL_NAME.match(name))
        and not is_partial_name(name)
        and _starts_as_output(path)
    )


def _starts_as_output(path: str | os.PathLike) -> bool:
    """A regular file that starts as the audio this tool writes, or holds less."""
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_BINARY)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, 4)
    except OSError:
        return False
    finally:
        os.close(fd)
    return len(head) < 4 or head in _OUTPUT_MAGIC


def partials_of(path: Path) -> list[Path]:
    """The temporaries of output ``path`` on disk now (:func:`is_our_temporary`)."""
    pattern = glob.escape(partial_prefix(path)) + "*.partial"
    return [p for p in path.parent.glob(pattern) if is_our_temporary(p)]


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


#: MPEG audio extensions libsndfile decodes when it has its MPEG support (layers I-III).
MPEG_EXTENSIONS = frozenset({"mp3", "mp2", "mp1", "mpa"})
#: Names of libsndfile formats that are no file's audio a folder scan should take:
#: ``raw`` is header-less (it needs a sample rate and layout given by hand, so every
#: ``.raw`` file in a folder failed and made the run's exit status 1).
_NOT_SCANNED = frozenset({"raw"})
#: Extensions in use for a libsndfile format whose own name is another: Broadcast WAV
#: (EBU Tech 3285, what field recorders and DAWs write), ``.wave``, and Sun/NeXT ``.snd``.
_EXTENSION_ALIASES = {"bwf": "WAV", "wave": "WAV", "snd": "AU"}


def readable_extensions() -> frozenset[str]:
    """Lower-case file extensions libsndfile can decode on this machine, as a folder
    scan takes them (a file named on the command line is tried whatever its name)."""
    formats = sf.available_formats()
    exts = {k.lower() for k in formats} - _NOT_SCANNED
    exts |= {"wav", "flac", "ogg", "oga", "opus", "aiff", "aif", "aifc", "caf", "w64"}
    # names files of those formats go by, beside the formats' own (a folder's .bwf
    # takes were "not an audio file this build can read": sixth sweep)
    exts |= {alias for alias, fmt in _EXTENSION_ALIASES.items() if fmt in formats}
    exts -= MPEG_EXTENSIONS
    if "MP3" in formats:
        exts |= MPEG_EXTENSIONS
    return frozenset(exts)
