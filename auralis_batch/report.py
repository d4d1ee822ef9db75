"""Reports: JSON ``{"tracks": [...], "summary": {...}}`` or a flat CSV, written atomically."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

#: File name endings ``--report`` understands.
REPORT_SUFFIXES = (".json", ".csv")

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


def _atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(path: str | os.PathLike, records: list[dict], summary: dict) -> None:
    """``.csv`` writes one row per track; anything else writes JSON."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for rec in records:
            writer.writerow(["" if (v := _get(rec, c)) is None else v for c in CSV_COLUMNS])
        _atomic_write(p, buf.getvalue())
    else:
        payload = {"tracks": records, "summary": summary}
        _atomic_write(p, json.dumps(payload, indent=2, allow_nan=False) + "\n")
