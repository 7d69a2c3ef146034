"""Output locations: checked before any work starts, written atomically, failures named.

A reader never sees a half-written results file or checkpoint, and a run never computes for an hour
and then finds it cannot write where it was told to.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError

from mmaffect.errors import OutputError


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise OutputError(path, f"cannot create the {what}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(path, f"cannot create the {what}: no write permission in {base}")


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Refuse an output file location before work starts: an existing folder, a parent that is a file,
    a folder without write permission. An existing file is fine (it is replaced atomically)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, f"is a folder; the {what} needs a file name")
    if path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(path, f"cannot replace the {what}: no write permission in {path.parent}")
    _check_creatable(path, what)
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Refuse an output folder location before work starts: an existing file, a parent that is a file,
    a folder without write permission."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, f"exists and is a file; the {what} must be a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(path, f"no write permission in the {what}")
        return path
    _check_creatable(path, what)
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file in the same folder, then rename it onto ``path``."""
    path = check_output_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(path, f"cannot write ({exc.strerror or exc})") from exc
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files owner-only; give them the usual mode
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:  # disk full, quota, permission changed mid-run
        Path(tmp).unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(path, f"cannot write ({reason}); nothing was written") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, value) -> None:
    """Write ``value`` as indented JSON, atomically. NaN is written as null (strict JSON)."""
    text = json.dumps(_nan_to_none(value), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _nan_to_none(value):
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value
