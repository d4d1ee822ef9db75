"""Byte-code of the package, written once for the many processes a session starts."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_package_bytecode() -> None:
    """Byte-compile the package, as ``pip install`` does for a user: an editable
    install run with ``PYTHONDONTWRITEBYTECODE=1`` (set on this project's machines and
    in many containers) would otherwise compile every module from source in every
    fresh process the tests and benches start, 0.1-0.2 s each, which no user pays."""
    import compileall

    for package in ("auralis_batch", "kernels"):
        compileall.compile_dir(ROOT / package, quiet=1, workers=1)
