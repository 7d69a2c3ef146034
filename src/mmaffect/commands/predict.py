"""``mmaffect predict``: a trained checkpoint's predictions for every row of a manifest or dataset.

One output row per input row, in input order, keyed by the input's ``id`` (or its row number):
``id, row, split, status, error``, the true target when the file has one (``label`` / ``score`` /
``tag_<t>``), the prediction (``pred_label`` and every ``prob_<class>``; ``pred_score``;
``pred_tags`` and every ``prob_tag_<t>``). A row that cannot be processed (empty text, missing media,
malformed line, ...) is kept with ``status=error`` and the reason in ``error``; a row that was predicted
but whose target cannot be scored (a label the checkpoint does not know, ...) has ``status=ok`` and the
reason in ``error``. Both are summarised on stderr. The file (``.csv`` or ``.jsonl``) is written
atomically. Exit status: 0 if every row was predicted, 1 if some were not (the file is still written),
2 on an error that stops everything (unreadable file, missing columns, bad checkpoint).

:func:`evaluate_manifest` scores the same predictions (``mmaffect evaluate --dataset manifest:...``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmaffect.errors import ConfigError, DataError

if TYPE_CHECKING:  # numpy, pandas, torch and the readers are imported when used: `mmaffect --help` stays fast
    import numpy as np
    import pandas as pd
    from torch import Tensor

    from mmaffect.data.manifest import ManifestRow

OUTPUT_SUFFIXES = (".csv", ".jsonl")


@dataclass
class Predictions:
    """The output table, the problem lines, and what is needed to score it.

    ``outputs`` are the model's head tensors for the predicted rows, in table order
    (``table.index[predicted]``); ``targets`` the true targets of those rows where usable
    (``label`` ids into the checkpoint's classes, -1 when unusable; ``score``, NaN when unusable;
    ``labels`` multi-hot, NaN rows when unusable).
    """

    table: pd.DataFrame
    problems: list[tuple[int, str]]  # (table position, "FILE: row N: problem")
    task: object
    outputs: dict[str, Tensor]
    predicted: np.ndarray  # table positions of the predicted rows
    targets: dict[str, np.ndarray]
    loss_weights: dict
    notes: list[str]

    @property
    def n_errors(self) -> int:
        return int((self.table["status"] == "error").sum())

    def summary(self, positions: np.ndarray | None = None) -> list[str]:
        """Lines for stderr: what failed or cannot be scored (at ``positions``, default all rows)."""
        chosen = set(range(len(self.table)) if positions is None else positions.tolist())
        status = self.table["status"].to_numpy()
        error = self.table["error"].to_numpy()
        failed = sum(1 for i in chosen if status[i] == "error")
        unscored = sum(1 for i in chosen if status[i] == "ok" and error[i])
        lines = [line for i, line in self.problems if i in chosen]
        out = []
        if lines:
            parts = []
            if failed:
                parts.append(f"{failed} row{'s' if failed != 1 else ''} could not be processed (status=error)")
            if unscored:
                parts.append(f"{unscored} predicted row{'s' if unscored != 1 else ''} cannot be scored")
            out.append("; ".join(parts) + ":")
            out += [f"  {line}" for line in lines]
        return out + [f"note: {note}" for note in self.notes]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``predict`` to the ``mmaffect`` sub-commands."""
    p = subparsers.add_parser("predict", help="predict every row of a manifest (or dataset) with a checkpoint; "
                                              "writes PRED.csv or PRED.jsonl")
    p.add_argument("--checkpoint", required=True, help="DIR/seedS[_foldF]/model.safetensors from `mmaffect train`")
    p.add_argument("--dataset", required=True, help="manifest:FILE (labels optional), or a registered dataset")
    p.add_argument("--output", required=True, help="PRED.csv or PRED.jsonl, one row per input row")
    p.add_argument("--columns", help="canonical=column,... e.g. text=Utterance,id=utt_id (default: the "
                                     "mapping the checkpoint was trained with, where the file has those columns)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the manifest (e.g. cp1252, latin-1)")
    p.add_argument("--features", help="folder of extracted media features (manifests with media paths)")
    return p


def run(args: argparse.Namespace) -> int:
    """``mmaffect predict``: write the predictions, summarise problems on stderr; 0 all rows, 1 some rows failed."""
    from mmaffect.data.manifest import parse_columns

    output = Path(args.output)
    check_output(output)
    result = predict(args.checkpoint, args.dataset, columns=parse_columns(args.columns),
                     encoding=args.encoding, features=args.features)
    write_table(output, result.table)
    n = len(result.table)
    errors = result.n_errors
    print(f"predictions: {output} ({n} rows: {n - errors} predicted, {errors} not processed)")
    for line in result.summary():
        print(line, file=sys.stderr)
    return 1 if errors else 0


def check_output(path: Path) -> None:
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--output {path}: must end in .csv or .jsonl")


def write_table(path: str | Path, table: pd.DataFrame) -> None:
    """Write the prediction table as CSV or JSON lines (by suffix), atomically."""
    import numpy as np

    from mmaffect.io import atomic_write

    path = Path(path)
    check_output(path)
    if path.suffix.lower() == ".csv":
        atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
        return

    def clean(value):
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    lines = [json.dumps({k: clean(v) for k, v in rec.items()}, ensure_ascii=False, allow_nan=False)
             for rec in table.to_dict("records")]
    atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8"))


# ------------------------------------------------------------------------------------------------------
# predicting
# ------------------------------------------------------------------------------------------------------


def predict(checkpoint: str | Path, dataset: str, *, columns: dict[str, str] | None = None,
            encoding: str = "utf-8", features: str | None = None) -> Predictions:
    """Predictions of ``checkpoint`` for every row of ``dataset`` (``manifest:...`` or a registered name)."""
    from mmaffect.inference import load_model
    from mmaffect.models.registry import model_info

    loaded = load_model(checkpoint)
    sequences = model_info(loaded.meta["model"]).input_form == "sequence"
    if dataset.startswith("manifest:"):
        return _predict_manifest(loaded, dataset, columns, encoding, features, sequences)
    if columns or features:
        raise ConfigError("--columns and --features apply to manifest:FILE datasets only")
    from mmaffect.data.registry import load_dataset

    data = load_dataset(dataset, sequences=sequences)
    rows = [_DatasetRow(str(i), None if data.split is None else str(data.split[k]))
            for k, i in enumerate(data.ids)]
    targets = {}
    task = loaded.task
    if task.label_kind and data.label is not None:
        targets["label"] = [data.class_names[int(c)] for c in data.label]
    if task.score_kind and data.score is not None:
        targets["score"] = [float(s) for s in data.score]
    if "multilabel" in task.kinds and data.labels is not None:
        targets["labels"] = [[t for t, on in zip(data.tag_names, row, strict=True) if on > 0.5] for row in data.labels]
    prepared = loaded.prepare(data, dataset)
    return _assemble(loaded, rows, prepared, list(range(len(rows))), targets, [], [])


@dataclass
class _DatasetRow:
    id: str
    split: str | None
    row: int | None = None


def _predict_manifest(loaded, dataset: str, columns, encoding, features, sequences) -> Predictions:
    from mmaffect.data.manifest import ManifestError, build_dataset, read_manifest

    argument = dataset.partition(":")[2]
    trained = loaded.meta.get("features", {}) or {}
    trained_columns = trained.get("columns") if str(trained.get("source", "")).startswith("manifest:") else None
    manifest = read_manifest(argument, columns, encoding, None, purpose="predict", default_columns=trained_columns)
    if manifest.file_problems:
        note = None
        if trained_columns:
            note = (f"(the checkpoint was trained with columns "
                    f"{','.join(f'{k}={v}' for k, v in trained_columns.items())}; map this file's with --columns)")
        raise ManifestError(manifest.source, manifest.file_problems, note)
    need = list(loaded.meta["modalities"])
    need_media = any(m in ("a", "v") for m in need)
    for r in manifest.rows:
        if r.ok and not need_media and not r.text.strip():
            r.problems.append("no text, and this model reads text only")
    good = [i for i, r in enumerate(manifest.rows) if r.ok]
    prepared = None
    notes = []
    if good:
        data = build_dataset(manifest, [manifest.rows[i] for i in good], sequences=sequences, features=features,
                             need_media=need_media, targets=False)
        want, got = trained.get("text_encoder"), data.meta.get("text_encoder")
        if "t" in need and want and got and want != got:
            raise DataError(manifest.source, f"the checkpoint was trained on text features {want}, this "
                                             f"installation makes {got}")
        prepared = loaded.prepare(data, manifest.source)
    task = loaded.task
    targets: dict[str, list] = {}
    if task.label_kind and "label" in manifest.present:
        targets["label"] = [r.label for r in manifest.rows]
    if task.score_kind and "score" in manifest.present:
        targets["score"] = [r.score for r in manifest.rows]
    if "multilabel" in task.kinds and "labels" in manifest.present:
        targets["labels"] = [r.tags for r in manifest.rows]
    if manifest.present & {"label", "score", "labels"} and not targets:
        notes.append(f"the manifest's targets ({', '.join(sorted(manifest.present & {'label', 'score', 'labels'}))})"
                     f" are not what this checkpoint predicts ({'+'.join(task.kinds)}); nothing can be scored")
    return _assemble(loaded, manifest.rows, prepared, good, targets, manifest.rows, notes)


def _assemble(loaded, rows, prepared, good: list[int], targets: dict[str, list],
              manifest_rows: list[ManifestRow], notes: list[str]) -> Predictions:
    """The output table over all ``rows``, predictions filled in at ``good``."""
    import numpy as np
    import pandas as pd

    from mmaffect.training.config import TrainConfig
    from mmaffect.training.trainer import predict_outputs

    task = loaded.task
    n = len(rows)
    table = pd.DataFrame({"id": [r.id for r in rows]})
    if any(getattr(r, "row", None) is not None for r in rows):
        table["row"] = [r.row for r in rows]
    if any(r.split for r in rows):
        table["split"] = [r.split or "" for r in rows]
    status = np.array(["ok"] * n, dtype=object)
    errors: list[list[str]] = [[] for _ in range(n)]
    problems: list[str] = []
    for i, r in enumerate(manifest_rows):
        if not r.ok:
            status[i] = "error"
            errors[i] = list(r.problems)
            problems += [(i, f"{r.where}: {p}") for p in r.problems]
    cfg = TrainConfig(**loaded.meta["train"])
    outputs: dict[str, Tensor] = {}
    pred: dict[str, np.ndarray] = {}
    if prepared is not None and len(good):
        outputs = predict_outputs(loaded.model, prepared, np.arange(len(prepared)), cfg.eval_batch_size)
        pred = task.predictions(outputs)
    good_index = np.asarray(good, dtype=np.int64)

    def unscored(i: int, reason: str) -> None:
        errors[i].append(reason)
        if status[i] == "ok":
            where = manifest_rows[i].where if manifest_rows else f"id {rows[i].id}"
            problems.append((i, f"{where}: {reason}"))

    for i, r in enumerate(manifest_rows):  # targets present but unusable: predicted, not scored
        if r.ok:
            for p in r.target_problems:
                unscored(i, f"{p}; not scored")

    usable: dict[str, np.ndarray] = {}
    if task.label_kind:
        names = list(task.class_names)
        lookup = {c: j for j, c in enumerate(names)}
        if "label" in targets:
            ids = np.full(n, -1, dtype=np.int64)
            for i, value in enumerate(targets["label"]):
                if value is None:
                    continue
                if value in lookup:
                    ids[i] = lookup[value]
                else:
                    unscored(i, f"label {value!r} is not one of the checkpoint's classes ({', '.join(names)}); "
                                "not scored")
            table["label"] = [v if v is not None else "" for v in targets["label"]]
            usable["label"] = ids
        pred_label = np.array([""] * n, dtype=object)
        probs = np.full((n, len(names)), np.nan)
        if "prob" in pred:
            pred_label[good_index] = np.asarray(names, dtype=object)[pred["prob"].argmax(1)]
            probs[good_index] = pred["prob"]
        table["pred_label"] = pred_label
        for j, name in enumerate(names):
            table[f"prob_{name}"] = probs[:, j]
    if task.score_kind:
        if "score" in targets:
            values = np.array([np.nan if v is None else v for v in targets["score"]], dtype=np.float64)
            table["score"] = values
            usable["score"] = values
        scores = np.full(n, np.nan)
        if "score" in pred:
            scores[good_index] = pred["score"]
        table["pred_score"] = scores
    if "multilabel" in task.kinds:
        tags = list(task.tag_names)
        index = {t: j for j, t in enumerate(tags)}
        if "labels" in targets:
            hot = np.full((n, len(tags)), np.nan)
            for i, value in enumerate(targets["labels"]):
                if value is None:
                    continue
                unknown = [t for t in value if t not in index]
                if unknown:
                    unscored(i, f"tag{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} not among the "
                                f"checkpoint's tags ({', '.join(tags)}); not scored")
                    continue
                hot[i] = 0.0
                hot[i, [index[t] for t in value]] = 1.0
            usable["labels"] = hot
            for j, t in enumerate(tags):
                table[f"tag_{t}"] = pd.array([None if np.isnan(v) else int(v) for v in hot[:, j]], dtype="Int64")
        tag_prob = np.full((n, len(tags)), np.nan)
        pred_tags = np.array([""] * n, dtype=object)
        if "tag_prob" in pred:
            tag_prob[good_index] = pred["tag_prob"]
            pred_tags[good_index] = [";".join(t for t, p in zip(tags, row, strict=True) if p >= 0.5)
                                     for row in pred["tag_prob"]]
        table["pred_tags"] = pred_tags
        for j, t in enumerate(tags):
            table[f"prob_tag_{t}"] = tag_prob[:, j]
    table["status"] = status
    table["error"] = ["; ".join(e) for e in errors]
    first = [c for c in ("id", "row", "split", "status", "error") if c in table]
    table = table[first + [c for c in table.columns if c not in first]]
    return Predictions(table=table, problems=problems, task=task, outputs=outputs, predicted=good_index,
                       targets=usable, loss_weights=dict(cfg.loss_weights), notes=notes)


# ------------------------------------------------------------------------------------------------------
# scoring the predictions
# ------------------------------------------------------------------------------------------------------


def score_predictions(result: Predictions, positions: np.ndarray) -> tuple[dict[str, float], int]:
    """``loss`` and the task's metrics over the rows at table ``positions`` that were predicted and
    have every target the task needs; returns ``(metrics, rows scored)``."""
    import numpy as np
    import torch

    from mmaffect.training.trainer import total_loss

    task = result.task
    need = (["label"] if task.label_kind else []) + (["score"] if task.score_kind else []) \
        + (["labels"] if "multilabel" in task.kinds else [])
    missing = [k for k in need if k not in result.targets]
    if missing:
        raise DataError(None, f"the data have no {', '.join(missing)} targets to score a "
                              f"{'+'.join(task.kinds)} checkpoint")
    mask = np.zeros(len(result.table), dtype=bool)
    mask[np.intersect1d(positions, result.predicted)] = True
    for key in need:
        values = result.targets[key]
        if key == "label":
            mask &= values >= 0
        elif values.ndim == 1:
            mask &= ~np.isnan(values)
        else:
            mask &= ~np.isnan(values).any(axis=1)
    chosen = np.flatnonzero(mask)
    if not len(chosen):
        raise DataError(None, "no predicted row has a usable target to score")
    where = np.searchsorted(result.predicted, chosen)  # positions into the outputs
    idx = torch.as_tensor(where)
    outputs = {k: v[idx] for k, v in result.outputs.items()}
    targets = {}
    if task.label_kind:
        targets["label"] = torch.as_tensor(result.targets["label"][chosen])
    if task.score_kind:
        targets["score"] = torch.as_tensor(result.targets["score"][chosen], dtype=torch.float32)
    if "multilabel" in task.kinds:
        targets["labels"] = torch.as_tensor(result.targets["labels"][chosen], dtype=torch.float32)
    loss = float(total_loss(task.losses(outputs, targets), result.loss_weights))
    pred = task.predictions(outputs)
    return {"loss": loss, **task.metrics(pred, {k: v.numpy() for k, v in targets.items()})}, len(chosen)


def evaluate_manifest(checkpoint: str | Path, dataset: str, split: str = "test",
                      predictions: str | Path | None = None, columns: dict[str, str] | None = None,
                      encoding: str = "utf-8", features: str | None = None) -> dict[str, float]:
    """Metrics of ``checkpoint`` on one split (or ``all``) of a labelled manifest, computed from the rows
    ``mmaffect predict`` writes. A manifest without a split column is scored on all its rows.
    Optionally writes those rows' predictions (same format as ``predict``)."""
    import numpy as np

    from mmaffect.data.manifest import parse_columns

    if predictions is not None:
        check_output(Path(predictions))
    result = predict(checkpoint, dataset, columns=parse_columns(columns), encoding=encoding, features=features)
    table = result.table
    if split == "all":
        positions = np.arange(len(table))
    elif "split" not in table or not (table["split"] != "").any():
        result.notes.append(f"{dataset} has no split column: scoring all rows")
        positions = np.arange(len(table))
    else:
        positions = np.flatnonzero(table["split"].to_numpy() == split)
        if not len(positions):
            have = sorted(set(table["split"]) - {""})
            raise DataError(dataset, f"no {split!r} rows (has {', '.join(have) or 'none'}; use --split all)")
    try:
        metrics, n_scored = score_predictions(result, positions)
    except DataError as exc:
        raise DataError(dataset, exc.reason) from exc
    if predictions is not None:
        write_table(predictions, table.iloc[positions])
    if n_scored < len(positions):
        result.notes.append(f"scored {n_scored} of {len(positions)} rows")
    for line in result.summary(positions):
        print(line, file=sys.stderr)
    return metrics
