"""Persistent fingerprint cache: an in-process LRU in front of a size-limited diskcache.

* Level 1: an ``OrderedDict`` LRU of ``memory_entries`` values in this process.
* Level 2: a :class:`diskcache.Cache` (SQLite + files) shared by every process and
  session, evicting the least-recently-used entries beyond ``size_limit_bytes``.

Keys are strings: the SHA-256 of the decoded PCM plus everything that changes the
analysis (see :func:`make_key`). A fast path maps (absolute path, size, mtime_ns,
inode) to the content hash, so an unchanged file is neither decoded nor hashed.

Values are JSON text only. :class:`JSONDisk` refuses pickle in both directions: it
never stores a pickle, and when it reads a row whose stored mode says "pickle" (a
tampered or foreign row; :meth:`diskcache.Cache.get` hands the row's own mode to
``Disk.fetch``) it raises instead of unpickling. Nothing read from the cache can
execute code. Unparsable rows and rows of another version are misses and deleted.

The cache is an optimisation, never a point of failure: a corrupt database is moved
aside and rebuilt with one :class:`CacheWarning`; an unwritable or full location gives
one warning and the run goes on uncached; timeouts and unreadable rows are misses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SIZE_LIMIT_BYTES = 2 * 1024**3
DEFAULT_MEMORY_ENTRIES = 50
FINGERPRINT_PREFIX = "fp:"
PATH_PREFIX = "path:"
STATS_PREFIX = "__stats__:"
SQLITE_TIMEOUT_S = 10.0
#: Level-1 counters are added to the shared ones every this many operations and at close.
STATS_FLUSH_EVERY = 64


class CacheWarning(UserWarning):
    """The cache could not be used as intended; the run goes on."""


class UnsafeRowError(Exception):
    """A row that is not plain JSON (e.g. a pickle planted in the store)."""


def default_cache_dir() -> Path:
    """``$AURALIS_CACHE_DIR``, else the platform's user cache dir + ``/fingerprints``."""
    env = os.environ.get("AURALIS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("auralis-batch")) / "fingerprints"


def make_key(
    content_sha256: str, *, fingerprint_version: int, tempo: bool, analysis_sample_rate: int
) -> str:
    """Cache key of an analysis: content hash plus every option that changes it."""
    return (
        f"{FINGERPRINT_PREFIX}v{fingerprint_version}:tempo{int(tempo)}:"
        f"sr{analysis_sample_rate}:{content_sha256}"
    )


def hash_pcm_blocks(blocks: Iterable[np.ndarray]) -> str:
    """SHA-256 of decoded PCM: each ``(channels, n)`` block as interleaved (frame by
    frame) little-endian float32, so the digest does not depend on block boundaries."""
    h = hashlib.sha256()
    for block in blocks:
        h.update(np.ascontiguousarray(np.asarray(block).T, dtype="<f4").tobytes())
    return h.hexdigest()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` (or plain seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise ValueError(
            f"--older-than: expected a duration like 30d, 12h, 90m, 45s or 2w, got {text!r}"
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _json_disk_class():
    import diskcache
    from diskcache.core import MODE_BINARY, MODE_PICKLE, MODE_RAW

    class JSONDisk(diskcache.Disk):
        """Stores values as UTF-8 JSON bytes; refuses pickle in both directions."""

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
            return super().store(data, False, key=key)

        def fetch(self, mode, filename, value, read):
            if mode not in (MODE_RAW, MODE_BINARY) or mode == MODE_PICKLE:
                raise UnsafeRowError(f"row stored in mode {mode}, not JSON bytes")
            data = super().fetch(mode, filename, value, False)
            if isinstance(data, str):
                data = data.encode("utf-8")
            return json.loads(bytes(data).decode("utf-8"))

    return JSONDisk


class FingerprintCache:
    """Two-level cache of analysis records (JSON-safe dicts)."""

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES,
        memory_entries: int = DEFAULT_MEMORY_ENTRIES,
        *,
        value_version: int = 1,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.size_limit_bytes = int(size_limit_bytes)
        self.memory_entries = int(memory_entries)
        self.value_version = int(value_version)
        self._memory: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._pending = {"memory_hits": 0, "memory_misses": 0, "disk_hits": 0, "disk_misses": 0}
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
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
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
        return self.get_with_source(key)[0]

    def get_with_source(self, key: str) -> tuple[dict | None, str]:
        """``(value, source)`` with source ``"memory"``, ``"disk"`` or ``"miss"``."""
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                self._count("memory_hits")
                return dict(hit), "memory"
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
        except (UnsafeRowError, ValueError, UnicodeDecodeError, TypeError):
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
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def lookup_path(self, path: str | os.PathLike) -> str | None:
        """Content hash remembered for an unchanged file, else None."""
        p = Path(path).resolve()
        try:
            ident = self._identity(p)
        except OSError:
            return None
        key = PATH_PREFIX + str(p)
        with self._lock:
            hit = self._memory.get(key)
        entry = hit if hit is not None else self._disk_get(key)
        if entry is None or entry.get("identity") != ident:
            return None
        if hit is None:
            self._remember(key, entry)
        content = entry.get("content")
        return content if isinstance(content, str) else None

    def path_changed(self, path: str | os.PathLike) -> bool:
        """True when ``path`` was seen before but its size, mtime or inode changed since.

        Such a file is worth hashing before analysing: a re-tag keeps the audio.
        """
        key = PATH_PREFIX + str(Path(path).resolve())
        with self._lock:
            hit = self._memory.get(key)
        return (hit if hit is not None else self._disk_get(key)) is not None

    def remember_path(self, path: str | os.PathLike, content_hash: str) -> None:
        p = Path(path).resolve()
        try:
            ident = self._identity(p)
        except OSError:
            return
        self.set(PATH_PREFIX + str(p), {"identity": ident, "content": content_hash})

    # ------------------------------------------------------------------ stats & upkeep
    def _count(self, name: str) -> None:
        self._pending[name] += 1
        self._ops += 1
        if self._ops >= STATS_FLUSH_EVERY:
            self._flush_stats()

    def _flush_stats(self) -> None:
        pending, self._pending = self._pending, dict.fromkeys(self._pending, 0)
        self._ops = 0
        for name, n in pending.items():
            if n:
                try:  # read-modify-write in one SQLite transaction (safe across processes)
                    with self._disk.transact(retry=True):
                        old = self._disk.get(STATS_PREFIX + name, default=0)
                        old = old if isinstance(old, int) else 0
                        self._disk.set(STATS_PREFIX + name, old + n)
                except Exception as exc:
                    self._degrade(exc)
                    return

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
        """Entries, bytes, limit, and hits/misses per level (shared across processes)."""
        self._flush_stats()
        counts = {}
        for name in ("memory_hits", "memory_misses", "disk_hits", "disk_misses"):
            try:
                counts[name] = int(self._disk.get(STATS_PREFIX + name, default=0) or 0)
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
        with self._lock:
            self._memory.clear()
        try:
            return int(self._disk.clear(retry=True))
        except Exception as exc:
            self._degrade(exc)
            return 0

    def prune(self, older_than_s: float) -> int:
        """Delete entries not read or written for ``older_than_s`` seconds."""
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
        with contextlib.suppress(Exception):
            self._flush_stats()
        with contextlib.suppress(Exception):
            self._disk.close()

    def __enter__(self) -> FingerprintCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullCache:
    """Same interface, stores nothing (``--no-cache`` or an unusable location)."""

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

    def path_changed(self, path: str | os.PathLike) -> bool:
        return False

    def remember_path(self, path: str | os.PathLike, content_hash: str) -> None:
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


def open_cache(
    directory: str | os.PathLike | None = None,
    *,
    enabled: bool = True,
    size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES,
    value_version: int = 1,
) -> FingerprintCache | NullCache:
    """A working cache, or a :class:`NullCache` (with one warning) if it cannot be used."""
    if not enabled:
        return NullCache(directory)
    try:
        return FingerprintCache(directory, size_limit_bytes, value_version=value_version)
    except Exception as exc:
        target = directory if directory is not None else default_cache_dir()
        warnings.warn(
            f"fingerprint cache at {target} is unusable ({type(exc).__name__}: {exc}); "
            "running without it",
            CacheWarning,
            stacklevel=2,
        )
        return NullCache(directory)
