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

import io
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

from ._startup import log_stamp
from .records import (
    display_names,
    failure_line,
    is_done,
    is_not_audio,
    is_read_another_way,
    is_undecodable,
    printable,
)

#: Said before a command compiles kernels its machine has not compiled yet (a first
#: master, or a first analysis with tempo): 4-6 s on one two-core machine, 8-11 s on
#: slower ones (README, Performance).
FIRST_RUN_NOTE = (
    "compiling the DSP kernels this command needs: 5 to 12 s on an idle machine (more "
    "on a busy one), once (later runs load them)"
)
#: The same when the compiled kernels cannot be kept (the warning before it says why):
#: "once (later runs load them)" contradicted it (a sweep).
EVERY_RUN_NOTE = (
    "compiling the DSP kernels this command needs: 5 to 12 s on an idle machine (more "
    "on a busy one), at every run while they cannot be kept"
)


def compile_note(cannot_keep: str | None, *, tempo: bool = False) -> str:
    """What to say before kernels compile: :data:`FIRST_RUN_NOTE`, or
    :data:`EVERY_RUN_NOTE` when ``cannot_keep`` (the package's warning) says why they
    will not be kept; ``tempo``: the tempo estimator compiles too, about as long again
    (a first ``analyze`` took 16.5 s of compilation under its note's "5 to 12 s": a
    user's try)."""
    note = EVERY_RUN_NOTE if cannot_keep else FIRST_RUN_NOTE
    return note.replace("5 to 12 s", "10 to 20 s") if tempo else note


def first_run_notes(kernels: tuple[str, ...]) -> list[tuple[str, str]]:
    """What a command says before it runs ``kernels`` (names of the package's kernel
    groups), as ``(kind, text)``: a warning when compiled kernels cannot be kept (said
    at every run: every run pays for it), then the compile note when they are not
    compiled yet on this machine. ``analyze`` and ``master`` both say these."""
    from . import _NUMBA_CACHE_NOTE, TEMPO_KERNEL, _kernels_compiled

    notes = [("warning", _NUMBA_CACHE_NOTE)] if _NUMBA_CACHE_NOTE else []
    if not _kernels_compiled(kernels):
        tempo = TEMPO_KERNEL in kernels and not _kernels_compiled((TEMPO_KERNEL,))
        notes.append(("note", compile_note(_NUMBA_CACHE_NOTE, tempo=tempo)))
    return notes


#: The summary table needs this many terminal columns; a narrower one gets the line.
SUMMARY_MIN_COLUMNS = 60
#: The widest a track's name gets in the bar, in terminal cells (at most a third of the
#: terminal): a longer one is cut in the middle (:func:`fit_name`).
NAME_MAX_CELLS = 36
#: With less room than this and a bar, the bar goes: a name is worth more.
NAME_MIN_CELLS = 20
#: The bar's width, cells: a terminal with no room for the narrowest drops the next
#: least important column (the elapsed time, then the counts of audio, then the speed).
BAR_MIN_CELLS = 10
BAR_MAX_CELLS = 40
#: What a time column needs at most (``10:00:00``), cells.
_TIME_CELLS = 8


def fit_name(name: str, width: int) -> str:
    """``name`` in at most ``width`` terminal cells: whole when it fits, else cut in
    the middle with ``…``, keeping the file name whole where it fits
    (``Wesnoth E…/02 - The Long March.ogg``, ``…/02 - The Long March.ogg``), else the
    start and the end of the file name (``02 - Transie…tended).flac``)."""
    if cell_len(name) <= width:
        return name
    if width <= 1:
        return "…"[:width]
    room = width - 1
    cut = name.rfind(os.sep)
    if 0 < cut < len(name) - 1:
        base = name[cut:]  # with its separator: the folders were cut
        if cell_len(base) <= room:
            head = room - cell_len(base)
            return _cells(name, head if head >= 4 else 0) + "…" + base  # not "Q…/01.flac"
        return fit_name(name[cut + 1 :], width)
    head = room // 2
    return _cells(name, head) + "…" + _cells(name, room - head, from_end=True)


def _cells(text: str, width: int, *, from_end: bool = False) -> str:
    """The first (or last) characters of ``text`` that fit in ``width`` cells."""
    chars = reversed(text) if from_end else iter(text)
    kept: list[str] = []
    used = 0
    for ch in chars:
        used += cell_len(ch)
        if used > width:
            break
        kept.append(ch)
    return "".join(reversed(kept) if from_end else kept)


class _NameColumn(ProgressColumn):
    """``mastering`` on the run's row, a track's file name (cut to fit) on its own."""

    def __init__(self) -> None:
        self.width = NAME_MAX_CELLS
        super().__init__()

    def get_table_column(self) -> Column:
        return Column(width=self.width, no_wrap=True)

    def render(self, task: Task) -> Text:
        if not task.fields.get("track"):
            return Text(task.description, style="bold")
        return Text("  " + fit_name(task.description, self.width - 2))


class _CountColumn(ProgressColumn):
    """Tracks done of all on the run's row (``12/40``), per cent on a track's."""

    def __init__(self) -> None:
        self.width = 4
        super().__init__()

    def get_table_column(self) -> Column:
        return Column(width=self.width, justify="right", no_wrap=True)

    def render(self, task: Task) -> Text:
        if task.fields.get("track"):
            return Text(f"{task.percentage:3.0f}%", style="progress.percentage")
        total = int(task.total or 0)
        return Text(f"{int(task.completed):{len(str(total))}d}/{total}", style="progress.download")


class _FieldColumn(ProgressColumn):
    """A text field of the run's row, in a column of a fixed width (the columns after
    it do not move as the speed gains a digit)."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.width = 0
        super().__init__()

    def get_table_column(self) -> Column:
        return Column(width=self.width, no_wrap=True)

    def render(self, task: Task) -> Text:
        return Text(task.fields.get(self.field, ""))


class _FittingProgress(Progress):
    """A progress display that fits its terminal, re-laid out at every refresh (a
    terminal can be resized): the bar takes the room the other columns leave, between
    :data:`BAR_MIN_CELLS` and :data:`BAR_MAX_CELLS`; with less, the least important
    column goes (elapsed time, then the audio counts, then the speed). At 80 columns
    the columns wrapped or were squeezed to ``…`` (a newcomer's try)."""

    def __init__(self, *, console: Console) -> None:
        self._name = _NameColumn()
        self._bar = BarColumn(bar_width=BAR_MAX_CELLS)
        self._parts: dict[str, ProgressColumn] = {
            "count": _CountColumn(),
            "info": _FieldColumn("info"),
            "brief": _FieldColumn("brief"),
            "elapsed": TimeElapsedColumn(),
            "remaining": TimeRemainingColumn(),
        }
        self._screen = console  # Progress lays out once before its console is set
        super().__init__(console=console, transient=False)

    def make_tasks_table(self, tasks) -> Table:
        tasks = list(tasks)
        self.columns = tuple(self._layout(self._screen.width, tasks))
        return super().make_tasks_table(tasks)

    def _layout(self, width: int, tasks: list[Task]) -> list[ProgressColumn]:
        run = next((t for t in tasks if not t.fields.get("track")), None)
        fields = run.fields if run is not None else {}
        total = int(run.total or 0) if run is not None else 0
        # the speed's room is kept for 4 digits, so that the layout holds as it grows
        pad = max(0, 4 - len(fields.get("brief", "x").split(" ")[-1].rstrip("x")))
        cells = {
            "count": max(2 * len(str(total)) + 1, 4),
            "info": cell_len(fields.get("info", "")) + pad,
            "brief": cell_len(fields.get("brief", "")) + pad,
            "elapsed": _TIME_CELLS,
            "remaining": _TIME_CELLS,
        }
        for name in ("count", "info", "brief"):
            self._parts[name].width = cells[name]
        self._name.width = max(min(NAME_MAX_CELLS, width // 3), NAME_MIN_CELLS)
        for names in (
            ("count", "info", "elapsed", "remaining"),
            ("count", "brief", "remaining"),
            ("count", "remaining"),
        ):
            used = self._name.width + sum(cells[n] for n in names) + len(names) + 1
            if width - used >= BAR_MIN_CELLS:
                self._bar.bar_width = min(width - used, BAR_MAX_CELLS)
                return [self._name, self._bar, *(self._parts[n] for n in names)]
        self._name.width = max(width - cells["count"] - 1, 1)
        return [self._name, self._parts["count"]]


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
        #: The command said the first-run note and warning already (before a
        #: reference's analysis): not again.
        self.first_run_said = False
        #: Seconds the command spent before the run (a reference's analysis), or None.
        self.before_s: float | None = None

    def __enter__(self) -> BatchProgress:
        if self.enabled and self.interactive:
            self._progress = _FittingProgress(console=self.console)
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
                "mastering",
                total=max(n_tracks + len(decided), 0),
                completed=len(decided),
                **self._info(),
            )
        for rec in decided:
            if rec.get("status") == "failed":  # refused at planning (a foreign file, ...)
                self._fail(rec)
                if self.enabled and not self.interactive:
                    self._plain_line(rec)  # a log gets its line, as every track's
        if n_tracks:
            self.first_run_note()

    def first_run_note(self) -> None:
        """On a machine's first run, say why nothing seems to happen for a while
        (unless the command said it already: :attr:`first_run_said`)."""
        if self.first_run_said:
            return
        for kind, text in first_run_notes(self.kernels):
            if kind == "warning" or self.enabled:  # the warning even with --quiet
                self.note(text, kind=kind)

    def note(self, text: str, *, kind: str = "note") -> None:
        """A ``[note]`` (or ``[kind]``) line on stderr, above the bar in a terminal."""
        text = printable(text)
        if self._progress is not None:
            self.console.print(f"[{kind}] {text}", markup=False, highlight=False)
        else:  # in a log, dated as its other lines are (a newcomer's cron try)
            stamp = "" if self.interactive else log_stamp()
            print(f"{stamp}[{kind}] {text}", file=sys.stderr, flush=True)

    def _info(self) -> dict[str, str]:
        """The run's row: ``info`` in a wide terminal, ``brief`` in a narrow one."""
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        speed = f"{self.audio_s / elapsed:.0f}x"
        return {
            "info": f"{self.failed} failed, {_hms(self.audio_s)} of "
            f"{_hms(self.total_audio_s)} audio, {speed} realtime",
            "brief": f"{self.failed} failed, {speed}",
        }

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
            self._progress.update(self._task, advance=1, **self._info())

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
                        printable(Path(name).name),
                        total=1.0,
                        completed=0.0,
                        track=True,
                        info="",
                        brief="",
                    )
                    self._tracks[name] = task
                self._progress.update(task, completed=fraction)
            if self._task is not None:
                self._progress.update(self._task, **self._info())

    def print_summary(self, records: list[dict], summary: dict) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-9)

        def f(v):
            return "-" if v is None else f"{v:.1f}"

        shown = [r for r in records if r.get("status") != "skipped"]
        _, names = display_names([r["input"] for r in shown])  # full paths are in --report
        rows = []
        for r, name in zip(shown, names, strict=True):
            b, a = r.get("before") or {}, r.get("after") or {}
            rows.append(
                [
                    printable(name),
                    r["status"],
                    f(b.get("integrated_lufs")),
                    f(a.get("integrated_lufs")),
                    f(a.get("true_peak_dbtp")),
                    f(a.get("lra_lu")),
                    f"{r.get('seconds', 0.0):.1f}",
                ]
            )
        # a re-run with nothing to do: the line says it; a terminal too narrow for the
        # seven columns drew the borders with every cell blank: the line says it too
        if self.interactive and shown and self.console.width >= SUMMARY_MIN_COLUMNS:
            table = fitted_table(
                "auralis-batch summary",
                _SUMMARY_COLUMNS,
                rows,
                width=self.console.width,
                optional=(6,),  # the seconds: the report has them
            )
            self.console.print(table)
        # mastered with something to know (a target not reached): counted, so a log's
        # "5 mastered" does not read as five clean masters (a newcomer's try)
        warned = sum(r.get("status") == "ok" and bool(r.get("warning")) for r in records)
        mastered = f"{summary['ok']} mastered" + (f" ({warned} with a warning)" if warned else "")
        parts = [mastered, f"{summary['failed']} failed"]
        # what each skip was: in a nightly log only "done" says the library is finished
        # (a newcomer's and a user's tries read covers and links as unfinished work)
        why = [
            f"{count} {label}"
            for label, count in (
                ("done", sum(map(is_done, records))),
                ("not audio", sum(map(is_not_audio, records))),
                ("cannot be decoded", sum(map(is_undecodable, records))),
                ("read another way", sum(map(is_read_another_way, records))),
            )
            if count
        ]
        parts.append(f"{summary['skipped']} skipped" + (f" ({', '.join(why)})" if why else ""))
        for key, label in (("not_started", "not started"), ("interrupted", "interrupted")):
            if summary.get(key):
                parts.append(f"{summary[key]} {label}")
        # the run's own count: it includes tracks recovered after a stop
        audio_s = summary.get("audio_seconds", self.audio_s)
        # In a log (cron, a file) every line carries its time, the run's last one too:
        # night after night appended to one file, it says which night ended how.
        stamp = "" if self.interactive else log_stamp()
        # the run's speed is its own; a reference analysed before it is said beside it
        # (a user timing the command saw seconds the summary did not account for)
        before = (
            f", after {self.before_s:.1f} s analysing the reference"
            if self.before_s is not None and self.before_s >= 0.05  # not a cache hit's
            else ""
        )
        self.console.print(
            stamp
            + ", ".join(parts)
            + f"; {_hms(audio_s)} of audio in {elapsed:.1f} s"
            + (f" ({audio_s / elapsed:.0f}x realtime)" if audio_s > 0 else "")
            + before
        )


#: The summary's columns: (header, header in a narrow terminal, on two lines).
_SUMMARY_COLUMNS = (
    ("track", "track"),
    ("status", "status"),
    ("LUFS before", "LUFS\nbefore"),
    ("LUFS after", "LUFS\nafter"),
    ("TP after", "TP\nafter"),
    ("LRA after", "LRA\nafter"),
    ("s", "s"),
)


def fitted_table(
    title: str,
    columns: Sequence[tuple[str, str]],
    rows: list[list[str]],
    *,
    width: int,
    optional: Sequence[int] = (),
) -> Table:
    """A table of plain-text ``rows`` whose first column names files, in ``width``
    cells, no cell ever wrapped (at 80 columns a path took five lines per track, or
    every number was squeezed to ``…``). In order, the first layout in which every
    name fits whole: the wide headers; each column's narrow header (``columns[i][1]``,
    on two lines); then without the ``optional`` columns, one by one (the least useful
    first). If none does, the first that leaves the names 2/5 of the width, and names
    are cut in the middle to what is left (:func:`fit_name`). Columns after the first
    are right-aligned but for ``status``."""
    from rich.measure import Measurement

    measuring = Console(width=100_000, file=io.StringIO())
    longest = max((cell_len(r[0]) for r in rows), default=0)
    want = max(20, width * 2 // 5)
    layouts = [(0, [])] + [(1, list(optional[:n])) for n in range(len(optional) + 1)]
    chosen = None
    for narrow, dropped in layouts:
        table = _table(title, columns, rows, narrow=narrow, dropped=dropped)
        need = Measurement.get(measuring, measuring.options, table).maximum
        room = longest - (need - width)
        if room >= longest:
            return table
        if chosen is None and room >= want:
            chosen = (narrow, dropped, room)
    narrow, dropped, room = chosen or (1, list(optional), room)
    cut = [[fit_name(r[0], max(room, 8)), *r[1:]] for r in rows]
    return _table(title, columns, cut, narrow=narrow, dropped=dropped)


def _table(title, columns, rows, *, narrow: int, dropped: list[int]) -> Table:
    keep = [i for i in range(len(columns)) if i not in dropped]
    table = Table(title=title, show_lines=False)
    for i in keep:
        left = i == 0 or columns[i][0] == "status"
        table.add_column(columns[i][narrow], justify="left" if left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(escape(row[i]) for i in keep))
    return table


def _hms(seconds: float) -> str:
    """``H:MM:SS`` of audio (an overnight run is hours; a test clip is seconds)."""
    total = int(round(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"
