"""Track fingerprint: spectrum, dynamics, stereo image, temporal traits and tempo.

One streamed pass. :class:`FingerprintAnalyzer` takes ``(channels, n)`` blocks of any
size and gives the same :class:`Fingerprint` as one piece (frames are cut from a
carried buffer, so block boundaries never move a frame).

Analysis rate and frames (chosen for speed; every field is in Hz or dB, not bins):

* The channels are averaged to mono. Sources above 88.2 kHz are low-passed (8th-order
  Butterworth at 0.45 of the new rate) and decimated by an integer factor to the
  first rate at or above :data:`ANALYSIS_SAMPLE_RATE` (96 kHz -> 48 kHz).
* Spectral frames: periodic Hann, about 46 ms (2048 samples at 44.1/48 kHz), hop of
  half a frame. Frames whose mean square is below -60 dBFS are silent: they count in
  ``silence_ratio`` and are left out of the spectral statistics.
* Tempo frames (only when tempo is on): periodic Hann (applied to the spectrum of the
  unwindowed frame, which saves a windowed copy), about 23 ms (1024 samples at
  44.1/48 kHz) with a hop of half a frame (11.6 ms at 44.1 kHz), 32 log-spaced bands
  from 30 Hz to 11 kHz, onset strength = mean dB rise per band (see
  :mod:`kernels.tempo`); the same rise over the bands centred in 30-150 Hz (kick) and
  0.8-4 kHz (snare) gives the backbeat feature.

Field definitions:

* ``band_energy``: share of spectral power in each band of :data:`BAND_EDGES_HZ`
  (shares sum to 1 over 20 Hz - 20 kHz, or the Nyquist frequency if lower).
* centroid, 85 % rolloff and flatness as librosa defines them, mean and standard
  deviation over non-silent frames; ``spectral_flux``: mean L2 distance between
  consecutive L2-normalised magnitude spectra (0 for a steady tone, level-free).
* ``crest_db``: sample peak over RMS of all channels (a sine gives 3.01 dB), about
  each channel's mean;
  ``plr_db``: true peak minus integrated loudness; ``loudness_variation_lu``: standard
  deviation of the short-term loudness over the blocks that LRA counts;
  ``lra_lu``: EBU Tech 3342.
* ``stereo_width``: side energy over mid plus side energy of the front pair (0 mono,
  0.5 uncorrelated, 1 out of phase); ``stereo_correlation``: Pearson correlation of
  left and right, their means taken out (1 mono, -1 out of phase).
* ``onset_density_per_s``: onsets picked from the band-energy flux (librosa's
  peak-picking rule and defaults) per second; ``silence_ratio``: silent frames over
  all frames; ``percussive_ratio``: share of band energy above each band's 9-frame
  (0.2 s) running median, a median-filter harmonic/percussive split (0 sustained,
  towards 1 for clicks and drums).
* ``tempo_bpm``: the beat level :mod:`kernels.tempo` decides on, 40-240 BPM;
  ``tempo_confidence`` (0-1): that level's share of the estimator's softmax over the
  metrical levels it weighed, times the periodicity there (at or above
  :data:`TEMPO_CONFIDENCE_THRESHOLD` the estimate is usually right);
  ``tempo_candidates``: up to two runners-up ``(bpm, score)``, best first, scored like
  the confidence (the octave or triple readings it weighed). 120.0 / 0.0 / none when
  tempo is off or undefined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import AudioError
from .filters import LOW_PASS, rbj_biquad, sos_filter
from .kernels import tempo as _tk
from .kernels.spectral import (
    COL_CENTROID,
    COL_FLATNESS,
    COL_FLUX,
    COL_ROLLOFF,
    COL_SILENT,
    DMX_CHANNELS,
    DMX_LL,
    DMX_LR,
    DMX_MAX,
    DMX_MIN,
    DMX_PER_CHANNEL,
    DMX_RR,
    DMX_SS,
    DMX_SUM,
    N_FEATURE_COLS,
    downmix_stats,
    frame_features,
    windowed_frames_into,
)
from .kernels.tempo import (
    autocorrelation,
    detrend,
    hann_band_powers,
    onset_envelopes,
    tempo_from_acf,
)
from .versions import ANALYSIS_SAMPLE_RATE, BAND_EDGES_HZ, DEFAULT_TEMPO_BPM, FINGERPRINT_VERSION

# FINGERPRINT_VERSION, ANALYSIS_SAMPLE_RATE (spectral analysis runs at the source rate
# divided by the largest integer that keeps it at or above this rate; 44.1 and 48 kHz
# are analysed as they are), DEFAULT_TEMPO_BPM and BAND_EDGES_HZ live in the light
# versions module (the cache's check of a record reads them).
MIN_TEMPO_BPM = 40.0
MAX_TEMPO_BPM = 240.0
#: The metrical reference's prior (kernels.tempo, step 2): it only has to pick a level of
#: the right metrical family. These three constants and the weights below are what
#: bench/tempo/fit.py chose and fitted on the whole tempo set.
TEMPO_REFERENCE_BPM = 100.0
TEMPO_REFERENCE_OCTAVES = 1.0
#: A duple neighbour of the reference needs this share of its periodicity to be the
#: beat (0: any); a triple move needs ternary evidence above 0.1 at the slower level.
TEMPO_MIN_DUPLE = 0.5
TEMPO_MIN_TERNARY = 0.1
#: Weights of the beat-level features (kernels.tempo FEAT_* order: salience, tempo,
#: tempo squared, ternary, double, half, backbeat, tatum), fitted on the tempo set by
#: bench/tempo/fit.py.
TEMPO_WEIGHTS = (0.778, 0.63, -2.504, 4.0, 0.264, -0.618, 1.148, -1.009)
#: tempo_confidence at or above this: the estimate is usually right (README, Tempo).
TEMPO_CONFIDENCE_THRESHOLD = 0.3
FRAME_SECONDS = 0.0464  # -> 2048 samples at 44.1 and 48 kHz
SILENCE_DBFS = -60.0
ROLLOFF_PERCENT = 0.85
PERCUSSIVE_HALF_WIDTH = 4  # frames each side of the median (9 frames, ~0.2 s)
ONSET_MIN_RISE_DB = 1.0
ONSET_RANGE_DB = 50.0  # bands more than this below the frame's loudest are floored
TEMPO_BANDS = 32
TEMPO_FLOOR_DB = -80.0
#: Kick and snare bands of the backbeat feature (kernels.tempo FEAT_BACKBEAT): the
#: tempo bands whose centres fall in these ranges (Hz).
TEMPO_LOW_HZ = (30.0, 150.0)
TEMPO_HIGH_HZ = (800.0, 4000.0)
_FFT_CHUNK = 64  # frames per FFT call: keeps the batch in cache
_BUTTERWORTH8_Q = (0.50979558, 0.60134489, 0.89997622, 2.56291545)


@dataclass(frozen=True)
class Fingerprint:
    """What one track sounds like, in numbers (see the module docstring)."""

    band_energy: dict[str, float]
    spectral_centroid_hz: float
    spectral_centroid_std_hz: float
    spectral_rolloff_hz: float
    spectral_rolloff_std_hz: float
    spectral_flatness: float
    spectral_flatness_std: float
    spectral_flux: float
    crest_db: float
    plr_db: float
    loudness_variation_lu: float
    lra_lu: float
    stereo_width: float
    stereo_correlation: float
    onset_density_per_s: float
    silence_ratio: float
    percussive_ratio: float
    tempo_bpm: float = DEFAULT_TEMPO_BPM
    tempo_confidence: float = 0.0
    tempo_candidates: tuple[tuple[float, float], ...] = ()
    version: int = field(default=FINGERPRINT_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats rounded to 6 significant digits, non-finite -> None."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if isinstance(v, dict):
                out[k] = {b: _clean(e) for b, e in v.items()}
            elif k == "tempo_candidates":
                out[k] = [{"bpm": _clean(b), "score": _clean(c)} for b, c in v]
            elif isinstance(v, float):
                out[k] = _clean(v)
            else:
                out[k] = v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        """Inverse of :meth:`to_dict` (None -> NaN); unknown keys are ignored."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            if f.name == "band_energy":
                kwargs[f.name] = {str(b): float(e) for b, e in v.items()}
            elif f.name == "tempo_candidates":
                kwargs[f.name] = tuple(
                    (_float(c["bpm"]), _float(c["score"])) for c in v if isinstance(c, dict)
                )
            elif f.name == "version":
                kwargs[f.name] = int(v)
            else:
                kwargs[f.name] = math.nan if v is None else float(v)
        return cls(**kwargs)


def _clean(v: float) -> float | None:
    v = float(v)
    return float(f"{v:.6g}") if math.isfinite(v) else None


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _decimation(sample_rate: int) -> int:
    return max(1, int(sample_rate) // ANALYSIS_SAMPLE_RATE)


def _frame_length(rate: float) -> int:
    return 1 << round(math.log2(rate * FRAME_SECONDS))


def _periodic_hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


# Once-per-track steps of the temporal traits, in NumPy rather than kernels: each works
# on one table of frames at the end of a track, and as kernels they cost a first run
# 0.7 s of compiling for milliseconds of work. Every sum keeps a kernel's order (one
# running sum: ``np.cumsum``'s last value, where ``np.sum`` would pair the terms up),
# so the results are the bits the kernels gave, and the cached fingerprints stay valid.
#: Frames of :func:`count_peaks`'s windows held at a time.
_PEAK_CHUNK = 1 << 16


def _running_sum(values: np.ndarray, start: float = 0.0) -> float:
    """``start + values[0] + values[1] + ...``, added left to right."""
    if not values.size:
        return start
    return float(np.cumsum(np.concatenate(([start], values)))[-1])


def level_rise(
    levels_db: np.ndarray, prev_db: np.ndarray, state: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onset strength: mean over bands of the rise in level since the previous frame.

    Parameters
    ----------
    levels_db : float64 [shape=(frames, bands)], floored band levels
    prev_db : float64 [shape=(bands,)], state: the previous frame's levels. Not modified.
    state : int64 [shape=(1,)], state: 1 when ``prev_db`` holds a frame. Not modified.

    Returns
    -------
    env : float64 [shape=(frames,)], half-wave rectified rise, summed band by band in
        order and divided by the number of bands
    prev_db, state : the new state (new arrays)
    """
    nf, nb = levels_db.shape
    if nf == 0:
        return np.zeros(0), prev_db.copy(), state.copy()
    before = np.empty_like(levels_db)
    before[0] = prev_db
    before[1:] = levels_db[:-1]
    rise = levels_db - before
    rise = np.where(rise > 0.0, rise, 0.0)  # NaN rises count as none
    if state[0] != 1:
        rise[0] = 0.0  # no frame before the first
    new_state = state.copy()
    new_state[0] = 1
    return np.cumsum(rise, axis=1)[:, -1] / nb, levels_db[-1].copy(), new_state


def count_peaks(
    env: np.ndarray,
    pre_max: int,
    post_max: int,
    pre_avg: int,
    post_avg: int,
    delta: float,
    wait: int,
) -> int:
    """Number of onsets picked from ``env`` (librosa.util.peak_pick's rule).

    A frame is an onset when it is the maximum of ``env[t - pre_max : t + post_max + 1]``,
    exceeds the mean of ``env[t - pre_avg : t + post_avg + 1]`` by ``delta`` (windows
    cut at the ends), and comes more than ``wait`` frames after the previous onset.
    """
    n = env.shape[0]
    span_max, span_avg = pre_max + post_max + 1, pre_avg + post_avg + 1
    # windows cut at the ends: -inf never wins a maximum, zeros leave a running sum alone
    maxed = np.concatenate((np.full(pre_max, -np.inf), env, np.full(post_max, -np.inf)))
    summed = np.concatenate((np.zeros(pre_avg), env, np.zeros(post_avg)))
    candidates = []
    for a in range(0, n, _PEAK_CHUNK):  # a chunk of windows at a time: bounded memory
        b = min(n, a + _PEAK_CHUNK)
        top = sliding_window_view(maxed[a : b + span_max - 1], span_max).max(axis=1)
        sums = np.cumsum(sliding_window_view(summed[a : b + span_avg - 1], span_avg), axis=1)
        t = np.arange(a, b)
        counts = np.minimum(n, t + post_avg + 1) - np.maximum(0, t - pre_avg)
        v = env[a:b]
        candidates.append(a + np.flatnonzero((v >= top) & ~(v < sums[:, -1] / counts + delta)))
    count, last = 0, -wait - 1
    for i in np.concatenate(candidates).tolist() if candidates else ():
        if i - last > wait:
            count += 1
            last = i
    return count


def percussive_share(band_power: np.ndarray, silent: np.ndarray, half_width: int) -> float:
    """Share of energy in short bursts: a median-filter harmonic/percussive split.

    Each band's harmonic part is its median over ``2 * half_width + 1`` frames (what
    sustains; fewer at the edges, the mean of the middle two when even); the
    percussive part is what rises above it. Returns the percussive energy over the
    total, over the frames where ``silent`` is 0, in [0, 1] (0.0 with no energy).
    """
    nb = band_power.shape[1]
    live = silent == 0.0
    total = burst = 0.0
    for b in range(nb):  # one band at a time: memory in proportion to one band's frames
        energy = band_power[:, b]
        harmonic = _running_median(energy, half_width)[live]
        energy = energy[live]
        total = _running_sum(energy, total)
        burst = _running_sum(np.where(energy > harmonic, energy - harmonic, 0.0), burst)
    return burst / total if total > 0.0 else 0.0


def _running_median(x: np.ndarray, half_width: int) -> np.ndarray:
    """Median of ``x[t - half_width : t + half_width + 1]`` for each ``t`` (cut at the
    ends; the mean of the middle two of an even count)."""
    n, width = x.shape[0], 2 * half_width + 1
    med = np.empty(n)
    if n >= width:
        med[half_width : n - half_width] = np.sort(sliding_window_view(x, width), axis=1)[
            :, half_width
        ]
    for t in sorted(set(range(min(half_width, n))) | set(range(max(0, n - half_width), n))):
        seg = np.sort(x[max(0, t - half_width) : t + half_width + 1])
        m = seg.shape[0]
        med[t] = seg[m // 2] if m % 2 == 1 else 0.5 * (seg[m // 2 - 1] + seg[m // 2])
    return med


def log_flux(
    band_power: np.ndarray,
    reference_power: float,
    floor_db: float,
    range_db: float,
    prev_db: np.ndarray,
    state: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onset strength of band-power frames: mean over bands of the rise in dB since
    the previous frame (half-wave rectified).

    Levels are in dB re ``reference_power`` (a full-scale sine), floored at
    ``floor_db`` and at the frame's loudest band minus ``range_db``: the leakage in
    near-empty bands wobbles by several dB from frame to frame and would otherwise read
    as onsets. ``prev_db`` and ``state`` carry the previous frame across calls: returns
    ``(envelope, prev_db, state)`` with the new state. The logarithms run in NumPy
    (vectorised), and so do the rises (:func:`level_rise`).
    """
    p = band_power * (1.0 / reference_power)
    if p.shape[0] == 0:
        return np.zeros(0), prev_db, state
    lo = np.maximum(p.max(axis=1) * 10.0 ** (-range_db / 10.0), 10.0 ** (floor_db / 10.0))
    levels = 10.0 * np.log10(np.maximum(p, lo[:, np.newaxis]))
    return level_rise(levels, prev_db, state)


class _Framer:
    """Cuts a mono stream into Hann-windowed frames of ``n`` samples every ``hop``,
    across blocks, and gives their spectra in batches of ``_FFT_CHUNK`` frames."""

    def __init__(self, n: int, hop: int) -> None:
        self.n = n
        self.hop = hop
        self._tail = np.zeros(0)
        self.frames = 0
        self._window = _periodic_hann(n)
        self._buf = np.empty((_FFT_CHUNK, n))  # windowed frames, reused

    def spectra(self, x: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(segment, spectrum)`` for each batch of frames that ``x`` completes: frame
        ``t`` of a batch is ``segment[t * hop :][:n]`` (unwindowed, contiguous) and
        ``spectrum[t]`` the ``rfft`` of it windowed."""
        signal, count = self._push(x)
        yield from self._batches(signal, count)

    def flush_spectra(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One zero-padded frame when the whole stream was shorter than a frame."""
        if self.frames or not self._tail.size:
            return
        frame = np.zeros(self.n)
        frame[: self._tail.size] = self._tail
        self._tail = np.zeros(0)
        self.frames = 1
        yield from self._batches(frame, 1)

    def _push(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        buf = np.concatenate((self._tail, x)) if self._tail.size else x
        if buf.shape[0] < self.n:
            self._tail = buf.copy()
            return buf[:0], 0
        count = (buf.shape[0] - self.n) // self.hop + 1
        self._tail = buf[count * self.hop :].copy()
        self.frames += count
        return np.ascontiguousarray(buf[: (count - 1) * self.hop + self.n]), count

    def _batches(self, signal: np.ndarray, count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, count, _FFT_CHUNK):
            c = min(_FFT_CHUNK, count - i)
            seg = signal[i * self.hop : i * self.hop + (c - 1) * self.hop + self.n]
            frames = windowed_frames_into(seg, self.hop, self._window, self._buf[:c])
            yield seg, np.fft.rfft(frames, axis=1)


def _bands_to_bins(edges_hz: list[tuple[float, float]], bin_hz: float, n_bins: int):
    lo = np.empty(len(edges_hz), dtype=np.int64)
    hi = np.empty(len(edges_hz), dtype=np.int64)
    for i, (f0, f1) in enumerate(edges_hz):
        lo[i] = min(n_bins, math.ceil(f0 / bin_hz))
        hi[i] = min(n_bins, math.ceil(f1 / bin_hz))
    return lo, hi


def _tempo_bands(bin_hz: float, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    top = min(11025.0, (n_bins - 1) * bin_hz)
    edges = np.geomspace(30.0, top, TEMPO_BANDS + 1) / bin_hz
    idx = np.unique(np.maximum(1, np.round(edges).astype(np.int64)))
    return idx[:-1].copy(), idx[1:].copy()


@dataclass(frozen=True)
class TempoEstimate:
    """A tempo, how sure the estimator is, and the metrical levels it weighed against it.

    ``confidence`` (0 to 1): the winner's share of the estimator's softmax over the
    metrical levels it weighed, times the periodicity at that level (see
    :mod:`kernels.tempo`); at or above :data:`TEMPO_CONFIDENCE_THRESHOLD` the estimate
    is usually right. ``candidates``: up to two runners-up ``(bpm, score)``, best
    first, the score measured like ``confidence``.
    """

    bpm: float = DEFAULT_TEMPO_BPM
    confidence: float = 0.0
    candidates: tuple[tuple[float, float], ...] = ()


def tempo_params(
    weights: Iterable[float] = TEMPO_WEIGHTS,
    *,
    reference_bpm: float = TEMPO_REFERENCE_BPM,
    reference_octaves: float = TEMPO_REFERENCE_OCTAVES,
    min_duple: float = TEMPO_MIN_DUPLE,
    min_ternary: float = TEMPO_MIN_TERNARY,
) -> np.ndarray:
    """The kernel's parameter vector (``kernels.tempo.PRM_*``); the defaults are the
    shipped values."""
    prm = np.zeros(_tk.N_PARAMS)
    prm[_tk.PRM_MIN_BPM] = MIN_TEMPO_BPM
    prm[_tk.PRM_MAX_BPM] = MAX_TEMPO_BPM
    prm[_tk.PRM_REF_BPM] = reference_bpm
    prm[_tk.PRM_REF_OCTAVES] = reference_octaves
    prm[_tk.PRM_MIN_DUPLE] = min_duple
    prm[_tk.PRM_MIN_TERNARY] = min_ternary
    w = np.asarray(tuple(weights), dtype=np.float64)
    if w.shape != (_tk.N_FEATURES,):
        raise ValueError(f"tempo weights: expected {_tk.N_FEATURES} values, got {w.shape}")
    prm[_tk.PRM_W_SALIENCE :] = w
    return prm


_TEMPO_PARAMS = tempo_params()


class _UnwindowedFramer(_Framer):
    """:class:`_Framer` whose spectra are of the *unwindowed* frames, each batch's rows
    a strided view of the signal (no windowed copy): the tempo tracker applies the Hann
    window in the frequency domain (:func:`kernels.tempo.hann_band_powers`), which
    saves the copy: about an eighth of the tempo path's time."""

    def _batches(self, signal: np.ndarray, count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        step = signal.strides[0]
        for i in range(0, count, _FFT_CHUNK):
            c = min(_FFT_CHUNK, count - i)
            seg = signal[i * self.hop : i * self.hop + (c - 1) * self.hop + self.n]
            frames = np.lib.stride_tricks.as_strided(
                seg, shape=(c, self.n), strides=(self.hop * step, step), writeable=False
            )
            yield seg, np.fft.rfft(frames, axis=1)


class TempoTracker:
    """Streaming onset envelope and tempo of a mono stream at ``rate`` Hz.

    Frames of about 23 ms (1024 samples at 44.1 kHz) every 11.6 ms; band powers from
    30 Hz to 11 kHz.
    """

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        frame_length = _frame_length(self.rate) // 2
        self._framer = _UnwindowedFramer(frame_length, frame_length // 2)
        n_bins = frame_length // 2 + 1
        self._lo, self._hi = _tempo_bands(self.rate / frame_length, n_bins)
        self._ref = (frame_length / 4.0) ** 2  # band power of a full-scale sine
        self._state = np.zeros(1, dtype=np.int64)
        self._env: list[np.ndarray] = []
        self._low: list[np.ndarray] = []
        self._high: list[np.ndarray] = []
        centre = np.sqrt(self._lo * np.maximum(self._hi - 1, self._lo)) * (self.rate / frame_length)
        self._low_bands = np.flatnonzero((centre >= TEMPO_LOW_HZ[0]) & (centre < TEMPO_LOW_HZ[1]))
        self._high_bands = np.flatnonzero(
            (centre >= TEMPO_HIGH_HZ[0]) & (centre < TEMPO_HIGH_HZ[1])
        )
        # The three onset envelopes (all bands, kick bands, snare bands) in one kernel.
        self._members = np.concatenate(
            (np.arange(self._lo.shape[0]), self._low_bands, self._high_bands)
        ).astype(np.int64)
        self._offsets = np.cumsum(
            [0, self._lo.shape[0], self._low_bands.size, self._high_bands.size]
        ).astype(np.int64)
        self._prev = np.zeros(self._members.shape[0])
        self.frame_rate = self.rate / (frame_length // 2)

    def push(self, mono: np.ndarray) -> None:
        floor = 10.0 ** (TEMPO_FLOOR_DB / 10.0)
        for _, spec in self._framer.spectra(mono):
            bp = hann_band_powers(spec, self._lo, self._hi)
            # log_flux's levels, each group floored at its loudest band - ONSET_RANGE_DB
            # (log10 of the max is the max of the log10s: one vectorised log per chunk)
            levels = 10.0 * np.log10(np.maximum(bp * (1.0 / self._ref), floor))
            env, self._prev, self._state = onset_envelopes(
                levels, ONSET_RANGE_DB, self._members, self._offsets, self._prev, self._state
            )
            self._env.append(env[0])
            self._low.append(env[1])
            self._high.append(env[2])

    def envelope(self) -> np.ndarray:
        """Onset strength, one value per tempo frame."""
        return np.concatenate(self._env) if self._env else np.zeros(0)

    def _max_lag(self) -> int:
        slowest = 60.0 * self.frame_rate / MIN_TEMPO_BPM
        return int(math.ceil(_tk.COMB_MULTIPLES * slowest * (1.0 + _tk.PEAK_RADIUS))) + 4

    def autocorrelation(self) -> np.ndarray | None:
        """Autocorrelation of the detrended envelope over the lags the estimator reads
        (four periods of the slowest tempo); None when the stream is too short to show
        a period (four of the slowest beats) or has no onsets."""
        env = self.envelope()
        slowest = 60.0 * self.frame_rate / MIN_TEMPO_BPM
        if env.shape[0] < 4 * slowest or not np.any(env > 0.0):
            return None
        d = detrend(env, int(round(0.5 * self.frame_rate)))
        return autocorrelation(d, self._max_lag())

    def cross_correlation(self) -> np.ndarray:
        """Autocorrelation (normalised to 1 at lag 0) of the difference of the detrended
        low-band and high-band envelopes (:data:`TEMPO_LOW_HZ`, :data:`TEMPO_HIGH_HZ`),
        each scaled to unit energy, over the same lags: negative at a lag where low
        and high onsets alternate (kernels.tempo FEAT_BACKBEAT). Zeros when either
        band is silent."""
        out = np.zeros(self._max_lag() + 1)
        if not self._low or self._low_bands.size == 0 or self._high_bands.size == 0:
            return out
        half = int(round(0.5 * self.frame_rate))
        lo = detrend(np.concatenate(self._low), half)
        hi = detrend(np.concatenate(self._high), half)
        e_lo, e_hi = float(np.dot(lo, lo)), float(np.dot(hi, hi))
        if not (e_lo > 0.0 and e_hi > 0.0):
            return out
        d = lo / math.sqrt(e_lo) - hi / math.sqrt(e_hi)
        acf = autocorrelation(d, self._max_lag())
        return acf / acf[0] if acf[0] > 0.0 else out

    def result(self, params: np.ndarray | None = None) -> TempoEstimate:
        """The estimate (the default tempo with confidence 0 if undefined); ``params``
        replaces the fitted parameter vector (:func:`tempo_params`)."""
        acf = self.autocorrelation()
        if acf is None:
            return TempoEstimate()
        prm = _TEMPO_PARAMS if params is None else params
        xcf = self.cross_correlation()
        bpm, conf, r_bpm, r_share = tempo_from_acf(
            acf, xcf, self.frame_rate, prm, DEFAULT_TEMPO_BPM
        )
        runners = tuple(
            (float(b), float(c)) for b, c in zip(r_bpm, r_share, strict=True) if math.isfinite(b)
        )
        return TempoEstimate(float(bpm), float(conf), runners)


class _Decimator:
    """Anti-aliased integer decimation of a mono stream, exact across blocks."""

    def __init__(self, sample_rate: int, factor: int) -> None:
        self.factor = factor
        cutoff = 0.45 * sample_rate / factor
        self._sos = np.array(
            [rbj_biquad(LOW_PASS, cutoff, 0.0, q, float(sample_rate)) for q in _BUTTERWORTH8_Q]
        )
        self._zi = np.zeros((1, self._sos.shape[0], 2))
        self._offset = 0  # index in the next block of the next kept sample

    def push(self, mono: np.ndarray) -> np.ndarray:
        y, self._zi = sos_filter(mono[np.newaxis, :], self._sos, self._zi)
        out = y[0, self._offset :: self.factor]
        n = mono.shape[0]
        self._offset = (self._offset - n) % self.factor
        return np.ascontiguousarray(out)


#: The fingerprint describes the music, not a DC offset (inaudible, and removed by the
#: chain's subsonic filter anyway: a 0.3 offset moved the centroid from 824 to 264 Hz,
#: the crest factor by 9 dB, the stereo correlation from 0.48 to 0.98, and an adaptive
#: master's EQ and target with them). The time-domain statistics take each channel's
#: mean out exactly (:data:`kernels.spectral.DMX_SS`); the spectral and tempo frames
#: read the downmix through a one-pole DC blocker with its corner here (0.04 dB down
#: at 21.5 Hz, the lowest bin above DC of a 2048-sample frame; an offset present from
#: the start decays with a time constant of 80 ms).
DC_BLOCK_HZ = 2.0


def downmix_state(channels: int) -> np.ndarray:
    """The starting ``acc`` of :func:`kernels.spectral.downmix_stats`."""
    acc = np.zeros(DMX_CHANNELS + DMX_PER_CHANNEL * channels)
    acc[DMX_CHANNELS + DMX_MAX :: DMX_PER_CHANNEL] = -np.inf
    acc[DMX_CHANNELS + DMX_MIN :: DMX_PER_CHANNEL] = np.inf
    return acc


class FingerprintAnalyzer:
    """Streaming fingerprint of one ``(channels, n)`` stream at ``sample_rate``.

    ``tempo=False`` builds no tempo machinery at all: the tempo frames, onset envelope
    and autocorrelation are skipped and the result reports 120.0 BPM, confidence 0.
    Every field but ``plr_db`` is of the stream without its DC offset
    (:data:`DC_BLOCK_HZ`); ``plr_db`` comes from the meter's true peak, which keeps it.
    """

    def __init__(self, sample_rate: int, channels: int, *, tempo: bool = True) -> None:
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.tempo = bool(tempo)
        factor = _decimation(self.sample_rate)
        self._decimator = _Decimator(self.sample_rate, factor) if factor > 1 else None
        self.analysis_rate = self.sample_rate / factor
        n = _frame_length(self.analysis_rate)
        self.frame_length = n
        self._framer = _Framer(n, n // 2)
        self._n_bins = n // 2 + 1
        self.bin_hz = self.analysis_rate / n
        self._band_lo, self._band_hi = _bands_to_bins(
            list(BAND_EDGES_HZ.values()), self.bin_hz, self._n_bins
        )
        self._silence_ms = 10.0 ** (SILENCE_DBFS / 10.0)
        self._prev = np.zeros(self._n_bins)
        self._flux_state = np.zeros(1, dtype=np.int64)
        self._rows: list[np.ndarray] = []
        self._acc = downmix_state(self.channels)
        self.samples = 0
        self._tempo = TempoTracker(self.analysis_rate) if self.tempo else None
        self._dc_coef = math.exp(-2.0 * math.pi * DC_BLOCK_HZ / self.sample_rate)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Add a ``(channels, n)`` block (any float dtype, any n); returns its downmix
        (float64, the mean of the channels without their DC offset, at the block's own
        rate)."""
        x = np.asarray(block)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise AudioError(
                f"fingerprint: expected a block of shape ({self.channels}, n), got {x.shape}"
            )
        if x.shape[1] == 0:
            return np.zeros(0)
        x = np.ascontiguousarray(x, dtype=np.float64)
        downmix, self._acc = downmix_stats(x, self._acc, self._dc_coef)
        self.samples += x.shape[1]
        mono = downmix if self._decimator is None else self._decimator.push(downmix)
        self._spectral(self._framer.spectra(mono))
        if self._tempo is not None:
            self._tempo.push(mono)
        return downmix

    def _spectral(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        hop = self._framer.hop
        for seg, spec in batches:
            rows, self._prev, self._flux_state = frame_features(
                seg,
                hop,
                spec,
                self._silence_ms,
                self._band_lo,
                self._band_hi,
                self.bin_hz,
                ROLLOFF_PERCENT,
                self._prev,
                self._flux_state,
            )
            self._rows.append(rows)

    def finish(
        self,
        *,
        true_peak_dbtp: float,
        integrated_lufs: float,
        lra_lu: float,
        short_term_lufs: np.ndarray | None = None,
    ) -> Fingerprint:
        """The fingerprint; loudness figures come from the meter that saw the same stream."""
        self._spectral(self._framer.flush_spectra())
        nb = len(BAND_EDGES_HZ)
        table = np.concatenate(self._rows) if self._rows else np.zeros((0, nb + N_FEATURE_COLS))
        live = table[:, nb + COL_SILENT] == 0.0
        spectral = _spectral_stats(table, live, nb)
        stereo = self._stereo_stats()
        onsets, perc = self._temporal_stats(table, nb)
        duration = self.samples / self.sample_rate if self.sample_rate else 0.0
        tempo = self._tempo.result() if self._tempo is not None else TempoEstimate()
        plr = (
            true_peak_dbtp - integrated_lufs
            if math.isfinite(true_peak_dbtp) and math.isfinite(integrated_lufs)
            else 0.0
        )
        return Fingerprint(
            **spectral,
            **stereo,
            plr_db=plr,
            loudness_variation_lu=_loudness_variation(short_term_lufs, integrated_lufs),
            lra_lu=float(lra_lu) if math.isfinite(lra_lu) else 0.0,
            onset_density_per_s=onsets / duration if duration > 0 else 0.0,
            silence_ratio=float(1.0 - live.mean()) if table.shape[0] else 1.0,
            percussive_ratio=perc,
            tempo_bpm=tempo.bpm,
            tempo_confidence=tempo.confidence,
            tempo_candidates=tempo.candidates,
        )

    def _stereo_stats(self) -> dict[str, float]:
        """Crest factor, stereo width and correlation from the running sums, each
        channel's mean (DC offset) taken out."""
        acc, n = self._acc, self.samples
        per = acc[DMX_CHANNELS:].reshape(self.channels, DMX_PER_CHANNEL)
        mean = per[:, DMX_SUM] / max(n, 1)
        peak = float(np.max(np.maximum(per[:, DMX_MAX] - mean, mean - per[:, DMX_MIN])))
        peak = peak if math.isfinite(peak) else 0.0
        ml, mr = mean[0], mean[1 if self.channels > 1 else 0]
        ss = acc[DMX_SS] - n * float(np.sum(mean * mean))
        ll = acc[DMX_LL] - n * ml * ml
        rr = acc[DMX_RR] - n * mr * mr
        lr = acc[DMX_LR] - n * ml * mr
        ms = max(ss, 0.0) / max(1, n * self.channels)
        # what is left of a constant (pure DC) is rounding: no crest, no image
        if ss <= 1e-9 * acc[DMX_SS]:
            ms, peak = 0.0, 0.0
        tiny = 1e-12 * (acc[DMX_LL] + acc[DMX_RR])
        crest = 10.0 * math.log10(peak * peak / ms) if ms > 0 and peak > 0 else 0.0
        energy = ll + rr
        width = (energy - 2.0 * lr) / (2.0 * energy) if energy > tiny else 0.0
        corr = lr / math.sqrt(ll * rr) if ll > tiny and rr > tiny else 1.0
        if self.channels == 1:
            width, corr = 0.0, 1.0
        return {
            "crest_db": crest,
            "stereo_width": float(width),
            "stereo_correlation": float(max(-1.0, min(1.0, corr))),
        }

    def _temporal_stats(self, table: np.ndarray, nb: int) -> tuple[int, float]:
        """Onsets picked from the spectral frames' band flux, and the percussive share."""
        if not table.shape[0]:
            return 0, 0.0
        band_power = np.ascontiguousarray(table[:, :nb])
        env, _, _ = log_flux(
            band_power,
            (self.frame_length / 4.0) ** 2,
            TEMPO_FLOOR_DB,
            ONSET_RANGE_DB,
            np.zeros(nb),
            np.zeros(1, dtype=np.int64),
        )
        onsets = 0
        top = env.max()
        if top > 0:
            # Normalised to the largest rise, but never to less than a 1 dB rise, so
            # rounding noise of a steady signal is not blown up into onsets.
            env = env / max(top, ONSET_MIN_RISE_DB)
            # librosa.onset.onset_detect's peak_pick defaults, in frames
            frame_rate = self.analysis_rate / (self.frame_length // 2)
            ms30 = max(1, int(round(0.03 * frame_rate)))
            ms100 = max(1, int(round(0.10 * frame_rate)))
            onsets = int(count_peaks(env, ms30, 0, ms100, ms100, 0.07, ms30))
        silent = table[:, nb + COL_SILENT].copy()
        perc = float(percussive_share(band_power, silent, PERCUSSIVE_HALF_WIDTH))
        return onsets, perc


def _spectral_stats(table: np.ndarray, live: np.ndarray, nb: int) -> dict[str, Any]:
    """Band shares and the mean and spread of centroid, rolloff, flatness and flux over
    the non-silent frames of the frame-feature table."""
    band = table[live, :nb].sum(axis=0) if table.shape[0] else np.zeros(nb)
    total = band.sum()
    shares = band / total if total > 0 else np.zeros(nb)

    def mean_std(col: int) -> tuple[float, float]:
        v = table[live, nb + col]
        v = v[np.isfinite(v)]
        if v.size == 0:
            return 0.0, 0.0
        return float(v.mean()), float(v.std())

    centroid = mean_std(COL_CENTROID)
    rolloff = mean_std(COL_ROLLOFF)
    flatness = mean_std(COL_FLATNESS)
    return {
        "band_energy": {k: float(v) for k, v in zip(BAND_EDGES_HZ, shares, strict=True)},
        "spectral_centroid_hz": centroid[0],
        "spectral_centroid_std_hz": centroid[1],
        "spectral_rolloff_hz": rolloff[0],
        "spectral_rolloff_std_hz": rolloff[1],
        "spectral_flatness": flatness[0],
        "spectral_flatness_std": flatness[1],
        "spectral_flux": mean_std(COL_FLUX)[0],
    }


def _loudness_variation(short_term_lufs: np.ndarray | None, integrated_lufs: float) -> float:
    """Standard deviation of the short-term loudness over the blocks LRA counts."""
    if short_term_lufs is None or not len(short_term_lufs) or not math.isfinite(integrated_lufs):
        return 0.0
    st = np.asarray(short_term_lufs, dtype=np.float64)
    st = st[np.isfinite(st) & (st > -70.0) & (st > integrated_lufs - 20.0)]
    return float(st.std()) if st.size else 0.0


def fingerprint(audio: np.ndarray, sample_rate: int, *, tempo: bool = True) -> Fingerprint:
    """Fingerprint of an in-memory ``(channels, n)`` array (meter included)."""
    from .audio import as_audio
    from .meter import LoudnessMeter

    x = as_audio(audio)
    meter = LoudnessMeter(sample_rate, x.shape[0])
    fp = FingerprintAnalyzer(sample_rate, x.shape[0], tempo=tempo)
    meter.process(x)
    fp.process(x)
    loud = meter.result()
    return fp.finish(
        true_peak_dbtp=loud.true_peak_dbtp,
        integrated_lufs=loud.integrated_lufs,
        lra_lu=loud.lra_lu,
        short_term_lufs=meter.short_term_lufs(),
    )


def estimate_tempo(audio: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """Tempo of ``audio`` (``(channels, n)`` or mono 1-D): ``(bpm, confidence)``.

    Only the tempo path runs (downmix, decimation if needed, onset envelope,
    autocorrelation); no spectral fingerprint, no meter. :func:`tempo_estimate` also
    gives the runners-up.
    """
    est = tempo_estimate(audio, sample_rate)
    return est.bpm, est.confidence


def tempo_estimate(
    audio: np.ndarray, sample_rate: int, *, params: np.ndarray | None = None
) -> TempoEstimate:
    """:func:`estimate_tempo` with the runners-up; ``params`` as in
    :meth:`TempoTracker.result`."""
    return tempo_tracker(audio, sample_rate).result(params)


def tempo_tracker(audio: np.ndarray, sample_rate: int) -> TempoTracker:
    """A :class:`TempoTracker` fed with the whole of ``audio``, through the front end
    of :class:`FingerprintAnalyzer` (the downmix without its DC offset,
    :data:`DC_BLOCK_HZ`, then the decimation), so the tempo API answers as ``analyze``
    does: it read the plain mean, and an LMMS song close between two levels got 148
    BPM here and 98.7 from ``analyze``.

    The downmix, decimation and onset envelope go through in blocks of
    :data:`~auralis_batch.audio.BLOCK_FRAMES`, as ``analyze`` reads a file: every stage
    carries its state across blocks, so the result is that of one piece, bit for bit,
    and the downmix no longer goes through memory as whole-track arrays (85 MB for 4
    minutes, several times over: the tempo API took 130 ms where the tempo work inside
    ``analyze`` takes 62, bench/test_bench_tempo.py). ``as_audio`` still validates the
    whole array first (a float32 one is converted to float64 then).
    """
    from .audio import BLOCK_FRAMES, as_audio

    x = as_audio(audio)
    sr = int(sample_rate)
    dc_coef = math.exp(-2.0 * math.pi * DC_BLOCK_HZ / sr)
    acc = downmix_state(x.shape[0])
    factor = _decimation(sr)
    decimator = _Decimator(sr, factor) if factor > 1 else None
    tracker = TempoTracker(sr / factor)
    for start in range(0, x.shape[1], BLOCK_FRAMES):
        block = np.ascontiguousarray(x[:, start : start + BLOCK_FRAMES], dtype=np.float64)
        mono, acc = downmix_stats(block, acc, dc_coef)
        tracker.push(mono if decimator is None else decimator.push(mono))
    return tracker
