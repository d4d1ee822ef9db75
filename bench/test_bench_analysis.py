"""Tempo agreement with librosa on the corpus (reported, not a goal).

The analysis and tempo speed goals against librosa live in ``test_bench_tempo.py``
(one measurement of each contender).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CORPUS

from auralis_batch.fingerprint import estimate_tempo

librosa = pytest.importorskip("librosa")


def test_tempo_agreement_with_librosa_on_the_corpus():
    """Reported, not a quality claim: orchestral music has no single reliable tempo."""
    files = sorted(CORPUS.glob("*.ogg"))
    if not files:
        pytest.skip(f"corpus not found at {CORPUS}")
    import soundfile as sf

    rows = []
    for f in files:
        x, sr = sf.read(f, always_2d=True)
        ours, conf = estimate_tempo(x.T, sr)
        y = np.ascontiguousarray(x.mean(axis=1), dtype=np.float32)
        theirs = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=sr)[0])[0])
        r = ours / theirs
        same = abs(r - 1) <= 0.04
        octave = any(abs(r - k) <= 0.04 * k for k in (0.5, 2.0, 1 / 3, 3.0))
        rows.append((f.name, round(ours, 1), round(conf, 2), round(theirs, 1), same, octave))
    print()
    for row in rows:
        name, ours, conf, theirs, same, octave = row
        print(
            f"{name:<16s} ours {ours:6.1f} (conf {conf:.2f})  librosa {theirs:6.1f}"
            f"  same {same}  octave {octave}"
        )
    agree = sum(r[4] for r in rows)
    either = sum(r[4] or r[5] for r in rows)
    print(f"agree within 4 %: {agree}/{len(rows)}; within 4 % or an octave: {either}/{len(rows)}")
    assert len(rows) == len(files)
