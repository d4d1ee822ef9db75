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
