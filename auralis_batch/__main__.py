"""The ``auralis-batch`` console script and ``python -m auralis_batch``.

A small door in front of :func:`auralis_batch.cli.main`: importing the CLI (Typer,
click, the package's modules) takes about 0.1 s, and a Ctrl-C in that window raised
``KeyboardInterrupt`` inside an import, which Python printed as a traceback of the
import machinery or of Typer building the command line (seen with a SIGINT 30-200 ms
after start). The user gets one line and the shell's code for SIGINT instead.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        _interrupted(": nothing was done, as it started")
    try:
        cli_main()
    except KeyboardInterrupt:  # before a command's own handling (Typer builds the
        _interrupted("")  # command line first) or after it (master restores Python's)


def _interrupted(how: str) -> None:
    sys.stderr.write(f"[error] interrupted by SIGINT{how}\n")
    sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
