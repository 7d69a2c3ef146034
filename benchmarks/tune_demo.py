"""``mmaffect tune`` on two data sets: does the searched config beat the default on validation? (issue 24)

    python benchmarks/tune_demo.py --work /tmp/tune_demo            # ~4 min on 2 cores

Runs the real command twice, each with 16 trials on a local Ray with 2 CPUs (ASHA, grace 3 epochs,
reduction 2), the seeds 0, 1, 2 for the final runs:

* ``mosi-bclstm`` with ``lf-dnn`` and ``configs/tune/lf-dnn.yaml`` (the bc-LSTM split: train 1209 /
  valid 238 / test 752);
* an own-data manifest: 800 positive/negative MELD training rows (the sample of
  ``benchmarks/small_data.py``, seed 0), split by dialogue into train/valid/test 60/20/20 % of the
  dialogues (seed 0), written to ``WORK/meld_binary800_split.csv`` (never into the repository), with
  ``text-mlp`` and ``configs/tune/text-mlp.yaml``.

Writes ``benchmarks/results/tune_demo.json``: per data set the search summary (trials, how many ASHA
stopped, epochs trained, the chosen values), validation and test of the tuned and the default config
(mean ± sample std over the seeds), the wall time and the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mmaffect.io import check_output_dir, check_output_file, write_json
from mmaffect.settings import data_root

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "tune_demo.json"


def meld_split_manifest(work: Path) -> Path:
    """The 800 MELD rows of benchmarks/small_data.py with a dialogue-grouped train/valid/test split."""
    frame = pd.read_csv(data_root() / "meld" / "train_sent_emo.csv")
    rows = frame[frame.Sentiment.isin(["positive", "negative"])].sample(n=800, random_state=0)
    dialogues = np.random.default_rng(0).permutation(np.unique(rows.Dialogue_ID))
    cut = np.split(dialogues, [int(0.6 * len(dialogues)), int(0.8 * len(dialogues))])
    split = {int(d): name for name, part in zip(("train", "valid", "test"), cut, strict=True) for d in part}
    manifest = pd.DataFrame({"id": [f"train_{d}_{u}" for d, u in zip(rows.Dialogue_ID, rows.Utterance_ID, strict=True)],
                             "text": rows.Utterance, "label": rows.Sentiment, "speaker": rows.Speaker,
                             "dialogue_id": rows.Dialogue_ID, "split": [split[int(d)] for d in rows.Dialogue_ID]})
    path = work / "meld_binary800_split.csv"
    manifest.to_csv(path, index=False)
    return path


def run_tune(name: str, dataset: str, model: str, space: Path, work: Path, trials: int, seeds: int) -> dict:
    out = work / name
    command = [sys.executable, "-m", "mmaffect.cli", "--threads", "1", "tune", str(space), "--dataset", dataset,
               "--model", model, "--trials", str(trials), "--seeds", str(seeds), "--cpus", "2",
               "--output", str(out), "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    results = json.loads((out / "results.json").read_text())
    return {"dataset": dataset, "model": model, "space": str(space.relative_to(ROOT)),
            "command": "mmaffect --threads 1 " + " ".join(command[5:]).replace(str(work), "WORK"),
            "wall_seconds": time.perf_counter() - started, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="folder for the manifest and runs (not the repo)")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    check_output_file(args.output)
    work = check_output_dir(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    rows = [run_tune("mosi_lf-dnn", "mosi-bclstm", "lf-dnn", ROOT / "configs" / "tune" / "lf-dnn.yaml", work,
                     args.trials, args.seeds),
            run_tune("meld800_text-mlp", f"manifest:{meld_split_manifest(work)}", "text-mlp",
                     ROOT / "configs" / "tune" / "text-mlp.yaml", work, args.trials, args.seeds)]
    rows[1]["dataset"] = "manifest: 800 MELD pos/neg rows (benchmarks/small_data.py sample), dialogue-grouped split"
    write_json(args.output, {"rows": rows, "load_average_start": load_start, "load_average_end": os.getloadavg(),
                             "note": "local Ray, 2 CPUs, 1 thread per trial, on a machine shared with other jobs"})
    for row in rows:
        metric = row["search"]["metric"].removeprefix("valid_")
        best, default = row["best"]["valid"][metric], row["default"]["valid"][metric]
        print(f"{row['model']} on {row['dataset'][:40]}: valid {metric} tuned {best['mean']:.4f} ± {best['std']:.4f}"
              f" vs default {default['mean']:.4f} ± {default['std']:.4f}")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
