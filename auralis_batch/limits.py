"""Limits the whole engine shares, defined once: every module imports them from here
(``tests/test_install.py`` checks that every entry point holds the same range)."""

from __future__ import annotations

#: Sample rates the engine accepts, Hz: files, arrays, meter, compressor and limiter.
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 384000
