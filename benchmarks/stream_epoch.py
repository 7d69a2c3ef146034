"""One training epoch over a streamed sharded cache, with its peak resident memory (issue 24, item 3).

    python benchmarks/synthetic_cache.py --output /tmp/synthetic200k
    python benchmarks/stream_epoch.py --cache /tmp/synthetic200k         # writes results/stream_epoch.json

Loads the folder with :func:`mmaffect.data.shards.load_shards` (features stay on disk; each batch's
rows are read with positional reads) and runs one epoch of the generic trainer
(:func:`mmaffect.training.trainer.fit`, 1 thread, batch 64, validation pass with batches of 256) with
``audio-asp`` (raw frames, attention 16, MLP 32) on the 50 Hz audio descriptors. Every batch
gathers the sequences of all three modalities (the model reads audio only), so the epoch streams the
whole cache. Peak RSS is the process's high-water mark (``getrusage``), which includes torch itself.
Also records what holding the same features in memory would take (padded float16 tensors, as the
in-memory dataset stores sequences, and the packed size on disk).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

from mmaffect.data.shards import load_shards
from mmaffect.io import check_output_file, write_json
from mmaffect.models.registry import create_model
from mmaffect.tasks import make_task
from mmaffect.training.config import TrainConfig
from mmaffect.training.runs import model_spec
from mmaffect.training.trainer import fit

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "stream_epoch.json"
LIMIT_BYTES = 3 * 1024 ** 3


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


def current_rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, type=Path, help="folder written by benchmarks/synthetic_cache.py")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    check_output_file(args.output)
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load_shards(args.cache)
    rows = data.split_indices()
    task = make_task(data, None, train_index=rows["train"])
    torch.manual_seed(0)
    model = create_model("audio-asp", model_spec(data, task), frame_hidden=0, attention_hidden=16, hidden=32)
    loaded_s, rss_loaded = time.perf_counter() - started, current_rss()
    cfg = TrainConfig(epochs=1, batch_size=64, eval_batch_size=256)
    result = fit(model, data, task, rows["train"], rows["valid"], cfg, 0, progress=False)
    peak = peak_rss()
    on_disk = sum(p.stat().st_size for p in args.cache.rglob("*.npy"))
    padded = sum(len(data) * m.sequence.shape[1] * m.sequence.shape[2] * 2 + len(data) * m.dim * 2
                 for m in data.modalities.values())
    files = data.modalities["a"].sequence.files
    out = {
        "cache": str(args.cache), "rows": len(data), "train_rows": len(rows["train"]),
        "valid_rows": len(rows["valid"]), "synthetic": json.loads((args.cache / "synthetic.json").read_text()),
        "feature_bytes_on_disk": on_disk, "padded_float16_bytes_in_memory": padded,
        "model": "audio-asp (frame_hidden=0: raw frames, attention_hidden=16, hidden=32)", "n_params":
            sum(p.numel() for p in model.parameters()),
        "train": {"epochs": 1, "batch_size": 64, "eval_batch_size": 256, "threads": 1},
        "epoch_seconds": result.seconds, "load_seconds": loaded_s,
        "utterances_per_second": len(rows["train"]) / result.seconds,
        "history": result.history, "rss_after_load_bytes": rss_loaded, "peak_rss_bytes": peak,
        "peak_rss_limit_bytes": LIMIT_BYTES, "under_limit": peak < LIMIT_BYTES,
        "bytes_read": files.bytes_read,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "load_average_end": os.getloadavg()},
        "note": "measured inside the CPU queue (1 thread) on a machine shared with other jobs; "
                "an earlier version read the shards through memory maps and peaked at 6.9 GB (see docs/scaling.md)",
    }
    write_json(args.output, out)
    print(f"{len(rows['train'])} training utterances in {result.seconds:.0f} s "
          f"({out['utterances_per_second']:.0f}/s); peak RSS {peak / 1e9:.2f} GB "
          f"(features: {on_disk / 1e9:.1f} GB on disk, {padded / 1e9:.1f} GB padded in memory)")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
