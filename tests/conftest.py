"""Shared fixtures. Real data are found through ``MMAFFECT_DATA`` (default ``../shared/data``);
feature caches go to a per-session temporary folder so tests never touch a user's cache."""

from __future__ import annotations

import os

import pytest

from mmaffect.settings import data_root


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Point MMAFFECT_CACHE at a temporary folder unless the caller chose one (CI may keep a cache)."""
    if "MMAFFECT_CACHE" not in os.environ:
        os.environ["MMAFFECT_CACHE"] = str(tmp_path_factory.mktemp("mmaffect-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def data_dir():
    root = data_root()
    assert root.is_dir(), f"data root {root} not found: set MMAFFECT_DATA"
    return root
