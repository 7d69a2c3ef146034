"""Run MMSA 2.2.1's own training on CPU on an exported feature pickle, one seed at a time, timed.

Runs inside the separate MMSA venv (``setup_venv.sh``), not with mmaffect installed. MMSA itself is
not patched on disk; what stops it on a CPU with torch 2.13 is worked around here at run time:

- ``MMSA_run`` calls ``torch.cuda.set_device`` unconditionally: we build the arguments as
  ``MMSA_run`` does and call its ``_run`` pieces (data loader, AMIO model, ATIO trainer) ourselves,
  with ``set_device`` made a no-op for a CPU device;
- MulT's trainer passes ``verbose=`` to ``ReduceLROnPlateau``, which torch 2.13 refuses: the
  trainer module gets a subclass that drops it;
- MulT's ``Conv1d(kernel_size=5)`` cannot run on length-1 sequences: kernel sizes 1 for utterance
  vectors (set in the config override);
- MISA and Self-MM hard-wire ``bert-base-uncased``, which cannot be downloaded here: the BERT-free
  variant replaces ``BertTextEncoder`` by a pass-through of the text vector zero-padded to 768
  (a ``text_bert``-shaped copy of the text vector is written beside the data for their loader);
- Self-MM's ``train_samples`` (size of its label memory) is set to the real training size;
- TFN/LMF/LF-DNN's BatchNorm1d fails on a training batch of one row: refused up front (it does not
  happen with these batch sizes on mosi-bclstm: 1209 % 32 = 25, 1209 % 64 = 57).

Selection is MMSA's own: lowest validation loss, early stop after ``early_stop`` (8) epochs without
improvement, best weights tested. The train time is ``trainer.do_train`` alone (its per-epoch
validation pass included, as in ours). Usage::

    python mmsa_cpu.py --data mosi.pkl --model tfn --seeds 1111,1112 --work DIR --output tfn.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

TEXT_BERT_WIDTH = 768


class PassThroughText(nn.Module):
    """Stands in for ``BertTextEncoder``: input ``(N, 3, L)`` whose row 0 holds the text vector in its
    first ``d`` places; output ``(N, 1, 768)``, the vector zero-padded (no BERT, no weights)."""

    def __init__(self, width: int, **_ignored) -> None:
        super().__init__()
        self.width = width

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        vector = text[:, 0, : self.width]
        return nn.functional.pad(vector, (0, TEXT_BERT_WIDTH - self.width)).unsqueeze(1)


def with_text_bert(source: Path, work: Path) -> tuple[Path, int]:
    """A copy of the exported pickle with ``text_bert`` (N, 3, d): row 0 the text vector, row 1 a
    one-token attention mask, row 2 zeros; what MISA/Self-MM's loader reads when ``use_bert`` is on."""
    with open(source, "rb") as handle:  # our own export, written by `mmaffect export mmsa`
        data = pickle.load(handle)
    width = data["train"]["text"].shape[2]
    for split in ("train", "valid", "test"):
        text = data[split]["text"]
        if text.shape[1] != 1:
            raise SystemExit(f"{source}: the BERT-free variant needs utterance vectors (L=1), got L={text.shape[1]}")
        bert = np.zeros((len(text), 3, width), np.float32)
        bert[:, 0] = text[:, 0]
        bert[:, 1, 0] = 1
        data[split]["text_bert"] = bert
    out = work / f"{source.stem}_text_bert.pkl"
    with open(out, "wb") as handle:
        pickle.dump(data, handle, protocol=4)
    return out, width


def apply_cpu_workarounds(model: str, text_width: int) -> None:
    """Run-time replacements in MMSA's imported modules (the installed files stay as released)."""
    from torch.optim import lr_scheduler

    real_set_device = torch.cuda.set_device

    def set_device(device) -> None:
        if torch.device(device).type == "cpu":
            return
        real_set_device(device)

    torch.cuda.set_device = set_device

    class Plateau(lr_scheduler.ReduceLROnPlateau):
        def __init__(self, *args, verbose=None, **kwargs) -> None:  # torch 2.13 has no verbose=
            super().__init__(*args, **kwargs)

    import MMSA.models
    import MMSA.trains  # noqa: F401  (loads the modules patched below)

    # the packages re-export each class under its module's name, so reach the modules via sys.modules
    sys.modules["MMSA.trains.singleTask.MULT"].ReduceLROnPlateau = Plateau
    if model in ("misa", "self_mm"):
        def encoder(**kwargs):
            return PassThroughText(text_width, **kwargs)

        sys.modules["MMSA.models.singleTask.MISA"].BertTextEncoder = encoder
        sys.modules["MMSA.models.multiTask.SELF_MM"].BertTextEncoder = encoder


def mmsa_args(model: str, data: Path, work: Path, n_train: int) -> dict:
    """MMSA's own defaults for ``model`` on MOSI (``config_regression.json``), as ``MMSA_run`` builds
    them, pointed at our pickle, on the CPU, with the overrides the CPU workarounds need."""
    from MMSA.config import get_config_regression

    config = Path(__import__("MMSA").__file__).parent / "config" / "config_regression.json"
    args = get_config_regression(model, "mosi", config)
    args.update({"model_save_path": work / f"{model}-mosi.pth", "device": torch.device("cpu"),
                 "train_mode": "regression", "custom_feature": str(data), "feature_T": "", "feature_A": "",
                 "feature_V": ""})
    if model == "mult":
        args.update({"conv1d_kernel_size_l": 1, "conv1d_kernel_size_a": 1, "conv1d_kernel_size_v": 1})
    if model == "self_mm":
        args["train_samples"] = n_train
    if n_train % args["batch_size"] == 1:
        raise SystemExit(f"{model}: {n_train} training rows leave a last batch of 1, which MMSA's BatchNorm "
                         f"models cannot train on (batch size {args['batch_size']})")
    return args


def run_seed(args: dict, seed: int) -> dict:
    """One MMSA run (``MMSA.run._run`` without its GPU calls), timed; returns test metrics and time."""
    from MMSA.data_loader import MMDataLoader
    from MMSA.models import AMIO
    from MMSA.trains import ATIO
    from MMSA.utils import setup_seed

    setup_seed(seed)
    args["cur_seed"] = seed
    loaders = MMDataLoader(args, num_workers=0)
    model = AMIO(args).to(args["device"])
    trainer = ATIO().getTrain(args)
    epochs = {"n": 0}
    do_test = trainer.do_test

    def counted(model_, loader, mode="VAL", **kwargs):
        if mode == "VAL":
            epochs["n"] += 1
        return do_test(model_, loader, mode=mode, **kwargs)

    trainer.do_test = counted
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    trainer.do_train(model, loaders)
    train_seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    model.load_state_dict(torch.load(args["model_save_path"], weights_only=True))
    test = trainer.do_test(model, loaders["test"], mode="TEST")
    return {"seed": seed, "train_seconds": train_seconds, "epochs_run": epochs["n"],
            "seconds_per_epoch": train_seconds / max(epochs["n"], 1),
            "loadavg_1min": [load_before, load_after],
            "test": {k: float(v) for k, v in test.items()},
            "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="pickle from `mmaffect export mmsa`")
    parser.add_argument("--model", required=True, choices=["tfn", "lmf", "mult", "misa", "self_mm"])
    parser.add_argument("--seeds", default="1111,1112,1113,1114,1115")
    parser.add_argument("--work", required=True, type=Path, help="scratch folder for MMSA's checkpoints")
    parser.add_argument("--output", required=True, type=Path, help="JSON results (one line per seed appended)")
    parser.add_argument("--early-stop", type=int, help="override MMSA's early_stop (smoke tests only)")
    options = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    options.work.mkdir(parents=True, exist_ok=True)
    with open(options.data, "rb") as handle:
        n_train = len(pickle.load(handle)["train"]["regression_labels"])
    data, width = options.data, 0
    if options.model in ("misa", "self_mm"):
        data, width = with_text_bert(options.data, options.work)
    apply_cpu_workarounds(options.model, width)
    args = mmsa_args(options.model, data, options.work, n_train)
    if options.early_stop:
        args["early_stop"] = options.early_stop
    done = set()
    if options.output.exists():  # resumable: seeds already in the file are skipped
        done = {json.loads(line)["seed"] for line in options.output.read_text().splitlines() if line.strip()}
    for seed in (int(s) for s in options.seeds.split(",")):
        if seed in done:
            continue
        record = run_seed(args, seed)
        record.update({"toolkit": "MMSA 2.2.1", "model": options.model, "threads": torch.get_num_threads(),
                       "torch": torch.__version__, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                       "python": platform.python_version(), "early_stop": args["early_stop"],
                       "batch_size": args["batch_size"],
                       "variant": "BERT-free: text vector zero-padded to 768" if width else "as released"})
        with open(options.output, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"MMSA {options.model} seed {seed}: Has0_acc_2 {record['test']['Has0_acc_2']:.4f}, "
              f"{record['train_seconds']:.1f} s ({record['epochs_run']} epochs)", flush=True)


if __name__ == "__main__":
    main()
