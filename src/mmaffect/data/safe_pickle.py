"""A restricted unpickler for feature pickles from other toolkits (MMSA, MultiBench).

``pickle.load`` runs any callable a file names, so a downloaded feature file can execute code.
This unpickler resolves only numpy arrays, dtypes and scalars and builtin containers; any other
global (``os.system``, ``builtins.eval``, a class from some module) is refused before it can run.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from mmaffect.errors import DataError

_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("collections", "OrderedDict"),
}
# numpy < 2 wrote these module names; numpy 2 keeps the same objects under numpy._core
_RENAMED = {"numpy.core.multiarray": "numpy._core.multiarray", "numpy.core.numeric": "numpy._core.numeric"}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global that is not on the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = _RENAMED.get(module, module)
        if (module, name) not in _ALLOWED:
            raise RefusedGlobal(f"refused to load '{module}.{name}' (only numpy arrays and builtin "
                                "containers are allowed in feature pickles)")
        return super().find_class(module, name)


def safe_load_pickle(path: str | Path) -> Any:
    """Load a pickle holding only numpy arrays and builtin containers; anything else raises DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with open(path, "rb") as handle:
            return _RestrictedUnpickler(io.BufferedReader(handle), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise DataError(path, str(exc)) from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            ImportError, MemoryError) as exc:
        raise DataError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from exc
