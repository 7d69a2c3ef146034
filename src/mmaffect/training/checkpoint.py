"""Checkpoints as safetensors files: tensors plus a JSON metadata record, written atomically.

safetensors cannot execute code on load (unlike ``torch.load`` of a pickle), so a checkpoint from
anywhere is safe to open. A model checkpoint carries everything needed to use it on new data: the
model name and hyper-parameters, the input spec, the task, the input standardisation and the feature
recipe of the data it was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from mmaffect.errors import DataError
from mmaffect.io import atomic_write

META_KEY = "mmaffect"


def save_tensors(path: str | Path, tensors: dict[str, Tensor], meta: dict) -> None:
    """Write ``tensors`` and the JSON-serialisable ``meta`` to ``path`` atomically."""
    payload = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    text = json.dumps(meta)
    atomic_write(path, lambda tmp: save_file(payload, str(tmp), metadata={META_KEY: text}))


def load_tensors(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """Read a file written by :func:`save_tensors`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(path, f"not a readable safetensors checkpoint ({exc})") from exc
    if raw is None:
        raise DataError(path, "not an mmaffect checkpoint (no metadata record)")
    return tensors, json.loads(raw)


def optimizer_to_tensors(state: dict) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer/scheduler ``state_dict`` into tensors and a JSON-able rest."""
    tensors, plain = {}, {"param_groups": state.get("param_groups"), "state": {}}
    for pid, entries in state.get("state", {}).items():
        plain["state"][str(pid)] = {}
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{pid}/{key}"] = value
            else:
                plain["state"][str(pid)][key] = value
    return tensors, plain


def optimizer_from_tensors(tensors: dict[str, Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {int(pid): dict(entries) for pid, entries in plain["state"].items()}
    for name, value in tensors.items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def unprefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def rng_tensors(generator: torch.Generator) -> dict[str, Tensor]:
    """The global torch RNG (dropout) and the shuffling generator, for an exact resume."""
    return {"rng/torch": torch.get_rng_state(), "rng/shuffle": generator.get_state()}
