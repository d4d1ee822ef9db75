"""Reference matching: the long-term spectrum against scipy's Welch periodogram, the
matching EQ's fit, limits and strength, and the filter bank it makes, streamed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import signal

from auralis_batch.analysis import analyze_array
from auralis_batch.eq import Equalizer, design_eq
from auralis_batch.match import (
    CORE_BANDS,
    EDGE_MAX_BOOST_DB,
    MAX_BOOST_DB,
    MAX_CUT_DB,
    NOISE_FLOOR_DB,
    SMOOTHING_OCTAVES,
    SPECTRUM_KEY,
    THIRD_OCTAVE_HZ,
    LongTermSpectrum,
    band_ranges,
    frame_length,
    matching_eq,
    spectrum_of,
)
from auralis_batch.presets import EQBand, EQSettings
from auralis_batch.recall import well_formed

from .conftest import music_like

SR = 44100
BANDS = np.asarray(THIRD_OCTAVE_HZ)


def levels(x: np.ndarray, sample_rate: int = SR, block: int | None = None) -> np.ndarray:
    spec = LongTermSpectrum(sample_rate, x.shape[0])
    step = block or x.shape[1]
    for i in range(0, x.shape[1], step):
        spec.process(np.ascontiguousarray(x[:, i : i + step]))
    return np.array([np.nan if v is None else v for v in spec.levels_db()])


def welch_levels(x: np.ndarray, sample_rate: int = SR) -> np.ndarray:
    """The same bands from scipy's Welch periodogram with our frames (Hann, no
    overlap), rescaled from density to power per bin re a full-scale sine's peak bin."""
    n = frame_length(sample_rate)
    mid = x[:2].mean(axis=0)
    f, p = signal.welch(mid, sample_rate, window="hann", nperseg=n, noverlap=0, detrend=False)
    w = signal.get_window("hann", n)
    p = p * sample_rate * np.sum(w**2) / 2.0 / (w.sum() / 2.0) ** 2  # one-sided density -> |X|^2
    out = []
    for c in THIRD_OCTAVE_HZ:
        inside = (f >= c * 10**-0.05) & (f < c * 10**0.05)
        out.append(10 * np.log10(p[inside].mean()) if inside.any() else np.nan)
    return np.array(out)


def test_long_term_spectrum_equals_welch_periodogram():
    x = music_like(seconds=6.0)
    got, expected = levels(x), welch_levels(x)
    ok = (BANDS > 30) & (BANDS * 10**0.05 <= SR / 2)
    np.testing.assert_allclose(got[ok], expected[ok], atol=0.011)  # the record rounds to 0.01


@pytest.mark.parametrize("block", [1, 1000, 3001, 65536])
def test_long_term_spectrum_streamed_equals_one_piece(block):
    x = music_like(seconds=3.0 if block > 1 else 0.5, seed=3)
    np.testing.assert_array_equal(levels(x, block=block), levels(x))


def test_white_noise_is_flat_and_mono_is_its_own_mid():
    rng = np.random.default_rng(0)
    noise = 0.1 * rng.standard_normal((1, SR * 20))
    got = levels(noise)
    core = got[CORE_BANDS][3:]  # from 63 Hz: enough bins per band to average
    assert np.ptp(core) < 1.0
    stereo = np.vstack([noise, noise])
    np.testing.assert_array_equal(levels(stereo), got)


@pytest.mark.parametrize("sample_rate", [44100, 48000, 96000])
def test_every_band_below_nyquist_is_defined(sample_rate):
    x = music_like(seconds=2.0, sample_rate=sample_rate)
    got = levels(x, sample_rate)
    below = BANDS * 10**0.05 <= sample_rate / 2
    assert np.isfinite(got[below]).all() and np.isnan(got[~below]).all()


def test_short_and_silent_streams():
    short = music_like(seconds=0.05)  # shorter than one frame: zero-padded
    assert np.isfinite(levels(short)[CORE_BANDS]).all()
    assert np.isnan(levels(np.zeros((2, SR)))).all()


def test_analysis_record_carries_the_spectrum_and_old_records_are_misses():
    rec = analyze_array(music_like(seconds=3.0), SR, tempo=False)
    assert len(rec[SPECTRUM_KEY]) == len(THIRD_OCTAVE_HZ)
    assert spectrum_of(rec) is not None
    stored = {k: v for k, v in rec.items() if k not in ("path", "seconds", "cached")}
    assert well_formed(stored)
    old = dict(stored)
    del old[SPECTRUM_KEY]
    assert not well_formed(old)  # written before the spectrum existed: analysed again


# --------------------------------------------------------------------------- the EQ
def tilt(db_per_octave: float) -> np.ndarray:
    return db_per_octave * np.log2(BANDS / 1000.0)


FLAT = -40.0 - tilt(3.0)  # a pink-ish spectrum, well above the noise floor


def test_identical_spectra_need_no_eq():
    m = matching_eq(FLAT, FLAT)
    assert max(abs(g) for _, _, g, _ in m.sections) < 0.05
    assert m.notes == ()


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.0])
def test_a_tilt_and_a_broad_bump_are_followed_and_strength_scales_them(strength):
    """Analytic: octave smoothing (a Gaussian of FWHM one octave, a local straight
    line under it) passes a tilt unchanged and widens a Gaussian bump of sigma s
    octaves to sqrt(s**2 + k**2), its height scaled by s / sqrt(s**2 + k**2)."""
    octaves = np.log2(BANDS / 250.0)
    s, k = 1.0, SMOOTHING_OCTAVES / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    change = tilt(1.5) + 3.0 * np.exp(-0.5 * (octaves / s) ** 2)
    m = matching_eq(FLAT, FLAT + change, strength=strength)
    fitted, wanted = np.array(m.fitted_db), np.array(m.wanted_db)
    wide = np.hypot(s, k)
    smooth = tilt(1.5) + 3.0 * s / wide * np.exp(-0.5 * (octaves / wide) ** 2)
    expected = strength * (smooth - np.mean(smooth[CORE_BANDS]))
    np.testing.assert_allclose(wanted[CORE_BANDS], expected[CORE_BANDS], atol=0.05)
    err = (fitted - wanted)[CORE_BANDS]
    assert np.sqrt(np.mean(err**2)) < 0.3 and np.abs(err).max() < 0.8


def test_the_notes_of_two_pieces_are_not_matched_band_by_band():
    """Neighbouring third octaves 10 dB apart, alternately up and down (two bass
    lines in different keys read so): no comb of cuts and boosts, only the tilt under
    it (a one-sided window at the ends of the range sees part of the comb as slope)."""
    comb = 10.0 * (-1.0) ** np.arange(BANDS.size)
    m = matching_eq(FLAT, FLAT + comb + tilt(1.0))
    wanted = np.array(m.wanted_db)[CORE_BANDS]
    expected = (tilt(1.0) - tilt(1.0)[CORE_BANDS].mean())[CORE_BANDS]
    np.testing.assert_allclose(wanted[2:-2], expected[2:-2], atol=0.1)
    np.testing.assert_allclose(wanted, expected, atol=1.5)
    gains = np.array([g for _, _, g, _ in m.sections])
    assert np.abs(np.diff(gains[1:-1])).max() < 2.0  # neighbouring peaking sections


@pytest.mark.parametrize("empty", ["target", "reference"])
def test_a_band_with_nothing_in_it_does_not_move_its_neighbours(empty):
    """An MP3 empty above 11 kHz against a full track: 60-90 dB of difference there
    says nothing of the tone. Smoothed in, it moved the bands below by 20 dB and more;
    they follow their own difference (a tilt), and the empty target gets no boost."""
    full, cut = FLAT + tilt(1.0), FLAT.copy()
    cut[28:] = NOISE_FLOOR_DB - 10.0  # 12.5, 16 and 20 kHz
    target, reference = (cut, full) if empty == "target" else (FLAT, cut)
    m = matching_eq(target, reference)
    wanted = np.array(m.wanted_db)
    change = tilt(1.0) if empty == "target" else np.zeros(BANDS.size)
    expected = change - np.mean(change[2:28])
    np.testing.assert_allclose(wanted[2:28] - np.mean(wanted[2:28]), expected[2:28], atol=0.3)
    if empty == "target":
        assert (wanted[28:] <= 0.0).all()
    else:  # the reference's empty top leaves the track's as it is (it cut 12 dB)
        assert (wanted[28:] == 0.0).all()
        assert any("nothing in the reference at 12.5-16 kHz" in n for n in m.notes), m.notes


def test_a_reference_with_nothing_in_the_core_bands_gives_a_flat_eq():
    """Only its 20 Hz band holds anything: no band to match, a flat EQ (no NaN from
    an empty curve's centre)."""
    reference = np.full(BANDS.size, NOISE_FLOOR_DB - 60.0)
    reference[0] = -20.0
    m = matching_eq(FLAT, reference)
    assert all(g == 0.0 for _, _, g, _ in m.sections) and m.loudness_change_db == 0.0


def test_real_pairs_get_a_smooth_eq_within_the_limits(corpus):
    """The corpus's tracks matched to one another: sections within the limits, and a
    response without a comb: the second difference of the fitted third-octave curve
    under 8 dB from 31.5 Hz to 16 kHz (band by band it was 25 dB on average and up to
    35: cuts of 30 dB beside boosts of 18, an engineer's check)."""
    import soundfile as sf

    spectra = {}
    for path in corpus:
        x, sr = sf.read(path, dtype="float64", frames=44100 * 60)
        spectra[path.name] = levels(np.ascontiguousarray(x.T), sr)
    for a, b in itertools.permutations(spectra, 2):
        m = matching_eq(spectra[a], spectra[b])
        gains = np.array([g for _, _, g, _ in m.sections])
        assert gains.min() >= -MAX_CUT_DB and gains.max() <= MAX_BOOST_DB, (a, b)
        fitted = np.array(m.fitted_db)[CORE_BANDS]
        assert np.abs(np.diff(fitted, 2)).max() < 8.0, (a, b, fitted)


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_strength_outside_0_to_1_is_refused(strength):
    from auralis_batch.errors import ParameterError

    with pytest.raises(ParameterError, match="strength must be between 0 and 1"):
        matching_eq(FLAT, FLAT, strength=strength)


def test_the_bank_makes_the_change_it_promises_on_noise():
    """Physics: third-octave levels of white noise through the bank (measured with
    scipy's Welch) change by the fitted amounts."""
    change = tilt(-2.0)
    m = matching_eq(FLAT, FLAT + change)
    bands = tuple(EQBand(f"m{i}", k, f, g, q) for i, (k, f, g, q) in enumerate(m.sections))
    sos = design_eq(EQSettings(highpass_hz=0.0, bands=bands), SR)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, SR * 30))
    y = signal.sosfilt(sos, x, axis=1)
    measured = welch_levels(y) - welch_levels(x)
    core = slice(3, 30)  # from 40 Hz: 30 s of noise averages out there
    np.testing.assert_allclose(measured[core], np.array(m.fitted_db)[core], atol=0.5)


def test_limits_boost_cut_edges_and_empty_bands():
    reference = FLAT.copy()
    reference[25] += 40.0  # 6.3 kHz: far more than any band may be boosted
    reference[10] -= 60.0  # 200 Hz: far more than any band may be cut
    reference[0] += 20.0  # 20 Hz: an extreme, limited harder
    target = FLAT.copy()
    target[28] = NOISE_FLOOR_DB - 5.0  # 12.5 kHz: nothing there to boost
    reference[28] = FLAT[28] + 10.0
    m = matching_eq(target, reference)
    wanted = np.array(m.wanted_db)
    assert wanted.max() <= MAX_BOOST_DB + 1e-9 and wanted.min() >= -MAX_CUT_DB - 1e-9
    assert wanted[0] <= EDGE_MAX_BOOST_DB + 1e-9
    assert wanted[28] <= 0.0
    assert any("12.5 kHz" in n and "no energy" in n for n in m.notes)
    # the bands around 6.3 kHz as one range, not ten names in a row
    assert any("not fully matched at 200 Hz, 5-8 kHz" in n for n in m.notes), m.notes
    assert all(-MAX_CUT_DB <= g <= MAX_BOOST_DB for _, _, g, _ in m.sections)


@pytest.mark.parametrize(
    ("indices", "expected"),
    [
        ([4, 5, 6, 7, 24, 25, 26], "50-100 Hz, 5-8 kHz"),
        ([28], "12.5 kHz"),
        ([15, 16, 17, 18], "630 Hz-1.25 kHz"),
        ([2, 4, 0], "20 Hz, 31.5 Hz, 50 Hz"),
    ],
)
def test_band_ranges_name_runs_of_neighbouring_bands(indices, expected):
    assert band_ranges(indices) == expected


def test_loudness_change_is_compensated_by_the_eq_gain():
    m = matching_eq(FLAT, FLAT + tilt(2.0))
    assert m.loudness_change_db != 0.0
    sos = design_eq(EQSettings(highpass_hz=0.0, gain_db=-3.0), SR)
    np.testing.assert_allclose(sos, [[10 ** (-3 / 20), 0, 0, 1, 0, 0]])


def test_matching_bank_streams_in_blocks_as_one_piece():
    m = matching_eq(FLAT, FLAT + tilt(1.0) + 2.0 * np.sin(BANDS / 700.0))
    bands = tuple(EQBand(f"m{i}", k, f, g, q) for i, (k, f, g, q) in enumerate(m.sections))
    settings = EQSettings(highpass_hz=20.0, bands=bands, gain_db=-m.loudness_change_db)
    x = music_like(seconds=3.0)
    whole = Equalizer(SR, 2, settings).process(x)
    eq = Equalizer(SR, 2, settings)
    assert eq.sos.shape[0] == 31  # high-pass + two shelves + 28 peaks: four groups of 8
    parts = [
        eq.process(np.ascontiguousarray(x[:, i : i + 3001])) for i in range(0, x.shape[1], 3001)
    ]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    np.testing.assert_array_equal(whole, signal.sosfilt(eq.sos, x, axis=1))  # same bits as SciPy


def test_a_sparser_long_term_spectrum_reads_the_same_steady_signal():
    from auralis_batch.match import LongTermSpectrum

    rng = np.random.default_rng(3)
    x = 0.1 * rng.standard_normal((2, 44100 * 30))
    full, sparse = LongTermSpectrum(44100, 2), LongTermSpectrum(44100, 2, every=4)
    for i in range(0, x.shape[1], 65536):
        full.process(x[:, i : i + 65536])
        sparse.process(x[:, i : i + 65536])
    assert sparse.frames < full.frames / 2
    a, b = full.levels_db(), sparse.levels_db()
    for u, v in zip(a[3:], b[3:], strict=True):  # above the lowest bands' few bins
        assert v == pytest.approx(u, abs=0.6)


@pytest.mark.parametrize("seconds", [0.1, 2.0, 26.0])
def test_the_subset_of_a_full_spectrum_is_the_sparse_spectrum_bit_for_bit(seconds):
    """A full spectrum with ``subset_every`` also gives, on the same FFTs, what a
    sparse one reads on the same stream: a master's sparse spectrum for the report is
    compared with it (shorter than a frame, than a chunk, and chunks 0-7, of which
    the subset takes 0 and 4, and a tail)."""
    from auralis_batch.match import SPARSE_EVERY, LongTermSpectrum

    x = music_like(seconds=seconds, seed=11)
    both = LongTermSpectrum(SR, 2, subset_every=SPARSE_EVERY)
    full, sparse = LongTermSpectrum(SR, 2), LongTermSpectrum(SR, 2, every=SPARSE_EVERY)
    for i in range(0, x.shape[1], 3001):
        both.process(x[:, i : i + 3001])
    for i in range(0, x.shape[1], 65536):
        full.process(x[:, i : i + 65536])
        sparse.process(x[:, i : i + 65536])
    assert both.subset_levels_db() == sparse.levels_db()
    assert both.levels_db() == full.levels_db()
    assert both.levels_db() == full.levels_db()  # the stream's end is read once
    with pytest.raises(RuntimeError, match="stream has ended"):
        both.process(x[:, :100])
    assert full.subset_levels_db() is None
    if seconds > 10:
        assert both.subset_levels_db() != both.levels_db()  # other music: other levels


@pytest.mark.parametrize(
    "bad", ["x", [0.0] * 30, [float("nan")] * 31, [True] * 31, [[1.0]] * 31, [1e400] * 31]
)
def test_a_malformed_sparse_spectrum_in_a_cache_row_is_not_plotted(bad):
    """A row is read, not trusted: a sparse spectrum that is not one number or None per
    band is ignored, and the master then takes every chunk, as its source's full
    spectrum was."""
    from auralis_batch.match import SPARSE_EVERY, master_spectrum_every, source_plot_spectrum
    from auralis_batch.versions import SPARSE_SPECTRUM_KEY

    good = [-40.0] * 30 + [None]
    rec = {
        "fingerprint": {"tempo_bpm": 120.0},
        SPECTRUM_KEY: [-30.0] * 31,
        SPARSE_SPECTRUM_KEY: good,
    }
    assert master_spectrum_every(rec) == SPARSE_EVERY and source_plot_spectrum(rec) == good
    rec[SPARSE_SPECTRUM_KEY] = bad
    assert master_spectrum_every(rec) == 1
    assert source_plot_spectrum(rec) == [-30.0] * 31
    # the full spectrum a reference match reads is checked by the same rule
    assert spectrum_of({SPECTRUM_KEY: bad}) is None  # [[1.0]] * 31 raised TypeError


def _matched_loudness_change(x: np.ndarray, reference_levels: np.ndarray, sr: int) -> float:
    """The integrated loudness the matching EQ, with its compensating gain, adds to
    ``x`` (LU; 0 is what its gain promises), measured by the BS.1770 meter."""
    from auralis_batch.meter import measure_loudness

    m = matching_eq(levels(x, sr), reference_levels, sample_rate=sr)
    bands = tuple(EQBand(f"m{i}", k, f, g, q) for i, (k, f, g, q) in enumerate(m.sections))
    settings = EQSettings(highpass_hz=20.0, bands=bands, gain_db=-m.loudness_change_db)
    y = Equalizer(sr, x.shape[0], settings).process(x)
    return measure_loudness(y, sr).integrated_lufs - measure_loudness(x, sr).integrated_lufs


@pytest.mark.parametrize(
    "shape",
    [tilt(2.0), -tilt(2.0), np.where(BANDS > 4000, 8.0, 0.0), np.where(BANDS < 200, 8.0, 0.0)],
    ids=["brighter", "darker", "treble-lift", "bass-lift"],
)
def test_the_matching_eqs_gain_keeps_the_loudness_of_steady_noise(shape):
    """Its level per band is a mean per FFT bin, so a band's power is that times its
    width: weighed per bin, a treble lift changed the loudness by several LU that the
    gain called neutral (a newcomer's try)."""
    rng = np.random.default_rng(5)
    white = np.fft.rfft(rng.standard_normal(SR * 10))
    f = np.fft.rfftfreq(SR * 10, 1 / SR)
    pink = np.fft.irfft(white / np.sqrt(np.maximum(f, 20.0)))  # -3 dB per octave
    x = np.vstack([pink, pink]) * (0.1 / pink.std())
    got = _matched_loudness_change(x, levels(x) + shape, SR)
    assert abs(got) < 0.3, got


def test_the_matching_eqs_gain_keeps_the_loudness_of_real_music(corpus):
    """Each corpus track matched to each other's tone, as its mid (the spectrum the
    match reads): the loudness stays within 1.5 LU (it moved up to 9 LU)."""
    import soundfile as sf

    mids = []
    for path in corpus[:4]:
        x, sr = sf.read(path, dtype="float64", frames=44100 * 60)
        mids.append((np.ascontiguousarray(x.mean(axis=1)[np.newaxis]), sr))
    changes = [
        _matched_loudness_change(x, levels(y, sr_y), sr)
        for i, (x, sr) in enumerate(mids)
        for j, (y, sr_y) in enumerate(mids)
        if i != j
    ]
    assert max(abs(c) for c in changes) < 1.5, changes
    assert np.median(np.abs(changes)) < 0.75, changes


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050])
def test_a_match_at_a_low_sample_rate_fits_and_keeps_the_loudness(sample_rate):
    """The bands above 0.98 of Nyquist gave NaN rows to the fit, which failed every
    track of 22.05 kHz and below with "SVD did not converge" (a review)."""
    rng = np.random.default_rng(2)
    x = 0.1 * rng.standard_normal((2, sample_rate * 6))
    got = levels(x, sample_rate)
    m = matching_eq(got, got + tilt(1.5), sample_rate=float(sample_rate))
    assert all(np.isfinite(g) for _, _, g, _ in m.sections)
    assert np.isfinite(m.loudness_change_db)
    # white noise: the octave above the last whole band (8.9-11 kHz at 22.05 kHz)
    # is in no band, so the estimate misses some of its change
    assert abs(_matched_loudness_change(x, got + tilt(1.5), sample_rate)) < 1.0


def test_a_spectrum_out_of_any_real_range_gets_no_loudness_compensation():
    """Levels that overflow the powers gave a NaN estimate, which the preset clamped
    to +40 dB of EQ gain (a review): no estimate is no compensation."""
    wild = FLAT.copy()
    wild[10] = 4000.0  # dB: 10 ** 400 overflows a float
    assert matching_eq(FLAT, FLAT + tilt(1.0)).loudness_change_db != 0.0
    assert matching_eq(wild, FLAT).loudness_change_db == 0.0
