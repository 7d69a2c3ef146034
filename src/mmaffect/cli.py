"""Command line: ``mmaffect datasets | models | train | ablate | evaluate | benchmark``, and the commands
in :mod:`mmaffect.commands`: ``extract | predict | analyze | train-analysis-model``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from mmaffect.errors import MMAffectError

# Metrics shown first in tables, in the field's usual order; the rest follow alphabetically.
_ORDER = ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc3", "acc5", "acc7", "mae", "corr",
          "acc", "wacc", "f1_weighted", "f1_macro", "f1", "auc", "f1_micro", "subset_acc", "loss"]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "nan" if value is None or value != value else f"{value:.{digits}f}"


def _digits(metric: str) -> int:
    return 4 if metric in ("mae", "corr", "auc", "loss") else 2


def format_results(results: dict) -> str:
    """The results table: metric | test mean ± std | valid mean ± std | published (same split)."""
    published, elsewhere = {}, []
    for ref in results.get("published", []):
        if ref["comparable"]:
            published.setdefault(ref["metric"], []).append(f"{ref['value']:g} {ref['model']}")
        else:
            elsewhere.append(f"{ref['metric']} {ref['value']:g}")
    metrics = sorted(results["test"], key=lambda m: (_ORDER.index(m) if m in _ORDER else len(_ORDER), m))
    n_runs = len(next(iter(results["test"].values()))["per_run"])
    lines = [f"{results['model']} on {results['dataset']} ({results['split']}); modalities "
             f"{','.join(results['modalities'])}; {n_runs} run(s), seeds {results['seeds']}",
             f"{'metric':<14}{'test':>18}{'valid':>18}  published (same data and split)"]
    for m in metrics:
        d = _digits(m)
        test, valid = results["test"][m], results["valid"].get(m, {})
        lines.append(f"{m:<14}{_fmt(test['mean'], d) + ' ± ' + _fmt(test['std'], d):>18}"
                     f"{_fmt(valid.get('mean'), d) + ' ± ' + _fmt(valid.get('std'), d):>18}  "
                     + "; ".join(published.get(m, [])))
    if elsewhere:
        source = next(r["model"] for r in results["published"] if not r["comparable"])
        lines.append(f"not comparable, for orientation only: {source}: {', '.join(elsewhere)}")
    lines.append(f"{results['n_params']:,} parameters; {results['seconds_per_epoch']:.3f} s/epoch; "
                 f"{results['train_seconds']:.1f} s training in all; epochs run {results['epochs_run']}, "
                 f"best {results['best_epochs']}")
    return "\n".join(lines)


def _cmd_datasets(args: argparse.Namespace) -> int:
    from mmaffect.data.registry import dataset_table
    from mmaffect.settings import data_root

    print(f"data root: {data_root()} (set MMAFFECT_DATA to change)")
    for row in dataset_table():
        found = {True: "found", False: "MISSING", None: ""}[row["found"]]
        size = "" if row["size"] is None else f"{row['size']:>6}"
        print(f"{row['name']:<16}{size:>7}  {found:<8} {row['description']}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from mmaffect.models.registry import list_models

    for info in list_models():
        needs = f" [needs {','.join(info.modalities)}]" if info.modalities else ""
        print(f"{info.name:<12}{info.input_form:<10}{info.description}{needs}")
        if args.verbose:
            print("            " + ", ".join(f"{k}={v!r}" for k, v in info.hparams().items()))
    return 0


def _experiment_config(args: argparse.Namespace, **fixed):
    from mmaffect.training.config import load_config

    cv = None
    if args.cv is not None:
        cv = {"folds": "column" if args.cv == "column" else int(args.cv), "group_by": args.group_by}
    overrides = {"dataset": args.dataset, "model": args.model, "seeds": args.seeds, "task": args.task,
                 "modalities": args.modalities, "train.epochs": args.epochs, "cv": cv,
                 "threshold": args.threshold, "train.class_weights": args.class_weights,
                 **_dataset_args(args), **fixed}
    return load_config(args.config, overrides, args.set)


def _dataset_args(args: argparse.Namespace) -> dict:
    """``--columns/--encoding/--features`` as ``dataset_args.*`` overrides (reader options of ``manifest:``)."""
    from mmaffect.data.manifest import parse_columns

    return {"dataset_args.columns": parse_columns(args.columns), "dataset_args.encoding": args.encoding,
            "dataset_args.features": args.features}


def _reader_kwargs(args: argparse.Namespace) -> dict:
    """The given ``--columns/--encoding/--features`` as keyword arguments of the dataset reader."""
    return {k.split(".", 1)[1]: v for k, v in _dataset_args(args).items() if v is not None}


def _cmd_train(args: argparse.Namespace) -> int:
    from mmaffect.training.runs import run_experiment

    config = _experiment_config(args)
    results = run_experiment(config, args.output, progress=not args.quiet)
    print(format_results(results))
    print(f"results: {Path(args.output) / 'results.json'}")
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from mmaffect.io import write_json
    from mmaffect.training.runs import run_experiment

    rows = []
    for subset in args.subsets.split(";"):
        config = _experiment_config(args, modalities=",".join(subset))
        results = run_experiment(config, Path(args.output) / subset, progress=not args.quiet)
        rows.append({"modalities": subset, "test": {m: {"mean": v["mean"], "std": v["std"]}
                                                     for m, v in results["test"].items()},
                     "seconds_per_epoch": results["seconds_per_epoch"]})
        print(f"{subset}: " + ", ".join(f"{m} {_fmt(results['test'][m]['mean'], _digits(m))}"
                                        for m in args.metrics.split(",") if m in results["test"]), flush=True)
    write_json(Path(args.output) / "ablation.json", {"dataset": args.dataset, "model": args.model,
                                                     "seeds": config.seeds, "rows": rows})
    metrics = [m for m in args.metrics.split(",") if m in rows[0]["test"]]
    print("| modalities | " + " | ".join(metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for row in rows:
        print(f"| {row['modalities']} | " + " | ".join(
            f"{_fmt(row['test'][m]['mean'], _digits(m))} ± {_fmt(row['test'][m]['std'], _digits(m))}"
            for m in metrics) + " |")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mmaffect.inference import evaluate_checkpoint

    dataset_args = _reader_kwargs(args)
    metrics = evaluate_checkpoint(args.checkpoint, args.dataset, split=args.split, predictions=args.predictions,
                                  dataset_args=dataset_args)
    for name, value in metrics.items():
        print(f"{name:<14}{_fmt(value, _digits(name)):>10}")
    if args.json:
        from mmaffect.io import write_json

        write_json(args.json, metrics)
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from mmaffect.benchmark.train_speed import train_speed
    from mmaffect.io import write_json

    dataset_args = _reader_kwargs(args)
    result = train_speed(args.dataset, args.model, [int(b) for b in args.batch_sizes.split(",")],
                         [int(t) for t in args.thread_counts.split(",")], epochs=args.epochs,
                         dataset_args=dataset_args)
    write_json(args.output, result)
    print(f"{args.model} on {args.dataset}: {result['n_params']:,} parameters, {result['n_train']} training rows")
    print(f"{'threads':>8}{'batch':>8}{'s/epoch':>10}{'first':>9}")
    for row in result["rows"]:
        print(f"{row['threads']:>8}{row['batch_size']:>8}{row['median_epoch_s']:>10.3f}{row['first_epoch_s']:>9.3f}")
    print(f"results: {args.output}")
    return 0


def _command(name: str):
    """Commands in their own modules (``mmaffect.commands``), imported when the parser is built."""
    return lambda: importlib.import_module(f"mmaffect.commands.{name}")


_COMMAND_MODULES = {"extract": _command("extract"), "analyze": _command("analyze"),
                    "train-analysis-model": _command("analysis_model"), "predict": _command("predict")}


def _reader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--columns", metavar="CANON=COL,...",
                   help="manifest column mapping, e.g. text=Utterance,label=Emotion (label= switches a column off)")
    p.add_argument("--encoding", help="manifest text encoding (default utf-8; e.g. cp1252, latin-1)")
    p.add_argument("--features", metavar="DIR", help="extracted media features for manifest rows with a path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmaffect", description=__doc__)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("datasets", help="list registered datasets, their size and whether their files are found")
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("-v", "--verbose", action="store_true", help="also list hyper-parameters and defaults")

    def experiment_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", help="registered name or prefix:path (see `mmaffect datasets`)")
        p.add_argument("--model", help="registered model (see `mmaffect models`)")
        p.add_argument("--config", help="YAML experiment config; command-line options override it")
        p.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
        p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
        p.add_argument("--task", help="sentiment | regression | classification | binary | multilabel | a+b")
        p.add_argument("--cv", help="K for stratified group K-fold, or 'column' for the dataset's folds")
        p.add_argument("--group-by", default="group", help="cv grouping: group | speaker | dialogue_id | none")
        p.add_argument("--threshold", type=float, help="regression: also acc2/F1 of score >= THRESHOLD")
        p.add_argument("--class-weights", choices=["balanced"], help="weight the class loss by inverse frequency")
        _reader_options(p)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config value, e.g. train.lr=3e-4 or model_args.dropout=0.1")
        p.add_argument("--output", required=True, help="output folder (resumable)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("train", help="train and evaluate over seeds/folds; writes DIR/results.json")
    experiment_options(p)
    p.add_argument("--modalities", help="comma-separated subset of t,a,v")

    p = sub.add_parser("ablate", help="train on each modality subset; writes DIR/ablation.json")
    experiment_options(p)
    p.add_argument("--subsets", default="t;a;v;ta;tv;av;tav", help="';'-separated modality subsets")
    p.add_argument("--metrics", default="acc2_has0,acc2_non0,f1_non0,acc7,mae,corr,acc,f1_weighted")
    p.set_defaults(modalities=None)

    p = sub.add_parser("benchmark", help="training speed (s/epoch) over batch sizes and thread counts")
    p.add_argument("suite", choices=["train-speed"])
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--batch-sizes", default="64,512")
    p.add_argument("--thread-counts", default="1,2")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--output", required=True, help="JSON results file")
    _reader_options(p)

    for module in _COMMAND_MODULES.values():
        module().add_parser(sub)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test", help="train | valid | test | all")
    p.add_argument("--predictions", help="write per-row predictions to this CSV")
    p.add_argument("--json", help="write the metrics to this JSON file")
    _reader_options(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe/TFLite C++ warnings, read at library load
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    handlers = {"datasets": _cmd_datasets, "models": _cmd_models, "train": _cmd_train, "ablate": _cmd_ablate,
                "evaluate": _cmd_evaluate, "benchmark": _cmd_benchmark}
    if args.command in _COMMAND_MODULES:
        handlers[args.command] = _COMMAND_MODULES[args.command]().run
    try:
        return handlers[args.command](args)
    except MMAffectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
