"""The linear context floor on mosi-bclstm: what any context model must beat.

Ridge regression of the sentiment score on ``[utterance features, mean of the other utterances of the
same video]`` (text+audio by default), features z-scored on the training rows, the ridge penalty
chosen on validation MAE (test never seen before the end). Videos never straddle splits, so the
context mean only mixes rows of one split. Deterministic: no seeds involved.

``--text-encoder`` puts other text vectors in place of the bc-LSTM text CNN's (``minilm``: the frozen
packaged MiniLM; a ``text-finetune`` checkpoint trained on ``--dataset``; a path with ``{seed}``: one
floor per fine-tuned encoder of ``--seeds``, summarised as mean ± std), so every context model has
its floor on the vectors it reads.

    python benchmarks/context_floor.py [--modalities t,a] [--output benchmarks/results/context_floor.json]
    python benchmarks/context_floor.py --dataset sentiment2:mosi-bclstm --seeds 0 1 2 3 4 \
        --text-encoder 'runs/tft/seed{seed}' --output benchmarks/results/context_floor_finetuned.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.linear_model import Ridge

from mmaffect.data import load_dataset
from mmaffect.io import check_output_file, write_json
from mmaffect.metrics import sentiment_metrics

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0)


def others_mean(features: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per row, the mean of the other rows of its group (zeros for a group of one)."""
    _, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((inverse.max() + 1, features.shape[1]))
    np.add.at(sums, inverse, features)
    counts = np.bincount(inverse)[:, None]
    others = counts[inverse] - 1
    return np.where(others > 0, (sums[inverse] - features) / np.maximum(others, 1), 0.0)


def context_floor(modalities: list[str], dataset: str = "mosi-bclstm", text_encoder: str | None = None) -> dict:
    data = load_dataset(dataset, **({"text_encoder": text_encoder} if text_encoder else {}))
    splits = data.split_indices()
    x = np.concatenate([data.modalities[m].vector.numpy().astype(np.float64) for m in modalities], axis=1)
    mean, std = x[splits["train"]].mean(0), x[splits["train"]].std(0)
    x = (x - mean) / np.where(std < 1e-6, 1.0, std)
    features = {"utterance": x, "utterance+context": np.concatenate([x, others_mean(x, data.dialogue_id)], 1)}
    y = data.score.numpy().astype(np.float64)
    rows = {}
    for name, feats in features.items():
        started = time.perf_counter()
        fits = {a: Ridge(alpha=a).fit(feats[splits["train"]], y[splits["train"]]) for a in ALPHAS}
        valid_mae = {a: float(np.abs(m.predict(feats[splits["valid"]]) - y[splits["valid"]]).mean())
                     for a, m in fits.items()}
        alpha = min(valid_mae, key=valid_mae.get)
        pred = fits[alpha].predict(feats[splits["test"]])
        rows[name] = {"alpha": alpha, "valid_mae": valid_mae[alpha], "seconds": time.perf_counter() - started,
                      "test": sentiment_metrics(pred, y[splits["test"]])}
    return {"dataset": dataset, "modalities": modalities, "split": data.meta["split"],
            "text_vectors": data.meta.get("text_encoder_checkpoint") or data.meta.get("text_encoder")
            or data.meta["features"],
            "model": "ridge; alpha chosen on validation MAE from " + ", ".join(map(str, ALPHAS)),
            "context": "mean of the other utterances of the same video", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modalities", default="t,a")
    parser.add_argument("--dataset", default="mosi-bclstm", help="a dataset with a sentiment score")
    parser.add_argument("--text-encoder", help="minilm, a text-finetune checkpoint, or a path with {seed}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="the encoders' seeds when --text-encoder has {seed}")
    parser.add_argument("--output", default="benchmarks/results/context_floor.json")
    args = parser.parse_args()
    check_output_file(args.output)
    modalities = args.modalities.split(",")
    if args.text_encoder and "{seed}" in args.text_encoder:
        result = per_encoder_floor(modalities, args.dataset, args.text_encoder, args.seeds)
    else:
        result = context_floor(modalities, args.dataset, args.text_encoder)
    write_json(args.output, result)
    for name, row in result["rows"].items():
        test = row["test"]
        print(name, "  ".join(f"{m} {test[m] if isinstance(test[m], float) else test[m]['mean']:.3f}"
                              for m in ("acc2_has0", "acc2_non0", "mae")))
    print(json.dumps({"output": args.output}))


def per_encoder_floor(modalities: list[str], dataset: str, pattern: str, seeds: list[int]) -> dict:
    """One floor per fine-tuned encoder (seed k's vectors), and the mean ± sample std of each test metric."""
    floors = {seed: context_floor(modalities, dataset, pattern.format(seed=seed)) for seed in seeds}
    rows = {}
    for name in ("utterance", "utterance+context"):
        tests = [floors[seed]["rows"][name]["test"] for seed in seeds]
        rows[name] = {"alpha": [floors[seed]["rows"][name]["alpha"] for seed in seeds],
                      "seconds": float(np.mean([floors[seed]["rows"][name]["seconds"] for seed in seeds])),
                      "test": {m: {"mean": float(np.mean([t[m] for t in tests])),
                                   "std": float(np.std([t[m] for t in tests], ddof=1)) if len(tests) > 1 else 0.0,
                                   "per_seed": [t[m] for t in tests]} for m in tests[0]}}
    first = floors[seeds[0]]
    return {**{k: first[k] for k in ("dataset", "modalities", "split", "model", "context")},
            "text_vectors": f"{pattern} (seed k: encoder k)", "seeds": seeds, "rows": rows,
            "per_seed": {str(seed): floor for seed, floor in floors.items()}}


if __name__ == "__main__":
    main()
