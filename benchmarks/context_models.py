"""Context models vs their own no-context variants and a TF-IDF floor (issue 20).

For each dataset, every variant below is trained with :func:`mmaffect.training.runs.run_experiment`
(the ``mmaffect train`` machinery: standardisation and early stopping/selection on the validation
split, test evaluated once at the end) on the same utterance vectors and seeds; the ``*-nocontext``
rows are the same model with ``context=false`` (each turn run alone). Text datasets also get a
TF-IDF + logistic regression floor on the raw transcripts (C chosen on validation f1_weighted;
deterministic, so no seeds). One JSON per dataset, rewritten after every variant so a partial
session keeps what finished:

    OMP_WAIT_POLICY=PASSIVE nice -n 5 python benchmarks/context_models.py --dataset meld7-text \
        --seeds 0 1 2 --threads 1 [--variants dialogue-rnn-bi,turn-transformer-causal] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from mmaffect.data import load_dataset
from mmaffect.data.encoded import encoder_checkpoint
from mmaffect.io import check_output_dir, check_output_file, write_json
from mmaffect.metrics.classification import classification_metrics, classification_report
from mmaffect.published import references
from mmaffect.training.config import ExperimentConfig, TrainConfig
from mmaffect.training.runs import run_experiment

VARIANTS = {
    "dialogue-rnn-bi": ("dialogue-rnn", {"bidirectional": True}),
    "dialogue-rnn-causal": ("dialogue-rnn", {"bidirectional": False}),
    "dialogue-rnn-nocontext": ("dialogue-rnn", {"bidirectional": False, "context": False}),
    "turn-transformer-bi": ("turn-transformer", {"causal": False}),
    "turn-transformer-causal": ("turn-transformer", {"causal": True}),
    "turn-transformer-nocontext": ("turn-transformer", {"context": False}),
    "bc-lstm": ("bc-lstm", {}),
    "bc-lstm-nocontext": ("bc-lstm", {"context": False}),
    # CoMPM-style (models/compm.py): causal dialogue-rnn context + the speaker's frozen-MiniLM memory
    "compm": ("compm", {}),
    "compm-nomemory": ("compm", {"memory": False}),
    "compm-pmonly": ("compm", {"com": "none"}),
    # SPCL's prototype contrastive term beside the cross-entropy (weight 0.1, temperature 0.1, 64 per class)
    "dialogue-rnn-causal+spcl": ("dialogue-rnn", {"bidirectional": False, "spcl": 0.1}),
    "compm+spcl": ("compm", {"spcl": 0.1}),
}
# Variants whose capacity and regularisation are chosen per seed on the validation rows
# (training/selection.py: every candidate fitted on train, early-stopped on valid, best valid value wins),
# trained with bc-lstm's own recipe (batches of 4 videos, patience 20). mosi-bclstm has 10 validation videos.
SEARCHED = {"bc-lstm-searched": "bc-lstm", "bc-lstm-nocontext-searched": "bc-lstm-nocontext"}
SEARCH_GRID = {"model_args.hidden": [32, 64, 128], "model_args.dropout": [0.3, 0.5]}
# Validation metric that picks the epoch; regression (mosi-bclstm) selects on the L1 loss.
# sentiment2:mosi-bclstm is MOSI as bc-LSTM's paper trains it: two classes (negative / non-negative), so
# test acc is acc2_has0; it selects on the validation cross-entropy.
SELECT = {"iemocap6-text": "f1_weighted", "meld7-text": "f1_weighted", "mosi-bclstm": "loss",
          "sentiment2:mosi-bclstm": "loss"}
HEADLINE = {"iemocap6-text": ("f1_weighted", "acc", "wacc", "f1_macro"),
            "meld7-text": ("f1_weighted", "acc", "wacc", "f1_macro"),
            "mosi-bclstm": ("acc2_has0", "acc2_non0", "f1_has0", "acc7", "mae", "corr"),
            "sentiment2:mosi-bclstm": ("acc", "wacc", "f1_weighted", "f1_macro", "auc")}
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
# datasets with transcripts get the TF-IDF floor (MOSI as two classes: its transcripts are in the release)
TEXT_FLOOR = {"iemocap6-text", "meld7-text", "sentiment2:mosi-bclstm"}


def tfidf_floor(dataset: str) -> dict:
    """TF-IDF (word 1-2 grams) + multinomial logistic regression, C chosen on validation f1_weighted."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = load_dataset(dataset)
    splits = data.split_indices()
    text = np.asarray([str(t) for t in data.text])
    y = data.label.numpy()
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(text[splits["train"]])
    x = {name: vectorizer.transform(text[rows]) for name, rows in splits.items()}
    fits = {c: LogisticRegression(C=c, max_iter=3000).fit(x["train"], y[splits["train"]]) for c in C_GRID}
    valid = {c: classification_metrics(m.predict(x["valid"]), y[splits["valid"]])["f1_weighted"]
             for c, m in fits.items()}
    best = max(valid, key=valid.get)
    pred = fits[best].predict(x["test"])
    report = classification_report(pred, y[splits["test"]], data.class_names)
    return {"C": best, "valid_f1_weighted": valid[best], "seconds": time.perf_counter() - started,
            "test": classification_metrics(pred, y[splits["test"]]),
            "test_per_class_f1": {k: v["f1"] for k, v in report["per_class"].items()}}


def summarise_runs(rundir: Path, metrics: tuple[str, ...], expected: int | None = None) -> dict | None:
    """Mean ± sample std per headline metric over the finished seeds of one variant (from each seed's
    ``result.json``; with a fine-tuned encoder one experiment folder per seed), per-class test F1 (mean
    over seeds) and timings; None if no seed finished. ``expected``: seeds a complete row has (default:
    the experiment config's)."""
    records = sorted((json.loads(p.read_text()) for p in rundir.rglob("seed*/result.json")),
                     key=lambda r: r["seed"])
    if not records:
        return None
    config = json.loads(next(rundir.rglob("config.json")).read_text())
    return summarise_records(records, config, metrics, expected)


def summarise_records(records: list[dict], config: dict, metrics: tuple[str, ...], expected: int | None = None
                      ) -> dict:
    """The row of :func:`summarise_runs` from run records (``result.json``) and their experiment config."""

    def stats(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "per_seed": values}

    row = {"test": {m: stats([r["test"][m] for r in records]) for m in metrics},
           "valid": {m: float(np.mean([r["valid"][m] for r in records])) for m in metrics},
           "seeds": [r["seed"] for r in records],
           "complete": len(records) == (expected if expected is not None else len(config["seeds"])),
           "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in records])),
           "seconds_per_run": float(np.mean([r["seconds"] for r in records])),
           "epochs_run": [r["epochs_run"] for r in records], "best_epochs": [r["best_epoch"] for r in records],
           "n_params": records[0]["n_params"], "model": config["model"], "model_args": config["model_args"],
           "train": config["train"]}
    if any("search" in r for r in records):  # validation-selected variants: what each seed chose, and why
        row["search"] = [{"seed": r["seed"], "chosen": r["search"]["chosen"], "criterion": r["search"]["criterion"],
                          "candidates": r["search"]["candidates"]} for r in records if "search" in r]
    if records[0]["test_report"]:
        names = list(records[0]["test_report"]["per_class"])
        row["test_per_class_f1"] = {n: float(np.mean([r["test_report"]["per_class"][n]["f1"] for r in records]))
                                    for n in names}
    return row


def validation_noise(rundir: Path, dataset: str, draws: int = 500) -> dict:
    """How noisy validation values are: the bootstrap std over validation *videos* (resampled with
    replacement, the unit the split is made of) of each seed's validation acc2_has0 and MAE (the
    selection criterion), averaged over seeds."""
    import pandas as pd

    from mmaffect.metrics.regression import sentiment_metrics

    data = load_dataset(dataset)
    group = dict(zip(data.ids.tolist(), data.group.tolist(), strict=True))
    rng = np.random.default_rng(0)
    stds, videos = {"acc2_has0": [], "mae": []}, 0
    for path in sorted(rundir.rglob("seed*/predictions.csv")):
        table = pd.read_csv(path)
        valid = table[table["split"] == "valid"]
        parts = [part for _, part in valid.groupby(valid["id"].map(group))]
        videos = len(parts)
        values = {metric: [] for metric in stds}
        for _ in range(draws):
            sample = pd.concat([parts[i] for i in rng.integers(len(parts), size=len(parts))])
            metrics = sentiment_metrics(sample["pred_score"], sample["score"])
            for metric in stds:
                values[metric].append(metrics[metric])
        for metric in stds:
            stds[metric].append(float(np.std(values[metric], ddof=1)))
    return {"valid_videos": videos, "draws": draws,
            **{f"valid_{metric}_bootstrap_std": float(np.mean(v)) for metric, v in stds.items()}}


def file_stem(dataset: str) -> str:
    """The dataset's name in result files and run folders (``sentiment2:mosi-bclstm`` -> no colon)."""
    return dataset.replace(":", "_")


def train_config(dataset: str) -> TrainConfig:
    """Same schedule for every variant; dialogue batches of 8 (whole dialogues)."""
    return TrainConfig(epochs=60, batch_size=8, lr=1e-3, patience=10, select=SELECT[dataset])


def experiment(dataset: str, variant: str, seeds: list[int], dataset_args: dict | None = None,
               modalities: list[str] | None = None) -> ExperimentConfig:
    """The experiment of one variant (a searched variant: its base model, the grid, bc-lstm's recipe)."""
    if variant in SEARCHED:
        model, model_args = VARIANTS[SEARCHED[variant]]
        train = TrainConfig(epochs=60, batch_size=4, lr=1e-3, patience=20, select=SELECT[dataset])
        return ExperimentConfig(dataset=dataset, model=model, model_args=model_args, seeds=seeds, train=train,
                                search=SEARCH_GRID, dataset_args=dataset_args or {}, modalities=modalities)
    model, model_args = VARIANTS[variant]
    return ExperimentConfig(dataset=dataset, model=model, model_args=model_args, seeds=seeds,
                            train=train_config(dataset), dataset_args=dataset_args or {}, modalities=modalities)


def markdown_table(paths: list[str]) -> str:
    """One markdown row per (dataset, variant) of the given result files: headline metrics as
    mean ± std, seeds, seconds per epoch and per run."""
    lines = ["| dataset | variant | metrics (test, mean ± std) | seeds | s/epoch | s/run |",
             "|---|---|---|---|---|---|"]
    for path in paths:
        result = json.loads(Path(path).read_text())
        for variant, row in result["rows"].items():
            if variant == "tfidf-logreg":
                # a hard-label floor has no auc (sentiment2's headline metric)
                metrics = ", ".join(f"{m} {row['test'][m]:.1f}" for m in HEADLINE[result["dataset"]]
                                    if m in row["test"])
                lines.append(f"| {result['dataset']} | {variant} (C={row['C']:g}) | {metrics} | - | - | "
                             f"{row['seconds']:.0f} |")
                continue
            digits = {"mae": 3, "corr": 3}
            metrics = ", ".join(f"{m} {v['mean']:.{digits.get(m, 1)}f}" + (
                f" ± {v['std']:.{digits.get(m, 1)}f}" if len(row["seeds"]) > 1 else "")
                for m, v in row["test"].items())
            seeds = ",".join(map(str, row["seeds"])) + ("" if row.get("complete", True) else " (unfinished)")
            lines.append(f"| {result['dataset']} | {variant} | {metrics} | {seeds} | "
                         f"{row['seconds_per_epoch']:.1f} | {row['seconds_per_run']:.0f} |")
    return "\n".join(lines)


def collect(dataset: str, workdir: Path, output: str) -> None:
    """Rewrite ``output`` from every variant's finished seeds in ``workdir`` (rows of a variant whose
    seeds did not all finish say ``"complete": false``), keeping its TF-IDF row."""
    check_output_file(output)
    previous = json.loads(Path(output).read_text()) if Path(output).exists() else {}
    rows = {k: v for k, v in previous.get("rows", {}).items() if k == "tfidf-logreg"}
    for variant in [*VARIANTS, *SEARCHED]:
        rundir = workdir / f"{file_stem(dataset)}_{variant}"
        row = summarise_runs(rundir, HEADLINE[dataset]) if rundir.is_dir() else None
        if row is not None:
            rows[variant] = row
    write_json(output, {**previous, "dataset": dataset, "rows": rows})


def encoder_record(dataset: str, checkpoint: str) -> dict:
    """Encode ``dataset``'s texts with one fine-tuned encoder (cached: a second call reads the vectors
    back) and describe it: path, SHA-256, what it was trained on, its own training time, and the
    seconds this process spent encoding (only when it did encode)."""
    from mmaffect.data.encoded import file_sha256, store_path, with_encoded_text

    data = load_dataset(dataset)
    path = encoder_checkpoint(checkpoint)
    cached = store_path(file_sha256(path), data).is_file()
    started, cpu = time.perf_counter(), time.process_time()
    meta = with_encoded_text(data, dataset, path).meta["text_encoder_checkpoint"]
    record = {**meta, "encode_rows": len(data)}
    if not cached:
        record |= {"encode_seconds": time.perf_counter() - started, "encode_cpu_seconds": time.process_time() - cpu}
    trained = path.parent / "result.json"
    if trained.is_file():
        run = json.loads(trained.read_text())
        record |= {"finetune_seconds": run["seconds"], "finetune_seconds_per_epoch": run["seconds_per_epoch"],
                   "finetune_epochs": run["epochs_run"],
                   # the dataset's first headline metric (f1_weighted for emotion, acc2_has0 for the MOSI score)
                   f"finetune_test_{HEADLINE[dataset][0]}": run["test"][HEADLINE[dataset][0]]}
    return record


def window_cost(dataset: str, train_dialogues: int, turns: int, seed: int = 0) -> dict:
    """Measured cost of ``text-finetune`` with ``context_turns=turns`` against the same model without,
    on the first ``train_dialogues`` training dialogues (one epoch each, the same rows, validation on
    the first 5 validation dialogues), extrapolated per training row to the whole training split.
    Measured before any long run: the window multiplies the tokens each turn costs."""
    from mmaffect.models.registry import create_model
    from mmaffect.tasks import make_task
    from mmaffect.training.runs import model_spec
    from mmaffect.training.trainer import fit

    data = load_dataset(dataset)
    splits = data.split_indices()

    def first(rows: np.ndarray, count: int) -> np.ndarray:
        names = list(dict.fromkeys(data.dialogue_id[rows].tolist()))[:count]
        return rows[np.isin(data.dialogue_id[rows], names)]

    train, valid = first(splits["train"], train_dialogues), first(splits["valid"], 5)
    task = make_task(data, train_index=train)
    out = {"dataset": dataset, "train_rows": len(train), "valid_rows": len(valid),
           "train_rows_total": len(splits["train"]), "rows": {}}
    per_dialogue = len(train) / train_dialogues
    # dialogue batches of about as many turns per step as 16 single utterances
    for name, model_args, batch in (("utterance alone", {}, 16),
                                    ("utterance alone, encoder frozen (freeze_epochs)", {"freeze_epochs": 1}, 16),
                                    (f"{turns} previous turns", {"context_turns": turns},
                                     max(1, round(16 / per_dialogue)))):
        torch.manual_seed(seed)
        model = create_model("text-finetune", model_spec(data, task), **model_args)
        cfg = TrainConfig(epochs=1, batch_size=batch, accumulate=2, optimizer="adamw", lr=5e-4, weight_decay=0.01,
                          scheduler="linear", warmup_ratio=0.1, grad_clip=1.0,
                          eval_batch_size=8 if "context_turns" in model_args else 256)
        result = fit(model, data, task, train, valid, cfg, seed, progress=False)
        epoch = result.history[0]
        out["rows"][name] = {"model_args": model_args, "batch_size": batch, "seconds": epoch["seconds"],
                             "seconds_per_train_row": epoch["seconds"] / len(train),
                             "extrapolated_epoch_seconds": epoch["seconds"] / len(train) * len(splits["train"])}
    base, frozen, window = out["rows"].values()
    out["cost_ratio"] = {"window": window["seconds"] / base["seconds"], "frozen": frozen["seconds"] / base["seconds"]}
    return out


def encoder_for(patterns: list[str], seed: int) -> str:
    """The encoder of ``seed``: the first pattern whose checkpoint exists (else the first, which then fails)."""
    paths = [pattern.format(seed=seed) for pattern in patterns]
    return next((p for p in paths if Path(p).exists()), paths[0])


def run_with_encoder(args, output: str) -> None:
    """Every variant on the vectors of a fine-tuned encoder per seed (seed k reads encoder k)."""
    previous = json.loads(Path(output).read_text()) if Path(output).exists() else {}
    result = {"dataset": args.dataset, "threads": args.threads, "encoder_pattern": args.encoder,
              "modalities": args.modalities,
              "note": "text vectors of seed k from the fine-tuned text-finetune checkpoint of seed k (trained on "
                      "the train split, epoch chosen on valid); test metrics mean ± sample std over seeds; "
                      "selection on validation only; timings inside the 2-slot queue, 1 thread",
              "published": [r.to_dict() for r in references(args.dataset, "dialogue-rnn")],
              "encoders": previous.get("encoders", {}), "rows": previous.get("rows", {})}
    for seed in args.seeds:
        record = encoder_record(args.dataset, encoder_for(args.encoder, seed))
        result["encoders"][str(seed)] = {**result["encoders"].get(str(seed), {}), **record}
        write_json(output, result)
    # the encoders' own heads: the no-context row of text-finetune itself, on the same seeds
    runs = [encoder_checkpoint(encoder_for(args.encoder, seed)).parent for seed in args.seeds]
    if all((run / "result.json").is_file() for run in runs):
        result["rows"]["text-finetune"] = {
            **summarise_records([json.loads((run / "result.json").read_text()) for run in runs],
                                json.loads((runs[0].parent / "config.json").read_text()), HEADLINE[args.dataset],
                                len(args.seeds)),
            "timing": "the encoders' own training runs, on the shared machine outside the queue"}
    for variant in args.variants.split(","):
        rundir = Path(args.workdir) / f"{args.dataset}_ft_{variant}"
        load_before = os.getloadavg()[0]
        for seed in args.seeds:
            config = experiment(args.dataset, variant, [seed], {"text_encoder": encoder_for(args.encoder, seed)},
                                args.modalities)
            run_experiment(config, rundir / f"encoder{seed}", progress=False)
        result["rows"][variant] = summarise_runs(rundir, HEADLINE[args.dataset], expected=len(args.seeds))
        result["rows"][variant]["load_average"] = [load_before, os.getloadavg()[0]]
        write_json(output, result)
        test = result["rows"][variant]["test"]
        print(variant, "  ".join(f"{m} {v['mean']:.2f}±{v['std']:.2f}" for m, v in test.items()),
              f"{result['rows'][variant]['seconds_per_epoch']:.2f} s/epoch", flush=True)
    print(json.dumps({"output": output}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", nargs="+", metavar="JSON", help="only print a markdown table of these results")
    parser.add_argument("--dataset", choices=sorted(SELECT))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--collect", action="store_true",
                        help="only rebuild the JSON from the run folders (finished seeds, incl. unfinished variants)")
    parser.add_argument("--no-floor", action="store_true", help="skip the TF-IDF floor (another process runs it)")
    parser.add_argument("--workdir", default="../runs/hj_context", help="run folders (resumable)")
    parser.add_argument("--output", default=None, help="default benchmarks/results/context_<dataset>.json "
                                                       "(context_<dataset>_finetuned.json with --encoder)")
    parser.add_argument("--window-cost", type=int, metavar="DIALOGUES",
                        help="only measure text-finetune with speaker-tagged previous turns against without on the "
                             "first DIALOGUES training dialogues (writes context_window_cost.json)")
    parser.add_argument("--encoder", metavar="PATTERN", action="append",
                        help="text vectors from fine-tuned text-finetune checkpoints, one per seed: a path with "
                             "{seed} (e.g. runs/ft_s{seed}/seed{seed}); seed k reads encoder k; repeat it for "
                             "encoders kept in several places (the first pattern whose checkpoint exists wins)")
    parser.add_argument("--modalities", type=lambda value: value.split(","), metavar="M,M",
                        help="train on these modalities only (e.g. t,a)")
    parser.add_argument("--minilm-text", dest="dataset_args", action="store_const", const={"text_encoder": "minilm"},
                        default={}, help="text vectors from the frozen packaged MiniLM of the transcripts "
                                     "(mosi-bclstm: instead of the bc-LSTM text CNN's)")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(args.table))
        return
    if args.dataset is None:
        parser.error("--dataset is required (or --table)")
    if args.window_cost:
        torch.set_num_threads(args.threads)
        output = args.output or "benchmarks/results/context_window_cost.json"
        check_output_file(output)
        measured = {**window_cost(args.dataset, args.window_cost, 3), "threads": args.threads,
                    "load_average": os.getloadavg()[0]}
        previous = json.loads(Path(output).read_text()) if Path(output).exists() else {}  # read late: runs in parallel
        previous[args.dataset] = measured
        write_json(output, previous)
        print(json.dumps(previous[args.dataset]["rows"], indent=1))
        return
    stem = file_stem(args.dataset)
    if args.collect:
        collect(args.dataset, Path(args.workdir), args.output or f"benchmarks/results/context_{stem}.json")
        return
    torch.set_num_threads(args.threads)
    output = args.output or f"benchmarks/results/context_{stem}{'_finetuned' if args.encoder else ''}.json"
    check_output_file(output)
    check_output_dir(args.workdir)
    if args.encoder:
        if any("{seed}" not in pattern for pattern in args.encoder):
            parser.error("--encoder needs {seed} in the path: seed k reads the encoder fine-tuned with seed k")
        run_with_encoder(args, output)
        return
    previous = json.loads(Path(output).read_text()) if Path(output).exists() else {}
    result = {"dataset": args.dataset, "threads": args.threads, "modalities": args.modalities,
              "dataset_args": args.dataset_args,
              "note": previous.get("note", "test metrics mean ± sample std over seeds; selection on validation "
                                           "only; timings taken on the shared 2-core machine under load"),
              "rows": previous.get("rows", {})}
    for variant in args.variants.split(","):
        config = experiment(args.dataset, variant, args.seeds, args.dataset_args, args.modalities)
        rundir = Path(args.workdir) / f"{stem}_{variant}"
        load_before = os.getloadavg()[0]
        run_experiment(config, rundir, progress=False)
        result["rows"][variant] = summarise_runs(rundir, HEADLINE[args.dataset])
        result["rows"][variant]["load_average"] = [load_before, os.getloadavg()[0]]
        if args.dataset == "mosi-bclstm":
            result["rows"][variant]["validation_noise"] = validation_noise(rundir, args.dataset)
        write_json(output, result)
        test = result["rows"][variant]["test"]
        print(variant, "  ".join(f"{m} {v['mean']:.2f}±{v['std']:.2f}" for m, v in test.items()),
              f"{result['rows'][variant]['seconds_per_epoch']:.2f} s/epoch", flush=True)
    # the floor last: under load its six fits take minutes, and the neural rows matter more
    if args.dataset in TEXT_FLOOR and not args.no_floor and "tfidf-logreg" not in result["rows"]:
        result["rows"]["tfidf-logreg"] = tfidf_floor(args.dataset)
        write_json(output, result)
    print(json.dumps({"output": output}))


if __name__ == "__main__":
    main()
