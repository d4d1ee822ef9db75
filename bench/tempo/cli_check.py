"""Score tempo the way a user gets it: ``auralis-batch analyze --json`` in a fresh
process, scored by the set's own ``score.py``, per half and overall, beside librosa.

Usage::

    python bench/tempo/fit.py SET --save-params cv.json    # the cross-check's parameters
    python bench/tempo/cli_check.py SET [--params cv.json] [--librosa-cache librosa.json]
        [--score ../shared/tempo-set/score.py] [--out DIR]

Runs, each in its own process, on the decoded FLAC exactly as the CLI reads it:

* **shipped**: ``auralis-batch analyze --json --no-cache SET/audio`` (the shipped
  weights, fitted on the whole set: in-sample);
* **cross-checked** (with ``--params``): the same command on each half's files, with
  the parameter vector that bench/tempo/fit.py chose and fitted on the *other* half
  swapped in for the shipped one (``fingerprint._TEMPO_PARAMS``, nothing else changes);
* **librosa** ``beat_track`` at 22.05 kHz (``librosa.load``'s default, as issue 13
  measured it) and on the 44.1 kHz decoded mono array, written in the same JSON format.

Each result file is scored with ``score.py`` over the whole set and over each half
(tempo_set.halves); per style group, Acc1 is compared with librosa's. The JSON results
and score.py's full reports go to ``--out`` (default: a temporary folder, printed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tempo_set as ts

from auralis_batch.fingerprint import TEMPO_CONFIDENCE_THRESHOLD

DEFAULT_SCORE = Path(__file__).resolve().parents[3] / "shared" / "tempo-set" / "score.py"
#: Runs the CLI with another tempo parameter vector (argv[1]: a JSON list).
_SWAPPED = (
    "import json, sys, numpy as np\n"
    "import auralis_batch.fingerprint as fp\n"
    "fp._TEMPO_PARAMS = np.array(json.loads(sys.argv.pop(1)), dtype=np.float64)\n"
    "from auralis_batch.cli import main\n"
    "sys.argv[0] = 'auralis-batch'\n"
    "main()\n"
)


def run_cli(files: list[str], params: list[float] | None) -> list[dict]:
    """``analyze --json --no-cache`` on ``files`` in a fresh process."""
    if params is None:
        cmd = ["auralis-batch"]
    else:
        cmd = [sys.executable, "-c", _SWAPPED, json.dumps(params)]
    out = subprocess.run(
        [*cmd, "analyze", "--json", "--no-cache", *files],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def score(score_py: str, set_dir: str, rows: list[dict], keys: list[str]) -> tuple[dict, str]:
    """score.py on the rows of ``keys``: (its --json rows by file, its text report)."""
    keep = set(keys)
    sub = json.dumps([r for r in rows if Path(r["path"]).name in keep])
    base = [sys.executable, score_py, set_dir, "-"]
    text = subprocess.run(base, input=sub, capture_output=True, text=True, check=True).stdout
    js = subprocess.run(
        [*base, "--json"], input=sub, capture_output=True, text=True, check=True
    ).stdout
    return {r["file"]: r for r in json.loads(js)["rows"]}, text


def pct(rows: dict, keys: list[str], field: str) -> str:
    n = len(keys)
    k = sum(bool(rows[x][field]) for x in keys)
    return f"{100.0 * k / n:.1f} %" if n else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set_dir")
    ap.add_argument("--params", help="json written by fit.py --save-params")
    ap.add_argument("--librosa-cache", help="json file for librosa's tempi")
    ap.add_argument("--score", default=str(DEFAULT_SCORE), help="the set's score.py")
    ap.add_argument("--out", help="folder for the results and score.py's reports")
    args = ap.parse_args()
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="tempo-cli-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    truth = ts.load_truth(args.set_dir)
    half_a, half_b = ts.halves(truth)
    every = sorted(truth)
    audio = Path(args.set_dir) / "audio"

    results: dict[str, list[dict]] = {}
    results["shipped"] = run_cli([str(audio)], None)
    if args.params:
        with open(args.params) as f:
            saved = json.load(f)
        rows = []
        for half in ("A", "B"):
            files = [str(audio / k) for k in saved[half]["clips"]]
            rows += run_cli(files, saved[half]["params"])
        results["cross-checked"] = rows
    lib = ts.librosa_tempi(args.set_dir, args.librosa_cache)
    for col in ("sr22050", "sr44100"):
        results[f"librosa {col}"] = [
            {"path": str(audio / k), "tempo_bpm": v[col]} for k, v in sorted(lib.items())
        ]

    scored = {}
    for label, rows in results.items():
        slug = label.replace(" ", "_")
        (out_dir / f"{slug}.json").write_text(json.dumps(rows, indent=1))
        scored[label], text = score(args.score, args.set_dir, rows, every)
        (out_dir / f"{slug}.score.txt").write_text(text)
    print(f"results and score.py reports in {out_dir}\n")

    print("| Acc1 / Acc2 (score.py) | half A | half B | all |")
    print("|---|---|---|---|")
    for label, rows in scored.items():
        cells = [
            f"{pct(rows, k, 'acc1')} / {pct(rows, k, 'acc2')}" for k in (half_a, half_b, every)
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")

    groups = defaultdict(list)
    for k, lab in truth.items():
        groups[lab["style"]].append(k)
    ours = "cross-checked" if "cross-checked" in scored else "shipped"
    print(f"\n| style | n | {' | '.join(scored)} | {ours} below librosa sr22050? |")
    print("|---|---|" + "---|" * (len(scored) + 1))
    for style, keys in sorted(groups.items()):
        cells = [pct(rows, keys, "acc1") for rows in scored.values()]
        o = sum(scored[ours][k]["acc1"] for k in keys)
        t = sum(scored["librosa sr22050"][k]["acc1"] for k in keys)
        print(f"| {style} | {len(keys)} | " + " | ".join(cells) + f" | {'yes' if o < t else ''} |")

    print(f"\nConfidence split at {TEMPO_CONFIDENCE_THRESHOLD} (Acc1 above / below):")
    for label in ("shipped", "cross-checked"):
        if label not in results:
            continue
        conf = {Path(r["path"]).name: r["tempo_confidence"] for r in results[label]}
        above = [k for k in every if conf[k] >= TEMPO_CONFIDENCE_THRESHOLD]
        below = [k for k in every if conf[k] < TEMPO_CONFIDENCE_THRESHOLD]
        rows = scored[label]
        print(
            f"  {label}: {pct(rows, above, 'acc1')} of {len(above)} above,"
            f" {pct(rows, below, 'acc1')} of {len(below)} below"
        )
    for label in ("shipped", "cross-checked"):
        if label in scored:
            miss = [k for k in every if not scored[label][k]["acc1"]]
            print(
                f"\n{label} misses: "
                + ", ".join(
                    f"{k} {scored[label][k]['truth_bpm']:g}->{scored[label][k]['est_bpm']:g}"
                    f" ({scored[label][k]['factor']})"
                    for k in miss
                )
            )


if __name__ == "__main__":
    main()
