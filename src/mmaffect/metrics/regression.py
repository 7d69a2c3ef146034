"""Regression metrics for continuous affect scores (MOSI/MOSEI sentiment, valence/arousal, ...).

The sentiment metrics reproduce the evaluation code of MMSA (``metricsTop.py``, used by MulT, MISA,
Self-MM, ... papers) so that numbers are comparable with published tables. The only deliberate
difference is that accuracies and F1 values are returned in percent (0-100) and not rounded.

The private input-checking helpers in this module are shared with :mod:`mmaffect.metrics.classification`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["regression_metrics", "sentiment_metrics"]


# --------------------------------------------------------------------------------------------------------
# input checking (shared with classification.py)
# --------------------------------------------------------------------------------------------------------


def _as_float_array(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a float64 array, with a ValueError naming ``name`` if it is not numeric."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array, got a scalar")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{name} is empty")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf) out of {arr.size}")
    return arr


def _as_vector(x: ArrayLike, name: str) -> np.ndarray:
    """A finite 1-D float array; a column of shape (N, 1) is accepted and flattened."""
    arr = _as_float_array(x, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,) or (N, 1), got shape {arr.shape}")
    return arr


def _check_same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )


def _percent_equal(a: np.ndarray, b: np.ndarray) -> float:
    return 100.0 * float(np.mean(a == b))


def _weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    # zero_division=0 gives the same value as sklearn's default ("warn" -> 0) without the warning.
    return 100.0 * float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def _mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - target)))


def _pearson(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson r via ``np.corrcoef`` (as MMSA); NaN, silently, if either side is constant."""
    if np.ptp(pred) == 0 or np.ptp(target) == 0:
        return float("nan")
    with np.errstate(all="ignore"):
        return float(np.corrcoef(pred, target)[0, 1])


def _checked_pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = _as_vector(pred, "pred")
    t = _as_vector(target, "target")
    _check_same_length(p, t, "pred", "target")
    return p, t


# --------------------------------------------------------------------------------------------------------
# public metrics
# --------------------------------------------------------------------------------------------------------


def sentiment_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """MOSI/MOSEI sentiment metrics for scores in [-3, 3], computed as MMSA does.

    Papers report two binary accuracies, so both are given:

    - ``acc2_has0`` / ``f1_has0``: negative vs non-negative over all samples
      (``pred >= 0`` vs ``target >= 0``).
    - ``acc2_non0`` / ``f1_non0``: negative vs positive over samples with ``target != 0`` only
      (``pred > 0`` vs ``target > 0``). NaN if every target is 0.

    F1 values are sklearn's support-weighted F1 (``average="weighted"``). ``acc7``, ``acc5``, ``acc3``
    clip both sides to [-3, 3], [-2, 2], [-1, 1] and compare ``np.round`` of them; numpy rounds half to
    even (2.5 -> 2, -0.5 -> -0 == 0, 1.5 -> 2), exactly as the reference code. ``mae`` is the mean
    absolute error of the unclipped scores, ``corr`` the Pearson correlation (NaN if either side is
    constant). Accuracies and F1 are in percent, ``mae`` and ``corr`` raw.
    """
    p, t = _checked_pair(pred, target)

    out: dict[str, float] = {}
    has0_pred, has0_true = p >= 0, t >= 0
    out["acc2_has0"] = _percent_equal(has0_pred, has0_true)
    out["f1_has0"] = _weighted_f1(has0_true, has0_pred)

    nz = t != 0
    if np.any(nz):
        non0_pred, non0_true = p[nz] > 0, t[nz] > 0
        out["acc2_non0"] = _percent_equal(non0_pred, non0_true)
        out["f1_non0"] = _weighted_f1(non0_true, non0_pred)
    else:
        out["acc2_non0"] = float("nan")
        out["f1_non0"] = float("nan")

    for key, bound in (("acc7", 3.0), ("acc5", 2.0), ("acc3", 1.0)):
        out[key] = _percent_equal(np.round(np.clip(p, -bound, bound)), np.round(np.clip(t, -bound, bound)))

    out["mae"] = _mae(p, t)
    out["corr"] = _pearson(p, t)
    return out


def regression_metrics(
    pred: ArrayLike, target: ArrayLike, threshold: float | None = None
) -> dict[str, float]:
    """Generic regression metrics for scores in any range (e.g. valence/arousal).

    Always gives ``mae`` (mean absolute error) and ``corr`` (Pearson, NaN if either side is constant).
    With ``threshold``, also ``acc2`` and ``f1`` (weighted, percent) of ``pred >= threshold`` vs
    ``target >= threshold``: the same binarisation as MMSA's "has0" accuracy, moved to ``threshold``.
    """
    p, t = _checked_pair(pred, target)
    out: dict[str, float] = {"mae": _mae(p, t), "corr": _pearson(p, t)}
    if threshold is not None:
        thr = float(threshold)
        if not np.isfinite(thr):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        bin_pred, bin_true = p >= thr, t >= thr
        out["acc2"] = _percent_equal(bin_pred, bin_true)
        out["f1"] = _weighted_f1(bin_true, bin_pred)
    return out
