"""Fit the beat-level weights on the tempo set and cross-check them, both ways.

Usage::

    python bench/tempo/fit.py SET [--cache acf.npz] [--librosa-cache librosa.json]
        [--save-params cv.json] [--synthetic-weight W]

SET is a tempo set built by ../shared/tempo-set/build.py. The script

1. reads every clip's autocorrelation through the shipped tempo path;
2. for each half (tempo_set.halves), chooses the structural constants (the reference's
   prior, the duple eligibility threshold) and the fitting's hyper-parameters (L2
   strength, the weight of the ternary feature, the scale the backbeat feature is
   fitted at, i.e. its own L2 strength) by leave-one-out inside that half
   only, fits the weights on it (conditional logit: the labelled level against the
   other eligible levels of the clip) and scores the *other* half with them;
3. does the same on the whole set for the weights to ship (printed as
   ``TEMPO_WEIGHTS``), and scores them (in-sample, for reference only);
4. with ``--save-params FILE``, writes the parameter vectors chosen for each held-out
   half, so bench/tempo/cli_check.py can replay the cross-check through the CLI;
5. prints Acc1/Acc2 per half, overall, per style and meter, librosa's beat_track on
   the same clips, and Acc1 above and below the confidence threshold.

``--synthetic-weight W`` adds to every training set, with weight W, a synthetic
backbeat set (the drum patterns of tests/signals.py at 65-195 BPM, straight and swung,
with and without bass and pads, seeds unlike the unit test's); the held-out halves stay
tempo-set clips only. Off by default: it made the cross-check noisier, not better.
The L2 grid stops at 0.3: stronger shrinkage leaves the tempo prior alone to decide,
and those weights double the synthetic drum patterns below 80 BPM
(tests/test_fingerprint.py).

No clip is treated specially; the only inputs are the labels and the audio.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.signals

import tempo_set as ts

from auralis_batch.fingerprint import (
    TEMPO_CONFIDENCE_THRESHOLD,
    TEMPO_WEIGHTS,
    tempo_params,
)
from auralis_batch.kernels import tempo as tk

LAMBDAS = (0.03, 0.1, 0.3)
SYNTHETIC_BPM = tuple(float(b) for b in range(65, 200, 10))
TERNARY_WEIGHTS = (None, 4.0)  # None: fitted like the others
#: FEAT_BACKBEAT is scaled by these while fitting (the L2 penalty on its weight shrinks
#: by the square); the weight is scaled back, so the kernel reads the feature as is.
BACKBEAT_SCALES = (1.0, 4.0)
SYNTHETIC_WEIGHT = [0.0]  # --synthetic-weight
STRUCTURES = [
    {"reference_bpm": bpm, "reference_octaves": octv, "min_duple": duple}
    for bpm in (100.0, 110.0, 120.0)
    for octv in (1.0, 1.5)
    for duple in (0.0, 0.5)
]


def synthetic_clips() -> dict[str, ts.Clip]:
    """The synthetic backbeat set (see the module docstring)."""
    from auralis_batch.fingerprint import tempo_tracker
    from tests.signals import drum_pattern

    out = {}
    variants = ((0.0, False), (1 / 3, False), (0.0, True), (1 / 3, True))
    for bpm in SYNTHETIC_BPM:
        for j, (swing, extras) in enumerate(variants):
            seed = 1000 + int(bpm) + 7 * j
            x = drum_pattern(bpm, seconds=16.0, swing=swing, bass=extras, pads=extras, seed=seed)
            tracker = tempo_tracker(x, 44100)
            name = f"synthetic_{bpm:.0f}_{j}"
            out[name] = ts.Clip(
                name,
                {"bpm": bpm},
                tracker.autocorrelation(),
                tracker.frame_rate,
                tracker.cross_correlation(),
            )
    return out


class Problem:
    """The eligible levels of the clips, stacked for a vectorised conditional logit."""

    def __init__(self, clips, params, weights=None):
        self.rows = {}
        self.weight = weights or {}
        for name, clip in clips.items():
            lv = ts.levels_of(clip, params)
            lv = lv[lv[:, tk.LEVEL_ELIGIBLE] == 1.0]
            y = np.abs(lv[:, tk.LEVEL_BPM] - clip.bpm) <= ts.TOLERANCE * clip.bpm
            self.rows[name] = (lv[:, tk.LEVEL_FEATURES :], y)

    def stack(self, keys):
        keys = [k for k in keys if self.rows[k][1].any()]  # label among the levels
        x = np.concatenate([self.rows[k][0] for k in keys])
        y = np.concatenate([self.rows[k][1] for k in keys]).astype(float)
        seg = np.concatenate([np.full(len(self.rows[k][1]), i) for i, k in enumerate(keys)])
        wt = np.array([self.weight.get(k, 1.0) for k in keys])
        return x, y, seg, wt


def fit(problem, keys, lam, ternary, start=None, backbeat_scale=1.0):
    """Weights maximising the labelled level's softmax share (L2 ``lam``); the ternary
    weight is held at ``ternary`` unless it is None; FEAT_BACKBEAT is fitted scaled by
    ``backbeat_scale`` (BACKBEAT_SCALES) and its weight returned for the unscaled one."""
    from scipy.optimize import minimize

    x, y, seg, wt = problem.stack(keys)
    x = x.copy()
    x[:, tk.FEAT_BACKBEAT] *= backbeat_scale
    n = len(wt)
    free = [f for f in range(tk.N_FEATURES) if ternary is None or f != tk.FEAT_TERNARY]

    def full(v):
        w = np.zeros(tk.N_FEATURES)
        w[free] = v
        if ternary is not None:
            w[tk.FEAT_TERNARY] = ternary
        return w

    def nll(v):
        u = x @ full(v)
        top = np.full(n, -np.inf)
        np.maximum.at(top, seg, u)
        e = np.exp(u - top[seg])
        z = np.bincount(seg, e, n)
        zy = np.bincount(seg, e * y, n)
        loss = np.sum(wt * (np.log(z) - np.log(zy + 1e-300)))
        coef = wt[seg] * (e / z[seg] - e * y / (zy[seg] + 1e-300))
        grad = coef @ x
        return loss + lam * v @ v, grad[free] + 2 * lam * v

    if start is None:
        v0 = np.zeros(len(free))
    else:
        v0 = start.copy()
        v0[tk.FEAT_BACKBEAT] /= backbeat_scale
        v0 = v0[free]
    w = full(minimize(nll, v0, jac=True, method="L-BFGS-B").x)
    w[tk.FEAT_BACKBEAT] *= backbeat_scale
    return w


def predict(clips, keys, weights, structure):
    prm = tempo_params(weights, **structure)
    return {k: ts.estimate(clips[k], prm) for k in keys}


def choose_hyper(clips, keys, synthetic):
    """Structure, lam, ternary weight and backbeat scale with the best leave-one-out
    Acc1 (+ Acc2 / 2) over the set clips in ``keys`` (the synthetic clips always train)."""
    best = None
    pool = {**{k: clips[k] for k in keys}, **synthetic}
    weights = dict.fromkeys(synthetic, SYNTHETIC_WEIGHT[0])
    for structure in STRUCTURES:
        problem = Problem(pool, tempo_params(TEMPO_WEIGHTS, **structure), weights)
        for ternary in TERNARY_WEIGHTS:
            for lam in LAMBDAS:
                for scale in BACKBEAT_SCALES:
                    w_all = fit(problem, list(pool), lam, ternary, backbeat_scale=scale)
                    good = 0.0
                    for k in keys:
                        rest = [x for x in pool if x != k]
                        w = fit(problem, rest, lam, ternary, w_all, scale)
                        bpm = predict(clips, [k], w, structure)[k][0]
                        good += ts.acc1(bpm, clips[k].bpm) + 0.5 * ts.acc2(bpm, clips[k].bpm)
                    if best is None or good > best[0]:
                        best = (good, structure, lam, ternary, scale, problem)
    return best[1:]


def table(title, rows):
    """rows: list of (label, cells...) -> markdown."""
    lines = [title, ""]
    for i, r in enumerate(rows):
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
        if i == 0:
            lines.append("|" + "---|" * len(r))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set_dir")
    ap.add_argument("--cache", help="npz file for the clips' autocorrelations")
    ap.add_argument("--librosa-cache", help="json file for librosa's tempi")
    ap.add_argument("--no-librosa", action="store_true")
    ap.add_argument("--synthetic-weight", type=float, default=0.0)
    ap.add_argument(
        "--save-params",
        help="json file for the parameter vectors chosen per half (bench/tempo/cli_check.py)",
    )
    args = ap.parse_args()
    SYNTHETIC_WEIGHT[0] = args.synthetic_weight

    clips = ts.load_clips(args.set_dir, args.cache)
    truth = {k: c.label for k, c in clips.items()}
    half_a, half_b = ts.halves(truth)

    cv: dict[str, tuple] = {}
    saved = {}
    synthetic = synthetic_clips() if args.synthetic_weight > 0 else {}
    for train, test, name in ((half_b, half_a, "A"), (half_a, half_b, "B")):
        structure, lam, ternary, scale, problem = choose_hyper(clips, train, synthetic)
        w = fit(problem, list(train) + list(synthetic), lam, ternary, backbeat_scale=scale)
        cv.update(predict(clips, test, w, structure))
        saved[name] = {"clips": sorted(test), "params": tempo_params(w, **structure).tolist()}
        print(f"held-out {name}: chosen on the other half: {structure}, lam={lam},", end=" ")
        print(f"ternary={ternary}, backbeat scale={scale}")
        print(f"  weights {np.round(w, 3).tolist()}")
    if args.save_params:
        with open(args.save_params, "w") as f:
            json.dump(saved, f, indent=1)
    structure, lam, ternary, scale, problem = choose_hyper(clips, sorted(clips), synthetic)
    shipped_w = fit(problem, sorted(clips) + list(synthetic), lam, ternary, backbeat_scale=scale)
    print(f"whole set: {structure}, lam={lam}, ternary={ternary}, backbeat scale={scale}")
    print(f"TEMPO_WEIGHTS = {tuple(round(float(v), 3) for v in shipped_w)}")
    shipped = predict(clips, sorted(clips), TEMPO_WEIGHTS, {})
    refit = predict(clips, sorted(clips), shipped_w, structure)

    lib = {} if args.no_librosa else ts.librosa_tempi(args.set_dir, args.librosa_cache)
    est_cv = {k: v[0] for k, v in cv.items()}
    est_sh = {k: v[0] for k, v in shipped.items()}
    est_rf = {k: v[0] for k, v in refit.items()}
    contenders = [("ours, cross-checked", est_cv), ("ours, shipped weights", est_sh)]
    if not np.allclose(list(est_rf.values()), list(est_sh.values())):
        contenders.append(("ours, weights just fitted", est_rf))
    for col in ("sr22050", "sr44100"):
        if lib:
            contenders.append((f"librosa beat_track {col}", {k: v[col] for k, v in lib.items()}))

    def row(label, keys):
        cells = [label, len(keys)]
        for _, est in contenders:
            n, a1, a2 = ts.score(est, truth, keys)
            cells.append(f"{ts.pct(a1, n)} / {ts.pct(a2, n)}")
        return cells

    head = ["", "n"] + [f"{c} Acc1 / Acc2" for c, _ in contenders]
    print()
    print(
        table(
            "Halves (held-out: fitted on the other half)",
            [head, row("half A", half_a), row("half B", half_b), row("all", sorted(clips))],
        )
    )
    for key in ("style", "meter", "source"):
        groups = defaultdict(list)
        for k, lab in truth.items():
            groups[lab[key]].append(k)
        print()
        print(table(f"By {key}", [head] + [row(g, sorted(v)) for g, v in sorted(groups.items())]))

    print()
    rows = [["", "threshold", "n above", "Acc1 above", "n below", "Acc1 below"]]
    for label, res in (("cross-checked", cv), ("shipped", shipped)):
        above = [k for k, v in res.items() if v[1] >= TEMPO_CONFIDENCE_THRESHOLD]
        below = [k for k, v in res.items() if v[1] < TEMPO_CONFIDENCE_THRESHOLD]
        a = ts.score({k: res[k][0] for k in res}, truth, above)
        b = ts.score({k: res[k][0] for k in res}, truth, below)
        rows.append(
            [label, TEMPO_CONFIDENCE_THRESHOLD, a[0], ts.pct(a[1], a[0]), b[0], ts.pct(b[1], b[0])]
        )
    print(table("Confidence split", rows))

    print("\nmisses (cross-checked):")
    for k in sorted(truth, key=lambda k: truth[k]["bpm"]):
        bpm, conf, runners = cv[k]
        if not ts.acc1(bpm, clips[k].bpm):
            half = "A" if k in half_a else "B"
            alts = ", ".join(f"{b:.1f} ({s:.2f})" for b, s in runners)
            print(
                f"  {half} {k:30s} {clips[k].bpm:7.2f} -> {bpm:7.2f} ({bpm / clips[k].bpm:5.3f}),"
                f" conf {conf:.2f}; runners-up {alts}"
            )


if __name__ == "__main__":
    main()
