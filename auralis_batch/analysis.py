"""Analysis of one track: loudness, fingerprint and tempo in one streamed pass, cached.

One decode feeds three consumers block by block: the BS.1770 meter, the fingerprint
analyser and a SHA-256 of the decoded PCM (the cache key, so re-tagging a file keeps
its fingerprint). With a warm cache an unchanged file is neither decoded nor hashed:
the cache maps (path, size, mtime, inode, ctime) to the content hash.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import (
    AudioInfo,
    as_audio,
    decode_dtype,
    iter_blocks,
    probe,
)
from .cache import PcmHasher, make_key
from .errors import AudioError, ParameterError, ParameterTypeError, given
from .identity import identity_or_none
from .limits import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, checked_sample_rate
from .recall import cached_record, recall
from .records import LOUDNESS_KEYS, TOP_LEVEL_LOUDNESS_KEYS
from .versions import (
    ANALYSIS_SAMPLE_RATE,
    CHANNEL_WEIGHTS_REVISION,
    CURVE_KEY,
    DEFAULT_TEMPO_BPM,
    FINGERPRINT_VERSION,
    SPARSE_SPECTRUM_KEY,
    SPECTRUM_KEY,
    WEIGHTS_KEY,
)

if TYPE_CHECKING:
    from .fingerprint import Fingerprint
    from .meter import Loudness

# The meter and the fingerprint (and with them Numba and the kernels) load when a file
# is measured: an analysis answered from the cache never pays for them.


def loudness_from_record(record: dict[str, Any]) -> Loudness:
    """Rebuild the source :class:`Loudness` from an analysis record (None -> -inf)."""
    from .meter import Loudness

    src = record.get("loudness", record)
    values = {}
    for k in LOUDNESS_KEYS:
        v = src.get(k)
        values[k] = -math.inf if v is None else float(v)
    if values["lra_lu"] == -math.inf:
        values["lra_lu"] = 0.0
    return Loudness(**values)


#: Blocks a decode-ahead thread may hold ready (each about 1.5 MB with its float64 copy).
AHEAD_DEPTH = 2


def _converted(blocks: Iterable[np.ndarray], hasher) -> Generator[np.ndarray, None, None]:
    """Each block hashed (when ``hasher``) and as C-contiguous float64."""
    for block in blocks:
        if hasher is not None:
            hasher.update(block)
        yield np.ascontiguousarray(block, dtype=np.float64)


def _ahead(
    items: Generator[np.ndarray, None, None], depth: int = AHEAD_DEPTH
) -> Iterator[np.ndarray]:
    """``items`` produced in a thread, up to ``depth`` ahead of the caller: decoding
    (libsndfile), hashing and the float64 copy release the GIL, so they run on a
    second core while the caller meters the block before. Whatever ``items`` raises
    (a corrupt file, a batch's deadline or stop) is raised here, in order; when the
    caller stops early (or is interrupted) the thread ends within a block and
    ``items`` is closed (its file with it)."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # handed to the caller, raised there
            put((end, exc))

    worker = threading.Thread(target=produce, name="auralis-decode-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = ready.get()
            if item is end:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        worker.join()
        items.close()


def _analyse_stream(
    blocks,
    sample_rate: int,
    channels: int,
    *,
    tempo: bool,
    hasher=None,
    fingerprint=True,
    ahead: bool = False,
):
    """Meter (and, unless ``fingerprint=False``, fingerprint and long-term spectrum) of
    one pass over ``blocks``: ``(loudness, fingerprint or None, frames, spectrum dB per
    third octave or None, loudness curve)``. ``ahead``: decode, hash and convert in a
    thread one block ahead (:func:`_ahead`; a run with a core to spare)."""
    from ._startup import load_numba_numpy_support

    load_numba_numpy_support()  # before the meter loads Numba's NumPy support
    from .fingerprint import FingerprintAnalyzer
    from .match import SPARSE_EVERY, LongTermSpectrum, spectrum_every
    from .meter import LoudnessMeter, loudness_curve

    meter = LoudnessMeter(sample_rate, channels)
    fp = FingerprintAnalyzer(sample_rate, channels, tempo=tempo) if fingerprint else None
    # Every frame when the record may serve a reference match (it is cached with the
    # fingerprint), and the sum of one chunk in SPARSE_EVERY beside it; for the report's
    # plot alone, that chunk only. The master's is taken on those chunks (engine).
    spectrum = LongTermSpectrum(
        sample_rate,
        channels,
        every=spectrum_every(fingerprint),
        subset_every=SPARSE_EVERY if fingerprint else None,
    )
    frames = 0
    converted = _converted(blocks, hasher)  # one float64 copy for every consumer
    for x in _ahead(converted) if ahead else converted:
        meter.process(x)
        downmix = fp.process(x) if fp is not None else None
        # the fingerprint's downmix of one or two channels is the spectrum's mid (through
        # its 2 Hz DC blocker: a few hundredths of a dB at 20-31.5 Hz)
        spectrum.process(x, mid=downmix if channels <= 2 else None)
        frames += x.shape[1]
        del x, downmix  # freed before the next block is decoded
    loud = meter.result()
    curve = loudness_curve(meter.gating_block_powers())
    spectra = {SPECTRUM_KEY: spectrum.levels_db()}
    sparse = spectrum.subset_levels_db()
    if sparse is not None:
        spectra[SPARSE_SPECTRUM_KEY] = sparse
    if fp is None:
        return loud, None, frames, spectra, curve
    finger = fp.finish(
        true_peak_dbtp=loud.true_peak_dbtp,
        integrated_lufs=loud.integrated_lufs,
        lra_lu=loud.lra_lu,
        short_term_lufs=meter.short_term_lufs(),
    )
    return loud, finger, frames, spectra, curve


def _record(
    path: str | None,
    info: AudioInfo | None,
    sample_rate: int,
    channels: int,
    frames: int,
    loud: Loudness,
    finger: Fingerprint | None,
    spectra: dict[str, list[float | None]] | None = None,
    curve: tuple[float, list[float | None]] | None = None,
) -> dict[str, Any]:
    """The analysis record; with no fingerprint, the default tempo and ``None``; the
    long-term spectra (``SPECTRUM_KEY``, ``SPARSE_SPECTRUM_KEY``) when there are."""
    rec: dict[str, Any] = {
        "path": path,
        "duration_s": round(frames / sample_rate, 3),
        "sample_rate": sample_rate,
        "channels": channels,
    }
    ld = loud.to_dict()
    for k in TOP_LEVEL_LOUDNESS_KEYS:
        rec[k] = ld[k]
    if finger is None:
        rec["tempo_bpm"], rec["tempo_confidence"], rec["fingerprint"] = DEFAULT_TEMPO_BPM, 0.0, None
        rec["tempo_candidates"] = []
    else:
        rec["tempo_bpm"] = round(finger.tempo_bpm, 2)
        rec["tempo_confidence"] = round(finger.tempo_confidence, 3)
        ranked = sorted(finger.tempo_candidates, key=lambda c: -c[1])  # best first
        rec["tempo_candidates"] = [
            {"bpm": round(b, 2), "score": float(f"{s:.4g}")} for b, s in ranked
        ]
        rec["fingerprint"] = finger.to_dict()
        rec["fingerprint"]["tempo_candidates"] = rec["tempo_candidates"]  # one order
        rec["fingerprint_version"] = FINGERPRINT_VERSION
    rec.update(spectra or {})
    if curve is not None:  # loudness over time, for the report's plots
        rec[CURVE_KEY] = {"step_s": curve[0], "lufs": curve[1]}
    rec["loudness"] = ld
    return rec


def analyze_file(
    path: str | os.PathLike,
    *,
    tempo: bool = True,
    cache=None,
    keep_blocks: list[np.ndarray] | None = None,
    hash_content: bool = True,
    fingerprint: bool = True,
    watch: Callable[[Iterable[np.ndarray]], Iterable[np.ndarray]] | None = None,
    decode_ahead: bool = False,
) -> dict[str, Any]:
    """Analyse one file (raises :class:`AuralisError` on bad input).

    ``cache`` is a :class:`~auralis_batch.cache.FingerprintCache` or ``None``. The
    returned record carries ``cached``: ``"memory"``, ``"disk"`` or ``False``.
    ``keep_blocks``: when the file is decoded for analysis, its blocks (in the
    decoder's precision, :func:`~auralis_batch.audio.decode_dtype`) are appended here
    (the caller masters from memory instead of decoding again).
    ``hash_content=False`` skips the PCM hash (``content_sha256``) and
    ``fingerprint=False`` the fingerprint (the record then has the default tempo and
    ``fingerprint`` None: what a fixed preset needs) when no cache is given; a cache
    always gets the hash, its key, and a whole record. ``decode_ahead``: decode in a
    thread one block ahead of the analysis (the same record, sooner, on a second
    core; for a run with a core to spare).

    Raises
    ------
    DecodeError
        The file is missing, empty, not audio, truncated or corrupt, or its sample
        rate is outside 8-384 kHz (the message names the file and the reason).
    AudioError
        The file holds NaN or infinite samples.
    TrackTimeoutError, RunAbandonedError
        Raised by a batch's ``watch`` (its deadline passed, its run is gone).
    ParameterTypeError
        ``path`` is not a str or path (an array: :func:`analyze_array`), or ``cache``
        is neither a cache nor a folder.
    """
    if not isinstance(path, (str, os.PathLike)):
        hint = (
            "for samples in memory use analyze_array(audio, sample_rate) "
            "(or analyze(audio, sample_rate=sr))"
            if isinstance(path, np.ndarray)
            else "give the path of an audio file, or samples as an array to "
            "analyze(audio, sample_rate=sr)"
        )
        raise ParameterTypeError(
            f"analyze_file: path must be a file's path (str or os.PathLike), got "
            f"{given(path)}: {hint}"
        )
    if isinstance(cache, (str, os.PathLike)):  # a cache folder: opened for this call
        from .cache import open_cache

        with open_cache(cache) as opened:
            return analyze_file(
                path,
                tempo=tempo,
                cache=opened,
                keep_blocks=keep_blocks,
                hash_content=hash_content,
                fingerprint=fingerprint,
                watch=watch,
                decode_ahead=decode_ahead,
            )
    check_cache(cache)
    t0 = time.perf_counter()
    p = Path(path)
    if cache is not None:
        hit = recall(cache, p, tempo=tempo)
        if hit is not None:
            return hit
    # the file as it is before it is read (:func:`_remember`)
    read_as = identity_or_none(p) if cache is not None else None
    info = probe(p)
    if cache is not None and cache.path_changed(p):
        # Seen before, changed since: most often a re-tag. Hash first (a decode pass,
        # no analysis) and look the audio up before analysing it.
        hasher = PcmHasher()
        for block in iter_blocks(p, dtype=decode_dtype(info)):
            hasher.update(block)
        content = hasher.hexdigest()
        hit = cached_record(cache, content, tempo, layout=(info.sample_rate, info.channels))
        if hit is not None:
            _remember(cache, p, content, read_as)
            hit["path"] = str(p)
            hit["seconds"] = round(time.perf_counter() - t0, 4)
            return hit
    hasher = PcmHasher() if cache is not None or hash_content else None
    blocks: Iterable[np.ndarray] = iter_blocks(p, dtype=decode_dtype(info))
    if watch is not None:  # the batch's deadline, parent check and progress
        blocks = watch(blocks)
    if keep_blocks is not None:
        blocks = _kept(blocks, keep_blocks)
    loud, finger, frames, spectra, curve = _analyse_stream(
        blocks,
        info.sample_rate,
        info.channels,
        tempo=tempo,
        hasher=hasher,
        fingerprint=fingerprint or cache is not None,
        ahead=decode_ahead,
    )
    rec = _record(
        str(p), info, info.sample_rate, info.channels, frames, loud, finger, spectra, curve
    )
    content = hasher.hexdigest() if hasher is not None else None
    if content is not None:
        rec["content_sha256"] = content
    if cache is not None:
        # A re-tagged copy of known audio: the content key may already be there.
        stored = {k: v for k, v in rec.items() if k not in ("path", "seconds", "cached")}
        stored[WEIGHTS_KEY] = CHANNEL_WEIGHTS_REVISION
        key = make_key(
            content,
            fingerprint_version=FINGERPRINT_VERSION,
            tempo=tempo,
            analysis_sample_rate=ANALYSIS_SAMPLE_RATE,
        )
        cache.set(key, stored)
        _remember(cache, p, content, read_as)
    rec["cached"] = False
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


def _remember(cache, path: Path, content: str, read_as: list[int] | None) -> None:
    """The path's content hash into ``cache``, only if the file is still the one read
    (``read_as``, its identity before): a rewrite while it was analysed was remembered
    under its new identity with the hash of the old bytes (a review)."""
    if read_as is not None and identity_or_none(path) == read_as:
        cache.remember_path(path, content)


#: What :func:`analyze_file` calls on a cache (a FingerprintCache, a NullCache).
_CACHE_METHODS = ("lookup_path", "get_with_source", "path_changed", "remember_path", "set")


def check_cache(cache: Any) -> None:
    """:class:`ParameterTypeError` unless ``cache`` is None or a cache (what
    :func:`~auralis_batch.cache.open_cache` returns); ``True`` or a dict failed as an
    AttributeError deep in the lookup."""
    if cache is None or all(hasattr(cache, m) for m in _CACHE_METHODS):
        return
    raise ParameterTypeError(
        f"cache must be None, a cache folder (str or os.PathLike) or what open_cache() "
        f"returns, got {given(cache)}: analyze(path, cache=open_cache()) for the default "
        "cache folder"
    )


def _kept(blocks: Iterable[np.ndarray], keep: list[np.ndarray]) -> Iterator[np.ndarray]:
    for block in blocks:
        keep.append(block)
        yield block


def analyze_array(audio: np.ndarray, sample_rate: int, *, tempo: bool = True) -> dict[str, Any]:
    """Analyse an in-memory ``(channels, n)`` array (no cache)."""
    t0 = time.perf_counter()
    x = as_audio(audio, finite=False)  # the meter refuses NaN/inf on its pass
    if x.shape[1] == 0:
        raise AudioError("audio: has no samples")
    sample_rate = checked_sample_rate(sample_rate)
    step = 65536
    blocks = (x[:, i : i + step] for i in range(0, x.shape[1], step))
    loud, finger, frames, spectra, curve = _analyse_stream(
        blocks, int(sample_rate), x.shape[0], tempo=tempo
    )
    rec = _record(None, None, int(sample_rate), x.shape[0], frames, loud, finger, spectra, curve)
    rec["cached"] = False
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


def analyze(
    path_or_array: str | os.PathLike | np.ndarray,
    sample_rate: int | None = None,
    tempo: bool = True,
    *,
    cache=None,
) -> dict[str, Any]:
    """Analyse a file path or a ``(channels, n)`` array.

    Returns the record that ``auralis-batch analyze --json`` prints: ``path``,
    ``duration_s``, ``sample_rate``, ``channels``, the four loudness keys,
    ``tempo_bpm``, ``tempo_confidence``, ``tempo_candidates`` (the two runner-up
    tempi with their scores), ``fingerprint``, ``fingerprint_version``, ``spectrum_db``
    (the long-term spectrum, :mod:`~auralis_batch.match`) and ``seconds``; for a
    report's plots, ``loudness_curve`` and ``spectrum_sparse_db`` (the spectrum over
    the chunks a master's is taken on).
    ``tempo=False`` skips the tempo work and reports 120.0 / 0.0.

    Parameters
    ----------
    path_or_array : str or os.PathLike (a file), or np.ndarray [shape=(channels, n)
        or (n,)], float
    sample_rate : int, 8000 .. 384000 Hz; required for an array. A file is analysed
        at its own rate: a ``sample_rate`` other than the file's is refused (nothing
        is resampled), the file's own is accepted.
    tempo : bool
    cache : a cache (:func:`~auralis_batch.cache.open_cache`), a cache folder (str or
        os.PathLike, opened for this call), or None; files only.

    Raises
    ------
    AuralisError
        ``sample_rate`` is missing for an array or out of 8-384 kHz, the array is
        empty or not ``(channels, n)``, or a file cannot be decoded
        (:class:`~auralis_batch.errors.DecodeError`); NaN/inf samples
        (:class:`~auralis_batch.errors.AudioError`).
    ParameterError
        ``sample_rate`` given for a file whose rate is another.
    ParameterTypeError
        ``path_or_array`` is neither a path nor an array, or ``cache`` is neither a
        cache nor a folder.
    """
    if isinstance(path_or_array, np.ndarray):
        if sample_rate is None:
            raise ParameterError(
                "sample_rate: required when analysing an array: its rate in Hz, "
                f"{MIN_SAMPLE_RATE_HZ} to {MAX_SAMPLE_RATE_HZ}"
            )
        return analyze_array(path_or_array, sample_rate, tempo=tempo)
    if not isinstance(path_or_array, (str, os.PathLike)):
        raise ParameterTypeError(
            f"path_or_array must be a file's path (str or os.PathLike) or a NumPy array, "
            f"got {given(path_or_array)}: analyze(np.asarray(samples), sample_rate=sr) for "
            "samples in memory"
        )
    if sample_rate is not None:
        sample_rate = checked_sample_rate(sample_rate)  # '44100' is no rate to compare
        own = probe(Path(path_or_array)).sample_rate
        if sample_rate != own:  # was ignored: the record said 44100 for sample_rate=8000
            raise ParameterError(
                f"sample_rate={given(sample_rate)} Hz was given for the file "
                f"{os.fspath(path_or_array)}, whose own rate is {own} Hz: a file is analysed "
                "at its own rate and not resampled; leave sample_rate out (it is for arrays), "
                "or resample the file first"
            )
    return analyze_file(path_or_array, tempo=tempo, cache=cache)
