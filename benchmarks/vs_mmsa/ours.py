"""Our side of the MMSA comparison: the same exported pickle (``mmsa:`` reader), the same seeds and
MMSA's selection rule (lowest validation loss, stop after 8 epochs without improvement), one seed
per experiment so the load average is recorded beside each run's time.

Appends one JSON line per seed to ``--output`` (resumable: seeds already there are skipped).
Run with the mmaffect venv, ``OMP_WAIT_POLICY=PASSIVE`` and one thread::

    python benchmarks/vs_mmsa/ours.py --data mosi.pkl --model tfn --seeds 1111,1112 --work DIR --output tfn.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from mmaffect.training.config import load_config
from mmaffect.training.runs import run_experiment

PATIENCE = 8  # MMSA's early_stop for every model on MOSI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="pickle from `mmaffect export mmsa`")
    parser.add_argument("--model", required=True, help="our model name (tfn, lmf, mult, misa, self-mm)")
    parser.add_argument("--seeds", default="1111,1112,1113,1114,1115")
    parser.add_argument("--work", required=True, type=Path, help="folder for the run folders")
    parser.add_argument("--output", required=True, type=Path, help="JSON lines, one per seed")
    options = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    done = set()
    if options.output.exists():
        done = {json.loads(line)["seed"] for line in options.output.read_text().splitlines() if line.strip()}
    for seed in (int(s) for s in options.seeds.split(",")):
        if seed in done:
            continue
        # the model's own training defaults (load_config merges them), MMSA's stopping rule on top
        config = load_config(None, {"dataset": f"mmsa:{options.data.resolve()}", "model": options.model,
                                    "seeds": [seed], "train.patience": PATIENCE, "train.select": "loss"})
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        results = run_experiment(config, options.work / options.model / f"seed{seed}", progress=False)
        run_seconds = time.perf_counter() - started
        record = {"toolkit": "mmaffect", "model": options.model, "seed": seed,
                  "train_seconds": results["train_seconds"], "epochs_run": results["epochs_run"][0],
                  # the whole run: data loading, standardising, the epochs, checkpoint writes, test, files
                  "run_seconds": run_seconds,
                  "seconds_per_epoch": results["seconds_per_epoch"],
                  "loadavg_1min": [load_before, os.getloadavg()[0]],
                  "test": {k: v["per_run"][0] for k, v in results["test"].items()},
                  "n_params": results["n_params"], "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                  "batch_size": config.train.batch_size, "early_stop": PATIENCE}
        with open(options.output, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"ours {options.model} seed {seed}: acc2_has0 {record['test']['acc2_has0']:.2f}, "
              f"{record['train_seconds']:.1f} s ({record['epochs_run']} epochs)", flush=True)


if __name__ == "__main__":
    main()
