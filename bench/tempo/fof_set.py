#!/usr/bin/env python3
"""Build a held-out tempo set of real recorded rock and metal from Debian packages.

Frets on Fire's song packages (``fretsonfire-songs-muldjord``: four songs by Muldjord,
``fretsonfire-songs-sectoid``: four by Sectoid; Debian main, free licences) ship each
song as the band's own recording, in stems (``song.ogg``: the band without the lead
guitar, ``guitar.ogg``, sometimes ``rhythm.ogg``), with the game's chart
(``notes.mid``). The chart's notes are placed on the recording's beat grid, so its
tempo map gives the tempo of the recording. This is the one source of real, played
and produced rock here: the issue's independent check is on rock songs, and the
other sets are rendered from MIDI (tempo set) or sequenced (LMMS).

This script:

1. downloads both packages with ``apt-get download`` (or takes them from ``--debs``)
   and unpacks them with ``dpkg-deb -x``; installs nothing;
2. reads every song's tempo map from ``notes.mid`` and skips a song whose tempo
   changes (none does in the packages of Debian 12);
3. mixes its stems (their sum, scaled down as a whole if it would clip) and cuts a
   clip of up to ``--clip-seconds`` (60) from ``--start-fraction`` (25 %) into it;
4. checks the label against the audio: the onset envelope folded on the labelled
   beat period against periods 0.5-1 % off (``beat_fold``, as ``lmms_set.py``);
5. writes ``audio/*.flac`` (44.1 kHz, 16-bit, stereo), ``truth.json`` in the tempo
   set's format (scored by its ``score.py`` and by ``cli_check.py``) and
   ``manifest.json`` (package versions, sha256 of every clip, the fold checks).

The label is the chart's quarter note. Fast metal (170-190 BPM here) is often
tapped at half that: Acc2 counts it, Acc1 does not.

Usage::

    python bench/tempo/fof_set.py OUT_DIR
    python bench/tempo/cli_check.py OUT_DIR      # auralis-batch and librosa, scored

Needs apt-get and dpkg-deb (Debian), numpy, soundfile and mido (the bench extra).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lmms_set import beat_fold  # the same check as the LMMS set

PACKAGES = ("fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid")
SONGS = "usr/share/games/fretsonfire/data/songs"
SR = 44100


def tempo_map(mid_path: str) -> list[tuple[float, float]]:
    """``[(beat, bpm), ...]`` of a MIDI file's tempo events, repeats dropped."""
    import mido

    midi = mido.MidiFile(mid_path)
    events = []
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                events.append((tick / midi.ticks_per_beat, round(mido.tempo2bpm(msg.tempo), 4)))
    events.sort()
    out: list[tuple[float, float]] = []
    for beat, bpm in events:
        if not out or bpm != out[-1][1]:
            out.append((beat, bpm))
    return out


def mix_stems(song_dir: str) -> np.ndarray:
    """The sum of the song's stems, ``(n, 2)`` float64 at 44.1 kHz."""
    stems = []
    for name in ("song.ogg", "guitar.ogg", "rhythm.ogg"):
        path = os.path.join(song_dir, name)
        if os.path.exists(path):
            x, sr = sf.read(path, always_2d=True, dtype="float64")
            if sr != SR:
                raise SystemExit(f"{path}: {sr} Hz, expected {SR}")
            stems.append(x if x.shape[1] == 2 else np.repeat(x[:, :1], 2, axis=1))
    n = max(len(s) for s in stems)
    mix = np.zeros((n, 2))
    for s in stems:
        mix[: len(s)] += s
    peak = np.abs(mix).max()
    return mix / peak * 0.98 if peak > 0.98 else mix


def package_version(deb: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--debs", help="folder holding the two .deb files (else apt-get download)")
    ap.add_argument("--clip-seconds", type=float, default=60.0)
    ap.add_argument("--start-fraction", type=float, default=0.25)
    args = ap.parse_args()
    out = Path(args.out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        debs_dir = args.debs or tmp
        if not args.debs:
            subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=True)
        debs = sorted(glob.glob(os.path.join(debs_dir, "fretsonfire-songs-*.deb")))
        if len(debs) != len(PACKAGES):
            raise SystemExit(f"expected {len(PACKAGES)} packages in {debs_dir}, found {debs}")
        root = os.path.join(tmp, "x")
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        truth, manifest = {}, {"packages": {}, "clips": {}, "skipped": {}}
        for deb in debs:
            manifest["packages"][os.path.basename(deb)] = package_version(deb)
        for mid in sorted(glob.glob(os.path.join(root, SONGS, "*", "*", "notes.mid"))):
            song_dir = os.path.dirname(mid)
            author = os.path.basename(os.path.dirname(song_dir))
            title = os.path.basename(song_dir)
            tempi = tempo_map(mid)
            if len(tempi) != 1:
                manifest["skipped"][f"{author}/{title}"] = f"tempo changes: {tempi}"
                print(f"  skipped {author}/{title}: tempo changes", file=sys.stderr)
                continue
            bpm = tempi[0][1]
            mix = mix_stems(song_dir)
            clip_n = int(args.clip_seconds * SR)
            start = min(int(len(mix) * args.start_fraction), max(0, len(mix) - clip_n))
            clip = mix[start : start + clip_n]
            pcm = np.round(clip * 32767.0).astype(np.int16)
            name = "fof_" + re.sub(r"[^a-z0-9]+", "_", f"{author} {title}".lower()).strip("_")
            path = out / "audio" / f"{name}.flac"
            sf.write(path, pcm, SR, subtype="PCM_16")
            start_s = start / SR
            truth[path.name] = {
                "beat_unit": "quarter",
                "bpm": bpm,
                "duration_s": round(len(clip) / SR, 3),
                "feel": "straight",
                "meter": "4/4",
                "origin": f"{author}/{title}: stems mixed, tempo from notes.mid",
                "source": f"fretsonfire-{author}",
                "start_s": round(start_s, 3),
                "style": "metal" if author == "muldjord" else "rock",
            }
            fold = beat_fold(pcm, start_s, bpm)
            manifest["clips"][path.name] = {
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "beat_fold": fold,
            }
            print(f"  {path.name}: {bpm:g} BPM, fold {fold}", file=sys.stderr)
    (out / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"done: {len(truth)} clips in {out / 'audio'}", file=sys.stderr)


if __name__ == "__main__":
    main()
