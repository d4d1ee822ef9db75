"""auralis-batch: re-master whole music libraries with Numba-compiled DSP.

The Python API mirrors the command line::

    import auralis_batch as ab
    record = ab.analyze("song.flac")                    # loudness, fingerprint, tempo
    mastered, outcome = ab.master_array(audio, 44100, preset=ab.load_preset("warm"))
    result = ab.run_master(["music/"], Path("out"), ab.RunSettings(preset="gentle"))

Names are imported lazily so ``import auralis_batch`` (and ``auralis-batch --help``)
does not load numpy or compile kernels.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

__version__ = "0.1.0"


def _kernels_dir() -> str:
    """Where ``auralis_batch.kernels`` lives: inside the package in an installed wheel,
    the repository's top-level ``kernels/`` in an editable install (a package-dir
    mapping); found without importing it, so nothing of Numba loads here."""
    here = os.path.dirname(os.path.abspath(__file__))
    inside = os.path.join(here, "kernels")
    return inside if os.path.isdir(inside) else os.path.join(os.path.dirname(here), "kernels")


def _numba_cache_dir() -> None:
    """Send Numba's compiled-kernel cache to the user cache dir when the install
    location is read-only (system-wide installs, containers)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    if os.access(_kernels_dir(), os.W_OK):
        return
    from platformdirs import user_cache_dir

    os.environ["NUMBA_CACHE_DIR"] = os.path.join(user_cache_dir("auralis-batch"), "numba")


_numba_cache_dir()

_LAZY = {
    "analyze": ".analysis",
    "analyze_file": ".analysis",
    "master_array": ".pipeline",
    "master_stream": ".pipeline",
    "measure_loudness": ".meter",
    "LoudnessMeter": ".meter",
    "Loudness": ".meter",
    "load_preset": ".presets",
    "Preset": ".presets",
    "run_master": ".batch",
    "RunSettings": ".batch",
    "FingerprintCache": ".cache",
    "AuralisError": ".errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auralis_batch' has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
