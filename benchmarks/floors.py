"""Reference floors on the README's datasets: the majority class and a tuned logistic regression on
exactly the vectors the models get (same splits, standardised on the training rows).

    python benchmarks/floors.py [--threads 1]

* ``mosi-bclstm``: logistic regression on the sign of the score (``score >= 0``), on text alone and on
  text+audio+video; its decision value is scored with the same sentiment metrics as the models
  (``acc2_has0``: ``>= 0``; ``acc2_non0``: zeros removed, ``> 0``).
* ``iemocap6-text``, ``meld7-text``, ``meld3-text``, ``iemocap8-text``: multinomial logistic
  regression on the MiniLM sentence vectors.
* ``majority``: the test split's most frequent sign or class predicted for every test row, i.e. the
  majority rate, the best any constant prediction can do (on MOSI the training rows' majority sign is
  the other one: 54 % of training scores are negative, 62 % of test scores are not).

The inverse regularisation ``C`` is chosen on the validation split from a fixed grid: on MOSI by
validation log-loss (as the models are chosen on validation loss: validation accuracy is ~98 % for
every C, these features having been learnt on the training videos), on the emotion sets by
validation weighted F1; the test split is scored once.
Writes ``benchmarks/results/floors.json``; ``benchmarks/report.py`` prints the tables.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mmaffect.data import load_dataset
from mmaffect.io import check_output_file, write_json
from mmaffect.metrics import classification_metrics, sentiment_metrics

RESULTS = Path(__file__).resolve().parent / "results" / "floors.json"
GRID = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
SENTIMENT = ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0")
EMOTION = ("acc", "wacc", "f1_weighted", "f1_macro")


def features(data, modalities: list[str], rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenated utterance vectors per split, standardised with training-row statistics."""
    x = np.concatenate([data.modalities[m].vector.numpy() for m in modalities], axis=1).astype(np.float64)
    scaler = StandardScaler().fit(x[rows["train"]])
    return {split: scaler.transform(x[idx]) for split, idx in rows.items()}


def tuned(x: dict, y: dict, score) -> tuple[LogisticRegression, float, float]:
    """The model of the grid with the best validation score (ties: the smaller C), its C and score."""
    best = None
    for c in GRID:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"])
        value = score(model, x["valid"], y["valid"])
        if best is None or value > best[2]:
            best = (model, c, value)
    return best


def sentiment_floor(name: str) -> dict:
    data = load_dataset(name)
    rows = data.split_indices()
    score = data.score.numpy()
    y = {s: (score[r] >= 0).astype(int) for s, r in rows.items()}
    out = {"dataset": name, "split": data.meta.get("split", ""), "rows": {s: len(r) for s, r in rows.items()}}
    majority_sign = 1.0 if y["test"].mean() >= 0.5 else -1.0
    constant = sentiment_metrics(np.full(len(rows["test"]), majority_sign), score[rows["test"]])
    out["majority"] = {m: constant[m] for m in SENTIMENT}
    for modalities in (["t"], ["t", "a", "v"]):
        x = features(data, modalities, rows)

        def neg_log_loss(model, xv, yv):
            return -log_loss(yv, model.predict_proba(xv), labels=model.classes_)

        model, c, valid = tuned(x, y, neg_log_loss)
        test = sentiment_metrics(model.decision_function(x["test"]), score[rows["test"]])
        out["logreg_" + "".join(modalities)] = {"C": c, "valid_log_loss": -valid, **{m: test[m] for m in SENTIMENT}}
    return out


def emotion_floor(name: str) -> dict:
    data = load_dataset(name)
    rows = data.split_indices()
    label = data.label.numpy()
    y = {s: label[r] for s, r in rows.items()}
    out = {"dataset": name, "split": data.meta.get("split", ""), "rows": {s: len(r) for s, r in rows.items()},
           "classes": list(data.class_names)}
    majority = np.bincount(y["test"]).argmax()
    constant = classification_metrics(np.full(len(y["test"]), majority), y["test"])
    out["majority"] = {"class": data.class_names[majority], **{m: constant[m] for m in EMOTION}}
    x = features(data, ["t"], rows)

    def valid_f1w(model, xv, yv):
        return classification_metrics(model.predict(xv), yv)["f1_weighted"]

    model, c, valid = tuned(x, y, valid_f1w)
    test = classification_metrics(model.predict(x["test"]), y["test"])
    out["logreg_t"] = {"C": c, "valid_f1_weighted": valid, **{m: test[m] for m in EMOTION}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    check_output_file(args.results)
    torch.set_num_threads(args.threads)
    started, load = time.perf_counter(), os.getloadavg()
    with threadpool_limits(limits=args.threads):  # BLAS threads of the fits (a busy machine slows many badly)
        floors = {"mosi-bclstm": sentiment_floor("mosi-bclstm")}
        for name in ("iemocap6-text", "meld7-text", "meld3-text", "iemocap8-text"):
            floors[name] = emotion_floor(name)
    result = {"command": f"python benchmarks/floors.py --threads {args.threads}", "C_grid": GRID,
              "floors": floors, "wall_seconds": time.perf_counter() - started,
              "load_average_at_start": list(load), "load_average_at_end": list(os.getloadavg())}
    write_json(args.results, result)
    for name, f in floors.items():
        metric = "acc2_has0" if name == "mosi-bclstm" else "f1_weighted"
        parts = [f"{k} {v[metric]:.1f}" for k, v in f.items() if isinstance(v, dict) and metric in v]
        print(f"{name} ({metric}): " + ", ".join(parts))
    print(f"results: {args.results} ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
