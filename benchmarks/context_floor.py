"""The linear context floor on mosi-bclstm: what any context model must beat.

Ridge regression of the sentiment score on ``[utterance features, mean of the other utterances of the
same video]`` (text+audio by default), features z-scored on the training rows, the ridge penalty
chosen on validation MAE (test never seen before the end). Videos never straddle splits, so the
context mean only mixes rows of one split. Deterministic: no seeds involved.

    python benchmarks/context_floor.py [--modalities t,a] [--output benchmarks/results/context_floor.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.linear_model import Ridge

from mmaffect.data import load_dataset
from mmaffect.io import check_output_file, write_json
from mmaffect.metrics import sentiment_metrics

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def others_mean(features: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per row, the mean of the other rows of its group (zeros for a group of one)."""
    _, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((inverse.max() + 1, features.shape[1]))
    np.add.at(sums, inverse, features)
    counts = np.bincount(inverse)[:, None]
    others = counts[inverse] - 1
    return np.where(others > 0, (sums[inverse] - features) / np.maximum(others, 1), 0.0)


def context_floor(modalities: list[str]) -> dict:
    data = load_dataset("mosi-bclstm")
    splits = data.split_indices()
    x = np.concatenate([data.modalities[m].vector.numpy().astype(np.float64) for m in modalities], axis=1)
    mean, std = x[splits["train"]].mean(0), x[splits["train"]].std(0)
    x = (x - mean) / np.where(std < 1e-6, 1.0, std)
    features = {"utterance": x, "utterance+context": np.concatenate([x, others_mean(x, data.dialogue_id)], 1)}
    y = data.score.numpy().astype(np.float64)
    rows = {}
    for name, feats in features.items():
        fits = {a: Ridge(alpha=a).fit(feats[splits["train"]], y[splits["train"]]) for a in ALPHAS}
        valid_mae = {a: float(np.abs(m.predict(feats[splits["valid"]]) - y[splits["valid"]]).mean())
                     for a, m in fits.items()}
        alpha = min(valid_mae, key=valid_mae.get)
        pred = fits[alpha].predict(feats[splits["test"]])
        rows[name] = {"alpha": alpha, "valid_mae": valid_mae[alpha],
                      "test": sentiment_metrics(pred, y[splits["test"]])}
    return {"dataset": "mosi-bclstm", "modalities": modalities, "split": data.meta["split"],
            "model": "ridge; alpha chosen on validation MAE from " + ", ".join(map(str, ALPHAS)),
            "context": "mean of the other utterances of the same video", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modalities", default="t,a")
    parser.add_argument("--output", default="benchmarks/results/context_floor.json")
    args = parser.parse_args()
    check_output_file(args.output)
    result = context_floor(args.modalities.split(","))
    write_json(args.output, result)
    for name, row in result["rows"].items():
        test = row["test"]
        print(f"{name:<18} alpha {row['alpha']:<8g} acc2_has0 {test['acc2_has0']:.1f}  "
              f"acc2_non0 {test['acc2_non0']:.1f}  mae {test['mae']:.3f}")
    print(json.dumps({"output": args.output}))


if __name__ == "__main__":
    main()
