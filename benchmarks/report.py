"""Print the README's results tables (markdown) from the JSON files in benchmarks/results/.

    python benchmarks/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SENTIMENT = ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "mae", "corr"]
EMOTION = ["acc", "wacc", "f1_weighted", "f1_macro"]


def cell(stats: dict, metric: str) -> str:
    digits = 3 if metric in ("mae", "corr") else 1
    return f"{stats[metric]['mean']:.{digits}f} ± {stats[metric]['std']:.{digits}f}"


def published(results: dict, metric: str) -> str:
    refs = [f"{r['value']:g} ({r['model']})" for r in results["published"] if r["comparable"] and r["metric"] == metric]
    return "; ".join(refs) or "–"


def table(pattern: str, metrics: list[str], ref_metric: str) -> None:
    print("| model | " + " | ".join(metrics) + f" | published {ref_metric} (same split) | s/epoch | s/run |")
    print("|---|" + "---|" * (len(metrics) + 3))
    for path in sorted(p for p in RESULTS.glob(pattern) if "ablation" not in p.name):
        r = json.loads(path.read_text())
        runs = len(next(iter(r["test"].values()))["per_run"])
        print(f"| {r['model']} ({r['dataset']}) | " + " | ".join(cell(r["test"], m) for m in metrics)
              + f" | {published(r, ref_metric)} | {r['seconds_per_epoch']:.3f} | {r['train_seconds'] / runs:.1f} |")
    print()


def ablation() -> None:
    for path in sorted(RESULTS.glob("*_ablation.json")):
        a = json.loads(path.read_text())
        metrics = ["acc2_has0", "acc2_non0", "f1_non0", "acc7", "mae", "corr"]
        print(f"{a['model']} on {a['dataset']}, seeds {a['seeds']}, test split")
        print("| modalities | " + " | ".join(metrics) + " |")
        print("|---|" + "---|" * len(metrics))
        for row in a["rows"]:
            print(f"| {row['modalities']} | " + " | ".join(cell(row["test"], m) for m in metrics) + " |")
        print()


def speed() -> None:
    print("| model | params | threads | batch | s/epoch (median of epochs 2-5) | first epoch |")
    print("|---|---|---|---|---|---|")
    for path in sorted(RESULTS.glob("train-speed_*.json")):
        s = json.loads(path.read_text())
        for row in s["rows"]:
            print(f"| {s['model']} | {s['n_params']:,} | {row['threads']} | {row['batch_size']} | "
                  f"{row['median_epoch_s']:.3f} | {row['first_epoch_s']:.3f} |")
    print()


if __name__ == "__main__":
    table("mosi-bclstm_*.json", SENTIMENT, "acc2_has0")
    table("*-text_*.json", EMOTION, "f1_weighted")
    ablation()
    speed()
