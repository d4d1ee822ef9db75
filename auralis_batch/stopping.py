"""What a run removes when a second signal ends it at once.

The first SIGINT/SIGTERM/SIGHUP stops a run cleanly; a second one ends the process at
once (``batch._signals_stop_the_run``), and nothing in ``finally`` runs then. A file
written whole or not at all through a temporary (a report) registers the temporary
here while it exists, so that exit removes it too: a dated report name (``--report
report-$(date +%F).json`` from cron) is never written again, so a sweep of its stale
temporaries by a later run of the same name would never come.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class Stop(BaseException):
    """Raised in the main thread by the first SIGINT/SIGTERM/SIGHUP (a BaseException,
    so no ``except Exception`` of a track swallows it). Here, in a module that loads
    nothing, so that the CLI's entry point can catch it without importing the batch."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, and so on (the stop signals' names, for messages)."""
    import signal

    return signal.Signals(signum).name


def handled_signals() -> tuple[int, ...]:
    """The signals that stop a run: SIGINT (Ctrl-C), SIGTERM (``kill``) and SIGHUP (the
    terminal or ssh session closing), but not SIGHUP when this process was started
    ignoring it (``nohup``, ``trap '' HUP``: the user asked the run to outlive the
    session)."""
    import signal

    names = ["SIGINT", "SIGTERM"]
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        names.append("SIGHUP")
    return tuple(getattr(signal, name) for name in names)


#: Temporaries to remove if the process is ended at once.
AT_ONCE_REMOVE: set[str] = set()


@contextlib.contextmanager
def removed_if_ended(path: str | os.PathLike) -> Iterator[None]:
    """``path`` is removed if the process is ended at once while the block runs."""
    key = os.fspath(path)
    AT_ONCE_REMOVE.add(key)
    try:
        yield
    finally:
        AT_ONCE_REMOVE.discard(key)
