"""Experiments: seeds x folds of (standardise, build, fit, evaluate), resumable, summarised in
``results.json``.

Output folder layout::

    DIR/config.json                 the experiment config (a re-run with another config is refused)
    DIR/seed{S}[_fold{F}]/          one run: last.safetensors while training, then
        model.safetensors           best weights + everything needed to use them (see checkpoint.py)
        predictions.csv             per-row predictions on valid and test
        result.json                 the run's metrics; its presence marks the run as done
    DIR/results.json                the summary (public format, keep stable)
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import ShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit

from mmaffect import __version__
from mmaffect.data.dataset import AffectDataset
from mmaffect.data.registry import load_dataset
from mmaffect.data.standardize import Standardizer
from mmaffect.errors import ConfigError
from mmaffect.io import atomic_write, write_json
from mmaffect.models.base import AffectModel, ModelSpec
from mmaffect.models.registry import create_model, model_info
from mmaffect.predictions import prediction_table
from mmaffect.published import references
from mmaffect.recipe import training_recipe
from mmaffect.tasks import Task, empty_modalities, make_task
from mmaffect.training import distributed
from mmaffect.training.checkpoint import prefixed, save_tensors
from mmaffect.training.config import CVConfig, ExperimentConfig
from mmaffect.training.selection import choose_config
from mmaffect.training.trainer import evaluate_rows, fit, target_rows


@dataclass(frozen=True)
class RunPlan:
    seed: int
    fold: int | None
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @property
    def name(self) -> str:
        return f"seed{self.seed}" + ("" if self.fold is None else f"_fold{self.fold}")


def _strata(data: AffectDataset) -> np.ndarray:
    if data.label is not None:
        return data.label.numpy()
    if data.score is not None:  # sign for sentiment in [-3, 3], else above/below the median
        score = data.score.numpy()
        return (score >= (0 if data.default_task == "sentiment" else np.median(score))).astype(int)
    return np.zeros(len(data), dtype=int)


def fold_assignment(data: AffectDataset, cv: CVConfig) -> np.ndarray:
    """Fold id per row: the dataset's fold column, or stratified group K-fold (fixed seed 0, so
    every training seed sees the same folds)."""
    if cv.folds == "column":
        if data.fold is None:
            raise ConfigError(f"{data.name} has no fold column; use --cv K")
        return np.asarray(data.fold)
    if not isinstance(cv.folds, int) or cv.folds < 2:
        raise ConfigError("cross-validation needs at least 2 folds")
    if cv.group_by == "none":
        groups = np.arange(len(data))
    else:
        groups = getattr(data, cv.group_by, None) if cv.group_by in ("group", "speaker", "dialogue_id") else None
        if groups is None:
            raise ConfigError(f"{data.name} has no {cv.group_by!r} to group folds by")
    strata = _strata(data)
    counts = np.bincount(strata)
    if (counts[counts > 0] < cv.folds).any():
        small = np.flatnonzero((counts > 0) & (counts < cv.folds))
        names = [repr(data.class_names[c]) if data.label is not None and data.class_names else str(c) for c in small]
        raise ConfigError(f"{data.name}: class {', '.join(names)} has fewer members than {cv.folds} folds")
    if len(np.unique(groups)) < cv.folds:
        raise ConfigError(f"{data.name}: only {len(np.unique(groups))} {cv.group_by} groups for {cv.folds} folds")
    folds = np.empty(len(data), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=cv.folds, shuffle=True, random_state=0)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(data)), strata, groups)):
        folds[test] = k
    return folds


def carve_validation(data: AffectDataset, rows: np.ndarray, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows into (train, valid), stratified, for CV with only two folds (e.g. the two
    speakers of one IEMOCAP session), where no third fold is left to validate on."""
    strata = _strata(data)[rows]
    counts = np.bincount(strata)
    classes = int((counts > 0).sum())
    size = max(round(fraction * len(rows)), classes)  # stratifying needs one row per class at least
    stratify = strata if (counts[counts > 0] >= 2).all() and len(rows) - size >= classes else None
    if stratify is None:
        size = max(round(fraction * len(rows)), 1)
    splitter = (StratifiedShuffleSplit if stratify is not None else ShuffleSplit)(
        n_splits=1, test_size=size, random_state=0)
    train, valid = next(splitter.split(np.zeros(len(rows)), stratify))
    return rows[np.sort(train)], rows[np.sort(valid)]


def plan_runs(data: AffectDataset, config: ExperimentConfig) -> list[RunPlan]:
    """One plan per seed (fixed split) or per seed and fold (CV; valid = the next fold, or with only
    two folds a stratified 20 % of the training fold)."""
    if config.cv is None:
        splits = data.split_indices()
        missing = [s for s in ("train", "valid", "test") if s not in splits]
        if missing:
            raise ConfigError(f"{data.name} has no {', '.join(missing)} split; use --cv K")
        return [RunPlan(s, None, splits["train"], splits["valid"], splits["test"]) for s in config.seeds]
    folds = fold_assignment(data, config.cv)
    names = sorted(np.unique(folds).tolist())
    plans = []
    for seed in config.seeds:
        for i, fold in enumerate(names):
            test = np.flatnonzero(folds == fold)
            if len(names) == 2:
                train, valid = carve_validation(data, np.flatnonzero(folds != fold))
            else:
                valid_fold = names[(i + 1) % len(names)]
                train = np.flatnonzero((folds != fold) & (folds != valid_fold))
                valid = np.flatnonzero(folds == valid_fold)
            plans.append(RunPlan(seed, fold, train, valid, test))
    return plans


def split_description(data: AffectDataset, config: ExperimentConfig) -> str:
    if config.cv is None:
        return data.meta.get("split", "fixed train/valid/test split")
    valid = "valid = 20 % of the training fold" if config.cv.folds == 2 else "valid = next fold"
    if config.cv.folds == "column":
        return "leave-one-fold-out over the dataset's fold column (valid = next fold, or 20 % of train with 2)"
    return f"{config.cv.folds}-fold stratified group CV by {config.cv.group_by} ({valid})"


def model_spec(data: AffectDataset, task: Task) -> ModelSpec:
    return ModelSpec(dims={k: m.dim for k, m in data.modalities.items()},
                     seq_dims={k: m.seq_dim for k, m in data.modalities.items() if m.seq_dim is not None},
                     heads=task.heads)


def count_parameters(model: AffectModel) -> int:
    return sum(p.numel() for p in model.parameters())


def write_predictions(path: Path, data: AffectDataset, parts: dict[str, tuple[np.ndarray, dict]], task: Task
                      ) -> None:
    """One CSV row per evaluated row, in the prediction-table schema that ``mmaffect predict`` writes too
    (:mod:`mmaffect.predictions`)."""
    frames = []
    for split, (rows, pred) in parts.items():
        targets = {k: v.numpy() for k, v in target_rows(data, rows).items()}
        if "label" in targets and task.class_names:
            targets["label"] = np.asarray(task.class_names, dtype=object)[targets["label"]]
        frames.append(prediction_table(data.ids[rows], task, pred, np.arange(len(rows)), targets=targets,
                                       split=[split] * len(rows), modalities=list(data.modalities)))
    table = pd.concat(frames, ignore_index=True)
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def checkpoint_meta(config: ExperimentConfig, data: AffectDataset, task: Task, spec: ModelSpec,
                    plan: RunPlan, best_epoch: int) -> dict:
    return {"format": 1, "mmaffect_version": __version__, "model": config.model,
            "model_args": config.model_args, "spec": spec.to_dict(), "task": task.to_dict(),
            "dataset": config.dataset, "modalities": list(data.modalities), "features": data.meta,
            "seed": plan.seed, "fold": plan.fold, "best_epoch": best_epoch, "train": config.to_dict()["train"],
            "recipe": training_recipe(config.dataset, config.dataset_args, data,
                                      model_info(config.model).input_form == "sequence").to_dict()}


def run_one(config: ExperimentConfig, data: AffectDataset, plan: RunPlan, rundir: Path, progress: bool) -> dict:
    """Standardise on the run's training rows, fit, evaluate valid/test, write the run's files."""
    if config.standardize:
        chosen = None if config.standardize is True else list(config.standardize)
        standardizer = Standardizer.fit(data, plan.train, chosen)
        data = standardizer.apply(data)
    task = make_task(data, config.task, threshold=config.threshold, score_loss=config.train.score_loss,
                     class_weights=config.train.class_weights, train_index=plan.train)
    spec = model_spec(data, task)
    # small data: capacity/regularisation chosen on the valid rows (test rows are not passed)
    config, search = choose_config(config, data, task, spec, plan.seed, plan.train, plan.valid)
    torch.manual_seed(plan.seed)
    model = create_model(config.model, spec, **config.model_args)
    result = fit(model, data, task, plan.train, plan.valid, config.train, plan.seed, workdir=rundir,
                 progress=progress, desc=plan.name)
    model.load_state_dict(result.best_state)
    valid_metrics, valid_pred = evaluate_rows(model, data, plan.valid, task, config.train)
    test_metrics, test_pred = evaluate_rows(model, data, plan.test, task, config.train)
    tensors = prefixed(model.state_dict(), "model/")
    if config.standardize:
        tensors |= prefixed(standardizer.to_tensors(), "norm/")
    if distributed.is_main():  # under torchrun every rank holds the same results; rank 0 writes them
        save_tensors(rundir / "model.safetensors", tensors,
                     checkpoint_meta(config, data, task, spec, plan, result.best_epoch))
        write_predictions(rundir / "predictions.csv", data,
                          {"valid": (plan.valid, valid_pred), "test": (plan.test, test_pred)}, task)
    record = {"seed": plan.seed, "fold": plan.fold, "best_epoch": result.best_epoch,
              "epochs_run": result.epochs_run, "seconds": result.seconds,
              "seconds_per_epoch": result.seconds_per_epoch, "n_params": count_parameters(model),
              "n_train": len(plan.train), "n_valid": len(plan.valid), "n_test": len(plan.test),
              "valid": valid_metrics, "test": test_metrics,
              "test_report": task.report(test_pred, {k: v.numpy() for k, v in target_rows(data, plan.test).items()}),
              "history": result.history, **({"search": search} if search else {})}
    if distributed.is_main():
        write_json(rundir / "result.json", record)
        (rundir / "last.safetensors").unlink(missing_ok=True)
    distributed.barrier()
    return record


def summarise(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    return {"mean": float(finite.mean()) if len(finite) else float("nan"),
            "std": float(finite.std(ddof=1)) if len(finite) > 1 else 0.0,
            "per_run": [float(v) for v in arr]}


def aggregate(records: list[dict], split: str, seeds: list[int]) -> dict:
    """Mean ± sample std over all runs (seeds x folds) per metric; per_seed averages a seed's folds."""
    out = {}
    for metric in records[0][split]:
        stats = summarise([r[split][metric] for r in records])
        stats["per_seed"] = [float(np.nanmean([r[split][metric] for r in records if r["seed"] == s]))
                             for s in seeds]
        out[metric] = stats
    return out


def data_fingerprint(data: AffectDataset) -> str:
    """SHA-256 of ids, splits, labels and utterance vectors: resuming into a folder trained on other
    features (a re-extracted cache, a changed reader) is refused instead of silently mixing runs."""
    digest = hashlib.sha256()
    for part in (data.ids, data.split, data.fold):
        if part is not None:
            digest.update("\x1f".join(map(str, part.tolist())).encode())
    for tensor in [data.score, data.label, data.labels] + [m.vector for m in data.modalities.values()]:
        if tensor is not None:
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_experiment_data(config: ExperimentConfig) -> AffectDataset:
    info = model_info(config.model)
    options = dict(config.dataset_args)
    if config.dataset.startswith("manifest:") and config.cv is not None:
        options.setdefault("folds", config.cv.folds)  # the reader then names the rows of too-rare classes
    data = load_dataset(config.dataset, sequences=info.input_form == "sequence", **options)
    if config.modalities:
        data = data.with_modalities(config.modalities)
    return data


def with_defaults(saved: dict, defaults: dict | None = None) -> dict:
    """A saved experiment identity with options added to the config since it was written set to their
    defaults, so a newer mmaffect resumes older runs whose settings it would have chosen the same way
    (an option the run set to anything else still makes the configurations differ)."""
    defaults = ExperimentConfig().to_dict() if defaults is None else defaults
    out = dict(saved)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict) and key != "model_args":
            out[key] = with_defaults(out[key], value)
    return out


def run_experiment(config: ExperimentConfig, output: str | Path, progress: bool = True) -> dict:
    """Run every planned (seed, fold), resuming finished and interrupted runs; write results.json."""
    output = Path(output)
    data = load_experiment_data(config)
    plans = plan_runs(data, config)
    saved = output / "config.json"
    identity = {**config.to_dict(), "data_fingerprint": data_fingerprint(data)}
    if saved.exists():
        if with_defaults(json.loads(saved.read_text())) != identity:
            raise ConfigError(f"{output} holds runs of another configuration or other data; choose a new --output")
    elif distributed.is_main():
        write_json(saved, identity)
    distributed.barrier()
    records = []
    for plan in plans:
        rundir = output / plan.name
        done = rundir / "result.json"
        if done.exists():
            records.append(json.loads(done.read_text()))
            continue
        records.append(run_one(config, data, plan, rundir, progress))
    results = {
        "dataset": config.dataset,
        "model": config.model,
        "split": split_description(data, config),
        "modalities": list(data.modalities),
        "empty_modalities": empty_modalities(data),
        "task": "+".join(make_task(data, config.task).kinds),
        "seeds": list(config.seeds),
        "folds": None if config.cv is None else sorted({r["fold"] for r in records}),
        "test": aggregate(records, "test", config.seeds),
        "valid": aggregate(records, "valid", config.seeds),
        "train_seconds": float(sum(r["seconds"] for r in records)),
        "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in records])),
        "epochs_run": [r["epochs_run"] for r in records],
        "best_epochs": [r["best_epoch"] for r in records],
        "n_params": records[0]["n_params"],
        "published": [r.to_dict() for r in references(config.dataset, config.model)],
        "features": data.meta,
        "config": config.to_dict(),
        "environment": {"mmaffect": __version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "processes": distributed.world_size(),
                        "python": platform.python_version(), "machine": platform.machine()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if distributed.is_main():
        write_json(output / "results.json", results)
    return results
