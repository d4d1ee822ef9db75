"""Limits the whole engine shares, defined once: every module imports them from here
(``tests/test_install.py`` checks that every entry point holds the same range)."""

from __future__ import annotations

import math
import numbers
from typing import Any

#: Sample rates the engine accepts, Hz: files, arrays, meter, compressor and limiter.
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 384000

#: The shortest limiter lookahead, ms. Shorter gain ramps (with a release of a few ms)
#: modulate the signal fast enough that its inter-sample peaks outgrow the ones the
#: limiter measured: a 0.5 ms lookahead let a tone burst through 0.02 dB over its
#: true-peak ceiling (tests/test_dynamics.py); from 1 ms the ceiling holds.
MIN_LOOKAHEAD_MS = 1.0

#: The shortest per-track time limit, s: ``--timeout-per-track`` and
#: ``RunSettings.timeout_per_track_s`` both refuse less (0 or None in the API: no limit),
#: so the API takes no limit the command line would refuse.
MIN_TIMEOUT_PER_TRACK_S = 1

#: Integrated loudness below which a track is silent to the master, LUFS: no loudness
#: gain, no compressor offset, no matching EQ (BS.1770's absolute gate).
SILENCE_LUFS = -70.0

#: The most channels a file or array may have: the meter's and the dynamics' range.
MAX_CHANNELS = 64

#: Longest file name most filesystems take, in bytes.
MAX_NAME_BYTES = 255

#: The largest sample magnitude a source may hold, full scale = 1 (+60 dBFS). Float
#: files may go over full scale (a hot mix, an unclipped render), but not by a factor
#: of a thousand: such samples are corrupt or unscaled, and a master of them would need
#: more than the engine's gain range to reach a target (and their squares overflow the
#: float32 the engine keeps signals in).
MAX_SAMPLE_MAGNITUDE = 1000.0
#: ... in dBFS: the highest compressor threshold the engine sets. A preset's threshold
#: is at the target level; on a float source louder than that (a +21.7 LUFS render)
#: it moves up by as much, past 0 dBFS (clipped there, such a source was compressed
#: far harder than the same music at full scale: a helper's try).
MAX_THRESHOLD_DBFS = 60.0


def checked_sample_rate(sample_rate: Any, *, name: str = "sample_rate") -> int:
    """``sample_rate`` as an int in the engine's range, or :class:`ParameterError`
    naming it, its value and the range (a whole number of Hz: 44100 or 44100.0)."""
    return checked_whole(
        sample_rate, name=name, lo=MIN_SAMPLE_RATE_HZ, hi=MAX_SAMPLE_RATE_HZ, unit="Hz"
    )


def is_finite_number(value: Any) -> bool:
    """A real, finite number: an int or float of Python or NumPy; not a bool, NaN, an
    infinity or an int too large for a float (``math.isfinite`` raises on one: a
    journal line read back from disk may hold 400 digits)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def checked_whole(value: Any, *, name: str, lo: int, hi: int, unit: str = "") -> int:
    """``value`` as an int between ``lo`` and ``hi``, or :class:`ParameterError`."""
    from .errors import ParameterError

    whole = is_finite_number(value) and float(value).is_integer()
    if not whole or not lo <= int(value) <= hi:
        unit = f" {unit}" if unit else ""
        raise ParameterError(
            f"{name} must be a whole number between {lo} and {hi}{unit}, got {value!r}"
        )
    return int(value)
