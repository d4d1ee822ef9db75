"""Biquad designs and the cascade kernel against scipy.signal and the RBJ cookbook's
analytic properties (gain at the centre/corner, DC and Nyquist)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import signal

from auralis_batch.eq import Equalizer, dc_levels, design_eq
from auralis_batch.filters import (
    HIGH_PASS,
    HIGH_SHELF,
    LOW_PASS,
    LOW_SHELF,
    PEAKING,
    design_cascade,
    rbj_biquad,
    sos_filter,
    sos_steady_state,
)
from auralis_batch.kernels.biquad import sos_filter_into
from auralis_batch.kernels.quantize import quantize_into
from auralis_batch.presets import EQBand, EQSettings

RATES = [22050, 44100, 48000, 96000, 192000]


def gain_db_at(sos: np.ndarray, freq_hz: float, sample_rate: float) -> float:
    _, h = signal.sosfreqz(sos, worN=[freq_hz], fs=sample_rate)
    return float(20 * np.log10(np.abs(h[0])))


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("gain_db", [-9.0, -1.5, 2.0, 12.0])
def test_peaking_hits_its_gain_at_centre_and_unity_far_away(sample_rate, gain_db):
    sos = rbj_biquad(PEAKING, 1000.0, gain_db, 1.0, float(sample_rate))[None, :]
    assert gain_db_at(sos, 1000.0, sample_rate) == pytest.approx(gain_db, abs=1e-6)
    assert gain_db_at(sos, 1.0, sample_rate) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("gain_db", [-6.0, 3.0, 9.0])
def test_shelves_full_gain_at_their_end_half_at_corner(sample_rate, gain_db):
    low = rbj_biquad(LOW_SHELF, 200.0, gain_db, 0.707, float(sample_rate))[None, :]
    high = rbj_biquad(HIGH_SHELF, 5000.0, gain_db, 0.707, float(sample_rate))[None, :]
    # Cookbook shelves: gain_db at DC (low) / Nyquist (high), half of it at the corner.
    assert gain_db_at(low, 0.0, sample_rate) == pytest.approx(gain_db, abs=1e-6)
    assert gain_db_at(low, sample_rate / 2, sample_rate) == pytest.approx(0.0, abs=1e-6)
    assert gain_db_at(low, 200.0, sample_rate) == pytest.approx(gain_db / 2, abs=1e-6)
    assert gain_db_at(high, sample_rate / 2, sample_rate) == pytest.approx(gain_db, abs=1e-6)
    assert gain_db_at(high, 0.0, sample_rate) == pytest.approx(0.0, abs=1e-6)
    assert gain_db_at(high, 5000.0, sample_rate) == pytest.approx(gain_db / 2, abs=1e-6)


@pytest.mark.parametrize("sample_rate", RATES)
def test_butterworth_pass_filters_are_minus_3db_at_cutoff(sample_rate):
    q = 1 / np.sqrt(2)
    hp = rbj_biquad(HIGH_PASS, 100.0, 0.0, q, float(sample_rate))[None, :]
    lp = rbj_biquad(LOW_PASS, 5000.0, 0.0, q, float(sample_rate))[None, :]
    assert gain_db_at(hp, 100.0, sample_rate) == pytest.approx(-3.0103, abs=1e-3)
    assert gain_db_at(lp, 5000.0, sample_rate) == pytest.approx(-3.0103, abs=1e-3)
    # Matches scipy's bilinear Butterworth design (same prewarped corner).
    expected = signal.butter(2, 100.0, "highpass", fs=sample_rate, output="sos")
    assert_allclose(hp, expected, rtol=1e-9, atol=1e-12)


def _cascade(sample_rate: float) -> np.ndarray:
    kinds = np.array([HIGH_PASS, LOW_SHELF, PEAKING, PEAKING, PEAKING, PEAKING, HIGH_SHELF])
    f = np.array([25, 100, 300, 1000, 3000, 6000, 9000.0])
    g = np.array([0, 2, -1, 0.5, 1, 1.5, 2.0])
    q = np.array([0.707, 0.707, 1, 1, 1, 1, 0.707])
    return design_cascade(kinds, f, g, q, sample_rate)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_cascade_matches_scipy_sosfilt(channels):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((channels, 20000))
    sos = _cascade(44100.0)
    zi = rng.standard_normal((channels, sos.shape[0], 2)) * 0.1
    got, got_zf = sos_filter(x, sos, zi)
    expected, expected_zf = signal.sosfilt(sos, x, axis=-1, zi=np.transpose(zi, (1, 0, 2)))
    assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert_allclose(got_zf, np.transpose(expected_zf, (1, 0, 2)), rtol=1e-10, atol=1e-12)


def test_cascade_streamed_in_blocks_equals_one_piece():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 30011))
    sos = _cascade(48000.0)
    whole, _ = sos_filter(x, sos, np.zeros((2, sos.shape[0], 2)))
    zi = np.zeros((2, sos.shape[0], 2))
    parts = []
    cuts = np.sort(rng.choice(np.arange(1, x.shape[1]), size=40, replace=False))
    for block in [*np.split(x, cuts, axis=1), x[:, :0]]:
        y, zi = sos_filter(np.ascontiguousarray(block), sos, zi)
        parts.append(y)
    assert_allclose(np.concatenate(parts, axis=1), whole, rtol=0, atol=0)


@pytest.mark.parametrize("sample_rate", [44100, 96000])
def test_steady_state_equals_scipys_sosfilt_zi(sample_rate):
    settings = EQSettings(
        highpass_hz=30.0,
        bands=(
            EQBand("lo", "low_shelf", 80.0, 2.0, 0.7),
            EQBand("mid", "peaking", 1000.0, -3.0, 1.2),
            EQBand("hi", "high_shelf", 9000.0, 1.5, 0.7),
        ),
    )
    sos = design_eq(settings, sample_rate)
    levels = np.array([0.5, -0.25])
    expected = signal.sosfilt_zi(sos)[np.newaxis] * levels[:, np.newaxis, np.newaxis]
    assert_allclose(sos_steady_state(sos, levels), expected, rtol=0, atol=1e-10)


def test_a_dc_offset_from_the_first_sample_does_not_ring_through_the_high_pass():
    """A source offset by 0.5 from its first sample opened with the high-pass's step
    response, a 0.78 peak, and the limiter held the whole track 3.5-5 LU under its
    target to keep that one transient under the ceiling (fourth sweep). Started from
    the steady state of its DC offset (the mean of its first 0.5 s), the EQ passes
    what follows the offset; started from silence, as the class does by default (its
    blocks of any size give the samples of one piece), it rings."""
    rng = np.random.default_rng(0)
    music = 0.1 * rng.standard_normal((2, 44100))
    x = np.ascontiguousarray(music + 0.5)
    hp = EQSettings(highpass_hz=20.0)
    levels = dc_levels(x, 44100)
    assert_allclose(levels, 0.5, atol=0.01)
    y = Equalizer(44100, 2, hp, start_levels=levels).process(x)
    clean = Equalizer(44100, 2, hp).process(music)
    assert np.abs(y).max() < np.abs(clean).max() + 0.02  # no step response on top
    assert np.abs(y[:, :200]).max() < 0.5
    assert np.abs(Equalizer(44100, 2, hp).process(x)[:, :200]).max() > 0.5  # from silence


def test_music_cut_mid_waveform_starts_about_as_from_silence():
    """The DC estimate is a mean over 0.5 s, not the first sample: taken from the first
    sample, a gapless album's cut mid-note got that value's step response subtracted
    (worse than a start from silence in 29 of 40 random cuts, a review)."""
    t = np.arange(3 * 44100) / 44100
    x = np.ascontiguousarray(np.tile(0.8 * np.sin(2 * np.pi * 55 * t + 1.3), (2, 1)))
    assert abs(x[0, 0]) > 0.7  # cut near a crest
    levels = dc_levels(x, 44100)
    assert np.abs(levels).max() < 0.01


def test_equalizer_skips_flat_bands_and_clamps_near_nyquist():
    settings = EQSettings(
        highpass_hz=20.0,
        bands=(
            EQBand("flat", "peaking", 1000.0, 0.0, 1.0),
            EQBand("air", "high_shelf", 12000.0, 3.0, 0.707),
        ),
    )
    sos = design_eq(settings, 22050)
    assert sos.shape == (2, 6)  # high-pass + shelf; the 0 dB band is an identity
    assert np.all(np.isfinite(sos))
    eq = Equalizer(22050, 1, settings)
    y = eq.process(np.ones((1, 4096)))
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("n_sections", [1, 2, 5, 8, 9, 13, 17])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_any_cascade_length_matches_scipy_bit_for_bit(n_sections, channels):
    # The kernel runs up to 8 sections per generated loop (longer cascades in groups),
    # a wavefront for blocks at least as long as the group and sample-major otherwise;
    # all of them perform sosfilt's operations in sosfilt's order.
    rng = np.random.default_rng(n_sections * 10 + channels)
    sos = np.concatenate([_cascade(44100.0)] * 3)[:n_sections]
    x = rng.standard_normal((channels, 3001))
    zi = rng.standard_normal((channels, n_sections, 2)) * 0.1
    got, got_zf = sos_filter(x, sos, zi)
    expected, expected_zf = signal.sosfilt(sos, x, axis=-1, zi=np.transpose(zi, (1, 0, 2)))
    assert_array_equal(got, expected)
    assert_array_equal(got_zf, np.transpose(expected_zf, (1, 0, 2)))
    # block sizes below, at and above the group length, and empty blocks
    parts, z = [], zi
    for block in np.split(x, [0, 1, 3, 10, 17, 25, 26, 300, 300, 2000], axis=1):
        y, z = sos_filter(block, sos, z)
        parts.append(y)
    assert_array_equal(np.concatenate(parts, axis=1), got)
    assert_array_equal(z, got_zf)


def test_non_contiguous_input_and_no_sections():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 1000))[::2, ::3]  # strided view
    sos = _cascade(48000.0)
    got, _ = sos_filter(x, sos, np.zeros((2, sos.shape[0], 2)))
    assert_array_equal(got, signal.sosfilt(sos, x, axis=-1))
    y, zf = sos_filter(x, np.zeros((0, 6)), np.zeros((2, 0, 2)))
    assert_array_equal(y, x)
    assert zf.shape == (2, 0, 2)


# ------------------------------------------------- kernel conventions (kernels/__init__)
def _unchanged(call, *args):
    """Call ``call(*args)``; assert no argument changed; return the result."""
    before = [np.copy(a) for a in args]
    out = call(*args)
    for got, expected in zip(args, before, strict=True):
        assert_array_equal(got, expected)
    return out


def test_biquad_kernels_leave_their_arguments_alone():
    rng = np.random.default_rng(11)
    kinds = np.array([HIGH_PASS, PEAKING, HIGH_SHELF])
    f, g, q = np.array([30.0, 1000.0, 8000.0]), np.array([0.0, 3.0, -2.0]), np.full(3, 0.7)
    sos = _unchanged(design_cascade, kinds, f, g, q, 44100.0)
    x = rng.standard_normal((3, 2000))
    zi = rng.standard_normal((3, 3, 2))
    y, zf = _unchanged(sos_filter, x, sos, zi)
    assert zf is not zi
    # *_into writes its out-argument y, and nothing else
    y2 = np.empty_like(x)
    zf2 = _unchanged(lambda *a: sos_filter_into(*a, y2), x, sos, zi)
    assert_array_equal(y2, y)
    assert_array_equal(zf2, zf)


@pytest.mark.parametrize(
    "bits, scale, shift, dtype", [(16, 32768.0, 0, np.int16), (24, 8388608.0, 8, np.int32)]
)
def test_quantize_into_writes_pcm_and_back_only(bits, scale, shift, dtype):
    rng = np.random.default_rng(bits)
    x = np.clip(rng.standard_normal((2, 1000)) * 0.5, -1.1, 1.1)
    dither = rng.uniform(-1, 1, (1000, 2))
    pcm = np.empty((1000, 2), dtype=dtype)
    back = np.empty_like(x)
    _unchanged(lambda *a: quantize_into(*a, shift, pcm, back), x, scale, dither)
    q = np.clip(np.floor(x.T * scale + dither + 0.5), -scale, scale - 1)
    assert_array_equal(pcm, (q.astype(np.int64) << shift).astype(dtype))
    assert_array_equal(back, q.T / scale)
