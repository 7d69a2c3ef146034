"""``mmaffect export mmsa``: write one of our datasets as an MMSA feature pickle.

Why: MMSA (thuiar/MMSA) is what users run today; with the same rows, splits and labels in its own
format, its trainers and ours can be compared on identical data (``benchmarks/vs_mmsa``).
"""

from __future__ import annotations

import argparse
import pickle


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="write a dataset in another toolkit's format (mmsa: MMSA's feature pickle)",
        description="Write any dataset mmaffect reads (a built-in one or PREFIX:PATH) in another toolkit's "
                    "format. 'mmsa' writes MMSA's pickle layout: train/valid/test dicts with text/audio/vision "
                    "arrays (N, L, d), audio/vision lengths, regression_labels, classification_labels, id and "
                    "raw_text. Read it back with --dataset mmsa:FILE.")
    p.add_argument("format", choices=["mmsa"], help="output format")
    p.add_argument("--dataset", required=True, help="a built-in dataset or PREFIX:PATH (see 'mmaffect datasets')")
    p.add_argument("--output", required=True, metavar="FILE.pkl", help="the pickle to write (replaced atomically)")
    p.add_argument("--sequences", action="store_true",
                   help="write the per-step feature sequences (default: each utterance vector as a length-1 "
                        "sequence)")
    return p


def run(args: argparse.Namespace) -> int:
    from mmaffect.data.mmsa import to_mmsa
    from mmaffect.data.registry import load_dataset
    from mmaffect.io import atomic_write, check_output_file

    check_output_file(args.output)
    data = load_dataset(args.dataset, sequences=args.sequences)
    exported = to_mmsa(data, sequences=args.sequences)

    def write(tmp) -> None:
        with open(tmp, "wb") as handle:
            pickle.dump(exported, handle, protocol=4)

    atomic_write(args.output, write)
    counts = ", ".join(f"{s} {len(exported[s]['id'])}" for s in ("train", "valid", "test"))
    dims = ", ".join(f"{k} {exported['train'][k].shape[1:]}" for k in ("text", "audio", "vision"))
    print(f"{args.dataset} -> {args.output} (MMSA layout): {counts}; (L, d): {dims}")
    return 0
