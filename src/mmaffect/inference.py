"""Using a trained checkpoint: rebuild the model and its input standardisation, predict, score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmaffect.data.dataset import AffectDataset
from mmaffect.data.registry import load_dataset
from mmaffect.data.standardize import Standardizer
from mmaffect.errors import DataError
from mmaffect.models.base import AffectModel, ModelSpec
from mmaffect.models.registry import create_model, model_info
from mmaffect.tasks import Task
from mmaffect.training.checkpoint import load_tensors, unprefixed
from mmaffect.training.config import TrainConfig
from mmaffect.training.runs import model_spec, write_predictions
from mmaffect.training.trainer import evaluate_rows


@dataclass
class LoadedModel:
    model: AffectModel
    task: Task
    standardizer: Standardizer | None
    meta: dict

    def prepare(self, data: AffectDataset, source: str) -> AffectDataset:
        """Select the checkpoint's modalities, check widths and apply its standardisation."""
        data = data.with_modalities(self.meta["modalities"])
        expected = ModelSpec.from_dict(self.meta["spec"])
        got = model_spec(data, self.task)
        if got.dims != expected.dims or any(got.seq_dims.get(m) != d for m, d in expected.seq_dims.items()):
            raise DataError(source, f"feature widths {got.dims} do not match the checkpoint's {expected.dims}")
        if self.task.class_names and data.class_names is not None and \
                list(data.class_names) != list(self.task.class_names):
            raise DataError(source, f"classes {data.class_names} differ from the checkpoint's "
                                    f"{list(self.task.class_names)}")
        return self.standardizer.apply(data) if self.standardizer is not None else data


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild a model from a checkpoint written by ``mmaffect train``."""
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
    return LoadedModel(model, Task.from_dict(meta["task"]), Standardizer.from_tensors(norm) if norm else None, meta)


def evaluate_checkpoint(checkpoint: str | Path, dataset: str, split: str = "test",
                        predictions: str | Path | None = None, dataset_args: dict | None = None) -> dict[str, float]:
    """Metrics of a checkpoint on one split (or ``all``) of a dataset; optionally write predictions.

    ``manifest:`` datasets are scored from the rows ``mmaffect predict`` writes (``dataset_args``: the
    reader's ``columns``, ``encoding``, ``features``), so rows with problems are listed, not fatal."""
    if dataset.startswith("manifest:"):
        from mmaffect.commands.predict import evaluate_manifest

        return evaluate_manifest(checkpoint, dataset, split=split, predictions=predictions, **(dataset_args or {}))
    if dataset_args:
        raise DataError(dataset, f"takes no reader options (got {', '.join(sorted(dataset_args))})")
    loaded = load_model(checkpoint)
    data = load_dataset(dataset, sequences=model_info(loaded.meta["model"]).input_form == "sequence")
    data = loaded.prepare(data, dataset)
    if split == "all":
        rows = np.arange(len(data))
    else:
        splits = data.split_indices()
        if split not in splits:
            raise DataError(dataset, f"no {split!r} split (has {', '.join(splits) or 'none'})")
        rows = splits[split]
    cfg = TrainConfig(**loaded.meta["train"])
    metrics, pred = evaluate_rows(loaded.model, data, rows, loaded.task, cfg)
    if predictions:
        write_predictions(Path(predictions), data, {split: (rows, pred)}, loaded.task)
    return metrics
