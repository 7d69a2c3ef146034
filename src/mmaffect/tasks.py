"""What a run learns and how it is scored: targets, heads, task losses and metrics.

A dataset stores labels in their native form; the task picks which of them a model predicts:

- ``sentiment``: a score in [-3, 3] (MOSI/MOSEI) with the field's metric set (acc2 has0/non0, acc3/5/7,
  MAE, Pearson).
- ``regression``: a score on any range (MAE, Pearson; acc2/F1 around ``threshold`` when given).
- ``classification``: single-label classes (acc, ``wacc`` = UA, weighted/macro F1).
- ``binary``: two classes (acc, ``wacc`` = UA, positive-class, weighted and macro F1, ROC-AUC) on two logits.
- ``multilabel``: multi-hot tags (micro/macro F1, per-tag F1, subset accuracy).

UA is ``wacc``: the mean recall over the classes present in the evaluated rows (a class missing from a
test fold is left out, not counted as 0); see :mod:`mmaffect.metrics.classification`.

``a+b`` learns both, e.g. ``sentiment+classification`` trains a score head and a class head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmaffect.data.dataset import AffectDataset
from mmaffect.errors import ConfigError
from mmaffect.metrics import (
    binary_metrics,
    classification_metrics,
    classification_report,
    multilabel_metrics,
    regression_metrics,
    sentiment_metrics,
)

SCORE_KINDS = ("sentiment", "regression")
LABEL_KINDS = ("classification", "binary")
KINDS = SCORE_KINDS + LABEL_KINDS + ("multilabel",)


@dataclass(frozen=True)
class Task:
    """Targets and heads of a run. ``kinds`` holds at most one score kind and one label kind."""

    kinds: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    tag_names: tuple[str, ...] | None = None
    threshold: float | None = None
    score_loss: str = "l1"
    class_weights: tuple[float, ...] | None = None
    tag_weights: tuple[float, ...] | None = None  # BCE pos_weight per tag (multi-label, "balanced")

    @property
    def score_kind(self) -> str | None:
        return next((k for k in self.kinds if k in SCORE_KINDS), None)

    @property
    def label_kind(self) -> str | None:
        return next((k for k in self.kinds if k in LABEL_KINDS), None)

    @property
    def heads(self) -> dict[str, int]:
        """Output name -> width that a model must produce."""
        heads = {}
        if self.score_kind:
            heads["score"] = 1
        if self.label_kind:
            heads["logits"] = len(self.class_names)
        if "multilabel" in self.kinds:
            heads["tags"] = len(self.tag_names)
        return heads

    def losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Task loss terms by name: ``score`` (L1 or MSE), ``label`` (CE), ``tags`` (BCE)."""
        terms = {}
        if self.score_kind:
            loss = F.l1_loss if self.score_loss == "l1" else F.mse_loss
            terms["score"] = loss(outputs["score"], batch["score"])
        if self.label_kind:
            device = outputs["logits"].device
            weight = None if self.class_weights is None else torch.tensor(self.class_weights, device=device)
            terms["label"] = F.cross_entropy(outputs["logits"], batch["label"], weight=weight)
        if "multilabel" in self.kinds:
            device = outputs["tags"].device
            pos_weight = None if self.tag_weights is None else torch.tensor(self.tag_weights, device=device)
            terms["tags"] = F.binary_cross_entropy_with_logits(outputs["tags"], batch["labels"], pos_weight=pos_weight)
        return terms

    def predictions(self, outputs: dict[str, Tensor]) -> dict[str, np.ndarray]:
        """Model outputs -> numpy predictions: ``score``, ``prob`` (class probabilities), ``tag_prob``,
        and ``relevance`` (per-modality weights) when the model outputs them."""
        out = {}
        if "score" in outputs:
            out["score"] = outputs["score"].numpy()
        if "logits" in outputs:
            out["prob"] = torch.softmax(outputs["logits"], -1).numpy()
        if "tags" in outputs:
            out["tag_prob"] = torch.sigmoid(outputs["tags"]).numpy()
        if "relevance" in outputs:
            out["relevance"] = outputs["relevance"].numpy()
        return out

    def metrics(self, pred: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> dict[str, float]:
        """Every scalar metric of this task; ``targets`` holds ``score``/``label``/``labels`` arrays."""
        out: dict[str, float] = {}
        if self.score_kind == "sentiment":
            out |= sentiment_metrics(pred["score"], targets["score"])
        elif self.score_kind == "regression":
            out |= regression_metrics(pred["score"], targets["score"], threshold=self.threshold)
        if self.label_kind == "classification":
            out |= classification_metrics(pred["prob"], targets["label"], num_classes=len(self.class_names))
        elif self.label_kind == "binary":
            out |= binary_metrics(pred["prob"][:, 1], targets["label"])
        if "multilabel" in self.kinds:
            out |= multilabel_metrics(pred["tag_prob"], targets["labels"], list(self.tag_names))
        return out

    def report(self, pred: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> dict:
        """Per-class precision/recall/F1 and confusion matrix for label tasks (empty otherwise)."""
        if not self.label_kind:
            return {}
        return classification_report(pred["prob"].argmax(1), targets["label"], list(self.class_names))

    def to_dict(self) -> dict:
        return {"kinds": list(self.kinds), "class_names": self.class_names and list(self.class_names),
                "tag_names": self.tag_names and list(self.tag_names), "threshold": self.threshold,
                "score_loss": self.score_loss,
                "class_weights": self.class_weights and list(self.class_weights),
                "tag_weights": self.tag_weights and list(self.tag_weights)}

    @classmethod
    def from_dict(cls, raw: dict) -> Task:
        return cls(kinds=tuple(raw["kinds"]),
                   class_names=raw["class_names"] and tuple(raw["class_names"]),
                   tag_names=raw["tag_names"] and tuple(raw["tag_names"]),
                   threshold=raw["threshold"], score_loss=raw["score_loss"],
                   class_weights=raw["class_weights"] and tuple(raw["class_weights"]),
                   tag_weights=raw.get("tag_weights") and tuple(raw["tag_weights"]))


def empty_modalities(data: AffectDataset) -> list[str]:
    """Modalities whose utterance vectors are the same on every row, so no model can learn from them.

    Readers give every row every modality they know and fill what a row lacks with zeros; the video
    of audio-only recordings (RAVDESS speech) is then zeros everywhere. A results header that listed
    it would claim data the run never had.
    """
    return [key for key, mod in data.modalities.items()
            if len(data) == 0 or bool((mod.vector == mod.vector[:1]).all())]


def make_task(data: AffectDataset, spec: str | None = None, *, threshold: float | None = None,
              score_loss: str = "l1", class_weights: str | None = None,
              train_index: np.ndarray | None = None) -> Task:
    """Build the task ``spec`` (default: the dataset's) and check the dataset has its targets.

    ``class_weights="balanced"`` weights the CE loss by ``n / (C * count_c)`` on the training rows, and
    for multi-label tasks each tag's positives by ``negatives / positives`` (BCE ``pos_weight``).
    """
    kinds = tuple((spec or data.default_task).split("+"))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown task {'+'.join(unknown)!r}; choose from {', '.join(KINDS)} (or a+b)")
    if sum(k in SCORE_KINDS for k in kinds) > 1 or sum(k in LABEL_KINDS for k in kinds) > 1:
        raise ConfigError(f"task {spec!r} combines two score or two label kinds")
    if any(k in SCORE_KINDS for k in kinds) and data.score is None:
        raise ConfigError(f"{data.name} has no score target for task {spec!r}")
    label_kind = next((k for k in kinds if k in LABEL_KINDS), None)
    if label_kind and data.label is None:
        raise ConfigError(f"{data.name} has no class labels for task {spec!r}")
    if label_kind == "binary" and len(data.class_names) != 2:
        raise ConfigError(f"task 'binary' needs 2 classes; {data.name} has {len(data.class_names)}")
    if "multilabel" in kinds and data.labels is None:
        raise ConfigError(f"{data.name} has no multi-label tags")
    if score_loss not in ("l1", "mse"):
        raise ConfigError(f"score_loss must be l1 or mse, not {score_loss!r}")
    weights = tag_weights = None
    if class_weights is not None:
        if class_weights != "balanced" or not (label_kind or "multilabel" in kinds):
            raise ConfigError("class_weights must be 'balanced' and needs a label or multi-label task")
        rows = slice(None) if train_index is None else train_index
        if label_kind:
            labels = data.label.numpy()[rows]
            counts = np.bincount(labels, minlength=len(data.class_names)).astype(float)
            weights = tuple(float(len(labels) / (len(counts) * c)) if c else 0.0 for c in counts)
        if "multilabel" in kinds:  # positives of a rare tag weigh as much as its negatives
            tags = data.labels.numpy()[rows]
            positives = tags.sum(0)
            tag_weights = tuple(float((len(tags) - p) / p) if p else 1.0 for p in positives)
    return Task(kinds=kinds,
                class_names=tuple(data.class_names) if label_kind else None,
                tag_names=tuple(data.tag_names) if "multilabel" in kinds else None,
                threshold=threshold, score_loss=score_loss, class_weights=weights, tag_weights=tag_weights)
