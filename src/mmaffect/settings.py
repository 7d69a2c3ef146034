"""Where data and caches live. One setting each, so tests, CI and users agree.

- ``MMAFFECT_DATA``: root of the datasets (default ``../shared/data`` beside the repository, i.e.
  relative to the current directory first, then to the installed source tree).
- ``MMAFFECT_CACHE``: feature caches (default ``~/.cache/mmaffect``).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """The dataset root: ``$MMAFFECT_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("MMAFFECT_DATA")
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return _REPO_ROOT.parent / "shared" / "data"


def cache_root() -> Path:
    """The feature-cache root: ``$MMAFFECT_CACHE`` or ``~/.cache/mmaffect``."""
    env = os.environ.get("MMAFFECT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmaffect"
