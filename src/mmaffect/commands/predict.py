"""``mmaffect predict``: a trained checkpoint's predictions for every row of a manifest or dataset.

One output row per input row, in input order, in the prediction-table schema of
:mod:`mmaffect.predictions` (the same columns as a training run's ``predictions.csv``, plus ``row``,
the line of the input file). A row that cannot be processed (empty text, missing media, failed
extraction, malformed line, ...) is kept with ``status=error`` and the reason in ``error``; a row that
was predicted but whose target cannot be scored has ``status=ok`` and the reason in ``error``. Both
are summarised on stderr. The file (``.csv`` or ``.jsonl``) is written atomically. Exit status: 0 if
every row was predicted, 1 if some were not (the file is still written), 2 on an error that stops
everything (unreadable file, missing columns, bad checkpoint, unusable output location).

The work is done by :mod:`mmaffect.predictor`; this module parses arguments and prints.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``predict`` to the ``mmaffect`` sub-commands."""
    p = subparsers.add_parser("predict", help="predict every row of a manifest (or dataset) with a checkpoint; "
                                              "writes PRED.csv or PRED.jsonl")
    p.add_argument("--checkpoint", required=True,
                   help="DIR/seedS[_foldF]/model.safetensors from `mmaffect train`, or the output folder DIR "
                        "(its models averaged)")
    p.add_argument("--dataset", required=True, help="manifest:FILE (labels optional), or a registered dataset")
    p.add_argument("--output", required=True, help="PRED.csv or PRED.jsonl, one row per input row")
    p.add_argument("--columns", help="canonical=column,... e.g. text=Utterance,id=utt_id (default: the "
                                     "mapping the checkpoint was trained with, where the file has those columns)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the manifest (e.g. cp1252, latin-1)")
    p.add_argument("--features", help="folder of extracted media features (manifests with media paths)")
    return p


def run(args: argparse.Namespace) -> int:
    """``mmaffect predict``: write the predictions, summarise problems on stderr; 0 all rows, 1 some rows failed."""
    from mmaffect.data.manifest import parse_columns
    from mmaffect.predictions import check_table_path, write_table
    from mmaffect.predictor import load

    output = check_table_path(args.output)
    result = load(args.checkpoint).predict_dataset(args.dataset, columns=parse_columns(args.columns),
                                                   encoding=args.encoding, features=args.features)
    write_table(output, result.table)
    n = len(result.table)
    errors = result.n_errors
    print(f"predictions: {output} ({n} rows: {n - errors} predicted, {errors} not processed)")
    for line in result.summary():
        print(line, file=sys.stderr)
    return 1 if errors else 0

