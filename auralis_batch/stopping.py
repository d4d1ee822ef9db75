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


#: The same signal again within this many seconds of the first is not a second request
#: but its echo: GNU ``timeout -s INT``, for one, signals the process and then its whole
#: group, so the run got SIGINT twice within a millisecond and took the at-once exit
#: (no report, temporaries left for the next run) in 3 of 7 tries. A person's second
#: Ctrl-C comes later than this; one inside it needs a third.
ECHO_S = 0.25


class SecondSignal:
    """Decides, for a run's stop-signal handler, what each signal is: the ``"first"``
    (stop cleanly), its ``"echo"`` (the same signal within :data:`ECHO_S`: ignored) or
    a ``"second"`` (another signal, or the same one later: stop at once). The one owner
    of that decision for every handler that stops a run."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at = 0.0

    def classify(self, signum: int) -> str:
        import time

        now = time.monotonic()
        if self.signum is None:
            # noted before anything else the handler does: an echo whose handler runs
            # right after this line is told from a second request by it
            self.signum, self.at = signum, now
            return "first"
        if signum == self.signum and now - self.at < ECHO_S:
            return "echo"
        return "second"


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
