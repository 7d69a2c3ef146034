"""Field-standard evaluation metrics (MMSA conventions), returned as ``dict[str, float]``.

Accuracies and F1 values are in percent (0-100, not rounded); ``mae``, ``corr`` and ``auc`` are raw.
"""

from .classification import binary_metrics, classification_metrics, classification_report, multilabel_metrics
from .regression import regression_metrics, sentiment_metrics

__all__ = [
    "binary_metrics",
    "classification_metrics",
    "classification_report",
    "multilabel_metrics",
    "regression_metrics",
    "sentiment_metrics",
]
