"""Sentiment-score datasets read as classes: ``sentiment3:DATASET`` (negative / neutral / positive)
and ``sentiment2:DATASET`` (negative / non-negative).

Why prefixes and not new datasets: INT2-M3AP (seed 000) and MOSI's acc3 read sentiment as three
classes, and bc-LSTM's published MOSI number (80.3) comes from a two-class classifier whose classes
are exactly acc2_has0's, while the corpora store a score; binning at load time keeps one copy of the
rows, split and features (``mmaffect train --dataset sentiment3:mosi-bclstm``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from mmaffect.data.dataset import AffectDataset
from mmaffect.data.registry import load_dataset, register_prefix
from mmaffect.errors import ConfigError

SENTIMENT3 = ["negative", "neutral", "positive"]
SENTIMENT2 = ["negative", "non-negative"]


def _scored(prefix: str, argument: str, sequences: bool, options: dict) -> AffectDataset:
    data = load_dataset(argument, sequences=sequences, **options)
    if data.score is None:
        raise ConfigError(f"{prefix}:{argument}: {data.name} has no sentiment score to bin into classes")
    return data


@register_prefix("sentiment3", description="a sentiment dataset with 3 classes from its score: "
                                           "round(clip(score, -1, 1)) -> negative / neutral / positive")
def load_sentiment3(argument: str, sequences: bool = False, **options) -> AffectDataset:
    """The rows, split and features of the named dataset with class labels from its score, binned as
    MOSI's acc3 bins it (numpy rounds half to even: 0.5 -> neutral)."""
    data = _scored("sentiment3", argument, sequences, options)
    label = torch.from_numpy(np.round(np.clip(data.score.numpy(), -1.0, 1.0)).astype(np.int64) + 1)
    return replace(data, name=f"sentiment3:{data.name}", label=label, class_names=list(SENTIMENT3),
                   default_task="classification")


@register_prefix("sentiment2", description="a sentiment dataset with 2 classes from its score: "
                                           "score < 0 -> negative, else non-negative (acc2_has0's classes)")
def load_sentiment2(argument: str, sequences: bool = False, **options) -> AffectDataset:
    """The rows, split and features of the named dataset labelled as acc2_has0 splits them, so a
    two-class model's accuracy is directly comparable with a regression model's acc2_has0."""
    data = _scored("sentiment2", argument, sequences, options)
    label = (data.score >= 0).long()
    return replace(data, name=f"sentiment2:{data.name}", label=label, class_names=list(SENTIMENT2),
                   default_task="binary")
