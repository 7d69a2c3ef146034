"""Seed methods INT2-M3AP (000), ST-3DH (001) and DeepMSI-MER (002) beside the foundation baselines (issue 19).

Every row is :func:`mmaffect.training.runs.run_experiment` (the ``mmaffect train`` machinery: features
standardised on the training rows, epoch chosen on the validation rows only, test evaluated once), so a
killed job resumes where it stopped and finished runs are read back. Data:

* ``clips``: the 40 IEMOCAP Session-1 clips of ``mmaffect extract`` (``cache:DIR``; 8 classes x 5),
  5-fold CV grouped by dialogue (valid = the next fold), seeds 0-2: the seed methods end to end from
  the cache (ST-3DH reads the 48x48 face crops through its 3-D Harris CNN, INT2-M3AP's image net is a
  CNN over the crops, DeepMSI-MER compresses the per-frame visual tokens), TFN, LMF and late-fusion.
* ``clips4``: INT2-M3AP's 4-class emotion setup on the same cache: the 25 clips with a ``superb4_label``
  in the clips' manifest (neu, hap = happy + excited, ang, sad; 5/10/5/5) relabelled through the reader's
  ``label_file`` option (the other 15 are left out), the same CV and seeds, beside the linear floor and
  late-fusion.
* ``mosi``: CMU-MOSI bc-LSTM utterance vectors, the bc-LSTM video split, seeds 0-2: INT2-M3AP and ST-3DH
  as L1 regressors (``sentiment`` task); TFN/LMF/LF-DNN rows come from ``mosi-bclstm_*.json`` (same
  split and seeds, ``benchmarks/baselines.sh``).
* ``mosi3``: the same rows as 3-class sentiment (negative / neutral / positive = ``round(clip(score,
  -1, 1))``, the bins of MOSI's acc3), INT2-M3AP with CE on every head.
* ``iemocap6-text``, ``meld7-text``: DeepMSI-MER's text variant (frozen MiniLM vectors; no audio or video
  in these datasets, so no compression and no contrastive term), beside ``text-mlp`` from
  ``*-text_text-mlp.json``.

For INT2-M3AP every saved run is re-read and each of its heads scored alone (test and valid), with the
mean-probability fusion and every tie-break of the vote, so the vote's gain or loss against its best
single member (chosen on validation, and the test oracle) comes from the same weights. Writes
``benchmarks/results/seeds_000_002.json`` after every experiment:

    OMP_WAIT_POLICY=PASSIVE python benchmarks/seeds_000_002.py --work DIR \
        [--only clips_st3dh,mosi_int2-m3ap] [--clips /work/cache/clips] [--manifest CLIPS_MANIFEST]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmaffect.inference import load_model
from mmaffect.io import check_output_dir, check_output_file, write_json
from mmaffect.models.blocks.voting import TIE_BREAKS, majority_vote, vote_counts
from mmaffect.settings import data_root
from mmaffect.training.config import load_config
from mmaffect.training.runs import load_experiment_data, run_experiment
from mmaffect.training.trainer import predict_outputs, target_rows

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = RESULTS / "seeds_000_002.json"
SEEDS = [0, 1, 2]
CLIPS_CV = {"folds": 5, "group_by": "dialogue_id"}
# floors of the training-majority class are measured for the classification groups
FLOOR_GROUPS = ("clips", "clips4", "mosi3")
# The seed papers' own numbers (SEEDS_SPEC §1.6, §2.5, §3.6-3.7) and how their data differ from ours
PUBLISHED = {
    "clips_int2-m3ap": "INT2-M3AP acc 93.0 (vote), image alone 96.04: IEMOCAP 4 classes, random 8:1:1 utterance "
                       "split of 5,531 utterances (speakers and dialogues in train and test), VGG features",
    "clips4_int2-m3ap": "INT2-M3AP acc 93.0 (vote), image alone 96.04: the same 4 classes (happy + excited) "
                        "of 5,531 IEMOCAP utterances, random 8:1:1 utterance split (speakers and dialogues in "
                        "train and test), VGG features",
    "clips_deepmsi-mer": "DeepMSI-MER acc 84.7, F1w 84.7: IEMOCAP 6 classes, 10-fold CV with the epoch chosen on "
                         "the test fold, fine-tuned BERT-large / wav2vec 2.0 / Swin",
    "clips_st3dh": "none on IEMOCAP (the paper reports MOSI only)",
    "clips_st3dh-noharris": "none (the paper has no ablation of the Harris map)",
    "mosi_st3dh": "ST-3DH acc2 82.64, F1 82.55, acc7 37.76: MOSI with BERT and word-aligned sequences, split "
                  "not named",
    "mosi_int2-m3ap": "none on MOSI (the paper reports IEMOCAP only)",
    "mosi3_int2-m3ap": "INT2-M3AP acc 85.0 (vote), hierarchical head 83.59: 3-class sentiment of IEMOCAP "
                       "utterances, random 8:1:1 split (a different corpus)",
    "iemocap6-text_deepmsi-mer": "DeepMSI-MER text only acc 59.83, F1w 59.65: 10-fold CV with test-fold "
                                 "selection, fine-tuned BERT-large (ours: COSMIC split, frozen MiniLM)",
    "meld7-text_deepmsi-mer": "DeepMSI-MER text only acc 65.25, F1w 64.08: 10-fold CV with test-fold "
                              "selection, fine-tuned BERT-large (ours: official split, frozen MiniLM)",
}


def experiments(clips: str, manifest: str) -> dict[str, dict]:
    """Name -> ``load_config`` overrides. Shorter schedules than the papers' (patience 10) to fit the
    compute budget; each model's own recipe otherwise (``train_defaults``)."""
    cache = f"cache:{clips}"
    short = {"train.patience": 10, "train.epochs": 60}
    four = {"dataset": cache, "cv": CLIPS_CV,
            "dataset_args": {"label_file": manifest, "label": "superb4_label", "label_id": "utterance_id"}}
    return {
        "clips_int2-m3ap": {"dataset": cache, "model": "int2-m3ap", "cv": CLIPS_CV, **short,
                            "model_args": {"image": "crops"}},
        "clips_st3dh": {"dataset": cache, "model": "st3dh", "cv": CLIPS_CV, **short,
                        "model_args": {"video_frames": True, "video_channels": [8, 16, 32]}},
        "clips_st3dh-noharris": {"dataset": cache, "model": "st3dh", "cv": CLIPS_CV, **short,
                                 "model_args": {"video_frames": True, "video_channels": [8, 16, 32], "harris": False}},
        "clips_deepmsi-mer": {"dataset": cache, "model": "deepmsi-mer", "cv": CLIPS_CV},
        "clips_tfn": {"dataset": cache, "model": "tfn", "cv": CLIPS_CV},
        "clips_lmf": {"dataset": cache, "model": "lmf", "cv": CLIPS_CV},
        "clips_late-fusion": {"dataset": cache, "model": "late-fusion", "cv": CLIPS_CV},
        "clips_linear": {"dataset": cache, "model": "linear", "cv": CLIPS_CV},
        "clips4_int2-m3ap": {**four, "model": "int2-m3ap", **short, "model_args": {"image": "crops"}},
        "clips4_late-fusion": {**four, "model": "late-fusion"},
        "clips4_linear": {**four, "model": "linear"},
        "mosi_st3dh": {"dataset": "mosi-bclstm", "model": "st3dh", "model_args": {"max_len": 1}},
        "mosi_int2-m3ap": {"dataset": "mosi-bclstm", "model": "int2-m3ap", **short},
        "mosi3_int2-m3ap": {"dataset": "sentiment3:mosi-bclstm", "model": "int2-m3ap", **short},
        "mosi3_tfn": {"dataset": "sentiment3:mosi-bclstm", "model": "tfn"},
        "mosi3_linear": {"dataset": "sentiment3:mosi-bclstm", "model": "linear"},
        "iemocap6-text_deepmsi-mer": {"dataset": "iemocap6-text", "model": "deepmsi-mer"},
        "meld7-text_deepmsi-mer": {"dataset": "meld7-text", "model": "deepmsi-mer"},
    }


def config_of(overrides: dict, seeds: list[int], epochs: int | None = None):
    """The experiment: the model's recipe under ``overrides`` (``epochs``: a quick-check cap)."""
    extra = {"train.epochs": epochs} if epochs else {}
    return load_config(None, {**overrides, **extra, "seeds": seeds})


def run_rows(output: Path, split: str) -> dict[str, np.ndarray]:
    """Row ids of ``split`` per run folder, read from the run's predictions.csv."""
    table = pd.read_csv(output / "predictions.csv", usecols=["id", "split"], dtype=str)
    return table.loc[table["split"] == split, "id"].to_numpy()


def int2_heads(output: Path, data) -> dict:
    """Every INT2-M3AP head, the mean-probability fusion and the vote under each tie-break, scored on
    each run's valid and test rows from its saved weights; the vote's gain against its best member."""
    position = {str(i): k for k, i in enumerate(data.ids)}
    per_run = []
    for run in sorted(p for p in output.iterdir() if (p / "result.json").is_file()):
        loaded = load_model(run / "model.safetensors")
        model, task = loaded.model, loaded.task
        prepared = loaded.prepare(data, str(run))
        scored = {}
        for split in ("valid", "test"):
            rows = np.asarray([position[i] for i in run_rows(run, split)])
            outs = predict_outputs(model, prepared, rows, keys=None)
            targets = {k: v.numpy() for k, v in target_rows(prepared, rows).items()}
            head = "logits" if "logits" in task.heads else "score"
            variants = {h: {head: outs[f"{head}_{h}"]} for h in model.head_names}
            if head == "logits":
                probs = torch.stack([outs[f"logits_{h}"].softmax(-1) for h in model.voters])
                variants["mean"] = {"logits": probs.mean(0).log()}
                for tie in TIE_BREAKS:
                    won = majority_vote(probs, tie, model.priority)
                    variants[f"vote_{tie}"] = {"logits": torch.nn.functional.one_hot(won, probs.shape[-1]).float()
                                               .clamp(min=1e-6).log()}
                counts = vote_counts(probs)
                top = counts.max(-1).values
                scored[f"{split}_tied_share"] = float(((counts == top[:, None]).sum(-1) > 1).float().mean())
            else:
                variants["vote"] = {"score": outs["score"]}
            scored[split] = {name: task.metrics(task.predictions(v), targets) for name, v in variants.items()}
        per_run.append({"run": run.name, "voters": list(model.voters), **scored})
    return summarise_heads(per_run)


def summarise_heads(per_run: list[dict]) -> dict:
    metric = "acc" if "vote_prob" in per_run[0]["test"] else "mae"
    better = max if metric == "acc" else min
    vote = "vote_prob" if metric == "acc" else "vote"
    names = list(per_run[0]["test"])
    out = {"metric": metric, "runs": len(per_run), "test": {}, "per_run": per_run}
    for name in names:
        values = {m: [r["test"][name][m] for r in per_run] for m in per_run[0]["test"][name]}
        out["test"][name] = {m: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v, ddof=1))}
                             for m, v in values.items()}
    gains_valid, gains_oracle, chosen = [], [], []
    for r in per_run:
        members = r["voters"]
        pick = better(members, key=lambda h: r["valid"][h][metric])
        oracle = better(members, key=lambda h: r["test"][h][metric])
        sign = 1.0 if metric == "acc" else -1.0  # positive = the vote is better
        gains_valid.append(sign * (r["test"][vote][metric] - r["test"][pick][metric]))
        gains_oracle.append(sign * (r["test"][vote][metric] - r["test"][oracle][metric]))
        chosen.append(pick)
    out["vote_gain_vs_valid_best_member"] = {"mean": float(np.mean(gains_valid)),
                                             "std": float(np.std(gains_valid, ddof=1)), "chosen": chosen}
    out["vote_gain_vs_test_best_member"] = {"mean": float(np.mean(gains_oracle)),
                                            "std": float(np.std(gains_oracle, ddof=1))}
    if "test_tied_share" in per_run[0]:
        out["test_tied_share"] = float(np.mean([r["test_tied_share"] for r in per_run]))
    return out


def majority_floor(data, config) -> dict:
    """Accuracy, UA and weighted F1 of predicting each run's training-majority class on its test rows."""
    from mmaffect.metrics.classification import classification_metrics
    from mmaffect.training.runs import plan_runs

    labels = data.label.numpy()
    runs = []
    for plan in plan_runs(data, replace(config, seeds=[0])):
        majority = np.bincount(labels[plan.train], minlength=len(data.class_names)).argmax()
        runs.append(classification_metrics(np.full(len(plan.test), majority), labels[plan.test],
                                           num_classes=len(data.class_names)))
    return {m: {"mean": float(np.mean([r[m] for r in runs])), "std": float(np.std([r[m] for r in runs], ddof=1))
                if len(runs) > 1 else 0.0} for m in ("acc", "wacc", "f1_weighted")}


def row_of(results: dict) -> dict:
    return {"dataset": results["dataset"], "model": results["model"], "split": results["split"],
            "task": results["task"], "seeds": results["seeds"], "folds": results["folds"],
            "runs": len(results["test"][next(iter(results["test"]))]["per_run"]),
            "test": {m: {"mean": s["mean"], "std": s["std"]} for m, s in results["test"].items()},
            "n_params": results["n_params"], "seconds_per_epoch": results["seconds_per_epoch"],
            "train_seconds": results["train_seconds"], "epochs_run": results["epochs_run"],
            "best_epochs": results["best_epochs"], "model_args": results["config"]["model_args"],
            "train": results["config"]["train"], "threads": results["environment"]["threads"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="folder for the run folders (outside the repository)")
    parser.add_argument("--clips", default="/work/cache/clips", help="the IEMOCAP clip cache of `mmaffect extract`")
    parser.add_argument("--manifest", default=str(data_root() / "iemocap_clips" / "manifest.csv"),
                        help="the clips' manifest, whose superb4_label column gives the 4-class labels")
    parser.add_argument("--only", default=None, help="comma-separated experiment names (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--epochs", type=int, default=None, help="cap every schedule (quick checks only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    work = Path(args.work)
    check_output_dir(work)
    check_output_file(args.output)
    table = experiments(args.clips, args.manifest)
    names = list(table) if args.only is None else args.only.split(",")
    unknown = sorted(set(names) - set(table))
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(table)}")
    for name in names:
        config = config_of(table[name], args.seeds, args.epochs)
        results = run_experiment(config, work / name, progress=False)
        row = row_of(results)
        if config.model == "int2-m3ap":
            row["heads"] = int2_heads(work / name, load_experiment_data(config))
        group = name.split("_")[0]
        have = json.loads(Path(args.output).read_text()).get("floors", {}) if Path(args.output).exists() else {}
        floor = majority_floor(load_experiment_data(config), config) \
            if group in FLOOR_GROUPS and group not in have else None
        # re-read just before writing: two jobs (one per queue slot) may fill the same file
        previous = json.loads(Path(args.output).read_text()) if Path(args.output).exists() else {}
        rows, floors = previous.get("rows", {}), previous.get("floors", {})
        rows[name] = row | ({"published": PUBLISHED[name]} if name in PUBLISHED else {})
        if floor is not None:
            floors[group] = floor
        write_json(args.output, {"note": "mean ± sample std over seeds (x folds); test split or test folds; "
                                         "epoch chosen on validation only; timings: 1 thread inside the "
                                         "2-slot queue of a shared 2-core machine",
                                 "rows": dict(sorted(rows.items())), "floors": floors})
        print(f"{name}: done", flush=True)


if __name__ == "__main__":
    main()
