"""The I/O floor of a ``master`` run: decode each file with soundfile and encode the same
audio as FLAC 24-bit, nothing else, one file after another on one core.

Run in a fresh process (as ``auralis-batch`` is) by the end-to-end bench:
``python bench/io_floor.py OUT_DIR FILE...``. Blocks of 65,536 frames as the engine
reads them, in the decoder's float32; libsndfile converts to 24-bit on encode. Output
names are numbered so that nested inputs with equal names cannot collide.

``--jobs N`` (after OUT_DIR) copies with N worker processes, largest file first (frames
times channels, as ``master`` schedules its tracks), each taking the next file when it
is done: how far the floor itself scales on this machine and library, beside what
``master -j N`` gets.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import soundfile as sf

BLOCK_FRAMES = 65536


def copy_to_flac24(src: Path, dst: Path) -> int:
    """Decode ``src`` and write it to ``dst`` as FLAC 24-bit; returns the frames copied."""
    frames = 0
    with sf.SoundFile(src) as fin:
        with sf.SoundFile(dst, "w", fin.samplerate, fin.channels, "PCM_24", format="FLAC") as fout:
            for block in fin.blocks(BLOCK_FRAMES, dtype="float32"):
                fout.write(block)
                frames += block.shape[0]
    return frames


def _work(path: str) -> int:
    info = sf.info(path)
    return info.frames * info.channels


def _copy(job: tuple[str, str]) -> int:
    return copy_to_flac24(Path(job[0]), Path(job[1]))


def main(argv: list[str]) -> int:
    jobs = 1
    if len(argv) > 2 and argv[1] == "--jobs":
        jobs = int(argv[2])
        argv = [argv[0], *argv[3:]]
    if len(argv) < 2 or jobs < 1:
        print("usage: io_floor.py OUT_DIR [--jobs N] FILE...", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    copies = [(f, str(out / f"{i:04d}.flac")) for i, f in enumerate(argv[1:])]
    if jobs == 1:
        for job in copies:
            _copy(job)
        return 0
    copies.sort(key=lambda job: -_work(job[0]))
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        list(pool.map(_copy, copies, chunksize=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
