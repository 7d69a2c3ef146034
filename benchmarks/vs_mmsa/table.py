"""Collect the per-seed JSON lines of both toolkits into ``benchmarks/results/vs_mmsa.json`` and print
the table: accuracy mean ± sample std over seeds, train wall time per run and MMSA/ours time ratio.

    python benchmarks/vs_mmsa/table.py --work DIR --models "tfn lmf" --seeds 1111,1112 --output vs_mmsa.json
    python benchmarks/vs_mmsa/table.py --table benchmarks/results/vs_mmsa.json   (print only)

A model's row is only written when both toolkits finished every seed; the targets (ours within one
MMSA standard deviation or better on acc2_has0; MMSA/ours train time >= 3) are stated per row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mmaffect.io import write_json

# MMSA metric name (a fraction) -> ours (percent for accuracies/F1, raw for MAE/Corr)
METRICS = {"Has0_acc_2": "acc2_has0", "Has0_F1_score": "f1_has0", "Non0_acc_2": "acc2_non0",
           "Non0_F1_score": "f1_non0", "Mult_acc_7": "acc7", "MAE": "mae", "Corr": "corr"}
PERCENT = {"acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7"}


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_run": values}


def _read(path: Path, seeds: list[int]) -> list[dict] | None:
    if not path.exists():
        return None
    records = {r["seed"]: r for r in map(json.loads, path.read_text().splitlines())}
    return [records[s] for s in seeds] if all(s in records for s in seeds) else None


def _side(records: list[dict], mmsa: bool) -> dict:
    out = {}
    for theirs, ours in METRICS.items():
        key = theirs if mmsa else ours
        scale = 100.0 if mmsa and ours in PERCENT else 1.0
        out[ours] = _stats([r["test"][key] * scale for r in records])
    out["train_seconds"] = _stats([r["train_seconds"] for r in records])
    if all("run_seconds" in r for r in records):  # ours: the whole run_experiment call (checkpoints, test, files)
        out["run_seconds"] = _stats([r["run_seconds"] for r in records])
    out["seconds_per_epoch"] = _stats([r["seconds_per_epoch"] for r in records])
    out["epochs_run"] = [r["epochs_run"] for r in records]
    out["loadavg_1min"] = [r["loadavg_1min"] for r in records]
    out["n_params"] = records[0]["n_params"]
    out["batch_size"] = records[0]["batch_size"]
    out["threads"] = records[0]["threads"]
    if "variant" in records[0]:
        out["variant"] = records[0]["variant"]
    return out


def collect(work: Path, models: list[str], seeds: list[int]) -> dict:
    rows, missing = [], []
    for model in models:
        theirs, ours = _read(work / f"mmsa_{model}.jsonl", seeds), _read(work / f"ours_{model}.jsonl", seeds)
        if theirs is None or ours is None:
            missing.append(model)
            continue
        mmsa_side, our_side = _side(theirs, True), _side(ours, False)
        ratio = mmsa_side["train_seconds"]["mean"] / our_side["train_seconds"]["mean"]
        epoch_ratio = mmsa_side["seconds_per_epoch"]["mean"] / our_side["seconds_per_epoch"]["mean"]
        within = our_side["acc2_has0"]["mean"] >= mmsa_side["acc2_has0"]["mean"] - mmsa_side["acc2_has0"]["std"]
        rows.append({"model": model, "mmsa": mmsa_side, "ours": our_side, "time_ratio_mmsa_over_ours": ratio,
                     "epoch_time_ratio_mmsa_over_ours": epoch_ratio,
                     "accuracy_target_met": within, "speed_target_met": ratio >= 3})
    return {"benchmark": "vs_mmsa", "data": "mosi-bclstm exported with `mmaffect export mmsa` (utterance "
            "vectors t100/a73/v100 as length-1 sequences)", "split": "bc-LSTM 62/31-video split; valid = our "
            "10 training videos: train 1209 / valid 238 / test 752", "seeds": seeds,
            "selection": "both: lowest validation loss, stop after 8 epochs without improvement, best "
                         "weights tested (MMSA's rule)", "rows": rows, "not_run": missing,
            "notes": ["Each toolkit's own default hyper-parameters for MOSI (MMSA: config_regression.json; "
                      "mmaffect: each model's registered training defaults; batch sizes are in each side's "
                      "batch_size); one thread, OMP_WAIT_POLICY=PASSIVE; the load average (1 min) before and "
                      "after each run is recorded beside its time.",
                      "MMSA's MISA and Self-MM hard-wire bert-base-uncased (not downloadable here): MMSA rows "
                      "are the BERT-free variant (text vector zero-padded to 768); ours take the same text "
                      "vector.",
                      "MMSA's LMF leaves its fusion weights out of its optimizer (they never train); ours "
                      "trains them.",
                      "MMSA's MulT runs with Conv1d kernel size 1 (length-1 sequences).",
                      "Train time: MMSA's do_train (its per-epoch validation and best-model saves included) "
                      "and our fit's epochs (training, per-epoch hooks, validation; the resumable checkpoint "
                      "write is outside). ours.run_seconds is our whole run (data loading, standardising, "
                      "epochs, checkpoint writes, test evaluation, result files)."],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _pm(stats: dict, digits: int = 1) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def table(result: dict) -> str:
    lines = [f"seeds {', '.join(map(str, result['seeds']))}; {result['split']}; {result['selection']}", "",
             "| model | MMSA acc2_has0 | ours acc2_has0 | MMSA acc2_non0 | ours acc2_non0 | MMSA MAE | ours MAE "
             "| MMSA train s/run | ours train s/run | ours whole run s | MMSA / ours time | MMSA / ours s/epoch "
             "| load avg (1 min) | targets |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        m, o = row["mmsa"], row["ours"]
        loads = [v for pair in m["loadavg_1min"] + o["loadavg_1min"] for v in pair]
        targets = ("accuracy met" if row["accuracy_target_met"] else "accuracy MISSED") + ", " + \
                  ("speed met" if row["speed_target_met"] else "speed MISSED")
        name = row["model"] + (" (MMSA BERT-free)" if m.get("variant", "").startswith("BERT-free") else "")
        lines.append(f"| {name} | {_pm(m['acc2_has0'])} | {_pm(o['acc2_has0'])} | {_pm(m['acc2_non0'])} | "
                     f"{_pm(o['acc2_non0'])} | {_pm(m['mae'], 3)} | {_pm(o['mae'], 3)} | "
                     f"{_pm(m['train_seconds'])} | {_pm(o['train_seconds'])} | "
                     f"{_pm(o['run_seconds']) if 'run_seconds' in o else '–'} | "
                     f"{row['time_ratio_mmsa_over_ours']:.1f}x | {row['epoch_time_ratio_mmsa_over_ours']:.1f}x | "
                     f"{min(loads):.1f}-{max(loads):.1f} | {targets} |")
    if result["not_run"]:
        lines.append(f"\nnot finished for every seed (no row): {', '.join(result['not_run'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--models", default="tfn lmf misa self_mm mult")
    parser.add_argument("--seeds", default="1111,1112,1113,1114,1115")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--table", type=Path, help="print the table of an existing results file and stop")
    options = parser.parse_args()
    if options.table:
        print(table(json.loads(options.table.read_text())))
        return
    if options.work is None or options.output is None:
        parser.error("--work and --output are needed (or --table FILE)")
    result = collect(options.work, options.models.split(), [int(s) for s in options.seeds.split(",")])
    write_json(options.output, result)
    print(table(result))
    print(f"results: {options.output}")


if __name__ == "__main__":
    main()
