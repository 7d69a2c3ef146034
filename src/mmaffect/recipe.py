"""The feature recipe of a checkpoint: how its inputs were made, so new inputs are made the same way.

A model is only valid on features computed like its training features: the same text encoder, the
same extraction settings (frame rate, sample rate, crop size, ...) and the same reader options (the
``fps`` of a ``cache:`` dataset's sequence steps, a manifest's column mapping). Training saves a
:class:`FeatureRecipe` in every checkpoint (``meta["recipe"]``); ``predict`` checks new features
against it and ``analyze`` extracts with it. Checkpoints written before the recipe existed get one
rebuilt from what they recorded (``meta["features"]`` and ``meta["dataset"]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmaffect.errors import DataError

if TYPE_CHECKING:
    from mmaffect.data.dataset import AffectDataset

RECIPE_VERSION = 1


@dataclass(frozen=True)
class FeatureRecipe:
    """Everything about a checkpoint's inputs that must be reproduced at prediction time.

    Attributes:
        dataset: the training dataset (``iemocap6-text``, ``cache:DIR``, ``manifest:FILE``).
        dataset_args: its reader options (``columns``, ``encoding``, ``features``, ``fps``, ...).
        modalities: the modalities the model reads, in order.
        sequences: whether the model reads per-step sequences (else utterance vectors only).
        text_encoder: name and version of the sentence encoder of the text modality, if any.
        extraction: the media extraction settings (every ``ExtractConfig`` field) of the feature cache
            the audio/visual inputs came from, if any.
        extraction_hash: the cache's hash of those settings.
        step_fps: sequence step rate given to the reader (``cache:DIR`` option ``fps``); None = one
            step per sampled video frame.
        visual_names, audio_names: the names of the visual / audio utterance-vector columns.
    """

    dataset: str
    dataset_args: dict = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    sequences: bool = False
    text_encoder: str | None = None
    extraction: dict | None = None
    extraction_hash: str | None = None
    step_fps: float | None = None
    visual_names: tuple[str, ...] | None = None
    audio_names: tuple[str, ...] | None = None
    version: int = RECIPE_VERSION

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("modalities", "visual_names", "audio_names"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> FeatureRecipe:
        raw = dict(raw)
        for key in ("modalities", "visual_names", "audio_names"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def from_checkpoint(cls, meta: dict) -> FeatureRecipe:
        """The recipe saved in a checkpoint's metadata, or one rebuilt from an older checkpoint's."""
        if "recipe" in meta:
            return cls.from_dict(meta["recipe"])
        features = meta.get("features")
        features = features if isinstance(features, dict) else {}
        return _from_meta(meta.get("dataset", ""), {}, list(meta.get("modalities", [])), False, features)

    @property
    def media(self) -> bool:
        """Whether the model reads audio or video (so new inputs need media extraction)."""
        return any(m in ("a", "v") for m in self.modalities)

    def extract_config(self, **overrides: Any):
        """The :class:`~mmaffect.extraction.ExtractConfig` that reproduces the training features."""
        from mmaffect.extraction import ExtractConfig

        return ExtractConfig.from_dict(self.extraction or {}, **overrides)

    def check_extraction(self, config: dict, source: str | Path) -> None:
        """Refuse features extracted with other settings than the checkpoint's (``config``: the
        extraction settings of the feature cache at ``source``)."""
        if not self.extraction or not self.media:
            return
        from mmaffect.extraction.config import LEFT_OUT_AT  # a missing key is the value to_dict left out

        ours, theirs = {**LEFT_OUT_AT, **self.extraction}, {**LEFT_OUT_AT, **config}
        differ = sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k])
        if differ:
            shown = ", ".join(f"{k}={theirs[k]!r} (checkpoint: {ours[k]!r})" for k in differ)
            raise DataError(source, f"features extracted with other settings than the checkpoint's: {shown}; "
                                    "re-extract with the checkpoint's settings")

    def check_text_encoder(self, encoder: str | None, source: str | Path) -> None:
        if "t" in self.modalities and self.text_encoder and encoder and encoder != self.text_encoder:
            raise DataError(source, f"the checkpoint was trained on text features {self.text_encoder}, "
                                    f"this installation makes {encoder}")


def cache_settings(folder: str | Path) -> tuple[dict, str | None]:
    """(extraction settings, their hash) of a feature cache folder."""
    from mmaffect.extraction import FeatureCache

    with FeatureCache(folder) as cache:
        return dict(cache.config), cache.meta.get("config_hash")


def _from_meta(dataset: str, dataset_args: dict, modalities: list[str], sequences: bool,
               features: dict) -> FeatureRecipe:
    cached = features.get("features")  # the media recipe of cache: datasets; other readers describe theirs
    cached = cached if isinstance(cached, dict) else {}
    extraction = cached.get("extraction") or {}
    config, config_hash = extraction.get("config"), extraction.get("config_hash")
    if config is None and dataset_args.get("features") and any(m in ("a", "v") for m in modalities):
        config, config_hash = cache_settings(dataset_args["features"])
    visual = (cached.get("visual_vector") or {}).get("names")
    audio = (cached.get("audio_vector") or {}).get("names")
    fps = dataset_args.get("fps")
    return FeatureRecipe(dataset=dataset, dataset_args=dict(dataset_args), modalities=tuple(modalities),
                         sequences=sequences, text_encoder=features.get("text_encoder"), extraction=config,
                         extraction_hash=config_hash, step_fps=None if fps is None else float(fps),
                         visual_names=None if visual is None else tuple(visual),
                         audio_names=None if audio is None else tuple(audio))


def training_recipe(dataset: str, dataset_args: dict, data: AffectDataset, sequences: bool) -> FeatureRecipe:
    """The recipe of a model trained on ``data`` read from ``dataset`` with ``dataset_args``."""
    return _from_meta(dataset, dict(dataset_args), list(data.modalities), sequences, data.meta)
