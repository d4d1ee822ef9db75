"""Persistent fingerprint cache: an in-process LRU in front of a size-limited diskcache.

* Level 1: an ``OrderedDict`` LRU of ``memory_entries`` values in this process.
* Level 2: a :class:`diskcache.Cache` (SQLite) shared by every process and session,
  evicting the least-recently-used entries beyond ``size_limit_bytes``.

The cache owns its key format: :func:`make_key` (the SHA-256 of the decoded PCM from
:class:`PcmHasher`, plus everything that changes the analysis) is what the analysis
calls. A fast path maps (absolute path, size, mtime_ns, inode, ctime_ns) to the content hash, so
an unchanged file is neither decoded nor hashed.

Values are small JSON documents stored inline in the database, never as files, and
nothing a row says is trusted (any process that can write the cache folder can edit
``cache.db``). :class:`JSONDisk`:

* never stores a pickle or a file; it reads only rows in raw mode whose ``filename``
  is NULL and whose value is text or bytes, and refuses everything else unread with
  :class:`UnsafeRowError` (:meth:`diskcache.Cache.get` hands the row's own mode and
  filename to ``Disk.fetch``, so a tampered row could otherwise be unpickled or name
  any file to read);
* unlinks only a file named the way diskcache names value files (``ab/cd/<28 hex>.val``)
  whose real path lies inside the cache folder, and removes no folder but those emptied
  below it: ``Disk.remove`` runs with a row's ``filename`` on every delete, set over an
  existing key, cull, eviction, expiry and clear.

Refused, unparsable and other-version rows are misses and deleted.

The cache is an optimisation, never a point of failure: a corrupt database is moved
aside and rebuilt with one :class:`CacheWarning`; an unwritable or full location gives
one warning and the run goes on uncached; timeouts and unreadable rows are misses.

Importing this module loads neither NumPy nor Numba (``auralis-batch cache stats``
stays light): the analysis passes its version and sample rate to :func:`make_key`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import os
import re
import sqlite3
import stat
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NoCacheFolderError, ParameterError, UnsafeRowError
from .identity import file_identity

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_MEMORY_ENTRIES",
    "DEFAULT_SIZE_LIMIT_BYTES",
    "CacheWarning",
    "FingerprintCache",
    "NullCache",
    "PcmHasher",
    "UnsafeRowError",
    "default_cache_dir",
    "make_key",
    "open_cache",
    "parse_duration",
    "size_limit_from_env",
]

DEFAULT_SIZE_LIMIT_BYTES = 2 * 1024**3
#: Environment variable that sets the size limit of the caches the CLI opens, in MiB
#: (``AURALIS_CACHE_SIZE_MB=512``); 1 to 1048576.
CACHE_SIZE_ENV = "AURALIS_CACHE_SIZE_MB"
_CACHE_SIZE_MB_RANGE = (1.0, 1048576.0)
#: The smallest size limit the API takes: a few records (a 2048 meant as MiB is refused).
MIN_SIZE_LIMIT_BYTES = 64 * 1024
DEFAULT_MEMORY_ENTRIES = 50
FINGERPRINT_PREFIX = "fp:"
PATH_PREFIX = "path:"
STATS_PREFIX = "__stats__:"
STATS_COUNTERS = ("memory_hits", "memory_misses", "disk_hits", "disk_misses")
#: The shared counters' table, in the cache's own SQLite file beside diskcache's
#: ``Cache`` table: LRU eviction deletes only from that one.
STATS_TABLE = "AuralisStats"
_STATS_TABLE_SQL = (
    f"CREATE TABLE IF NOT EXISTS {STATS_TABLE} (name TEXT PRIMARY KEY, n INTEGER NOT NULL)"
)
SQLITE_TIMEOUT_S = 10.0
#: Level-1 counters are added to the shared ones every this many counts, at
#: :meth:`FingerprintCache.flush` and at close. A flush is one SQLite transaction
#: (~0.5 ms); callers that keep a cache open flush per unit of work, so this is a
#: safety net, rare enough to keep a level-1 hit at about a microsecond.
STATS_FLUSH_EVERY = 1024
#: The only file names :meth:`JSONDisk.remove` acts on: diskcache's own value files.
_VALUE_FILE = re.compile(r"[0-9a-f]{2}[/\\][0-9a-f]{2}[/\\][0-9a-f]{28}\.val")


class CacheWarning(UserWarning):
    """The cache could not be used as intended; the run goes on."""


def default_cache_dir() -> Path:
    """The cache folder used when none is given.

    Returns
    -------
    Path
        ``$AURALIS_CACHE_DIR`` (``~`` expanded) if set, else the platform's user cache
        folder for auralis-batch + ``/fingerprints``. Nothing is created.

    Raises
    ------
    NoCacheFolderError
        Neither is set and there is no home folder to take it in (``HOME`` unset and
        no user entry: a service user under cron).
    """
    env = os.environ.get("AURALIS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from . import _user_cache_root

    root = _user_cache_root()
    if root is None:
        raise NoCacheFolderError(
            "no folder for the fingerprint cache (no home folder: HOME is not set and "
            "the user has no entry, or HOME names a folder that does not exist): give "
            "--cache-dir or set AURALIS_CACHE_DIR"
        )
    return Path(root) / "fingerprints"


def _default_or_none() -> Path | str:
    try:
        return default_cache_dir()
    except NoCacheFolderError:
        return "the default location"


def path_key(path: Path) -> str:
    """The key of a (resolved) path's entry. A name that is not UTF-8 (surrogate
    escapes, which SQLite cannot store) is keyed by its bytes in hex; a resolved path
    starts with ``/``, so the two forms never meet."""
    from .records import is_unicode

    text = str(path)
    if not is_unicode(text):
        text = "bytes:" + os.fsencode(path).hex()
    return PATH_PREFIX + text


def make_key(
    content_sha256: str, *, fingerprint_version: int, tempo: bool, analysis_sample_rate: int
) -> str:
    """Cache key of an analysis: the content hash plus every option that changes it.

    Parameters
    ----------
    content_sha256 : str
        Hex digest of the decoded PCM (:meth:`PcmHasher.hexdigest`).
    fingerprint_version : int
        Version of the fingerprint algorithm
        (:data:`auralis_batch.fingerprint.FINGERPRINT_VERSION`).
    tempo : bool
        Whether the analysis included tempo.
    analysis_sample_rate : int
        Sample rate the fingerprint analyses at, in Hz
        (:data:`auralis_batch.fingerprint.ANALYSIS_SAMPLE_RATE`).

    Returns
    -------
    str
        ``fp:v{fingerprint_version}:tempo{0|1}:sr{analysis_sample_rate}:{content_sha256}``.
        The format is what existing caches hold: changing it orphans every entry.
    """
    return (
        f"{FINGERPRINT_PREFIX}v{fingerprint_version}:tempo{int(tempo)}:"
        f"sr{analysis_sample_rate}:{content_sha256}"
    )


class PcmHasher:
    """SHA-256 of decoded PCM as interleaved little-endian float32 frames.

    Interleaving (frame by frame) makes the digest independent of how the stream was
    cut into blocks; float32 is the precision every decoder delivers losslessly.
    """

    def __init__(self) -> None:
        import numpy as np  # here, not at module level: the cache CLI stays light

        self._np = np
        self._buf = np.empty((0, 0), dtype="<f4")
        self._h = hashlib.sha256()

    def update(self, block: np.ndarray) -> None:
        """Add one block of frames.

        Parameters
        ----------
        block : np.ndarray [shape=(channels, n)]
            Samples of any real dtype; converted to float32 (the interleaved buffer goes
            to hashlib without a bytes copy).
        """
        channels, n = block.shape
        if self._buf.shape[0] < n or self._buf.shape[1] != channels:
            self._buf = self._np.empty((n, channels), dtype="<f4")
        frames = self._buf[:n]
        # one channel at a time: five times faster than ascontiguousarray(block.T),
        # which interleaves element by element (same values, same digest)
        for c in range(channels):
            frames[:, c] = block[c]
        self._h.update(frames)

    def hexdigest(self) -> str:
        """Hex SHA-256 of every frame given so far."""
        return self._h.hexdigest()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or ``"2w"``.

    Parameters
    ----------
    text : str
        A number with its unit ``s``, ``m``, ``h``, ``d`` or ``w``. A bare number is
        refused (``0`` aside): ``--older-than 30`` meant as days would otherwise have
        pruned everything older than 30 seconds.

    Returns
    -------
    float
        The duration in seconds.

    Raises
    ------
    ValueError
        ``text`` is not such a duration (the message names ``--older-than``).
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m or (not m.group(2) and float(m.group(1)) != 0.0):
        raise ValueError(
            f"--older-than: expected a duration with its unit, like 30d, 12h, 90m, 45s "
            f"or 2w, got {text!r}"
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _inside(root: str, path: str) -> bool:
    """True when ``path`` (already a real path) lies strictly below ``root``."""
    try:
        return path != root and os.path.commonpath([root, path]) == root
    except ValueError:  # another drive (Windows)
        return False


def _json_disk_class():
    import diskcache
    from diskcache.core import MODE_RAW

    class JSONDisk(diskcache.Disk):
        """Stores values as inline UTF-8 JSON; trusts no row's mode, filename or value."""

        def __init__(self, directory, min_file_size=0, pickle_protocol=0):
            super().__init__(directory, min_file_size, pickle_protocol)
            # Fixed at open: removals never follow a directory a Settings row could set.
            self._root = os.path.realpath(directory)

        def put(self, key):
            if not isinstance(key, str):
                raise TypeError(f"cache keys are strings, got {type(key).__name__}")
            return super().put(key)

        def get(self, key, raw):
            if not raw:
                raise UnsafeRowError("pickled key")
            return super().get(key, raw)

        def store(self, value, read, key=diskcache.core.UNKNOWN):
            if read:
                raise TypeError("file-like values are not accepted")
            data = json.dumps(value, allow_nan=False, separators=(",", ":")).encode("utf-8")
            return 0, MODE_RAW, None, sqlite3.Binary(data)  # inline, whatever its size

        def fetch(self, mode, filename, value, read):
            if filename is not None:
                raise UnsafeRowError(f"row names a file ({filename!r}); values are inline")
            if mode != MODE_RAW:
                raise UnsafeRowError(f"row stored in mode {mode}, not inline JSON")
            if isinstance(value, str):
                value = value.encode("utf-8")
            if not isinstance(value, bytes):
                raise UnsafeRowError(f"row value is {type(value).__name__}, not JSON text")
            return json.loads(value.decode("utf-8"), parse_constant=_refuse_constant)

        def filename(self, key=diskcache.core.UNKNOWN, value=diskcache.core.UNKNOWN):
            raise TypeError("values are stored inline, never in files")

        def remove(self, file_path):
            # Only diskcache's own value files, only inside the cache folder: a row's
            # filename may have been set to anything ('../x', '/home/..', 'cache.db').
            if not isinstance(file_path, str) or not _VALUE_FILE.fullmatch(file_path):
                return
            root = self._root
            full = os.path.realpath(os.path.join(root, file_path))  # symlinks resolved
            if not _inside(root, full):
                return
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(full).st_mode):
                    os.remove(full)
            folder = os.path.dirname(full)
            while _inside(root, folder):  # emptied sub-folders, never the cache folder
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                folder = os.path.dirname(folder)

    return JSONDisk


def _refuse_constant(name: str) -> None:
    """NaN and the infinities are not JSON; Python's parser takes them unless told."""
    raise ValueError(f"row value holds {name}, which is not JSON")


#: A row that raises one of these when read is a miss, and deleted (a row nested
#: thousands deep raises RecursionError in the parser).
_BAD_ROW = (UnsafeRowError, ValueError, UnicodeDecodeError, TypeError, RecursionError)


class FingerprintCache:
    """Two-level cache of analysis records (JSON-safe dicts).

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Cache folder (created if missing); default :func:`default_cache_dir`.
    size_limit_bytes : int
        Size of the shared store beyond which least-recently-used entries are evicted.
    memory_entries : int
        Entries kept in this process's level-1 LRU.
    value_version : int
        Version of the stored records; rows of another version are misses.

    Raises
    ------
    OSError
        The folder cannot be created or opened.
    sqlite3.Error
        The database is locked beyond the timeout, or still unusable after a corrupt
        one was moved aside (:func:`open_cache` turns these into a :class:`NullCache`).

    Warns
    -----
    CacheWarning
        Once, when a corrupt database is moved aside and a new one started.
    """

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES,
        memory_entries: int = DEFAULT_MEMORY_ENTRIES,
        *,
        value_version: int = 1,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.size_limit_bytes = checked_size_limit(size_limit_bytes)
        self.memory_entries = int(memory_entries)
        self.value_version = int(value_version)
        self._memory: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._pending = dict.fromkeys(STATS_COUNTERS, 0)
        self._ops = 0
        self._warned = False
        self._disk = self._open()

    # ------------------------------------------------------------------ opening
    def _open(self):
        import diskcache

        self.directory.mkdir(parents=True, exist_ok=True)
        kwargs = {
            "size_limit": self.size_limit_bytes,
            "eviction_policy": "least-recently-used",
            "disk": _json_disk_class(),
            "timeout": SQLITE_TIMEOUT_S,
            "statistics": False,
            # evict a few LRU rows per write (diskcache's default of 10 can empty a small
            # cache at once)
            "cull_limit": 4,
        }
        try:
            return diskcache.Cache(str(self.directory), **kwargs)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
                # locked, read-only, not openable, an I/O error: not corrupt, and not
                # ours to move; open_cache runs without it
                raise
            aside = self.directory / f"cache.db.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
            db = self.directory / "cache.db"
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{db}{suffix}", f"{aside}{suffix}")
            warnings.warn(
                f"fingerprint cache database {db} was corrupt ({exc}); moved it to "
                f"{aside.name} and started a new one",
                CacheWarning,
                stacklevel=3,
            )
            return diskcache.Cache(str(self.directory), **kwargs)

    def _degrade(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"fingerprint cache at {self.directory} failed ({type(exc).__name__}: {exc}); "
                "continuing without it for the failing operations",
                CacheWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ values
    def get(self, key: str) -> dict | None:
        """The value stored under ``key``, or None (see :meth:`get_with_source`)."""
        return self.get_with_source(key)[0]

    def get_with_source(self, key: str) -> tuple[dict | None, str]:
        """The value stored under ``key`` and the level that answered.

        Parameters
        ----------
        key : str
            A key from :func:`make_key`.

        Returns
        -------
        (dict or None, str)
            A copy of the value and ``"memory"`` or ``"disk"``; ``(None, "miss")`` when
            absent, of another version, unreadable or refused (those rows are deleted).

        Warns
        -----
        CacheWarning
            Once per instance, when the store fails (the lookup is then a miss).
        """
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                hit = dict(hit)
        if hit is not None:
            self._count("memory_hits")
            return hit, "memory"
        self._count("memory_misses")
        value = self._disk_get(key)
        if value is None:
            self._count("disk_misses")
            return None, "miss"
        self._count("disk_hits")
        self._remember(key, value)
        return dict(value), "disk"

    def _disk_get(self, key: str) -> dict | None:
        try:
            envelope = self._disk.get(key, default=None, retry=True)
        except _BAD_ROW:
            self._delete(key)
            return None
        except (sqlite3.Error, OSError) as exc:
            self._degrade(exc)
            return None
        if envelope is None:
            return None
        if (
            not isinstance(envelope, dict)
            or envelope.get("version") != self.value_version
            or not isinstance(envelope.get("value"), dict)
        ):
            self._delete(key)
            return None
        return envelope["value"]

    def _delete(self, key: str) -> None:
        with contextlib.suppress(Exception):
            self._disk.delete(key, retry=True)

    def _remember(self, key: str, value: dict) -> None:
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_entries:
                self._memory.popitem(last=False)

    def set(self, key: str, value: dict) -> None:
        """Store ``value`` under ``key`` in both levels.

        Parameters
        ----------
        key : str
            A key from :func:`make_key` (or a fast-path key).
        value : dict
            JSON-safe record (no NaN or infinity).

        Raises
        ------
        TypeError
            ``value`` is not a dict, or holds something JSON cannot encode.
        ValueError
            ``value`` holds NaN or infinity.

        Warns
        -----
        CacheWarning
            Once per instance, when the store is full or unwritable (the value then
            lives in level 1 only).
        """
        if not isinstance(value, dict):
            raise TypeError("cache values are dicts")
        self._remember(key, dict(value))
        try:
            self._disk.set(key, {"version": self.value_version, "value": value}, retry=True)
        except (sqlite3.Error, OSError) as exc:  # full or unwritable: keep going uncached
            self._degrade(exc)

    # ------------------------------------------------------------------ fast path
    @staticmethod
    def _identity(path: Path) -> list[int]:
        # size, mtime, inode and ctime: an entry of an earlier build (no ctime) is a
        # miss, and its file is hashed once (its analysis comes from the content key)
        return file_identity(path)

    def lookup_path(self, path: str | os.PathLike) -> str | None:
        """Content hash remembered for ``path`` if the file is unchanged, else None.

        "Unchanged" means same resolved path, size, mtime (ns), inode and status-change
        time (``identity.file_identity``). A path never
        seen counts as a miss at both levels in :meth:`stats` (its analysis is one); a
        known path counts nothing here: the content lookup that follows counts.
        """
        p = Path(path).resolve()
        try:
            ident = self._identity(p)
        except OSError:
            return None
        key = path_key(p)
        with self._lock:
            hit = self._memory.get(key)
        entry = hit if hit is not None else self._disk_get(key)
        if entry is None:
            self._count("memory_misses")
            self._count("disk_misses")
            return None
        if entry.get("identity") != ident:
            return None
        if hit is None:
            self._remember(key, entry)
        content = entry.get("content")
        return content if isinstance(content, str) else None

    def discard(self, key: str) -> None:
        """Forget ``key`` at both levels: a row the caller found unfit to use (a
        record whose content is not one an analysis gives) is deleted, not met
        again by every later run."""
        with self._lock:
            self._memory.pop(key, None)
        self._delete(key)

    def peek(self, key: str) -> dict | None:
        """What :meth:`get_with_source` would give, counted in no statistic and
        without making the entry recently used: a look before deciding."""
        with self._lock:
            hit = self._memory.get(key)
        if hit is not None:
            return dict(hit)
        return self._disk_get(key)

    def peek_path(self, path: str | os.PathLike) -> str | None:
        """What :meth:`lookup_path` would give, counted in no statistic."""
        p = Path(path).resolve()
        try:
            ident = self._identity(p)
        except OSError:
            return None
        entry = self.peek(path_key(p))
        if entry is None or entry.get("identity") != ident:
            return None
        content = entry.get("content")
        return content if isinstance(content, str) else None

    def path_changed(self, path: str | os.PathLike) -> bool:
        """True when ``path`` was seen before but its size, mtime, inode or ctime changed since.

        Such a file is worth hashing before analysing: a re-tag keeps the audio.
        """
        p = Path(path).resolve()
        entry = self.peek(path_key(p))
        if entry is None:
            return False
        try:
            return entry.get("identity") != self._identity(p)
        except OSError:
            return False

    def remember_path(self, path: str | os.PathLike, content_hash: str) -> None:
        """Remember that the file at ``path``, as it is now, holds ``content_hash``.

        A file that cannot be stat'ed is not remembered.
        """
        p = Path(path).resolve()
        try:
            ident = self._identity(p)
        except OSError:
            return
        self.set(path_key(p), {"identity": ident, "content": content_hash})

    # ------------------------------------------------------------------ stats & upkeep
    def _count(self, name: str) -> None:
        with self._stats_lock:
            self._pending[name] += 1
            self._ops += 1
            due = self._ops >= STATS_FLUSH_EVERY
        if due:
            self.flush()

    def flush(self) -> None:
        """Add this process's pending hit and miss counts to the shared ones.

        Counting is in memory; the shared counters (what :meth:`stats` and
        ``auralis-batch cache stats`` report, summed over every process) are updated
        every :data:`STATS_FLUSH_EVERY` lookups, here and at :meth:`close`. A process
        that keeps its cache open (a batch worker) calls this at the end of each unit
        of work. With nothing pending it does not touch the store.

        Warns
        -----
        CacheWarning
            Once per instance, when the store cannot be written (the counts stay
            pending for the next flush).
        """
        with self._stats_lock:
            pending = {k: n for k, n in self._pending.items() if n}
            self._pending = dict.fromkeys(STATS_COUNTERS, 0)
            self._ops = 0
        if not pending:
            return
        try:  # read-modify-write in one SQLite transaction (safe across processes)
            with self._disk.transact(retry=True):
                self._disk._sql(_STATS_TABLE_SQL)
                for name in STATS_COUNTERS:  # all four: an earlier version's rows move
                    total = self._stored_count(name) + pending.get(name, 0)
                    # delete, then insert: a table of that name without its key (a
                    # tampered file) gains no second row
                    self._disk._sql(f"DELETE FROM {STATS_TABLE} WHERE name = ?", (name,))
                    self._disk._sql(
                        f"INSERT INTO {STATS_TABLE} (name, n) VALUES (?, ?)", (name, total)
                    )
                    self._disk.delete(STATS_PREFIX + name)  # the row of a version before
        except Exception as exc:
            with self._stats_lock:
                for name, n in pending.items():
                    self._pending[name] += n
            self._degrade(exc)

    def _stored_count(self, name: str) -> int:
        """A shared counter; an unreadable or tampered one reads as 0. It lives in a
        table of its own beside diskcache's (whose LRU eviction deleted the counters
        when they were rows: a full cache reported 488 misses for 1,000 and then
        stopped counting, fourth sweep), plus the row an earlier version kept, which
        the next flush moves into the table."""
        total = 0
        try:
            rows = self._disk._sql(f"SELECT n FROM {STATS_TABLE} WHERE name = ?", (name,))
            found = rows.fetchall()
            n = found[0][0] if len(found) == 1 else 0  # none, or a tampered table's many
            total += n if type(n) is int and n >= 0 else 0
        except Exception:  # no table yet (nothing flushed), or not ours to read
            pass
        try:
            n = self._disk.get(STATS_PREFIX + name, default=0)
        except _BAD_ROW:
            n = 0
        return total + (n if type(n) is int and n >= 0 else 0)

    def _count_rows(self, prefix: str) -> int:
        try:
            ((n,),) = self._disk._sql(
                "SELECT COUNT(*) FROM Cache WHERE key >= ? AND key < ?",
                (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)),
            ).fetchall()
            return int(n)
        except Exception:
            return 0

    def stats(self) -> dict[str, Any]:
        """Entries, bytes, limit, and hits/misses per level (shared across processes).

        Flushes this instance's pending counts first.

        Returns
        -------
        dict
            ``directory``, ``entries`` (fingerprints), ``paths`` (fast-path rows),
            ``bytes_used``, ``size_limit_bytes``, and ``memory`` and ``disk`` each with
            ``hits``, ``misses`` and ``hit_rate`` (0 to 1). Unreadable numbers are 0.
        """
        self.flush()
        counts = {}
        for name in STATS_COUNTERS:
            try:
                counts[name] = self._stored_count(name)
            except Exception:
                counts[name] = 0

        def level(prefix: str) -> dict[str, Any]:
            hits, misses = counts[f"{prefix}_hits"], counts[f"{prefix}_misses"]
            total = hits + misses
            return {
                "hits": hits,
                "misses": misses,
                "hit_rate": round(hits / total, 4) if total else 0.0,
            }

        try:
            volume = int(self._disk.volume())
        except Exception:
            volume = 0
        return {
            "directory": str(self.directory),
            "entries": self._count_rows(FINGERPRINT_PREFIX),
            "paths": self._count_rows(PATH_PREFIX),
            "bytes_used": volume,
            "size_limit_bytes": self.size_limit_bytes,
            "memory": level("memory"),
            "disk": level("disk"),
        }

    def clear(self) -> int:
        """Delete every entry (and the shared counters); returns the rows removed.

        Warns
        -----
        CacheWarning
            Once per instance, when the store fails (then 0 is returned).
        """
        with self._lock:
            self._memory.clear()
        try:
            removed = int(self._disk.clear(retry=True))
            with self._disk.transact(retry=True):
                self._disk._sql(_STATS_TABLE_SQL)
                self._disk._sql(f"DELETE FROM {STATS_TABLE}")
            return removed
        except Exception as exc:
            self._degrade(exc)
            return 0

    def prune(self, older_than_s: float) -> int:
        """Delete entries not read or written for ``older_than_s`` seconds.

        Parameters
        ----------
        older_than_s : float
            Age in seconds (see :func:`parse_duration`).

        Returns
        -------
        int
            Entries removed (shared counters are kept).

        Raises
        ------
        TypeError, ValueError
            ``older_than_s`` is not a number.

        Warns
        -----
        CacheWarning
            Once per instance, when the store fails (then 0 is returned).
        """
        cutoff = time.time() - float(older_than_s)
        try:
            rows = self._disk._sql(
                "SELECT key FROM Cache WHERE raw = 1 AND access_time < ? AND key NOT LIKE ?",
                (cutoff, STATS_PREFIX + "%"),
            ).fetchall()
        except Exception as exc:
            self._degrade(exc)
            return 0
        removed = 0
        for (key,) in rows:
            with contextlib.suppress(Exception):
                if self._disk.delete(key, retry=True):
                    removed += 1
            with self._lock:
                self._memory.pop(key, None)
        return removed

    def close(self) -> None:
        """Flush the pending counts and close the store. Never raises."""
        with contextlib.suppress(Exception):
            self.flush()
        with contextlib.suppress(Exception):
            self._disk.close()

    def __enter__(self) -> FingerprintCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullCache:
    """Same interface as :class:`FingerprintCache`, stores nothing.

    Used for ``--no-cache`` and when the cache location is unusable. No method raises.
    """

    def __init__(self, directory: str | os.PathLike | None = None, **_: Any) -> None:
        self.directory = Path(directory) if directory is not None else None

    def get(self, key: str) -> dict | None:
        return None

    def get_with_source(self, key: str) -> tuple[dict | None, str]:
        return None, "miss"

    def set(self, key: str, value: dict) -> None:
        return None

    def lookup_path(self, path: str | os.PathLike) -> str | None:
        return None

    def discard(self, key: str) -> None:
        return None

    def peek(self, key: str) -> dict | None:
        return None

    def peek_path(self, path: str | os.PathLike) -> str | None:
        return None

    def path_changed(self, path: str | os.PathLike) -> bool:
        return False

    def remember_path(self, path: str | os.PathLike, content_hash: str) -> None:
        return None

    def flush(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        empty = {"hits": 0, "misses": 0, "hit_rate": 0.0}
        return {
            "directory": None if self.directory is None else str(self.directory),
            "entries": 0,
            "paths": 0,
            "bytes_used": 0,
            "size_limit_bytes": 0,
            "memory": dict(empty),
            "disk": dict(empty),
        }

    def clear(self) -> int:
        return 0

    def prune(self, older_than_s: float) -> int:
        return 0

    def close(self) -> None:
        return None

    def __enter__(self) -> NullCache:
        return self

    def __exit__(self, *exc) -> None:
        return None


def checked_size_limit(size_limit_bytes: Any) -> int:
    """``size_limit_bytes`` as a whole number of bytes in the range ``AURALIS_CACHE_SIZE_MB``
    may take, else :class:`ParameterError` naming it: -1 was taken and stored nothing,
    and 2048 (meant as MiB) kept a 2 KB cache without a word (a newcomer's)."""
    lo, hi = MIN_SIZE_LIMIT_BYTES, int(_CACHE_SIZE_MB_RANGE[1] * 2**20)
    if (
        isinstance(size_limit_bytes, bool)
        or not isinstance(size_limit_bytes, numbers.Integral)
        or not lo <= size_limit_bytes <= hi
    ):
        raise ParameterError(
            f"size_limit_bytes: must be a whole number of bytes from {lo} (64 KiB) to "
            f"{hi} (1 TiB), got {size_limit_bytes!r}; the default is "
            f"{DEFAULT_SIZE_LIMIT_BYTES} (2 GiB)"
        )
    return int(size_limit_bytes)


def size_limit_from_env() -> int:
    """The caches' size limit in bytes: ``$AURALIS_CACHE_SIZE_MB`` (:data:`CACHE_SIZE_ENV`)
    or :data:`DEFAULT_SIZE_LIMIT_BYTES`. A value that is not a size in range is said in
    one :class:`CacheWarning` and the default is kept (the cache is an optimisation: a
    typo in it does not stop a night's run)."""
    text = os.environ.get(CACHE_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_SIZE_LIMIT_BYTES
    lo, hi = _CACHE_SIZE_MB_RANGE
    try:
        mib = float(text)
    except ValueError:
        mib = float("nan")
    if not lo <= mib <= hi:  # NaN fails too
        warnings.warn(
            f"{CACHE_SIZE_ENV}={text!r} is not a size in MiB between {lo:.0f} and {hi:.0f}: "
            f"the cache keeps its {DEFAULT_SIZE_LIMIT_BYTES // 2**20} MiB",
            CacheWarning,
            stacklevel=2,
        )
        return DEFAULT_SIZE_LIMIT_BYTES
    return int(mib * 2**20)


def open_cache(
    directory: str | os.PathLike | None = None,
    *,
    enabled: bool = True,
    size_limit_bytes: int | None = None,
    value_version: int = 1,
) -> FingerprintCache | NullCache:
    """A working cache, or a :class:`NullCache` if it is disabled or cannot be used.

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Cache folder; default :func:`default_cache_dir`.
    enabled : bool
        False gives a :class:`NullCache` (``--no-cache``).
    size_limit_bytes : int, optional
        See :class:`FingerprintCache`; default :func:`size_limit_from_env`.
    value_version : int
        See :class:`FingerprintCache`.

    Returns
    -------
    FingerprintCache or NullCache
        A location that cannot be opened gives a :class:`NullCache`.

    Raises
    ------
    ParameterError
        ``size_limit_bytes`` is not a whole number of bytes from 64 KiB to 1 TiB.

    Warns
    -----
    CacheWarning
        Once, when the location is unusable and the run goes on uncached.
    """
    if not enabled:
        return NullCache(directory)
    if size_limit_bytes is None:
        size_limit_bytes = size_limit_from_env()
    size_limit_bytes = checked_size_limit(size_limit_bytes)  # a caller's mistake: raised
    try:
        cache = FingerprintCache(directory, size_limit_bytes, value_version=value_version)
    except NoCacheFolderError:  # no home: said plainly, with the one thing to do about it
        warnings.warn(
            "running without the fingerprint cache: no home folder to keep it in (HOME is "
            "not set and the user has no entry, or HOME names a folder that does not "
            "exist); give --cache-dir or set AURALIS_CACHE_DIR",
            CacheWarning,
            stacklevel=2,
        )
    except Exception as exc:
        target = directory if directory is not None else _default_or_none()
        warnings.warn(
            f"fingerprint cache at {target} is unusable ({type(exc).__name__}: {exc}); "
            "running without it",
            CacheWarning,
            stacklevel=2,
        )
    else:
        return cache
    return NullCache(directory)
