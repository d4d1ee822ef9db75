"""Reference matching: a track's long-term spectrum, and the EQ that takes one track's
tone to another's.

**Long-term spectrum.** :class:`LongTermSpectrum` is fed the blocks of the analysis
pass and gives the long-term average power spectrum of the mid channel (the mean of
the front pair; a mono track is its own mid) in the 31 third-octave bands of IEC
61260 from 20 Hz to 20 kHz (base-10 centres ``1000 * 10 ** (k / 10)``), as mean power
per FFT bin in dB re a full-scale sine's peak bin. Frames of 8192 samples at 44.1 and
48 kHz (a power of two near 186 ms at any rate, so about 5.4 Hz per bin and at least
one bin in the 25 Hz band), periodic Hann, one after the other: the frames of Welch's
method without its 50 % overlap, which reads within 0.1-0.2 dB RMS of it per band on
real music at half the cost. The record keeps the 31 levels (``spectrum_db``), so a
cached reference or target costs nothing to match again.

**Matching EQ.** :func:`matching_eq` turns two such spectra into a bank of RBJ
biquads that the ordinary :class:`~auralis_batch.eq.Equalizer` runs: a low shelf at
25 Hz, 28 peaking sections at the third-octave centres from 31.5 Hz to 16 kHz
(Q 4.32, one third of an octave wide) and a high shelf at 17 kHz. The wanted change
per band is the reference's level minus the target's, smoothed over an octave
(:data:`SMOOTHING_OCTAVES`: a third-octave difference of two pieces of music holds
their notes as well as their tone), scaled by ``strength``, within these limits:

* at most :data:`MAX_BOOST_DB` of boost and :data:`MAX_CUT_DB` of cut, measured from
  the centre of the curve that keeps the most of it within those limits (the overall
  level does not matter: the gain stage sets the loudness afterwards);
* no boost where the target has no energy: a band at the noise floor of 16-bit audio
  (:data:`NOISE_FLOOR_DB`) or :data:`DYNAMIC_RANGE_DB` below the target's loudest band
  gets none, and a band just above it gets only what lifts it by its height above the
  floor (a boost there would raise hiss and codec noise, not music); such a band is
  left out of the smoothing, and a band where the *reference* has nothing (a codec's
  empty top octave) is left as it is;
* the bands outside 31.5 Hz - 16 kHz (20, 25 Hz and 20 kHz) get at most
  :data:`EDGE_MAX_BOOST_DB` of boost: a sub-bass boost eats headroom that the
  limiter then takes from the whole mix, and the top band is mostly above hearing.

The section gains are fitted to that curve by damped Gauss-Newton steps on the
band-mean response (what a third-octave analysis of the result would read), so
neighbouring sections share out a change they cannot make alone.

Why biquads and not an FIR. A third of an octave at 31.5 Hz is 7 Hz wide: an FIR
that resolves it has about 8192 taps, and its FFT convolution (overlap-add, numpy's
pocketfft, which a kernel cannot beat) costs about 1.6 s per 4 minutes of stereo on
this project's machine, against about 0.3 s for this bank of 30 sections in the
biquad kernel; fitted to the band means, the bank follows the smoothed curve within
0.3 dB RMS on average (0.8 dB at most) over the corpus's 20 pairs, and the masters of
bench/test_bench_matchering.py come within 2.3 dB RMS of their references' octave-band
balance (matchering 4.0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError
from .versions import SPARSE_SPECTRUM_KEY, SPECTRUM_KEY, THIRD_OCTAVE_HZ

#: Their nominal names, as an analyser's display shows them.
BAND_NAMES: tuple[str, ...] = (
    *(f"{f} Hz" for f in "20 25 31.5 40 50 63 80 100 125 160 200 250 315 400 500 630 800".split()),
    *(f"{f} kHz" for f in "1 1.25 1.6 2 2.5 3.15 4 5 6.3 8 10 12.5 16 20".split()),
)
#: Bands whose matching is not limited as an extreme: 31.5 Hz to 16 kHz.
CORE_BANDS = slice(2, 30)
#: Long-term spectrum frames last about this long (a power of two in samples).
FRAME_SECONDS = 0.186
#: Frames transformed per FFT call, on absolute frame numbers (so block cuts never
#: change the summation order: a stream in blocks gives the levels of one piece).
CHUNK_FRAMES = 16
#: A spectrum for a report's plot alone analyses one chunk in this many (``every``).
#: The master's is taken the way its source's was, on the same chunks (the master is
#: sample-aligned with its source): a plot of two spectra over different parts of the
#: music shows differences that are not in the file.
SPARSE_EVERY = 4

#: The wanted change is the difference of the two spectra smoothed over this many
#: octaves (the full width at half height of a Gaussian weight on a log-frequency
#: axis, a locally linear fit under it). A third-octave difference of two pieces of
#: music holds their notes as well as their tone: a bass line in E against one in G
#: reads as +-10 dB between neighbouring bands, and matching it band by band cut
#: and boosted neighbours by up to 30 and 18 dB, a comb that sounds like neither
#: track (an engineer's check). Octave-wide smoothing keeps the balance (a tilt, a
#: bass or presence region) and leaves the notes alone.
SMOOTHING_OCTAVES = 1.0
#: Most boost and cut of the smoothed curve (dB, from its centre): a match beyond
#: these is a different mix, not a different master.
MAX_BOOST_DB = 9.0
MAX_CUT_DB = 12.0
EDGE_MAX_BOOST_DB = 4.0
#: Mean power per bin, dB re a full-scale sine's peak bin, of a band that holds no
#: music: 16-bit TPDF dither reads about -132 dB here.
NOISE_FLOOR_DB = -125.0
#: A band this far below the target's loudest band counts as empty too.
DYNAMIC_RANGE_DB = 90.0
#: Q of a third-octave peaking section (bandwidth 1/3 octave).
THIRD_OCTAVE_Q = 4.32
LOW_SHELF_HZ = 25.0
HIGH_SHELF_HZ = 17000.0
SHELF_Q = 0.707
_FIT_ITERATIONS = 8
_FIT_DAMPING = 0.003  # Tikhonov weight on the section gains: no needless see-saws
_EDGE_WEIGHT = 0.3  # weight of the bands outside CORE_BANDS in the fit
_GRID_PER_BAND = 24  # evaluation points per third-octave band


def spectrum_every(fingerprinted: bool) -> int:
    """``every`` of a track's long-term spectrum: every chunk when its record has a
    fingerprint (the record may serve a reference match), else :data:`SPARSE_EVERY`.
    The master's spectrum is taken with its source's (``record["fingerprint"]``)."""
    return 1 if fingerprinted else SPARSE_EVERY


def _record_levels(value: object) -> list[float | None] | None:
    """``value`` if it is a spectrum a record may hold (one number or None per band of
    :data:`THIRD_OCTAVE_HZ`), else None: a cache row is read, not trusted."""
    if not isinstance(value, list) or len(value) != len(THIRD_OCTAVE_HZ):
        return None
    for v in value:
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
        ):
            return None
    return value


def master_spectrum_every(record: dict) -> int:
    """``every`` of a master's spectrum for the report: :data:`SPARSE_EVERY` when its
    source's record holds the spectrum over those chunks (``SPARSE_SPECTRUM_KEY``),
    else the one its source's spectrum was taken with (:func:`spectrum_every`)."""
    if _record_levels(record.get(SPARSE_SPECTRUM_KEY)) is not None:
        return SPARSE_EVERY
    return spectrum_every(bool(record.get("fingerprint")))


def source_plot_spectrum(record: dict) -> list[float | None] | None:
    """The source's spectrum to plot beside its master's, taken on the same chunks
    (:func:`master_spectrum_every`)."""
    sparse = _record_levels(record.get(SPARSE_SPECTRUM_KEY))
    return sparse if sparse is not None else record.get(SPECTRUM_KEY)


def frame_length(sample_rate: int) -> int:
    """FFT frame of the long-term spectrum: the power of two nearest FRAME_SECONDS."""
    return 1 << round(math.log2(sample_rate * FRAME_SECONDS))


def _band_edges_hz() -> np.ndarray:
    c = np.asarray(THIRD_OCTAVE_HZ)
    return np.stack([c * 10.0**-0.05, c * 10.0**0.05], axis=1)


class LongTermSpectrum:
    """Long-term average spectrum of the mid channel of a stream, in third octaves.

    Parameters
    ----------
    sample_rate : int, Hz
    channels : int; the mid is the mean of channels 0 and 1 (channel 0 alone for mono)
    every : int >= 1; analyse one chunk of frames in ``every`` (1: all of them)
    subset_every : int >= 1, optional; with ``every=1``, also add up the chunks a
        spectrum with ``every=subset_every`` would analyse (:meth:`subset_levels_db`):
        the same FFTs, a second sum. A master's spectrum for the report is then taken
        sparsely, and compared with this subset of its source's, on the same chunks.
    """

    def __init__(
        self, sample_rate: int, channels: int, *, every: int = 1, subset_every: int | None = None
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        # Analyse one chunk of CHUNK_FRAMES frames in ``every`` (a report's plot does
        # not need them all; the reference match uses every one).
        self.every = max(int(every), 1)
        self.subset_every = max(int(subset_every), 1) if subset_every and self.every == 1 else None
        self._chunks_seen = 0
        self.n = frame_length(self.sample_rate)
        # Frames are transformed in float32 (numpy's FFT keeps it: a third faster than
        # float64); levels are given to 0.01 dB, far above its rounding. Each chunk's
        # power is added up in float64.
        self._window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(self.n) / self.n)).astype(
            np.float32
        )
        self._pending = np.empty(CHUNK_FRAMES * self.n, dtype=np.float32)
        self._fill = 0
        self._power = np.zeros(self.n // 2 + 1)
        self.frames = 0
        self._sub_power = np.zeros(self.n // 2 + 1)
        self._sub_frames = 0
        self._finished = False

    def process(self, block: np.ndarray, *, mid: np.ndarray | None = None) -> None:
        """Add a ``(channels, n)`` float64 block; ``mid`` [shape=(n,)]: its mid channel
        when the caller has it already, so it is not computed twice (the fingerprint's
        downmix of one or two channels: the same but for its DC blocker, 2 Hz, which
        moves the 20-31.5 Hz bands by at most a few hundredths of a dB).

        Raises
        ------
        RuntimeError
            The levels were read already: the stream has ended.
        """
        if self._finished:
            raise RuntimeError("LongTermSpectrum: the levels were read, the stream has ended")
        k, pos = block.shape[1], 0
        while pos < k:
            take = min(k - pos, self._pending.size - self._fill)
            dst = self._pending[self._fill : self._fill + take]
            if mid is not None:
                dst[:] = mid[pos : pos + take]
            elif self.channels > 1:
                np.add(block[0, pos : pos + take], block[1, pos : pos + take], out=dst)
                dst *= 0.5
            else:
                dst[:] = block[0, pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == self._pending.size:
                self._chunks_seen += 1
                index = self._chunks_seen - 1
                if index % self.every == 0:
                    subset = self.subset_every is not None and index % self.subset_every == 0
                    self._chunk(CHUNK_FRAMES, subset=subset)
                else:
                    self._fill = 0

    def _chunk(self, count: int, *, subset: bool) -> None:
        frames = self._pending[: count * self.n].reshape(count, self.n) * self._window
        spec = np.fft.rfft(frames, axis=1)
        power = (spec.real**2 + spec.imag**2).sum(axis=0, dtype=np.float64)
        self._power += power
        self.frames += count
        if subset:
            self._sub_power += power
            self._sub_frames += count
        self._fill = 0

    def _finish(self) -> None:
        """The last, partial chunk: its whole frames (a sparse spectrum takes them
        whatever the chunk's number, and so does the subset)."""
        if self._finished:
            return
        self._finished = True
        if self._fill >= self.n or (self.frames == 0 and self._fill):
            whole = self._fill // self.n
            if whole == 0:  # shorter than one frame: zero-pad it
                self._pending[self._fill : self.n] = 0.0
                whole = 1
            self._chunk(whole, subset=self.subset_every is not None)
        self._fill = 0

    def levels_db(self) -> list[float | None]:
        """Mean power per bin in each band of :data:`THIRD_OCTAVE_HZ`, dB re a
        full-scale sine's peak bin, rounded to 0.01; ``None`` above the Nyquist
        frequency and for silence. A stream shorter than one frame is zero-padded;
        otherwise a last partial frame is left out, as Welch's method does. The
        stream ends here: nothing more may be processed."""
        self._finish()
        return self._levels(self._power, self.frames)

    def subset_levels_db(self) -> list[float | None] | None:
        """:meth:`levels_db` of the chunks a spectrum with ``every=subset_every``
        analyses (bit for bit, on the same samples); None without ``subset_every``."""
        if self.subset_every is None:
            return None
        self._finish()
        return self._levels(self._sub_power, self._sub_frames)

    def _levels(self, total: np.ndarray, frames: int) -> list[float | None]:
        if frames == 0:
            return [None] * len(THIRD_OCTAVE_HZ)
        scale = frames * (float(self._window.sum(dtype=np.float64)) / 2.0) ** 2
        power = total / scale
        freqs = np.fft.rfftfreq(self.n, 1.0 / self.sample_rate)
        nyquist = 0.5 * self.sample_rate
        out: list[float | None] = []
        for (lo, hi), centre in zip(_band_edges_hz(), THIRD_OCTAVE_HZ, strict=True):
            if hi > nyquist:
                out.append(None)
                continue
            inside = (freqs >= lo) & (freqs < hi)
            if inside.any():
                p = float(power[inside].mean())
            else:  # a band narrower than a bin (25 Hz at 96 kHz): the bins around it
                p = float(np.interp(centre, freqs, power))
            out.append(round(10.0 * math.log10(p), 2) if p > 0.0 else None)
        if all(v is None for v in out):
            return [None] * len(THIRD_OCTAVE_HZ)
        return out


def spectrum_of(record: dict | None) -> np.ndarray | None:
    """The record's long-term spectrum as float64 dB (NaN where undefined), or None."""
    levels = _record_levels((record or {}).get(SPECTRUM_KEY))
    if levels is None:
        return None
    out = np.array([np.nan if v is None else float(v) for v in levels])
    return out if np.isfinite(out).any() else None


# --------------------------------------------------------------------------- the EQ
@dataclass(frozen=True)
class MatchingEQ:
    """A matching EQ and why it is what it is.

    Attributes
    ----------
    sections : tuple of (kind, frequency_hz, gain_db, q), in the order they run
    wanted_db : float per band of THIRD_OCTAVE_HZ: the change the limits allow
        (0 where either spectrum is undefined)
    fitted_db : float per band: the change the sections make (band means)
    loudness_change_db : float, the EQ's change of the target's K-weighted power,
        estimated from its spectrum (the compressor threshold follows it)
    notes : tuple of str, where a limit stopped the match
    """

    sections: tuple[tuple[str, float, float, float], ...]
    wanted_db: tuple[float, ...]
    fitted_db: tuple[float, ...]
    loudness_change_db: float
    notes: tuple[str, ...]


def _section_layout() -> list[tuple[str, float, float]]:
    core = [("peaking", f, THIRD_OCTAVE_Q) for f in THIRD_OCTAVE_HZ[CORE_BANDS]]
    return [("low_shelf", LOW_SHELF_HZ, SHELF_Q), *core, ("high_shelf", HIGH_SHELF_HZ, SHELF_Q)]


def _cookbook(kind: str, f0: np.ndarray, gain_db: np.ndarray, q: float, fs: float):
    """RBJ cookbook ``(b, a)`` rows for sections of one kind (vectorised; the same
    formulas as :func:`.filters.rbj_biquad`)."""
    a_lin = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0 / fs
    cw = np.cos(w0)
    alpha = np.sin(w0) / (2.0 * q)
    if kind == "peaking":
        b = np.stack([1 + alpha * a_lin, -2 * cw, 1 - alpha * a_lin], -1)
        a = np.stack([1 + alpha / a_lin, -2 * cw, 1 - alpha / a_lin], -1)
        return b, a
    sq = 2.0 * np.sqrt(a_lin) * alpha
    s = 1.0 if kind == "low_shelf" else -1.0  # high shelf: the low shelf with cw -> -cw
    b = np.stack(
        [
            a_lin * ((a_lin + 1) - s * (a_lin - 1) * cw + sq),
            s * 2 * a_lin * ((a_lin - 1) - s * (a_lin + 1) * cw),
            a_lin * ((a_lin + 1) - s * (a_lin - 1) * cw - sq),
        ],
        -1,
    )
    a = np.stack(
        [
            (a_lin + 1) + s * (a_lin - 1) * cw + sq,
            -s * 2 * ((a_lin - 1) + s * (a_lin + 1) * cw),
            (a_lin + 1) + s * (a_lin - 1) * cw - sq,
        ],
        -1,
    )
    return b, a


class _Bank:
    """Magnitude responses of the section layout on a log grid, and their band means."""

    def __init__(self, sample_rate: float) -> None:
        self.layout = _section_layout()
        self.fs = float(sample_rate)
        nyq = 0.5 * self.fs
        edges = _band_edges_hz()
        n_bands = edges.shape[0]
        lo, hi = edges[0, 0], edges[-1, 1]
        grid = np.geomspace(lo, hi, n_bands * _GRID_PER_BAND + 1)
        band = np.minimum((np.log10(grid / lo) * 10.0).astype(np.int64), n_bands - 1)
        keep = grid < 0.98 * nyq
        self.grid, self.band = grid[keep], band[keep]
        self.n_bands = n_bands
        counts = np.bincount(self.band, minlength=n_bands).astype(np.float64)
        self._mean = np.zeros((self.grid.size, n_bands))
        self._mean[np.arange(self.grid.size), self.band] = 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            self._mean /= counts  # a band with no point: 0/0 -> NaN, undefined
        z = np.exp(-1j * 2.0 * np.pi * self.grid / self.fs)
        self._z = np.stack([np.ones_like(z), z, z * z], -1)

    def section_db(self, gains_db: np.ndarray) -> np.ndarray:
        """dB response of each section, shape ``(sections, grid)``."""
        rows = []
        for (kind, f0, q), g in zip(self.layout, gains_db, strict=True):
            f = min(f0, 0.45 * self.fs)  # as eq.design_eq keeps bands below 0.45 fs
            b, a = _cookbook(kind, np.array(f), np.array(g), q, self.fs)
            h = (self._z @ b) / (self._z @ a)
            rows.append(20.0 * np.log10(np.abs(h)))
        return np.array(rows)

    def band_means_db(self, response_db: np.ndarray) -> np.ndarray:
        """Band-mean power (dB) of responses ``(..., grid)``: ``(..., bands)``; NaN for
        a band with no grid point (above 0.98 of the Nyquist frequency)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return 10.0 * np.log10((10.0 ** (response_db / 10.0)) @ self._mean)


def _holds_music(levels_db: np.ndarray) -> np.ndarray:
    """Bands above the noise floor and within DYNAMIC_RANGE_DB of the loudest band."""
    with np.errstate(invalid="ignore"):
        top = np.nanmax(levels_db) if np.isfinite(levels_db).any() else np.nan
        return (levels_db > NOISE_FLOOR_DB) & (levels_db > top - DYNAMIC_RANGE_DB)


def band_ranges(indices: Sequence[int]) -> str:
    """Bands of :data:`BAND_NAMES` by index, runs of neighbours as ranges: ``[4, 5, 6,
    7, 24, 25, 26]`` -> ``"50-100 Hz, 5-8 kHz"`` (a list of ten band names made a
    note no one read)."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    out = []
    for run in runs:
        first, last = BAND_NAMES[run[0]], BAND_NAMES[run[-1]]
        if len(run) == 1:
            out.append(first)
        elif first.split()[1] == last.split()[1]:  # same unit: "50-100 Hz"
            out.append(f"{first.split()[0]}-{last}")
        else:
            out.append(f"{first}-{last}")
    return ", ".join(out)


def _limits(target_db: np.ndarray, diff_db: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-band most boost and most cut (dB, relative to the curve's centre)."""
    notes: list[str] = []
    top = np.nanmax(target_db)
    height = np.minimum(target_db - NOISE_FLOOR_DB, target_db - (top - DYNAMIC_RANGE_DB))
    boost = np.clip(np.nan_to_num(height, nan=0.0), 0.0, MAX_BOOST_DB)
    edges = np.ones(boost.shape, dtype=bool)
    edges[CORE_BANDS] = False
    boost[edges] = np.minimum(boost[edges], EDGE_MAX_BOOST_DB)
    cut = np.full(boost.shape, MAX_CUT_DB)
    empty = [
        i
        for i in range(boost.size)
        if not edges[i] and boost[i] < MAX_BOOST_DB and np.isfinite(diff_db[i])
    ]
    if empty:
        notes.append(
            f"little or no energy in the target at {band_ranges(empty)}: boost limited there"
        )
    return boost, cut, notes


def smoothed_db(
    diff_db: np.ndarray, *, octaves: float = SMOOTHING_OCTAVES, use: np.ndarray | None = None
) -> np.ndarray:
    """``diff_db`` (per band of THIRD_OCTAVE_HZ, NaN where undefined) smoothed over
    ``octaves``: at each band, a straight line fitted by weighted least squares to
    the defined bands, the weights a Gaussian of log frequency whose full width at
    half height is ``octaves`` (a LOWESS step without its robustness passes). A
    straight line, so a constant tilt in dB per octave comes through unchanged.
    ``use`` (bool per band, optional): fit the lines to these bands only, and give
    the other defined bands the value of the line there.

    Near either end of the defined bands (closer than 1.5 standard deviations of the
    Gaussian) the window is one-sided and its line follows whatever is there: a
    difference alternating by 10 dB from band to band read 3 dB high at 16 kHz. There
    the line of the nearest band with a full window is extended instead. NaN where
    undefined."""
    x = np.arange(diff_db.size, dtype=np.float64) / 3.0  # octaves
    defined = np.isfinite(diff_db)
    ok = defined if use is None else defined & use
    out = np.full(diff_db.shape, np.nan)
    if octaves <= 0.0:
        return np.where(defined, diff_db, np.nan)
    if ok.sum() < 2:  # no line to fit: one level, or none to go by
        return np.where(defined, diff_db[ok][0] if ok.any() else 0.0, np.nan)
    sigma = octaves / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    xs, ys = x[ok], diff_db[ok]

    def line(at: float) -> tuple[float, float]:
        w = np.exp(-0.5 * ((xs - at) / sigma) ** 2)
        sw = w.sum()
        mx, my = (w @ xs) / sw, (w @ ys) / sw
        sxx = w @ (xs - mx) ** 2
        slope = (w @ ((xs - mx) * (ys - my))) / sxx if sxx > 1e-12 * sw else 0.0
        return my - slope * mx, slope

    margin = 1.5 * sigma
    lo, hi = xs[0] + margin, xs[-1] - margin
    for i in np.flatnonzero(defined):
        at = min(max(x[i], lo), hi) if lo <= hi else x[i]
        intercept, slope = line(at)
        out[i] = intercept + slope * x[i]
    return out


def _centre(diff_db: np.ndarray, boost: np.ndarray, cut: np.ndarray) -> float:
    """The level the curve is measured from: the one that keeps the most of it within
    the limits, nearest the mean of the core bands when several do. Bands whose boost
    is held back (nothing there to boost) do not pull it down: their boost is not made
    whatever the centre."""
    core = np.isfinite(diff_db)
    core[:2] = core[30:] = False
    d = diff_db[core]
    free = boost[core] >= MAX_BOOST_DB
    lo = float(np.max(d[free] - MAX_BOOST_DB)) if free.any() else -math.inf
    hi = float(np.min(d + cut[core]))  # any higher centre would need more cut
    mean = float(d.mean())
    if lo <= hi:
        return min(max(mean, lo), hi)
    return 0.5 * (lo + hi)


def matching_eq(
    target_db: Sequence[float] | np.ndarray,
    reference_db: Sequence[float] | np.ndarray,
    *,
    strength: float = 1.0,
    sample_rate: float = 44100.0,
) -> MatchingEQ:
    """The EQ that takes a track with long-term spectrum ``target_db`` to the tone of
    one with ``reference_db`` (both per band of :data:`THIRD_OCTAVE_HZ`, NaN where
    undefined), ``strength`` (0..1) of the way.

    Parameters
    ----------
    target_db, reference_db : float [shape=(31,)], dB (:class:`LongTermSpectrum`)
    strength : float, 0..1, the share of the correction applied
    sample_rate : float, Hz, of the track the EQ will run on

    Returns
    -------
    MatchingEQ

    Raises
    ------
    ParameterError
        ``strength`` is not a number between 0 and 1.
    """
    if not 0.0 <= strength <= 1.0:  # NaN fails too
        raise ParameterError(f"strength must be between 0 and 1, got {strength!r}")
    t = np.asarray(target_db, dtype=np.float64)
    r = np.asarray(reference_db, dtype=np.float64)
    defined = np.isfinite(r - t)
    # A band where either track has nothing (at the noise floor, or far below its
    # loudest band: an MP3's empty top octave) reads a difference of 60-90 dB that
    # says nothing of the tone; smoothed in, it moved its neighbours by 20 dB and
    # more. One where the track has nothing is read off the lines of the bands around
    # it (and gets no boost: _limits); one where the reference has nothing is left as
    # it is: extended into a low-passed reference's empty top, the line of its
    # roll-off cut the track's top octave by 12 dB (a review).
    music_r = _holds_music(r)
    diff = smoothed_db(r - t, use=_holds_music(t) & music_r)
    silent_ref = defined & ~music_r
    diff[silent_ref] = np.nan
    boost, cut, notes = _limits(t, diff)
    if silent_ref[CORE_BANDS].any():
        where = band_ranges(np.flatnonzero(silent_ref[CORE_BANDS]) + CORE_BANDS.start)
        notes.append(f"nothing in the reference at {where} (a codec's cut-off?): left as it is")
    bank = _Bank(sample_rate)
    matched = defined & ~silent_ref
    if not matched[CORE_BANDS].any() or strength <= 0.0:
        zeros = (0.0,) * t.size
        sections = tuple((k, f, 0.0, q) for k, f, q in bank.layout)
        return MatchingEQ(sections, zeros, zeros, 0.0, ())
    centre = _centre(diff, boost, cut)
    wanted = np.where(matched, np.clip(diff - centre, -cut, boost), 0.0) * float(strength)
    clipped = [
        i
        for i in range(2, 30)
        if matched[i] and abs(diff[i] - centre) * strength > abs(wanted[i]) + 0.5
    ]
    if clipped:
        notes.append(
            f"tone not fully matched at {band_ranges(clipped)} (limits +{MAX_BOOST_DB:g}/"
            f"-{MAX_CUT_DB:g} dB per band, less where the target is near silent)"
        )
    gains, fitted = _fit(bank, wanted, defined)
    loud = _loudness_change_db(bank, t, gains)
    sections = tuple(
        (k, f, round(float(g), 2), q) for (k, f, q), g in zip(bank.layout, gains, strict=True)
    )
    return MatchingEQ(
        sections,
        tuple(round(float(x), 2) for x in wanted),
        tuple(round(float(x), 2) for x in np.nan_to_num(fitted)),
        loud,
        tuple(notes),
    )


def _loudness_change_db(bank: _Bank, target_db: np.ndarray, gains: np.ndarray) -> float:
    """The EQ's change of the target's K-weighted power, dB: each band's power is its
    level (a mean per FFT bin) times its width (a third of an octave: proportional to
    its centre), weighed and changed by the K-weighting (BS.1770-4's two sections at
    this rate) and the sections' response averaged over the band's grid points.

    Weighed per bin, the top octaves counted a hundredth of their power, and with an
    approximate K-weighting at band centres an EQ that lifted them changed the
    loudness by up to 9 LU that its gain called neutral (a newcomer's try:
    "loudness-neutral (-0.7 dB overall)" on a match that added 4 LU)."""
    from .filters import k_weighting_sos  # here: filters loads Numba, which a finished
    # re-run (this module is imported through settings) must not pay for

    k_sos = k_weighting_sos(bank.fs)
    k_db = sum(20.0 * np.log10(np.abs((bank._z @ row[:3]) / (bank._z @ row[3:]))) for row in k_sos)
    eq_db = bank.section_db(gains).sum(axis=0)
    k_band = np.nan_to_num(bank.band_means_db(k_db), nan=-300.0)
    after = np.nan_to_num(bank.band_means_db(k_db + eq_db), nan=-300.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        level = 10.0 ** (np.nan_to_num(target_db, nan=-300.0) / 10.0) * np.asarray(THIRD_OCTAVE_HZ)
        before_power = np.sum(level * 10.0 ** (k_band / 10.0))
        after_power = np.sum(level * 10.0 ** (after / 10.0))
        change = float(10.0 * np.log10(after_power / before_power))
    # levels out of any real range (inf, or beyond +-3000 dB) overflow the powers: no
    # estimate, so no compensation (a NaN was clamped to +40 dB of EQ gain: a review)
    return change if math.isfinite(change) else 0.0


def _fit(bank: _Bank, wanted: np.ndarray, defined: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Section gains whose band means follow ``wanted``: damped Gauss-Newton on the
    band-mean response; returns ``(gains, band means they give)``."""
    n_sec = len(bank.layout)
    centres = np.array([f for _, f, _ in bank.layout])
    band_hz = np.asarray(THIRD_OCTAVE_HZ)
    gains = np.interp(np.log(centres), np.log(band_hz), wanted)
    weight = np.where(defined, 1.0, 0.0)
    weight[:2] *= _EDGE_WEIGHT
    weight[30:] *= _EDGE_WEIGHT
    valid = np.isfinite(bank.band_means_db(np.zeros(bank.grid.size)))
    weight = np.where(valid, weight, 0.0)
    eps = 0.1
    lo, hi = -MAX_CUT_DB, MAX_BOOST_DB
    damp = math.sqrt(_FIT_DAMPING)
    # A section whose own band is not fitted stays at 0 dB: above a low rate's
    # Nyquist frequency the sections all run at 0.45 fs, and free, the eight of them
    # at 8 kHz added 4.8 dB at 3.6 kHz to the top band's own section.
    free = weight[np.minimum(np.arange(n_sec) + 1, 29)] > 0.0
    gains = np.where(free, gains, 0.0)
    for _ in range(_FIT_ITERATIONS):
        each = bank.section_db(gains)
        total = each.sum(axis=0)
        now = bank.band_means_db(total)
        stepped = bank.section_db(gains + eps)
        trial = total[np.newaxis, :] - each + stepped  # one section moved at a time
        jac = (bank.band_means_db(trial) - now[np.newaxis, :]).T / eps  # (bands, sections)
        # a band above the grid (over 0.98 of Nyquist: the top ones at 22.05 kHz and
        # below) has NaN rows; a weight of 0 kept them NaN, and the solver failed
        # every track of such a rate ("SVD did not converge": a review)
        jac = np.where(valid[:, np.newaxis], jac, 0.0)
        resid = np.where(valid, wanted - now, 0.0)
        a = np.vstack([jac * weight[:, np.newaxis], damp * np.eye(n_sec)])
        b = np.concatenate([resid * weight, -damp * gains])
        step = np.linalg.lstsq(a[:, free], b, rcond=None)[0]
        gains[free] = np.clip(gains[free] + step, lo, hi)
    fitted = bank.band_means_db(bank.section_db(gains).sum(axis=0))
    return gains, np.where(valid, fitted, np.nan)
