"""One track, or one album folder: analyse, choose parameters, master, tag, commit.

Every function here returns report records and never raises: one bad file must not
stop a batch (joblib would abort every worker on the first exception it sees).

The order for each output is the durable one: audio into a temporary file, tags and
cover art into the same temporary, fsync, rename into place, fsync the folder
(:class:`~auralis_batch.audio.OutputFile`). The batch engine journals the output
only after the record comes back.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import warm
from .adaptive import reference_target_warning
from .analysis import CURVE_KEY, analyze_file, loudness_from_record
from .audio import (
    BLOCK_FRAMES,
    AudioInfo,
    OutputFile,
    Written,
    check_output_channels,
    decode_dtype,
    iter_blocks,
    output_subtype,
    probe,
)
from .errors import AudioError, OutputError, RunAbandonedError, TrackTimeoutError
from .identity import file_identity, identity_or_none, sha256_if_same
from .journal import CommitLog
from .match import SPECTRUM_KEY, THIRD_OCTAVE_HZ, master_spectrum_every, source_plot_spectrum
from .meter import integrated_from_block_powers, loudness_curve
from .pipeline import (
    PROCESSED_DTYPE,
    TARGET_TOLERANCE_LU,
    MasterOutcome,
    master_stream,
    measure_processed,
    measure_stream,
)
from .plan import Job
from .presets import Preset
from .records import (
    add_warning,
    album_not_mastered,
    error_text,
    failed_record,
    is_finite_number,
)
from .settings import (
    EQUALISED_BYTES_PER_SAMPLE,
    RunSettings,
    needs_fingerprint,
    needs_tempo,
    resolve_preset,
)
from .tags import loudness_tag_values, write_output_tags

#: Seconds between two progress notes a worker leaves for the parent.
PROGRESS_EVERY_S = 0.5
#: Extra renders of an album to pull its loudness, as written, onto the target.
ALBUM_CORRECTIONS = 2


# --------------------------------------------------------------------------- watching
@dataclass
class Watch:
    """What every block of a track passes on its way: the deadline
    (``--timeout-per-track``), the run that started the worker (a worker whose parent
    is gone stops instead of writing outputs nobody will journal), and progress notes
    for the parent (a small file it polls)."""

    deadline: float | None = None
    limit_s: float | None = None  # what the deadline allows, for its message
    parent_pid: int | None = None
    progress_file: Path | None = None
    throttle_s: float = 0.0  # the test suite's slow track (batch.FAULT_ENV)
    interrupt: Callable[[], None] | None = None  # raises when the run was told to stop
    commits: CommitLog | None = None  # notes each output before its rename (batch runs)
    vanish_after_commit: bool = False  # the test suite's kill -9 after a rename (FAULT_ENV)
    stop_after_commit: bool = False  # the test suite's Ctrl-C after a rename (FAULT_ENV)
    #: The run has a core to spare for this track (one track, in the run's process, on
    #: a machine with two or more): its analysis decodes a block ahead in a thread.
    decode_ahead: bool = False
    _last_note: float = field(default=0.0, repr=False)

    def check(self) -> None:
        if self.throttle_s:
            time.sleep(self.throttle_s)
        if self.interrupt is not None:
            self.interrupt()
        if self.deadline is not None and time.monotonic() > self.deadline:
            limit = f" {self.limit_s:g} s" if self.limit_s else ""
            raise TrackTimeoutError(
                f"timed out (--timeout-per-track{limit}); no output written: give a longer "
                "limit for tracks this long"
            )
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise RunAbandonedError("the run that started this track is gone; stopped")

    def note(self, fraction: float) -> None:
        if self.progress_file is None:
            return
        now = time.monotonic()
        if now - self._last_note < PROGRESS_EVERY_S:
            return
        self._last_note = now
        try:
            self.progress_file.write_text(f"{min(max(fraction, 0.0), 1.0):.4f}\n")
        except OSError:
            self.progress_file = None  # progress is a nicety; never fail a track for it

    def blocks(
        self, blocks: Iterable[np.ndarray], frames: int, start: float, span: float
    ) -> Iterator[np.ndarray]:
        """``blocks`` with a check and a progress note (``start + span * done``) each."""
        done = 0
        for block in blocks:
            self.check()
            yield block
            done += block.shape[1]
            self.note(start + span * done / max(frames, 1))


class TrackSource:
    """The track's audio as a :data:`~auralis_batch.pipeline.BlockSource`, decoded at
    most once when it fits: blocks the analysis already decoded are replayed, and a
    first decode keeps its blocks for the next pass when ``keep`` allows."""

    def __init__(
        self,
        path: Path,
        info: AudioInfo,
        watch: Watch,
        *,
        kept: list[np.ndarray] | None,
        keep: bool,
    ) -> None:
        self.path, self.info, self.watch = path, info, watch
        self._blocks = kept if kept else None
        self._keep = keep
        self._last = False
        self.progress = (0.4, 0.3)  # (start, span) of the next pass in the track's progress

    def __call__(self) -> Iterator[np.ndarray]:
        start, span = self.progress
        self.progress = (start + span, 1.0 - start - span)
        blocks = self._blocks
        if blocks is not None and self._last:
            self._blocks = None
            return self.watch.blocks(_draining(blocks), self.info.frames, start, span)
        if blocks is not None:
            return self.watch.blocks(blocks, self.info.frames, start, span)
        return self.watch.blocks(self._decode(), self.info.frames, start, span)

    def drop_as_read(self) -> None:
        """The next pass is the last to read this source: it lets go of each kept
        block once read (and keeps nothing it decodes), so that the processed signal
        the render keeps takes the decoded audio's place instead of adding to it."""
        self._last = True

    def _decode(self) -> Iterator[np.ndarray]:
        kept: list[np.ndarray] | None = [] if self._keep and not self._last else None
        for block in iter_blocks(self.path, dtype=decode_dtype(self.info)):
            if kept is not None:
                kept.append(block)
            yield block
        if kept is not None:
            self._blocks = kept  # complete: later passes replay it

    def release(self) -> None:
        self._blocks = None


def _draining(blocks: list[np.ndarray]) -> Iterator[np.ndarray]:
    """The blocks of ``blocks`` in order, each removed from the list as it is handed
    over (the list is left empty)."""
    blocks.reverse()
    while blocks:
        yield blocks.pop()


def _kept_bytes(info: AudioInfo) -> int:
    return info.frames * info.channels * np.dtype(decode_dtype(info)).itemsize


# --------------------------------------------------------------------------- one track
@dataclass
class _Prepared:
    """A track analysed and given its parameters, ready to render."""

    job: Job
    info: AudioInfo
    analysis: dict
    preset: Preset
    source: TrackSource
    keep_processed: bool
    keep_equalised: bool = False
    identity: list[int] | None = None
    #: The SHA-256 of the source's bytes, taken before they were read (None: unknown).
    source_sha256: str | None = None


def _identify(job: Job, watch: Watch) -> tuple[list[int], str | None]:
    """The source's identity (what the journal keeps: the input as read) and the
    SHA-256 of its bytes, taken through one descriptor before the decoder reads them
    (so it is of the bytes mastered, unless they change on the way: :func:`_commit`
    keeps it only if the identity holds, inode included). The read warms the page
    cache for the decoder; the track's checks run as it goes."""
    identity = file_identity(job.input)
    digest = sha256_if_same(job.input, identity, check=watch.check)
    if digest is None:  # a chmod or a new link while it was hashed: once more, as it is
        again = identity_or_none(job.input)
        if again is not None and again != identity and again[:3] == identity[:3]:
            identity, digest = again, sha256_if_same(job.input, again, check=watch.check)
    return identity, digest


def _prepare(job: Job, settings: RunSettings, cache, watch: Watch, budget_bytes: int) -> _Prepared:
    """Probe, analyse (cached; the decode is kept for the render when it fits the
    budget), and choose the preset."""
    info = probe(job.input)
    if job.output is None:
        raise OutputError(f"{job.input}: no output path")
    output_subtype(settings.fmt, settings.bit_depth)
    check_output_channels(settings.fmt, info.channels, info.sample_rate)
    decoded_fits = _kept_bytes(info) <= budget_bytes
    kept: list[np.ndarray] | None = [] if decoded_fits else None
    watch.check()
    analysis = analyze_file(
        job.input,
        tempo=needs_tempo(settings),
        cache=cache,
        keep_blocks=kept,
        hash_content=False,  # with no cache nothing needs the PCM hash
        fingerprint=needs_fingerprint(settings),
        watch=lambda blocks: watch.blocks(blocks, info.frames, 0.0, 0.4),
        decode_ahead=watch.decode_ahead,
    )
    preset = resolve_preset(settings, analysis)
    source = TrackSource(job.input, info, watch, kept=kept, keep=decoded_fits)
    # What stays in memory: the decoded audio when kept (in its own precision), the
    # processed signal, and during a reference's range search the equalised one. When
    # pass B is the last to read the source (no range to search: master_stream's
    # ``last_read``), the processed signal takes the decoded audio's place block by
    # block, so the larger of the two must fit, not their sum.
    decoded = _kept_bytes(info) if decoded_fits else 0
    samples = info.frames * info.channels
    processed = samples * np.dtype(PROCESSED_DTYPE).itemsize
    if preset.target_lra_lu is None:
        processed_fits = max(decoded, processed) <= budget_bytes
    else:
        processed_fits = decoded + processed <= budget_bytes
    equalised_fits = decoded + processed + samples * EQUALISED_BYTES_PER_SAMPLE <= budget_bytes
    # a first run's render kernels, compiled beside (warm.py)
    warm.wait(check=watch.check, bit_depth=settings.bit_depth)
    return _Prepared(job, info, analysis, preset, source, processed_fits, equalised_fits)


def _base_record(job: Job, settings: RunSettings) -> dict:
    return {
        "input": str(job.input),
        "output": str(job.output) if job.output else None,
        "status": "ok",
        "error": None,
        "preset": settings.preset,
    }


def _failed(job: Job, settings: RunSettings, exc: BaseException, t0: float) -> dict:
    rec = failed_record(job.input, error_text(exc), job.output)
    rec["preset"] = settings.preset
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


def _dither_seed(path: Path) -> int:
    return zlib.crc32(os.fsencode(path.name))


def _open_output(p: _Prepared, settings: RunSettings) -> OutputFile:
    assert p.job.output is not None
    return OutputFile(
        p.job.output,
        sample_rate=p.info.sample_rate,
        channels=p.info.channels,
        fmt=settings.fmt,
        subtype=output_subtype(settings.fmt, settings.bit_depth),
        replace=p.job.replace,
        expect=p.job.expect,
        keep_existing=p.job.keep_aside,
        source=p.job.input,
        frames=p.info.frames,
    )


def _render(
    p: _Prepared, out: OutputFile, settings: RunSettings, gain_db: float | None = None
) -> MasterOutcome:
    p.source.progress = (0.4, 0.3)
    return master_stream(
        p.source,
        sample_rate=p.info.sample_rate,
        channels=p.info.channels,
        preset=p.preset,
        before=loudness_from_record(p.analysis),
        sink=out.pass_writer,
        bit_depth=settings.bit_depth,
        gain_db=gain_db,
        keep_processed=p.keep_processed,
        keep_equalised=p.keep_equalised,
        seed=_dither_seed(p.job.input),
        check=p.source.watch.check,
        last_read=p.source.drop_as_read,
        spectrum_every=master_spectrum_every(p.analysis),
    )


def _commit(
    p: _Prepared,
    out: OutputFile,
    outcome: MasterOutcome,
    settings: RunSettings,
    *,
    album: tuple[float | None, float | None] = (None, None),
    publish: bool = True,
) -> dict:
    """Tags into the temporary, then the durable commit; the record's measured part.
    ``publish=False`` stops before the output takes its name (an album's tracks are all
    prepared first): then :func:`_publish` completes it."""
    loudness = None
    after = outcome.after
    # a track too short to measure has no gain of its own, but an album's has the album's
    if settings.write_loudness_tags and (
        np.isfinite(after.integrated_lufs) or album[0] is not None
    ):
        loudness = loudness_tag_values(
            after.integrated_lufs,
            after.true_peak_dbtp,
            album_lufs=album[0],
            album_peak_dbtp=album[1],
        )
    notes: list[str] = []

    def finish(tmp: Path) -> None:
        notes.extend(
            write_output_tags(
                tmp,
                fmt=settings.fmt,
                source=p.job.input if settings.copy_tags else None,
                loudness=loudness,
            )
        )

    # The length decoded, not the header's: an MP3 without a length tag has only an
    # estimate there (from the file size and its first frame's bit rate).
    decoded_s = p.analysis.get("duration_s")
    if not (is_finite_number(decoded_s) and decoded_s > 0):
        decoded_s = p.info.duration_s
    measured = {
        "duration_s": round(decoded_s, 3),
        "sample_rate": p.info.sample_rate,
        "channels": p.info.channels,
        "before": outcome.before.to_dict(),
        "after": outcome.after.to_dict(),
        "render": outcome.to_dict(),
        # what the render ran: a reference match may choose its compressor as it goes
        "parameters": (outcome.preset or p.preset).to_dict(),
    }

    def intent(written: Written) -> None:  # the output's proof, before it has its name
        commits = p.source.watch.commits
        if commits is not None and p.identity is not None:
            # the measurements ride along: a crash that loses the worker's report
            # still leaves the run able to report the master it recovers
            tempo = {k: (p.analysis or {}).get(k) for k in ("tempo_bpm", "tempo_confidence")}
            commits.note(
                p.job.input,
                p.identity,
                out.path,
                written.to_dict(),
                p.preset.name,
                measured=measured | tempo,
                input_sha256=source_sha256,
            )

    now = identity_or_none(p.job.input)
    changed = _source_changed(p.job, p.identity, now)
    if changed is not None:  # never a master of a source that changed while being read
        raise changed
    source_sha256 = _hash_still_true(p, now)
    written = out.prepare(finish, intent=intent)
    rec = measured | {
        "written": written.to_dict(),
        "preset": p.preset.name,
        "series": _series(p, outcome, settings),
    }
    if source_sha256 is not None:
        rec["input_sha256"] = source_sha256
    if notes:
        rec["tag_notes"] = notes
    if not outcome.target_reached:
        rec["warning"] = "; ".join(outcome.notes) or "target not reached"
    add_warning(
        rec,
        reference_target_warning(settings.reference_record, target_lufs=settings.target_lufs),
    )
    if publish:
        _publish(p, out, rec)
    return rec


#: Hashes of a source whose ctime alone moves at commit (:func:`_hash_still_true`).
HASH_TRIES = 3


def _hash_still_true(p: _Prepared, now: list[int] | None) -> str | None:
    """The source's SHA-256 for the journal, so that a later run knows the source
    unchanged when only its time or inode moved (copied without its times, touched).
    Hashed before it was read, and kept only if the file is still that one (size,
    mtime, inode and ctime), so a file swapped during the render is not journaled with
    bytes that were not mastered. When only the ctime moved meanwhile (a chmod, a new
    hard link: a snapshot backup during the run) the file is hashed again: the same
    bytes keep the hash and the track is journaled under the identity it has now (the
    next run reads nothing; it mastered such a track again, "the input changed").
    Other bytes there mean the file was rewritten in place, its time kept, while the
    track was read (``mp3gain -p``): raises :class:`AudioError`, as a source whose size
    or time changed does (its master could hold some of each)."""
    if p.source_sha256 is None or p.identity is None:
        return None
    for _ in range(HASH_TRIES):  # a ctime that moves again while it is hashed: again
        if now is None or now[:3] != p.identity[:3]:
            return None
        if now == p.identity:
            return p.source_sha256
        again = sha256_if_same(p.job.input, now, check=p.source.watch.check)
        if again is not None and again != p.source_sha256:
            raise AudioError(
                f"{p.job.input}: the source changed while it was being read (rewritten "
                "in place, its time kept); not mastered: the next run masters it as it "
                "is then"
            )
        if again is not None:
            p.identity = now
            return p.source_sha256
        now = identity_or_none(p.job.input)
    return None  # still moving (a chmod loop, say): not known; the next run reads it


def _source_changed(
    job: Job, identity: list[int] | None, now: list[int] | None
) -> AudioError | None:
    """An error when the source is no longer the file that was read (its size or mtime
    changed since the track started: copied over, cut short, replaced): its master
    could be part one file and part another, or part of a song. None when it is the
    same, or when there is nothing to compare. The inode is not compared: FAT, exFAT
    and some FUSE or CIFS mounts give a file a new one when it is read back. ``now``:
    the source's identity now (:func:`~auralis_batch.identity.identity_or_none`)."""
    if identity is None:
        return None
    if now is not None and now[:2] == identity[:2]:
        return None
    return AudioError(
        f"{job.input}: the source changed while it was being read (rewritten, cut short "
        "or replaced); not mastered: the next run masters it as it is then"
    )


def _why_decoding_failed(job: Job, identity: list[int] | None, exc: Exception) -> Exception:
    """``exc``, or for a decoding failure on a source that changed meanwhile, that it
    changed (a FLAC copied over mid-read fails as 'corrupt or truncated'). Any other
    error (a full disk) is kept as it is: the run decides by it."""
    if isinstance(exc, AudioError):
        return _source_changed(job, identity, identity_or_none(job.input)) or exc
    return exc


def _publish(p: _Prepared, out: OutputFile, rec: dict) -> None:
    """The prepared output takes its name; what only that step can tell goes into the
    job (a file kept aside) and the record (a folder that could not be synced)."""
    out.publish()
    if out.kept_aside is not None and p.job.keep_aside:  # an edited master, as planned
        why = f"{p.job.replace_reason}: kept as {out.kept_aside.name}, redone"
        p.job = replace(p.job, replace_reason=why)
    elif out.kept_aside is not None:
        p.job = replace(
            p.job,
            replace_reason=f"{p.job.replace_reason}; the file there had changed since "
            f"auralis-batch wrote it: kept as {out.kept_aside.name}",
        )
    add_warning(rec, out.unsynced)


def _series(p: _Prepared, outcome: MasterOutcome, settings: RunSettings) -> dict:
    """The report's plot data, from the passes already made: loudness over time before
    (the analysis) and after (the written pass), the compressor's and limiter's gain
    reduction on the same time base, and the long-term spectra. A few kB per track."""
    step_s, before = _curve_of(p.analysis)
    after: list[float | None] = []
    if outcome.after_block_powers is not None:
        step_s, after = loudness_curve(outcome.after_block_powers)
    n = max(len(before), len(after))
    block_s = BLOCK_FRAMES / p.info.sample_rate
    spectrum: dict = {"freqs_hz": [round(f, 1) for f in THIRD_OCTAVE_HZ]}
    for key, values in (
        ("source_db", source_plot_spectrum(p.analysis)),
        ("master_db", outcome.spectrum_db),
        ("reference_db", (settings.reference_record or {}).get(SPECTRUM_KEY)),
    ):
        if isinstance(values, list) and len(values) == len(THIRD_OCTAVE_HZ):
            spectrum[key] = [None if v is None else round(float(v), 1) for v in values]
    return {
        "hop_s": round(step_s, 3),
        "short_term_before": before,
        "short_term_after": after,
        "compressor_gr_db": _on_steps(outcome.compressor_gr_db, block_s, step_s, n),
        "limiter_gr_db": _on_steps(outcome.limiter_gr_db, block_s, step_s, n),
        "spectrum": spectrum,
    }


def _curve_of(analysis: dict) -> tuple[float, list[float | None]]:
    curve = analysis.get(CURVE_KEY)
    if isinstance(curve, dict) and isinstance(curve.get("lufs"), list):
        return float(curve.get("step_s") or 0.1), list(curve["lufs"])
    return 0.1, []


def _on_steps(per_block: list[float], block_s: float, step_s: float, n: int) -> list[float]:
    """Per-block values on the curve's time base: each point the largest of the blocks
    it overlaps."""
    out: list[float] = []
    for i in range(n):
        a = int(i * step_s // block_s)
        b = int((i + 1) * step_s // block_s)
        seg = per_block[a : b + 1]
        out.append(max(seg) if seg else 0.0)
    return out


def _decorate(rec: dict, job: Job, analysis: dict | None) -> None:
    analysis = analysis or {}
    rec["tempo_bpm"] = analysis.get("tempo_bpm")
    rec["tempo_confidence"] = analysis.get("tempo_confidence")
    rec["fingerprint_cached"] = analysis.get("cached") or False
    rec["analysis_seconds"] = analysis.get("seconds")
    if job.replace_reason and rec.get("status") == "ok":  # a failed redo replaced nothing
        rec["replaced"] = job.replace_reason


def _after_commit_fault(watch: Watch) -> None:
    """The test suite's faults right after an output took its name (batch.FAULT_ENV):
    the worker dies, or the run is told to stop while this worker hangs."""
    if watch.vanish_after_commit:
        os._exit(71)
    if watch.stop_after_commit and watch.parent_pid is not None:
        import signal

        os.kill(watch.parent_pid, signal.SIGINT)
        time.sleep(60)  # the stopping run kills this worker first


def master_track(
    job: Job, settings: RunSettings, *, cache=None, watch: Watch | None = None
) -> dict:
    """Analyse (cached), choose parameters, master, tag and commit one track.

    A record, never an exception: ``status`` ``ok`` with the measurements, or
    ``failed`` with a specific ``error`` (nothing is left under the output's name).
    """
    t0 = time.perf_counter()
    watch = watch or Watch()
    rec = _base_record(job, settings)
    p: _Prepared | None = None
    identity: list[int] | None = None
    try:
        identity, source_sha256 = _identify(job, watch)
        p = _prepare(job, settings, cache, watch, settings.memory_budget_bytes)
        p.identity, p.source_sha256 = identity, source_sha256
        with _open_output(p, settings) as out:
            outcome = _render(p, out, settings)
            rec.update(_commit(p, out, outcome, settings))
            _after_commit_fault(watch)
            rec["input_identity"] = p.identity  # the commit's, if only its ctime moved
    except Exception as exc:
        rec = _failed(job, settings, _why_decoding_failed(job, identity, exc), t0)
    finally:
        if p is not None:
            p.source.release()
    _decorate(rec, p.job if p else job, p.analysis if p else None)
    watch.note(1.0)
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


# --------------------------------------------------------------------------- one album
def master_album(
    unit: Sequence[Job], settings: RunSettings, *, cache=None, watch: Watch | None = None
) -> list[dict]:
    """One shared gain for every track of a folder, from the album's loudness.

    Each track goes through the single-track path (decode once within the budget,
    the timeout, the same records). Its EQ and compressor run alone; the gating
    blocks of the processed tracks are pooled (BS.1770 album loudness, as loudgain
    and r128gain do) and one gain takes the album to the target, lowered if a track
    would need more limiting than its preset allows. The album's loudness is then
    measured from what was written, and the gain corrected (re-rendering every
    track) while it is off by more than the tolerance. Nothing is committed before
    that, so the album tags (ReplayGain album gain and peak) describe the files.
    """
    t0 = time.perf_counter()
    watch = watch or Watch()
    prepared, failures = _prepare_album(unit, settings, cache, watch)
    if failures:  # a track failed: an album is mastered whole or not at all
        for track in prepared:
            track.p.source.release()
        return _album_records(unit, prepared, settings, failures)
    if not prepared:
        return []
    records: list[dict] = []
    outs = [_open_output(track.p, settings) for track in prepared]
    try:
        album = _render_album(prepared, outs, settings)
        # Every track prepared (tags, fsync, checksum, commit note) before any takes its
        # name: one that fails here (a full disk while tagging) fails the album whole.
        staged: list[dict] = []
        for track, out, outcome in zip(prepared, outs, album.outcomes, strict=True):
            try:
                staged.append(
                    _commit(track.p, out, outcome, settings, album=album.tags, publish=False)
                )
            except Exception as exc:
                return _album_failed(unit, prepared, settings, track.p.job, exc, t0)
        for track, out in zip(prepared, outs, strict=True):  # the last look before any
            if not out.replace and os.path.lexists(out.path):  # takes its name
                appeared = OutputError(
                    f"{out.path}: refused: a file appeared there during the run; not replaced"
                )
                return _album_failed(unit, prepared, settings, track.p.job, appeared, t0)
        for track, out, partial in zip(prepared, outs, staged, strict=True):
            records.append(_publish_album_track(track, out, partial, album, settings, watch))
    except Exception as exc:
        for track in prepared:
            rec = _failed(track.p.job, settings, exc, t0)
            _decorate(rec, track.p.job, track.p.analysis)
            records.append(rec)
    finally:
        for out in outs:
            out.discard()
        for track in prepared:
            track.p.source.release()
    render_s = time.perf_counter() - t0 - sum(track.prep_s for track in prepared)
    for rec in records:  # the shared renders, split evenly over the album's tracks
        if rec.get("status") == "ok":
            rec["seconds"] = round(rec["seconds"] + render_s / len(prepared), 4)
    return records


@dataclass
class _AlbumTrack:
    """A track of an album, analysed, equalised and compressed, not yet rendered."""

    p: _Prepared
    peak_dbtp: float  # true peak of its processed signal, before the shared gain
    prep_s: float  # seconds its preparation took
    powers: np.ndarray  # gating-block powers of its processed signal


@dataclass
class _AlbumRender:
    """The album's shared gain and each track's render at it."""

    gain_db: float
    capped: bool  # the gain was lowered so no track needs more limiting than allowed
    target_lufs: float
    album_lufs: float  # measured from what was rendered (NaN: silent)
    album_peak_dbtp: float
    outcomes: list[MasterOutcome]

    @property
    def reached(self) -> bool:
        return bool(
            np.isfinite(self.album_lufs)
            and abs(self.target_lufs - self.album_lufs) <= TARGET_TOLERANCE_LU
        )

    @property
    def tags(self) -> tuple[float | None, float]:
        """(album loudness or None, album true peak) for the album's loudness tags."""
        lufs = float(self.album_lufs) if np.isfinite(self.album_lufs) else None
        return lufs, self.album_peak_dbtp


def _prepare_album(
    unit: Sequence[Job], settings: RunSettings, cache, watch: Watch
) -> tuple[list[_AlbumTrack], list[dict]]:
    """Each track decoded, analysed, equalised and compressed (sharing one memory
    budget), with its processed loudness blocks; and the records of those that failed."""
    budget = settings.memory_budget_bytes
    prepared: list[_AlbumTrack] = []
    failures: list[dict] = []
    for job in unit:
        t_job = time.perf_counter()
        identity: list[int] | None = None
        try:
            identity, source_sha256 = _identify(job, watch)
            p = _prepare(job, settings, cache, watch, budget)
            p.identity, p.source_sha256 = identity, source_sha256
            budget = max(budget - _kept_bytes(p.info), 0)  # the album shares one budget
            mid, powers = measure_processed(
                p.source,
                sample_rate=p.info.sample_rate,
                channels=p.info.channels,
                preset=p.preset,
                before=loudness_from_record(p.analysis),
            )
            p.keep_processed = p.keep_equalised = False
            prepared.append(_AlbumTrack(p, mid.true_peak_dbtp, time.perf_counter() - t_job, powers))
        except Exception as exc:
            rec = _failed(job, settings, _why_decoding_failed(job, identity, exc), t_job)
            _decorate(rec, job, None)
            failures.append(rec)
    return prepared, failures


def album_target_lufs(targets: list[float]) -> float:
    """One album's loudness target from its tracks' (the same for a fixed preset; an
    adaptive or matched one has one per track): the lowest, the level the album's
    most dynamic track calls for, so that no track is pushed louder than its own
    analysis allows while all keep their relative levels. It was the first track's by
    file name, so renaming two files moved an adaptive album by 1.7 LU (a newcomer's)."""
    return float(min(targets))


def _render_album(
    prepared: list[_AlbumTrack], outs: list[OutputFile], settings: RunSettings
) -> _AlbumRender:
    """Render every track at the album's gain into its temporary, correcting the gain
    from the pooled loudness of what was rendered (at most ALBUM_CORRECTIONS times).

    The album's target is the lowest of its tracks' (:func:`album_target_lufs`)."""
    target = album_target_lufs([t.p.preset.target_lufs for t in prepared])
    album_mid = integrated_from_block_powers(np.concatenate([t.powers for t in prepared]))
    capped = False

    def cap(g: float) -> float:
        nonlocal capped
        for t in prepared:
            if np.isfinite(t.peak_dbtp):
                limiter = t.p.preset.limiter
                allowed = limiter.ceiling_dbtp + limiter.max_gain_reduction_db
                if g > allowed - t.peak_dbtp:
                    capped, g = True, allowed - t.peak_dbtp
        return g

    gain = cap(0.0 if not np.isfinite(album_mid) else target - album_mid)
    for _ in range(ALBUM_CORRECTIONS + 1):
        pairs = zip(prepared, outs, strict=True)
        outcomes = [_render(t.p, out, settings, gain) for t, out in pairs]
        pooled = [o.after_block_powers for o in outcomes if o.after_block_powers is not None]
        album_after = integrated_from_block_powers(np.concatenate(pooled))
        error = target - album_after
        if capped or not np.isfinite(album_after) or abs(error) <= TARGET_TOLERANCE_LU:
            break
        new_gain = cap(gain + error)
        if abs(new_gain - gain) <= 0.01:
            break
        gain = new_gain
    return _AlbumRender(
        gain_db=float(gain),
        capped=capped,
        target_lufs=target,
        album_lufs=float(album_after),
        album_peak_dbtp=float(max(o.after.true_peak_dbtp for o in outcomes)),
        outcomes=outcomes,
    )


def _publish_album_track(
    track: _AlbumTrack,
    out: OutputFile,
    partial: dict,
    album: _AlbumRender,
    settings: RunSettings,
    watch: Watch,
) -> dict:
    """Publish one prepared track of the album under its name; its record."""
    p = track.p
    t_job = time.perf_counter()
    rec = _base_record(p.job, settings)
    try:
        rec.update(partial)
        rec.pop("warning", None)  # the album's target, not the track's, below
        add_warning(
            rec,
            reference_target_warning(settings.reference_record, target_lufs=settings.target_lufs),
        )
        _publish(p, out, rec)
        _after_commit_fault(watch)
        rec["input_identity"] = p.identity
        rec["render"]["target_lufs"] = album.target_lufs  # the album's, not the track's
        rec["render"]["target_reached"] = album.reached
        album_lufs, album_peak = album.tags
        rec["album"] = {
            "folder": str(p.job.input.parent),
            "tracks": len(album.outcomes),
            "gain_db": round(album.gain_db, 2) + 0.0,  # + 0.0: never -0.0
            "album_lufs": None if album_lufs is None else round(album_lufs, 2) + 0.0,
            "album_true_peak_dbtp": round(album_peak, 2) + 0.0,
            "target_lufs": album.target_lufs,
            "target_reached": album.reached,
        }
        if not album.reached:
            add_warning(
                rec,
                f"album at {album.album_lufs:.2f} LUFS, off its {album.target_lufs:g} LUFS "
                "target: "
                + (
                    "a track would need more peak limiting than "
                    "limiter.max_gain_reduction_db allows"
                    if album.capped
                    else "limiting moved it"
                ),
            )
    except Exception as exc:  # its name taken meanwhile: the others are published
        rec = _failed(p.job, settings, exc, t_job)
    _decorate(rec, p.job, p.analysis)
    rec["seconds"] = round(track.prep_s + time.perf_counter() - t_job, 4)
    return rec


def _album_records(
    unit: Sequence[Job], prepared: list, settings: RunSettings, failures: list[dict]
) -> list[dict]:
    """The records of an album not mastered because of ``failures`` (records of its
    tracks that failed): those, and for every other track one that names the first."""
    why = album_not_mastered(failures[0]["input"], "failed")
    failed = {r["input"] for r in failures}
    records = list(failures)
    for track in prepared:
        p = track.p
        if str(p.job.input) in failed:
            continue
        rec = _base_record(p.job, settings) | {"status": "failed", "error": why}
        rec["seconds"] = round(track.prep_s, 4)
        _decorate(rec, p.job, p.analysis)
        records.append(rec)
    order = {str(job.input): i for i, job in enumerate(unit)}
    return sorted(records, key=lambda r: order.get(r["input"], len(order)))


def _album_failed(
    unit: Sequence[Job],
    prepared: list[_AlbumTrack],
    settings: RunSettings,
    job: Job,
    exc: BaseException,
    t0: float,
) -> list[dict]:
    """An album one of whose tracks failed to be prepared for its commit: nothing of it
    was published (the caller's ``finally`` discards every temporary)."""
    rec = _failed(job, settings, exc, t0)
    p = next(t.p for t in prepared if t.p.job is job)
    _decorate(rec, job, p.analysis)
    return _album_records(unit, prepared, settings, [rec])


# --------------------------------------------------------------------------- measure
def measure_file(path: str | os.PathLike) -> dict:
    """Loudness of one file as a ``measure`` record."""
    t0 = time.perf_counter()
    p = Path(path)
    try:
        info = probe(p)
        loud = measure_stream(
            lambda: iter_blocks(p, dtype=decode_dtype(info)),
            sample_rate=info.sample_rate,
            channels=info.channels,
        )
        rec = {"input": str(p), "status": "ok", "error": None}
        rec.update(loud.to_dict())
        rec.update(
            {
                "duration_s": round(info.duration_s, 3),
                "sample_rate": info.sample_rate,
                "channels": info.channels,
            }
        )
    except Exception as exc:
        rec = {"input": str(p), "status": "failed", "error": error_text(exc)}
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec
