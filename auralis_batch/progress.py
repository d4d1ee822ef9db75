"""What a run shows while it works, for a person at a terminal or for a log file.

* stderr is a terminal: a rich bar over every track of the run (skipped ones count
  as done at once), audio mastered, speed and ETA, a line per track in flight with
  how far it is, and failures printed as they happen.
* stderr is not a terminal (cron, ``nohup``, ``2> run.log``): one plain line per
  finished track, flushed at once, so ``tail -f`` follows the night:
  ``2026-11-30T01:02:03 ok          12.3 s   154x  Artist/Album/01.flac``.
Disabled (``--quiet``) it prints nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .records import display_names, failure_line, printable

#: Said before a command compiles kernels its machine has not compiled yet (a first
#: master, or a first analysis with tempo): about 5 s on two cores (README, Performance).
FIRST_RUN_NOTE = (
    "compiling the DSP kernels this command needs: about 5 s on an idle machine, once "
    "(later runs load them)"
)


#: The summary table needs this many terminal columns; a narrower one gets the line.
SUMMARY_MIN_COLUMNS = 60


class BatchProgress:
    """Context manager fed by the batch engine's callbacks."""

    def __init__(self, *, enabled: bool = True, interactive: bool | None = None) -> None:
        self.enabled = enabled
        # A log file gets the summary on one line (a terminal wraps it as it likes).
        self.console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._tracks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.failed = 0
        self.audio_s = 0.0
        self.total_audio_s = 0.0
        #: The kernels the run will use (``auralis_batch._kernels_compiled``).
        self.kernels: tuple[str, ...] = ("loudness.kweighted_subblock_power", "dynamics.limiter")

    def __enter__(self) -> BatchProgress:
        if self.enabled and self.interactive:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            with self._lock:
                for task in self._tracks.values():
                    self._progress.remove_task(task)
                self._tracks.clear()
            self._progress.__exit__(*exc)

    def start(self, n_tracks: int, total_audio_s: float, decided: list[dict]) -> None:
        """The run starts: ``n_tracks`` to do, ``decided`` records already settled."""
        self._t0 = time.monotonic()
        self.total_audio_s = total_audio_s
        if self._progress is not None:
            self._task = self._progress.add_task(
                "[bold]mastering",
                total=max(n_tracks + len(decided), 0),
                completed=len(decided),
                info=self._info(),
            )
        for rec in decided:
            if rec.get("status") == "failed":  # refused at planning (a foreign file, ...)
                self._fail(rec)
                if self.enabled and not self.interactive:
                    self._plain_line(rec)  # a log gets its line, as every track's
        if n_tracks:
            self.first_run_note()

    def first_run_note(self) -> None:
        """On a machine's first run, say why nothing seems to happen for a while."""
        from . import _NUMBA_CACHE_NOTE, _kernels_compiled

        if _NUMBA_CACHE_NOTE:  # said even with --quiet: every run pays for it
            self.note(_NUMBA_CACHE_NOTE, kind="warning")
        if self.enabled and not _kernels_compiled(self.kernels):
            self.note(FIRST_RUN_NOTE)

    def note(self, text: str, *, kind: str = "note") -> None:
        """A ``[note]`` (or ``[kind]``) line on stderr, above the bar in a terminal."""
        text = printable(text)
        if self._progress is not None:
            self.console.print(f"[{kind}] {text}", markup=False, highlight=False)
        else:
            print(f"[{kind}] {text}", file=sys.stderr, flush=True)

    def _info(self) -> str:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        return (
            f"{self.failed} failed, {_hms(self.audio_s)} of {_hms(self.total_audio_s)} audio, "
            f"{self.audio_s / elapsed:.0f}x realtime"
        )

    def _fail(self, rec: dict) -> None:
        self.failed += 1
        if self.enabled and self.interactive:
            line = failure_line(rec["input"], rec.get("error"))
            self.console.print(f"[red]failed[/red] {escape(line)}", highlight=False)

    def update(self, rec: dict) -> None:
        """A unit finished (called in order of completion)."""
        self.audio_s += float(rec.get("duration_s") or 0.0)
        if rec.get("status") == "failed":
            self._fail(rec)
        if not self.enabled:
            return
        if not self.interactive:
            self._plain_line(rec)
            return
        if rec.get("status") == "ok" and rec.get("warning"):
            line = failure_line(rec["input"], rec["warning"])
            self.console.print(f"[yellow]warning[/yellow] {escape(line)}", highlight=False)
        if self._progress is not None and self._task is not None:
            with self._lock:
                task = self._tracks.pop(rec["input"], None)
                if task is not None:
                    self._progress.remove_task(task)
            self._progress.update(self._task, advance=1, info=self._info())

    def _plain_line(self, rec: dict) -> None:
        seconds = float(rec.get("seconds") or 0.0)
        duration = float(rec.get("duration_s") or 0.0)
        speed = f"{duration / seconds:5.0f}x" if seconds > 0 and duration else "     -"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        error = rec.get("error")
        what = failure_line(rec["input"], error) if rec.get("status") != "ok" and error else None
        line = f"{stamp} {rec.get('status', '?'):<11} {seconds:7.1f} s {speed}  "
        if what is None and rec.get("warning"):  # mastered, with something to know
            what = f"{printable(rec['input'])}; warning: {printable(str(rec['warning']))}"
        print(line + (what or printable(rec["input"])), file=sys.stderr, flush=True)

    def running(self, fractions: dict[str, float]) -> None:
        """Tracks in flight and how far each is (from the batch's poller thread)."""
        if self._progress is None:
            return
        with self._lock:
            for name, fraction in fractions.items():
                task = self._tracks.get(name)
                if task is None:
                    task = self._progress.add_task(
                        f"  {escape(printable(Path(name).name))}", total=1.0, completed=0.0, info=""
                    )
                    self._tracks[name] = task
                self._progress.update(task, completed=fraction)
            if self._task is not None:
                self._progress.update(self._task, info=self._info())

    def print_summary(self, records: list[dict], summary: dict) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        table = Table(title="auralis-batch summary", show_lines=False)
        for col in ("track", "status", "LUFS before", "LUFS after", "TP after", "LRA after", "s"):
            table.add_column(col, justify="left" if col in ("track", "status") else "right")

        def f(v):
            return "-" if v is None else f"{v:.1f}"

        shown = [r for r in records if r.get("status") != "skipped"]
        _, names = display_names([r["input"] for r in shown])  # full paths are in --report
        for r, name in zip(shown, names, strict=True):
            b, a = r.get("before") or {}, r.get("after") or {}
            table.add_row(
                escape(printable(name)),
                r["status"],
                f(b.get("integrated_lufs")),
                f(a.get("integrated_lufs")),
                f(a.get("true_peak_dbtp")),
                f(a.get("lra_lu")),
                f"{r.get('seconds', 0.0):.1f}",
            )
        # a re-run with nothing to do: the line says it; a terminal too narrow for the
        # seven columns drew the borders with every cell blank: the line says it too
        if self.interactive and shown and self.console.width >= SUMMARY_MIN_COLUMNS:
            self.console.print(table)
        parts = [f"{summary['ok']} mastered", f"{summary['failed']} failed"]
        parts.append(f"{summary['skipped']} skipped")
        for key, label in (("not_started", "not started"), ("interrupted", "interrupted")):
            if summary.get(key):
                parts.append(f"{summary[key]} {label}")
        # the run's own count: it includes tracks recovered after a stop
        audio_s = summary.get("audio_seconds", self.audio_s)
        # In a log (cron, a file) every line carries its time, the run's last one too:
        # night after night appended to one file, it says which night ended how.
        stamp = "" if self.interactive else time.strftime("%Y-%m-%dT%H:%M:%S ")
        self.console.print(
            stamp
            + ", ".join(parts)
            + f"; {_hms(audio_s)} of audio in {elapsed:.1f} s"
            + (f" ({audio_s / elapsed:.0f}x realtime)" if audio_s > 0 else "")
        )


def _hms(seconds: float) -> str:
    """``H:MM:SS`` of audio (an overnight run is hours; a test clip is seconds)."""
    total = int(round(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"
