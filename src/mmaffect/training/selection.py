"""Choose capacity and regularisation on the validation rows, before the run's model is fitted.

Why: on a few hundred training rows a fixed recipe (an MLP with 256 hidden units and no weight
decay) over-fits, and a linear model on the same features beats it. Rather than hand-tuning per
dataset, a model declares a small grid of candidate values when it registers
(``register_model(..., search={...})``); every candidate
is fitted on the run's training rows, early-stopped on its validation rows, and the one with the best
validation value of the search criterion wins. The test rows are never passed to this module, so the
choice cannot depend on them.

The criterion is ``train.select`` when the user set one; with the default (``loss``) a label task is
judged on validation UA (``wacc``) at each candidate's early-stopped epoch, because UA is what our
small-data tables report and validation loss prefers the most heavily penalised candidate (it rewards
calibrated, under-confident probabilities: on 267 MELD rows the linear model chose the grid's top
weight decay in 7 of 9 runs). Ties in UA go to the lower validation loss, then to grid order.
:func:`choose_config` returns the run's config with the winning values, which the caller fits once
more (the same seed gives the same weights) and evaluates on test as usual; the candidates, their
validation values and the chosen values go into the run's ``result.json``.

A search only runs on training sets up to the model's ``search_max_train_rows``: with more rows the
default recipe is adequate and one fit costs more, so the grid's extra fits would buy little. A value
the user set explicitly (``--set model_args.hidden=128``, or a ``train.*`` value other than the model's
default recipe) is kept and not searched. The experiment config's ``search`` replaces the model's grid
(``--set search={}`` switches the search off).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import fields, replace

import numpy as np
import torch

from mmaffect.errors import ConfigError
from mmaffect.models.base import ModelSpec
from mmaffect.models.registry import create_model, model_info
from mmaffect.training.config import ExperimentConfig, TrainConfig
from mmaffect.training.trainer import LOWER_IS_BETTER, evaluate_rows, fit

log = logging.getLogger(__name__)


def _recipe(model: str) -> TrainConfig:
    """The model's default training recipe: TrainConfig defaults under its ``train_defaults``."""
    return replace(TrainConfig(), **model_info(model).train_defaults)


def search_space(config: ExperimentConfig, n_train: int) -> dict[str, tuple]:
    """The keys and candidate values to search for ``config`` on ``n_train`` training rows ({}: none)."""
    info = model_info(config.model)
    if config.search is not None:
        candidates = {key: tuple(values) if isinstance(values, list | tuple) else values
                      for key, values in config.search.items()}
    elif info.search_max_train_rows is None or n_train <= info.search_max_train_rows:
        candidates = info.search
    else:
        return {}
    recipe = _recipe(config.model)
    out = {}
    for key, values in candidates.items():
        section, _, leaf = key.partition(".")
        if section not in ("train", "model_args") or not leaf or not isinstance(values, tuple) or not values:
            raise ConfigError(f"search key {key!r} must be train.<field> or model_args.<name> with a list of values")
        if config.search is not None:
            out[key] = values  # asked for explicitly: searched as given
            continue
        if section == "model_args" and leaf in config.model_args:
            continue  # set by the user
        if section == "train" and getattr(config.train, leaf) != getattr(recipe, leaf):
            continue  # set by the user (differs from the model's recipe)
        out[key] = values
    return out


def with_values(config: ExperimentConfig, values: dict[str, object]) -> ExperimentConfig:
    """A copy of ``config`` with dotted ``values`` applied."""
    train_fields = {f.name for f in fields(TrainConfig)}
    train, model_args = {}, dict(config.model_args)
    for key, value in values.items():
        section, _, leaf = key.partition(".")
        if section == "train":
            if leaf not in train_fields:
                raise ConfigError(f"search key {key!r}: train has no field {leaf!r}")
            train[leaf] = value
        else:
            model_args[leaf] = value
    return replace(config, train=replace(config.train, **train), model_args=model_args)


def choose_config(config: ExperimentConfig, data, task, spec: ModelSpec, seed: int, train_rows: np.ndarray,
                  valid_rows: np.ndarray) -> tuple[ExperimentConfig, dict]:
    """Fit every candidate of the model's search on ``train_rows``, keep the best on ``valid_rows``.

    Returns ``(config with the chosen values, record)``; without a search, ``(config, {})``. The
    record holds the criterion, the searched space, each candidate's values, best validation value
    and best epoch, and the chosen values. Ties go to the earlier candidate in grid order.
    """
    space = search_space(config, len(train_rows))
    if not space:
        return config, {}
    select = search_criterion(config, task)
    sign = 1.0 if select in LOWER_IS_BETTER else -1.0
    candidates, best, best_key = [], None, (math.inf, math.inf)
    for combo in itertools.product(*space.values()):
        values = dict(zip(space, combo, strict=True))
        candidate = with_values(config, values)
        torch.manual_seed(seed)
        model = create_model(candidate.model, spec, **candidate.model_args)
        result = fit(model, data, task, train_rows, valid_rows, candidate.train, seed, progress=False,
                     desc="search")
        model.load_state_dict(result.best_state)
        metrics, _ = evaluate_rows(model, data, valid_rows, task, candidate.train)
        value = metrics[select]
        candidates.append({"values": values, f"valid_{select}": value, "valid_loss": metrics["loss"],
                           "best_epoch": result.best_epoch})
        key = (sign * value if math.isfinite(value) else math.inf,
               metrics["loss"] if math.isfinite(metrics["loss"]) else math.inf)
        if best is None or key < best_key:
            best, best_key = values, key
    log.info("validation search over %d candidates chose %s", len(candidates), best)
    record = {"criterion": f"valid {select} ({'lower' if sign > 0 else 'higher'} is better; ties: lower valid loss)",
              "space": {k: list(v) for k, v in space.items()}, "candidates": candidates, "chosen": best}
    return with_values(config, best), record


def search_criterion(config: ExperimentConfig, task) -> str:
    """The validation metric candidates are compared on: the user's ``train.select`` if set, else UA
    (``wacc``) for label tasks and the loss otherwise."""
    if config.train.select != "loss" or task.label_kind is None:
        return config.train.select
    return "wacc"
