"""Classification metrics for emotion recognition (IEMOCAP, MELD, CMU-MOSEI emotions, ...).

Conventions follow what the affective-computing literature reports: accuracy and weighted F1 (MELD,
IEMOCAP "WA/WF1"), unweighted accuracy (IEMOCAP "UA"), micro/macro F1 for multi-label emotion tags.
Values are sklearn's, in percent (0-100) and not rounded; ``zero_division=0`` everywhere, which equals
sklearn's default value without its warnings.

UA is ``wacc`` and only ``wacc``: the mean recall over the classes present in the evaluated targets
(``sklearn.metrics.balanced_accuracy_score``). A class absent from a test fold has no recall, so it is
left out rather than counted as 0. ``recall_macro`` is sklearn's macro recall over the classes in the
targets *or* the predictions, the companion of ``precision_macro`` and ``f1_macro``: it equals ``wacc``
unless a class is predicted that never occurs in the targets (then that class counts as recall 0).
"""

from __future__ import annotations

from typing import Any

# sklearn is imported inside the functions (about 1 s): loading a model to predict never pays for it
import numpy as np
from numpy.typing import ArrayLike

from .regression import _as_float_array, _as_vector, _check_same_length, _percent_equal

__all__ = ["binary_metrics", "classification_metrics", "classification_report", "multilabel_metrics"]


def _as_labels(x: ArrayLike, name: str) -> np.ndarray:
    """A 1-D int64 array of non-negative class indices (floats like 2.0 are accepted)."""
    arr = _as_vector(x, name)
    if not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must hold integer class labels, got non-integer values")
    if np.any(arr < 0):
        raise ValueError(f"{name} must hold non-negative class labels, got min {arr.min():g}")
    return arr.astype(np.int64)


def _pred_labels(pred: ArrayLike, num_classes: int | None) -> np.ndarray:
    """Integer labels from ``pred``: labels (N,) as given, scores (N, C) by argmax."""
    arr = _as_float_array(pred, "pred")
    if arr.ndim == 2 and arr.shape[1] > 1:
        if num_classes is not None and arr.shape[1] != num_classes:
            raise ValueError(f"pred has {arr.shape[1]} score columns but num_classes={num_classes}")
        return np.argmax(arr, axis=1).astype(np.int64)
    return _as_labels(arr, "pred")


def _check_label_range(labels: np.ndarray, n: int, name: str, what: str) -> None:
    if labels.max() >= n:
        raise ValueError(f"{name} has label {int(labels.max())} but {what}={n} (labels must be < {n})")


def _as_probabilities(x: ArrayLike, name: str) -> np.ndarray:
    arr = _as_float_array(x, name)
    if np.any((arr < 0) | (arr > 1)):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got range [{arr.min():g}, {arr.max():g}]"
        )
    return arr


def _as_binary(x: ArrayLike, name: str) -> np.ndarray:
    arr = _as_float_array(x, name)
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(np.int64)


def classification_metrics(
    pred: ArrayLike, target: ArrayLike, num_classes: int | None = None
) -> dict[str, float]:
    """Single-label multi-class metrics: ``acc``, ``wacc``, ``f1_weighted``, ``f1_macro``,
    ``precision_macro``, ``recall_macro`` (all in percent).

    ``pred`` is integer labels (N,) or class scores/probabilities (N, C), which are argmax-ed.
    ``wacc`` is UA: the mean recall over the classes present in ``target`` (equal to
    ``sklearn.metrics.balanced_accuracy_score``). The F1/precision/recall averages use sklearn's default
    label set, the union of labels in ``target`` and ``pred``; a class that is predicted but never true
    therefore counts with recall 0 in ``recall_macro`` but not in ``wacc`` (see the module docstring).
    ``num_classes``, if given, only checks that labels are in ``[0, num_classes)`` and that the score
    matrix has that many columns.
    """
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = _pred_labels(pred, num_classes)
    t = _as_labels(target, "target")
    _check_same_length(p, t, "pred", "target")
    if num_classes is not None:
        _check_label_range(p, num_classes, "pred", "num_classes")
        _check_label_range(t, num_classes, "target", "num_classes")

    prec_m, rec_m, f1_m, _ = precision_recall_fscore_support(t, p, average="macro", zero_division=0)
    return {
        "acc": _percent_equal(p, t),
        "wacc": _unweighted_accuracy(p, t),
        "f1_weighted": 100.0 * float(f1_score(t, p, average="weighted", zero_division=0)),
        "f1_macro": 100.0 * float(f1_m),
        "precision_macro": 100.0 * float(prec_m),
        "recall_macro": 100.0 * float(rec_m),
    }


def _unweighted_accuracy(p: np.ndarray, t: np.ndarray) -> float:
    """UA in percent: mean recall over the classes present in ``t`` (absent classes have no recall)."""
    return 100.0 * float(np.mean([np.mean(p[t == c] == c) for c in np.unique(t)]))


def classification_report(pred: ArrayLike, target: ArrayLike, class_names: list[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1 (percent) and support, plus the confusion matrix.

    Label ``i`` is ``class_names[i]``. Every class is listed, in order, even if absent: a class never in
    ``target`` gets support 0 and recall 0. ``confusion[i][j]`` counts samples of true class ``i``
    predicted as ``j`` (rows = true, columns = predicted), as plain ints so the report is JSON-ready.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    names = list(class_names)
    if not names:
        raise ValueError("class_names is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names}")
    n = len(names)
    p = _pred_labels(pred, n)
    t = _as_labels(target, "target")
    _check_same_length(p, t, "pred", "target")
    _check_label_range(p, n, "pred", "len(class_names)")
    _check_label_range(t, n, "target", "len(class_names)")

    labels = list(range(n))
    prec, rec, f1, support = precision_recall_fscore_support(
        t, p, labels=labels, average=None, zero_division=0
    )
    per_class = {
        name: {
            "precision": 100.0 * float(prec[i]),
            "recall": 100.0 * float(rec[i]),
            "f1": 100.0 * float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    cm = confusion_matrix(t, p, labels=labels)
    return {"per_class": per_class, "confusion": [[int(v) for v in row] for row in cm]}


def binary_metrics(prob_pos: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """Binary metrics from the probability of class 1, a sample being positive if ``prob_pos >= 0.5``:
    ``acc``, ``wacc`` (UA, as for :func:`classification_metrics`), ``f1`` (of the positive class),
    ``f1_weighted`` (support-weighted F1 of both classes, the headline metric of several binary affect
    benchmarks), ``f1_macro`` and ``auc`` (ROC-AUC, raw in [0, 1]; NaN if ``target`` holds only one
    class, where AUC is undefined). Accuracies and F1 in percent.
    """
    from sklearn.metrics import f1_score, roc_auc_score

    prob = _as_probabilities(_as_vector(prob_pos, "prob_pos"), "prob_pos")
    t = _as_binary(_as_vector(target, "target"), "target")
    _check_same_length(prob, t, "prob_pos", "target")
    p = (prob >= 0.5).astype(np.int64)
    auc = float(roc_auc_score(t, prob)) if np.unique(t).size == 2 else float("nan")
    return {
        "acc": _percent_equal(p, t),
        "wacc": _unweighted_accuracy(p, t),
        "f1": 100.0 * float(f1_score(t, p, pos_label=1, average="binary", zero_division=0)),
        "f1_weighted": 100.0 * float(f1_score(t, p, average="weighted", zero_division=0)),
        "f1_macro": 100.0 * float(f1_score(t, p, average="macro", zero_division=0)),
        "auc": auc,
    }


def multilabel_metrics(
    prob: ArrayLike, target: ArrayLike, tag_names: list[str] | None = None
) -> dict[str, float]:
    """Multi-label tag metrics (e.g. CMU-MOSEI's six emotions), a tag being present if ``prob >= 0.5``.

    ``f1_micro`` / ``f1_macro`` are sklearn's over the (N, K) indicator matrices, ``subset_acc`` the share
    of samples whose whole tag set is right, and ``f1_<tag>`` the binary F1 of each tag (named by
    ``tag_names`` or by column index). All in percent; a tag never true nor predicted has F1 0.
    """
    from sklearn.metrics import f1_score

    pr = _as_probabilities(prob, "prob")
    t = _as_binary(target, "target")
    if pr.ndim != 2 or t.ndim != 2:
        raise ValueError(f"prob and target must be 2-D (N, K), got shapes {pr.shape} and {t.shape}")
    if pr.shape != t.shape:
        raise ValueError(f"prob and target must have the same shape, got {pr.shape} and {t.shape}")
    k = t.shape[1]
    if tag_names is None:
        names = [str(i) for i in range(k)]
    else:
        names = [str(n) for n in tag_names]
        if len(names) != k:
            raise ValueError(f"tag_names has {len(names)} names but prob/target have {k} columns")
        if len(set(names)) != k:
            raise ValueError(f"tag_names has duplicates: {names}")
        clash = {"micro", "macro"} & set(names)
        if clash:
            raise ValueError(f"tag names {sorted(clash)} would clash with the f1_micro/f1_macro keys")

    p = (pr >= 0.5).astype(np.int64)
    out: dict[str, float] = {
        "f1_micro": 100.0 * float(f1_score(t, p, average="micro", zero_division=0)),
        "f1_macro": 100.0 * float(f1_score(t, p, average="macro", zero_division=0)),
        "subset_acc": 100.0 * float(np.mean(np.all(p == t, axis=1))),
    }
    per_tag = f1_score(t, p, average=None, zero_division=0)
    for name, value in zip(names, per_tag, strict=True):
        out[f"f1_{name}"] = 100.0 * float(value)
    return out
