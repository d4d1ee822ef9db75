"""Install-time behaviour: where Numba keeps compiled kernels."""

from __future__ import annotations

import os

import pytest

import auralis_batch


def _without_numba_cache_dir(monkeypatch) -> None:
    """Unset NUMBA_CACHE_DIR for one test, and have it unset again afterwards even if the
    code under test sets it (``delenv`` of a variable that is not set records nothing to
    restore: the value the test's code set leaked into every later test, whose CLI
    subprocesses then compiled every kernel again into that folder)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", "")
    monkeypatch.delenv("NUMBA_CACHE_DIR")


def test_numba_cache_goes_to_user_cache_dir_when_install_is_read_only(monkeypatch, tmp_path):
    _without_numba_cache_dir(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real_access = os.access
    kernels_dir = auralis_batch._kernels_dir()

    def read_only(path, mode, *args, **kwargs):
        if os.path.abspath(path) == os.path.abspath(kernels_dir) and mode == os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", read_only)
    auralis_batch._numba_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "xdg" / "auralis-batch" / "numba")


def test_numba_cache_stays_beside_a_writable_install_and_respects_the_user(monkeypatch):
    _without_numba_cache_dir(monkeypatch)
    auralis_batch._numba_cache_dir()  # the checkout is writable
    assert "NUMBA_CACHE_DIR" not in os.environ
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/chosen")
    auralis_batch._numba_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/chosen"


def test_wheel_has_one_top_level_package():
    """``kernels/`` installs as ``auralis_batch.kernels``: a top-level ``kernels`` would
    collide with an unrelated PyPI distribution of that name."""
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    setuptools_cfg = config["tool"]["setuptools"]
    assert {p.split(".")[0] for p in setuptools_cfg["packages"]} == {"auralis_batch"}
    assert setuptools_cfg["package-dir"]["auralis_batch.kernels"] == "kernels"
    import auralis_batch.kernels.biquad as biquad

    assert biquad.__name__ == "auralis_batch.kernels.biquad"


def test_public_api_is_visible_and_light():
    """Every public name is in __all__ and dir(), resolves lazily, and importing the
    package loads neither NumPy nor Numba (checked in a fresh interpreter)."""
    import subprocess
    import sys

    assert set(auralis_batch.__all__) == {"__version__", *auralis_batch._LAZY}
    assert dir(auralis_batch) == sorted(auralis_batch.__all__)
    for name in auralis_batch.__all__:
        assert getattr(auralis_batch, name) is not None
    assert issubclass(auralis_batch.OutputError, auralis_batch.AuralisError)
    code = "import sys, auralis_batch; print('numpy' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.split() == ["False", "False"]


def test_every_entry_point_accepts_the_same_sample_rates(tmp_path):
    import numpy as np
    import pytest
    import soundfile as sf

    from auralis_batch.analysis import analyze_array
    from auralis_batch.audio import probe
    from auralis_batch.dynamics import Compressor, Limiter
    from auralis_batch.errors import AuralisError
    from auralis_batch.limits import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ
    from auralis_batch.meter import LoudnessMeter

    def build(rate):
        return [
            lambda: LoudnessMeter(rate, 2),
            lambda: Compressor(rate, 2, threshold_db=-20.0, ratio=2.0),
            lambda: Limiter(rate, 2),
            lambda: analyze_array(np.zeros((1, rate)), rate, tempo=False),
        ]

    for rate in (MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ):
        for make in build(rate):
            make()
    for rate in (MIN_SAMPLE_RATE_HZ - 1, MAX_SAMPLE_RATE_HZ + 1):
        for make in build(rate):
            with pytest.raises(AuralisError, match=r"sample_rate|sample rate"):
                make()
    path = tmp_path / "fast.wav"
    sf.write(path, np.zeros((1000, 1)), MAX_SAMPLE_RATE_HZ + 16000)
    with pytest.raises(AuralisError, match="sample rate"):
        probe(path)


def test_an_installed_package_keeps_numbas_cache_out_of_site_packages(monkeypatch, tmp_path):
    """A wheel's kernels (no pyproject.toml beside the package) are writable as root,
    yet their cache goes to the user cache dir: files pip does not know of would
    outlive an uninstall and shadow a later editable install."""
    site = tmp_path / "site-packages" / "auralis_batch" / "kernels"
    site.mkdir(parents=True)
    _without_numba_cache_dir(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(auralis_batch, "_kernels_dir", lambda: str(site))
    auralis_batch._numba_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "xdg" / "auralis-batch" / "numba")


def test_no_home_folder_means_temporary_kernels_and_no_fingerprint_cache(monkeypatch, tmp_path):
    """HOME unset and no user entry (a service user under cron): platformdirs raises,
    and every command ended in its traceback (a sweep). The kernels compile into a
    temporary folder with a note; a run goes on without the fingerprint cache, warned;
    the cache commands say why and exit 2."""
    import warnings

    import platformdirs
    from typer.testing import CliRunner

    from auralis_batch.cache import CacheWarning, NullCache, default_cache_dir, open_cache
    from auralis_batch.cli import app
    from auralis_batch.errors import NoCacheFolderError

    def no_home(*args, **kwargs):
        raise RuntimeError("could not determine the home directory")

    site = tmp_path / "site-packages" / "auralis_batch" / "kernels"
    site.mkdir(parents=True)
    _without_numba_cache_dir(monkeypatch)
    monkeypatch.setattr(auralis_batch, "_kernels_dir", lambda: str(site))
    monkeypatch.setattr(platformdirs, "user_cache_dir", no_home)
    monkeypatch.setattr(auralis_batch, "_NUMBA_CACHE_NOTE", None)
    auralis_batch._numba_cache_dir()
    assert os.path.basename(os.environ["NUMBA_CACHE_DIR"]).startswith("auralis-batch-numba-")
    assert "there is no home folder to keep them in" in auralis_batch._NUMBA_CACHE_NOTE

    monkeypatch.delenv("AURALIS_CACHE_DIR", raising=False)
    with pytest.raises(NoCacheFolderError, match="give --cache-dir or set AURALIS_CACHE_DIR"):
        default_cache_dir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(open_cache(), NullCache)
    assert [w.category for w in caught] == [CacheWarning]
    for args in (["cache", "stats"], ["cache", "path"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and "[error] no folder for the fingerprint cache" in res.output
    # an older platformdirs gives "~/.cache/..." unexpanded instead of raising
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *a, **k: "~/.cache/ab")
    with pytest.raises(NoCacheFolderError, match="no home folder"):
        default_cache_dir()
    _without_numba_cache_dir(monkeypatch)
    auralis_batch._numba_cache_dir()
    assert os.path.isabs(os.environ["NUMBA_CACHE_DIR"])
    # HOME names a folder that is not there: no home, and nothing is created (the cache
    # made /nonexistent/.cache/... as root, home folder and all: a newcomer)
    gone = tmp_path / "no-such-home"
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *a, **k: f"{gone}/.cache/ab")
    monkeypatch.setenv("HOME", str(gone))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with pytest.raises(NoCacheFolderError, match="HOME names a folder that does not exist"):
        default_cache_dir()
    _without_numba_cache_dir(monkeypatch)
    auralis_batch._numba_cache_dir()
    assert "there is no home folder to keep them in" in auralis_batch._NUMBA_CACHE_NOTE
    assert not gone.exists()
