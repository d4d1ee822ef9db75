"""Limits the whole engine shares, defined once: every module imports them from here
(``tests/test_install.py`` checks that every entry point holds the same range)."""

from __future__ import annotations

#: Sample rates the engine accepts, Hz: files, arrays, meter, compressor and limiter.
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 384000

#: The shortest limiter lookahead, ms. Shorter gain ramps (with a release of a few ms)
#: modulate the signal fast enough that its inter-sample peaks outgrow the ones the
#: limiter measured: a 0.5 ms lookahead let a tone burst through 0.02 dB over its
#: true-peak ceiling (tests/test_dynamics.py); from 1 ms the ceiling holds.
MIN_LOOKAHEAD_MS = 1.0
