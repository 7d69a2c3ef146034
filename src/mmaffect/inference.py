"""Using trained checkpoints: rebuild each model with its input standardisation, and average several.

A checkpoint is one ``model.safetensors`` of ``mmaffect train``; a *run folder* is a training output
folder (``DIR/seedS[_foldF]/model.safetensors``: every seed and fold) or one run's folder. A run folder
predicts with the average of its members (class and tag probabilities, scores and relevance weights
are averaged), as ``mmaffect analyze`` always did with the default analysis model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mmaffect.data.dataset import AffectDataset
from mmaffect.data.standardize import Standardizer
from mmaffect.errors import DataError
from mmaffect.models.base import AffectModel, ModelSpec
from mmaffect.models.registry import create_model, model_info
from mmaffect.recipe import FeatureRecipe
from mmaffect.tasks import Task
from mmaffect.training.checkpoint import load_tensors, unprefixed
from mmaffect.training.config import TrainConfig
from mmaffect.training.trainer import predict_outputs

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.safetensors"


@dataclass
class LoadedModel:
    model: AffectModel
    task: Task
    standardizer: Standardizer | None
    meta: dict
    path: Path | None = None

    @property
    def recipe(self) -> FeatureRecipe:
        return FeatureRecipe.from_checkpoint(self.meta)

    @property
    def sequences(self) -> bool:
        return model_info(self.meta["model"]).input_form == "sequence"

    def prepare(self, data: AffectDataset, source: str) -> AffectDataset:
        """Select the checkpoint's modalities, check widths and apply its standardisation."""
        data = data.with_modalities(self.meta["modalities"])
        expected = ModelSpec.from_dict(self.meta["spec"])
        dims = {k: m.dim for k, m in data.modalities.items()}
        seq_dims = {k: m.seq_dim for k, m in data.modalities.items() if m.seq_dim is not None}
        if dims != expected.dims or any(seq_dims.get(m) != d for m, d in expected.seq_dims.items()):
            raise DataError(source, f"feature widths {dims} do not match the checkpoint's {expected.dims}")
        if self.task.class_names and data.class_names is not None and \
                list(data.class_names) != list(self.task.class_names):
            raise DataError(source, f"classes {data.class_names} differ from the checkpoint's "
                                    f"{list(self.task.class_names)}")
        return self.standardizer.apply(data) if self.standardizer is not None else data

    def outputs(self, data: AffectDataset, source: str) -> dict[str, Tensor]:
        """The model's head tensors for every row of (unprepared) ``data``."""
        prepared = self.prepare(data, source)
        batch_size = TrainConfig(**self.meta["train"]).eval_batch_size
        return predict_outputs(self.model, prepared, np.arange(len(prepared)), batch_size)


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild a model from one checkpoint file written by ``mmaffect train``."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != 1 or "model" not in meta:
        raise DataError(path, "not an mmaffect model checkpoint")
    spec = ModelSpec.from_dict(meta["spec"])
    # arguments ending in _init only initialise weights (see models/late_fusion.py): the state dict has them
    args = {k: v for k, v in meta["model_args"].items() if not k.endswith("_init")}
    model = create_model(meta["model"], spec, **args)
    try:
        model.load_state_dict(unprefixed(tensors, "model/"))
    except RuntimeError as exc:
        raise DataError(path, f"weights do not fit model {meta['model']!r} ({str(exc).splitlines()[0]})") from exc
    model.eval()
    norm = unprefixed(tensors, "norm/")
    return LoadedModel(model, Task.from_dict(meta["task"]), Standardizer.from_tensors(norm) if norm else None, meta,
                       Path(path))


def checkpoint_files(path: str | Path) -> list[Path]:
    """The checkpoint files behind ``path``: a file, a run's folder, or a training output folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(path, "checkpoint not found")
    if (path / CHECKPOINT_FILE).is_file():
        return [path / CHECKPOINT_FILE]
    files = sorted(path.glob(f"*/{CHECKPOINT_FILE}"))
    if not files:
        raise DataError(path, f"no {CHECKPOINT_FILE} here or in its run folders; expected a checkpoint file "
                              f"DIR/seedS[_foldF]/{CHECKPOINT_FILE} or a `mmaffect train` output folder DIR")
    return files


def load_models(path: str | Path) -> list[LoadedModel]:
    """Every model behind ``path`` (see :func:`checkpoint_files`), checked to agree on what they predict."""
    models = [load_model(f) for f in checkpoint_files(path)]
    first = models[0]
    for other in models[1:]:
        same = (other.meta["modalities"] == first.meta["modalities"] and other.task.to_dict() == first.task.to_dict()
                and other.meta["spec"] == first.meta["spec"] and other.sequences == first.sequences)
        if not same:
            raise DataError(path, f"its models disagree on modalities, task, classes or input widths "
                                  f"({first.path} vs {other.path}); pass one model file")
    if len(models) > 1:
        log.info("%s: averaging %d models", path, len(models))
    return models


def average_outputs(outputs: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Head tensors of the average model: mean class / tag probabilities (returned as logits, so the
    task's losses and predictions apply unchanged), mean scores and relevance weights. One model's
    outputs are returned as they are."""
    if len(outputs) == 1:
        return outputs[0]
    out = {}
    for key in outputs[0]:
        stacked = torch.stack([o[key] for o in outputs])
        if key == "logits":
            out[key] = torch.softmax(stacked, -1).mean(0).clamp(min=1e-12).log()
        elif key == "tags":
            p = torch.sigmoid(stacked).mean(0).clamp(1e-7, 1 - 1e-7)
            out[key] = torch.log(p) - torch.log1p(-p)
        else:
            out[key] = stacked.mean(0)
    return out
