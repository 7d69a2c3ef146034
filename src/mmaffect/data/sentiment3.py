"""``sentiment3:DATASET``: any sentiment-score dataset as 3-class negative / neutral / positive.

Why a prefix and not a new dataset: INT2-M3AP (seed 000) and MOSI's acc3 read sentiment as three
classes, while the corpora store a score; binning at load time keeps one copy of the rows, split and
features (``mmaffect train --dataset sentiment3:mosi-bclstm``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from mmaffect.data.dataset import AffectDataset
from mmaffect.data.registry import load_dataset, register_prefix
from mmaffect.errors import ConfigError

SENTIMENT3 = ["negative", "neutral", "positive"]


@register_prefix("sentiment3", description="a sentiment dataset with 3 classes from its score: "
                                           "round(clip(score, -1, 1)) -> negative / neutral / positive")
def load_sentiment3(argument: str, sequences: bool = False, **options) -> AffectDataset:
    """The rows, split and features of the named dataset with class labels from its score, binned as
    MOSI's acc3 bins it (numpy rounds half to even: 0.5 -> neutral)."""
    data = load_dataset(argument, sequences=sequences, **options)
    if data.score is None:
        raise ConfigError(f"sentiment3:{argument}: {data.name} has no sentiment score to bin into 3 classes")
    label = torch.from_numpy(np.round(np.clip(data.score.numpy(), -1.0, 1.0)).astype(np.int64) + 1)
    return replace(data, name=f"sentiment3:{data.name}", label=label, class_names=list(SENTIMENT3),
                   default_task="classification")
