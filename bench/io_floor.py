"""The I/O floor of a ``master`` run: decode each file with soundfile and encode the same
audio as FLAC 24-bit, nothing else, one file after another on one core.

Run in a fresh process (as ``auralis-batch`` is) by the end-to-end bench:
``python bench/io_floor.py OUT_DIR FILE...``. Blocks of 65,536 frames as the engine
reads them, in the decoder's float32; libsndfile converts to 24-bit on encode. Output
names are numbered so that nested inputs with equal names cannot collide.
"""

from __future__ import annotations

import sys
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


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: io_floor.py OUT_DIR FILE...", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(argv[1:]):
        copy_to_flac24(Path(f), out / f"{i:04d}.flac")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
