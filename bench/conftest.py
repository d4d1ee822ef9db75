"""Shared benchmark inputs: one 4-minute stereo 44.1 kHz track decoded once per session
(the corpus track loyalists.ogg looped, or a synthesised mix without the corpus), and a
best-of-N timer that alternates the contenders so machine load hits all alike."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.signals: the synthetic drum mix

SR = 44100
CORPUS = ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def track() -> np.ndarray:
    """``(2, 240 * 44100)`` float64, C-contiguous."""
    n = 240 * SR
    src = CORPUS / "loyalists.ogg"
    if src.exists():
        import soundfile as sf

        x, sr = sf.read(src, always_2d=True)
        assert sr == SR
        x = np.tile(x.T, (1, n // x.shape[0] + 1))[:, :n]
    else:
        from tests.signals import drum_pattern

        x = drum_pattern(124.0, seconds=240.0, bass=True, pads=True)
    return np.ascontiguousarray(x * (0.5 / np.abs(x).max()))


def best_alternating(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time (s) of each callable over ``rounds``, run in turn each round."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best
