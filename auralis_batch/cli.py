"""The ``auralis-batch`` command.

Commands are thin: they resolve settings, call the engine and map outcomes to exit
codes (0 all succeeded, 1 a track failed, 2 usage or setup error). Everything heavy
(numpy, numba kernels, soundfile) is imported inside the commands, so ``--help``
neither compiles kernels nor loads the DSP stack.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, ClassVar, NoReturn, Optional

import typer

from .limits import MIN_TIMEOUT_PER_TRACK_S

app = typer.Typer(
    name="auralis-batch",
    help="Re-master whole music libraries: BS.1770 loudness, EQ, compression, true-peak limiting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"auralis-batch {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Re-master whole music libraries: BS.1770 loudness, EQ, compression, true-peak limiting."""


presets_app = typer.Typer(
    help="List and inspect mastering presets.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(presets_app, name="presets")

try:  # the cache and report sub-apps are light to import (no numpy/numba at module level)
    from .cli_cache import cache_app
    from .cli_report import report as report_command

    app.add_typer(cache_app, name="cache")
    app.command("report")(report_command)
except ImportError:  # pragma: no cover - during partial checkouts
    pass

Inputs = Annotated[
    list[Path],
    typer.Argument(
        help="Audio files or folders (searched recursively).",
        show_default=False,
        metavar="INPUT...",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
PresetOpt = Annotated[
    str,
    typer.Option(
        "--preset",
        "-p",
        help="gentle, warm, bright, punchy, adaptive, or a path to a .toml preset.",
    ),
]
TargetOpt = Annotated[
    Optional[float],  # noqa: UP045 - typer needs Optional on py3.10
    typer.Option("--target-lufs", help="Integrated loudness target, LUFS (overrides the preset)."),
]
CeilingOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--ceiling-dbtp", help="True-peak ceiling, dBTP (overrides the preset)."),
]
FormatOpt = Annotated[str, typer.Option("--format", help="Output format: flac or wav.")]
BitDepthOpt = Annotated[
    str, typer.Option("--bit-depth", help="16 (TPDF dithered), 24 or 32f (wav only).")
]
ReportOpt = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option(
        "--report",
        help="Write a report to this file: FILE.json ({tracks, summary}), FILE.csv or "
        "FILE.html (one self-contained page of tables and plots); give it several times "
        "for several reports.",
    ),
]


def _fail_usage(message: str) -> NoReturn:
    """``[error] ...`` on stderr, one line per line of ``message`` (a preset's several
    problems), then exit 2."""
    from .records import printable

    for line in message.split("\n"):
        typer.echo(f"[error] {printable(line)}", err=True)
    raise typer.Exit(code=2)


def _table_console():
    """A console for tables: the terminal's width, or wide enough for whole paths and
    numbers when stdout is a pipe or a file (80 columns cut every path short)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=240)


def _fmt(value: object, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


CacheDirOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--cache-dir",
        help="Fingerprint cache folder (default: $AURALIS_CACHE_DIR or the user cache dir).",
    ),
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Do not read or write the fingerprint cache.")
]
NoTempoOpt = Annotated[
    bool, typer.Option("--no-tempo", help="Skip tempo estimation (reports 120 BPM).")
]


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


@app.command()
def master(
    ctx: typer.Context,
    inputs: Inputs,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (mirrors the input tree).")
    ],
    preset: PresetOpt = "gentle",
    target_lufs: TargetOpt = None,
    ceiling_dbtp: CeilingOpt = None,
    fmt: FormatOpt = "flac",
    bit_depth: BitDepthOpt = "24",
    report: ReportOpt = None,
    reference: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--reference", help="Match the balance and loudness of this reference track."),
    ] = None,
    match_strength: Annotated[
        float,
        typer.Option(
            "--match-strength",
            help="With --reference: how much of the reference's tone to take, 0 to 1.",
            metavar="<0-1>",  # checked in _check_run_flags: the range, shown, squeezed --help
        ),
    ] = 1.0,
    jobs: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--jobs",
            "-j",
            help="Parallel worker processes, at least 1 (default: all cores).",
            metavar="<n>",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="List what would be done; write no audio, journal or cache "
            "(--report writes the plan).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Redo finished tracks even where nothing changed (a track whose input "
            "or settings changed, another preset say, is redone without it) and replace "
            "files this tool did not write (in --out, at --report).",
        ),
    ] = False,
    album: Annotated[
        bool, typer.Option("--album", help="Tracks in one folder share one gain (album mode).")
    ] = False,
    write_loudness_tags: Annotated[
        bool, typer.Option("--write-loudness-tags", help="Write ReplayGain 2.0 tags of the result.")
    ] = False,
    timeout_per_track: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            "--timeout-per-track",
            help=f"Fail a track that takes longer than this, seconds (at least "
            f"{MIN_TIMEOUT_PER_TRACK_S:g}).",
            metavar="<seconds>",
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="local (joblib processes) or dask (needs --scheduler).")
    ] = "local",
    scheduler: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786."),
    ] = None,
    tempo: Annotated[
        bool,
        typer.Option(
            "--tempo",
            help="Estimate each track's tempo for the report (the built-in presets do "
            "not: they report 120 BPM).",
        ),
    ] = False,
    no_tempo: NoTempoOpt = False,
    no_cache: NoCacheOpt = False,
    cache_dir: CacheDirOpt = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No progress, per-track lines or summary (cron); failures and "
            "replaced masters are still listed.",
        ),
    ] = False,
) -> None:
    """Master INPUT files and folders into --out (resumable, parallel)."""
    opts = dict(locals())
    opts["preset_given"] = _given(opts.pop("ctx"), "preset")
    _run_master(**opts)


def _run_master(**opts) -> None:
    """``master``: check everything a run needs (exit 2 before any work), run it, then
    report and exit 0 / 1 / 2 / 128+signal."""
    from .progress import BatchProgress

    # The pool's resource tracker warns about the semaphores of workers a stopped run
    # killed; it cleans them up all the same: keep joblib's internals off the console.
    os.environ.setdefault(
        "PYTHONWARNINGS", "ignore:::joblib.externals.loky.backend.resource_tracker"
    )
    if opts["backend"] == "dask":
        opts.update(_absolute_paths(opts))
    from .batch import _signals_stop_the_run, _Stop, fault_pause, stop_signal
    from .stopping import signal_name

    made = _missing_folders(opts["out"])  # an exit 2 leaves none of the folders it made
    # One set of handlers from here to the exit code: SIGINT/SIGTERM/SIGHUP while the
    # run is planned or its reports written killed it without a word or a report (or,
    # in a shell's background job, was ignored and the run exited 0: a sweep).
    with _signals_stop_the_run() as cleaning:
        try:
            try:
                t_settings = time.monotonic()
                settings = _master_settings(**opts)
                progress = BatchProgress(enabled=not opts["quiet"] and not opts["dry_run"])
                if settings.reference_record is not None:  # analysed here, before the run
                    progress.before_s = time.monotonic() - t_settings
                progress.kernels = _master_kernels(settings)
                # said before a reference's analysis already (_say_compile_note_early)
                progress.first_run_said = _reference_analysed_here(opts)
                result = _run_batch(settings, progress, **opts)
            finally:
                _stop_warm_up()
        except typer.Exit as stop:
            if stop.exit_code == 2 or stop.exit_code > 128:
                _remove_empty_folders(made)
            raise
        except _Stop as stop:  # before the run began: its settings were being checked
            _remove_empty_folders(made)
            name = signal_name(stop.signum)
            typer.echo(
                f"[error] interrupted by {name} before the run began: nothing was mastered",
                err=True,
            )
            raise typer.Exit(code=128 + stop.signum) from None
        if progress.before_s is not None:  # the summary's figures start with the run
            result.summary["reference_seconds"] = round(progress.before_s, 3)
        cleaning()  # the reports are written whole: a signal now is only noted
        if made and _found_no_track(result):  # an --out made for nothing goes again
            _unmake_state(opts["out"])
            _remove_empty_folders(made)
        fault_pause("report")
        try:
            _report(result, progress, **opts)
        finally:
            late = stop_signal()
            if late is not None and result.signal is None:
                # it came as the run was ending (its cleanup, the reports): nothing was
                # cut short by it, and the exit code says how the tracks went
                typer.echo(
                    f"[note] {signal_name(late)} came as the run was ending: its cleanup "
                    "and reports were finished first",
                    err=True,
                )


def _found_no_track(result) -> bool:
    from .records import is_no_track

    return result.signal is None and all(is_no_track(r) for r in result.records)


def _unmake_state(out: Path) -> None:
    """Remove the state folder a run that found no track left in an --out this command
    made: its lock file (this process's pid) and nothing else. A newcomer's ``master
    dir.flac --out new`` (an empty folder) left ``new/.auralis-batch/lock`` behind."""
    from .journal import LOCK_NAME, STATE_DIR

    state = Path(out) / STATE_DIR
    try:
        names = os.listdir(state)
        lock = state / LOCK_NAME
        if names == [LOCK_NAME] and lock.read_text().strip() == str(os.getpid()):
            lock.unlink()
            state.rmdir()
    except (OSError, UnicodeDecodeError):
        pass


def _remove_empty_folders(made: list[Path]) -> None:
    """Remove the folders this command made (deepest first), while they are empty."""
    for folder in made:
        try:
            os.rmdir(folder)
        except OSError:
            break


def _absolute_paths(opts: dict) -> dict:
    """The run's paths made absolute here, for a Dask cluster: a worker resolves a
    relative path in its own working folder, so it read inputs that were not there,
    wrote masters (journaled as done) into a folder of the worker's, and loaded presets
    and the fingerprint cache from there (second sweep). A preset name stays a name."""
    paths = {
        "inputs": [Path(p).absolute() for p in opts["inputs"]],
        "out": Path(opts["out"]).absolute(),
    }
    for key in ("cache_dir", "reference"):
        if opts.get(key) is not None:
            paths[key] = Path(opts[key]).absolute()
    from .presets import BUILTIN_PRESETS

    preset = opts.get("preset")
    if isinstance(preset, str) and preset not in (*BUILTIN_PRESETS, "adaptive"):
        paths["preset"] = str(Path(preset).absolute())  # load_preset reads it as a path
    if opts.get("report"):
        paths["report"] = [Path(p).absolute() for p in opts["report"]]
    return paths


def _missing_folders(out: Path) -> list[Path]:
    """The folders that creating ``out`` would make (those on its path that do not exist
    yet), last made first. The walk stops at a ``..`` after a missing folder: past it
    the path may lead back into folders that exist (``new/../mine``), never to be
    removed."""
    missing: list[Path] = []
    path = Path(out).absolute()
    prefix = Path(path.anchor)
    for part in path.parts[1:]:
        if part == ".." and missing:
            break
        prefix = prefix / part
        if part not in (".", "..") and not os.path.lexists(prefix):
            missing.append(prefix)
    return missing[::-1]


def _stop_warm_up() -> None:
    """End a warm-up started for a reference's analysis that no batch adopted (a usage
    error after it, a stop, nothing left to do); the batch ends the one it adopts."""
    from . import warm

    if warm.Warmup.current is not None:
        warm.Warmup.current.stop()


def _dangling_link(path: Path) -> Path | None:
    """The first folder on ``path`` (``path`` included) that is a symbolic link to a
    place that does not exist, if any: creating ``path`` fails there with "File
    exists", which says nothing of the link."""
    prefix = Path(Path(path).absolute().anchor)
    for part in Path(path).absolute().parts[1:]:
        prefix = prefix / part
        if prefix.is_symlink() and not prefix.exists():
            return prefix
        if not os.path.lexists(prefix):  # nothing further down exists either
            return None
    return None


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` (its parameter's name) was given on the command
    line (or by an environment variable), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, tried (``os.access`` says yes to
    root everywhere, /proc and read-only mounts included)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _say_compile_note_early(kernels: tuple[str, ...], *, quiet: bool) -> None:
    """The first-run warning and note (:func:`progress.first_run_notes`), before work
    that comes ahead of the run's progress, which then says neither again
    (:func:`_reference_analysed_here`): the warning
    (kernels that cannot be kept) even with ``quiet``, as the progress says it, and
    before the note that refers to it (a review saw them 8 s apart, the note first)."""
    from ._startup import log_stamp
    from .progress import first_run_notes
    from .records import printable

    dated = "" if sys.stderr.isatty() else log_stamp()  # as the progress's lines
    for kind, text in first_run_notes(kernels):
        if kind == "warning" or not quiet:
            typer.echo(f"{dated}[{kind}] {printable(text)}", err=True)


def _reference_analysed_here(opts: dict) -> bool:
    """Whether the command analysed a reference in its own process, saying the
    first-run notes first (:func:`_master_settings`)."""
    return opts["reference"] is not None and not opts["dry_run"] and opts["backend"] == "local"


def _master_kernels(settings) -> tuple[str, ...]:
    """The kernels every master that renders compiles on a machine's first run (the
    note's test). Not the fingerprint's or tempo's: a run whose analyses all come from
    the cache never compiles those, and would otherwise say so on every run."""
    from . import METER_KERNEL, RENDER_KERNEL

    return (METER_KERNEL, RENDER_KERNEL)


def _check_reports(reports, *, overwrite: bool) -> None:
    """Each --report path: a report's suffix, not a folder or a link, not a user's file
    (unless --overwrite), in a folder this user can write; else exit 2 naming it."""
    from .report import REPORT_SUFFIXES, is_report_of_ours, report_kind

    for path in reports:
        if path.suffix.lower() not in REPORT_SUFFIXES:
            _fail_usage(f"--report {path}: use a file name ending in {', '.join(REPORT_SUFFIXES)}")
        if path.is_dir():
            _fail_usage(f"--report {path}: is a folder; give a file name")
        if path.is_symlink():
            _fail_usage(
                f"--report {path}: is a symbolic link, which is never replaced; name a file"
            )
        if path.exists() and not (overwrite or is_report_of_ours(path)):
            _fail_usage(
                f"--report {path}: a file that is not an auralis-batch {report_kind(path)} "
                "report is there, and it is not replaced: give another name or move it away "
                "(--overwrite would replace it, but also redoes every finished track)"
            )
        folder = path.parent.absolute()
        while not folder.exists() and folder.parent != folder:  # created when written
            folder = folder.parent
        if not folder.is_dir() or not _can_create_in(folder):
            _fail_usage(f"--report {path}: cannot write there ({folder} is not a writable folder)")


def _check_run_flags(
    *,
    backend,
    scheduler,
    match_strength,
    reference,
    target_lufs,
    ceiling_dbtp,
    tempo,
    no_tempo,
    timeout_per_track=None,
    jobs=None,
) -> None:
    """Flags that contradict each other or leave their range: exit 2 naming them, in
    the one ``[error]`` line every other bad value gets (click's range check printed
    its usage block instead: a newcomer's try)."""
    import math

    from .presets import LIMITS

    if jobs is not None and jobs < 1:
        _fail_usage(f"--jobs {jobs}: must be at least 1 worker process (default: all cores)")
    if timeout_per_track is not None and not (
        math.isfinite(timeout_per_track) and timeout_per_track >= MIN_TIMEOUT_PER_TRACK_S
    ):
        # NaN and inf too; the settings' message spoke of the Python API's None and 0
        _fail_usage(
            f"--timeout-per-track {timeout_per_track:g}: must be a number of seconds "
            f">= {MIN_TIMEOUT_PER_TRACK_S:g}"
        )

    if backend not in ("local", "dask"):
        _fail_usage(f"--backend must be local or dask, got {backend!r}")
    if backend == "dask" and not scheduler:
        _fail_usage("--backend dask needs --scheduler tcp://HOST:PORT")
    if scheduler and backend != "dask":
        _fail_usage(f"--scheduler {scheduler} needs --backend dask (this run would be local)")
    if tempo and no_tempo:
        _fail_usage("--tempo and --no-tempo contradict each other: give one")
    if not 0.0 <= match_strength <= 1.0:  # NaN too
        _fail_usage(f"--match-strength {match_strength:g}: must be between 0 and 1")
    if match_strength != 1.0 and reference is None:
        _fail_usage(f"--match-strength {match_strength:g} needs --reference REF (nothing to match)")
    for flag, value, limit in (
        ("--target-lufs", target_lufs, "target_lufs"),
        ("--ceiling-dbtp", ceiling_dbtp, "limiter.ceiling_dbtp"),
    ):
        lo, hi, unit = LIMITS[limit]
        if value is not None and not lo <= value <= hi:  # the flag's, not the preset's
            _fail_usage(f"{flag} {value:g}: must be between {lo:g} and {hi:g} {unit}")


def _master_settings(
    *,
    inputs,
    out,
    preset,
    target_lufs,
    ceiling_dbtp,
    fmt,
    bit_depth,
    report,
    reference,
    match_strength,
    dry_run,
    album,
    write_loudness_tags,
    timeout_per_track,
    backend,
    scheduler,
    tempo,
    no_tempo,
    no_cache,
    cache_dir,
    jobs,
    overwrite,
    quiet=False,
    preset_given=False,
    **_,
):
    """Validated :class:`RunSettings`; a usage or setup problem exits 2 naming it."""
    from .audio import OUTPUT_SUBTYPES, output_subtype
    from .batch import check_output_writable
    from .errors import AuralisError
    from .presets import load_preset
    from .records import printable
    from .settings import RunSettings, memory_budget_from_env

    _check_reports(report or (), overwrite=overwrite)
    _check_run_flags(
        backend=backend,
        scheduler=scheduler,
        match_strength=match_strength,
        reference=reference,
        target_lufs=target_lufs,
        ceiling_dbtp=ceiling_dbtp,
        tempo=tempo,
        no_tempo=no_tempo,
        timeout_per_track=timeout_per_track,
        jobs=jobs,
    )
    try:
        try:
            output_subtype(fmt, bit_depth)
        except AuralisError as exc:  # named as the flag that sets it (a newcomer's)
            flag = "--bit-depth" if fmt in OUTPUT_SUBTYPES else "--format"
            _fail_usage(f"{flag} {bit_depth if flag == '--bit-depth' else fmt}: {exc}")
        if preset != "adaptive":
            load_preset(preset).with_overrides(target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp)
        budget = memory_budget_from_env()
    except AuralisError as exc:
        _fail_usage(str(exc))
    for item in inputs:
        if not item.exists():
            _fail_usage(f"input {item} does not exist")
    if out.exists() and not out.is_dir():
        _fail_usage(f"--out {out}: is a file, not a folder")
    link = _dangling_link(out)
    if link is not None:  # mkdir said "not writable (File exists)": a newcomer's try
        where = "" if link == out.absolute() else f" {link}, on its way, is"
        _fail_usage(
            f"--out {out}:{where or ' is'} a symbolic link to {os.readlink(link)}, which "
            "does not exist: create that folder, or give --out a real folder"
        )
    if reference is not None and preset_given:  # settings.resolve_preset: the match wins
        typer.echo(
            printable(
                f"[note] --preset {preset} is not used with --reference: the match sets "
                "the EQ, compression and loudness (--target-lufs and --ceiling-dbtp "
                "still apply)"
            ),
            err=True,
        )
    ref_record = None
    if reference is not None:  # before --out is created: a refused reference leaves nothing
        if not dry_run and backend == "local":
            from . import warm

            # The render's kernels compile beside the reference's analysis, not after
            # it (the batch adopts this warm-up and ends it). One job: one file, or -j 1.
            one_job = jobs == 1 or (len(inputs) == 1 and inputs[0].is_file())
            share = warm.run_share(fingerprint=True, one_job=one_job)
            warm.start(bit_depth, run_share=share)
            # before the reference's analysis compiles: 10 s of nothing said (a newcomer's)
            _say_compile_note_early(_master_kernels(None), quiet=quiet)
        # a dry run writes nothing, the cache included: its reference is analysed afresh
        ref_record = _analyse_reference(
            reference, no_cache=no_cache or dry_run, cache_dir=cache_dir
        )
    try:
        check_output_writable(out, create=not dry_run)
    except OSError as exc:
        # a folder that is not there could not be made: "not writable (No such file or
        # directory)" named two problems at once (a newcomer's --out /proc/x)
        what = "not writable" if Path(out).is_dir() else "cannot be created"
        _fail_usage(f"--out {out}: {what} ({exc.strerror or exc})")
    return RunSettings(
        preset="reference" if reference is not None else preset,
        target_lufs=target_lufs,
        ceiling_dbtp=ceiling_dbtp,
        fmt=fmt,
        bit_depth=bit_depth,
        album=album,
        write_loudness_tags=write_loudness_tags,
        timeout_per_track_s=timeout_per_track,
        use_cache=not no_cache,
        cache_dir=str(cache_dir) if cache_dir else None,
        reference=str(reference) if reference else None,
        reference_record=ref_record,
        tempo=True if tempo else False if no_tempo else None,
        match_strength=match_strength,
        memory_budget_bytes=budget,
    )


def _run_batch(
    settings, progress, *, inputs, out, jobs, backend, scheduler, overwrite, dry_run, **_
):
    """The run itself; a whole-run problem or a held lock exits 2."""
    from .batch import PlanError, run_master
    from .errors import AuralisError
    from .records import printable

    n_jobs = jobs or _cpu_count()
    try:
        with contextlib.ExitStack() as stack:
            if backend == "dask":
                stack.enter_context(_dask_backend(scheduler))
                n_jobs = -1
            stack.enter_context(progress)
            return run_master(
                inputs,
                out,
                settings,
                n_jobs=n_jobs,
                overwrite=overwrite,
                dry_run=dry_run,
                on_start=progress.start,
                on_record=progress.update,
                on_progress=progress.running,
            )
    except PlanError as exc:
        for problem in exc.problems:
            typer.echo(f"[error] {printable(problem)}", err=True)
        raise typer.Exit(code=2) from None
    except AuralisError as exc:  # the lock is held, the journal is unreadable
        _fail_usage(str(exc))


def _report(result, progress, *, inputs, report, dry_run, quiet, overwrite, **_) -> NoReturn:
    """Reports, the summary, one line per failure, and the exit code."""
    from ._startup import log_stamp
    from .records import (
        failure_line,
        is_no_track,
        is_routine_skip,
        is_undecodable,
        printable,
        undecodable_warning,
    )

    dated = "" if progress.interactive else log_stamp()  # a log's lines carry their time
    for note in result.notes:
        typer.echo(f"{dated}[note] {printable(note)}", err=True)
    report_failed = False
    if report:
        from .report import write_report

        for path in report:
            try:
                # checked again as it is written: a file may have appeared there since
                write_report(path, result.records, result.summary, replace_any=overwrite)
            except OSError as exc:  # the run's work is done: say so, and go on
                report_failed = True
                typer.echo(
                    f"{dated}[error] --report {path}: not written ({exc.strerror or exc})",
                    err=True,
                )
            except (ValueError, TypeError, RecursionError) as exc:  # a malformed record
                report_failed = True
                typer.echo(
                    printable(f"{dated}[error] --report {path}: not written ({exc})"), err=True
                )
    if dry_run:
        for rec in result.records:
            typer.echo(
                printable(
                    f"{rec['status']:<8} {rec['input']}"
                    + (f" -> {rec['output']}" if rec.get("output") else "")
                    + (f"  ({rec['error']})" if rec.get("error") else "")
                )
            )
        # the counts, as a real run ends with them (on stderr: stdout is the plan)
        counts = {}
        for rec in result.records:
            counts[rec["status"]] = counts.get(rec["status"], 0) + 1
        typer.echo(
            f"dry run: {counts.get('planned', 0)} to master, {counts.get('skipped', 0)} "
            f"skipped, {counts.get('failed', 0)} refused; nothing written",
            err=True,
        )
        # as the real run would end: 1 when a track would fail (refused at planning)
        raise typer.Exit(code=1 if result.summary["failed"] or report_failed else 0)
    for rec in result.records:
        if rec.get("replaced") and rec["status"] == "ok":
            line = f"{dated}[replaced] {rec['output']}: {rec['replaced']}"
            typer.echo(printable(line), err=True)
    # In a terminal the summary table comes before the failures (they stay in view);
    # in a log the timestamped summary line comes after them, so it ends the night's run.
    summary_first = not quiet and progress.interactive
    if summary_first:
        progress.print_summary(result.records, result.summary)
    for rec in result.records:
        if rec["status"] == "failed":
            typer.echo(f"{dated}[failed] {failure_line(rec['input'], rec['error'])}", err=True)
    for rec in result.records:  # a skip to look at (a FIFO, tracks inside --out): said,
        # not only counted (a newcomer's "2 skipped" with no word of which or why)
        if rec["status"] == "skipped" and not (is_routine_skip(rec) or is_undecodable(rec)):
            typer.echo(f"{dated}[skipped] {failure_line(rec['input'], rec['error'])}", err=True)
    if result.signal is not None:  # stopped by a signal: said by its own line
        s = result.summary
        left = s["interrupted"] + s["not_started"]
        again = "; the same command finishes them" if left else ""
        typer.echo(f"{dated}interrupted: {s['ok']} done, {left} left{again}", err=True)
    elif result.stopped:  # stopped by the run itself (a full disk)
        typer.echo(f"{dated}[error] {printable(result.stopped)}", err=True)
    # the warnings before a log's summary line, which ends the night's run (a user's try)
    undecodable = undecodable_warning("master", result.records, report=bool(report))
    if undecodable is not None:  # music left out: said once, -q or not (a helper's try)
        typer.echo(printable(dated + undecodable), err=True)
    if result.signal is None and all(is_no_track(r) for r in result.records):
        # an empty folder, or an unmounted share's mount point: a night's run that
        # ended "0 mastered" and exit 0 read as a good night (a newcomer's cron try)
        named = ", ".join(str(p) for p in inputs)
        line = f"{dated}[warning] master: no audio file found in {named}; nothing was mastered"
        typer.echo(printable(line), err=True)
    if not (quiet or summary_first):
        progress.print_summary(result.records, result.summary)
    if result.signal is not None:
        raise typer.Exit(code=128 + result.signal)
    failed = result.summary["failed"] or result.stopped or report_failed
    raise typer.Exit(code=1 if failed else 0)


#: How long a Dask run waits for the scheduler's first worker before it gives up (s).
DASK_WORKER_WAIT_S = 20.0


@contextlib.contextmanager
def _dask_backend(scheduler: str):
    try:
        import joblib
        from distributed import Client
    except ImportError:
        _fail_usage(
            "--backend dask needs the dask extra: pip install '.[dask]' in the "
            "auralis-batch checkout it was installed from (the package is not on PyPI)"
        )
    try:
        client = Client(scheduler, timeout="20s")
    except Exception as exc:
        _fail_usage(f"--scheduler {scheduler}: cannot connect ({exc})")
    try:  # joblib would wait 10 s itself, then raise through the run as a traceback
        client.wait_for_workers(1, timeout=DASK_WORKER_WAIT_S)
    except Exception:
        client.close()
        _fail_usage(
            f"--scheduler {scheduler}: no worker joined within {DASK_WORKER_WAIT_S:g} s "
            "(start one with: dask worker " + scheduler + ")"
        )
    try:
        with joblib.parallel_config(backend="dask"):
            yield client
    finally:
        client.close()


class _ReferenceStopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _analyse_reference(reference: Path, *, no_cache: bool, cache_dir: Path | None) -> dict:
    """The reference's analysis, before any track is planned. SIGINT or SIGTERM now
    stops the command between two blocks (a handler that raised could land inside a
    kernel) and says so: the default handlers killed it without a word, and a shell's
    background run, started ignoring SIGINT, went on (fifth sweep)."""
    import signal
    import threading

    from .adaptive import check_reference
    from .analysis import analyze_file
    from .errors import AuralisError
    from .stopping import SecondSignal, handled_signals, signal_name

    received: list[int] = []
    second = SecondSignal()

    def note(signum, frame) -> None:
        kind = second.classify(signum)
        if kind == "second":  # a second signal: at once
            os._exit(128 + signum)
        if kind == "first":
            received.append(signum)

    def watch(blocks):
        for block in blocks:
            if received:
                raise _ReferenceStopped(received[0])
            yield block

    cache = None
    if not no_cache:
        from .cache import open_cache

        cache = open_cache(cache_dir)
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, note) for s in handled_signals()} if main else {}

    def stop_if_received() -> None:
        if received:
            raise _ReferenceStopped(received[0])

    try:
        if main:  # a first run's compile, in a child a signal stops at once
            from . import warm

            warm.compile_analysis_first(tempo=False, fingerprint=True, check=stop_if_received)
        with _decoder_notes(reference):
            record = analyze_file(reference, tempo=False, cache=cache, watch=watch)
        if received:
            raise _ReferenceStopped(received[0])
        check_reference(record)
        return record
    except AuralisError as exc:
        _fail_usage(f"--reference: {exc}")
    except _ReferenceStopped as stop:
        name = signal_name(stop.signum)
        typer.echo(
            f"[error] interrupted by {name} while the reference was analysed: nothing was mastered",
            err=True,
        )
        raise typer.Exit(code=128 + stop.signum) from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if cache is not None:
            cache.close()


@app.command()
def measure(inputs: Inputs, json_out: JsonFlag = False) -> None:
    """Measure loudness per ITU-R BS.1770-4 / EBU R128 (integrated, LRA, true peak)."""
    from .audio import readable_extensions
    from .engine import measure_file
    from .records import (
        failure_line,
        is_not_audio,
        is_undecodable,
        plain_json,
        printable,
        undecodable_warning,
    )

    missing = [p for p in inputs if not p.exists()]
    if missing:
        _fail_usage(f"input {missing[0]} does not exist")
    audio, records, _ = _read_once(inputs, extensions=readable_extensions())
    if audio:
        _first_run_note(False, meter_only=True)
    for f, _rel in audio:
        with _decoder_notes(f):
            records.append(measure_file(f))
    measured = [r for r in records if r["status"] == "ok"]
    if json_out:
        typer.echo(plain_json(records, indent=2))
    elif measured:  # none: the lines below say why, under no empty table
        from .progress import fitted_table

        rows = [
            [
                printable(r["input"]),
                _fmt(r["integrated_lufs"]),
                _fmt(r["true_peak_dbtp"]),
                _fmt(r["lra_lu"]),
                _fmt(r["sample_peak_dbfs"]),
            ]
            for r in measured
        ]
        console = _table_console()
        title = "Loudness (ITU-R BS.1770-4)"
        console.print(fitted_table(title, _MEASURE_TABLE, rows, width=console.width))
    if not json_out:
        # as analyze says them: a folder's covers and texts without a line each, the
        # music it cannot decode in one warning (a user's try found the two unalike)
        for r in records:
            if r["status"] != "ok" and not (is_not_audio(r) or is_undecodable(r)):
                typer.echo(f"[{r['status']}] {failure_line(r['input'], r['error'])}", err=True)
        undecodable = undecodable_warning("measure", records)
        if undecodable is not None:
            typer.echo(printable(undecodable), err=True)
    if not records:
        _nothing_found("measure", inputs)
    raise typer.Exit(code=1 if any(r["status"] == "failed" for r in records) else 0)


#: The loudness table's columns: (header, header in a narrow terminal).
_MEASURE_TABLE = (
    ("file", "file"),
    ("integrated LUFS", "integrated\nLUFS"),
    ("true peak dBTP", "true peak\ndBTP"),
    ("LRA LU", "LRA\nLU"),
    ("sample peak dBFS", "sample\npeak dBFS"),
)


def _nothing_found(command: str, inputs: list[Path]) -> None:
    """The ``[note]`` of a ``measure`` or ``analyze`` that found no file to read (an
    empty folder): it printed an empty table, or nothing at all. Not an error, as a
    skipped file is not one (exit 0, as before)."""
    from .records import printable

    named = ", ".join(str(p) for p in inputs)
    typer.echo(printable(f"[note] {command}: no audio file found in {named}"), err=True)


@app.command()
def analyze(
    inputs: Inputs,
    json_out: JsonFlag = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    no_tempo: NoTempoOpt = False,
    no_cache: NoCacheOpt = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Analyse loudness, spectral fingerprint, dynamics, stereo image and tempo."""
    from .records import (
        failure_line,
        plain_json,
        printable,
        undecodable_record,
        undecodable_warning,
    )
    from .versions import CURVE_KEY, SPARSE_SPECTRUM_KEY

    if json_out and csv_out:
        _fail_usage("choose one of --json and --csv")
    missing = [p for p in inputs if not p.exists()]
    if missing:
        _fail_usage(f"input {missing[0]} does not exist")
    for p in inputs:  # a FIFO or device named here: said, not a silent [] (third sweep)
        if not (p.is_dir() or p.is_file()):
            why = failure_line(str(p), "not read: not a regular file")
            typer.echo(f"[skipped] {why}", err=True)
    cache = None
    if not no_cache:
        from .cache import open_cache

        cache = open_cache(cache_dir)
    skipped: list[dict] = []
    try:
        records = None
        if cache is not None:  # all from the cache: no NumPy, decoder or Numba loads
            from .recall import recall_all

            # recall_all sorts them out
            found, _, _ = _read_once(inputs, extensions=None)
            named = {Path(p) for p in inputs if Path(p).is_file()}
            files = [f for f, _rel in found]
            records = recall_all(cache, files, tempo=not no_tempo, named=named)
            skipped = [r for f in files if f not in named and (r := undecodable_record(f))]
        if records is None:
            records, skipped = _analyze_files(inputs, cache, tempo=not no_tempo)
    finally:
        if cache is not None:
            cache.close()
    for r in records:
        r.pop("loudness", None)
        r.pop("content_sha256", None)
        r.pop(CURVE_KEY, None)  # the report's plot data, not a measurement to print
        r.pop(SPARSE_SPECTRUM_KEY, None)  # the same
    if json_out:
        typer.echo(plain_json(records, indent=2))
    elif csv_out:
        _print_analysis_csv(records)
    elif any("error" not in r for r in records):  # none: no empty table
        _print_analysis_table(records)
    for r in records:
        if "error" in r:
            typer.echo(f"[failed] {failure_line(r['path'], r['error'])}", err=True)
    undecodable = undecodable_warning("analyze", skipped)
    if undecodable is not None:
        typer.echo(printable(undecodable), err=True)
    if not records:
        _nothing_found("analyze", inputs)
    raise typer.Exit(code=1 if any("error" in r for r in records) else 0)


def _analyze_files(inputs: list[Path], cache, *, tempo: bool) -> tuple[list[dict], list[dict]]:
    """Records of the files ``inputs`` name or hold, and the skipped records of the
    files passed over."""
    from .analysis import analyze_file
    from .audio import readable_extensions
    from .recall import would_answer
    from .records import error_text

    audio, skipped, _ = _read_once(inputs, extensions=readable_extensions())
    noted = False
    records = []
    for f, _rel in audio:
        if not noted and (cache is None or not would_answer(cache, f, tempo)):
            noted = True  # this file is measured: the kernels load, or compile
            _first_run_note(tempo)
        try:
            with _decoder_notes(f):
                records.append(analyze_file(f, tempo=tempo, cache=cache))
        except Exception as exc:
            records.append({"path": str(f), "error": error_text(exc)})
    return records, skipped


#: Where libmpg123 (inside libsndfile) says where in its source a message comes from:
#: ``[src/libmpg123/id3.c:process_comment():587] error: ...``.
_DECODER_SOURCE = re.compile(r"^\[src/libmpg123/[^\]]*\]\s*")


@contextlib.contextmanager
def _decoder_notes(path: Path):
    """Read one file with this process's stderr (descriptor 2) caught, then print each
    line written there once, a decoder's named by the file: ``[note] a.mp3: libmpg123:
    error: No comment text / valid description?``. libmpg123 writes its notes on an
    MP3 (an ID3 frame it cannot parse, a resync) straight to the descriptor, naming no
    file, each time the file is opened, and ``measure`` and ``analyze`` open it twice
    (its header, then its audio): every note came twice. ``master``'s workers open a
    track in their own processes; this covers the commands that read in this one
    (``measure``, ``analyze``, ``master --reference``'s reference)."""
    import tempfile

    from .records import failure_line

    try:
        sys.stderr.flush()
        saved = os.dup(2)
        caught = tempfile.TemporaryFile()
    except (OSError, ValueError):  # no descriptor 2 to catch (or none free): as it is
        yield
        return
    try:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
        caught.seek(0)
        text = caught.read().decode("utf-8", "backslashreplace")
    finally:
        os.close(saved)
        caught.close()
    for line in dict.fromkeys(ln.rstrip() for ln in text.splitlines() if ln.strip()):
        if _DECODER_SOURCE.match(line) or line.startswith(("Note: ", "Warning: ", "Error: ")):
            said = "libmpg123: " + _DECODER_SOURCE.sub("", line)
            typer.echo(f"[note] {failure_line(str(path), said)}", err=True)
        else:  # not a decoder's (a warning of this program's): as it was written
            typer.echo(line, err=True)


def _read_once(inputs: list[Path], *, extensions):
    """``discover`` for ``analyze`` and ``measure`` (masters are read too), each file
    once: a file named twice, or named and inside a folder named too, was measured and
    printed twice (third sweep). The first of its names is kept."""
    from .plan import discover

    audio, skipped, notes = discover(inputs, extensions=extensions, skip_masters=False)
    seen: set[str] = set()
    once = []
    for f, rel in audio:
        key = os.path.normpath(os.path.abspath(f))
        if key not in seen:
            seen.add(key)
            once.append((f, rel))
    return once, skipped, notes


def _first_run_note(tempo: bool, *, meter_only: bool = False) -> None:
    """``analyze``'s (and, ``meter_only``, ``measure``'s) first-run note and warning
    (a newcomer's first ``measure`` compiled for 7 s without a word)."""
    from . import FINGERPRINT_KERNEL, METER_KERNEL, TEMPO_KERNEL
    from .progress import first_run_notes

    kernels = (METER_KERNEL, FINGERPRINT_KERNEL, *((TEMPO_KERNEL,) if tempo else ()))
    for kind, text in first_run_notes(kernels[:1] if meter_only else kernels):
        typer.echo(f"[{kind}] {text}", err=True)


_ANALYSIS_COLUMNS = (
    "path",
    "duration_s",
    "integrated_lufs",
    "true_peak_dbtp",
    "lra_lu",
    "tempo_bpm",
    "tempo_confidence",
)
#: Top-level scalars of ``analyze --json`` after the fingerprint's (the columns above
#: come first, as they always did, and ``cached``, ``seconds`` and ``error`` last).
_ANALYSIS_MORE = ("sample_rate", "channels", "sample_peak_dbfs", "fingerprint_version")
#: Runner-up tempi in the CSV: ``tempo_candidates.1.bpm`` ... ``.2.score``.
_CSV_CANDIDATES = 2


def _analysis_csv_columns(records: list[dict]) -> list[str]:
    """Every value ``analyze --json`` gives, one column each: nested maps as
    ``band_energy.bass``, the runner-up tempi as ``tempo_candidates.1.bpm``, the
    long-term spectrum as ``spectrum_db.1000.0`` (band centre, Hz). The fingerprint's
    names come from the first record that has one (all share one version)."""
    from .versions import SPECTRUM_KEY, THIRD_OCTAVE_HZ

    features: list[str] = []
    maps: list[str] = []
    for r in records:
        if r.get("fingerprint"):
            for k, v in r["fingerprint"].items():
                if isinstance(v, dict):
                    maps += [f"{k}.{name}" for name in v]
                elif not isinstance(v, list) and k not in _ANALYSIS_COLUMNS and k != "version":
                    features.append(k)
            break
    candidates = [
        f"tempo_candidates.{i}.{what}"
        for i in range(1, _CSV_CANDIDATES + 1)
        for what in ("bpm", "score")
    ]
    spectrum = [f"{SPECTRUM_KEY}.{hz:.1f}" for hz in THIRD_OCTAVE_HZ]
    return [
        *_ANALYSIS_COLUMNS,
        *sorted(features),
        *maps,
        *_ANALYSIS_MORE,
        *candidates,
        *spectrum,
        "cached",
        "seconds",
        "error",
    ]


def _analysis_csv_row(r: dict, columns: list[str]) -> list:
    from .versions import SPECTRUM_KEY

    fp = r.get("fingerprint") or {}
    flat: dict = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
    flat.update({k: v for k, v in fp.items() if not isinstance(v, (dict, list))})
    flat.update({k: r[k] for k in _ANALYSIS_COLUMNS if k in r})  # the record's own first
    for k, v in fp.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{name}": x for name, x in v.items()})
    for i, c in enumerate(r.get("tempo_candidates") or [], start=1):
        flat[f"tempo_candidates.{i}.bpm"] = c["bpm"]
        flat[f"tempo_candidates.{i}.score"] = c["score"]
    spectrum = r.get(SPECTRUM_KEY) or []
    names = [c for c in columns if c.startswith(SPECTRUM_KEY + ".")]
    flat.update({name: v for name, v in zip(names, spectrum, strict=False) if v is not None})
    from .report import csv_cell

    return [csv_cell(flat.get(c)) for c in columns]


def _print_analysis_csv(records: list[dict]) -> None:
    import csv

    columns = _analysis_csv_columns(records)
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for r in records:
        writer.writerow(_analysis_csv_row(r, columns))


def _table_names(paths: list[str]) -> list[str]:
    """Each file's name, or, when two share one (``a/01.flac``, ``b/01.flac``), each
    path below the folder all share (:func:`records.display_names`)."""
    from .records import display_names

    names = [os.path.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return display_names(paths)[1]


#: The analysis table's columns: (header, header in a narrow terminal).
_ANALYSIS_TABLE = (
    ("file", "file"),  # the name: full paths are in --json / --csv
    ("dur s", "dur\ns"),
    ("LUFS", "LUFS"),
    ("dBTP", "dBTP"),
    ("LRA", "LRA"),
    ("BPM", "BPM"),
    ("conf", "conf"),
    ("centroid Hz", "centroid\nHz"),
    ("width", "width"),
    ("cached", "cached"),
)


def _print_analysis_table(records: list[dict]) -> None:
    from .progress import fitted_table
    from .records import printable

    shown = [r for r in records if "error" not in r]
    rows = []
    for r, name in zip(shown, _table_names([r["path"] for r in shown]), strict=True):
        fp = r["fingerprint"]
        rows.append(
            [
                printable(name),
                _fmt(r["duration_s"]),
                _fmt(r["integrated_lufs"]),
                _fmt(r["true_peak_dbtp"]),
                _fmt(r["lra_lu"]),
                _fmt(r["tempo_bpm"]),
                _fmt(r["tempo_confidence"], ".2f"),
                _fmt(fp.get("spectral_centroid_hz"), ".0f"),
                _fmt(fp.get("stereo_width"), ".2f"),
                str(r.get("cached") or "-"),
            ]
        )
    console = _table_console()
    # narrow: without whether it was cached, the tempo's confidence, the centroid (all
    # in --json and --csv)
    optional = (9, 6, 7)
    table = fitted_table("Analysis", _ANALYSIS_TABLE, rows, width=console.width, optional=optional)
    console.print(table)


@presets_app.command("list")
def presets_list() -> None:
    """List the built-in presets."""
    from .presets import list_presets

    for p in list_presets():
        typer.echo(f"{p.name:<8} {p.target_lufs:>6.1f} LUFS  {p.description}")
    typer.echo("adaptive          derived from each track's fingerprint")


#: What ``presets show adaptive`` says (adaptive.py's module docstring, shortened).
ADAPTIVE_TEXT = (
    "derived from each track's fingerprint, so there are no fixed parameters to show. "
    "The EQ corrects half of the difference between the track's seven band-energy "
    "shares and a balanced master's, at most 3 dB per band; compression follows the "
    "dynamics (a gentle ratio and a quieter target for a high crest factor or a wide "
    "loudness range, almost none for dense material). Each master's report lists the "
    "parameters chosen and why (parameters.notes)."
)


@presets_app.command("show")
def presets_show(
    name: Annotated[str, typer.Argument(help="Preset name or path to a .toml file.")],
    json_out: JsonFlag = False,
) -> None:
    """Show a preset's parameters."""
    from .errors import AuralisError
    from .presets import load_preset

    if name == "adaptive":  # no file: computed per track
        if json_out:
            typer.echo(json.dumps({"name": "adaptive", "description": ADAPTIVE_TEXT}, indent=2))
        else:
            typer.echo(f"adaptive: {ADAPTIVE_TEXT}")
        return
    try:
        p = load_preset(name)
    except AuralisError as exc:
        _fail_usage(str(exc))
    if json_out:
        typer.echo(json.dumps(p.to_dict(), indent=2))
        return
    typer.echo(f"{p.name}: {p.description}")
    typer.echo(f"  target {p.target_lufs:g} LUFS, ceiling {p.limiter.ceiling_dbtp:g} dBTP")
    typer.echo(f"  high-pass {p.eq.highpass_hz:g} Hz")
    for b in p.eq.bands:
        typer.echo(
            f"  {b.name:<10} {b.kind:<10} {b.frequency_hz:>7g} Hz {b.gain_db:+5.1f} dB Q {b.q:g}"
        )
    c = p.compressor
    typer.echo(
        f"  compressor {c.ratio:g}:1 at {c.threshold_db:g} dBFS (at target), "
        f"knee {c.knee_db:g} dB, "
        f"attack {c.attack_ms:g} ms, release {c.release_ms:g} ms, makeup {c.makeup_db:g} dB"
    )
    lim = p.limiter
    typer.echo(
        f"  limiter lookahead {lim.lookahead_ms:g} ms, release {lim.release_ms:g} ms, "
        f"at most {lim.max_gain_reduction_db:g} dB"
    )


class _SturdyStream:
    """A standard stream that goes quiet when its reader goes away (``| head``, a
    closed log pipe) instead of failing the run with it: the first failed write points
    the descriptor at the null device, and the batch carries on writing its outputs,
    journal and reports. Any other failure (a full disk, an I/O error) goes quiet the
    same way but is kept in :attr:`failures`: what was to be read there is lost, and
    :func:`main` says so and exits 1 (``analyze --json > x.json`` on a full disk left
    an empty file and exit 0)."""

    #: The first write error of each stream ("standard output", "standard error")
    #: other than its reader going away.
    failures: ClassVar[dict[str, OSError]] = {}

    def __init__(self, stream, name: str = "standard output") -> None:
        self._stream = stream
        self._name = name
        try:
            self._terminal = bool(stream.isatty())
        except Exception:
            self._terminal = False

    def _reader_left(self, exc: OSError) -> bool:
        """A closed pipe (EINVAL on Windows: python/cpython#79935), or a terminal
        that hung up (EIO): nobody is left to read, so nothing is lost."""
        if isinstance(exc, BrokenPipeError):
            return True
        if os.name == "nt" and exc.errno == errno.EINVAL:
            return True
        return self._terminal and exc.errno == errno.EIO

    def _gone(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and not self._reader_left(exc):
            _SturdyStream.failures.setdefault(self._name, exc)
        with contextlib.suppress(Exception):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())  # and Python's own flush at exit is quiet
            os.close(null)
        self._stream = open(os.devnull, "w")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except UnicodeEncodeError:  # a name the terminal's encoding cannot show
            encoding = getattr(self._stream, "encoding", None) or "utf-8"
            return self.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except (OSError, ValueError) as exc:  # the reader has gone, the stream was closed
            self._gone(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._gone(exc)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _sturdy_streams() -> None:
    """Standard output and error that survive their reader (see :class:`_SturdyStream`);
    one closed before the start (``2>&-``) writes to the null device, through its own
    descriptor, so the workers this process starts inherit a stream too (Python opens
    files not inheritable: a worker then found no stderr, and loky's start-up, which
    enables faulthandler on it, failed every worker)."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        if isinstance(stream, _SturdyStream):
            continue
        if stream is None and _closed(fd):
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)  # inheritable, as a standard descriptor is
                os.close(null)
            else:
                os.set_inheritable(fd, True)
            stream = open(fd, "w", closefd=False)
        elif stream is None:  # the number already holds a file of this process: kept
            stream = open(os.devnull, "w")
        label = "standard output" if fd == 1 else "standard error"
        setattr(sys, name, _SturdyStream(stream, label))


def _refuse_empty_arguments(argv: list[str]) -> None:
    """Exit 2 on an empty argument: a path option given one (``--out "$DEST"`` with
    ``DEST`` unset in a cron line) meant the current folder, and ``master "$SRC"``
    mastered it (a sweep); no option of this program takes an empty value."""
    for i, arg in enumerate(argv):
        if arg == "" or (arg.startswith("--") and arg.endswith("=") and "=" not in arg[:-1]):
            if arg:
                where = f"{arg[:-1]}= is given an empty value"
            elif i > 0:  # after an option or an input: which one is not known here
                where = f"the argument after {argv[i - 1]} is empty"
            else:
                where = "the first argument is empty"
            _fail_usage(
                f"{where}: a shell variable that is not set? (an empty path would mean "
                "the current folder; nothing was done)"
            )


def _exit_code_after_streams(code: object) -> object:
    """``code``, or 1 when a standard stream could not be written (its last bytes are
    flushed here first), with a line on standard error saying which and why."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if not _SturdyStream.failures:
        return code
    for name, exc in _SturdyStream.failures.items():
        why = exc.strerror or type(exc).__name__
        with contextlib.suppress(Exception):
            sys.stderr.write(f"[error] {name}: not all written ({why})\n")
            sys.stderr.flush()
    return code if isinstance(code, int) and code != 0 else 1


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def main() -> None:
    """Console-script entry point."""
    from ._startup import OWN_PROCESS_ENV, keep_freed_memory, one_line_warnings

    # This process and the workers it starts run nothing but the package's kernels
    # (auralis_batch._startup: Numba's BLAS probe need not load scipy.linalg).
    os.environ[OWN_PROCESS_ENV] = "1"
    keep_freed_memory(children=True)
    _sturdy_streams()
    one_line_warnings()
    from .stopping import Stop, signal_name

    try:
        _refuse_empty_arguments(sys.argv[1:])
        app(prog_name="auralis-batch")
    except SystemExit as exc:  # click ends every command with one
        code = exc.code
    except typer.Exit as exc:  # raised before click runs (an empty argument)
        code = exc.exit_code
    except Stop as stop:  # a signal between a command's steps, past its own handling
        code = 128 + stop.signum
        with contextlib.suppress(Exception):
            sys.stderr.write(f"[error] interrupted by {signal_name(stop.signum)}\n")
    else:
        code = 0
    sys.exit(_exit_code_after_streams(code))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
