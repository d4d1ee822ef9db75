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
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


def _kernels_dir() -> str:
    """Where ``auralis_batch.kernels`` lives: inside the package in an installed wheel,
    the repository's top-level ``kernels/`` in an editable install (a package-dir
    mapping); found without importing it, so nothing of Numba loads here."""
    here = os.path.dirname(os.path.abspath(__file__))
    inside = os.path.join(here, "kernels")
    return inside if os.path.isdir(inside) else os.path.join(os.path.dirname(here), "kernels")


def _user_cache_root() -> str | None:
    """The platform's user cache folder for auralis-batch (platformdirs), or None when
    there is no home folder to put it in: ``HOME`` unset and no user entry (a service
    user under cron), where platformdirs raises, or an older one returns ``~/...``
    unexpanded; or when ``HOME`` names a folder that does not exist and
    ``XDG_CACHE_HOME`` is not set: the cache was then made there, home folder and all
    (a newcomer's try as root with a mistyped HOME), and a tool creates no one's home.
    The one place both caches (Numba's, the fingerprints') find it."""
    from platformdirs import user_cache_dir

    try:
        root = user_cache_dir("auralis-batch")
    except RuntimeError:
        return None
    if not os.path.isabs(root):
        return None
    home = os.path.expanduser("~")
    if not os.environ.get("XDG_CACHE_HOME") and root.startswith(home) and not os.path.isdir(home):
        return None
    return root


def _numba_cache_dir() -> None:
    """Send Numba's compiled-kernel cache to the user cache dir unless the kernels are
    a writable source checkout (an editable install).

    An installed package must not collect files pip does not know of: cache files left
    in ``site-packages/auralis_batch/kernels/__pycache__`` outlive ``pip uninstall``,
    and the folder they keep then shadows a later editable install of the package.
    A read-only install (system-wide, containers) could not take them anyway.

    Where that folder (or a ``NUMBA_CACHE_DIR`` of the user's) cannot be written either
    (cron as a service user with a read-only home, a container), Numba would find no
    place for its cache and every command that computes would stop with a traceback:
    the kernels then compile into a temporary folder, removed at exit, and
    :data:`_NUMBA_CACHE_NOTE` says so (the CLI prints it).
    """
    global _NUMBA_CACHE_NOTE
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if not chosen:
        kernels = _kernels_dir()
        checkout = os.path.isfile(os.path.join(os.path.dirname(kernels), "pyproject.toml"))
        if checkout and os.access(kernels, os.W_OK):
            return
        root = _user_cache_root()
        chosen = os.path.join(root, "numba") if root else ""  # no home: temporary
    if chosen and _writable(chosen):
        os.environ["NUMBA_CACHE_DIR"] = chosen
        return
    import atexit
    import shutil
    import tempfile

    temporary = tempfile.mkdtemp(prefix="auralis-batch-numba-")
    atexit.register(shutil.rmtree, temporary, True)
    os.environ["NUMBA_CACHE_DIR"] = temporary
    _NUMBA_CACHE_NOTE = (
        "the compiled kernels cannot be kept: "
        + (f"{chosen} is not writable" if chosen else "there is no home folder to keep them in")
        + ", so this run "
        "compiles them into a temporary folder (set NUMBA_CACHE_DIR to a writable folder "
        "to keep them between runs)"
    )


def _writable(folder: str) -> bool:
    """Whether files can be created in ``folder`` (made if missing), as Numba checks."""
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


#: Set when the kernels' cache had to go to a temporary folder (:func:`_numba_cache_dir`).
_NUMBA_CACHE_NOTE: str | None = None
_numba_cache_dir()


#: The kernels whose compiled code says a command's kernels are compiled: the meter
#: (everything that measures), the fingerprint, tempo and the limiter (``master``).
#: Tempo's is the estimator's last step: its first, the onset envelopes, compiles on
#: any signal, the rest only on one long enough to show a period (a review found a
#: 6-s warm-up compiled 3 of the 20 and every worker the other 17 again).
METER_KERNEL = "loudness.kweighted_subblock_power"
FINGERPRINT_KERNEL = "spectral.frame_features"
TEMPO_KERNEL = "tempo.tempo_from_acf"
RENDER_KERNEL = "dynamics.limiter"


def _numba_cache_folder(source_folder: str, root: str | None = None) -> str:
    """Where Numba keeps the compiled code of the modules in ``source_folder``: under
    ``root`` (default: ``NUMBA_CACHE_DIR``) in ``<folder>_<sha1 of the folder>/``
    (numba's ``get_suitable_cache_subpath``), or without one in ``__pycache__`` beside
    the sources."""
    import hashlib

    root = os.environ.get("NUMBA_CACHE_DIR") if root is None else root
    if not root:
        return os.path.join(source_folder, "__pycache__")
    digest = hashlib.sha1(source_folder.encode()).hexdigest()
    return os.path.join(root, os.path.basename(source_folder) + "_" + digest)


def _kernels_compiled(kernels: tuple[str, ...] = (METER_KERNEL,)) -> bool:
    """Whether Numba's cache holds each of ``kernels`` (``"module.function"`` of
    ``auralis_batch.kernels``), compiled from the sources installed now: when it does
    not, this run compiles, and the CLI says so. Found without importing Numba, where
    Numba keeps them (``NUMBA_CACHE_DIR/<folder>_<sha1 of the folder>/``, numba's
    ``get_suitable_cache_subpath``, or ``__pycache__`` beside the sources).

    Fresh means what Numba itself checks: its index of the kernel holds the SHA-256 of
    the module's source (the pinned numba 0.68 stamps an index with it). A file's time said
    nothing: a reinstall or a checkout that rewrote an unchanged source made every run
    announce a compile it did not do and start the warm-up process for nothing."""
    import glob
    import hashlib

    folder_of_kernels = _kernels_dir()
    folder = _numba_cache_folder(folder_of_kernels)
    digests: dict[str, bytes] = {}
    for kernel in kernels:
        module = kernel.partition(".")[0]
        if module not in digests:
            try:
                with open(os.path.join(folder_of_kernels, module + ".py"), "rb") as f:
                    digests[module] = hashlib.sha256(f.read()).digest()
            except OSError:
                digests[module] = b""  # nothing to compare with: say nothing
        if not digests[module]:
            continue
        pattern = os.path.join(glob.escape(folder), glob.escape(kernel) + "-*.nbi")
        if not any(_index_holds(index, digests[module]) for index in glob.glob(pattern)):
            return False
    return True


def _index_holds(index: str, digest: bytes) -> bool:
    """Whether Numba's cache index file ``index`` is stamped with ``digest`` (the
    stamp is pickled as raw bytes; the index is searched, not unpickled)."""
    try:
        with open(index, "rb") as f:
            return digest in f.read(1 << 20)
    except OSError:
        return False


# Public names, grouped as joblib groups its ``__all__``; each is imported from its
# module on first use (``__getattr__``), so ``import auralis_batch`` and the CLI's
# ``--help`` load neither NumPy nor Numba. Type checkers and IDEs read the
# ``TYPE_CHECKING`` block below; ``dir()`` lists the names.
_LAZY: dict[str, str] = {
    # analysis
    "analyze": ".analysis",
    "analyze_file": ".analysis",
    "measure_loudness": ".meter",
    "LoudnessMeter": ".meter",
    "Loudness": ".meter",
    # mastering one signal
    "master_array": ".pipeline",
    "master_stream": ".pipeline",
    "MasterOutcome": ".pipeline",
    # presets and settings
    "load_preset": ".presets",
    "list_presets": ".presets",
    "adaptive_preset": ".adaptive",
    "reference_preset": ".adaptive",
    "Preset": ".presets",
    "RunSettings": ".settings",
    # batches
    "run_master": ".batch",
    "BatchResult": ".batch",
    # cache
    "FingerprintCache": ".cache",
    "open_cache": ".cache",
    # errors
    "AuralisError": ".errors",
    "ParameterError": ".errors",
    "ParameterTypeError": ".errors",
    "PresetError": ".errors",
    "AudioError": ".errors",
    "DecodeError": ".errors",
    "OutputError": ".errors",
    "TrackTimeoutError": ".errors",
    "UnsafeRowError": ".errors",
    "PlanError": ".batch",
    "RunLockedError": ".journal",
}

__all__ = [
    "AudioError",
    "AuralisError",
    "BatchResult",
    "DecodeError",
    "FingerprintCache",
    "Loudness",
    "LoudnessMeter",
    "MasterOutcome",
    "OutputError",
    "ParameterError",
    "ParameterTypeError",
    "PlanError",
    "Preset",
    "PresetError",
    "RunLockedError",
    "RunSettings",
    "TrackTimeoutError",
    "UnsafeRowError",
    "__version__",
    "adaptive_preset",
    "analyze",
    "analyze_file",
    "list_presets",
    "load_preset",
    "master_array",
    "master_stream",
    "measure_loudness",
    "open_cache",
    "reference_preset",
    "run_master",
]

if TYPE_CHECKING:  # pragma: no cover - what the lazy names are, for type checkers
    from .adaptive import adaptive_preset, reference_preset
    from .analysis import analyze, analyze_file
    from .batch import BatchResult, PlanError, run_master
    from .cache import FingerprintCache, open_cache
    from .errors import (
        AudioError,
        AuralisError,
        DecodeError,
        OutputError,
        ParameterError,
        ParameterTypeError,
        PresetError,
        TrackTimeoutError,
        UnsafeRowError,
    )
    from .journal import RunLockedError
    from .meter import Loudness, LoudnessMeter, measure_loudness
    from .pipeline import MasterOutcome, master_array, master_stream
    from .presets import Preset, list_presets, load_preset
    from .settings import RunSettings


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auralis_batch' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
