"""Data-parallel training in 2 CPU processes (gloo): the same weights and metrics as one process,
and only rank 0 writes files. Each test starts real processes (a few seconds of start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmaffect.data import load_dataset
from mmaffect.data.standardize import Standardizer
from mmaffect.models import create_model
from mmaffect.tasks import make_task
from mmaffect.training import runs, trainer
from mmaffect.training.config import TrainConfig
from mmaffect.training.runs import model_spec
from mmaffect.training.trainer import evaluate_rows, fit

CFG = {"epochs": 2, "batch_size": 4, "patience": 5, "scheduler": "linear", "warmup_ratio": 0.1}


def _train(data_dir: str, workdir: Path | None = None):
    data = load_dataset("mosi-bclstm", root=data_dir)
    splits = data.split_indices()
    data = Standardizer.fit(data, splits["train"]).apply(data)
    task = make_task(data)
    torch.manual_seed(0)
    model = create_model("bc-lstm", model_spec(data, task), dropout=0.0)  # no dropout: ranks draw other masks
    cfg = TrainConfig(**CFG)
    result = fit(model, data, task, splits["train"], splits["valid"], cfg, seed=0, workdir=workdir, progress=False)
    metrics, _ = evaluate_rows(model, data, splits["test"], task, cfg)
    return model.state_dict(), result, metrics


def _no_writes(*args, **kwargs):
    raise AssertionError("rank 1 wrote a file")


def _worker(rank: int, data_dir: str, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    if rank == 1:  # every file write of the trainer and the run layer fails on rank 1
        for module, name in ((trainer, "save_tensors"), (runs, "save_tensors"), (runs, "write_json"),
                             (runs, "atomic_write")):
            setattr(module, name, _no_writes)
    state, result, metrics = _train(data_dir, Path(folder) / "work")
    torch.save({"state": state, "history": result.history, "metrics": metrics}, f"{folder}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_train_like_one(data_dir, tmp_path):
    mp.spawn(_worker, args=(str(data_dir), str(tmp_path)), nprocs=2, join=True)
    state, result, metrics = _train(str(data_dir))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert (tmp_path / "work" / "last.safetensors").exists()  # written once, by rank 0
    for got in ranks:  # the summed shard gradients are the one-process gradient: same weights and metrics
        for key, value in state.items():
            torch.testing.assert_close(got["state"][key], value, rtol=1e-4, atol=1e-5)
        assert got["metrics"]["mae"] == np.float64(metrics["mae"]).item() or \
            abs(got["metrics"]["mae"] - metrics["mae"]) < 1e-4
        assert [round(h["train_loss"], 4) for h in got["history"]] == [round(h["train_loss"], 4)
                                                                        for h in result.history]
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # gathered predictions: every rank sees all rows


def test_cli_devices_2_writes_one_result(data_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "MMAFFECT_DATA": str(data_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mmaffect.cli", "train", "--dataset", "mosi-bclstm", "--model",
                           "bc-lstm", "--epochs", "1", "--devices", "2", "--quiet", "--output", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("results: ") == 1  # only rank 0 prints
    results = json.loads((out / "results.json").read_text())
    assert results["environment"]["processes"] == 2 and results["epochs_run"] == [1]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert files == ["config.json", "results.json", "seed0", "seed0/model.safetensors", "seed0/predictions.csv",
                     "seed0/result.json"]
