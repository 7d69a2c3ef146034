"""The library layer under ``mmaffect predict``, ``evaluate``, ``analyze`` and any app: load a trained model
once, then predict texts, media files, whole manifests and datasets, and score them.

    >>> import mmaffect
    >>> p = mmaffect.load("runs/text/seed0/model.safetensors")    # or the run folder "runs/text"
    >>> p.predict(text="I am so happy")
    {'label': 'hap', 'probabilities': {...}}
    >>> result = p.predict_dataset("manifest:new.csv")               # one row per input row
    >>> result.table                                                 # see mmaffect.predictions

A run folder predicts with the average of its members (:mod:`mmaffect.inference`). New inputs are
made with the checkpoint's feature recipe (:mod:`mmaffect.recipe`): its text encoder, its media
extraction settings and reader options; features made otherwise are refused.

Rows of a manifest that cannot be processed (empty text, missing media, failed extraction, malformed
line, ...) keep their place in the table with ``status=error`` and the reason in ``error``; a row
that was predicted but whose target cannot be scored has ``status=ok`` and the reason in ``error``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from mmaffect.data.dataset import AffectDataset
from mmaffect.errors import ConfigError, DataError
from mmaffect.inference import LoadedModel, average_outputs, load_models
from mmaffect.recipe import FeatureRecipe
from mmaffect.tasks import Task
from mmaffect.training.config import TrainConfig
from mmaffect.training.trainer import total_loss

if TYPE_CHECKING:
    import pandas as pd

    from mmaffect.data.manifest import Manifest, ManifestRow

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """The prediction table (:mod:`mmaffect.predictions`), the problem lines, and what is needed to score it.

    ``outputs`` are the (averaged) model's head tensors for the predicted rows, in table order
    (``table.index[predicted]``); ``targets`` the true targets of those rows where usable (``label``
    ids into the checkpoint's classes, -1 when unusable; ``score``, NaN when unusable; ``labels``
    multi-hot, NaN rows when unusable).
    """

    table: pd.DataFrame
    problems: list[tuple[int, str]]  # (table position, "FILE: row N: problem")
    task: Task
    outputs: dict[str, Tensor]
    predicted: np.ndarray  # table positions of the predicted rows
    targets: dict[str, np.ndarray]
    loss_weights: dict
    notes: list[str] = field(default_factory=list)

    @property
    def n_errors(self) -> int:
        return int((self.table["status"] == "error").sum())

    def summary(self, positions: np.ndarray | None = None) -> list[str]:
        """Lines for the user: what failed or cannot be scored (at ``positions``, default all rows)."""
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


@dataclass
class Evaluation:
    """Metrics over the scored rows of one split, with the predictions they came from."""

    metrics: dict[str, float]
    predictions: Predictions
    positions: np.ndarray  # table positions of the split's rows
    n_scored: int

    @property
    def table(self) -> pd.DataFrame:
        return self.predictions.table.iloc[self.positions]

    def summary(self) -> list[str]:
        return self.predictions.summary(self.positions)


@dataclass
class _Row:
    """A row of a registered dataset, shaped like the manifest rows the table builder reads."""

    id: str
    split: str | None
    where: str
    problems: list[str] = field(default_factory=list)
    target_problems: list[str] = field(default_factory=list)
    row: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


class Predictor:
    """One trained model, or the average of a run folder's models, ready to predict.

    Build it with :func:`load` (or :func:`mmaffect.load`)."""

    def __init__(self, models: list[LoadedModel], source: str | Path):
        self.models = models
        self.source = str(source)
        first = models[0]
        self.task: Task = first.task
        self.recipe: FeatureRecipe = first.recipe
        self.modalities: list[str] = list(first.meta["modalities"])
        self.sequences: bool = first.sequences
        self.meta: dict = first.meta

    def __repr__(self) -> str:
        return (f"Predictor({self.source!r}: {self.meta['model']} on {'+'.join(self.modalities)}, "
                f"{'+'.join(self.task.kinds)}, {len(self.models)} model(s))")

    @property
    def classes(self) -> list[str] | None:
        return list(self.task.class_names) if self.task.class_names else None

    # -- core
    def outputs(self, data: AffectDataset, source: str = "input") -> dict[str, Tensor]:
        """Head tensors of the (average) model for every row of ``data`` (unstandardised features)."""
        return average_outputs([m.outputs(data, source) for m in self.models])

    # -- single inputs
    def predict(self, text: str | Sequence[str] | None = None, *, media: str | Path | None = None,
                start: float | None = None, end: float | None = None) -> dict | list[dict]:
        """Predict one input (a dict) or a list of texts (a list of dicts).

        ``text``: the utterance(s) (a text model needs nothing else). ``media``: an audio/video file for
        a model that reads audio or video, optionally cut to ``[start, end)`` seconds; it is extracted
        with the checkpoint's recipe, and its speech transcribed when ``text`` is not given.

        Returns per input: ``label``, ``probabilities`` (classification); ``score`` (regression,
        sentiment); ``tags``, ``tag_probabilities`` (multi-label); ``relevance`` per modality when the
        model reports it."""
        if media is not None:
            if text is not None and not isinstance(text, str):
                raise ConfigError("predict(media=...) takes one text (its transcript), not a list")
            data, failed, _ = self.media_features([("input", Path(media), text, start, end)])
            if failed:
                raise DataError(media, failed["input"])
            return self.records(self.outputs(data, str(media)))[0]
        if text is None:
            raise ConfigError("predict() needs text=... or media=...")
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ConfigError("predict(text=...) needs non-empty strings")
        if self.recipe.media or self.modalities != ["t"]:
            raise ConfigError(f"this model reads {'+'.join(self.modalities)}; pass media=FILE (and text=...)")
        data = self.text_features(texts)
        records = self.records(self.outputs(data))
        return records[0] if single else records

    def text_features(self, texts: list[str]) -> AffectDataset:
        """The text modality of ``texts``, embedded with the checkpoint's text encoder."""
        from mmaffect.data.text_features import text_modality

        self._check_text_source()
        modality, recipe = text_modality(texts, self.sequences)
        self.recipe.check_text_encoder(recipe.get("text_encoder"), "text")
        return AffectDataset(name="input", ids=np.array([f"input{i}" for i in range(len(texts))]),
                             modalities={"t": modality}, meta=recipe, text=np.array(texts, dtype=str))

    def _check_text_source(self) -> None:
        if not self.recipe.text_encoder:
            raise DataError(self.source, f"its text features come from {self.recipe.dataset}, not from a sentence "
                                         "encoder: it cannot embed new text")

    def media_features(self, items: list[tuple[str, Path, str | None, float | None, float | None]],
                       extract_overrides: dict | None = None, threads: int = 1, config=None
                       ) -> tuple[AffectDataset | None, dict[str, str], dict]:
        """Extract ``(id, path, text, start, end)`` items with the checkpoint's recipe (or ``config``, an
        ``ExtractConfig`` such as ``analyze``'s) into a temporary cache and read them back as the model's
        modalities, with the audio reader options the model was trained with (a model trained on
        ``audio_vector: whisper`` must get the Whisper vector, not the default one).

        Returns ``(data or None if nothing was extracted, {id: why it failed}, {id: cache record})``."""
        from mmaffect.extraction import ExtractItem, FeatureCache, cache_modalities, extract
        from mmaffect.extras import require_face_backend

        if self.recipe.media and not self.recipe.extraction:
            raise DataError(self.source, f"its audio/visual inputs come from {self.recipe.dataset}, not from "
                                         "`mmaffect extract`: it cannot read media files (train on a cache: or "
                                         "manifest: dataset with --features to get such a model)")
        if "t" in self.modalities:
            self._check_text_source()
        reader = audio_reader_options(self.recipe.dataset_args, self.source)
        config = config or self.recipe.extract_config(**(extract_overrides or {}))
        require_face_backend(config, f"{self.source}", faces="v" in self.modalities)
        extract_items = [ExtractItem(id=i, path=Path(p), text=t or "", start=s, end=e) for i, p, t, s, e in items]
        with tempfile.TemporaryDirectory(prefix="mmaffect-predict-") as tmp:
            folder = Path(tmp) / "cache"
            report = extract(extract_items, folder, config, workers=1, threads=threads, progress=False)
            failed = dict(report.failed)
            ok = [i for i, *_ in items if i not in failed]
            if not ok:
                return None, failed, {}
            with FeatureCache(folder) as cache:
                records = cache.records()
                modalities, media_recipe = cache_modalities(
                    cache, ok, self.sequences, fps=self.recipe.step_fps,
                    audio_vector_parts=reader.get("audio_vector"), audio_sequence=reader.get("audio_sequence", "steps"))
        transcripts = [records[i].get("transcript") or "" for i in ok]
        meta = {"features": media_recipe}
        if "t" in self.modalities:
            from mmaffect.data.text_features import text_modality

            modalities["t"], text_recipe = text_modality(transcripts, self.sequences)
            self.recipe.check_text_encoder(text_recipe.get("text_encoder"), items[0][1])
            meta.update(text_recipe)
        data = AffectDataset(name="media", ids=np.array(ok), modalities=modalities, meta=meta,
                             text=np.array(transcripts, dtype=str))
        return data, failed, records

    def records(self, outputs: dict[str, Tensor]) -> list[dict]:
        """One ``{label, probabilities, ...}`` dict per row of ``outputs`` (the shape ``predict`` returns);
        public because :mod:`mmaffect.conversation` turns its per-turn outputs into the same records."""
        pred = self.task.predictions(outputs)
        n = len(next(iter(pred.values())))
        records: list[dict] = [{} for _ in range(n)]
        for i, rec in enumerate(records):
            if "prob" in pred:
                names = self.classes
                rec["label"] = names[int(pred["prob"][i].argmax())]
                rec["probabilities"] = {c: float(p) for c, p in zip(names, pred["prob"][i], strict=True)}
            if "score" in pred:
                rec["score"] = float(pred["score"][i])
            if "tag_prob" in pred:
                tags = list(self.task.tag_names)
                rec["tags"] = [t for t, p in zip(tags, pred["tag_prob"][i], strict=True) if p >= 0.5]
                rec["tag_probabilities"] = {t: float(p) for t, p in zip(tags, pred["tag_prob"][i], strict=True)}
            if "relevance" in pred:
                rec["relevance"] = {m: float(r) for m, r in zip(self.modalities, pred["relevance"][i], strict=True)}
        return records

    # -- tables
    def predict_dataset(self, dataset: str, *, columns: dict[str, str] | None = None, encoding: str = "utf-8",
                        features: str | Path | None = None) -> Predictions:
        """Predictions for every row of ``dataset`` (``manifest:...`` or a registered name / ``cache:DIR``)."""
        if dataset.startswith("manifest:"):
            return self._predict_manifest(dataset, columns, encoding, features)
        if columns or features:
            raise ConfigError("--columns and --features apply to manifest:FILE datasets only")
        from mmaffect.data.registry import load_dataset

        trained = self.recipe.dataset_args
        # the text vectors it was trained on (frozen MiniLM's or a fine-tuned encoder's), not the corpus's own
        options = {"text_encoder": trained["text_encoder"]} if "text_encoder" in trained else {}
        if dataset.startswith("cache:"):
            # read the cache as the model was trained on it: which audio representation, speaker norm
            options |= {k: trained[k] for k in ("audio_vector", "audio_sequence", "speaker_norm") if k in trained}
            if self.recipe.step_fps is not None:
                options["fps"] = self.recipe.step_fps  # the sequence steps the model was trained on
        data = load_dataset(dataset, sequences=self.sequences, **options)
        media = data.meta.get("features")  # a dict for cache: datasets, a description for corpus readers
        config = ((media.get("extraction") or {}).get("config") if isinstance(media, dict) else None)
        if config:
            self.recipe.check_extraction(config, dataset)
        self.recipe.check_text_encoder(data.meta.get("text_encoder"), dataset)
        rows = [_Row(str(i), None if data.split is None else str(data.split[k]), f"{dataset}: id {i}")
                for k, i in enumerate(data.ids)]
        # items a cache: reader skipped (failed extraction) keep a row with the reason, after the others
        skipped = data.meta.get("skipped") or {}
        rows += [_Row(str(i), None, f"{dataset}: id {i}", [f"feature extraction failed: {reason}"])
                 for i, reason in skipped.items()]
        targets = {}
        task = self.task
        if task.label_kind and data.label is not None:
            targets["label"] = [data.class_names[int(c)] for c in data.label]
        if task.score_kind and data.score is not None:
            targets["score"] = [float(s) for s in data.score]
        if "multilabel" in task.kinds and data.labels is not None:
            targets["labels"] = [[t for t, on in zip(data.tag_names, row, strict=True) if on > 0.5]
                                 for row in data.labels]
        targets = {k: v + [None] * len(skipped) for k, v in targets.items()}
        return self._assemble(rows, data, dataset, list(range(len(data))), targets, [])

    def _predict_manifest(self, dataset: str, columns, encoding: str, features) -> Predictions:
        from mmaffect.data.manifest import ManifestError, build_dataset, read_manifest

        argument = dataset.partition(":")[2]
        trained = self.meta.get("features")
        trained = trained if isinstance(trained, dict) else {}
        trained_columns = trained.get("columns") if str(trained.get("source", "")).startswith("manifest:") else None
        manifest = read_manifest(argument, columns, encoding, None, purpose="predict", default_columns=trained_columns)
        if manifest.file_problems:
            note = None
            if trained_columns:
                note = (f"(the checkpoint was trained with columns "
                        f"{','.join(f'{k}={v}' for k, v in trained_columns.items())}; map this file's with --columns)")
            raise ManifestError(manifest.source, manifest.file_problems, note)
        need_media = self.recipe.media
        if need_media and self.sequences and self.recipe.step_fps is not None:
            raise ConfigError(f"the checkpoint reads sequences of 1/{self.recipe.step_fps:g} s steps "
                              f"({self.recipe.dataset} with fps={self.recipe.step_fps:g}); manifest: features have one "
                              "step per video frame: predict on a cache: dataset instead")
        for r in manifest.rows:
            if r.ok and not need_media and not r.text.strip():
                r.problems.append("no text, and this model reads text only")
        if need_media and features is not None and any(r.ok and r.path is not None for r in manifest.rows):
            self._check_feature_cache(manifest, features)
        good = [i for i, r in enumerate(manifest.rows) if r.ok]
        data = None
        if good:
            data = build_dataset(manifest, [manifest.rows[i] for i in good], sequences=self.sequences,
                                 features=features, need_media=need_media, targets=False)
            self.recipe.check_text_encoder(data.meta.get("text_encoder"), manifest.source)
        task = self.task
        targets: dict[str, list] = {}
        if task.label_kind and "label" in manifest.present:
            targets["label"] = [r.label for r in manifest.rows]
        if task.score_kind and "score" in manifest.present:
            targets["score"] = [r.score for r in manifest.rows]
        if "multilabel" in task.kinds and "labels" in manifest.present:
            targets["labels"] = [r.tags for r in manifest.rows]
        notes = []
        given = manifest.present & {"label", "score", "labels"}
        if given and not targets:
            notes.append(f"the manifest's targets ({', '.join(sorted(given))}) are not what this checkpoint "
                         f"predicts ({'+'.join(task.kinds)}); nothing can be scored")
        return self._assemble(manifest.rows, data, manifest.source, good, targets, notes)

    def _check_feature_cache(self, manifest: Manifest, features: str | Path) -> None:
        """Give media rows that were not extracted, or whose extraction failed, their reason (they keep
        their place in the table), and refuse a cache extracted with other settings than the recipe's.

        Rows are found by id, else by their media path, as the manifest reader finds them."""
        from mmaffect.extraction import FeatureCache

        folder = Path(features).expanduser()
        if not folder.is_dir():
            return  # the manifest reader names the missing folder
        with FeatureCache(folder) as cache:
            self.recipe.check_extraction(dict(cache.config), folder)
            records = cache.records()
        by_path: dict[str, dict] = {}
        for record in records.values():
            src = (record.get("source") or {}).get("path")
            if src and record["status"] == "ok":
                by_path.setdefault(src, record)
        for r in manifest.rows:
            if not r.ok or r.path is None:
                continue
            record = records.get(r.id) or by_path.get(str(Path(r.path).expanduser().resolve()))
            if record is None:
                r.problems.append(f"not in the feature cache {folder} (run `mmaffect extract` on this manifest)")
            elif record["status"] != "ok":
                r.problems.append(f"feature extraction failed: {record.get('reason') or 'no reason recorded'}")

    def _assemble(self, rows: Sequence[ManifestRow | _Row], data: AffectDataset | None, source: str,
                  good: list[int], targets: dict[str, list], notes: list[str]) -> Predictions:
        """The table over all ``rows``, predictions filled in at ``good`` (``data`` holds those rows)."""
        task = self.task
        n = len(rows)
        status = ["ok"] * n
        errors: list[list[str]] = [[] for _ in range(n)]
        problems: list[tuple[int, str]] = []
        for i, r in enumerate(rows):
            if not r.ok:
                status[i] = "error"
                errors[i] = list(r.problems)
                problems += [(i, f"{r.where}: {p}") for p in r.problems]
        outputs: dict[str, Tensor] = {}
        pred: dict[str, np.ndarray] = {}
        if data is not None and len(good):
            outputs = self.outputs(data, source)
            pred = task.predictions(outputs)
        good_index = np.asarray(good, dtype=np.int64)

        def unscored(i: int, reason: str) -> None:
            errors[i].append(reason)
            if status[i] == "ok":
                problems.append((i, f"{rows[i].where}: {reason}"))

        for i, r in enumerate(rows):  # targets present but unusable: predicted, not scored
            if r.ok:
                for p in r.target_problems:
                    unscored(i, f"{p}; not scored")
        usable: dict[str, np.ndarray] = {}
        table_targets: dict = {}
        if task.label_kind and "label" in targets:
            names = list(task.class_names)
            lookup = {c: j for j, c in enumerate(names)}
            ids = np.full(n, -1, dtype=np.int64)
            for i, value in enumerate(targets["label"]):
                if value is None:
                    continue
                if value in lookup:
                    ids[i] = lookup[value]
                else:
                    unscored(i, f"label {value!r} is not one of the checkpoint's classes ({', '.join(names)}); "
                                "not scored")
            usable["label"] = ids
            table_targets["label"] = targets["label"]
        if task.score_kind and "score" in targets:
            values = np.array([np.nan if v is None else v for v in targets["score"]], dtype=np.float64)
            usable["score"] = table_targets["score"] = values
        if "multilabel" in task.kinds and "labels" in targets:
            tags = list(task.tag_names)
            index = {t: j for j, t in enumerate(tags)}
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
            usable["labels"] = table_targets["labels"] = hot
        row_numbers = [getattr(r, "row", None) for r in rows]
        from mmaffect.predictions import prediction_table  # pandas: imported for tables, not to predict a file

        table = prediction_table(
            [r.id for r in rows], task, pred, good_index, targets=table_targets,
            split=[r.split or "" for r in rows] if any(r.split for r in rows) else None,
            row=row_numbers if any(x is not None for x in row_numbers) else None,
            status=status, errors=["; ".join(e) for e in errors], modalities=self.modalities)
        weights = dict(TrainConfig(**self.meta["train"]).loss_weights)
        return Predictions(table=table, problems=problems, task=task, outputs=outputs, predicted=good_index,
                           targets=usable, loss_weights=weights, notes=notes)

    # -- scoring
    def evaluate(self, dataset: str, split: str = "test", *, columns: dict[str, str] | None = None,
                 encoding: str = "utf-8", features: str | Path | None = None) -> Evaluation:
        """Metrics on one split (or ``all``) of a labelled dataset, computed from :meth:`predict_dataset`'s
        rows (rows that fail or have unusable targets are listed, not fatal). Data without a split are
        scored on all their rows."""
        result = self.predict_dataset(dataset, columns=columns, encoding=encoding, features=features)
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
        if n_scored < len(positions):
            result.notes.append(f"scored {n_scored} of {len(positions)} rows")
        if len({m.meta.get("fold") for m in self.models} - {None}) > 1:  # cross-validation fold models
            result.notes.append(f"the average of {len(self.models)} fold models: each fold's training rows are "
                                "scored too (use one fold's model on its test rows for a held-out score)")
        return Evaluation(metrics, result, positions, n_scored)


def score_predictions(result: Predictions, positions: np.ndarray) -> tuple[dict[str, float], int]:
    """``loss`` and the task's metrics over the rows at table ``positions`` that were predicted and
    have every target the task needs; returns ``(metrics, rows scored)``."""
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


def load(checkpoint: str | Path) -> Predictor:
    """A :class:`Predictor` for a checkpoint file, a run's folder, a training output folder (its
    models averaged), a pretrained model (``pretrained:NAME``, a hub repository ``hf:OWNER/REPO``, or a
    folder with a model card: its files are checked against the card's sha256 first)."""
    from mmaffect.pretrained import resolve

    return Predictor(load_models(resolve(checkpoint)), checkpoint)


def evaluate(checkpoint: str | Path, dataset: str, split: str = "test", predictions: str | Path | None = None,
             columns: dict[str, str] | str | None = None, encoding: str = "utf-8",
             features: str | Path | None = None) -> dict[str, float]:
    """Metrics of ``checkpoint`` on one split (or ``all``) of ``dataset``; optionally writes those rows'
    predictions (``.csv`` / ``.jsonl``). Problems with rows are logged as warnings."""
    from mmaffect.data.manifest import parse_columns
    from mmaffect.predictions import check_table_path, write_table

    if predictions is not None:
        check_table_path(predictions, "--predictions")
    if isinstance(columns, str):
        columns = parse_columns(columns)
    evaluation = load(checkpoint).evaluate(dataset, split, columns=columns, encoding=encoding, features=features)
    if predictions is not None:
        write_table(predictions, evaluation.table)
    for line in evaluation.summary():
        log.warning("%s", line)
    return evaluation.metrics


def audio_reader_options(dataset_args: dict, checkpoint: str | Path) -> dict:
    """The ``cache:`` reader options a model was trained with that shape its audio input.

    ``speaker_norm`` is refused: it standardises each speaker over all of their utterances, and one
    file's few segments (one, for a short recording) are no estimate of a speaker's voice."""
    if dataset_args.get("speaker_norm"):
        raise DataError(checkpoint, "trained with speaker_norm (per-speaker statistics over many utterances); "
                                    "a prediction sees one file: use a model trained without it")
    return {k: dataset_args[k] for k in ("audio_vector", "audio_sequence") if dataset_args.get(k)}
