"""``auralis-batch cache ...``: inspect and maintain the fingerprint cache.

Light to import (typer only); the cache module loads inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

cache_app = typer.Typer(
    help="Inspect and maintain the fingerprint cache.", no_args_is_help=True, rich_markup_mode=None
)

CacheDir = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional on py3.10
    typer.Option(
        "--cache-dir", help="Cache folder (default: $AURALIS_CACHE_DIR or the user cache dir)."
    ),
]


def _open(cache_dir: Path | None):
    """The cache at ``cache_dir`` (or the default), or an empty stand-in when there is
    none yet: inspecting a cache never creates one (a mistyped --cache-dir would
    otherwise leave folders behind)."""
    from .cache import FingerprintCache, NullCache, size_limit_from_env

    folder = _folder(cache_dir)
    # a folder without the cache's database is not a cache (yet): --cache-dir pointed
    # at a folder of the user's left a cache.db there (a sweep)
    if not (folder / "cache.db").is_file():
        typer.echo(f"[note] no fingerprint cache at {folder} yet: nothing in it", err=True)
        return NullCache(folder)
    try:
        # the run's limit (an opened cache takes the limit it is opened with)
        return FingerprintCache(cache_dir, size_limit_from_env())
    except Exception as exc:
        typer.echo(
            f"[error] cannot open the cache at {cache_dir or 'default location'}: {exc}", err=True
        )
        raise typer.Exit(code=2) from None


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@cache_app.command("stats")
def stats(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cache_dir: CacheDir = None,
) -> None:
    """Entries, size, and hit rates per level (counted across processes)."""
    with _open(cache_dir) as cache:
        s = cache.stats()
    if json_out:
        typer.echo(json.dumps(s, indent=2))
        return
    typer.echo(f"directory   {s['directory']}")
    typer.echo(f"entries     {s['entries']} fingerprints, {s['paths']} file paths")
    limit = s["size_limit_bytes"]  # 0: no cache there yet (said in a note above)
    typer.echo(f"size        {_size(s['bytes_used'])}" + (f" of {_size(limit)}" if limit else ""))
    for level in ("memory", "disk"):
        lv = s[level]
        rate = 100 * lv["hit_rate"]
        # a command's level-1 LRU starts empty: it hits within one run (a re-master of
        # the same audio), never across commands; "0 hits" read as a broken cache, and
        # "(within one command)" as if the counts were one command's (a newcomer's try)
        within = " (counted across commands; each starts empty)" if level == "memory" else ""
        typer.echo(
            f"{level:<11} {_count(lv['hits'], 'hit')}, {_count(lv['misses'], 'miss', 'misses')}, "
            f"hit rate {rate:.1f} %{within}"
        )


@cache_app.command("clear")
def clear(cache_dir: CacheDir = None) -> None:
    """Delete every entry."""
    with _open(cache_dir) as cache:
        before = cache.stats()  # counted as `cache stats` counts them
        cache.clear()
    n, m = before["entries"], before["paths"]
    typer.echo(f"removed {n} fingerprint{'s' * (n != 1)} and {m} file path{'s' * (m != 1)}")


@cache_app.command("prune")
def prune(
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Remove entries not used for this long: 30d, 12h, 90m."),
    ] = "30d",
    cache_dir: CacheDir = None,
) -> None:
    """Remove entries not read or written for a while."""
    from .cache import parse_duration

    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        typer.echo(f"[error] {exc}", err=True)
        raise typer.Exit(code=2) from None
    with _open(cache_dir) as cache:
        n = cache.prune(seconds)
    typer.echo(f"removed {n} entries not used for {older_than}")


@cache_app.command("path")
def path(cache_dir: CacheDir = None) -> None:
    """Print the cache folder."""
    typer.echo(str(_folder(cache_dir)))


def _folder(cache_dir: Path | None) -> Path:
    """The cache folder (``--cache-dir``, else the default), or ``[error]`` and exit 2
    when a file stands there (``cache path`` printed it as the folder in use: a sweep)."""
    folder = cache_dir if cache_dir is not None else _default_folder()
    if folder.exists() and not folder.is_dir():
        given = "--cache-dir" if cache_dir is not None else _which_default()
        typer.echo(f"[error] {given} {folder}: is a file, not a folder", err=True)
        raise typer.Exit(code=2)
    return folder


def _which_default() -> str:
    """What chose the default folder, for a message (an error named --cache-dir when
    AURALIS_CACHE_DIR had: a sweep)."""
    import os

    return "AURALIS_CACHE_DIR" if os.environ.get("AURALIS_CACHE_DIR") else "the cache folder"


def _default_folder() -> Path:
    """The default cache folder, or ``[error]`` and exit 2 when there is none."""
    from .cache import default_cache_dir
    from .errors import NoCacheFolderError

    try:
        return default_cache_dir()
    except NoCacheFolderError as exc:
        typer.echo(f"[error] {exc}", err=True)
        raise typer.Exit(code=2) from None


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 hit``, ``2 hits`` (``disk 1 hits`` read oddly: a newcomer's)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
