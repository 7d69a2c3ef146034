"""``mmaffect tune SPACE.yaml --dataset D --model M --trials N --output DIR``: Ray Tune + ASHA search on
validation, then the best and the default configuration over seeds, scored on test once
(:mod:`mmaffect.training.tune`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Search hyper-parameters with Ray Tune on the validation split, stopping poor trials early (ASHA).

SPACE is a YAML file mapping train.<field> / model_args.<name> to one distribution:
  train.lr: {loguniform: [1.0e-4, 1.0e-2]}
  train.weight_decay: {choice: [0.0, 0.001, 0.01]}
  model_args.dropout: {uniform: [0.0, 0.5]}

Trials see only the training and validation rows (the test rows never leave this process). The best
configuration (best validation value of train.select) and the default one are then trained over
--seeds and scored on test once. DIR gets trials.jsonl (every trial), search.json, best/, default/ and
results.json. Run the same command again to resume. Ray runs locally on --cpus cores unless
--address names a running cluster (then DIR must be on storage every node can reach)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from mmaffect.cli import _reader_options

    p = subparsers.add_parser("tune", help="search hyper-parameters on validation with Ray Tune (ASHA)",
                              description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", help="YAML search space (see above)")
    p.add_argument("--dataset", help="a built-in dataset or PREFIX:PATH with a train/valid/test split")
    p.add_argument("--model", help="model name (see 'mmaffect models')")
    p.add_argument("--config", help="YAML experiment config (the default configuration); options override it")
    p.add_argument("--seeds", type=int, help="seeds of the final runs (0..N-1); trials use the first")
    p.add_argument("--epochs", type=int, help="maximum epochs per trial and run (ASHA's max_t)")
    p.add_argument("--task", help="sentiment | regression | classification | binary | multilabel | a+b")
    p.add_argument("--modalities", help="comma-separated subset of t,a,v")
    _reader_options(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the default configuration, e.g. train.patience=10")
    p.add_argument("--trials", type=int, required=True, help="number of sampled configurations")
    p.add_argument("--address", metavar="RAY", help="address of a running Ray cluster (default: a local Ray)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (default 2); one per trial")
    p.add_argument("--concurrent", type=int, help="trials running at once (default: --cpus)")
    p.add_argument("--grace-period", type=int, default=3, help="epochs every trial gets before ASHA may stop it")
    p.add_argument("--reduction-factor", type=int, default=2, help="ASHA keeps 1/this of the trials per rung")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the search and runs (re-run resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bars in the final runs")
    p.set_defaults(cv=None, group_by="group", threshold=None, class_weights=None)
    return p


def _row(name: str, block: dict, metric: str) -> str:
    def cell(split: str) -> str:
        stats = block[split].get(metric)
        return "n/a" if stats is None else f"{stats['mean']:.4f} ± {stats['std']:.4f}"

    return f"{name:<10}{cell('valid'):>22}{cell('test'):>22}"


def run(args: argparse.Namespace) -> int:
    from mmaffect.cli import _check_experiment_output, _experiment_config
    from mmaffect.training.tune import tune_experiment

    _check_experiment_output(args.output, "tune.json", "search.json", "trials.jsonl", "results.json")
    config = _experiment_config(args)
    results = tune_experiment(args.space, config, args.trials, args.output, address=args.address, cpus=args.cpus,
                              concurrent=args.concurrent, grace_period=args.grace_period,
                              reduction_factor=args.reduction_factor, progress=not args.quiet)
    search = results["search"]
    metric = search["metric"].removeprefix("valid_")
    status = ", ".join(f"{n} {s}" for s, n in search["status"].items())
    print(f"{search['trials']} trials ({status}), {search['epochs_trained']} epochs in all; best "
          f"{search['metric']} {search['best_' + search['metric']]:.4f} at epoch {search['best_epoch']} "
          f"with {search['best']}")
    print(f"{'config':<10}{'valid ' + metric:>22}{'test ' + metric:>22}   (seeds {results['seeds']})")
    print(_row("tuned", results["best"], metric))
    print(_row("default", results["default"], metric))
    print(f"results: {Path(args.output) / 'results.json'}; every trial: {Path(args.output) / 'trials.jsonl'}")
    return 0
