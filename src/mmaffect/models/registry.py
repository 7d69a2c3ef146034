"""Model registry: ``@register_model`` on a model class, ``create_model(name, spec, **hparams)``.

Registering is all it takes for a model to be listed by ``mmaffect models``, trained by the generic
trainer and smoke-tested by ``tests/test_models.py`` (which iterates over this registry).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from mmaffect.errors import ConfigError
from mmaffect.models.base import AffectModel, ModelSpec


@dataclass(frozen=True)
class ModelInfo:
    name: str
    factory: Callable[..., AffectModel]
    input_form: str  # "sequence" when it needs per-step sequences, else "vector" (see AffectModel.needs)
    modalities: tuple[str, ...] | None  # required modalities, None = any non-empty subset
    description: str
    train_defaults: dict  # the model's training recipe, under a config file and the command line
    heads: tuple[str, ...] | None  # task heads it supports (score, logits, tags); None = all
    needs: frozenset[str] = frozenset({"vectors"})  # batch inputs it reads (AffectModel.needs)
    # candidate values chosen on validation before the run (mmaffect.training.selection), by dotted key
    search: dict[str, tuple] = field(default_factory=dict)
    search_max_train_rows: int | None = None  # search only on training sets up to this size (None: always)

    def hparams(self) -> dict[str, object]:
        """Hyper-parameters the factory accepts (beyond ``spec``) with their defaults."""
        params = inspect.signature(self.factory).parameters
        return {n: p.default for n, p in params.items() if n != "spec" and p.kind is p.KEYWORD_ONLY}


MODELS: dict[str, ModelInfo] = {}
SMALL_TRAIN_ROWS = 3000  # "small data": models that declare a search run it up to this many training rows


def register_model(name: str, *, description: str, modalities: tuple[str, ...] | None = None,
                   train_defaults: dict | None = None, heads: tuple[str, ...] | None = None,
                   search: dict[str, list] | None = None, search_max_train_rows: int | None = SMALL_TRAIN_ROWS,
                   **fixed):
    """Register a model class under ``name``; ``fixed`` keyword arguments are bound for this name.

    Binding lets one class serve several names, e.g. ``text-mlp`` = ``UnimodalMLP(modality="t")``.
    ``train_defaults`` are :class:`~mmaffect.training.config.TrainConfig` values this model trains
    best with (e.g. TFN's large batches); config files and command-line options override them.
    ``search`` declares candidate values (``train.<field>`` or ``model_args.<name>`` -> list) chosen on
    the validation rows before each run, on training sets of at most ``search_max_train_rows`` rows
    (see :mod:`mmaffect.training.selection`).
    """
    for key, values in (search or {}).items():
        section, _, leaf = key.partition(".")
        if section not in ("train", "model_args") or not leaf or not values:
            raise ValueError(f"search key {key!r} must be train.<field> or model_args.<name> with values")

    def decorate(cls: type[AffectModel]) -> type[AffectModel]:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")

        def factory(spec: ModelSpec, **hparams) -> AffectModel:
            return cls(spec, **fixed, **hparams)

        factory.__signature__ = inspect.Signature(
            [p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self" and n not in fixed])
        MODELS[name] = ModelInfo(name, factory, cls.input_form, modalities, description, dict(train_defaults or {}),
                                 heads, cls.needs, {k: tuple(v) for k, v in (search or {}).items()},
                                 search_max_train_rows)
        return cls

    return decorate


def model_info(name: str) -> ModelInfo:
    _import_models()
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def create_model(name: str, spec: ModelSpec, **hparams) -> AffectModel:
    """Build a registered model; unknown hyper-parameters or missing modalities are config errors."""
    info = model_info(name)
    unknown = sorted(set(hparams) - set(info.hparams()))
    if unknown:
        raise ConfigError(f"model {name!r} has no hyper-parameter {', '.join(unknown)}; "
                          f"it takes {', '.join(info.hparams()) or 'none'}")
    if info.modalities is not None:
        missing = [m for m in info.modalities if m not in spec.dims]
        if missing:
            raise ConfigError(f"model {name!r} needs modality {', '.join(missing)}")
    if info.heads is not None and set(spec.heads) - set(info.heads):
        raise ConfigError(f"model {name!r} predicts only {', '.join(info.heads)}; the task needs "
                          f"{', '.join(spec.heads)}")
    if "sequences" in info.needs:  # "sequences?" models read a vector-only modality as one step
        missing = [m for m in spec.dims if m not in spec.seq_dims]
        if missing:
            raise ConfigError(f"model {name!r} needs sequences; modality {', '.join(missing)} has only vectors")
    return info.factory(spec, **hparams)


def list_models() -> list[ModelInfo]:
    _import_models()
    return [MODELS[n] for n in sorted(MODELS)]


def _import_models() -> None:
    from mmaffect.models import audio, baselines, context, late_fusion, mre, semanticmac, text_finetune  # noqa: F401
    from mmaffect.models import deepmsi, int2m3ap, st3dh  # noqa: F401  # isort: skip
    from mmaffect.models.baselines import graph_mfn, mfn, misa, mmim, mult, self_mm  # noqa: F401  # isort: skip
