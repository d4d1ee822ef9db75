"""Tempo under what real recordings go through: the tempo set mastered by the tool
itself (``--preset punchy``: compression and limiting to -12 LUFS) and encoded as MP3
(libsndfile's LAME at ``compression_level=0.7``, about 80 kbit/s), each analysed with
``auralis-batch analyze --json --no-cache`` in a fresh process and scored by the set's
own ``score.py``, beside the untouched set.

Usage::

    python bench/tempo/robustness.py SET [--score ../shared/tempo-set/score.py] [--out DIR]

The shipped weights were fitted on the whole set, so these are in-sample figures: they
say how much the estimate moves when the audio is processed, not how good it is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_SCORE = Path(__file__).resolve().parents[3] / "shared" / "tempo-set" / "score.py"


def analyse(folder: Path) -> list[dict]:
    """``analyze --json --no-cache`` on ``folder``, the paths renamed to the set's FLAC
    names (score.py matches by file name)."""
    run = subprocess.run(
        ["auralis-batch", "analyze", "--json", "--no-cache", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(run.stdout)
    for row in rows:
        row["path"] = str(Path(row["path"]).with_suffix(".flac"))
    return rows


def overall(score: Path, tempo_set: Path, rows: list[dict], out: Path) -> str:
    """score.py's overall line (``all  n  Acc1  Acc2``) for ``rows``."""
    out.write_text(json.dumps(rows))
    report = subprocess.run(
        [sys.executable, str(score), str(tempo_set), str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return next(line for line in report.splitlines() if line.startswith("all "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tempo_set", type=Path, help="a tempo set built by build.py")
    ap.add_argument("--score", type=Path, default=DEFAULT_SCORE, help="the set's score.py")
    ap.add_argument("--out", type=Path, default=None, help="keep the variants here")
    args = ap.parse_args()
    import soundfile as sf

    work = args.out or Path(tempfile.mkdtemp(prefix="tempo-robustness-"))
    audio = args.tempo_set / "audio"
    mastered = work / "punchy"
    master = ["auralis-batch", "master", str(audio), "--out", str(mastered)]
    subprocess.run([*master, "--preset", "punchy", "--no-cache", "-q", "-j", "1"], check=True)
    mp3 = work / "mp3"
    mp3.mkdir(parents=True, exist_ok=True)
    for flac in sorted(audio.glob("*.flac")):
        x, sr = sf.read(flac)
        sf.write(mp3 / f"{flac.stem}.mp3", x, sr, format="MP3", compression_level=0.7)
    print(f"variants in {work}")
    print("                     n   Acc1    Acc2")
    for name, folder in (("untouched", audio), ("mastered (punchy)", mastered), ("MP3", mp3)):
        line = overall(args.score, args.tempo_set, analyse(folder), work / f"{name[:3]}.json")
        print(f"{name:<18} {line[3:].strip()}")


if __name__ == "__main__":
    main()
