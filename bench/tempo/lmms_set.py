#!/usr/bin/env python3
"""Build a held-out tempo test set from the demo songs that ship with LMMS.

LMMS (Debian packages ``lmms`` / ``lmms-common``) installs a few dozen song
projects under /usr/share/lmms/projects.  Every project states the tempo the
sequencer plays it at (``<head bpm=...>``, quarter notes per minute in LMMS,
whatever the time signature), so a headless render of a project is a real,
fully produced electronic track whose tempo is known exactly.  This script:

1. finds every song project (``*.mmp``: XML, ``*.mmpz``: a 4-byte big-endian
   length followed by zlib-compressed XML) under --projects;
2. skips projects whose tempo or time signature can change during the song
   (the tempo model is automated or controller-connected, or an automation
   pattern targets it), printing the reason;
3. renders each remaining project with ``lmms render`` to 44.1 kHz 16-bit WAV
   and checks that the render length is the song length at the labelled tempo
   (LMMS renders the song's bars plus one bar of tail, so a render made at any
   other average tempo would have another length);
4. cuts a clip: the song runs from the bar line before its first sound to
   the end of its last pattern; the clip is up to --clip-seconds (60) from
   --start-fraction (25 %) into the song, rounded down to a bar line (and moved
   to the next sounding bar if that bar is silent); a song of at most
   --clip-seconds is taken whole, one shorter than --min-seconds (30) is
   skipped.  manifest.json also records, per clip, how sharply the onset
   envelope repeats at the labelled beat period against periods 0.5-1 % off
   (``beat_fold``), an audio-side check of the label, and where the project's
   kick and snare notes fall in the bar (evidence for half/double readings);
5. writes ``audio/*.flac`` (44.1 kHz, 16-bit, stereo; the rendered samples,
   not re-quantised), ``truth.json`` in the format of the tempo set scored by
   ``score.py`` and ``manifest.json`` (versions, sha256 of every clip and
   project, render checks, skipped projects and why).

Usage::

    python3 lmms_set.py OUT_DIR               # apt-get install -y lmms first
    auralis-batch analyze OUT_DIR/audio --json --no-cache > results.json
    python3 score.py OUT_DIR results.json

Needs: the ``lmms`` binary (Debian: ``apt-get install -y lmms``), Python 3.9+
with numpy and soundfile.  Installs nothing itself.  Renders one project at a
time unless --jobs is given (LMMS itself uses several threads).

Reproducibility: the project list, labels, clip positions and lengths depend
only on the lmms-common version (recorded in manifest.json).  The audio does
not repeat bit for bit: LMMS seeds its random generator from the clock and
process id and draws from it in its mixer threads, so oscillator phases and
noise differ from render to render (tempo and note timing do not).  The
sha256 values in manifest.json identify the clips of one build.
"""

import argparse
import concurrent.futures
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib

try:
    import numpy as np
    import soundfile as sf
except ImportError as exc:  # pragma: no cover - environment problem
    sys.exit(
        f"error: {exc}; run this with a Python that has numpy and soundfile "
        "(python3 -m pip install numpy soundfile)"
    )

APT_HINT = "apt-get install -y lmms"
SR = 44100
TICKS_PER_QUARTER = 48  # LMMS: 192 ticks per 4/4 bar; tempo counts quarters
DEFAULT_PROJECTS = "/usr/share/lmms/projects"
SILENCE_DBFS = -50.0  # a 50 ms frame quieter than this (RMS) is silence
FRAME_S = 0.05
RENDER_TOLERANCE_S = 0.10  # render length vs (bars + 1) bars at the head tempo
RENDER_ATTEMPTS = 3

# Style guesses, by project file stem, from the file name or the project notes.
# Anything not listed is labelled "electronic" (every LMMS demo is a synthesised
# electronic production).  These are guesses for grouping, not ground truth.
STYLE = {
    "Alf42red-Mauiwowi": "rnb",  # project notes: "RnB"
    "CapDan-ReggaeTry": "reggae",
    "CapDan-ReggaetonTry": "reggaeton",
    "CapDan-TwilightArea-OriginalByAlf42red": "funk",  # notes: "Funk (no more)!"
    "Shovon-ProgressiveHousePluckDemo": "house",
    "Skiessi-C64": "chiptune",
    "Thomasso-AxeFromThe80s": "rock",
}

# Another metrical level a listener may well tap, from the drum notes in the
# project (see drum_note_beats in manifest.json).  Only where the evidence is
# plain; the label stays the project's tempo.
NOTES = {
    "Socceroos-Progress": "the only kick pattern hits beats 1 and 3; a half-time "
    "reading (100) is plausible",
    "CapDan-ReggaeTry": "kick mostly on beats 1 and 3, reggae usually counted at "
    "80-100 BPM; a half-time reading (90) is plausible",
}

# Names LMMS gives the song-global models in the hidden automation track, in the
# languages found in the shipped projects, and the head attribute of each.
HEAD_MODEL_NAMES = [
    (re.compile(r"tempo|bpm", re.IGNORECASE), "bpm"),
    (re.compile(r"numerat|zähler", re.IGNORECASE), "timesig_numerator"),
    (re.compile(r"denominat|nenner", re.IGNORECASE), "timesig_denominator"),
]

DRUM_PATTERNS = {
    "kick": re.compile(r"kick|\bbd\b|bd[ _-]?\d|bassdrum|bass drum|kik", re.IGNORECASE),
    "snare": re.compile(r"snare|\bsd\b|clap", re.IGNORECASE),
}


def log(msg):
    print(msg, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_version(name):
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", name],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return None
    return out.stdout.strip() or None


def lmms_version(lmms, allowroot):
    cmd = [lmms] + (["--allowroot"] if allowroot else []) + ["--version"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first else None


# ---------------------------------------------------------------- project files


def read_project(path):
    """Return the project's XML root.  .mmpz: 4-byte big-endian length + zlib."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".mmpz"):
        (length,) = struct.unpack(">I", data[:4])
        data = zlib.decompress(data[4:])
        if len(data) != length:
            raise ValueError(f"length prefix {length} != {len(data)} bytes unpacked")
    return ET.fromstring(data)


def head_value(head, name):
    """A head model is an attribute, or a child element when automated/scaled."""
    if name in head.attrib:
        return float(head.attrib[name]), None
    el = head.find(name)
    if el is not None:
        return float(el.get("value")), el.get("id")
    return None, None


def project_notes(root):
    el = root.find("song/projectnotes")
    if el is None or not el.text:
        return ""
    text = re.sub(r"<style.*?</style>", " ", el.text, flags=re.DOTALL)
    text = re.sub(r"<[^>]+>", " ", text)
    text = text.replace("&nbsp;", " ").replace("&amp;", "&")
    return re.sub(r"\s+", " ", text).strip()


def song_end_ticks(root):
    """End (ticks) of the last clip on a song-editor track, as LMMS counts it."""
    end = 0
    tc = root.find("song/trackcontainer")
    for track in tc.findall("track"):
        for clip in track:
            if "pos" in clip.attrib and "len" in clip.attrib:
                end = max(end, int(clip.get("pos")) + int(clip.get("len")))
    return end


def head_model_named(pattern_name):
    for rx, model in HEAD_MODEL_NAMES:
        if rx.search(pattern_name):
            return model
    return None


def tempo_problems(root, head):
    """Reasons the tempo or metre might not be constant; [] if none.

    Also returns notes about automation patterns that were ignored because they
    control nothing (LMMS keeps empty 'Tempo' patterns in its hidden song-global
    automation track; they have no <object> and do not act on the song).
    """
    problems, ignored = [], []
    head_ids = {}
    for name in ("bpm", "timesig_numerator", "timesig_denominator"):
        el = head.find(name)
        if el is not None:
            # LMMS writes a model as a child element only when it is automated
            # (or not linear); a plain attribute means no automation.
            problems.append(
                f"head model '{name}' is saved as an automated model (id {el.get('id')})"
            )
            if el.get("id"):
                head_ids[el.get("id")] = name
    conn = head.find("connection")
    if conn is not None:
        for c in conn:
            if c.tag in ("bpm", "timesig_numerator", "timesig_denominator"):
                problems.append(f"head model '{c.tag}' is connected to a controller")

    known_ids = {e.get("id") for e in root.iter() if e.tag != "object" and e.get("id")}
    for pat in root.iter("automationpattern"):
        objs = [o.get("id") for o in pat.findall("object")]
        name = pat.get("name", "")
        values = sorted({float(t.get("value")) for t in pat.findall("time")})
        for oid in objs:
            if oid in head_ids:
                problems.append(
                    f"automation pattern '{name}' targets the head's "
                    f"{head_ids[oid]} (values {values})"
                )
        unresolved = [o for o in objs if o not in known_ids]
        model = head_model_named(name)
        if model is None:
            continue
        if not objs:
            ignored.append(f"'{name}' pattern with no target (values {values})")
        elif unresolved:
            # Old (0.4.x) files point the hidden track's patterns at ids that no
            # longer exist; harmless unless they would set another value.
            head_val, _ = head_value(head, model)
            if any(abs(v - head_val) > 1e-6 for v in values):
                problems.append(
                    f"automation pattern '{name}' targets an unresolved "
                    f"model with values {values} != head {model} {head_val:g}"
                )
            else:
                ignored.append(
                    f"'{name}' pattern whose target {unresolved} is not in "
                    f"the file (values {values}, the head's {model})"
                )
    return problems, ignored


def note_grid(root):
    """Share of note onsets on the 16th grid and on the (non-16th) triplet grid."""
    n = six = trip = 0
    for pattern in root.iter("pattern"):
        for note in pattern.findall("note"):
            pos = int(note.get("pos", 0))
            n += 1
            if pos % 12 == 0:
                six += 1
            elif pos % 8 == 0:
                trip += 1
    if not n:
        return {"notes": 0}
    return {"notes": n, "sixteenth": round(six / n, 3), "triplet_only": round(trip / n, 3)}


def drum_positions(root, ticks_per_bar):
    """Where the notes of tracks named like kick / snare fall in the bar.

    Counts distinct note positions within each pattern (not weighted by how
    often the pattern plays), in quarter-note beats from the bar start.  Only
    evidence for which metrical level a listener may tap; not used for labels.
    """
    out = {}
    for track in root.iter("track"):
        if track.get("type") != "0":
            continue
        label = track.get("name", "")
        inst = track.find("instrumenttrack/instrument")
        if inst is not None:
            for c in inst:
                label += " " + c.get("src", "")
        for kind, rx in DRUM_PATTERNS.items():
            if not rx.search(label):
                continue
            hist = out.setdefault(kind, {})
            for pattern in track.findall("pattern"):
                for note in pattern.findall("note"):
                    beat = (int(note.get("pos", 0)) % ticks_per_bar) / TICKS_PER_QUARTER
                    key = f"{beat:g}"
                    hist[key] = hist.get(key, 0) + 1
    return {k: dict(sorted(v.items(), key=lambda kv: float(kv[0]))) for k, v in out.items()}


def describe(path, projects_dir):
    root = read_project(path)
    head = root.find("head")
    if head is None:
        raise ValueError("no <head> element")
    bpm, _ = head_value(head, "bpm")
    num, _ = head_value(head, "timesig_numerator")
    den, _ = head_value(head, "timesig_denominator")
    num, den = int(num or 4), int(den or 4)
    ticks_per_bar = 4 * TICKS_PER_QUARTER * num // den
    end = song_end_ticks(root)
    bars = math.ceil(end / ticks_per_bar) if end else 0
    sec_per_tick = 60.0 / (bpm * TICKS_PER_QUARTER)
    problems, ignored = tempo_problems(root, head)
    return {
        "path": path,
        "rel": os.path.relpath(path, projects_dir),
        "stem": os.path.splitext(os.path.basename(path))[0],
        "creator": f"{root.get('creator', '?')} {root.get('creatorversion', '?')}",
        "bpm": bpm,
        "num": num,
        "den": den,
        "ticks_per_bar": ticks_per_bar,
        "end_ticks": end,
        "bars": bars,
        "song_end_s": end * sec_per_tick,
        "expected_render_s": (bars + 1) * ticks_per_bar * sec_per_tick,
        "problems": problems,
        "ignored": ignored,
        "notes": project_notes(root),
        "note_grid": note_grid(root),
        "drums": drum_positions(root, ticks_per_bar),
    }


# -------------------------------------------------------------------- rendering


def render(info, lmms, allowroot, wav, home, timeout):
    """lmms render PROJECT -o WAV -f wav -s 44100; returns (ok, seconds, log tail)."""
    cmd = (
        [lmms]
        + (["--allowroot"] if allowroot else [])
        + ["render", info["path"], "-o", wav, "-f", "wav", "-s", str(SR)]
    )
    env = dict(os.environ, HOME=home, QT_QPA_PLATFORM="offscreen", LANG="C.UTF-8")
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        out = proc.stdout.decode("utf-8", "replace")
        ok = proc.returncode == 0
        if not ok:
            out += f"\n(exit code {proc.returncode})"
    except subprocess.TimeoutExpired:
        ok, out = False, f"timed out after {timeout} s"
    secs = time.monotonic() - t0
    lines = [ln.strip() for ln in re.split(r"[\r\n]", out) if ln.strip() and "%" not in ln]
    shown = " ".join(c if c != wav else "OUT.wav" for c in cmd)
    return ok and os.path.exists(wav), secs, lines[-5:], shown


# ------------------------------------------------------------------------- clip


def frame_levels(x):
    """RMS in dBFS of consecutive FRAME_S frames (both channels together)."""
    hop = int(FRAME_S * SR)
    n = len(x) // hop
    y = x[: n * hop].astype(np.float64) / 32768.0
    rms = np.sqrt((y.reshape(n, hop, -1) ** 2).mean(axis=(1, 2)) + 1e-20)
    return 20 * np.log10(rms), hop


def first_sound(levels, hop, frm=0):
    idx = np.nonzero(levels[frm:] > SILENCE_DBFS)[0]
    return None if not len(idx) else (frm + int(idx[0])) * hop


def bar_of(t, bar):
    """Start time of the bar that holds a sound first heard in the frame starting
    at t.  The frame may begin up to FRAME_S before the sound itself, hence the
    shift; snapping to bar lines keeps clip positions the same from render to
    render (LMMS renders are not bit-exact: oscillator phases and noise vary)."""
    return math.floor((t + FRAME_S + 0.01) / bar) * bar


def choose_clip(x, info, clip_s, min_s, start_fraction):
    """(start_s, stop_s) of the clip in render time, or (None, reason).

    The song runs from the bar line before its first sound to the end of its
    last pattern (less any silent bars at the end).  A song of at most clip_s
    is taken whole.  Otherwise the clip starts start_fraction into the song,
    rounded down to a bar line, moved on to the next sounding bar if that bar
    is silent, and lasts clip_s or up to the song end.
    """
    bar = info["ticks_per_bar"] * 60.0 / (info["bpm"] * TICKS_PER_QUARTER)
    levels, hop = frame_levels(x)
    first = first_sound(levels, hop)
    if first is None:
        return None, "render is silent"
    song_start = bar_of(first / SR, bar)
    song_end = min(len(x) / SR, info["song_end_s"])
    loud = np.nonzero(levels[: int(song_end * SR) // hop] > SILENCE_DBFS)[0]
    if len(loud):
        last = int(loud[-1]) * hop / SR  # start of the last loud frame
        song_end = min(song_end, math.ceil((last + 0.01) / bar) * bar)
    song = song_end - song_start
    if song < min_s:
        return None, f"song is {song:.1f} s of sound (< {min_s:g} s)"
    if song <= clip_s:
        return (song_start, song_end), None
    start = song_start + math.floor(start_fraction * song / bar) * bar
    nxt = first_sound(levels, hop, round(start * SR) // hop)
    if nxt is not None and bar_of(nxt / SR, bar) > start:  # a silent bar at the cut
        start = bar_of(nxt / SR, bar)
    stop = min(song_end, start + clip_s)
    if stop - start < min_s:
        return None, f"clip would be {stop - start:.1f} s (< {min_s:g} s)"
    return (start, stop), None


def beat_fold(clip, start_s, bpm):
    """Check that the audio repeats with the labelled beat period, exactly.

    The onset envelope (log-magnitude spectral flux, 1024-sample frames, 5 ms
    hop, z-scored) is folded modulo the beat period, counted from the song's
    first tick (render time 0), and the peak of the folded mean is taken.  At
    the labelled period the peak is high; 0.5 % off, the 60 s of folding smear
    it out.  Returns the peaks at scales 0.99 .. 1.01 of the period and the
    phase of the peak at 1.0 in ms after the beat (a strong off-beat shows as
    half a beat).
    """
    y = clip.astype(np.float64).mean(axis=1) / 32768.0
    n, hop = 1024, 220
    if len(y) < 10 * n:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(y, n)[::hop] * np.hanning(n)
    mag = np.log1p(100.0 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.concatenate([[0.0], np.maximum(np.diff(mag, axis=0), 0.0).sum(axis=1)])
    z = (flux - flux.mean()) / (flux.std() + 1e-12)
    times = start_s + (np.arange(len(z)) * hop + n / 2) / SR
    peaks, phase_ms = {}, None
    for scale in (0.99, 0.995, 1.0, 1.005, 1.01):
        period = 60.0 / bpm * scale
        bins = np.minimum((np.mod(times, period) / period * 48).astype(int), 47)
        folded = np.bincount(bins, weights=z, minlength=48) / np.maximum(
            np.bincount(bins, minlength=48), 1
        )
        peaks[f"{scale:g}"] = round(float(folded.max()), 3)
        if scale == 1.0:
            phase_ms = round(float(np.argmax(folded)) / 48 * period * 1000, 1)
    return {
        "peak_z_by_period_scale": peaks,
        "phase_ms": phase_ms,
        "labelled_period_is_best": max(peaks, key=peaks.get) == "1",
    }


def clip_name(stem):
    return "lmms_" + re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") + ".flac"


# ------------------------------------------------------------------------- main


def process(info, args, tmp, allowroot, versions):
    """Render one project and write its clip.  Returns (entry, manifest) or skip."""
    wav = os.path.join(tmp, clip_name(info["stem"]) + ".wav")
    home = os.path.join(tmp, "home-" + info["stem"])
    os.makedirs(home, exist_ok=True)
    failures = []
    for _ in range(RENDER_ATTEMPTS):  # LMMS 1.2.2 now and then segfaults on exit
        if os.path.exists(wav):
            os.remove(wav)
        ok, secs, tail, cmd = render(info, args.lmms, allowroot, wav, home, args.timeout)
        if ok:
            break
        failures.append(" | ".join(tail))
        log(f"retry  {info['rel']}: render failed: {failures[-1]}")
    else:
        return None, {"reason": "render failed: " + " || ".join(failures)}
    x, sr = sf.read(wav, dtype="int16", always_2d=True)
    if sr != SR:
        return None, {"reason": f"render has {sr} Hz, not {SR}"}
    if x.shape[1] == 1:
        x = np.repeat(x, 2, axis=1)
    rendered_s = len(x) / SR
    if abs(rendered_s - info["expected_render_s"]) > RENDER_TOLERANCE_S:
        return None, {
            "reason": (
                f"render is {rendered_s:.2f} s, but {info['bars']}+1 "
                f"bars at {info['bpm']:g} BPM are "
                f"{info['expected_render_s']:.2f} s: tempo not as labelled"
            )
        }
    span, why = choose_clip(x, info, args.clip_seconds, args.min_seconds, args.start_fraction)
    if span is None:
        return None, {"reason": why, "rendered_s": round(rendered_s, 3)}
    start, stop = (round(t * SR) for t in span)
    name = clip_name(info["stem"])
    out = os.path.join(args.out, "audio", name)
    clip = np.ascontiguousarray(x[start:stop])
    sf.write(out, clip, SR, format="FLAC", subtype="PCM_16")
    if args.keep_renders:
        shutil.copyfile(wav, os.path.join(args.keep_renders, name[:-5] + ".wav"))
    os.remove(wav)
    shutil.rmtree(home, ignore_errors=True)

    peak = float(np.abs(clip.astype(np.int32)).max()) / 32768.0
    rms = float(np.sqrt(np.mean((clip.astype(np.float64) / 32768.0) ** 2)))
    meter = f"{info['num']}/{info['den']}"
    entry = {
        "bpm": info["bpm"],
        "meter": meter,
        "beat_unit": "quarter",
        "feel": "straight",
        "duration_s": round((stop - start) / SR, 3),
        "start_s": round(start / SR, 3),
        "source": "lmms",
        "style": STYLE.get(info["stem"], "electronic"),
        "origin": (
            f"lmms-common {versions['lmms-common']}: {info['rel']} "
            f"(head bpm {info['bpm']:g}, time signature {meter}), "
            f"rendered with lmms {versions['lmms']}"
        ),
    }
    notes = []
    if info["den"] != 4 or info["num"] not in (2, 3, 4, 6, 12):
        notes.append(
            f"project time signature {meter} ({info['ticks_per_bar'] // 48} "
            "quarter notes a bar); the LMMS tempo counts quarter notes "
            "whatever the time signature"
        )
    if info["stem"] in NOTES:
        notes.append(NOTES[info["stem"]])
    grid = info["note_grid"]
    trip = grid.get("triplet_only", 0) if grid.get("notes") else 0
    if trip > 0.2:  # many notes on the triplet grid and off the 16th grid
        entry["feel"] = "triplet" if trip > 0.5 else "mixed"
        notes.append(
            f"{100 * trip:.0f} % of the project's note onsets are on the "
            "triplet grid and off the 16th grid (swung or triplet subdivision)"
        )
    if notes:
        entry["note"] = "; ".join(notes)
    fold = beat_fold(clip, start / SR, info["bpm"])
    if fold and not fold["labelled_period_is_best"]:
        log(
            f"warn   {info['rel']}: the audio does not repeat best at the labelled "
            f"beat period: {fold['peak_z_by_period_scale']}"
        )
    manifest = {
        "project": info["rel"],
        "beat_fold": fold,
        "project_sha256": sha256_file(info["path"]),
        "creator": info["creator"],
        "sha256": sha256_file(out),
        "render_command": cmd,
        "render_seconds": round(secs, 1),
        "render_failures_before_success": failures,
        "rendered_s": round(rendered_s, 3),
        "expected_render_s": round(info["expected_render_s"], 3),
        "song_end_s": round(info["song_end_s"], 3),
        "bars": info["bars"],
        "peak_dbfs": round(20 * math.log10(max(peak, 1e-10)), 2),
        "rms_dbfs": round(20 * math.log10(max(rms, 1e-10)), 2),
        "note_grid": grid,
        "drum_note_beats": info["drums"],
        "ignored_automation": info["ignored"],
        "project_notes": info["notes"][:300],
    }
    return (name, entry), manifest


def main():
    ap = argparse.ArgumentParser(
        description="Build a tempo test set from LMMS's shipped demo projects.",
        epilog=f"Needs the lmms binary: {APT_HINT}",
    )
    ap.add_argument("out", help="output folder (audio/, truth.json, manifest.json)")
    ap.add_argument(
        "--projects",
        default=DEFAULT_PROJECTS,
        help=f"folder searched for *.mmp / *.mmpz (default {DEFAULT_PROJECTS})",
    )
    ap.add_argument("--lmms", default="lmms", help="lmms binary (default: lmms on PATH)")
    ap.add_argument("--clip-seconds", type=float, default=60.0)
    ap.add_argument("--min-seconds", type=float, default=30.0)
    ap.add_argument("--start-fraction", type=float, default=0.25)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per render")
    ap.add_argument("--jobs", type=int, default=1, help="renders at a time (default 1)")
    ap.add_argument("--keep-renders", metavar="DIR", help="also keep the full WAV renders")
    ap.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty folder (overwrites, deletes nothing)",
    )
    args = ap.parse_args()

    lmms = shutil.which(args.lmms)
    if not lmms:
        sys.exit(f"error: '{args.lmms}' not found; install it with: {APT_HINT}")
    args.lmms = lmms
    if not os.path.isdir(args.projects):
        sys.exit(f"error: no folder {args.projects}; install it with: {APT_HINT}")
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.force:
        sys.exit(f"error: {args.out} is not empty (use --force to overwrite)")
    os.makedirs(os.path.join(args.out, "audio"), exist_ok=True)
    if args.keep_renders:
        os.makedirs(args.keep_renders, exist_ok=True)
    allowroot = hasattr(os, "geteuid") and os.geteuid() == 0  # lmms refuses root otherwise

    t0 = time.monotonic()
    versions = {
        "lmms": package_version("lmms") or "?",
        "lmms-common": package_version("lmms-common") or "?",
        "lmms --version": lmms_version(lmms, allowroot),
        "libsndfile": sf.__libsndfile_version__,
        "python-soundfile": sf.__version__,
        "numpy": np.__version__,
    }
    log(f"lmms {versions['lmms']} ({versions['lmms --version']}), projects in {args.projects}")

    paths = sorted(
        os.path.join(d, f)
        for d, _, fs in os.walk(args.projects)
        for f in fs
        if f.endswith((".mmp", ".mmpz"))
    )
    skipped, todo = {}, []
    for p in paths:
        rel = os.path.relpath(p, args.projects)
        try:
            info = describe(p, args.projects)
        except (ValueError, ET.ParseError, zlib.error, struct.error, TypeError) as exc:
            skipped[rel] = {"reason": f"cannot read project: {exc}"}
            log(f"skip   {rel}: cannot read project: {exc}")
            continue
        if info["problems"]:
            skipped[rel] = {
                "reason": "tempo or time signature not constant: " + "; ".join(info["problems"])
            }
            log(f"skip   {rel}: {skipped[rel]['reason']}")
            continue
        # A song whose bars cannot hold min_seconds at its tempo would be skipped
        # after rendering anyway; say so now and save the render.
        if info["song_end_s"] < args.min_seconds:
            skipped[rel] = {
                "reason": f"song is {info['song_end_s']:.1f} s long (< {args.min_seconds:g} s)"
            }
            log(f"skip   {rel}: {skipped[rel]['reason']}")
            continue
        todo.append(info)

    names = [clip_name(i["stem"]) for i in todo]
    if len(set(names)) != len(names):
        sys.exit("error: two projects map to the same clip name")

    truth, clips = {}, {}
    with (
        tempfile.TemporaryDirectory(prefix="lmms-set-") as tmp,
        concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool,
    ):
        futures = {pool.submit(process, i, args, tmp, allowroot, versions): i for i in todo}
        for fut in concurrent.futures.as_completed(futures):
            info = futures[fut]
            result, man = fut.result()
            if result is None:
                skipped[info["rel"]] = man
                log(f"skip   {info['rel']}: {man['reason']}")
                continue
            name, entry = result
            truth[name] = entry
            clips[name] = man
            log(
                f"clip   {info['rel']} -> {name}: {entry['bpm']:g} BPM {entry['meter']}, "
                f"{entry['start_s']:.1f}+{entry['duration_s']:.1f} s "
                f"(render {man['render_seconds']:.0f} s)"
            )

    truth = dict(sorted(truth.items()))
    with open(os.path.join(args.out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    manifest = {
        "what": "tempo test clips cut from headless LMMS renders of its shipped projects",
        "script": os.path.basename(__file__),
        "settings": {
            "sample_rate": SR,
            "clip_seconds": args.clip_seconds,
            "min_seconds": args.min_seconds,
            "start_fraction": args.start_fraction,
            "silence_dbfs": SILENCE_DBFS,
            "render_tolerance_s": RENDER_TOLERANCE_S,
            "projects": args.projects,
        },
        "versions": versions,
        "clips": dict(sorted(clips.items())),
        "skipped": dict(sorted(skipped.items())),
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    log(
        f"{len(paths)} projects: {len(truth)} clips, {len(skipped)} skipped; "
        f"{time.monotonic() - t0:.0f} s; wrote {args.out}/truth.json and manifest.json"
    )


if __name__ == "__main__":
    main()
