"""Synthesise the example clip ``examples/example.flac``: 20 s of drums, bass and pads.

Everything is generated with numpy from a seeded RNG, so re-running gives the same
samples (the FLAC bytes may still differ between encoder versions)::

    python examples/make_example.py [OUT]

The clip is deliberately unmastered: it integrates around -20 LUFS with sample peaks
below -3 dBFS, so the engine has headroom and loudness to work on. The drums keep a
plain, unambiguous groove at ``TEMPO_BPM`` (kick on beats 1 and 3, snare on 2 and 4,
closed hi-hat on every eighth note, quieter than the snare) so tempo estimation can be
tested against it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

TEMPO_BPM = 112.0
SAMPLE_RATE = 44100
DURATION_S = 20.0
SEED = 1120
BEATS_PER_BAR = 4
BARS = 9  # 9 bars at 112 BPM = 19.29 s, then a last downbeat that rings out to 20 s
MASTER_GAIN = 0.42  # sets the unmastered level to about -20 LUFS
PEAK_CEILING_DBFS = -3.0
KICK_TICK = 0.3

# A minor: Am - F - C - G, as (bass MIDI note, pad MIDI notes).
PROGRESSION = (
    (33, (57, 60, 64)),  # Am: A1 | A3 C4 E4
    (29, (57, 60, 65)),  # F:  F1 | A3 C4 F4
    (36, (55, 60, 64)),  # C:  C2 | G3 C4 E4
    (31, (55, 59, 62)),  # G:  G1 | G3 B3 D4
)
# A soft bell melody over the second half (bars 5-8): one MIDI note per beat, 0 = rest.
MELODY = (
    (76, 72, 69, 72),
    (77, 72, 69, 0),
    (76, 72, 67, 72),
    (74, 71, 67, 0),
)

DEFAULT_OUT = Path(__file__).resolve().parent / "example.flac"


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _pan(position: float) -> tuple[float, float]:
    """Constant-power gains for ``position`` in [-1 (left), 1 (right)]."""
    angle = (position + 1.0) * np.pi / 4.0
    return float(np.cos(angle)), float(np.sin(angle))


def _butter_mag(
    f: np.ndarray, low: float | None = None, high: float | None = None, order: int = 2
) -> np.ndarray:
    """Butterworth magnitude response: high-pass above ``low``, low-pass below ``high``."""
    h = np.ones_like(f)
    if low is not None:
        with np.errstate(divide="ignore"):
            h /= np.sqrt(1.0 + (low / np.maximum(f, 1e-9)) ** (2 * order))
    if high is not None:
        h /= np.sqrt(1.0 + (f / high) ** (2 * order))
    return h


def _filtered(
    x: np.ndarray,
    sample_rate: int,
    low: float | None = None,
    high: float | None = None,
    order: int = 2,
) -> np.ndarray:
    """Zero-phase (circular) FFT filter; used on noise before it is enveloped."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    return np.fft.irfft(np.fft.rfft(x) * _butter_mag(f, low, high, order), n)


def _place(track: np.ndarray, sound: np.ndarray, start_s: float, sample_rate: int) -> None:
    """Add ``sound`` (1-D or (channels, m)) into ``track`` starting at ``start_s``."""
    i = int(round(start_s * sample_rate))
    m = min(sound.shape[-1], track.shape[-1] - i)
    if m > 0:
        track[..., i : i + m] += sound[..., :m]


def _kick(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    n = int(0.45 * sample_rate)
    t = np.arange(n) / sample_rate
    tau = 0.035  # pitch sweep 120 -> 45 Hz
    phase = 2.0 * np.pi * (45.0 * t + 75.0 * tau * (1.0 - np.exp(-t / tau)))
    body = np.sin(phase) * np.exp(-t / 0.16)
    # the beater: a short broadband tick, so the kick's onset is as clear as the snare's
    tick = _filtered(rng.standard_normal(n), sample_rate, low=600.0, high=9000.0)
    tick *= np.exp(-t / 0.004) * np.minimum(t / 0.0005, 1.0) / np.sqrt(np.mean(tick**2))
    return body + KICK_TICK * tick


def _snare(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    n = int(0.3 * sample_rate)
    t = np.arange(n) / sample_rate
    noise = _filtered(rng.standard_normal(n), sample_rate, low=1200.0, high=6500.0)
    noise /= np.sqrt(np.mean(noise**2))
    rattle = noise * np.exp(-t / 0.055) * 0.55
    tone = np.sin(2.0 * np.pi * 180.0 * t) * np.exp(-t / 0.07) * 0.6
    attack = np.minimum(t / 0.001, 1.0)
    return (rattle + tone) * attack


def _hat(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    n = int(0.06 * sample_rate)
    t = np.arange(n) / sample_rate
    noise = _filtered(rng.standard_normal(n), sample_rate, low=7000.0, high=15000.0, order=4)
    noise /= np.sqrt(np.mean(noise**2))
    return noise * np.exp(-t / 0.005)


def _soft_saw(freq: float, t: np.ndarray, phase: float, brightness: float) -> np.ndarray:
    """Band-limited additive sawtooth with harmonics rolled off above ``brightness`` Hz."""
    x = 2.0 * np.pi * freq * t + phase
    two_cos = 2.0 * np.cos(x)
    prev, cur = np.zeros_like(x), np.sin(x)  # sin((k-1)x), sin(kx)
    out = np.zeros_like(x)
    k = 1
    while k * freq < min(5000.0, 0.45 / (t[1] - t[0])) and k <= 40:
        out += (np.exp(-k * freq / brightness) / k) * cur
        prev, cur = cur, two_cos * cur - prev  # sin((k+1)x) by the Chebyshev recurrence
        k += 1
    return out


def _adsr(t: np.ndarray, length: float, attack: float, release: float) -> np.ndarray:
    """Linear attack, hold until ``length``, then a release that reaches exactly zero."""
    env = np.minimum(t / attack, 1.0)
    tail = np.clip((t - length) / release, 0.0, 1.0)
    return env * np.exp(-3.0 * tail) * (1.0 - tail)


def _reverb_ir(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Two decorrelated exponentially-decaying noise tails, darker as they decay."""
    n = int(1.6 * sample_rate)
    t = np.arange(n) / sample_rate
    noise = _filtered(rng.standard_normal((2, n)), sample_rate, low=150.0, high=5000.0)
    ir = noise * np.exp(-t / 0.28) * np.minimum(t / 0.012, 1.0)
    return ir / np.sqrt(np.sum(ir**2, axis=1, keepdims=True))


def synthesize(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The example clip as a ``(2, n)`` float64 array (about -20 LUFS, peaks < -3 dBFS)."""
    rng = np.random.default_rng(SEED)
    n = int(round(DURATION_S * sample_rate))
    t_all = np.arange(n) / sample_rate
    beat = 60.0 / TEMPO_BPM
    bar = BEATS_PER_BAR * beat
    end_beat = BARS * BEATS_PER_BAR  # the final downbeat

    dry = np.zeros((2, n))
    send = np.zeros((2, n))  # what goes to the reverb

    # Drums: kick on 1 and 3, snare on 2 and 4, closed hat on every eighth note.
    kick = _kick(rng, sample_rate)
    for b in range(0, end_beat + 1, 2):
        _place(dry, np.outer(_pan(0.0), kick * 0.9), b * beat, sample_rate)
    for b in range(1, end_beat, 2):
        snare = np.outer(_pan(0.05), _snare(rng, sample_rate) * 0.5)
        _place(dry, snare, b * beat, sample_rate)
        _place(send, snare * 0.6, b * beat, sample_rate)
    for e in range(2 * end_beat):
        level = 0.11 if e % 2 == 0 else 0.075
        _place(dry, np.outer(_pan(0.3), _hat(rng, sample_rate) * level), e * beat / 2, sample_rate)

    # Bass: soft saw on beats 1 and 3 (with the kick), chord root.
    note_len = 1.6 * beat
    t_note = np.arange(int((note_len + 0.1) * sample_rate)) / sample_rate
    for bar_i in range(BARS + 1):
        root, _ = PROGRESSION[bar_i % len(PROGRESSION)]
        beats = (0, 2) if bar_i < BARS else (0,)
        for b in beats:
            f = _hz(root)
            wave = _soft_saw(f, t_note, 0.0, brightness=350.0)
            wave += 0.6 * np.sin(2.0 * np.pi * f * t_note)  # weight in the fundamental
            env = _adsr(t_note, note_len, 0.004, 0.08) * (0.55 + 0.45 * np.exp(-t_note / 0.25))
            _place(dry, np.outer(_pan(0.0), wave * env * 0.36), bar_i * bar + b * beat, sample_rate)

    # Pads: three detuned soft saws per chord note, spread across the stereo field.
    detune_cents = (-9.0, 0.0, 8.0)
    spread = (-0.7, 0.0, 0.7)
    for bar_i in range(BARS + 1):
        _, chord = PROGRESSION[bar_i % len(PROGRESSION)]
        length = bar - 0.05 if bar_i < BARS else DURATION_S - BARS * bar
        release = 0.45
        t_pad = np.arange(int((length + release) * sample_rate)) / sample_rate
        env = _adsr(t_pad, length, 0.25, release)
        voices = np.zeros((2, t_pad.size))
        for note in chord:
            for cents, pos in zip(detune_cents, spread, strict=True):
                f = _hz(note + cents / 100.0)
                wave = _soft_saw(f, t_pad, rng.uniform(0.0, 2.0 * np.pi), brightness=900.0)
                voices += np.outer(_pan(pos), wave)
        pad = voices * env * 0.065
        _place(dry, pad, bar_i * bar, sample_rate)
        _place(send, pad * 1.2, bar_i * bar, sample_rate)

    # Melody: a quiet sine bell in the second half.
    t_bell = np.arange(int(1.2 * sample_rate)) / sample_rate
    for bar_i, notes in enumerate(MELODY, start=4):
        for b, note in enumerate(notes):
            if not note:
                continue
            f = _hz(note)
            bell = np.sin(2.0 * np.pi * f * t_bell) + 0.25 * np.sin(2.0 * np.pi * 2.0 * f * t_bell)
            bell *= np.exp(-t_bell / 0.35) * np.minimum(t_bell / 0.003, 1.0) * 0.09
            tone = np.outer(_pan(0.35), bell)
            _place(dry, tone, bar_i * bar + b * beat, sample_rate)
            _place(send, tone * 1.5, bar_i * bar + b * beat, sample_rate)

    # Reverb-ish decorrelation: convolve the send with two different noise tails.
    ir = _reverb_ir(rng, sample_rate)
    size = 1 << int(np.ceil(np.log2(n + ir.shape[1])))
    wet = np.fft.irfft(np.fft.rfft(send, size) * np.fft.rfft(ir, size), size)[:, :n]
    mix = dry + 0.35 * wet

    # Fade the last half second so the clip ends in silence.
    fade = np.clip((DURATION_S - t_all) / 0.5, 0.0, 1.0)
    return mix * MASTER_GAIN * fade**2


def peak_dbfs(audio: np.ndarray) -> float:
    return float(20.0 * np.log10(np.max(np.abs(audio))))


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DEFAULT_OUT
    audio = synthesize(SAMPLE_RATE)
    peak = peak_dbfs(audio)
    if peak > PEAK_CEILING_DBFS:
        raise SystemExit(f"peak {peak:.2f} dBFS is above {PEAK_CEILING_DBFS} dBFS")
    sf.write(out, audio.T, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    print(
        f"wrote {out}: {audio.shape[1] / SAMPLE_RATE:.2f} s, peak {peak:.2f} dBFS, "
        f"tempo {TEMPO_BPM:g} BPM, {out.stat().st_size / 1e6:.2f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
