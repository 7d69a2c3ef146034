"""The one prediction-table schema, written by training (``predictions.csv``) and by ``mmaffect predict``.

One row per input row, in input order. Columns, in this order (a group appears when it applies):

- ``id``; ``row`` (the line of the input file, for files only); ``split`` (when the data have one);
  ``status`` (``ok`` or ``error``: the row could not be processed) and ``error`` (why; for an ``ok``
  row, why its target cannot be scored);
- classification: ``label`` (the true class, when known), ``pred_label``, ``prob_<class>`` per class;
- regression / sentiment: ``score`` (when known), ``pred_score``;
- multi-label: ``tag_<t>`` (true 0/1, when known), ``pred_tags`` (``;``-joined tags with probability
  >= 0.5), ``prob_tag_<t>`` per tag;
- ``relevance_<m>`` per modality when the model reports relevance weights (``late-fusion``).

Rows that were not predicted have empty predictions (NaN probabilities). Keeping a single builder
means a training run's ``predictions.csv`` and ``mmaffect predict`` on the same rows agree column for
column, value for value (tests/test_api.py and tests/test_analysis.py check this).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmaffect.errors import ConfigError

if TYPE_CHECKING:  # numpy and pandas are imported when used, so `import mmaffect` stays light
    import numpy as np
    import pandas as pd

    from mmaffect.tasks import Task

TABLE_SUFFIXES = (".csv", ".jsonl")


def prediction_table(ids: Sequence[str], task: Task, pred: dict[str, np.ndarray], predicted: np.ndarray, *,
                     targets: dict | None = None, split: Sequence[str] | None = None,
                     row: Sequence[int] | None = None, status: Sequence[str] | None = None,
                     errors: Sequence[str] | None = None, modalities: Sequence[str] = ()) -> pd.DataFrame:
    """The prediction table over ``len(ids)`` rows; predictions fill the rows at positions ``predicted``.

    Args:
        pred: :meth:`Task.predictions` of the predicted rows, in ``predicted`` order.
        targets: true values over all rows, where known: ``label`` (class names, None = unknown),
            ``score`` (floats, NaN = unknown), ``labels`` (multi-hot ``(n, K)``, NaN rows = unknown).
        split, row: per-row columns, left out when None.
        status, errors: per row; default ``ok`` and empty.
        modalities: names of the relevance columns (the model's modality order).
    """
    import numpy as np
    import pandas as pd

    n = len(ids)
    targets = targets or {}
    predicted = np.asarray(predicted, dtype=np.int64)
    table = pd.DataFrame({"id": [str(i) for i in ids]})
    if row is not None:
        table["row"] = list(row)
    if split is not None:
        table["split"] = [s or "" for s in split]
    table["status"] = list(status) if status is not None else ["ok"] * n
    table["error"] = list(errors) if errors is not None else [""] * n

    def spread(values: np.ndarray) -> np.ndarray:
        out = np.full((n, *values.shape[1:]), np.nan)
        out[predicted] = values
        return out

    if task.label_kind:
        names = list(task.class_names)
        if "label" in targets:
            table["label"] = ["" if v is None else str(v) for v in targets["label"]]
        labels = np.array([""] * n, dtype=object)
        probs = np.full((n, len(names)), np.nan)
        if "prob" in pred:
            labels[predicted] = np.asarray(names, dtype=object)[pred["prob"].argmax(1)]
            probs[predicted] = pred["prob"]
        table["pred_label"] = labels
        for j, name in enumerate(names):
            table[f"prob_{name}"] = probs[:, j]
    if task.score_kind:
        if "score" in targets:
            table["score"] = np.asarray(targets["score"], dtype=np.float64)
        table["pred_score"] = spread(pred["score"]) if "score" in pred else np.full(n, np.nan)
    if "multilabel" in task.kinds:
        tags = list(task.tag_names)
        if "labels" in targets:
            hot = np.asarray(targets["labels"], dtype=np.float64)
            for j, t in enumerate(tags):
                table[f"tag_{t}"] = pd.array([None if np.isnan(v) else int(v) for v in hot[:, j]], dtype="Int64")
        tag_prob = np.full((n, len(tags)), np.nan)
        pred_tags = np.array([""] * n, dtype=object)
        if "tag_prob" in pred:
            tag_prob[predicted] = pred["tag_prob"]
            pred_tags[predicted] = [";".join(t for t, p in zip(tags, r, strict=True) if p >= 0.5)
                                    for r in pred["tag_prob"]]
        table["pred_tags"] = pred_tags
        for j, t in enumerate(tags):
            table[f"prob_tag_{t}"] = tag_prob[:, j]
    if "relevance" in pred:
        relevance = spread(pred["relevance"])
        for j, m in enumerate(modalities):
            table[f"relevance_{m}"] = relevance[:, j]
    return table


def check_table_path(path: str | Path, option: str = "--output") -> Path:
    """Refuse a prediction-table location before any work: wrong suffix, a folder, no permission."""
    from mmaffect.io import check_output_file

    path = check_output_file(path, "prediction file")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(f"{option} {path}: must end in .csv or .jsonl")
    return path


def write_table(path: str | Path, table: pd.DataFrame) -> None:
    """Write a prediction table as CSV or JSON lines (by suffix), atomically (NaN -> empty / null)."""
    import numpy as np
    import pandas as pd

    from mmaffect.io import atomic_write

    path = check_table_path(path)
    if path.suffix.lower() == ".csv":
        atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
        return

    def clean(value):
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
            return None
        return value

    lines = [json.dumps({k: clean(v) for k, v in rec.items()}, ensure_ascii=False, allow_nan=False)
             for rec in table.to_dict("records")]
    atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8"))
