"""The one audio layout and the I/O edge.

Inside auralis-batch audio is always ``(channels, samples)``, C-contiguous float64.
:func:`as_audio` is the single place that validates and converts (librosa's
``valid_audio`` idea); files are read and written only here, in blocks, so memory does
not grow with track length. Writes are atomic: a temporary name in the destination
folder, then ``os.replace``, so a crash never leaves a half-written file under its
final name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError, DecodeError, OutputError, ParameterError

#: Frames per block when streaming files (about 1.5 s at 44.1 kHz).
BLOCK_FRAMES = 65536

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
    if arr.dtype.kind not in "fiu":
        raise AudioError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise AudioError(f"{name}: expected shape (channels, samples), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[0] > 64:
        raise AudioError(f"{name}: channels must be between 1 and 64, got {arr.shape[0]}")
    if arr.shape[0] > arr.shape[1] and arr.shape[1] > 0:
        raise AudioError(
            f"{name}: shape {arr.shape} has more channels than samples; "
            "audio must be (channels, samples): transpose a (samples, channels) array"
        )
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if finite and not np.isfinite(out).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return out


def check_finite_block(block: np.ndarray, *, where: str) -> None:
    """Raise :class:`AudioError` if a decoded block holds NaN or inf."""
    if not np.isfinite(block).all():
        raise AudioError(f"{where}: contains NaN or infinite samples")


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
        raise DecodeError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise DecodeError(f"{p}: file is empty (0 bytes)")
    try:
        info = sf.info(str(p))
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError
        raise DecodeError(f"{p}: not a readable audio file ({_reason(exc)})") from None
    if info.frames <= 0:
        raise DecodeError(f"{p}: holds no audio frames")
    if info.samplerate < 8000 or info.samplerate > 384000:
        raise DecodeError(f"{p}: sample rate {info.samplerate} Hz outside 8000-384000 Hz")
    return AudioInfo(
        path=p,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


_OPENING = re.compile(r"^Error opening .*?: ")


def _reason(exc: BaseException) -> str:
    """The library's last line, without libsndfile's "Error opening '<path>': " (our
    messages name the file already)."""
    text = str(exc).strip().splitlines()
    return _OPENING.sub("", text[-1]) if text else type(exc).__name__


_DATA_LINE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


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


def iter_blocks(
    path: str | os.PathLike, *, block_frames: int = BLOCK_FRAMES
) -> Iterator[np.ndarray]:
    """Yield the file as float64 ``(channels, n)`` blocks, opened read-only.

    Raises :class:`DecodeError` for a corrupt or truncated stream and
    :class:`AudioError` for NaN/inf samples (float files can hold them).
    """
    p = Path(path)
    try:
        handle = sf.SoundFile(str(p), mode="r")
    except Exception as exc:
        raise DecodeError(f"{p}: not a readable audio file ({_reason(exc)})") from None
    with handle:
        _refuse_truncated(handle, p)
        total = 0
        while True:
            try:
                data = handle.read(block_frames, dtype="float64", always_2d=True)
            except Exception as exc:
                raise DecodeError(
                    f"{p}: decoding failed after {total} frames ({_reason(exc)}); "
                    "the file is corrupt or truncated"
                ) from None
            if data.shape[0] == 0:
                break
            total += data.shape[0]
            block = np.ascontiguousarray(data.T)
            check_finite_block(block, where=str(p))
            yield block
            if data.shape[0] < block_frames:
                break
        if total == 0:
            raise DecodeError(f"{p}: decoded no audio frames (empty or truncated)")


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a whole file as ``(audio (channels, n) float64, sample_rate)``."""
    info = probe(path)
    blocks = list(iter_blocks(path))
    audio = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return np.ascontiguousarray(audio), info.sample_rate


def output_subtype(fmt: str, bit_depth: str) -> str:
    """soundfile subtype for ``fmt`` and ``bit_depth``; :class:`ParameterError` if invalid."""
    if fmt not in OUTPUT_SUBTYPES:
        raise ParameterError(f"format must be one of {sorted(OUTPUT_SUBTYPES)}, got {fmt!r}")
    depths = OUTPUT_SUBTYPES[fmt]
    if bit_depth not in depths:
        raise ParameterError(
            f"bit depth {bit_depth!r} is not available for {fmt}: choose one of "
            f"{sorted(depths)}" + (" (use --format wav for 32-bit float)" if fmt == "flac" else "")
        )
    return depths[bit_depth]


class Quantizer:
    """Float to integer PCM with TPDF dither for 16-bit output.

    TPDF dither (the difference of two uniform variables, ±1 LSB peak) decorrelates the
    16-bit quantisation error from the signal. 24-bit is rounded without dither (its
    error sits near -144 dBFS) and 32-bit float is written as is. The generator is
    seeded per track so re-runs write identical files.
    """

    def __init__(self, bit_depth: str, *, seed: int = 0) -> None:
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


class AtomicWriter:
    """Write a sound file under a temporary name and rename it into place on success.

    The temporary file lives in the destination folder (so the rename is atomic on
    one filesystem) and starts with a dot and ends in ``.partial``; on any error it is
    removed. Use as a context manager; call :meth:`write` with PCM from
    :class:`Quantizer`.
    """

    def __init__(
        self, path: str | os.PathLike, *, sample_rate: int, channels: int, fmt: str, subtype: str
    ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.fmt = fmt
        self.subtype = subtype
        self._tmp: Path | None = None
        self._sf: sf.SoundFile | None = None
        self._started = 0.0

    def __enter__(self) -> AtomicWriter:
        self._started = time.time()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent
            )
            os.close(fd)
            self._tmp = Path(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the library
            self._sf = sf.SoundFile(
                tmp,
                mode="w",
                samplerate=self.sample_rate,
                channels=self.channels,
                format=self.fmt.upper(),
                subtype=self.subtype,
            )
        except Exception as exc:
            self._cleanup()
            raise OutputError(f"{self.path}: cannot create output ({_reason(exc)})") from None
        return self

    def write(self, pcm: np.ndarray) -> None:
        assert self._sf is not None
        try:
            self._sf.write(pcm)
        except Exception as exc:
            raise OutputError(f"{self.path}: write failed ({_reason(exc)})") from None

    @property
    def temporary_path(self) -> Path | None:
        return self._tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._cleanup()
            return
        try:
            assert self._sf is not None and self._tmp is not None
            self._sf.close()
            os.replace(self._tmp, self.path)
        except Exception as err:
            self._cleanup()
            raise OutputError(f"{self.path}: cannot finish output ({_reason(err)})") from None
        self._sweep_stale()

    def _sweep_stale(self) -> None:
        """Remove temporaries of this output left by a run that was killed (kill -9,
        power loss) before it could clean up: those last written before we started."""
        pattern = f".{glob.escape(self.path.name)}.*.partial"
        for stale in self.path.parent.glob(pattern):
            with contextlib.suppress(OSError):
                if stale.stat().st_mtime < self._started:
                    stale.unlink()

    def _cleanup(self) -> None:
        if self._sf is not None:
            with contextlib.suppress(Exception):
                self._sf.close()
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


def readable_extensions() -> frozenset[str]:
    """Lower-case file extensions libsndfile can decode on this machine."""
    exts = {k.lower() for k in sf.available_formats()}
    exts |= {"wav", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "aifc", "caf", "w64"}
    if "MP3" not in sf.available_formats():
        exts.discard("mp3")
    return frozenset(exts)
