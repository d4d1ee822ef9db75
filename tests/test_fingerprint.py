"""Fingerprint and tempo against librosa, analytic signals and known tempi."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from auralis_batch.fingerprint import (
    BAND_EDGES_HZ,
    DC_BLOCK_HZ,
    DEFAULT_TEMPO_BPM,
    TEMPO_CONFIDENCE_THRESHOLD,
    FingerprintAnalyzer,
    count_peaks,
    downmix_state,
    estimate_tempo,
    fingerprint,
    level_rise,
    percussive_share,
)
from auralis_batch.kernels.spectral import (
    COL_CENTROID,
    COL_FLATNESS,
    COL_ROLLOFF,
    DMX_CHANNELS,
    DMX_MAX,
    DMX_MIN,
    DMX_PER_CHANNEL,
    DMX_SUM,
    downmix_stats,
    frame_features,
)

from . import naive
from .conftest import import_librosa, music_like
from .signals import click_track, drum_pattern

SR = 44100
N_FFT = 2048
HOP = 1024
EXAMPLE = Path(__file__).resolve().parents[1] / "examples"


def tone(freq_hz: float, seconds: float = 4.0, *, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return amp * np.sin(2 * np.pi * freq_hz * t)[np.newaxis, :]


def _features(y: np.ndarray):
    """Our kernel and librosa on the very same magnitude frames."""
    librosa = import_librosa()

    spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP, center=False, window="hann", dtype=complex)
    mag = np.abs(spec)
    got, _, _ = frame_features(
        np.ascontiguousarray(y),
        HOP,
        np.ascontiguousarray(spec.T),
        0.0,
        np.zeros(1, dtype=np.int64),
        np.ones(1, dtype=np.int64),
        SR / N_FFT,
        0.85,
        np.zeros(mag.shape[0]),
        np.zeros(1, dtype=np.int64),
    )
    return mag, got


@pytest.mark.parametrize("kind", ["music", "noise", "chirp"])
def test_centroid_rolloff_flatness_equal_librosa_on_the_same_frames(kind):
    librosa = import_librosa()

    rng = np.random.default_rng(1)
    if kind == "music":
        y = music_like(seconds=5.0).mean(axis=0)
    elif kind == "noise":
        y = 0.1 * rng.standard_normal(5 * SR)
    else:
        t = np.arange(5 * SR) / SR
        y = 0.3 * np.sin(2 * np.pi * (100 * t + 400 * t**2))
    mag, got = _features(y)
    sr_kw = {"sr": SR, "n_fft": N_FFT}
    expected_c = librosa.feature.spectral_centroid(S=mag, **sr_kw)[0]
    expected_r = librosa.feature.spectral_rolloff(S=mag, roll_percent=0.85, **sr_kw)[0]
    expected_f = librosa.feature.spectral_flatness(S=mag)[0]
    np.testing.assert_allclose(got[:, 1 + COL_CENTROID], expected_c, rtol=1e-9)
    np.testing.assert_allclose(got[:, 1 + COL_ROLLOFF], expected_r, rtol=1e-9)
    np.testing.assert_allclose(got[:, 1 + COL_FLATNESS], expected_f, rtol=1e-6)


def test_analyzer_means_equal_librosa_means():
    librosa = import_librosa()

    x = music_like(seconds=6.0)
    got = fingerprint(x, SR, tempo=False)
    # the frames read the downmix without its DC offset (a one-pole blocker)
    pole = math.exp(-2 * math.pi * DC_BLOCK_HZ / SR)
    y = signal.lfilter([1.0, -1.0], [1.0, -pole], x.mean(axis=0))
    mag = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, center=False, window="hann"))
    c = librosa.feature.spectral_centroid(S=mag, sr=SR, n_fft=N_FFT)[0]
    r = librosa.feature.spectral_rolloff(S=mag, sr=SR, n_fft=N_FFT)[0]
    assert got.spectral_centroid_hz == pytest.approx(c.mean(), rel=1e-9)
    assert got.spectral_centroid_std_hz == pytest.approx(c.std(), rel=1e-6)
    assert got.spectral_rolloff_hz == pytest.approx(r.mean(), rel=1e-9)


@pytest.mark.parametrize("freq", [220.0, 1000.0, 5000.0])
def test_pure_tone_centroid_is_its_frequency_and_it_is_not_flat(freq):
    fp = fingerprint(tone(freq), SR, tempo=False)
    assert fp.spectral_centroid_hz == pytest.approx(freq, rel=0.03)
    assert fp.spectral_flatness < 1e-3
    assert fp.spectral_flux < 1e-3  # a steady tone does not change
    assert fp.percussive_ratio < 0.05


def test_white_noise_is_flat_and_spreads_energy_by_bandwidth():
    rng = np.random.default_rng(3)
    x = 0.1 * rng.standard_normal((2, 6 * SR))
    fp = fingerprint(x, SR, tempo=False)
    # Gaussian white noise: E[geometric mean] / mean of an exponential variable = e^-gamma
    assert fp.spectral_flatness == pytest.approx(math.exp(-np.euler_gamma), rel=0.05)
    assert fp.spectral_centroid_hz == pytest.approx(SR / 4, rel=0.02)
    # flatness is level-free, also at the loudest level a source may have (+60 dBFS)
    huge = fingerprint(x * (999.0 / np.abs(x).max()), SR, tempo=False)
    assert huge.spectral_flatness == pytest.approx(fp.spectral_flatness, rel=1e-9)
    top = min(20000.0, SR / 2)
    for name, (lo, hi) in BAND_EDGES_HZ.items():
        expected = (min(hi, top) - lo) / (top - 20.0)
        assert fp.band_energy[name] == pytest.approx(expected, abs=0.01), name


@pytest.mark.parametrize(
    ("freq", "band", "share"),
    # 46 ms frames resolve 21.5 Hz and the Hann main lobe is 4 bins wide, so a 40 Hz
    # tone leaks about a tenth of its energy over the 60 Hz edge.
    [(40.0, "sub_bass", 0.85), (150.0, "bass", 0.99), (6000.0, "presence", 0.99)],
)
def test_band_energy_of_a_tone_lands_in_its_band(freq, band, share):
    fp = fingerprint(tone(freq), SR, tempo=False)
    assert fp.band_energy[band] > share
    assert sum(fp.band_energy.values()) == pytest.approx(1.0)


def test_silence_ratio_of_a_constructed_signal():
    loud = tone(1000.0, 6.0)
    quiet = tone(1000.0, 2.0, amp=10 ** (-80 / 20))  # below -60 dBFS
    zero = np.zeros((1, 2 * SR))
    fp = fingerprint(np.concatenate([loud, zero, quiet], axis=1), SR, tempo=False)
    assert fp.silence_ratio == pytest.approx(0.4, abs=0.01)
    # silent frames stay out of the spectral statistics
    assert fp.spectral_centroid_hz == pytest.approx(1000.0, rel=0.03)


@pytest.mark.parametrize(
    ("make", "width", "corr"),
    [
        (lambda s: s[:1], 0.0, 1.0),  # mono file
        (lambda s: np.vstack([s[0], s[0]]), 0.0, 1.0),  # dual mono
        (lambda s: np.vstack([s[0], -s[0]]), 1.0, -1.0),  # out of phase
        (lambda s: s, 0.5, 0.0),  # independent noise
        # panned: S / (M + S) = 0.25^2 / (0.75^2 + 0.25^2)
        (lambda s: np.vstack([s[0], 0.5 * s[0]]), 0.1, 1.0),
    ],
)
def test_stereo_measures(make, width, corr):
    rng = np.random.default_rng(5)
    x = make(0.1 * rng.standard_normal((2, 4 * SR)))
    fp = fingerprint(x, SR, tempo=False)
    assert fp.stereo_width == pytest.approx(width, abs=0.01)
    assert fp.stereo_correlation == pytest.approx(corr, abs=0.01)


def test_crest_factor_and_plr_of_a_sine():
    fp = fingerprint(tone(997.0, amp=0.5), SR, tempo=False)
    assert fp.crest_db == pytest.approx(10 * math.log10(2), abs=0.01)  # 3.01 dB
    # mono sine at -6.02 dBFS: true peak -6.02 dBTP, loudness -6.02 - 3.01 - 0.691 + K-gain
    assert 2.0 < fp.plr_db < 5.0
    square = np.sign(tone(100.0, amp=0.5)) * 0.5
    assert fingerprint(square, SR, tempo=False).crest_db == pytest.approx(0.0, abs=0.01)


def test_temporal_traits_of_clicks_versus_a_pad():
    clicks = fingerprint(click_track(120.0, seconds=10.0), SR, tempo=False)
    pad = fingerprint(tone(220.0, 10.0) + tone(330.0, 10.0), SR, tempo=False)
    assert clicks.onset_density_per_s == pytest.approx(2.0, rel=0.1)
    assert pad.onset_density_per_s < 0.3
    assert clicks.percussive_ratio > 0.5 > 0.05 > pad.percussive_ratio


def test_loudness_variation_spread_of_short_term_loudness():
    steady = fingerprint(tone(1000.0, 12.0), SR, tempo=False)
    steps = np.concatenate([tone(1000.0, 6.0, amp=0.5), tone(1000.0, 6.0, amp=0.05)], axis=1)
    stepped = fingerprint(steps, SR, tempo=False)
    assert steady.loudness_variation_lu < 0.05
    # two 20 dB apart halves: short-term values sit mostly at the two levels -> std near 10
    assert 7.0 < stepped.loudness_variation_lu < 10.5


def test_streaming_equals_one_piece():
    x = music_like(seconds=9.0)
    whole = FingerprintAnalyzer(SR, 2)
    whole.process(x)
    parts = FingerprintAnalyzer(SR, 2)
    rng = np.random.default_rng(7)
    i = 0
    while i < x.shape[1]:
        n = int(rng.choice([1, 7, 511, 1024, 4096, 44103]))
        parts.process(x[:, i : i + n])
        i += n
    kw = {"true_peak_dbtp": -1.0, "integrated_lufs": -14.0, "lra_lu": 5.0}
    a = whole.finish(**kw).to_dict()
    b = parts.finish(**kw).to_dict()
    for k, v in a.items():
        if isinstance(v, dict):
            for band in v:
                assert b[k][band] == pytest.approx(v[band], rel=1e-9), band
        elif k == "tempo_candidates":
            assert len(b[k]) == len(v)
            for got, expected in zip(b[k], v, strict=True):
                assert got == pytest.approx(expected, rel=1e-9), k
        else:
            assert b[k] == pytest.approx(v, rel=1e-9), k


def test_high_rate_is_decimated_and_measures_the_same():
    from scipy.signal import butter, resample_poly, sosfilt

    # band-limited below the decimator's 21.6 kHz cut-off: the two rates see the same
    lowpass = butter(8, 18000, fs=48000, output="sos")
    x48 = sosfilt(lowpass, music_like(seconds=6.0, sample_rate=48000))
    x96 = resample_poly(x48, 2, 1, axis=1)
    a = fingerprint(x48, 48000, tempo=False)
    b = fingerprint(x96, 96000, tempo=False)
    assert FingerprintAnalyzer(96000, 2).analysis_rate == 48000
    assert b.spectral_centroid_hz == pytest.approx(a.spectral_centroid_hz, rel=0.01)
    for band in BAND_EDGES_HZ:
        assert b.band_energy[band] == pytest.approx(a.band_energy[band], abs=0.005)


def test_short_and_silent_inputs_give_defined_values():
    for x in (np.zeros((2, SR * 3)), tone(440.0, 0.01), np.zeros((1, 10))):
        fp = fingerprint(x, SR)
        d = fp.to_dict()
        assert fp.tempo_bpm == DEFAULT_TEMPO_BPM and fp.tempo_confidence == 0.0
        assert all(v is not None for k, v in d.items() if k != "band_energy")


def test_round_trip_through_json_dict():
    from auralis_batch.fingerprint import Fingerprint

    fp = fingerprint(music_like(seconds=4.0), SR)
    again = Fingerprint.from_dict(fp.to_dict())
    assert again.to_dict() == fp.to_dict()


# --------------------------------------------------------------------------- tempo
def test_tempo_off_builds_no_tempo_machinery():
    an = FingerprintAnalyzer(SR, 2, tempo=False)
    assert an._tempo is None
    an.process(drum_pattern(100.0, seconds=8.0))
    fp = an.finish(true_peak_dbtp=-6.0, integrated_lufs=-20.0, lra_lu=1.0)
    assert (fp.tempo_bpm, fp.tempo_confidence) == (DEFAULT_TEMPO_BPM, 0.0)


@pytest.mark.parametrize("bpm", [60.0, 90.0, 120.0, 150.0, 180.0, 200.0])
def test_click_track_tempo(bpm):
    got, conf = estimate_tempo(click_track(bpm, seconds=16.0), SR)
    assert got == pytest.approx(bpm, rel=0.01)
    # Bare clicks carry no metrical structure: above 140 BPM half the tempo is a fair
    # reading too, and the confidence (level share times periodicity) says so.
    assert conf >= TEMPO_CONFIDENCE_THRESHOLD


def test_drum_patterns_across_60_to_200_bpm():
    """The issue's goal as a test: >= 85 % exact (4 %), >= 95 % within an octave."""
    exact = octave = total = 0
    misses = []
    for bpm in np.arange(60.0, 201.0, 10.0):
        for swing, extras in ((0.0, False), (1 / 3, False), (0.0, True), (1 / 3, True)):
            x = drum_pattern(
                bpm, seconds=16.0, swing=swing, bass=extras, pads=extras, seed=int(bpm)
            )
            got, _ = estimate_tempo(x, SR)
            total += 1
            r = got / bpm
            if abs(r - 1) <= 0.04:
                exact += 1
            elif min(abs(r - 2) / 2, abs(r - 0.5) / 0.5) <= 0.04:
                octave += 1
                misses.append((bpm, swing, extras, round(got, 1)))
            else:
                misses.append((bpm, swing, extras, round(got, 1), "wrong"))
    assert exact / total >= 0.85, misses
    assert (exact + octave) / total >= 0.95, misses


def test_tempo_survives_silence_gaps_and_other_rates():
    x = drum_pattern(128.0, seconds=20.0, sample_rate=48000)
    x[:, 6 * 48000 : 9 * 48000] = 0.0  # a break
    got, _ = estimate_tempo(x, 48000)
    assert got == pytest.approx(128.0, rel=0.04)
    from scipy.signal import resample_poly

    got96, _ = estimate_tempo(resample_poly(x, 2, 1, axis=1), 96000)
    assert got96 == pytest.approx(128.0, rel=0.04)


def test_noise_has_low_tempo_confidence():
    rng = np.random.default_rng(11)
    _, conf = estimate_tempo(0.1 * rng.standard_normal((2, 12 * SR)), SR)
    assert conf < 0.3


def test_example_clip_tempo():
    path = EXAMPLE / "example.flac"
    if not path.exists():
        pytest.skip("examples/example.flac not generated yet")
    import soundfile as sf

    spec = importlib.util.spec_from_file_location("make_example", EXAMPLE / "make_example.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    audio, sr = sf.read(path, always_2d=True)
    got, conf = estimate_tempo(audio.T, sr)
    assert got == pytest.approx(mod.TEMPO_BPM, rel=0.04)
    assert conf > 0.5


# --------------------------------------------------------------------------- kernel contract
def test_stateful_kernels_return_new_state_and_leave_theirs_alone():
    """State in, state out: the kernels never write into the state they are given, and
    feeding a stream in two calls (the returned state carried) equals one call."""
    rng = np.random.default_rng(13)
    x = np.ascontiguousarray(rng.standard_normal((2, 5000)))
    acc0 = downmix_state(2)
    start = acc0.copy()
    mono, acc = downmix_stats(x, acc0, 0.999)
    np.testing.assert_array_equal(acc0, start)
    m1, a1 = downmix_stats(np.ascontiguousarray(x[:, :1234]), acc0, 0.999)
    m2, a2 = downmix_stats(np.ascontiguousarray(x[:, 1234:]), a1, 0.999)
    np.testing.assert_array_equal(np.concatenate([m1, m2]), mono)
    np.testing.assert_allclose(a2, acc, rtol=1e-12)
    per = acc[DMX_CHANNELS:].reshape(2, DMX_PER_CHANNEL)  # against NumPy
    np.testing.assert_allclose(per[:, DMX_SUM], x.sum(axis=1), rtol=1e-10)
    np.testing.assert_array_equal(per[:, DMX_MAX], x.max(axis=1))
    np.testing.assert_array_equal(per[:, DMX_MIN], x.min(axis=1))

    levels = rng.uniform(-80, 0, (40, 25))
    prev0, state0 = np.full(25, -7.0), np.zeros(1, dtype=np.int64)
    env, prev, state = level_rise(levels, prev0, state0)
    assert (prev0 == -7.0).all() and state0[0] == 0
    e1, p1, s1 = level_rise(levels[:17], prev0, state0)
    e2, _, _ = level_rise(levels[17:], p1, s1)
    np.testing.assert_array_equal(np.concatenate([e1, e2]), env)
    np.testing.assert_array_equal(prev, levels[-1])
    assert state[0] == 1

    y = music_like(seconds=2.0).mean(axis=0)
    librosa = import_librosa()

    spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP, center=False, dtype=complex).T
    spec = np.ascontiguousarray(spec)
    args = (0.0, np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64), SR / N_FFT, 0.85)
    prev0, state0 = np.zeros(spec.shape[1]), np.zeros(1, dtype=np.int64)
    whole, _, _ = frame_features(np.ascontiguousarray(y), HOP, spec, *args, prev0, state0)
    assert not prev0.any() and state0[0] == 0
    cut = 30
    r1, p1, s1 = frame_features(np.ascontiguousarray(y), HOP, spec[:cut], *args, prev0, state0)
    y2 = np.ascontiguousarray(y[cut * HOP :])
    r2, _, _ = frame_features(y2, HOP, np.ascontiguousarray(spec[cut:]), *args, p1, s1)
    np.testing.assert_array_equal(np.concatenate([r1, r2]), whole)


def test_feature_table_columns_are_the_kernel_constants():
    from auralis_batch.kernels import spectral

    cols = [getattr(spectral, n) for n in dir(spectral) if n.startswith("COL_")]
    assert sorted(cols) == list(range(spectral.N_FEATURE_COLS))
    an = FingerprintAnalyzer(SR, 2, tempo=False)
    an.process(music_like(seconds=1.0))
    an._spectral(an._framer.flush_spectra())
    assert an._rows[0].shape[1] == len(BAND_EDGES_HZ) + spectral.N_FEATURE_COLS


# ------------------------------------------------------------- temporal traits vs loops
@pytest.mark.parametrize("seed", range(40))
def test_temporal_traits_equal_plain_loops_bit_for_bit(seed, monkeypatch):
    """Level rise, peak picking and the percussive share are NumPy with the loops' order
    of summation: the same bits as plain loops (tests/naive.py), ties and edges
    included, so fingerprints cached before stay what an analysis gives now."""
    rng = np.random.default_rng(seed)
    nf = int(rng.integers(0, 40)) if seed % 2 else int(rng.integers(40, 1500))
    nb = int(rng.integers(1, 26))
    levels = rng.uniform(-80.0, 0.0, (nf, nb))
    levels[rng.random((nf, nb)) < 0.2] = -80.0  # floored bands: equal levels
    prev, state = rng.uniform(-80.0, 0.0, nb), np.array([seed % 3 == 0], dtype=np.int64)
    got, expected = level_rise(levels, prev, state), naive.level_rise(levels, prev, state)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)

    if seed % 4 == 0:  # peak picking's windows a few frames at a time: chunk seams
        monkeypatch.setattr("auralis_batch.fingerprint._PEAK_CHUNK", 1 + seed % 7)
    env = np.round(rng.random(nf) ** 3, 1 + seed % 3)  # coarse: ties between neighbours
    args = (1 + seed % 4, seed % 3, 1 + seed % 5, seed % 6, 0.07, seed % 5)
    assert count_peaks(env, *args) == naive.count_peaks(env, *args)

    power = np.round(rng.random((nf, nb)) ** 4, 2 + seed % 3)
    silent = (rng.random(nf) < 0.1).astype(np.float64)
    half_width = 1 + seed % 5
    assert percussive_share(power, silent, half_width) == naive.percussive_share(
        power, silent, half_width
    )


def test_a_dc_offset_changes_no_field():
    """An inaudible DC offset (which the chain's subsonic filter removes) moved the
    centroid from 824 to 264 Hz, the crest factor by 9 dB and the stereo correlation
    from 0.48 to 0.98, and an adaptive master's EQ and target with them."""
    x = music_like(seconds=8.0, level_db=-20.0, seed=6)
    clean = fingerprint(x, SR, tempo=False).to_dict()
    offset = fingerprint(x + np.array([[0.3], [-0.2]]), SR, tempo=False).to_dict()
    for key in ("crest_db", "stereo_width", "stereo_correlation"):
        assert offset[key] == pytest.approx(clean[key], abs=1e-6), key
    for key in ("spectral_centroid_hz", "spectral_rolloff_hz", "spectral_flatness"):
        assert offset[key] == pytest.approx(clean[key], rel=0.01), key
    for band, share in clean["band_energy"].items():
        assert offset["band_energy"][band] == pytest.approx(share, abs=0.002), band


def test_a_constant_signal_has_no_crest_and_no_image():
    """Pure DC: what the mean's removal leaves is rounding, which read as -116 dB of
    crest (a crest is never below 0 dB)."""
    fp = fingerprint(np.full((2, 441000), 0.1234567), SR, tempo=False)
    assert fp.crest_db == 0.0 and fp.stereo_width == 0.0 and fp.stereo_correlation == 1.0
