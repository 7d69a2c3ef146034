"""Benchmark suites: a YAML grid of datasets x models x seeds (plus optional modality ablations) run
through the one trainer, resumable, summarised as ``results.csv``, ``report.md`` and one
self-contained ``report.html``.

A suite file::

    name: sentiment
    description: CMU-MOSI, bc-LSTM utterance features
    datasets:
      - mosi-bclstm                          # a name, or a mapping:
      - {name: "cache:/work/cache/ravdess", label: "RAVDESS speech", args: {}}
      - {name: "cache:/work/cache/clips", cv: {folds: 5, group_by: none}}   # no fixed split
    models: [tfn, lmf]
    seeds: [0, 1, 2]                         # or a count
    train: {epochs: 30, patience: 8}         # overrides for every cell
    model_args: {tfn: {dropout: 0.2}}        # per model
    ablation: {model: tfn, subsets: [t, a, v, tav]}   # optional; datasets: [...] limits it

Output folder::

    DIR/cells/<dataset>__<model>[__<subset>]/   an ``mmaffect train`` output folder per cell
    DIR/results.csv                             one row per cell and run (seed)
    DIR/report.md, DIR/report.html              tables (+ plots in the HTML)

A cell whose ``results.json`` exists with the same configuration is skipped without loading data;
an interrupted cell resumes seed by seed (:func:`mmaffect.training.runs.run_experiment`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from mmaffect.errors import ConfigError
from mmaffect.io import atomic_write, check_output_dir
from mmaffect.training.config import ExperimentConfig, load_config

log = logging.getLogger(__name__)

_SUITE_KEYS = {"name", "description", "datasets", "models", "seeds", "train", "model_args", "ablation"}


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    label: str
    args: dict = field(default_factory=dict)  # reader options (dataset_args)
    cv: dict | None = None  # cross-validation for datasets without a fixed split


@dataclass
class Suite:
    name: str
    description: str
    datasets: list[DatasetEntry]
    models: list[str]
    seeds: int | list[int]
    train: dict = field(default_factory=dict)
    model_args: dict = field(default_factory=dict)
    ablation: dict | None = None


@dataclass(frozen=True)
class Cell:
    """One experiment of the grid: a dataset, a model and (for ablation cells) a modality subset."""

    dataset: DatasetEntry
    model: str
    modalities: str | None = None

    @property
    def slug(self) -> str:
        parts = [self.dataset.name, self.model] + ([self.modalities] if self.modalities else [])
        return "__".join(re.sub(r"[^A-Za-z0-9.-]+", "-", p).strip("-") for p in parts)


def _entry(path: Path, raw) -> DatasetEntry:
    if isinstance(raw, str):
        return DatasetEntry(raw, raw)
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        args = raw.get("args") or {}
        cv = raw.get("cv")
        if not isinstance(args, dict) or not isinstance(cv or {}, dict):
            raise ConfigError(f"{path}: dataset {raw['name']!r}: args and cv must be mappings")
        return DatasetEntry(raw["name"], str(raw.get("label", raw["name"])), args, cv)
    raise ConfigError(f"{path}: each dataset is a name or a mapping with 'name' (got {raw!r})")


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; every problem is a one-line ConfigError naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the suite ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a suite file must be a mapping (name, datasets, models, seeds, ...)")
    unknown = sorted(set(raw) - _SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_SUITE_KEYS))})")
    for key in ("datasets", "models"):
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise ConfigError(f"{path}: '{key}' must be a non-empty list")
    for key in ("train", "model_args"):
        if not isinstance(raw.get(key) or {}, dict):
            raise ConfigError(f"{path}: '{key}' must be a mapping")
    ablation = raw.get("ablation")
    if ablation is not None and (not isinstance(ablation, dict) or not isinstance(ablation.get("model"), str)
                                 or not isinstance(ablation.get("subsets"), list) or not ablation["subsets"]):
        raise ConfigError(f"{path}: 'ablation' must be a mapping with 'model' and a list of 'subsets' (e.g. [t, tav])")
    return Suite(name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")),
                 datasets=[_entry(path, d) for d in raw["datasets"]], models=[str(m) for m in raw["models"]],
                 seeds=raw.get("seeds", 3), train=raw.get("train") or {}, model_args=raw.get("model_args") or {},
                 ablation=ablation)


def suite_cells(suite: Suite) -> list[Cell]:
    cells = [Cell(d, m) for d in suite.datasets for m in suite.models]
    if suite.ablation:
        names = suite.ablation.get("datasets") or [d.name for d in suite.datasets]
        cells += [Cell(d, suite.ablation["model"], str(s)) for d in suite.datasets if d.name in names
                  for s in suite.ablation["subsets"]]
    return cells


def cell_config(suite: Suite, cell: Cell) -> ExperimentConfig:
    overrides = {"dataset": cell.dataset.name, "model": cell.model, "seeds": suite.seeds, "cv": cell.dataset.cv,
                 "modalities": ",".join(cell.modalities) if cell.modalities else None}
    overrides |= {f"train.{k}": v for k, v in suite.train.items()}
    overrides |= {f"model_args.{k}": v for k, v in (suite.model_args.get(cell.model) or {}).items()}
    overrides |= {f"dataset_args.{k}": v for k, v in cell.dataset.args.items()}
    return load_config(None, overrides)


def _finished(folder: Path, config: ExperimentConfig) -> dict | None:
    """The cell's results when it finished with this configuration (no data loaded), else None."""
    done = folder / "results.json"
    if not done.exists():
        return None
    results = json.loads(done.read_text())
    return results if results.get("config") == json.loads(json.dumps(config.to_dict())) else None


def run_suite(suite: Suite, output: str | Path, progress: bool = False) -> list[dict]:
    """Run (or resume) every cell; returns one entry per cell: cell, results and its run records."""
    from mmaffect.training.runs import run_experiment

    output = check_output_dir(output)
    entries = []
    cells = suite_cells(suite)
    for number, cell in enumerate(cells, 1):
        config = cell_config(suite, cell)
        folder = output / "cells" / cell.slug
        results = _finished(folder, config)
        if results is None:
            log.info("cell %d/%d %s: running", number, len(cells), cell.slug)
            results = run_experiment(config, folder, progress=progress)
        else:
            log.info("cell %d/%d %s: finished earlier, skipped", number, len(cells), cell.slug)
        entries.append({"cell": cell, "folder": folder, "results": results, "runs": _runs(folder, results)})
    return entries


def _runs(folder: Path, results: dict) -> list[dict]:
    """Each run's result.json with its test predictions' sign confusion for score tasks."""
    runs = []
    for seed in results["seeds"]:
        for fold in results.get("folds") or [None]:
            rundir = folder / (f"seed{seed}" + ("" if fold is None else f"_fold{fold}"))
            record = json.loads((rundir / "result.json").read_text())
            if not record.get("test_report") and (rundir / "predictions.csv").exists():
                record["test_report"] = _sign_report(rundir / "predictions.csv")
            runs.append(record)
    return runs


def _sign_report(predictions: Path) -> dict:
    """Negative / non-negative confusion of a score task's test predictions (acc2_has0's classes)."""
    table = pd.read_csv(predictions)
    table = table[table["split"] == "test"]
    if not {"score", "pred_score"} <= set(table.columns):
        return {}
    from mmaffect.metrics import classification_report

    return classification_report((table["pred_score"] >= 0).astype(int).to_numpy(),
                                 (table["score"] >= 0).astype(int).to_numpy(), ["negative", "non-negative"])


def results_table(entries: list[dict]) -> pd.DataFrame:
    """One row per cell and run: dataset, model, modalities, seed, fold, test metrics, timing."""
    rows = []
    for entry in entries:
        cell = entry["cell"]
        for run in entry["runs"]:
            rows.append({"dataset": cell.dataset.name, "model": cell.model, "modalities": cell.modalities or "all",
                         "seed": run["seed"], "fold": run.get("fold"), **{k: run["test"][k] for k in run["test"]},
                         "seconds_per_epoch": run["seconds_per_epoch"], "epochs_run": run["epochs_run"],
                         "best_epoch": run["best_epoch"]})
    return pd.DataFrame(rows)


def write_reports(suite: Suite, entries: list[dict], output: str | Path) -> dict[str, Path]:
    """results.csv, report.md and report.html in ``output``; returns their paths."""
    from mmaffect.benchmark.report import html_report, markdown_report

    output = Path(output)
    table = results_table(entries)
    paths = {"csv": output / "results.csv", "md": output / "report.md", "html": output / "report.html"}
    atomic_write(paths["csv"], lambda tmp: table.to_csv(tmp, index=False))
    markdown = markdown_report(suite, entries)
    atomic_write(paths["md"], lambda tmp: tmp.write_text(markdown))
    page = html_report(suite, entries)
    atomic_write(paths["html"], lambda tmp: tmp.write_text(page))
    return paths
