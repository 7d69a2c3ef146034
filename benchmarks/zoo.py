"""The MMSA-zoo baselines (MFN, Graph-MFN, MulT, MISA, Self-MM, MMIM) trained through the CLI (issue 22).

Every model runs ``mmaffect --threads 1 train`` on

- ``mosi-bclstm``: the bc-LSTM utterance vectors (each a length-1 sequence for these models), fixed
  62/31-video split with 10 validation videos, seeds 0-2, selection on validation loss;
- the IEMOCAP clip features (``cache:CLIPS``, ``mmaffect extract`` output for the 40 Session-1 clips:
  MiniLM token states, audio descriptors, face-geometry steps), 8 classes, 5-fold grouped CV by
  ``dialogue_id``, seed 0;

beside the ``linear`` model on the same data, split and seeds (the floor). Each run's
``results.json`` is copied to ``RESULTS/zoo_<dataset>_<model>.json`` with the command, the wall time
and the load average before and after it; the CLI resumes finished runs, so re-running skips them.
Run it in the CPU queue (one thread each)::

    python benchmarks/zoo.py --work out/zoo
    python benchmarks/zoo.py --table      # docs/zoo.md's tables from the result files
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from mmaffect.io import check_output_dir, write_json
from mmaffect.settings import data_root

MODELS = ("mfn", "graph-mfn", "mult", "misa", "self-mm", "mmim")
FLOOR = "linear"
DATASETS = {"mosi-bclstm": ["--seeds", "3"],
            "clips": ["--seeds", "1", "--cv", "5", "--group-by", "dialogue_id"],
            # the fine-tuned MiniLM text branch end to end (not in the default run: ~2 min per epoch on 1 thread)
            "iemocap6-text-minilm": ["--seeds", "1", "--epochs", "2", "--set", "model_args.text_encoder=minilm",
                                     "--set", "train.select=f1_weighted"]}
DEFAULT_DATASETS = ("mosi-bclstm", "clips")
MMSA_NAMES = {"mfn": "mfn", "graph-mfn": "graph_mfn", "mult": "mult", "misa": "misa", "self-mm": "self_mm",
              "mmim": "mmim"}
MOSI_METRICS = ("acc2_has0", "acc2_non0", "f1_non0", "acc7", "mae", "corr")
CLIP_METRICS = ("acc", "wacc", "f1_weighted", "f1_macro")
RESULTS = Path(__file__).parent / "results"


def dataset_argument(name: str, clips: Path) -> str:
    return {"clips": f"cache:{clips}", "iemocap6-text-minilm": "iemocap6-text"}.get(name, name)


def run(model: str, dataset: str, clips: Path, work: Path, results: Path) -> Path:
    """Train (or resume) one model on one dataset through the CLI; return its result file."""
    out = work / dataset / model
    command = [shutil.which("mmaffect") or "mmaffect", "--threads", "1", "train", "--quiet",
               "--dataset", dataset_argument(dataset, clips), "--model", model, *DATASETS[dataset],
               "--output", str(out)]
    load_before = os.getloadavg()
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    wall = time.perf_counter() - started
    result = json.loads((out / "results.json").read_text())
    result["benchmark"] = {"command": " ".join(command[1:]), "wall_seconds": round(wall, 1),
                           "loadavg_before": [round(x, 2) for x in load_before],
                           "loadavg_after": [round(x, 2) for x in os.getloadavg()], "threads": 1,
                           "note": "wall_seconds is 0-ish when the CLI read back finished runs"}
    target = results / f"zoo_{dataset}_{model}.json"
    write_json(target, result)
    return target


def mmsa_published(root: Path | None = None) -> pd.DataFrame:
    """MMSA's own MOSI regression rows (its aligned/unaligned CMU features, CMU standard folds)."""
    table = pd.read_csv(Path(root or data_root()) / "published_results" / "mmsa_results.csv")
    return table[(table.dataset == "MOSI") & (table.task == "regression")].drop_duplicates("model").set_index("model")


def write_published(results: Path) -> Path:
    """MMSA's published MOSI rows for the zoo models, copied into ``zoo_published.json`` with their source,
    so the README table (benchmarks/report.py) reads results files only."""
    published = mmsa_published()
    rows = {model: {"data_setting": str(p.data_setting), "source": str(p.source),
                    "acc2_has0": float(p.Has0_acc_2), "acc2_non0": float(p.Non0_acc_2),
                    "f1_non0": float(p.Non0_F1_score), "acc7": float(p.Mult_acc_7), "mae": float(p.MAE) / 100,
                    "corr": float(p.Corr) / 100}
            for model, name in MMSA_NAMES.items() if name in published.index for p in [published.loc[name]]}
    target = results / "zoo_published.json"
    write_json(target, {"what": "MMSA's published CMU-MOSI regression results (MMSA's own CMU-SDK features, "
                                "CMU standard folds): other data than ours", "rows": rows})
    return target


def cell(metrics: dict, key: str) -> str:
    if key not in metrics:
        return ""
    m = metrics[key]
    digits = 3 if key in ("mae", "corr") else 1
    return f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f}"


def _model_rows(results: Path, dataset: str, metrics: list[str], extra, n_extra: int) -> list[str]:
    """One row per zoo model and the linear floor on ``dataset``: its test ``metrics`` and the ``n_extra``
    cells ``extra(result)``; "not run" where the result file is missing."""
    rows = []
    for model in (*MODELS, FLOOR):
        path = results / f"zoo_{dataset}_{model}.json"
        if not path.exists():
            rows.append(f"| {model} | " + " | ".join("not run" for _ in metrics) + " |" + " |" * n_extra)
            continue
        r = json.loads(path.read_text())
        name = f"*floor:* {model}" if model == FLOOR else model
        rows.append(f"| {name} | " + " | ".join([cell(r["test"], k) for k in metrics] + extra(r)) + " |")
    return rows


def table(results: Path) -> str:
    """The two Markdown tables of docs/zoo.md, from the result files."""
    lines = []
    published = mmsa_published()
    floors = json.loads((results / "floors.json").read_text()) if (results / "floors.json").exists() else None
    lines += ["| model | " + " | ".join(MOSI_METRICS) + " | s/epoch | epochs run | parameters |",
              "|---" * (len(MOSI_METRICS) + 4) + "|"]
    lines += _model_rows(results, "mosi-bclstm", MOSI_METRICS,
                         lambda r: [f"{r['seconds_per_epoch']:.2f}", str(r["epochs_run"]), f"{r['n_params']:,}"], 3)
    if floors is not None:
        lines += _floor_rows(floors)
    for model in MODELS:
        name = MMSA_NAMES[model]
        if name in published.index:
            p = published.loc[name]
            values = {"acc2_has0": p.Has0_acc_2, "acc2_non0": p.Non0_acc_2, "f1_non0": p.Non0_F1_score,
                      "acc7": p.Mult_acc_7, "mae": p.MAE / 100, "corr": p.Corr / 100}
            lines.append(f"| *MMSA published ({p.data_setting} CMU features, CMU std folds):* {model} | "
                         + " | ".join(f"{values[k]:.3f}" if k in ("mae", "corr") else f"{values[k]:.2f}"
                                      for k in MOSI_METRICS) + " | | | |")
        else:
            lines.append(f"| *MMSA published:* {model} | " + " | ".join("–" for _ in MOSI_METRICS)
                         + " | | | |")
    lines += ["", "| model | " + " | ".join(CLIP_METRICS) + " | s/epoch | parameters |",
              "|---" * (len(CLIP_METRICS) + 3) + "|"]
    lines += _model_rows(results, "clips", CLIP_METRICS,
                         lambda r: [f"{r['seconds_per_epoch']:.2f}", f"{r['n_params']:,}"], 2)
    lines.append("| *floor:* chance (8 balanced classes) | 12.5 | 12.5 | | | | |")
    minilm = sorted(results.glob("zoo_iemocap6-text-minilm_*.json"))
    if minilm:
        header = "| model (text_encoder=minilm) | " + " | ".join(CLIP_METRICS) + " | s/epoch | epochs | parameters |"
        lines += ["", header, "|---" * (len(CLIP_METRICS) + 4) + "|"]
        for path in minilm:
            r = json.loads(path.read_text())
            lines.append(f"| {r['model']} | " + " | ".join(cell(r["test"], k) for k in CLIP_METRICS)
                         + f" | {r['seconds_per_epoch']:.0f} | {r['epochs_run']} | {r['n_params']:,} |")
    return "\n".join(lines)


def _floor_rows(floors: dict) -> list[str]:
    """The README's MOSI floors (benchmarks/floors.py) in this table's columns."""
    mosi = floors["floors"]["mosi-bclstm"]
    return [f"| *floor:* {label} (benchmarks/floors.py) | "
            + " | ".join(f"{mosi[key][k]:.1f}" if k in mosi[key] else "" for k in MOSI_METRICS) + " | | | |"
            for key, label in (("majority", "majority rate of the test split"),
                               ("logreg_tav", "logistic regression, t+a+v"))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("out/zoo"), help="run folders (checkpoints, predictions)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--clips", type=Path, default=Path("/work/cache/clips"),
                        help="the IEMOCAP clip feature cache (mmaffect extract output)")
    parser.add_argument("--models", default=",".join((*MODELS, FLOOR)))
    parser.add_argument("--datasets", default=",".join(DEFAULT_DATASETS), help=f"any of {', '.join(DATASETS)}")
    parser.add_argument("--table", action="store_true", help="print the docs tables and exit")
    parser.add_argument("--published-only", action="store_true", help="only write zoo_published.json")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.results))
        return
    check_output_dir(args.results)
    print(f"published rows: {write_published(args.results)}")
    if args.published_only:
        return
    check_output_dir(args.work)
    for dataset in args.datasets.split(","):
        for model in args.models.split(","):
            print(f"{dataset} {model}: {run(model, dataset, args.clips, args.work, args.results)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
