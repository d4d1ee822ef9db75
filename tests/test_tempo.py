"""Beat level, confidence and runners-up of the tempo estimator on synthetic grooves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from auralis_batch.fingerprint import (
    DEFAULT_TEMPO_BPM,
    TEMPO_WEIGHTS,
    Fingerprint,
    _periodic_hann,
    fingerprint,
    log_flux,
    tempo_estimate,
    tempo_params,
)
from auralis_batch.kernels import tempo as tk

from .signals import click_track, compound_pattern, drum_pattern, waltz_pattern

SR = 44100


@pytest.mark.parametrize("bpm", [62.0, 70.0, 84.0, 96.0, 110.0])
def test_six_eight_is_counted_in_dotted_quarters(bpm):
    """Eighths in threes are a division of the beat, not the beat (the ternary feature)."""
    est = tempo_estimate(compound_pattern(bpm), SR)
    assert est.bpm == pytest.approx(bpm, rel=0.04)


@pytest.mark.parametrize("bpm", [97.0, 120.0, 140.0, 163.0, 180.0])
def test_waltz_is_counted_in_quarters(bpm):
    est = tempo_estimate(waltz_pattern(bpm), SR)
    assert est.bpm == pytest.approx(bpm, rel=0.04)


def test_runners_up_are_the_other_metrical_levels():
    est = tempo_estimate(drum_pattern(100.0, seconds=16.0, bass=True), SR)
    assert est.bpm == pytest.approx(100.0, rel=0.04)
    assert 1 <= len(est.candidates) <= 2
    for bpm, score in est.candidates:
        ratio = bpm / est.bpm
        assert any(abs(ratio - m) <= 0.05 * m for m in (0.5, 2.0, 1 / 3, 3.0)), ratio
        assert 0.0 <= score <= 1.0
    assert 0.0 < est.confidence <= 1.0


def _tempo_in_one_piece(x: np.ndarray, sample_rate: int):
    """The tempo front end over the whole array at once (downmix without its DC
    offset, decimation, onset envelope): the estimate a blocked stream must equal."""
    from auralis_batch.fingerprint import (
        DC_BLOCK_HZ,
        TempoTracker,
        _decimation,
        _Decimator,
        downmix_state,
    )
    from auralis_batch.kernels.spectral import downmix_stats

    dc_coef = math.exp(-2.0 * math.pi * DC_BLOCK_HZ / sample_rate)
    mono, _ = downmix_stats(np.ascontiguousarray(x), downmix_state(x.shape[0]), dc_coef)
    factor = _decimation(sample_rate)
    if factor > 1:
        mono = _Decimator(sample_rate, factor).push(mono)
    tracker = TempoTracker(sample_rate / factor)
    tracker.push(np.ascontiguousarray(mono))
    return tracker.result()


@pytest.mark.parametrize("sample_rate", [44100, 96000])
def test_the_tempo_api_streams_in_blocks_and_answers_as_analyze_does(sample_rate):
    """``tempo_estimate`` streams an array through the front end in blocks, as
    ``analyze`` reads one: the estimate of the whole array in one piece to the last
    bit, over several blocks whose length is no multiple of one, at a decimated rate
    too, with a DC offset (the blocker's state must cross every cut: reset per block,
    the 96 kHz clip read 87.9 BPM instead of 104), and ``analyze``'s answer."""
    from auralis_batch.analysis import analyze_array
    from auralis_batch.audio import BLOCK_FRAMES

    x = drum_pattern(104.0, seconds=20.0, bass=True, sample_rate=sample_rate) + 0.2
    assert x.shape[1] > 3 * BLOCK_FRAMES and x.shape[1] % BLOCK_FRAMES
    est = tempo_estimate(x, sample_rate)
    assert est == _tempo_in_one_piece(x, sample_rate)
    assert est.bpm == pytest.approx(104.0, rel=0.04)
    rec = analyze_array(x, sample_rate)
    assert round(est.bpm, 2) == rec["tempo_bpm"]
    assert round(est.confidence, 3) == rec["tempo_confidence"]
    assert sorted(round(b, 2) for b, _ in est.candidates) == sorted(
        c["bpm"] for c in rec["tempo_candidates"]
    )


def test_candidates_travel_through_the_fingerprint_and_its_json():
    fp = fingerprint(drum_pattern(128.0, seconds=12.0), SR)
    assert fp.tempo_candidates
    d = fp.to_dict()
    assert d["tempo_candidates"] == [
        {"bpm": float(f"{b:.6g}"), "score": float(f"{s:.6g}")} for b, s in fp.tempo_candidates
    ]
    again = Fingerprint.from_dict(d)
    assert again.to_dict() == d
    assert fingerprint(drum_pattern(128.0, seconds=12.0), SR, tempo=False).tempo_candidates == ()


def test_no_pulse_no_candidates():
    for x in (np.zeros((2, 10 * SR)), click_track(120.0, seconds=3.0)):
        est = tempo_estimate(x, SR)
        assert (est.bpm, est.confidence, est.candidates) == (DEFAULT_TEMPO_BPM, 0.0, ())


def test_parameter_vector_is_laid_out_by_the_kernel_constants():
    prm = tempo_params()
    assert prm.shape == (tk.N_PARAMS,)
    assert tuple(prm[tk.PRM_W_SALIENCE :]) == TEMPO_WEIGHTS
    assert len(TEMPO_WEIGHTS) == tk.N_FEATURES
    assert tk.LEVEL_COLUMNS == tk.LEVEL_FEATURES + tk.N_FEATURES
    with pytest.raises(ValueError, match="tempo weights"):
        tempo_params((1.0, 2.0))


def test_weights_steer_the_choice():
    """With every weight zero but a strong preference for slow tempi, the slower
    metrical level wins: the kernel reads its weights from the parameter vector."""
    x = drum_pattern(150.0, seconds=16.0)
    weights = np.zeros(tk.N_FEATURES)
    weights[tk.FEAT_TEMPO] = -4.0
    slow = tempo_estimate(x, SR, params=tempo_params(weights))
    weights[tk.FEAT_TEMPO] = 4.0
    fast = tempo_estimate(x, SR, params=tempo_params(weights))
    assert slow.bpm < fast.bpm
    assert math.isclose(fast.bpm / slow.bpm, 2.0, rel_tol=0.05) or math.isclose(
        fast.bpm / slow.bpm, 4.0, rel_tol=0.05
    )


def _acf_with_peaks(heights: dict[float, float], n: int = 600) -> np.ndarray:
    """An autocorrelation ``a[0] = 1`` with a narrow bump of each height at each lag."""
    lag = np.arange(n, dtype=np.float64)
    a = np.exp(-0.5 * lag**2)
    for at, h in heights.items():
        a += h * np.exp(-0.5 * (lag - at) ** 2)
    return a


def test_a_dotted_reference_yields_to_a_beat_that_is_stronger_and_doubles():
    """A riff repeating every three beats over a steady 170 BPM beat: the comb of the
    dotted level (113 BPM, x1.5 the beat) wins the reference by its multiples (3 and
    6 beats) and the prior, and its metrical neighbours (x2, x1/2, x3, x1/3) do not
    hold the beat, so it could never be chosen (the real recordings' 2/3 errors).
    Where the beat and twice the beat are both more periodic than the dotted level,
    the beat is the reference."""
    frame_rate, p = 100.0, 6000.0 / 170.0  # 170 BPM in frames
    heights = {1.0: 0.5, 2.0: 0.5, 3.0: 0.9, 4.0: 0.3, 5.0: 0.3, 6.0: 0.9, 7.0: 0.3, 8.0: 0.3}
    heights |= {1.5: 0.4, 4.5: 0.4}  # the dotted level: less periodic than 1 and 2 beats
    a = _acf_with_peaks({k * p: h for k, h in heights.items()})
    params = tempo_params()
    lags = 60.0 * frame_rate / params[tk.PRM_MAX_BPM], 60.0 * frame_rate / params[tk.PRM_MIN_BPM]
    prior = params[tk.PRM_REF_BPM], params[tk.PRM_REF_OCTAVES]
    dotted = tk.reference_period(a, tk.acf_peaks(a, *lags), frame_rate, *prior)
    assert dotted == pytest.approx(1.5 * p, rel=0.02)  # the comb's pick, before the rule
    levels = tk.beat_levels(a, np.zeros_like(a), frame_rate, params)
    assert levels[0, tk.LEVEL_PERIOD] == pytest.approx(p, rel=0.02)
    # the dotted level stays the reference where it is the more periodic one
    a = _acf_with_peaks({k * p: h for k, h in (heights | {1.5: 0.6, 4.5: 0.6}).items()})
    levels = tk.beat_levels(a, np.zeros_like(a), frame_rate, params)
    assert levels[0, tk.LEVEL_PERIOD] == pytest.approx(1.5 * p, rel=0.02)


@pytest.mark.parametrize("n", [16, 1024])
def test_hann_in_the_frequency_domain_equals_windowing(n):
    """The tempo frames are transformed unwindowed and the Hann window applied as a
    three-tap convolution of the spectrum: the band powers equal those of the windowed
    frames (``band_powers``, the plain definition), the two end bins included."""
    rng = np.random.default_rng(7)
    frames = rng.standard_normal((5, n))
    expected_spec = np.fft.rfft(frames * _periodic_hann(n), axis=1)
    got_spec = np.fft.rfft(frames, axis=1)
    nbin = n // 2 + 1
    edges = np.unique(np.linspace(0, nbin, 6).astype(np.int64))
    for lo, hi in ((edges[:-1], edges[1:]), (np.array([0, 1]), np.array([1, nbin]))):
        expected = tk.band_powers(expected_spec, lo, hi)
        got = tk.hann_band_powers(got_spec, lo, hi)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * expected.max())


def test_onset_envelopes_equal_log_flux_per_group_and_streamed():
    """The tempo tracker's one-pass envelopes (all bands, kick bands, snare bands) are
    log_flux of each group's band powers (the plain definition), also when the frames
    come in chunks; a group without bands reads 0."""
    rng = np.random.default_rng(3)
    power = rng.standard_normal((300, 12)) ** 2 * 10.0 ** rng.uniform(-9.0, 3.0, (300, 12))
    ref, floor_db, range_db = 7.0, -80.0, 50.0
    groups = [np.arange(12), np.array([0, 1, 2]), np.array([], dtype=np.int64), np.array([5, 9])]
    members = np.concatenate(groups).astype(np.int64)
    offsets = np.cumsum([0] + [g.size for g in groups]).astype(np.int64)
    prev, state, got = np.zeros(members.size), np.zeros(1, dtype=np.int64), []
    for chunk in np.array_split(power, [1, 64, 65, 200]):
        levels = 10.0 * np.log10(np.maximum(chunk / ref, 10.0 ** (floor_db / 10.0)))
        env, prev, state = tk.onset_envelopes(levels, range_db, members, offsets, prev, state)
        got.append(env)
    got = np.concatenate(got, axis=1)
    for g, bands in enumerate(groups):
        if not bands.size:
            assert not got[g].any()
            continue
        expected, _, _ = log_flux(
            power[:, bands], ref, floor_db, range_db, np.zeros(bands.size), np.zeros(1, np.int64)
        )
        np.testing.assert_allclose(got[g], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_the_tempo_api_reads_the_signal_as_analyze_does(offset):
    """``tempo_estimate`` read the plain mean of the channels, ``analyze`` the downmix
    without its DC offset: an LMMS song close between two levels got 148 BPM from one
    and 98.7 from the other. One front end: the same tempo, confidence and runners-up,
    with or without an offset."""
    x = drum_pattern(97.0, seconds=12.0, bass=True) + offset
    api = tempo_estimate(x, SR)
    fp = fingerprint(x, SR)
    assert (fp.tempo_bpm, fp.tempo_confidence, fp.tempo_candidates) == (
        api.bpm,
        api.confidence,
        api.candidates,
    )
