"""Build the bench library: a small music library that looks like a real one.

Made deterministically from the five corpus tracks in ``../shared/corpus`` (Ogg Vorbis,
44.1 kHz stereo) and synthesis, so the end-to-end benches measure what a user's library
costs rather than 30 s FLAC clips:

* seven tracks, 2 to 7 minutes (median 4:01, two over 6 minutes), 30.3 minutes in all,
  in nested ``artist/album[/disc]`` folders beside a cover image and a playlist;
* four lossy (Ogg Vorbis, MP3 320 kbit/s) and three FLAC (16- and 24-bit) sources at
  44.1, 48 and 96 kHz, one of them mono;
* each track is corpus material cut at seeded offsets and joined with equal-power
  crossfades; two carry a synthesised drum-and-bass layer, one is driven into a soft
  clipper (a loud modern master), one is quiet with a silence gap, so loudness,
  crest factor and dynamics differ from track to track.

The library is written once into a cache folder outside the repository
(``$AURALIS_BENCH_LIBRARY``, default ``~/.cache/auralis-batch-bench/library-v1``): the
music under ``music/``, beside it a ``manifest.json`` (name, duration, format, rate,
channels, bytes, sha256 per file). It is reused while every file matches the manifest.
The build goes to a temporary sibling folder that is renamed into place, so an
interrupted build never leaves a half library. The audio handed to the encoders is a
function of the corpus and the seeds (its hash is ``pcm_sha256`` in the manifest), and
the Ogg stream serial number, which libsndfile draws at random, is fixed, so two builds
with the same libraries give the same bytes.

A second library of many short tracks (``many_short``: 2,000 x 2 s FLAC in 200 album
folders) measures what a re-run over a finished library costs.

Run ``python bench/make_library.py`` to build (or check) both and print them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("AURALIS_CORPUS") or ROOT.parent / "shared" / "corpus")
RECIPE_VERSION = 1  # bump when the recipe below changes: cached libraries are rebuilt
ENV_DIR = "AURALIS_BENCH_LIBRARY"
MUSIC = "music"  # the library proper, under the cache folder; manifest.json beside it
CORPUS_RATE = 44100
CROSSFADE_S = 2.0


class LibraryUnavailable(RuntimeError):
    """The library cannot be built here (no corpus, or an encoder is missing)."""


@dataclass(frozen=True)
class Recipe:
    """One track: where it goes, how it sounds and how it is encoded."""

    name: str  # relative path in the library
    seconds: float
    format: str  # soundfile major format
    subtype: str
    sample_rate: int
    channels: int
    style: str  # orchestral | band | quiet
    peak_dbfs: float  # peak after normalisation (band: after the soft clipper)
    seed: int
    drive_db: float = 0.0  # band style: gain into the tanh soft clipper
    tempo_bpm: float = 120.0  # band style: the drum layer's tempo
    title: str = ""


TRACKS = (
    Recipe(
        "Wesnoth Ensemble/Heir to the Throne (2009)/01 - Elvish Dawn.ogg",
        241.0, "OGG", "VORBIS", 44100, 2, "orchestral", -1.0, 11, title="Elvish Dawn",
    ),
    Recipe(
        "Wesnoth Ensemble/Heir to the Throne (2009)/02 - The Long March.ogg",
        372.0, "OGG", "VORBIS", 44100, 2, "orchestral", -4.0, 12, title="The Long March",
    ),
    Recipe(
        "Northern Lights/Signal Fires/CD1/01 Signal Fires.mp3",
        185.0, "MP3", "MPEG_LAYER_III", 44100, 2, "band", -0.3, 21, drive_db=9.0,
        tempo_bpm=128.0, title="Signal Fires",
    ),
    Recipe(
        "Northern Lights/Signal Fires/CD2/07 Coda (Live).mp3",
        263.0, "MP3", "MPEG_LAYER_III", 48000, 2, "band", -0.5, 22, drive_db=3.0,
        tempo_bpm=96.0, title="Coda (Live)",
    ),
    Recipe(
        "Quiet Rooms/Sad Songs/01 - Lament.flac",
        232.0, "FLAC", "PCM_16", 44100, 2, "quiet", -12.0, 31, title="Lament",
    ),
    Recipe(
        "Quiet Rooms/Hi-Res Sessions [96k]/02 - Transience (extended).flac",
        395.0, "FLAC", "PCM_24", 96000, 2, "orchestral", -0.1, 32, title="Transience (extended)",
    ),
    Recipe(
        "Various Artists/Field Recordings/01 - Mono Room.flac",
        128.0, "FLAC", "PCM_24", 48000, 1, "orchestral", -6.0, 41, title="Mono Room",
    ),
)  # fmt: skip

EXTRAS = {  # non-audio files a real library holds; master lists them as skipped
    "Wesnoth Ensemble/Heir to the Throne (2009)/cover.jpg": bytes.fromhex("ffd8ffe000104a464946")
    + bytes(range(256)) * 4
    + bytes.fromhex("ffd9"),
    "Northern Lights/Signal Fires/playlist.m3u": (
        b"#EXTM3U\nCD1/01 Signal Fires.mp3\nCD2/07 Coda (Live).mp3\n"
    ),
}

MANY_COUNT = 2000
MANY_SECONDS = 2.0


# --------------------------------------------------------------------------- where
def default_dir() -> Path:
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "auralis-batch-bench" / f"library-v{RECIPE_VERSION}"


def many_dir(library_dir: Path | None = None) -> Path:
    base = library_dir or default_dir()
    return base.with_name(base.name + f"-many{MANY_COUNT}")


# --------------------------------------------------------------------------- sound
def _corpus() -> list[np.ndarray]:
    """The corpus tracks as ``(n, 2)`` float32, sorted by name."""
    import soundfile as sf

    files = sorted(CORPUS.glob("*.ogg"))
    if not files:
        raise LibraryUnavailable(f"no corpus at {CORPUS} (the bench library is made from it)")
    out = []
    for f in files:
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        if sr != CORPUS_RATE or x.shape[1] != 2:
            raise LibraryUnavailable(f"{f}: expected 44.1 kHz stereo, got {sr} Hz x {x.shape[1]}")
        out.append(x)
    return out


def _fade(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-power fade-out and fade-in curves of ``n`` samples, ``(n, 1)``."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n * (np.pi / 2)
    return np.cos(t)[:, None], np.sin(t)[:, None]


def _orchestral(corpus: list[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Corpus segments at seeded offsets, each at its own gain (+-4 dB), crossfaded."""
    n = round(seconds * CORPUS_RATE)
    xf = round(CROSSFADE_S * CORPUS_RATE)
    weights = np.array([c.shape[0] for c in corpus], dtype=np.float64)
    out = np.zeros((n + xf, 2), dtype=np.float64)
    fade_out, fade_in = _fade(xf)
    pos = 0
    while pos < n:
        src = corpus[rng.choice(len(corpus), p=weights / weights.sum())]
        length = min(int(rng.uniform(20.0, 75.0) * CORPUS_RATE), src.shape[0])
        start = int(rng.integers(0, src.shape[0] - length + 1))
        seg = src[start : start + length].astype(np.float64) * 10 ** (rng.uniform(-4, 4) / 20)
        length = min(length, out.shape[0] - pos)
        seg = seg[:length]
        if pos > 0:  # crossfade into what is there
            k = min(xf, length)
            out[pos : pos + k] *= fade_out[:k]
            seg = seg.copy()
            seg[:k] *= fade_in[:k]
        out[pos : pos + length] += seg
        pos += length - xf
    return out[:n]


def _drums_and_bass(seconds: float, tempo_bpm: float, rng: np.random.Generator) -> np.ndarray:
    """Kick on 1 and 3, snare on 2 and 4, eighth-note hats, a root-note bass line."""
    sr = CORPUS_RATE
    beat = round(60.0 / tempo_bpm * sr)
    bar = np.zeros(4 * beat)
    t = np.arange(int(0.25 * sr)) / sr
    kick = np.sin(2 * np.pi * (45 * t + 40 * (1 - np.exp(-t * 30)) / 30)) * np.exp(-t * 18)
    noise = rng.standard_normal(t.size)
    snare = (0.6 * np.diff(noise, prepend=0.0) + 0.3 * np.sin(2 * np.pi * 190 * t)) * np.exp(
        -t * 25
    )
    hat = np.diff(np.diff(rng.standard_normal(t.size), prepend=0.0), prepend=0.0)
    hat *= 0.08 * np.exp(-t * 90)
    for b, hit in enumerate((kick, snare, kick, snare)):
        bar[b * beat : b * beat + hit.size] += hit[: bar.size - b * beat]
    for e in range(8):
        at = e * beat // 2
        bar[at : at + hat.size] += hat[: bar.size - at]
    n = round(seconds * sr)
    bars = n // bar.size + 1
    drums = np.tile(bar, bars)[:n]
    roots = np.array([55.0, 55.0, 43.65, 49.0])  # A1 A1 F1 G1, one per bar
    freq = np.repeat(roots[np.arange(bars) % 4], bar.size)[:n]
    phase = 2 * np.pi * np.cumsum(freq) / sr
    bass = 0.35 * np.tanh(2.0 * np.sin(phase)) * (0.6 + 0.4 * np.cos(phase / 16))
    mono = 0.45 * drums + bass
    return np.stack([mono, mono * 0.97], axis=1)


def _render(recipe: Recipe, corpus: list[np.ndarray]) -> np.ndarray:
    """The track at 44.1 kHz stereo, float64, before level, resampling and encoding."""
    rng = np.random.default_rng(recipe.seed)
    x = _orchestral(corpus, recipe.seconds, rng)
    sr = CORPUS_RATE
    if recipe.style == "band":
        layer = _drums_and_bass(recipe.seconds, recipe.tempo_bpm, rng)
        ramp = np.clip((np.arange(x.shape[0]) / sr - 8.0) / 4.0, 0.0, 1.0)[:, None]  # intro
        x = x / np.abs(x).max() + 0.7 * layer * ramp
        x = np.tanh(x / np.abs(x).max() * 10 ** (recipe.drive_db / 20))
    elif recipe.style == "quiet":  # a 4 s digital-silence gap 60 % in, faded on both sides
        at, gap, edge = int(0.6 * x.shape[0]), 4 * sr, sr // 2
        fade_out, fade_in = _fade(edge)
        x[at - edge : at] *= fade_out
        x[at : at + gap] = 0.0
        x[at + gap : at + gap + edge] *= fade_in
    fade_in_n, fade_out_n = sr // 2, 4 * sr
    x[:fade_in_n] *= np.linspace(0.0, 1.0, fade_in_n)[:, None]
    x[-fade_out_n:] *= np.linspace(1.0, 0.0, fade_out_n)[:, None] ** 2
    return x


def _finish(x: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Channels, rate and peak level of the recipe, float32 C-contiguous ``(n, ch)``."""
    from scipy.signal import resample_poly

    if recipe.channels == 1:
        x = x.mean(axis=1, keepdims=True)
    if recipe.sample_rate != CORPUS_RATE:
        g = np.gcd(recipe.sample_rate, CORPUS_RATE)
        x = resample_poly(x, recipe.sample_rate // g, CORPUS_RATE // g, axis=0)
    x = x * (10 ** (recipe.peak_dbfs / 20) / np.abs(x).max())
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------- files
_BITREV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, init 0) via zlib's reflected
    one: reflect the bytes, undo zlib's init/xor-out, reflect the result."""
    reflected = zlib.crc32(page.translate(_BITREV)) ^ zlib.crc32(bytes(len(page)))
    return int(f"{reflected:032b}"[::-1], 2)


def _fix_ogg_serial(path: Path, serial: int) -> None:
    """Give every page one fixed stream serial number (libsndfile draws it at random, so
    otherwise no two builds of the same audio are the same bytes) and re-sign the page."""
    data = bytearray(path.read_bytes())
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS":
            raise ValueError(f"{path}: no Ogg page at byte {pos}")
        n_seg = data[pos + 26]
        size = 27 + n_seg + sum(data[pos + 27 : pos + 27 + n_seg])
        data[pos + 14 : pos + 18] = struct.pack("<I", serial)
        data[pos + 22 : pos + 26] = b"\0\0\0\0"
        data[pos + 22 : pos + 26] = struct.pack("<I", _ogg_crc(bytes(data[pos : pos + size])))
        pos += size
    path.write_bytes(bytes(data))


def _write(path: Path, x: np.ndarray, recipe: Recipe, *, album: str, artist: str) -> None:
    import soundfile as sf

    if recipe.subtype not in sf.available_subtypes(recipe.format):
        raise LibraryUnavailable(
            f"this libsndfile ({sf.__libsndfile_version__}) cannot write "
            f"{recipe.format}/{recipe.subtype}; soundfile >= 0.12.1 wheels can"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {}
    if recipe.format == "MP3":
        extra = {"compression_level": 0.0, "bitrate_mode": "CONSTANT"}  # 320 kbit/s CBR
    with sf.SoundFile(
        path,
        "w",
        recipe.sample_rate,
        recipe.channels,
        recipe.subtype,
        format=recipe.format,
        **extra,
    ) as f:
        for key, value in (("title", recipe.title), ("artist", artist), ("album", album)):
            if value:
                setattr(f, key, value)
        for i in range(0, x.shape[0], 1 << 18):
            f.write(x[i : i + (1 << 18)])
    if recipe.format == "OGG":
        _fix_ogg_serial(path, 0x41524C53 ^ recipe.seed)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _entry(music: Path, name: str, pcm: np.ndarray | None) -> dict:
    import soundfile as sf

    path = music / name
    info = sf.info(path)
    return {
        "name": name,
        "duration": round(info.duration, 6),
        "frames": info.frames,
        "format": info.format,
        "subtype": info.subtype,
        "sample_rate": info.samplerate,
        "channels": info.channels,
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
        **({"pcm_sha256": hashlib.sha256(pcm.tobytes()).hexdigest()} if pcm is not None else {}),
    }


# --------------------------------------------------------------------------- library
@dataclass(frozen=True)
class Library:
    """A built library: its folder and its manifest."""

    root: Path
    manifest: dict

    @property
    def tracks(self) -> list[dict]:
        return self.manifest["tracks"]

    @property
    def music(self) -> Path:
        """The folder to point ``auralis-batch`` at (the manifest sits beside it)."""
        return self.root / MUSIC

    @property
    def files(self) -> list[Path]:
        return [self.music / t["name"] for t in self.tracks]

    @property
    def audio_seconds(self) -> float:
        return sum(t["duration"] for t in self.tracks)

    def describe(self) -> str:
        rows = [
            f"{t['name']:<68s} {t['duration'] / 60:5.2f} min  {t['format']:<4s} "
            f"{t['subtype']:<14s} {t['sample_rate'] / 1000:5.1f} kHz  {t['channels']} ch  "
            f"{t['bytes'] / 2**20:6.1f} MiB"
            for t in self.tracks[:12]
        ]
        if len(self.tracks) > 12:
            rows.append(f"... and {len(self.tracks) - 12} more")
        rows.append(
            f"{len(self.tracks)} tracks, {self.audio_seconds / 60:.1f} min, "
            f"{sum(t['bytes'] for t in self.tracks) / 2**20:.0f} MiB in {self.music}"
        )
        return "\n".join(rows)


def _valid(root: Path, kind: str) -> Library | None:
    """The library at ``root`` if its manifest is of this recipe and every file matches."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("recipe_version") != RECIPE_VERSION or manifest.get("kind") != kind:
        return None
    for t in manifest["tracks"]:
        p = root / MUSIC / t["name"]
        try:
            if p.stat().st_size != t["bytes"] or _sha256(p) != t["sha256"]:
                return None
        except OSError:
            return None
    return Library(root, manifest)


def _build(dest: Path, kind: str, fill: Callable[[Path], list[dict]]) -> Library:
    """Build into a temporary sibling and rename it into place (a concurrent builder that
    finished first wins; ours is discarded)."""
    found = _valid(dest, kind)
    if found is not None:
        return found
    import soundfile as sf

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tracks = fill(tmp / MUSIC)
        manifest = {
            "kind": kind,
            "recipe_version": RECIPE_VERSION,
            "built_with": {
                "soundfile": sf.__version__,
                "libsndfile": sf.__libsndfile_version__,
                "numpy": np.__version__,
            },
            "corpus": {f.name: _sha256(f) for f in sorted(CORPUS.glob("*.ogg"))},
            "total_seconds": round(sum(t["duration"] for t in tracks), 3),
            "tracks": tracks,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if dest.exists():  # stale (other recipe, damaged): set aside, then replace
            stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}")
            os.replace(dest, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, dest)
        except OSError:  # another process put its build there first
            found = _valid(dest, kind)
            if found is None:
                raise
            return found
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    found = _valid(dest, kind)
    assert found is not None, f"{dest}: freshly built library does not match its manifest"
    return found


def build_library(dest: Path | None = None, *, log: Callable[[str], None] = print) -> Library:
    """The realistic library (built on first use, then reused)."""
    dest = Path(dest) if dest is not None else default_dir()

    def fill(music: Path) -> list[dict]:
        corpus = _corpus()
        entries = []
        for r in TRACKS:
            log(
                f"  building {r.name} ({r.seconds / 60:.1f} min, {r.format} {r.subtype}, "
                f"{r.sample_rate} Hz, {r.channels} ch)"
            )
            x = _finish(_render(r, corpus), r)
            artist, album = r.name.split("/")[:2]
            _write(music / r.name, x, r, album=album, artist=artist)
            entries.append(_entry(music, r.name, x))
        for name, data in EXTRAS.items():
            (music / name).parent.mkdir(parents=True, exist_ok=True)
            (music / name).write_bytes(data)
        return entries

    return _build(dest, "realistic", fill)


def build_many_short(dest: Path | None = None, *, log: Callable[[str], None] = print) -> Library:
    """2,000 two-second 16-bit FLAC tracks in 20 artists x 10 albums x 10 tracks."""
    dest = Path(dest) if dest is not None else many_dir()

    def fill(music: Path) -> list[dict]:
        import soundfile as sf

        log(f"  building {MANY_COUNT} x {MANY_SECONDS:g} s FLAC tracks")
        corpus = np.concatenate(_corpus())
        n = round(MANY_SECONDS * CORPUS_RATE)
        rng = np.random.default_rng(2000)
        entries = []
        for i in range(MANY_COUNT):
            name = f"Artist {i // 100:02d}/Album {i // 10 % 10:02d}/{i % 10 + 1:02d} - Track.flac"
            start = int(rng.integers(0, corpus.shape[0] - n))
            x = corpus[start : start + n] * np.float32(10 ** (rng.uniform(-20, -1) / 20))
            (music / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(music / name, x, CORPUS_RATE, subtype="PCM_16", format="FLAC")
            entries.append(_entry(music, name, None))
        return entries

    return _build(dest, "many_short", fill)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help=f"default: ${ENV_DIR} or ~/.cache/auralis-batch-bench/library-v{RECIPE_VERSION}",
    )
    parser.add_argument("--no-many", action="store_true", help="skip the 2,000-track library")
    args = parser.parse_args(argv)
    try:
        lib = build_library(args.dest)
        print(lib.describe())
        if not args.no_many:
            many = build_many_short(many_dir(args.dest))
            print(many.describe().splitlines()[-1])
    except LibraryUnavailable as exc:
        print(f"[skip] {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
