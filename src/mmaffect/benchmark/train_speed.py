"""Training speed of a model on a dataset: seconds per epoch over batch sizes and thread counts.

Uses the real trainer (:func:`mmaffect.training.trainer.fit`), so the numbers are what ``mmaffect
train`` pays per epoch (training steps plus the validation pass). Run it with
``OMP_WAIT_POLICY=PASSIVE``: on a shared machine OpenMP spin-waiting makes timings collapse.
"""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np
import torch

from mmaffect import __version__
from mmaffect.data.standardize import Standardizer
from mmaffect.models.registry import create_model
from mmaffect.tasks import make_task
from mmaffect.training.config import ExperimentConfig, TrainConfig
from mmaffect.training.runs import count_parameters, load_experiment_data, model_spec
from mmaffect.training.trainer import fit


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def train_speed(dataset: str, model: str, batch_sizes: list[int], threads: list[int], epochs: int = 3,
                model_args: dict | None = None, dataset_args: dict | None = None) -> dict:
    """Median seconds per epoch for each (threads, batch size); the first epoch is reported apart
    (it includes one-off allocation and kernel selection)."""
    config = ExperimentConfig(dataset=dataset, model=model, model_args=model_args or {},
                              dataset_args=dataset_args or {})
    data = load_experiment_data(config)
    splits = data.split_indices()
    data = Standardizer.fit(data, splits["train"]).apply(data)
    task = make_task(data)
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for batch_size in batch_sizes:
            torch.manual_seed(0)
            net = create_model(model, model_spec(data, task), **config.model_args)
            cfg = TrainConfig(epochs=epochs, batch_size=batch_size, patience=epochs + 1)
            started = time.perf_counter()
            result = fit(net, data, task, splits["train"], splits["valid"], cfg, seed=0, progress=False)
            wall = time.perf_counter() - started
            per_epoch = [h["seconds"] for h in result.history]
            rows.append({"threads": n_threads, "batch_size": batch_size, "epochs": epochs,
                         "first_epoch_s": float(per_epoch[0]),
                         "median_epoch_s": float(np.median(per_epoch[1:] if epochs > 1 else per_epoch)),
                         "wall_s": wall, "steps_per_epoch": -(-len(splits["train"]) // batch_size)})
    return {"benchmark": "train-speed", "dataset": dataset, "model": model, "n_params": count_parameters(net),
            "n_train": len(splits["train"]), "rows": rows,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "environment": {"mmaffect": __version__, "torch": torch.__version__, "cpu": _cpu_name(),
                            "cores": os.cpu_count(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
