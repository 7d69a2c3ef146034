"""A synthetic sharded feature cache of 200k utterances with sequence features (issue 24, item 3).

    python benchmarks/synthetic_cache.py --output /tmp/synthetic200k          # ~7.5 GB on disk

The data are synthetic, the code path is the real one (:class:`mmaffect.data.shards.ShardWriter`,
read back by :func:`~mmaffect.data.shards.load_shards`). Shapes follow the ``cache:`` reader on the
IEMOCAP clips: utterance durations log-normal around 4 s (0.5 - 20 s), audio = 57 frame-level
descriptors at 50 Hz (``audio_sequence=lld``) with a 228-d functionals vector, video = 23 values per
step at 2 steps/s (FER probabilities + face geometry), text = 384-d MiniLM vectors per token (3 - 40
tokens) with a 384-d sentence vector. Values come from one standard-normal pool (read at random
offsets: generating 4 billion fresh normals would cost minutes and prove nothing more), with a class
signal added to the first audio descriptor, so a model can learn something. Splits: 90 / 5 / 5 %.
Never write it into the repository: keep it under /work/runs or /tmp.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mmaffect.data.shards import ShardWriter
from mmaffect.io import check_output_dir

MODALITIES = {"t": (384, 384), "a": (228, 57), "v": (23, 23)}
RATES = {"a": 50.0, "v": 2.0}
CLASSES = ["negative", "neutral", "positive"]
POOL = 1 << 26  # 64 M float16 normals (128 MB)


def shard(rng: np.random.Generator, pool: np.ndarray, start: int, n: int) -> dict:
    """Arrays of rows ``start .. start + n``."""
    label = rng.integers(0, len(CLASSES), n)
    seconds = np.clip(rng.lognormal(np.log(4.0), 0.5, n), 0.5, 20.0)
    lengths = {"a": np.maximum(1, np.round(seconds * RATES["a"])).astype(int),
               "v": np.maximum(1, np.round(seconds * RATES["v"])).astype(int),
               "t": rng.integers(3, 41, n)}

    def draw(shape: tuple[int, int]) -> np.ndarray:
        size = shape[0] * shape[1]
        at = int(rng.integers(0, POOL - size))
        return pool[at:at + size].reshape(shape)

    vectors = {m: draw((n, d)).copy() for m, (d, _) in MODALITIES.items()}
    sequences = {}
    for m, (_, seq_dim) in MODALITIES.items():
        steps = [draw((int(length), seq_dim)) for length in lengths[m]]
        if m == "a":
            steps = [s.copy() for s in steps]
            for s, y in zip(steps, label, strict=True):
                s[:, 0] += np.float16(y - 1)
            vectors[m][:, 0] += (label - 1).astype(np.float16)
        sequences[m] = steps
    rows = np.arange(start, start + n)
    split = np.where(rows % 20 == 0, "test", np.where(rows % 20 == 1, "valid", "train"))
    return {"vectors": vectors, "sequences": sequences, "ids": [f"syn{r:07d}" for r in rows], "split": split,
            "label": label}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, type=Path, help="folder to write (not inside the repository)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rows-per-shard", type=int, default=8192)
    args = parser.parse_args()
    out = check_output_dir(args.output)
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    pool = rng.standard_normal(POOL, dtype=np.float32).astype(np.float16)
    writer = ShardWriter(out, MODALITIES, class_names=CLASSES)
    for start in range(0, args.rows, args.rows_per_shard):
        n = min(args.rows_per_shard, args.rows - start)
        writer.add(**shard(rng, pool, start, n))
    writer.close()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    info = {"rows": args.rows, "bytes": size, "seconds": time.perf_counter() - started,
            "modalities": {m: {"dim": d, "seq_dim": s, "steps_per_second": RATES.get(m)} for m, (d, s) in
                           MODALITIES.items()}}
    (out / "synthetic.json").write_text(json.dumps(info, indent=1))
    print(f"{args.rows} utterances, {size / 1e9:.2f} GB in {info['seconds']:.0f} s: {out}")


if __name__ == "__main__":
    main()
