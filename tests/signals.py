"""Synthetic test signals of known character: drum patterns at a known tempo."""

from __future__ import annotations

import numpy as np


def _kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.35 * sr)) / sr
    f = 45.0 + 75.0 * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(f) / sr
    return np.sin(phase) * np.exp(-t / 0.12)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    noise = rng.standard_normal(t.size)
    noise = noise - np.concatenate(([0.0], noise[:-1])) * 0.6  # brighter
    return 0.5 * noise * np.exp(-t / 0.06) + 0.4 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)


def _hat(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.06 * sr)) / sr
    noise = rng.standard_normal(t.size)
    noise = np.diff(noise, prepend=0.0)  # high-passed
    return 0.25 * noise * np.exp(-t / 0.012)


def _place(out: np.ndarray, hit: np.ndarray, at: float, sr: int, gain: float) -> None:
    i = int(round(at * sr))
    if i >= out.shape[-1]:
        return
    n = min(hit.size, out.shape[-1] - i)
    out[..., i : i + n] += gain * hit[:n]


def drum_pattern(
    bpm: float,
    *,
    seconds: float = 20.0,
    sample_rate: int = 44100,
    swing: float = 0.0,
    bass: bool = False,
    pads: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Stereo rock beat: kick on 1 and 3, snare on 2 and 4, hi-hat on eighths.

    ``swing`` delays every off-beat eighth by that fraction of an eighth (1/3 gives
    triplet swing). ``bass`` adds a bass note on each kick; ``pads`` adds sustained
    chords. Peak-normalised to -6 dBFS.
    """
    sr = sample_rate
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros((2, n))
    beat = 60.0 / bpm
    kick, snare, hat = _kick(sr, rng), _snare(sr, rng), _hat(sr, rng)
    n_beats = int(seconds / beat) + 1
    for b in range(n_beats):
        t0 = b * beat
        _place(out, kick if b % 2 == 0 else snare, t0, sr, 1.0)
        _place(out, hat, t0, sr, 0.5)
        _place(out, hat, t0 + beat * (0.5 + 0.5 * swing), sr, 0.35)
        if bass and b % 2 == 0:
            t = np.arange(int(beat * 1.8 * sr)) / sr
            f = 55.0 * (1.5 if (b // 4) % 2 else 1.0)
            note = np.sin(2 * np.pi * f * t) * np.exp(-t / (beat * 1.5)) * np.minimum(1, t / 0.01)
            _place(out, note, t0, sr, 0.4)
    if pads:
        t = np.arange(n) / sr
        chord = sum(np.sin(2 * np.pi * f * t + p) for f, p in ((220.0, 0), (277.2, 1), (329.6, 2)))
        swell = 0.5 + 0.5 * np.sin(2 * np.pi * t / (8 * beat))
        out[0] += 0.08 * chord * swell
        out[1] += 0.08 * np.roll(chord, 300) * swell
    return out * (0.5 / np.abs(out).max())


def click_track(bpm: float, *, seconds: float = 20.0, sample_rate: int = 44100) -> np.ndarray:
    """Mono 1 kHz blips (10 ms) on every beat."""
    sr = sample_rate
    n = int(seconds * sr)
    out = np.zeros((1, n))
    t = np.arange(int(0.01 * sr)) / sr
    blip = np.sin(2 * np.pi * 1000 * t) * np.hanning(t.size)
    for b in range(int(seconds * bpm / 60.0) + 1):
        _place(out, blip, b * 60.0 / bpm, sr, 0.5)
    return out


def compound_pattern(
    bpm: float, *, seconds: float = 20.0, sample_rate: int = 44100, seed: int = 0
) -> np.ndarray:
    """Stereo 6/8 groove at ``bpm`` dotted quarters: kick on beat 1, snare on beat 2,
    hi-hat on every eighth (three per beat, the first of each louder). Peak -6 dBFS."""
    sr = sample_rate
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros((2, n))
    beat = 60.0 / bpm
    kick, snare, hat = _kick(sr, rng), _snare(sr, rng), _hat(sr, rng)
    for b in range(int(seconds / beat) + 1):
        t0 = b * beat
        _place(out, kick if b % 2 == 0 else snare, t0, sr, 1.0)
        for e in range(3):
            _place(out, hat, t0 + e * beat / 3.0, sr, 0.5 if e == 0 else 0.3)
    return out * (0.5 / np.abs(out).max())


def waltz_pattern(
    bpm: float, *, seconds: float = 20.0, sample_rate: int = 44100, seed: int = 0
) -> np.ndarray:
    """Stereo 3/4 oom-pah-pah at ``bpm`` quarters: a bass note and kick on beat 1, a
    chord on beats 2 and 3. Peak -6 dBFS."""
    sr = sample_rate
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros((2, n))
    beat = 60.0 / bpm
    kick = _kick(sr, rng)
    t = np.arange(int(0.9 * beat * sr)) / sr
    env = np.exp(-t / (0.25 * beat)) * np.minimum(1.0, t / 0.005)
    bass = np.sin(2 * np.pi * 73.4 * t) * env
    chord = sum(np.sin(2 * np.pi * f * t) for f in (293.7, 370.0, 440.0)) * env / 3
    for b in range(int(seconds / beat) + 1):
        t0 = b * beat
        if b % 3 == 0:
            _place(out, kick, t0, sr, 0.8)
            _place(out, bass, t0, sr, 0.6)
        else:
            _place(out, chord, t0, sr, 0.5)
    return out * (0.5 / np.abs(out).max())
