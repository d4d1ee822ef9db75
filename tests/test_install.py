"""Install-time behaviour: where Numba keeps compiled kernels."""

from __future__ import annotations

import os

import auralis_batch


def test_numba_cache_goes_to_user_cache_dir_when_install_is_read_only(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real_access = os.access
    kernels_dir = os.path.join(os.path.dirname(os.path.dirname(auralis_batch.__file__)), "kernels")

    def read_only(path, mode, *args, **kwargs):
        if os.path.abspath(path) == os.path.abspath(kernels_dir) and mode == os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", read_only)
    auralis_batch._numba_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "xdg" / "auralis-batch" / "numba")


def test_numba_cache_stays_beside_a_writable_install_and_respects_the_user(monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    auralis_batch._numba_cache_dir()  # the checkout is writable
    assert "NUMBA_CACHE_DIR" not in os.environ
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/chosen")
    auralis_batch._numba_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/chosen"
