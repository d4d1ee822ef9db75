"""The HTML report: one self-contained page of a run's tracks, tables and plots.

The page needs no network to be viewed: its styles, scripts (Vega, Vega-Lite and
vega-embed, vendored in ``assets/`` with their licences) and data are inline, and its
Content-Security-Policy allows nothing else: no request leaves the page, and only the
page's own scripts run (each is allowed by its SHA-256, ``'unsafe-eval'`` is not
granted: Vega evaluates its expressions with its interpreter).

* Without JavaScript the page is complete as tables: the library table (failures and
  skips first) and one collapsed section per mastered track with every number.
* With it, the table sorts by any column, a plot shows every track's loudness before
  and after against its target, and a track's plots (loudness over time, gain
  reduction, third-octave spectrum, EQ curve) are drawn when its section opens. A
  section's body is inside ``<noscript>``: markup without JavaScript, one text node
  with it (the page's script builds the body when the section first opens); the plots'
  data waits, unparsed, in one ``<script type="application/json">``. So a 2,000-track
  page holds a quarter of the elements it would and opens about as fast as its table.

Every number shown is the report's own number: a value is printed with at least its
column's decimals and as many more as it takes to give back exactly the JSON's number
(:func:`format_number`). The EQ curve is the one value computed here, from the
track's ``parameters`` with :func:`auralis_batch.eq.design_eq`.

Records are distrusted: :func:`clean_records` keeps only values of the expected type
and range and lists every other one as ``tracks[3].before.lra_lu: must be ...``. The
``report`` command refuses a report with problems; a run's own ``--report FILE.html``
renders what is valid. Every string is escaped into the page, and strings inside the
page's JSON have ``<``, ``>`` and ``&`` as ``\\u`` escapes, so no name can end a script.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

from .records import LOUDNESS_KEYS, STATUSES, display_names, is_not_audio, is_routine_skip
from .versions import DEFAULT_TEMPO_BPM

#: In every page's head, near the top: how a later run knows the file at its
#: ``--report`` path is a page it may replace (``report.is_report_of_ours``).
GENERATOR_META = '<meta name="generator" content="auralis-batch">'

__all__ = [
    "EQ_CURVE_HZ",
    "MAX_SERIES_POINTS",
    "clean_records",
    "eq_response_db",
    "format_number",
    "pack_series",
    "render_html",
    "unpack_series",
]

#: Longest series accepted (the engine writes at most 200 points per series).
MAX_SERIES_POINTS = 2000
#: Most bands accepted in a spectrum (the engine writes 31 third octaves, 20 Hz-20 kHz).
MAX_SPECTRUM_BANDS = 256
#: Numbers beyond this magnitude are refused (no measurement comes near it).
MAX_ABS = 1e9
#: Frequencies of the EQ curve: 91 points from 20 Hz to 20 kHz, 30 per decade.
EQ_CURVE_HZ: tuple[float, ...] = tuple(round(20.0 * 1000.0 ** (i / 90), 2) for i in range(91))
#: Sample rate of the EQ curve when the record has none.
DEFAULT_SAMPLE_RATE = 48000
#: Failed, skipped and other tracks that need a look come first, in this order.
STATUS_ORDER = ("failed", "interrupted", "not started", "skipped", "planned", "ok")
#: At most this many lines in the list of tracks that need attention.
ATTENTION_LINES = 50

_LOUDNESS_LABELS = (
    "integrated, LUFS",
    "true peak, dBTP",
    "loudness range, LU",
    "sample peak, dBFS",
    "max momentary, LUFS",
    "max short-term, LUFS",
)
_TRACK_STRINGS = ("output", "error", "warning", "preset", "replaced")
# key: (minimum, maximum, integer)
_TRACK_NUMBERS = {
    "seconds": (0.0, MAX_ABS, False),
    "duration_s": (0.0, MAX_ABS, False),
    "analysis_seconds": (0.0, MAX_ABS, False),
    "tempo_bpm": (0.0, 10000.0, False),
    "tempo_confidence": (0.0, 1.0, False),
    "sample_rate": (1.0, 10_000_000.0, True),
    "channels": (1.0, 1024.0, True),
}
_RENDER_NUMBERS = (
    "target_lufs",
    "ceiling_dbtp",
    "gain_db",
    "compressor_threshold_db",
    "limiter_max_gain_reduction_db",
)
_COMPRESSOR_KEYS = ("threshold_db", "ratio", "knee_db", "attack_ms", "release_ms", "makeup_db")
_LIMITER_KEYS = ("ceiling_dbtp", "lookahead_ms", "release_ms", "max_gain_reduction_db")
_ALBUM_NUMBERS = ("tracks", "gain_db", "album_lufs", "album_true_peak_dbtp", "target_lufs")
_SUMMARY_NUMBERS = (
    "tracks",
    "ok",
    "failed",
    "skipped",
    "not_started",
    "interrupted",
    "planned",
    "seconds",
    "audio_seconds",
    "wall_seconds",
    "reference_seconds",
)
_TIME_SERIES = ("short_term_before", "short_term_after", "compressor_gr_db", "limiter_gr_db")
_SPECTRUM_LINES = ("source_db", "master_db", "reference_db")


# --------------------------------------------------------------------------- numbers


def format_number(value: float, decimals: int = 2, *, sign: bool = False) -> str:
    """``value`` with at least ``decimals`` decimals, and more when the JSON's number
    has them: ``-14.0`` -> ``-14.00``, ``0.8156`` -> ``0.8156``; ``float()`` of the
    text is ``value`` exactly. Integers print as integers; ``sign`` adds ``+``."""
    plus = "+" if sign else ""
    if isinstance(value, int):
        return format(value, f"{plus}d")
    for d in range(decimals, 18):
        text = format(value, f"{plus}.{d}f")
        if float(text) == value:
            return text
    return repr(value)  # below 1e-17 only an exponent shows the value


def _tempo_estimated(track: dict) -> bool:
    """False for the default a run without tempo reports (120 BPM, confidence 0): the
    page leaves it blank instead of showing it as a measurement."""
    return not (track.get("tempo_confidence") == 0 and track.get("tempo_bpm") == DEFAULT_TEMPO_BPM)


def _fmt(value: float | None, decimals: int = 2, *, sign: bool = False) -> str:
    return "" if value is None else format_number(value, decimals, sign=sign)


# --------------------------------------------------------------------------- checks


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


class _Checker:
    """Collects ``where: problem`` lines while values are read."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, where: str, expected: str, value: Any) -> None:
        self.problems.append(f"{where}: must be {expected}, got {_show(value)}")

    def number(
        self,
        value: Any,
        where: str,
        low: float = -MAX_ABS,
        high: float = MAX_ABS,
        *,
        integer: bool = False,
    ) -> float | None:
        """A finite number in ``[low, high]`` (an integer if asked), or None."""
        if value is None:
            return None
        ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if ok and math.isfinite(value) and low <= value <= high:
            return value
        kind = "an integer" if integer else "a number"
        self.bad(where, f"{kind} from {low:g} to {high:g}", value)
        return None

    def string(self, value: Any, where: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        self.bad(where, "a string", value)
        return None

    def mapping(self, value: Any, where: str) -> dict | None:
        if value is None or isinstance(value, dict):
            return value
        self.bad(where, "an object", value)
        return None

    def numbers(self, value: Any, where: str, *, limit: int = MAX_SERIES_POINTS) -> list | None:
        """A list of numbers or nulls (nulls are gaps: silence), at most ``limit`` long."""
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > limit:
            self.bad(where, f"a list of at most {limit} numbers", value)
            return None
        if _plain_numbers(value):  # the usual case, fast
            return value
        n = len(self.problems)
        for i, v in enumerate(value):
            self.number(v, f"{where}[{i}]")
        if len(self.problems) > n + 1:  # one line for a list of bad values is enough
            del self.problems[n + 1 :]
            self.problems[n] += " (and more in the list)"
        return None


def _plain_numbers(values: list) -> bool:
    """Every item None or a number (not a bool) within +-MAX_ABS; NaN and inf fail."""
    if not set(map(type, values)) <= {float, int, type(None)}:
        return False
    nums = [v for v in values if v is not None]
    if not nums:
        return True
    # min and max skip a NaN; the sum does not (NaN or inf in, NaN or inf out)
    return math.isfinite(sum(nums)) and -MAX_ABS <= min(nums) and max(nums) <= MAX_ABS


def _clean_loudness(c: _Checker, value: Any, where: str) -> dict | None:
    d = c.mapping(value, where)
    if d is None:
        return None
    return {k: c.number(d.get(k), f"{where}.{k}") for k in LOUDNESS_KEYS}


def _clean_render(c: _Checker, value: Any, where: str) -> dict | None:
    d = c.mapping(value, where)
    if d is None:
        return None
    out: dict[str, Any] = {k: c.number(d.get(k), f"{where}.{k}") for k in _RENDER_NUMBERS}
    out["render_passes"] = c.number(d.get("render_passes"), f"{where}.render_passes", 0, 1000)
    reached = d.get("target_reached")
    if reached is not None and not isinstance(reached, bool):
        c.bad(f"{where}.target_reached", "true or false", reached)
        reached = None
    out["target_reached"] = reached
    notes = d.get("notes")
    if notes is not None and not (
        isinstance(notes, list) and all(isinstance(n, str) for n in notes)
    ):
        c.bad(f"{where}.notes", "a list of strings", notes)
        notes = None
    out["notes"] = notes or []
    return out


def _clean_band(c: _Checker, value: Any, where: str) -> dict | None:
    from .presets import EQ_KINDS

    d = c.mapping(value, where)
    if d is None:
        return None
    kind = d.get("kind")
    if kind not in EQ_KINDS:
        c.bad(f"{where}.kind", f"one of {', '.join(EQ_KINDS)}", kind)
    band = {
        "name": c.string(d.get("name"), f"{where}.name") or "",
        "kind": kind if kind in EQ_KINDS else None,
        "frequency_hz": c.number(d.get("frequency_hz"), f"{where}.frequency_hz", 1e-3, 1e6),
        "gain_db": c.number(d.get("gain_db"), f"{where}.gain_db", -60.0, 60.0),
        "q": c.number(d.get("q"), f"{where}.q", 1e-3, 100.0),
    }
    return band if None not in band.values() else None


def _clean_parameters(c: _Checker, value: Any, where: str) -> dict | None:
    d = c.mapping(value, where)
    if d is None:
        return None
    out: dict[str, Any] = {
        "name": c.string(d.get("name"), f"{where}.name"),
        "target_lufs": c.number(d.get("target_lufs"), f"{where}.target_lufs"),
    }
    eq = c.mapping(d.get("eq"), f"{where}.eq")
    if eq is not None:
        bands = eq.get("bands", [])
        if not isinstance(bands, list) or len(bands) > 64:
            c.bad(f"{where}.eq.bands", "a list of at most 64 bands", bands)
            bands = None
        else:
            bands = [_clean_band(c, b, f"{where}.eq.bands[{i}]") for i, b in enumerate(bands)]
        out["eq"] = {
            "highpass_hz": c.number(eq.get("highpass_hz"), f"{where}.eq.highpass_hz", 0.0, 1e5),
            "gain_db": c.number(eq.get("gain_db"), f"{where}.eq.gain_db", -100.0, 100.0),
            "bands": None if bands is None or None in bands else bands,
        }
    for part, keys in (("compressor", _COMPRESSOR_KEYS), ("limiter", _LIMITER_KEYS)):
        sub = c.mapping(d.get(part), f"{where}.{part}")
        if sub is not None:
            out[part] = {k: c.number(sub.get(k), f"{where}.{part}.{k}") for k in keys}
    return out


def _clean_series(c: _Checker, value: Any, where: str) -> dict | None:
    d = c.mapping(value, where)
    if d is None:
        return None
    out: dict[str, Any] = {"hop_s": c.number(d.get("hop_s"), f"{where}.hop_s", 1e-6, 3600.0)}
    for key in _TIME_SERIES:
        out[key] = c.numbers(d.get(key), f"{where}.{key}")
    spec = c.mapping(d.get("spectrum"), f"{where}.spectrum")
    if spec is not None:
        sw = f"{where}.spectrum"
        freqs = c.numbers(spec.get("freqs_hz"), f"{sw}.freqs_hz", limit=MAX_SPECTRUM_BANDS)
        if freqs is not None and any(f is None or f <= 0 for f in freqs):
            c.bad(f"{sw}.freqs_hz", "a list of frequencies above 0 Hz", spec.get("freqs_hz"))
            freqs = None
        lines = {}
        for key in _SPECTRUM_LINES:
            line = c.numbers(spec.get(key), f"{sw}.{key}", limit=MAX_SPECTRUM_BANDS)
            if line is not None and freqs is not None and len(line) != len(freqs):
                c.bad(f"{sw}.{key}", f"a list of {len(freqs)} values (one per freqs_hz)", line)
                line = None
            lines[key] = line
        out["spectrum"] = {"freqs_hz": freqs, **lines} if freqs else None
    return out


def _clean_album(c: _Checker, value: Any, where: str) -> dict | None:
    d = c.mapping(value, where)
    if d is None:
        return None
    out: dict[str, Any] = {k: c.number(d.get(k), f"{where}.{k}") for k in _ALBUM_NUMBERS}
    out["folder"] = c.string(d.get("folder"), f"{where}.folder")
    return out


def _clean_track(c: _Checker, rec: Any, where: str) -> dict | None:
    if not isinstance(rec, dict):
        c.bad(where, "an object (one track)", rec)
        return None
    name = rec.get("input")
    if not isinstance(name, str):
        c.bad(f"{where}.input", "a string (the input's path)", name)
        name = "(no input)"
    status = rec.get("status")
    if status not in STATUSES:
        c.bad(f"{where}.status", f"one of {', '.join(STATUSES)}", status)
        status = status if isinstance(status, str) else "failed"
    out: dict[str, Any] = {"input": name, "status": status}
    for key in _TRACK_STRINGS:
        out[key] = c.string(rec.get(key), f"{where}.{key}")
    for key, (low, high, integer) in _TRACK_NUMBERS.items():
        out[key] = c.number(rec.get(key), f"{where}.{key}", low, high, integer=integer)
    out["before"] = _clean_loudness(c, rec.get("before"), f"{where}.before")
    out["after"] = _clean_loudness(c, rec.get("after"), f"{where}.after")
    if (
        status == "ok"
        and not isinstance(rec.get("after"), dict)
        and rec.get("recovered") is not True
    ):
        c.bad(f"{where}.after", "the measurements of what an ok track wrote", rec.get("after"))
    out["render"] = _clean_render(c, rec.get("render"), f"{where}.render")
    out["parameters"] = _clean_parameters(c, rec.get("parameters"), f"{where}.parameters")
    out["album"] = _clean_album(c, rec.get("album"), f"{where}.album")
    out["series"] = _clean_series(c, rec.get("series"), f"{where}.series")
    return out


def clean_records(
    records: Sequence[Any], summary: Any = None
) -> tuple[list[dict], dict | None, list[str]]:
    """The tracks and summary with every value checked, and the problems found.

    Parameters
    ----------
    records : the report's ``tracks``; anything a JSON file can hold
    summary : the report's ``summary`` (counts and seconds), or None

    Returns
    -------
    tracks : list of dict, one per valid track object, values of the expected type
        and range only (anything else is None, or missing lists are empty)
    summary : dict of the summary's numbers, or None when there is none
    problems : list of str, ``tracks[3].before.lra_lu: must be ..., got ...``; empty
        when the report is sound
    """
    c = _Checker()
    tracks = [_clean_track(c, rec, f"tracks[{i}]") for i, rec in enumerate(records)]
    clean_summary = None
    s = c.mapping(summary, "summary")
    if s is not None:
        clean_summary = {
            k: c.number(s.get(k), f"summary.{k}", 0, MAX_ABS) for k in _SUMMARY_NUMBERS
        }
        _check_counts(c, clean_summary, [t for t in tracks if t is not None])
    return [t for t in tracks if t is not None], clean_summary, c.problems


def _check_counts(c: _Checker, summary: dict, tracks: list[dict]) -> None:
    """The summary's counts are the tracks' (a page shows them: "99 ok" of 7 tracks
    would be a wrong number on it). A count the summary leaves out is not checked, nor
    are the counts when a track's status is already a problem."""
    if any(t["status"] not in STATUSES for t in tracks):
        return
    counted = {"tracks": len(tracks)}
    for status in STATUSES:
        counted[status.replace(" ", "_")] = sum(t["status"] == status for t in tracks)
    for key, n in counted.items():
        got = summary.get(key)
        if key in _SUMMARY_NUMBERS and got is not None and got != n:
            c.bad(f"summary.{key}", f"{n}, the count of the report's tracks", got)


# --------------------------------------------------------------------------- EQ curve


def eq_response_db(eq: dict, sample_rate: int = DEFAULT_SAMPLE_RATE) -> list[float | None]:
    """The magnitude response of a preset's EQ at :data:`EQ_CURVE_HZ`, dB.

    The cascade is :func:`auralis_batch.eq.design_eq`'s, so the curve is what the
    engine applied (bands at 0 dB left out, frequencies clamped below Nyquist). The flat
    ``gain_db`` of a matching EQ (loudness compensation) is left out: the curve shows
    the tone. Frequencies at or above ``sample_rate / 2`` are None.

    Parameters
    ----------
    eq : dict, ``parameters.eq`` of a record as :func:`clean_records` leaves it
        (``highpass_hz``, ``bands`` with ``kind``, ``frequency_hz``, ``gain_db``, ``q``)
    sample_rate : int, Hz, the track's

    Returns
    -------
    list of float or None, len(EQ_CURVE_HZ), dB rounded to 0.01
    """
    import numpy as np

    from .eq import design_eq
    from .presets import EQBand, EQSettings

    settings = EQSettings(
        highpass_hz=float(eq.get("highpass_hz") or 0.0),
        bands=tuple(
            EQBand(b["name"], b["kind"], float(b["frequency_hz"]), float(b["gain_db"]), b["q"])
            for b in eq.get("bands") or ()
        ),
    )
    sos = design_eq(settings, sample_rate)
    f = np.asarray(EQ_CURVE_HZ)
    z = np.exp(-2j * np.pi * f / sample_rate)  # z^-1 on the unit circle
    h = np.ones_like(z)
    for b0, b1, b2, a0, a1, a2 in sos:
        h *= (b0 + (b1 + b2 * z) * z) / (a0 + (a1 + a2 * z) * z)
    db = 20.0 * np.log10(np.maximum(np.abs(h), 1e-15))
    nyquist = sample_rate / 2
    return [round(float(v), 2) if fi < nyquist else None for fi, v in zip(f, db, strict=True)]


class _EqCurves:
    """One curve per distinct (EQ, sample rate): a fixed preset's tracks share one."""

    def __init__(self) -> None:
        self.curves: list[list[float | None]] = []
        self._index: dict[str, int | None] = {}

    def index(self, track: dict) -> int | None:
        params = track.get("parameters") or {}
        eq = params.get("eq")
        if not eq or eq.get("bands") is None:
            return None
        sr = track.get("sample_rate")
        sr = int(sr) if sr and 1000 <= sr <= 1_000_000 else DEFAULT_SAMPLE_RATE
        key = json.dumps([eq.get("highpass_hz"), eq["bands"], sr], sort_keys=True)
        if key not in self._index:
            try:
                curve = eq_response_db(eq, sr)
            except Exception:  # a design the engine would refuse: no curve, not no page
                curve = None
            if curve is None or all(v is None for v in curve):
                self._index[key] = None
            else:
                self.curves.append(curve)
                self._index[key] = len(self.curves) - 1
        return self._index[key]


# --------------------------------------------------------------------------- page


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _json_for_script(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&``
    (so no ``</script>`` or ``<!--``), and no bare line separators."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def pack_series(values: list) -> list | dict:
    """A series of numbers and nulls, compact and exact: ``{"s": 10, "d": [...]}`` holds
    the integers ``value * s`` as differences from the previous number (nulls stay), for
    the smallest ``s`` of 1, 10, 100, 1000 that gives every value back exactly (an IEEE
    division of integers is the correctly rounded decimal, in Python as in JavaScript);
    the list itself when none does. A short-term series of 0.1 LU steps takes about half
    the bytes of its JSON list."""
    import numpy as np

    arr = np.array(values, dtype=np.float64)  # None -> NaN
    there = ~np.isnan(arr)
    x = arr[there]
    for scale in (1, 10, 100, 1000):
        ints = np.round(x * scale)
        if np.array_equal(ints / scale, x):
            break
    else:
        return values
    deltas = np.diff(ints, prepend=0.0).astype(np.int64).tolist()
    if len(deltas) == len(values):
        return {"s": scale, "d": deltas}
    out: list[int | None] = [None] * len(values)
    for i, d in zip(np.flatnonzero(there).tolist(), deltas, strict=True):
        out[i] = d
    return {"s": scale, "d": out}


def unpack_series(packed: list | dict) -> list:
    """The values of :func:`pack_series`'s result (the page's script does the same)."""
    if isinstance(packed, list):
        return packed
    out: list[float | None] = []
    acc = 0
    for d in packed["d"]:
        if d is None:
            out.append(None)
        else:
            acc += d
            out.append(acc / packed["s"])
    return out


def _asset(name: str) -> str:
    return (resources.files("auralis_batch") / "assets" / name).read_text(encoding="utf-8")


#: Scripts inlined in this order: the plotting library, then the page's own.
SCRIPT_ASSETS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js", "report.js")


def _scripts() -> tuple[str, list[str]]:
    """The inline scripts and their CSP hashes."""
    parts, hashes = [], []
    for name in SCRIPT_ASSETS:
        src = _asset(name)
        if "</script" in src.lower() or "<!--" in src:
            raise ValueError(f"assets/{name}: contains </script or <!--; it cannot be inlined")
        digest = base64.b64encode(hashlib.sha256(src.encode("utf-8")).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
        parts.append(f"<script>{src}</script>")
    return "\n".join(parts), hashes


def _status_class(status: str) -> str:
    return "s-" + status.replace(" ", "-") if status in STATUSES else "s-failed"


def _get(track: dict, dotted: str) -> Any:
    cur: Any = track
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


# (header, type for sorting, dotted key, decimals, sign); type n: number, s: status, t: text
_COLUMNS = (
    ("status", "s", "status", 0, False),
    ("track", "t", "input", 0, False),
    ("LUFS before", "n", "before.integrated_lufs", 2, False),
    ("LUFS after", "n", "after.integrated_lufs", 2, False),
    ("target LUFS", "n", "render.target_lufs", 2, False),
    ("dBTP before", "n", "before.true_peak_dbtp", 2, False),
    ("dBTP after", "n", "after.true_peak_dbtp", 2, False),
    ("LRA before", "n", "before.lra_lu", 2, False),
    ("LRA after", "n", "after.lra_lu", 2, False),
    ("gain dB", "n", "render.gain_db", 2, True),
    ("limiter GR dB", "n", "render.limiter_max_gain_reduction_db", 2, False),
    ("BPM", "n", "tempo_bpm", 2, False),
    ("time s", "n", "seconds", 4, False),
    ("error / warning", "t", "error", 0, False),
)


def _row(i: int, track: dict, name: str, has_section: bool) -> str:
    cells = []
    for _, _, key, decimals, sign in _COLUMNS:
        if key == "status":
            s = track["status"]
            cells.append(f'<td class="{_status_class(s)}">{_esc(s)}</td>')
        elif key == "input":
            text = _esc(name)
            cells.append(
                f'<td><a href="#t{i}">{text}</a></td>' if has_section else f"<td>{text}</td>"
            )
        elif key == "error":
            if track.get("error"):
                cells.append(f"<td>{_esc(_reason(track))}</td>")
            elif track.get("warning"):
                cells.append(f'<td class="warn">{_esc(track["warning"])}</td>')
            else:
                cells.append("<td></td>")
        elif key == "tempo_bpm" and not _tempo_estimated(track):
            cells.append('<td title="not estimated: the preset does not use tempo"></td>')
        elif key == "seconds" and track["status"] not in ("ok", "failed", "interrupted"):
            cells.append("<td></td>")  # nothing was timed: a skip read 0.0000
        else:
            cells.append(f"<td>{_fmt(_get(track, key), decimals, sign=sign)}</td>")
    return f'<tr id="r{i}">{"".join(cells)}</tr>'


def _table(order: list[int], tracks: list[dict], names: list[str], sections: set[int]) -> str:
    head = "".join(f'<th scope="col" data-t="{kind}">{_esc(h)}</th>' for h, kind, *_ in _COLUMNS)
    rows = "\n".join(_row(i, tracks[i], names[i], i in sections) for i in order)
    return (
        '<div class="scroll"><table class="tracks" id="tracks">'
        f"<thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table></div>"
    )


def _kv_table(track: dict) -> str:
    before, after = track.get("before") or {}, track.get("after") or {}
    rows = "".join(
        f"<tr><th>{label}</th><td>{_fmt(before.get(k))}</td><td>{_fmt(after.get(k))}</td></tr>"
        for k, label in zip(LOUDNESS_KEYS, _LOUDNESS_LABELS, strict=True)
    )
    return (
        '<table class="kv"><thead><tr><th></th><th>before</th><th>after</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _render_line(render: dict) -> str:
    parts = []
    if render.get("gain_db") is not None:
        parts.append(f"gain {_fmt(render['gain_db'], sign=True)} dB")
    if render.get("compressor_threshold_db") is not None:
        parts.append(f"compressor threshold {_fmt(render['compressor_threshold_db'])} dBFS")
    if render.get("limiter_max_gain_reduction_db") is not None:
        parts.append(f"limiter up to {_fmt(render['limiter_max_gain_reduction_db'])} dB")
    if render.get("target_lufs") is not None:
        reached = {True: " reached", False: " not reached", None: ""}[render["target_reached"]]
        parts.append(f"target {_fmt(render['target_lufs'])} LUFS{reached}")
    if render.get("ceiling_dbtp") is not None:
        parts.append(f"ceiling {_fmt(render['ceiling_dbtp'])} dBTP")
    if render.get("render_passes") is not None:
        n = render["render_passes"]
        parts.append(f"{_fmt(n)} pass{'es' * (n != 1)}")
    return "; ".join(parts)


def _chain_line(params: dict) -> str:
    """The preset's chain in one line: high-pass, bands, compressor, limiter."""
    eq, comp, lim = params.get("eq") or {}, params.get("compressor"), params.get("limiter")
    parts = []
    if eq.get("highpass_hz"):
        parts.append(f"high-pass {_fmt(eq['highpass_hz'], 0)} Hz")
    for b in eq.get("bands") or ():
        # rounded, as an EQ's display shows a band: a reference match's third-octave
        # centres came out as "peaking 31.622776601683793 Hz" (a newcomer's try)
        parts.append(
            f"{_esc(b['kind'])} {_band_hz(b['frequency_hz'])} Hz "
            f"{round(b['gain_db'], 1) + 0.0:+.1f} dB Q {b['q']:.3g}"  # + 0.0: never -0.0
        )
    if eq.get("gain_db"):
        parts.append(f"flat gain {_fmt(eq['gain_db'], 1, sign=True)} dB (not in the EQ curve)")
    text = "EQ: " + ", ".join(parts) if parts else ""
    if comp and None not in comp.values():
        text += (
            f"; compressor {_fmt(comp['ratio'], 0)}:1 at {_fmt(comp['threshold_db'], 0)} dBFS, "
            f"knee {_fmt(comp['knee_db'], 0)} dB, attack {_fmt(comp['attack_ms'], 0)} ms, "
            f"release {_fmt(comp['release_ms'], 0)} ms, make-up {_fmt(comp['makeup_db'], 0)} dB"
        )
    if lim and None not in lim.values():
        text += (
            f"; limiter {_fmt(lim['ceiling_dbtp'], 0)} dBTP, lookahead "
            f"{_fmt(lim['lookahead_ms'], 0)} ms, release {_fmt(lim['release_ms'], 0)} ms, "
            f"at most {_fmt(lim['max_gain_reduction_db'], 0)} dB"
        )
    return text.lstrip("; ")


def _band_hz(hz: float) -> str:
    """A band's frequency as an EQ's display shows it: 31.6, 125, 1000, 12589."""
    return f"{hz:.0f}" if hz >= 100 else f"{hz:.1f}".removesuffix(".0")


def _facts(track: dict, shared_preset: str | None) -> str:
    items: list[tuple[str, str]] = [("input", f'<span class="path">{_esc(track["input"])}</span>')]
    if track.get("output"):
        items.append(("output", f'<span class="path">{_esc(track["output"])}</span>'))
    if track.get("warning"):
        items.append(("warning", f'<span class="warn">{_esc(track["warning"])}</span>'))
    if track.get("replaced"):
        items.append(("replaced", _esc(track["replaced"])))
    audio = [f"{_fmt(track.get('duration_s'), 3)} s" if track.get("duration_s") is not None else ""]
    if track.get("sample_rate") is not None:
        audio.append(f"{_fmt(track['sample_rate'])} Hz")
    if track.get("channels") is not None:
        audio.append(f"{_fmt(track['channels'])} channels")
    if any(audio):
        items.append(("audio", ", ".join(a for a in audio if a)))
    params = track.get("parameters") or {}
    preset = _esc(track.get("preset") or params.get("name") or "")
    if shared_preset is not None:
        items.append(("preset", f'{preset} (<a href="#{shared_preset}">parameters</a>)'))
    elif params:
        items.append(("preset", f"{preset}: {_chain_line(params)}"))
    render = track.get("render")
    if render:
        items.append(("render", _render_line(render)))
        if render["notes"]:
            items.append(("notes", "; ".join(_esc(n) for n in render["notes"])))
    album = track.get("album")
    if album:
        items.append(("album", _album_line(album)))
    if track.get("tempo_bpm") is not None and not _tempo_estimated(track):
        items.append(("tempo", "not estimated (the preset does not use it; the JSON says 120)"))
    elif track.get("tempo_bpm") is not None:
        conf = track.get("tempo_confidence")
        extra = f" (confidence {_fmt(conf, 3)})" if conf is not None else ""
        items.append(("tempo", f"{_fmt(track['tempo_bpm'])} BPM{extra}"))
    if track.get("seconds") is not None:
        extra = ""
        if track.get("analysis_seconds") is not None:
            extra = f" (analysis {_fmt(track['analysis_seconds'], 4)} s)"
        items.append(("time", f"{_fmt(track['seconds'], 4)} s{extra}"))
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="facts">{body}</dl>'


def _album_line(album: dict) -> str:
    parts = []
    if album.get("folder"):
        parts.append(f'<span class="path">{_esc(album["folder"])}</span>')
    if album.get("tracks") is not None:
        parts.append(f"{_fmt(album['tracks'])} tracks")
    if album.get("gain_db") is not None:
        parts.append(f"gain {_fmt(album['gain_db'], sign=True)} dB")
    if album.get("album_lufs") is not None:
        parts.append(f"{_fmt(album['album_lufs'])} LUFS")
    if album.get("album_true_peak_dbtp") is not None:
        parts.append(f"{_fmt(album['album_true_peak_dbtp'])} dBTP")
    return ", ".join(parts)


_PLOTS = (
    ("st", "Loudness over time"),
    ("gr", "Gain reduction"),
    ("sp", "Long-term spectrum"),
    ("eq", "EQ curve"),
)


def _track_data(track: dict, eq_index: int | None, spec_hz: list | None) -> dict:
    """What the page's script needs to draw a track's plots; keys only for data there is."""
    data: dict[str, Any] = {}
    target = _get(track, "render.target_lufs")
    if target is not None:
        data["target"] = target
    if eq_index is not None:
        data["eq"] = eq_index
    series = track.get("series") or {}
    if series.get("hop_s") is not None:
        for key in _TIME_SERIES:
            if series.get(key):
                data["hop"] = series["hop_s"]
                data[key] = pack_series(series[key])
    spec = series.get("spectrum")
    if spec and any(spec.get(k) for k in _SPECTRUM_LINES):
        lines = {k: pack_series(spec[k]) for k in _SPECTRUM_LINES if spec.get(k)}
        if spec["freqs_hz"] != spec_hz:
            lines["freqs_hz"] = spec["freqs_hz"]
        data["spectrum"] = lines
    return data


def _figures(data: dict) -> str:
    has = {
        "st": "short_term_before" in data or "short_term_after" in data,
        "gr": "compressor_gr_db" in data or "limiter_gr_db" in data,
        "sp": "spectrum" in data,
        "eq": "eq" in data,
    }
    return "".join(
        f'<figure class="plot" data-k="{k}"></figure>'
        if has[k]
        else f'<figure class="nodata">{title}: no data</figure>'
        for k, title in _PLOTS
    )


def _section(i: int, track: dict, name: str, data: dict, shared_preset: str | None) -> str:
    before = _fmt(_get(track, "before.integrated_lufs"))
    after = _fmt(_get(track, "after.integrated_lufs"))
    loud = f" <span class=muted>{before} → {after} LUFS</span>" if before and after else ""
    warn = ' <span class="warn">⚠</span>' if track.get("warning") else ""
    return (
        f'<details class="track" id="t{i}"><summary><span class="path">{_esc(name)}</span>'
        f"{loud}{warn}</summary><noscript><div>{_kv_table(track)}"
        f'{_facts(track, shared_preset)}<div class="plots">{_figures(data)}</div></div>'
        "</noscript></details>"
    )


def _summary_html(tracks: list[dict], summary: dict | None, common: str) -> str:
    from .records import summarize

    counts = summarize(tracks)
    s = {k: v for k, v in (summary or {}).items() if v is not None}
    s = {**counts, **s}
    labels = (
        ("tracks", "tracks"),
        ("ok", "ok"),
        ("failed", "failed"),
        ("skipped", "skipped"),
        ("not_started", "not started"),
        ("interrupted", "interrupted"),
        ("planned", "planned"),
    )
    spans = []
    for key, label in labels:
        if key == "tracks":
            word = "track" if s[key] == 1 else "tracks"
            spans.append(f"<span><b>{_fmt(s[key])}</b> {word}</span>")
        elif key in ("ok", "failed") or s.get(key):
            cls = f' class="{_status_class(label)}"' if s.get(key) else ""
            spans.append(f"<span{cls}><b>{_fmt(s[key])}</b> {label}</span>")
    spans.append(f"<span>{_fmt(s['audio_seconds'], 3)} s of audio mastered</span>")
    spans.append(f"<span>{_fmt(s['seconds'], 3)} s of track time</span>")
    if s.get("wall_seconds") is not None:  # reports of earlier versions lack it
        spans.append(f"<span>the run took {_fmt(s['wall_seconds'], 3)} s</span>")
    if s.get("reference_seconds") is not None:
        spans.append(
            f"<span>after {_fmt(s['reference_seconds'], 3)} s analysing the reference</span>"
        )
    where = f'<p class="muted">inputs under <span class="path">{_esc(common)}</span></p>'
    return f'<p class="counts">{"".join(spans)}</p>' + (where if common else "")


def _reason(track: dict) -> str:
    """The track's error without its input's path in front: most errors name their
    file, and the page shows the name beside them (it read "bad/cut.ogg: bad/cut.ogg:
    truncated", a newcomer's try)."""
    error = track.get("error") or ""
    return error.removeprefix(f"{track['input']}: ")


def _attention(order: list[int], tracks: list[dict], names: list[str]) -> str:
    """Failures and warnings first; skips are counted (they lead the table)."""
    failed = [i for i in order if tracks[i]["status"] in ("failed", "interrupted", "not started")]
    warned = [i for i in order if tracks[i]["status"] == "ok" and tracks[i].get("warning")]
    skipped = sum(
        tracks[i]["status"] == "skipped" and not is_routine_skip(tracks[i]) for i in order
    )
    if not (failed or warned or skipped):
        return ""
    lines = []
    for i in (failed + warned)[:ATTENTION_LINES]:
        t = tracks[i]
        anchor = f"t{i}" if t["status"] == "ok" else f"r{i}"
        why = _reason(t) or t.get("warning") or t["status"]
        cls = _status_class(t["status"]) if t["status"] != "ok" else "warn"
        lines.append(
            f'<li><span class="{cls}">{_esc(t["status"])}</span> '
            f'<a href="#{anchor}" class="path">{_esc(names[i])}</a>: {_esc(why)}</li>'
        )
    more = len(failed) + len(warned) - ATTENTION_LINES
    if more > 0:
        lines.append(f"<li>and {more} more, at the top of the table</li>")
    if skipped:
        lines.append(f"<li>{skipped} skipped, at the top of the table (reasons there)</li>")
    return f'<h2>Needs a look</h2><ul class="attention">{"".join(lines)}</ul>'


def _shared_presets(tracks: list[dict], sections: list[int]) -> tuple[str, dict[int, str]]:
    """Parameter sets used by several tracks, listed once; the anchor of each track's."""
    groups: dict[str, list[int]] = {}
    for i in sections:
        params = tracks[i].get("parameters")
        if params:
            groups.setdefault(json.dumps(params, sort_keys=True), []).append(i)
    shared = [(key, idx) for key, idx in groups.items() if len(idx) > 1]
    anchors: dict[int, str] = {}
    items = []
    for n, (_, idx) in enumerate(shared):
        params = tracks[idx[0]]["parameters"]
        for i in idx:
            anchors[i] = f"p{n}"
        items.append(
            f'<li id="p{n}"><b>{_esc(params.get("name") or "preset")}</b> ({len(idx)} tracks): '
            f"{_chain_line(params)}</li>"
        )
    if not items:
        return "", anchors
    return f'<h2>Presets</h2><ul class="presets">{"".join(items)}</ul>', anchors


def _overview_rows(tracks: list[dict], names: list[str], sections: list[int]) -> list[list]:
    rows = []
    for i in sections:
        b = _get(tracks[i], "before.integrated_lufs")
        a = _get(tracks[i], "after.integrated_lufs")
        if b is not None and a is not None:
            rows.append([i, names[i], b, a, _get(tracks[i], "render.target_lufs")])
    return rows


def render_html(
    records: Sequence[Any], summary: Any = None, *, title: str = "auralis-batch report"
) -> str:
    """The report page of ``records`` (a run's tracks, as in the JSON report).

    Values of the wrong type or range are left out (see :func:`clean_records`); the
    ``report`` command refuses such a report before it gets here.

    Parameters
    ----------
    records : list of dict, the report's ``tracks``
    summary : dict or None, the report's ``summary``; counts from ``records`` when None
    title : str, the page's title

    Returns
    -------
    str, the HTML document
    """
    tracks, summary, _ = clean_records(records, summary)
    common, names = display_names([t["input"] for t in tracks])
    rank = {s: n for n, s in enumerate(STATUS_ORDER)}
    # the files that were never audio: after the tracks, not as something to look at
    # (a library's page led with its cover images: a newcomer's try)
    last = len(STATUS_ORDER)
    order = sorted(
        range(len(tracks)),
        key=lambda i: last if is_not_audio(tracks[i]) else rank.get(tracks[i]["status"], 0),
    )
    sections = [i for i in order if tracks[i]["status"] == "ok"]
    shared_html, shared = _shared_presets(tracks, sections)
    curves = _EqCurves()
    spec_hz = next(
        (
            _get(tracks[i], "series.spectrum.freqs_hz")
            for i in sections
            if _get(tracks[i], "series.spectrum.freqs_hz")
        ),
        None,
    )
    plot_data = {i: _track_data(tracks[i], curves.index(tracks[i]), spec_hz) for i in sections}
    section_html = [_section(i, tracks[i], names[i], plot_data[i], shared.get(i)) for i in sections]
    page = {
        "overview": _overview_rows(tracks, names, sections),
        "eq_hz": list(EQ_CURVE_HZ),
        "eq": [pack_series(c) for c in curves.curves],
        "spec_hz": spec_hz,
    }
    # The plots' data of every track in one script, parsed when a first section opens:
    # one long text is cheaper for the browser to take in than 2,000 script elements.
    tracks_data = {f"t{i}": data for i, data in plot_data.items()}
    scripts, hashes = _scripts()
    csp = (
        f"default-src 'none'; script-src {' '.join(hashes)}; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'"
    )
    overview = (
        '<figure id="overview" class="plot"></figure>'
        if page["overview"]
        else '<figure class="nodata">Loudness of the library: no data</figure>'
    )
    tracks_html = (
        "<h2>Tracks</h2>\n" + "\n".join(section_html)
        if section_html
        else '<h2>Tracks</h2><p class="note">No track was mastered.</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{GENERATOR_META}
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_asset("report.css")}</style></head>
<body>
<h1>{_esc(title)}</h1>
{_summary_html(tracks, summary, common)}
<noscript><p class="note">The plots need JavaScript; the tables have every number.</p></noscript>
{_attention(order, tracks, names)}
<h2>Loudness of the library</h2>
{overview}
<h2>Library</h2>
{_table(order, tracks, names, set(sections))}
{shared_html}
{tracks_html}
<script type="application/json" id="ab-page">{_json_for_script(page)}</script>
<script type="application/json" id="ab-tracks">{_json_for_script(tracks_data)}</script>
{scripts}
</body></html>
"""
