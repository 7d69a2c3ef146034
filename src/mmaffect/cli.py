"""Command line: ``mmaffect datasets | models | train | ablate | evaluate | benchmark``, and the commands
in :mod:`mmaffect.commands`: ``extract | predict | analyze | train-analysis-model``.

The help texts below are written for people at a terminal; this docstring is for developers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from mmaffect.errors import ConfigError, MMAffectError
from mmaffect.io import check_output_dir, check_output_file, write_json

# Metrics shown first in tables, in the field's usual order; the rest follow alphabetically.
_ORDER = ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc3", "acc5", "acc7", "mae", "corr",
          "acc", "wacc", "f1_weighted", "f1_macro", "f1", "auc", "f1_micro", "subset_acc", "loss"]


DESCRIPTION = """\
Multimodal affective computing: recognise emotion and sentiment from what people say (text), how
they say it (audio) and how they look (video).

Train and compare models on the built-in datasets or on your own files, extract features from your
own recordings, predict with a trained model, and analyse a video utterance by utterance."""

EPILOG = """\
examples:
  mmaffect datasets
  mmaffect train --dataset mosi-bclstm --model tfn --seeds 3 --output runs/tfn
  mmaffect evaluate --checkpoint runs/tfn/seed0/model.safetensors --dataset mosi-bclstm
  mmaffect extract clips.csv --output cache/clips
  mmaffect predict --checkpoint runs/tfn/seed0/model.safetensors --dataset manifest:new.csv --output pred.csv
  mmaffect analyze talk.mp4 --json talk.json --plot talk.png

--threads N limits the CPU threads (before or after the command name).
Run 'mmaffect COMMAND --help' for the options of a command."""

THREADS_HELP = "CPU threads for training, feature extraction and analysis (default: torch's choice)"

_HELP = {
    "datasets": ("list the built-in datasets and whether their files are found",
                 "List the built-in datasets, their size and whether their files are found under the data "
                 "folder (set MMAFFECT_DATA to change it), and the prefixes that read your own data "
                 "(manifest:FILE, cache:DIR, ...)."),
    "models": ("list the models", "List the models: their input (utterance vectors or sequences), what they "
                                  "do and the modalities they need."),
    "train": ("train a model and evaluate it over seeds (and folds); writes DIR/results.json",
              "Train a model and evaluate it on the test split, once per seed (and per fold with --cv). "
              "The --output folder gets one subfolder per run (the model, its predictions) and "
              "results.json (mean ± std over the runs). Run the same command again to resume."),
    "ablate": ("train on each modality subset; writes DIR/ablation.json",
               "Train the same model on each subset of modalities (text only, audio only, text+audio, ...) "
               "to see what each one adds. Every subset gets its own folder under --output; the table "
               "printed at the end is also saved as ablation.json."),
    "benchmark": ("run a benchmark suite (SUITE.yaml) or measure training speed (train-speed)",
                  "'benchmark SUITE.yaml --output DIR' trains the suite's grid of datasets x models x seeds "
                  "(resumable: finished cells are skipped) and writes DIR/results.csv, DIR/report.md and one "
                  "self-contained DIR/report.html with plots and the published numbers beside ours. "
                  "'benchmark train-speed' measures how long one training epoch takes, for each batch size "
                  "and thread count, with the real trainer, and writes the timings as JSON."),
    "evaluate": ("score a trained model on a dataset split",
                 "Score a trained model (a model.safetensors written by 'mmaffect train') on one split of a "
                 "dataset; optionally save the metrics as JSON and the per-row predictions as CSV."),
}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "nan" if value is None or value != value else f"{value:.{digits}f}"


def _digits(metric: str) -> int:
    return 4 if metric in ("mae", "corr", "auc", "loss") else 2


def _spread(results: dict, n_runs: int) -> str:
    """What the "±" is taken over: folds x seeds with cross-validation, seeds otherwise."""
    seeds = results["seeds"]
    seeds_text = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} {seeds}"
    folds = results.get("folds")
    if folds:
        return f"± over {len(folds)} folds x {seeds_text} ({n_runs} runs; sample std)"
    if n_runs == 1:
        return f"one run (seed {seeds[0]}): no spread (± 0)"
    return f"± over {seeds_text} (sample std)"


def _modalities(results: dict) -> str:
    """The modalities a run had data for; ones that are the same on every row are named apart."""
    empty = results.get("empty_modalities") or []
    used = [m for m in results["modalities"] if m not in empty]
    text = f"modalities {','.join(used) or 'none'}"
    if empty:
        text += f" ({','.join(empty)}: no data, the same on every row)"
    return text


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
    lines = [f"{results['model']} on {results['dataset']} ({results['split']}); {_modalities(results)}; "
             f"{_spread(results, n_runs)}",
             f"{'metric':<14}{'test':>18}{'valid':>18}  published (same data and split)"]
    for m in metrics:
        d = _digits(m)
        test, valid = results["test"][m], results["valid"].get(m, {})
        lines.append(f"{m:<14}{_fmt(test['mean'], d) + ' ± ' + _fmt(test['std'], d):>18}"
                     f"{_fmt(valid.get('mean'), d) + ' ± ' + _fmt(valid.get('std'), d):>18}  "
                     + "; ".join(published.get(m, [])))
    if "wacc" in results["test"]:
        note = "wacc = UA: mean recall over the classes present in each test fold (an absent class is left out)"
        if "recall_macro" in results["test"]:
            note += "; recall_macro also counts a predicted class absent from the fold, as 0"
        lines.append(note)
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
    if args.pretrained:
        from mmaffect.commands.pretrained import print_table

        print_table()
        return 0
    from mmaffect.models.registry import list_models

    for info in list_models():
        needs = f" [needs {','.join(info.modalities)}]" if info.modalities else ""
        print(f"{info.name:<16}{','.join(sorted(info.needs)):<20}{info.description}{needs}")
        if args.verbose:
            print("            " + ", ".join(f"{k}={v!r}" for k, v in info.hparams().items()))
    return 0


def _experiment_config(args: argparse.Namespace, **fixed):
    from mmaffect.training.config import load_config

    cv = None
    if args.cv is not None:
        cv = {"folds": _cv_folds(args.cv), "group_by": args.group_by}
    overrides = {"dataset": args.dataset, "model": args.model, "seeds": args.seeds, "task": args.task,
                 "modalities": args.modalities, "train.epochs": args.epochs, "cv": cv,
                 "threshold": args.threshold, "train.class_weights": args.class_weights,
                 **_dataset_args(args), **fixed}
    return load_config(args.config, overrides, args.set)


def _cv_folds(text: str) -> int | str:
    """``--cv``: a number of folds (>= 2) or ``column``."""
    if text == "column":
        return text
    try:
        folds = int(text)
    except ValueError:
        raise ConfigError(f"--cv takes a number of folds (2 or more) or 'column', not {text!r}") from None
    if folds < 2:
        raise ConfigError(f"--cv takes a number of folds (2 or more) or 'column', not {text!r}")
    return folds


def _int_list(option: str, text: str) -> list[int]:
    """``--batch-sizes 64,512``-style options: positive integers separated by commas."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"{option} takes positive integers separated by commas, e.g. 1,2; not {text!r}")
    return values


def _dataset_args(args: argparse.Namespace) -> dict:
    """``--columns/--encoding/--features`` as ``dataset_args.*`` overrides (reader options of ``manifest:``)."""
    from mmaffect.data.manifest import parse_columns

    return {"dataset_args.columns": parse_columns(args.columns), "dataset_args.encoding": args.encoding,
            "dataset_args.features": args.features}


def _reader_kwargs(args: argparse.Namespace) -> dict:
    """The given ``--columns/--encoding/--features`` as keyword arguments of the dataset reader."""
    return {k.split(".", 1)[1]: v for k, v in _dataset_args(args).items() if v is not None}


def _check_experiment_output(output: str | Path, *files: str) -> None:
    """The output folder and the files the command writes in it, checked before any data are read."""
    folder = check_output_dir(output)
    for name in files:
        check_output_file(folder / name)


def _cmd_train(args: argparse.Namespace) -> int:
    from mmaffect.training import distributed
    from mmaffect.training.runs import run_experiment

    _check_experiment_output(args.output, "config.json", "results.json")
    if args.devices > 1 and not distributed.launched_by_torchrun():
        return distributed.launch(args.devices, args.argv)  # this command again, in N processes
    distributed.init_from_env(getattr(args, "threads", None))
    config = _experiment_config(args)
    results = run_experiment(config, args.output, progress=not args.quiet)
    if distributed.is_main():
        print(format_results(results))
        print(f"results: {Path(args.output) / 'results.json'}")
    if distributed.launched_by_torchrun():
        distributed.finish(0)
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from mmaffect.training.runs import run_experiment

    subsets = args.subsets.split(";")
    _check_experiment_output(args.output, "ablation.json")
    for subset in subsets:
        _check_experiment_output(Path(args.output) / subset, "config.json", "results.json")
    rows = []
    for subset in subsets:
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
    from mmaffect.predictor import evaluate

    for path in (args.json, args.predictions):
        if path:
            check_output_file(path)
    dataset_args = _reader_kwargs(args)
    metrics = evaluate(args.checkpoint, args.dataset, split=args.split, predictions=args.predictions,
                       **dataset_args)
    for name, value in metrics.items():
        print(f"{name:<14}{_fmt(value, _digits(name)):>10}")
    if args.json:
        write_json(args.json, metrics)
    return 0


def _cmd_suite(args: argparse.Namespace) -> int:
    from mmaffect.benchmark.suite import load_suite, run_suite, write_reports

    suite = load_suite(args.suite)
    check_output_dir(args.output)
    paths = write_reports(suite, run_suite(suite, args.output), args.output)
    print(Path(paths["md"]).read_text())
    print(f"results: {paths['csv']}\nreport: {paths['html']}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from mmaffect.benchmark.train_speed import train_speed

    if args.suite != "train-speed":
        return _cmd_suite(args)
    if not args.dataset or not args.model:
        raise ConfigError("benchmark train-speed needs --dataset and --model")
    check_output_file(args.output)
    batch_sizes = _int_list("--batch-sizes", args.batch_sizes)
    thread_counts = _int_list("--thread-counts", args.thread_counts)
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be 1 or more, not {args.epochs}")
    dataset_args = _reader_kwargs(args)
    result = train_speed(args.dataset, args.model, batch_sizes, thread_counts, epochs=args.epochs,
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


_COMMAND_MODULES = {"predict": _command("predict"), "extract": _command("extract"), "analyze": _command("analyze"),
                    "train-analysis-model": _command("analysis_model"), "serve": _command("serve"),
                    "export": _command("export"),
                    "tune": _command("tune"), "pretrained": _command("pretrained")}


def _reader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--columns", metavar="CANON=COL,...",
                   help="manifest column mapping, e.g. text=Utterance,label=Emotion (label= switches a column off)")
    p.add_argument("--encoding", help="manifest text encoding (default utf-8; e.g. cp1252, latin-1)")
    p.add_argument("--features", metavar="DIR", help="extracted media features for manifest rows with a path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmaffect", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str) -> argparse.ArgumentParser:
        short, long = _HELP[name]
        return sub.add_parser(name, help=short, description=long)

    command("datasets")
    p = command("models")
    p.add_argument("-v", "--verbose", action="store_true", help="also list hyper-parameters and defaults")
    p.add_argument("--pretrained", action="store_true", help="list the pretrained models (pretrained:NAME) instead")

    def experiment_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", help="a built-in dataset or PREFIX:PATH, e.g. manifest:my.csv "
                                         "(see 'mmaffect datasets')")
        p.add_argument("--model", help="model name (see 'mmaffect models')")
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
        p.add_argument("--output", required=True, metavar="DIR",
                       help="folder for the runs and results.json (run again to resume)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = command("train")
    experiment_options(p)
    p.add_argument("--modalities", help="comma-separated subset of t,a,v")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="train data-parallel in N processes on this machine (torchrun; gloo on CPU, one "
                        "thread each unless --threads); results equal one process within seed noise")

    p = command("ablate")
    experiment_options(p)
    p.add_argument("--subsets", default="t;a;v;ta;tv;av;tav",
                   help="';'-separated modality subsets, t = text, a = audio, v = video (default: all seven)")
    p.add_argument("--metrics", default="acc2_has0,acc2_non0,f1_non0,acc7,mae,corr,acc,f1_weighted",
                   help="metrics of the summary table, comma-separated (those the task has are shown)")
    p.set_defaults(modalities=None)

    p = command("evaluate")
    p.add_argument("--checkpoint", required=True, help="DIR/seedS[_foldF]/model.safetensors from 'mmaffect train'")
    p.add_argument("--dataset", required=True, help="a built-in dataset or PREFIX:PATH, e.g. manifest:test.csv")
    p.add_argument("--split", default="test", help="train | valid | test | all (default test)")
    p.add_argument("--predictions", metavar="FILE", help="write per-row predictions to this CSV")
    p.add_argument("--json", metavar="FILE", help="write the metrics to this JSON file")
    _reader_options(p)

    for module in _COMMAND_MODULES.values():
        module().add_parser(sub)

    p = command("benchmark")
    p.add_argument("suite", metavar="SUITE.yaml|train-speed",
                   help="a suite file (see benchmarks/suites/) or train-speed (seconds per epoch)")
    p.add_argument("--dataset", help="train-speed: a built-in dataset or PREFIX:PATH")
    p.add_argument("--model", help="train-speed: model name (see 'mmaffect models')")
    p.add_argument("--batch-sizes", default="64,512", help="comma-separated batch sizes (default 64,512)")
    p.add_argument("--thread-counts", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per measurement (default 5)")
    p.add_argument("--output", required=True, help="suite: the report folder; train-speed: JSON file for the timings")
    _reader_options(p)

    for p in sub.choices.values():  # --threads also after the command name, e.g. mmaffect train --threads 1
        if "--threads" not in p._option_string_actions:
            p.add_argument("--threads", type=int, metavar="N", default=argparse.SUPPRESS, help=THREADS_HELP)
    return parser


def _apply_threads(threads: int | None) -> None:
    """One thread setting for the whole command, through OMP_NUM_THREADS: torch reads it when it loads
    (it is not imported here, so a command can start work before torch's 1-3 s import; ``analyze``
    does), as do the extraction workers and libraries started later. Commands read ``args.threads``
    for their own pools (ASR, ...)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be 1 or more, not {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # loaded already (a test, or a caller of main()): its pool is sized
        sys.modules["torch"].set_num_threads(threads)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes (tests and tools swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _show_library_messages() -> None:
    """Library code logs (``mmaffect.*`` loggers) instead of printing; a command shows its INFO lines
    (progress such as "encoding text 1024/5163") and warnings on stderr, once per process."""
    log = logging.getLogger("mmaffect")
    if not any(isinstance(h, _CurrentStderr) for h in log.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe/TFLite C++ warnings, read at library load
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # OpenMP threads that spin while waiting for work slow everything else on a shared machine; read
    # when torch loads, so set before any command imports it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    _show_library_messages()
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --devices N re-runs the command
    handlers = {"datasets": _cmd_datasets, "models": _cmd_models, "train": _cmd_train, "ablate": _cmd_ablate,
                "evaluate": _cmd_evaluate, "benchmark": _cmd_benchmark}
    if args.command in _COMMAND_MODULES:
        handlers[args.command] = _COMMAND_MODULES[args.command]().run
    try:
        _apply_threads(args.threads)
        return handlers[args.command](args)
    except MMAffectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
