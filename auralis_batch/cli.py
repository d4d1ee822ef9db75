"""The ``auralis-batch`` command.

Commands are thin: they resolve settings, call the engine and map outcomes to exit
codes (0 all succeeded, 1 a track failed, 2 usage or setup error). Everything heavy
(numpy, numba kernels, soundfile) is imported inside the commands, so ``--help``
neither compiles kernels nor loads the DSP stack.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

app = typer.Typer(
    name="auralis-batch",
    help="Re-master whole music libraries: BS.1770 loudness, EQ, compression, true-peak limiting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
presets_app = typer.Typer(help="List and inspect mastering presets.", no_args_is_help=True)
app.add_typer(presets_app, name="presets")

try:  # the cache sub-app is light to import (no numpy/numba at module level)
    from .cli_cache import cache_app

    app.add_typer(cache_app, name="cache")
except ImportError:  # pragma: no cover - during partial checkouts
    pass

Inputs = Annotated[
    list[Path],
    typer.Argument(help="Audio files or folders (searched recursively).", show_default=False),
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
    Optional[Path],  # noqa: UP045
    typer.Option("--report", help="Write a JSON report {tracks, summary} to this file."),
]


def _fail_usage(message: str) -> NoReturn:
    typer.echo(f"[error] {message}", err=True)
    raise typer.Exit(code=2)


def _write_json(path: Path, payload: object) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def _fmt(value: object, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


@app.command()
def master(
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-track output.")] = False,
) -> None:
    """Master INPUT files and folders into --out."""
    from .audio import output_subtype
    from .engine import master_file, plan_jobs, summarize
    from .errors import AuralisError
    from .presets import load_preset

    try:
        output_subtype(fmt, bit_depth)
        chosen = load_preset(preset).with_overrides(
            target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp
        )
    except AuralisError as exc:
        _fail_usage(str(exc))
    for item in inputs:
        if not item.exists():
            _fail_usage(f"input {item} does not exist")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail_usage(f"--out {out}: cannot create folder ({exc.strerror})")
    jobs, records = plan_jobs(inputs, out, fmt)
    for job in jobs:
        rec = master_file(job, chosen, fmt=fmt, bit_depth=bit_depth)
        records.append(rec)
        if not quiet:
            _print_master_line(rec)
    summary = summarize(records)
    if report is not None:
        _write_json(report, {"tracks": records, "summary": summary})
    if not quiet:
        typer.echo(
            f"{summary['ok']} mastered, {summary['failed']} failed, {summary['skipped']} skipped "
            f"in {summary['seconds']:.1f} s",
            err=True,
        )
    raise typer.Exit(code=1 if summary["failed"] else 0)


def _print_master_line(rec: dict) -> None:
    if rec["status"] == "ok":
        b, a = rec["before"], rec["after"]
        line = (
            f"ok      {rec['input']} -> {rec['output']}  "
            f"{_fmt(b['integrated_lufs'])} -> {_fmt(a['integrated_lufs'])} LUFS, "
            f"TP {_fmt(a['true_peak_dbtp'])} dBTP, LRA {_fmt(a['lra_lu'])} LU"
        )
        typer.echo(line)
        if rec.get("warning"):
            typer.echo(f"warning {rec['input']}: {rec['warning']}", err=True)
    else:
        typer.echo(f"{rec['status']:<7} {rec['input']}: {rec['error']}", err=True)


@app.command()
def measure(inputs: Inputs, json_out: JsonFlag = False) -> None:
    """Measure loudness per ITU-R BS.1770-4 / EBU R128 (integrated, LRA, true peak)."""
    from .engine import discover, measure_file, skipped_record

    audio, other = discover(inputs)
    missing = [p for p in inputs if not p.exists()]
    if missing:
        _fail_usage(f"input {missing[0]} does not exist")
    records = [skipped_record(p, "not an audio file (by extension)") for p in other]
    records += [measure_file(f) for f, _ in audio]
    if json_out:
        typer.echo(json.dumps(records, indent=2, allow_nan=False))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Loudness (ITU-R BS.1770-4)")
        for col in ("file", "integrated LUFS", "true peak dBTP", "LRA LU", "sample peak dBFS"):
            table.add_column(col, justify="left" if col == "file" else "right")
        for r in records:
            if r["status"] == "ok":
                table.add_row(
                    r["input"],
                    _fmt(r["integrated_lufs"]),
                    _fmt(r["true_peak_dbtp"]),
                    _fmt(r["lra_lu"]),
                    _fmt(r["sample_peak_dbfs"]),
                )
        Console().print(table)
        for r in records:
            if r["status"] != "ok":
                typer.echo(f"{r['status']}: {r['input']}: {r['error']}", err=True)
    raise typer.Exit(code=1 if any(r["status"] == "failed" for r in records) else 0)


@presets_app.command("list")
def presets_list() -> None:
    """List the built-in presets."""
    from .presets import list_presets

    for p in list_presets():
        typer.echo(f"{p.name:<8} {p.target_lufs:>6.1f} LUFS  {p.description}")
    typer.echo("adaptive          derived from each track's fingerprint")


@presets_app.command("show")
def presets_show(
    name: Annotated[str, typer.Argument(help="Preset name or path to a .toml file.")],
    json_out: JsonFlag = False,
) -> None:
    """Show a preset's parameters."""
    from .errors import AuralisError
    from .presets import load_preset

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


def main() -> None:
    """Console-script entry point."""
    app(prog_name="auralis-batch")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
