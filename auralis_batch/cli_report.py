"""``auralis-batch report REPORT.json --html OUT.html``: a run's JSON report as a page.

Light to import (typer only); the report modules load inside the command. Registered
in :mod:`auralis_batch.cli` as ``app.command("report")(report)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

#: At most this many problems of a report are printed; the rest are counted.
MAX_PROBLEM_LINES = 20


def _fail(message: str) -> typer.Exit:
    typer.echo(f"[error] {message}", err=True)
    return typer.Exit(code=2)


def report(
    report_json: Annotated[
        Path,
        typer.Argument(
            help="A JSON report written by master --report FILE.json.",
            metavar="REPORT.json",
            show_default=False,
        ),
    ],
    html: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional on py3.10
        typer.Option(
            "--html",
            help="Write the page here (default: the report's name with .html).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Render a JSON report as one self-contained HTML page (tables and plots).

    The page needs no network: the library table (failures first), every track's
    loudness before and after against its target, and per track its loudness over
    time, gain reduction, spectrum and EQ curve. Exit 2 when the report is not sound.
    """
    import os

    from .html_report import clean_records
    from .report import ReportError, is_report_of_ours, read_report, write_html_report

    out = html if html is not None else report_json.with_suffix(".html")
    try:
        same = out.exists() and report_json.exists() and os.path.samefile(out, report_json)
    except OSError:
        same = False
    if same or out == report_json:
        if html is None:  # REPORT given as r.html: the default page is the file itself
            raise _fail(f"{report_json}: the page would go over it; give --html OUT.html")
        raise _fail(f"--html {out}: is the report itself; name another file")
    if out.suffix.lower() in (".json", ".csv"):  # a page under another format's name
        raise _fail(f"--html {out}: a page is HTML: name it {out.with_suffix('.html').name}")
    if out.is_symlink():
        raise _fail(f"--html {out}: is a symbolic link, which is never replaced: name a file")
    if out.is_dir():  # as master's --report says it (a newcomer's: "not a page" read odd)
        raise _fail(f"--html {out}: is a folder; give a file name ({out / 'report.html'})")
    if out.exists() and not is_report_of_ours(out, "html"):
        raise _fail(
            f"--html {out}: a file that is not an auralis-batch page is there, and it is "
            "not replaced: name another file"
        )
    try:
        records, summary = read_report(report_json)
    except ReportError as exc:
        raise _fail(str(exc)) from None
    _, _, problems = clean_records(records, summary)
    if problems:
        for problem in problems[:MAX_PROBLEM_LINES]:
            typer.echo(f"[error] {report_json}: {problem}", err=True)
        if len(problems) > MAX_PROBLEM_LINES:
            more = len(problems) - MAX_PROBLEM_LINES
            typer.echo(f"[error] {report_json}: and {more} more problems", err=True)
        raise typer.Exit(code=2)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.exists():  # made (once the report is sound), as master --report does
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise _fail(f"--html {out}: folder {folder} cannot be made ({exc.strerror})") from None
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise _fail(f"--html {out}: folder {folder} does not exist or is not writable")
    title = f"auralis-batch report: {report_json.name}"
    try:
        size = write_html_report(out, records, summary, title=title)
    except OSError as exc:
        raise _fail(f"--html {out}: cannot write it ({exc.strerror or exc})") from None
    tracks = f"{len(records)} track" + ("" if len(records) == 1 else "s")
    typer.echo(f"wrote {out} ({tracks}, {size / 1024:.0f} KiB)")
