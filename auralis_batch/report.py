"""Reports: JSON ``{"tracks": [...], "summary": {...}}``, a flat CSV or an HTML page
(:mod:`auralis_batch.html_report`), written atomically; and the JSON read back."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
from pathlib import Path

from .errors import AuralisError
from .identity import move_no_clobber
from .records import plain_json
from .stopping import removed_if_ended

#: File name endings ``--report`` understands.
REPORT_SUFFIXES = (".json", ".csv", ".html")
#: A JSON report larger than this is refused unread (2,000 tracks take about 15 MB).
MAX_REPORT_BYTES = 1 << 30


class ReportError(AuralisError, ValueError):
    """A report file that cannot be read back: missing, not JSON, or not a report."""


CSV_COLUMNS = (
    "input",
    "output",
    "status",
    "error",
    "preset",
    "seconds",
    "duration_s",
    "before.integrated_lufs",
    "before.true_peak_dbtp",
    "before.lra_lu",
    "before.sample_peak_dbfs",
    "after.integrated_lufs",
    "after.true_peak_dbtp",
    "after.lra_lu",
    "after.sample_peak_dbfs",
    "render.gain_db",
    "render.limiter_max_gain_reduction_db",
    "render.target_reached",
    "tempo_bpm",
    "fingerprint_cached",
    "warning",
)


def _get(rec: dict, dotted: str):
    cur = rec
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


#: The first columns of every CSV report this tool has written (later versions may
#: add columns after them): what :func:`is_report_of_ours` reads in a CSV's header.
_CSV_START = "input,output,status,error,preset,"
#: How a JSON report starts as :func:`write_report` writes it (``indent=2``): what a
#: temporary cut short still holds.
_JSON_START = '{\n  "tracks": ['


def report_kind(path: str | os.PathLike) -> str:
    """``"html"``, ``"csv"`` or ``"json"``: what :func:`write_report` writes at ``path``."""
    suffix = Path(path).suffix.lower()
    return {".html": "html", ".csv": "csv"}.get(suffix, "json")


def is_report_of_ours(path: str | os.PathLike, kind: str | None = None) -> bool:
    """Whether ``path`` is a regular file holding a report of this tool of ``kind``
    (default: the kind its name says, :func:`report_kind`): one a run may replace with
    its new report. A page names this tool as its generator; a CSV starts with this
    tool's columns; a JSON report is an object of exactly ``tracks`` (objects with an
    ``input`` and a ``status``) and ``summary``. Anything else (a user's page, notes, a
    playlist, a link, a report of another kind) is not replaced."""
    kind = kind or report_kind(path)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        if kind != "json":
            with open(path, "rb") as f:
                return _starts_as_report(f.read(4096).decode("utf-8", "replace"), kind)
        tracks, summary = read_report(path)
    except (OSError, ReportError):
        return False
    return isinstance(summary, dict) and all(
        isinstance(t, dict) and "input" in t and "status" in t for t in tracks
    )


def _umask() -> int:
    """The process's umask, read from /proc where it can be (setting it to read it, the
    only other way, would touch files other threads create meanwhile)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: A report's mode: 0666 less the process's umask (0644 under the usual 022), as the
#: masters get; read once, at import (os.umask can only be read by setting it).
_PLAIN_FILE_MODE = 0o666 & ~_umask()


def _atomic_write(
    path: Path, text: str, *, kind: str, replace_any: bool = False, errors: str = "strict"
) -> None:
    """The whole file or none of it: a temporary beside it (a fresh name: nothing there
    is overwritten), flushed to disk, renamed. What it is renamed over is checked at
    that moment, not only when the run started: a report of ours of ``kind`` is
    replaced, anything else only with ``replace_any`` (``--overwrite``), and a name
    that was free takes the report only if it still is (a hard link, which fails if a
    file appeared meanwhile). ``errors``: how file names that are not UTF-8 (surrogate
    escapes) are written.

    Raises
    ------
    FileExistsError
        A file that is not a report of ours of ``kind`` is at ``path``.
    """
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # e.g. --report OUT/report.json
    _sweep_stale_temporaries(path, kind)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    tmp = Path(name)
    with removed_if_ended(tmp):  # a second Ctrl-C ends the process: no finally runs
        try:
            with open(fd, "w", encoding="utf-8", errors=errors) as f:
                os.fchmod(f.fileno(), _PLAIN_FILE_MODE)  # as open() would make it, not 0600
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if not os.path.lexists(path):
                move_no_clobber(tmp, path)
            elif replace_any or is_report_of_ours(path, kind):
                os.replace(tmp, path)
            else:
                raise FileExistsError(
                    errno.EEXIST, "a file that is not an auralis-batch report is there", str(path)
                )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


#: A report temporary older than this (s) belongs to no writer still running: a report
#: is written in well under a second, so one this old was left by a killed run.
STALE_TEMPORARY_S = 15 * 60


def _sweep_stale_temporaries(path: Path, kind: str) -> None:
    """Remove what a run killed while writing this report left beside it: a hidden
    ``.NAME.XXXXXXXX.partial`` (mkstemp's eight characters), a regular file, older
    than :data:`STALE_TEMPORARY_S`, that starts as a report of ours of ``kind``
    does. A file of any other name, age or content is the user's: left alone."""
    import re
    import time

    pattern = re.compile(re.escape(f".{path.name}.") + r"[A-Za-z0-9_]{8}\.partial")
    try:
        with os.scandir(path.parent) as entries:
            names = [e for e in entries if pattern.fullmatch(e.name)]
    except OSError:
        return
    for entry in names:
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < STALE_TEMPORARY_S:
                continue
            with open(entry.path, "rb") as f:
                head = f.read(4096).decode("utf-8", "replace")
            if _starts_as_report(head, kind):
                os.unlink(entry.path)
        except OSError:
            continue


def _starts_as_report(head: str, kind: str) -> bool:
    """Whether the first bytes of a file are those a report of ours of ``kind`` starts
    with (what a temporary cut short still holds)."""
    from .html_report import GENERATOR_META

    if kind == "html":
        return GENERATOR_META in head
    if kind == "csv":
        return head.startswith(_CSV_START)
    return head.startswith(_JSON_START)


def csv_cell(value: object) -> object:
    """A value as a CSV cell: ``None`` empty, a bool as JSON writes it (``true`` /
    ``false``: Python's ``True`` was written before, which no CSV reader takes for a
    boolean), anything else as it is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_report(
    path: str | os.PathLike, records: list[dict], summary: dict, *, replace_any: bool = False
) -> None:
    """``.csv`` writes one row per track, ``.html`` a self-contained page of tables and
    plots; anything else writes JSON. Only a report of ours of the same kind is
    replaced, unless ``replace_any`` (see :func:`_atomic_write`)."""
    p = Path(path)
    kind = report_kind(p)
    if kind == "html":
        write_html_report(p, records, summary, replace_any=replace_any)
    elif kind == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for rec in records:
            writer.writerow([csv_cell(_get(rec, c)) for c in CSV_COLUMNS])
        text = buf.getvalue()
        _atomic_write(p, text, kind=kind, replace_any=replace_any, errors="surrogateescape")
    else:
        payload = {"tracks": records, "summary": summary}
        _atomic_write(p, plain_json(payload, indent=2) + "\n", kind=kind, replace_any=replace_any)


def write_html_report(
    path: str | os.PathLike,
    records: list[dict],
    summary: dict | None,
    *,
    title: str = "auralis-batch report",
    replace_any: bool = False,
) -> int:
    """Write the HTML page of ``records`` (see :mod:`auralis_batch.html_report`) to
    ``path``, whatever its suffix (over a page of ours only, unless ``replace_any``);
    returns its size in bytes."""
    from .html_report import render_html

    page = render_html(records, summary, title=title)
    # a name that is not UTF-8 shows its odd bytes as \udcXX: the page stays UTF-8
    page = page.encode("utf-8", "backslashreplace").decode("utf-8")
    _atomic_write(Path(path), page, kind="html", replace_any=replace_any)
    return len(page.encode("utf-8"))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_report(path: str | os.PathLike) -> tuple[list, dict | None]:
    """The ``tracks`` and ``summary`` of a JSON report written by ``--report FILE.json``.

    Only the outer shape is checked here (an object with a list of ``tracks``);
    :func:`auralis_batch.html_report.clean_records` checks each value.

    Raises
    ------
    ReportError
        The file cannot be read, is larger than ``MAX_REPORT_BYTES``, is not JSON
        (``NaN`` and ``Infinity`` included), or is not a report.
    """
    p = Path(path)
    try:
        if not stat.S_ISREG(p.stat().st_mode):  # a FIFO or device would block or never end
            raise ReportError(f"{p}: not a regular file")
        with open(p, "rb") as f:
            data = f.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        raise ReportError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"{p}: larger than {MAX_REPORT_BYTES >> 20} MiB; not a report")
    try:
        payload = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        hint = " (give the run's --report FILE.json)" if p.suffix.lower() != ".json" else ""
        raise ReportError(f"{p}: not a JSON report ({exc}){hint}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("tracks"), list):
        if isinstance(payload, dict) and "tracks" in payload:
            got = f'"tracks" as a JSON {type(payload["tracks"]).__name__}, not a list'
        elif isinstance(payload, dict):
            got = (
                "an object with keys " + ", ".join(list(payload)[:5])
                if payload
                else "an empty object"
            )
        else:
            got = f"a JSON {type(payload).__name__}"
        raise ReportError(
            f"{p}: not a report of master --report FILE.json: expected "
            f'{{"tracks": [...], "summary": {{...}}}}, got {got}'
        )
    return payload["tracks"], payload.get("summary")
