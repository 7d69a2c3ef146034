"""Hyper-parameter search with Ray Tune and ASHA, selecting on validation rows only.

Why Ray: sweeps outgrow one process, and Ray Tune is what people already run on a laptop and a
cluster alike (``ray.init()`` here, ``ray.init(address=...)`` there). Why ASHA: most random
configurations are visibly worse after a few epochs; stopping them early buys more trials per core.

Honesty by construction: the driver cuts the dataset down to the search split's training and
validation rows (:meth:`AffectDataset.take`) before anything is sent to Ray, so no trial can read a
test row or label. Each trial is one call of the generic trainer
(:func:`mmaffect.training.trainer.fit`) on those rows, reporting the validation value of
``train.select`` after every epoch through ``fit``'s ``on_epoch`` hook. The best configuration
(its best epoch's validation value, over all trials; the first trial is the default configuration,
so the search cannot end below it on these rows) is then trained over the experiment's seeds
and scored on test exactly once, by :func:`mmaffect.training.runs.run_experiment`, beside the
default configuration trained the same way.

The search replaces a model's own small-data grid (``search={}`` in trials and in the tuned runs):
put those keys in the space to search them. The space file (YAML) maps dotted keys to one
distribution each::

    train.lr: {loguniform: [1.0e-4, 1.0e-2]}
    train.weight_decay: {choice: [0.0, 0.001, 0.01]}
    model_args.dropout: {uniform: [0.0, 0.5]}

Output folder::

    DIR/tune.json         identity of the search (space, base config, trials, data fingerprint)
    DIR/ray/              the Ray Tune experiment (one folder per trial: params, progress.csv, result.json)
    DIR/trials.jsonl      every trial: values, status, per-epoch validation values, best epoch
    DIR/search.json       the search summary and the chosen values (its presence = search done)
    DIR/best/, default/   ``mmaffect train`` output folders for the tuned and the default config
    DIR/results.json      validation and test of both, mean ± std over seeds

Resuming: a finished search (``search.json``) is not run again; an interrupted one is restored
from ``DIR/ray`` (finished trials kept, unfinished ones restarted); the final runs resume as
``mmaffect train`` does.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from mmaffect.data.dataset import AffectDataset
from mmaffect.errors import ConfigError, DataError
from mmaffect.io import atomic_write, check_output_dir, write_json
from mmaffect.training.config import ExperimentConfig
from mmaffect.training.runs import data_fingerprint, load_experiment_data, run_experiment
from mmaffect.training.selection import with_values
from mmaffect.training.trainer import LOWER_IS_BETTER

log = logging.getLogger(__name__)

DISTRIBUTIONS = ("choice", "uniform", "loguniform")


@dataclass(frozen=True)
class Dimension:
    """One searched key: ``kind`` in :data:`DISTRIBUTIONS`; ``values`` the choices or (low, high)."""

    key: str
    kind: str
    values: tuple

    def to_ray(self):
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        return (tune.uniform if self.kind == "uniform" else tune.loguniform)(*self.values)


def load_space(path: str | Path) -> dict[str, Dimension]:
    """Read a search-space YAML file; any problem is a one-line :class:`DataError` naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(path, f"cannot read the search space ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict) or not raw:
        raise DataError(path, "a search space is a non-empty mapping of train.<field> / model_args.<name> "
                              "to {choice: [...]} | {uniform: [lo, hi]} | {loguniform: [lo, hi]}")
    space = {}
    for key, spec in raw.items():
        section, _, leaf = str(key).partition(".")
        if section not in ("train", "model_args") or not leaf:
            raise DataError(path, f"key {key!r} must be train.<field> or model_args.<name>")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise DataError(path, f"{key}: give exactly one of {', '.join(DISTRIBUTIONS)}, e.g. {{choice: [1, 2]}}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise DataError(path, f"{key}: {kind} needs a list of values")
        if kind != "choice":
            try:
                low, high = (float(v) for v in values)
            except (TypeError, ValueError):
                raise DataError(path, f"{key}: {kind} needs [low, high] numbers, got {values!r}") from None
            if not low < high or (kind == "loguniform" and low <= 0):
                raise DataError(path, f"{key}: {kind} needs 0 {'<' if kind == 'loguniform' else '<='} low < high, "
                                      f"got {values!r}")
            values = [low, high]
        space[str(key)] = Dimension(str(key), kind, tuple(values))
    return space


def search_split(data: AffectDataset, config: ExperimentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test) rows of the dataset's fixed split; a search needs one."""
    if config.cv is not None:
        raise ConfigError("tune selects on a fixed validation split and scores its test split once; "
                          "cross-validation is not supported (give the manifest a split column)")
    splits = data.split_indices()
    missing = [s for s in ("train", "valid", "test") if s not in splits]
    if missing:
        raise ConfigError(f"{data.name} has no {', '.join(missing)} split; tune needs train, valid and test "
                          "(a manifest's split column)")
    return splits["train"], splits["valid"], splits["test"]


def search_data(data: AffectDataset, train: np.ndarray, valid: np.ndarray) -> AffectDataset:
    """Only the rows a search may see: ``train`` then ``valid`` (test rows and labels left behind)."""
    return data.take(np.concatenate([train, valid]))


def metric_name(config: ExperimentConfig) -> tuple[str, str]:
    """The reported metric (``valid_<train.select>``) and its Ray mode."""
    select = config.train.select
    return f"valid_{select}", "min" if select in LOWER_IS_BETTER else "max"


def default_point(space: dict[str, Dimension], base: ExperimentConfig) -> dict:
    """The default configuration's value of every searched key: the search's first trial, so the search
    never ends worse than the default on its own validation rows."""
    from mmaffect.models.registry import model_info

    hparams = model_info(base.model).hparams()
    point = {}
    for key in space:
        section, _, leaf = key.partition(".")
        if section == "train":
            if not hasattr(base.train, leaf):
                raise ConfigError(f"search key {key!r}: train has no field {leaf!r}")
            point[key] = getattr(base.train, leaf)
        elif leaf in base.model_args or leaf in hparams:
            point[key] = base.model_args.get(leaf, hparams.get(leaf))
        else:
            raise ConfigError(f"search key {key!r}: model {base.model!r} has no hyper-parameter {leaf!r}")
    return point


def run_trial(values: dict, *, data: AffectDataset, base: ExperimentConfig, threads: int = 1) -> None:
    """One Ray Tune trial: fit ``base`` with ``values`` on the rows marked train, report validation per
    epoch. ``data`` holds train and valid rows only (see :func:`search_data`)."""
    import torch
    from ray import tune

    from mmaffect.data.standardize import Standardizer
    from mmaffect.models.registry import create_model
    from mmaffect.tasks import make_task
    from mmaffect.training.runs import model_spec
    from mmaffect.training.trainer import fit

    torch.set_num_threads(threads)
    config = with_values(base, values)
    config.train.validate()
    train = np.flatnonzero(data.split == "train")
    valid = np.flatnonzero(data.split == "valid")
    if config.standardize:
        chosen = None if config.standardize is True else list(config.standardize)
        data = Standardizer.fit(data, train, chosen).apply(data)
    task = make_task(data, config.task, threshold=config.threshold, score_loss=config.train.score_loss,
                     class_weights=config.train.class_weights, train_index=train)
    seed = config.seeds[0]
    torch.manual_seed(seed)
    model = create_model(config.model, model_spec(data, task), **config.model_args)
    metric, _ = metric_name(config)

    def report(entry: dict) -> None:
        tune.report({metric: entry[metric], "valid_loss": entry["valid_loss"], "train_loss": entry["train_loss"],
                     "epoch": entry["epoch"], "epoch_seconds": entry["seconds"]})

    fit(model, data, task, train, valid, config.train, seed, progress=False, on_epoch=report)


def _init_ray(address: str | None, cpus: int) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=300 * 1024 ** 2, _temp_dir=tempfile.mkdtemp(prefix="mmaffect_ray_"))


def _trial_records(results, metric: str, mode: str, space: dict[str, Dimension], base: ExperimentConfig) -> list[dict]:
    """Every trial: values, status, per-epoch history, best validation value and epoch.

    Ray marks the last result of a trial ASHA stopped as ``done`` too, so the status is read from the
    trainer's own stopping rule: a trial that ran all epochs, or ``patience`` epochs past its best
    (the trainer's early stop; best = first epoch with the best value), completed; others ASHA stopped.
    """
    records = []
    for result in results:
        frame = result.metrics_dataframe
        history = [] if frame is None or frame.empty else [
            {"epoch": int(r["epoch"]), metric: float(r[metric]), "valid_loss": float(r["valid_loss"]),
             "train_loss": float(r["train_loss"]), "seconds": float(r["epoch_seconds"])}
            for _, r in frame.iterrows()]
        values = {k: result.config[k] for k in space}
        finite = [h for h in history if math.isfinite(h[metric])]
        best = (min if mode == "min" else max)(finite, key=lambda h: h[metric]) if finite else None
        epochs, train = len(history), with_values(base, values).train
        finished = epochs >= train.epochs or (best is not None and epochs - best["epoch"] >= train.patience)
        status = "error" if result.error else "completed" if finished else "stopped early by ASHA"
        records.append({"trial": Path(result.path).name, "values": values, "status": status,
                        "error": str(result.error).splitlines()[0] if result.error else None,
                        "epochs": len(history), f"best_{metric}": best[metric] if best else None,
                        "best_epoch": best["epoch"] if best else None, "history": history})
    return sorted(records, key=lambda r: r["trial"])


def run_search(space: dict[str, Dimension], base: ExperimentConfig, data: AffectDataset, trials: int,
               output: Path, *, address: str | None = None, cpus: int = 2, concurrent: int | None = None,
               grace_period: int = 3, reduction_factor: int = 2, sample_seed: int = 0) -> dict:
    """Run (or restore) the Ray Tune experiment in ``output/ray``; write trials.jsonl and search.json."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    _init_ray(address, cpus)
    metric, mode = metric_name(base)
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data, base=base), {"cpu": 1})
    experiment = output.resolve() / "ray"
    if tune.Tuner.can_restore(str(experiment)):
        log.info("tune: restoring the interrupted search in %s (finished trials are kept)", experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=base.train.epochs,
                                  grace_period=min(grace_period, base.train.epochs),
                                  reduction_factor=reduction_factor)
        tuner = tune.Tuner(
            trainable, param_space={k: d.to_ray() for k, d in space.items()},
            tune_config=tune.TuneConfig(metric=metric, mode=mode, scheduler=scheduler, num_samples=trials,
                                        search_alg=BasicVariantGenerator(
                                            points_to_evaluate=[default_point(space, base)],
                                            random_state=sample_seed, max_concurrent=concurrent or cpus),
                                        trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(name="ray", storage_path=str(output.resolve()), verbose=0))
    grid = tuner.fit()
    if len(grid) < trials or grid.num_terminated + grid.num_errors < len(grid):
        raise KeyboardInterrupt  # Ctrl-C: Ray saved the experiment and returned early; a re-run restores it
    records = _trial_records(grid, metric, mode, space, base)
    atomic_write(output / "trials.jsonl",
                 lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in records)))
    scored = [r for r in records if r[f"best_{metric}"] is not None]
    if not scored:
        raise ConfigError(f"no trial reported a finite {metric}; see {output / 'trials.jsonl'}")
    best = (min if mode == "min" else max)(scored, key=lambda r: r[f"best_{metric}"])
    summary = {"metric": metric, "mode": mode, "trials": len(records),
               "status": {s: sum(r["status"] == s for r in records) for s in sorted({r["status"] for r in records})},
               "epochs_trained": sum(r["epochs"] for r in records),
               "best_trial": best["trial"], "best": best["values"], f"best_{metric}": best[f"best_{metric}"],
               "best_epoch": best["best_epoch"]}
    write_json(output / "search.json", summary)
    return summary


def _valid_test(results: dict) -> dict:
    return {split: {m: {"mean": v["mean"], "std": v["std"]} for m, v in results[split].items()}
            for split in ("valid", "test")}


def tune_experiment(space_path: str | Path, base: ExperimentConfig, trials: int, output: str | Path, *,
                    address: str | None = None, cpus: int = 2, concurrent: int | None = None,
                    grace_period: int = 3, reduction_factor: int = 2, progress: bool = False) -> dict:
    """Search ``space_path`` around ``base`` on validation, then train the best and the default config over
    ``base.seeds`` and score both on test once; writes ``output/results.json`` (see the module docstring)."""
    if trials < 1:
        raise ConfigError(f"--trials must be 1 or more, not {trials}")
    if cpus < 1:
        raise ConfigError(f"--cpus must be 1 or more, not {cpus}")
    output = check_output_dir(output)
    output.mkdir(parents=True, exist_ok=True)
    space = load_space(space_path)
    data = load_experiment_data(base)
    train, valid, test = search_split(data, base)
    seen = search_data(data, train, valid)
    identity = {"space": {k: asdict(d) | {"values": list(d.values)} for k, d in space.items()},
                "base": base.to_dict(), "trials": trials, "grace_period": grace_period,
                "reduction_factor": reduction_factor, "search_fingerprint": data_fingerprint(seen)}
    saved = output / "tune.json"
    if saved.exists():
        if json.loads(saved.read_text()) != identity:
            raise ConfigError(f"{output} holds a search of another space, config or data; choose a new --output")
    else:
        write_json(saved, identity)
    done = output / "search.json"
    if done.exists():
        search = json.loads(done.read_text())
        log.info("tune: search already finished (%s); running or resuming the final runs", done)
    else:
        search = run_search(space, replace(base, search={}), seen, trials, output, address=address, cpus=cpus,
                            concurrent=concurrent, grace_period=grace_period, reduction_factor=reduction_factor)
    tuned = with_values(replace(base, search={}), search["best"])
    best = run_experiment(tuned, output / "best", progress=progress)
    default = run_experiment(base, output / "default", progress=progress)
    results = {"dataset": base.dataset, "model": base.model, "seeds": list(base.seeds),
               "split": {"train": len(train), "valid": len(valid), "test": len(test)},
               "search": search, "best_config": tuned.to_dict(),
               "best": _valid_test(best), "default": _valid_test(default)}
    write_json(output / "results.json", results)
    return results
