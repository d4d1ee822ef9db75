"""The labelled tempo set (../shared/tempo-set, built by its build.py): loading, the
fixed two-way split, features for fitting, scoring, and librosa's answers.

The split is decided by a rule, not by results: the clips sorted by (source, style,
labelled BPM, file name) go alternately to half A and half B, so each half gets every
style and the whole tempo range.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auralis_batch.fingerprint import tempo_tracker
from auralis_batch.kernels import tempo as tk

TOLERANCE = 0.04
ACC2_FACTORS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)


@dataclass
class Clip:
    name: str
    label: dict
    acf: np.ndarray | None  # autocorrelation the estimator reads (None: too short)
    frame_rate: float
    xcf: np.ndarray | None = None  # low/high cross-correlation (FEAT_BACKBEAT)

    @property
    def bpm(self) -> float:
        return float(self.label["bpm"])


def load_truth(set_dir: str | os.PathLike) -> dict[str, dict]:
    with open(Path(set_dir) / "truth.json") as f:
        return json.load(f)


def halves(truth: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Half A and half B (see the module docstring)."""
    keys = sorted(truth, key=lambda k: (truth[k]["source"], truth[k]["style"], truth[k]["bpm"], k))
    return keys[0::2], keys[1::2]


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """``(channels, n)`` float64 and the sample rate."""
    import soundfile as sf

    x, sr = sf.read(path, always_2d=True, dtype="float64")
    return np.ascontiguousarray(x.T), int(sr)


def _front_end_code() -> str:
    """A hash of the code that turns audio into the autocorrelations (the tempo
    kernels and the tracker), so a cache made by other code is not read."""
    import hashlib
    import inspect

    from auralis_batch import fingerprint

    text = Path(tk.__file__).read_bytes() + inspect.getsource(fingerprint).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def load_clips(set_dir: str | os.PathLike, cache: str | None = None) -> dict[str, Clip]:
    """Every clip's autocorrelation (decoded and analysed once; ``cache``: an .npz
    file that keeps them between runs, invalidated by size and mtime of the audio and
    by any change to the tempo kernels or the fingerprint module)."""
    truth = load_truth(set_dir)
    stored: dict[str, np.ndarray] = {}
    code = _front_end_code()
    if cache and os.path.exists(cache):
        with np.load(cache) as z:
            if "__code" in z.files and str(z["__code"]) == code:
                stored = {k: z[k] for k in z.files}
    clips: dict[str, Clip] = {}
    fresh: dict[str, np.ndarray] = {}
    for name in sorted(truth):
        path = Path(set_dir) / "audio" / name
        st = path.stat()
        stamp = np.array([st.st_size, st.st_mtime])
        key = name.replace(".", "_")
        if (
            key in stored
            and key + "__x" in stored
            and np.array_equal(stored[key + "__stamp"], stamp)
        ):
            acf, fr = stored[key], float(stored[key + "__fr"][0])
            acf = acf if acf.size else None
            xcf = stored[key + "__x"]
        else:
            x, sr = decode(path)
            tracker = tempo_tracker(x, sr)
            acf, fr = tracker.autocorrelation(), tracker.frame_rate
            xcf = tracker.cross_correlation()
        fresh[key] = acf if acf is not None else np.zeros(0)
        fresh[key + "__fr"] = np.array([fr])
        fresh[key + "__stamp"] = stamp
        fresh[key + "__x"] = xcf
        clips[name] = Clip(name, truth[name], acf, fr, xcf)
    if cache:
        np.savez(cache, __code=np.array(code), **fresh)
    return clips


def levels_of(clip: Clip, params: np.ndarray) -> np.ndarray:
    """The kernel's level table for a clip (``kernels.tempo.LEVEL_*`` columns)."""
    if clip.acf is None or not clip.acf[0] > 0:
        return np.zeros((0, tk.LEVEL_COLUMNS))
    return tk.beat_levels(clip.acf / clip.acf[0], _xcf(clip), clip.frame_rate, params)


def _xcf(clip: Clip) -> np.ndarray:
    return clip.xcf if clip.xcf is not None else np.zeros_like(clip.acf)


def estimate(clip: Clip, params: np.ndarray) -> tuple[float, float, list[tuple[float, float]]]:
    """``(bpm, confidence, runners-up)`` of the shipped kernel with these parameters."""
    if clip.acf is None:
        return 120.0, 0.0, []
    bpm, conf, rb, rs = tk.tempo_from_acf(clip.acf, _xcf(clip), clip.frame_rate, params, 120.0)
    runners = [(float(b), float(s)) for b, s in zip(rb, rs, strict=True) if math.isfinite(b)]
    return float(bpm), float(conf), runners


def acc1(est: float | None, truth: float) -> bool:
    return est is not None and abs(est - truth) <= TOLERANCE * truth


def acc2(est: float | None, truth: float) -> bool:
    if est is None:
        return False
    return any(abs(est - f * truth) <= TOLERANCE * f * truth for f in ACC2_FACTORS)


def score(estimates: dict[str, float], truth: dict[str, dict], keys: Iterable[str]) -> tuple:
    """``(n, Acc1 count, Acc2 count)`` over ``keys``."""
    keys = list(keys)
    a1 = sum(acc1(estimates.get(k), float(truth[k]["bpm"])) for k in keys)
    a2 = sum(acc2(estimates.get(k), float(truth[k]["bpm"])) for k in keys)
    return len(keys), a1, a2


def pct(k: int, n: int) -> str:
    return f"{100.0 * k / n:.1f} %" if n else "-"


def librosa_tempi(set_dir: str | os.PathLike, cache: str | None) -> dict[str, dict[str, float]]:
    """librosa.beat.beat_track's tempo per clip: ``sr22050`` (librosa.load's default
    resampling, as the issue measured) and ``sr44100`` (the decoded array's mean, the
    array the speed benchmark hands both)."""
    if cache and os.path.exists(cache):
        with open(cache) as f:
            return json.load(f)
    import librosa

    out = {}
    for name in sorted(load_truth(set_dir)):
        path = Path(set_dir) / "audio" / name
        y22, _ = librosa.load(path, sr=22050)
        t22 = float(np.atleast_1d(librosa.beat.beat_track(y=y22, sr=22050)[0])[0])
        x, sr = decode(path)
        y = np.ascontiguousarray(x.mean(axis=0), dtype=np.float32)
        t44 = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=sr)[0])[0])
        out[name] = {"sr22050": t22, "sr44100": t44}
    if cache:
        with open(cache, "w") as f:
            json.dump(out, f, indent=1)
    return out
