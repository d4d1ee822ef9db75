"""Progress for long runs (rich): tracks done/total, failures, audio hours, x realtime,
ETA; and the summary table at the end. Disabled, it does nothing (``--quiet``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class BatchProgress:
    """Context manager fed by the batch engine's callbacks."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None
        self._t0 = time.monotonic()
        self.failed = 0
        self.audio_s = 0.0
        self.total_audio_s = 0.0

    def __enter__(self) -> BatchProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]mastering"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"),
                TextColumn("{task.fields[audio]} of audio"),
                TextColumn("{task.fields[speed]:.0f}x realtime"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
                disable=not sys.stderr.isatty() and False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, n_tracks: int, total_audio_s: float) -> None:
        self._t0 = time.monotonic()
        self.total_audio_s = total_audio_s
        if self._progress is not None:
            self._task = self._progress.add_task(
                "master", total=max(n_tracks, 0), failed=0, audio=_hms(0.0), speed=0.0
            )

    def update(self, rec: dict) -> None:
        if rec.get("status") == "failed":
            self.failed += 1
        self.audio_s += float(rec.get("duration_s") or 0.0)
        if self._progress is not None and self._task is not None:
            elapsed = max(time.monotonic() - self._t0, 1e-9)
            self._progress.update(
                self._task,
                advance=1,
                failed=self.failed,
                audio=_hms(self.audio_s),
                speed=self.audio_s / elapsed,
            )

    def print_summary(self, records: list[dict], summary: dict) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        table = Table(title="auralis-batch summary", show_lines=False)
        for col in ("track", "status", "LUFS before", "LUFS after", "TP after", "LRA after", "s"):
            table.add_column(col, justify="left" if col in ("track", "status") else "right")

        def f(v):
            return "-" if v is None else f"{v:.1f}"

        for r in records:
            if r.get("status") == "skipped":
                continue
            b, a = r.get("before") or {}, r.get("after") or {}
            table.add_row(
                Path(r["input"]).name,  # full paths are in --report
                r["status"],
                f(b.get("integrated_lufs")),
                f(a.get("integrated_lufs")),
                f(a.get("true_peak_dbtp")),
                f(a.get("lra_lu")),
                f"{r.get('seconds', 0.0):.1f}",
            )
        self.console.print(table)
        self.console.print(
            f"{summary['ok']} mastered, {summary['failed']} failed, {summary['skipped']} skipped; "
            f"{_hms(self.audio_s)} of audio in {elapsed:.1f} s "
            f"({self.audio_s / elapsed:.0f}x realtime)"
        )


def _hms(seconds: float) -> str:
    """``H:MM:SS`` of audio (an overnight run is hours; a test clip is seconds)."""
    total = int(round(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"
