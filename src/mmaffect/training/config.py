"""Experiment configuration: a YAML file, then command-line options, then ``--set key=value``.

Every field has a default, so ``mmaffect train --dataset D --model M`` works without a file. A file
looks like::

    dataset: mosi-bclstm
    model: tfn
    model_args: {text_hidden: 128, dropout: 0.2}
    seeds: 3
    train: {lr: 0.001, batch_size: 64, patience: 20}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

import yaml

from mmaffect.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "lbfgs")  # lbfgs: full batch, see trainer.FullBatchLBFGS
SCHEDULERS = ("none", "linear", "cosine", "plateau")  # linear/cosine decay per optimizer step


@dataclass
class TrainConfig:
    """How one model is fitted. Selection and early stopping use the validation split only."""

    epochs: int = 100
    batch_size: int = 64
    eval_batch_size: int = 4096
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"
    warmup_epochs: int = 0
    warmup_ratio: float = 0.0  # warm-up as a fraction of all optimizer steps (added to warmup_epochs)
    accumulate: int = 1  # micro-batches per optimizer step: the effective batch is accumulate x batch_size
    bf16: bool = False  # bfloat16 autocast for forward passes (weights and optimizer stay float32)
    patience: int = 20
    select: str = "loss"  # "loss" (lower is better) or a validation metric, e.g. f1_weighted
    grad_clip: float | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    score_loss: str = "l1"
    class_weights: str | None = None
    checkpoint_seconds: float = 30.0  # how often the resumable training state is written

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"train.scheduler must be one of {', '.join(SCHEDULERS)}, not {self.scheduler!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1")
        if self.lr <= 0:
            raise ConfigError("train.lr must be > 0")
        if self.accumulate < 1:
            raise ConfigError("train.accumulate must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("train.warmup_ratio must be in [0, 1)")
        if self.optimizer == "lbfgs" and self.accumulate != 1:
            raise ConfigError("train.optimizer=lbfgs takes the whole training set as one batch: "
                              "train.accumulate must be 1")


@dataclass
class CVConfig:
    """Cross-validation: ``folds`` = K for stratified group K-fold, or ``"column"`` for the dataset's
    own fold column (e.g. IEMOCAP sessions: leave-one-session-out)."""

    folds: int | str = 5
    group_by: str = "group"  # group | speaker | dialogue_id | none


@dataclass
class ExperimentConfig:
    dataset: str = ""
    dataset_args: dict = field(default_factory=dict)  # reader options, e.g. manifest column mapping
    model: str = ""
    model_args: dict = field(default_factory=dict)
    task: str | None = None
    threshold: float | None = None
    modalities: list[str] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    standardize: bool | list[str] = True  # z-score features on training rows: all, none, or these modalities
    cv: CVConfig | None = None
    # replaces the model's validation search (train.<field> / model_args.<name> -> values); {} = no search
    search: dict | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if not self.dataset:
            raise ConfigError("no dataset given (--dataset or 'dataset:' in the config file)")
        if not self.model:
            raise ConfigError("no model given (--model or 'model:' in the config file)")
        if not self.seeds:
            raise ConfigError("at least one seed is needed")
        self.train.validate()
        if self.search is not None and not isinstance(self.search, dict):
            raise ConfigError(f"search must be a mapping of train.<field> / model_args.<name> to lists, "
                              f"not {self.search!r} ({{}} switches the search off)")

    def to_dict(self) -> dict:
        return asdict(self)


def _coerce_seeds(value) -> list[int]:
    """``3`` means seeds 0, 1, 2; a list is taken as is."""
    if isinstance(value, int):
        if value < 1:
            raise ConfigError("seeds must be >= 1")
        return list(range(value))
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return value
    raise ConfigError(f"seeds must be a count or a list of integers, not {value!r}")


def _coerce(value, hint, name: str):
    """Numbers written as strings (YAML 1.1 reads ``1e-4`` as a string) become numbers; wrong types fail."""
    args = set(get_args(hint)) if get_origin(hint) in (Union, UnionType) else {hint}
    if value is None and type(None) in args:
        return value
    kinds = {get_origin(a) or a for a in args} - {type(None)}
    if kinds <= {dict, list, bool} and not isinstance(value, tuple(kinds)):
        wanted = {dict: "a mapping", list: "a list", bool: "true or false"}
        raise ConfigError(f"{name} must be {' or '.join(wanted[k] for k in wanted if k in kinds)}, got {value!r}")
    if float in args and bool not in args:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if int in args and not isinstance(value, int) and str not in args:
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    return value


def _build(cls, raw: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown {where} option {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    hints = get_type_hints(cls)
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()})


def from_dict(raw: dict) -> ExperimentConfig:
    raw = dict(raw)
    train = _build(TrainConfig, raw.pop("train", None) or {}, "train")
    cv = raw.pop("cv", None)
    cv = _build(CVConfig, cv, "cv") if isinstance(cv, dict) else cv
    if "seeds" in raw:
        raw["seeds"] = _coerce_seeds(raw["seeds"])
    if isinstance(raw.get("modalities"), str):
        raw["modalities"] = raw["modalities"].split(",")
    config = _build(ExperimentConfig, {**raw, "train": train, "cv": cv}, "config")
    return config


def load_config(path: str | Path | None, overrides: dict | None = None, sets: list[str] | None = None
                ) -> ExperimentConfig:
    """Merge, later winning: TrainConfig defaults, the model's ``train_defaults``, the YAML file,
    ``overrides`` (command-line options), ``--set a.b=value`` items."""
    raw: dict = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({str(exc).splitlines()[0]})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config file must be a mapping")
        # a run folder's config.json also records which data its runs saw: that belongs to the folder (it is
        # checked on resume), not to the configuration, so the file can start a new --output as it is
        raw.pop("data_fingerprint", None)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, key, value)
    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"--set {item}: the key {key.strip()!r} is not a dotted name like train.lr")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"--set {item}: the value is not valid YAML ({problem})") from None
        _set_dotted(raw, key.strip(), value)
    for section in ("train", "model_args", "dataset_args", "cv"):
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise ConfigError(f"{section} must be a mapping of options (e.g. {section}.name=value), "
                              f"not {raw[section]!r}")
    if raw.get("model"):
        from mmaffect.models.registry import model_info

        defaults, given = model_info(raw["model"]).train_defaults, raw.get("train") or {}
        # mappings (loss_weights) merge key by key: --set train.loss_weights.x=1 keeps the recipe's other weights
        raw["train"] = {**defaults, **given, **{k: {**defaults[k], **given[k]} for k in given
                                                if isinstance(defaults.get(k), dict) and isinstance(given[k], dict)}}
    config = from_dict(raw)
    config.validate()
    return config


def _set_dotted(raw: dict, key: str, value) -> None:
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a mapping")
    node[leaf] = value
