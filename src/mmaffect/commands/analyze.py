"""``mmaffect analyze VIDEO``: segments, emotion labels, confidences and modality contributions."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmaffect.errors import DataError
from mmaffect.settings import cache_root


def default_model() -> Path:
    """Where ``mmaffect train-analysis-model`` puts the default model (its fold models are averaged)."""
    return cache_root() / "models" / "analysis" / "fusion"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("analyze", help="analyse a video: per-utterance emotion with modality contributions")
    p.add_argument("video")
    p.add_argument("--checkpoint", help="model file or training folder (default: the model of "
                                        "`mmaffect train-analysis-model`)")
    p.add_argument("--json", help="write the result as JSON here")
    p.add_argument("--plot", help="write a timeline plot (PNG) here")
    p.add_argument("--asr-model", help="Whisper model name or folder (default: packaged tiny.en)")
    return p


def run(args: argparse.Namespace) -> int:
    from mmaffect.analysis import Analyzer, format_table, plot_timeline
    from mmaffect.io import check_output_file, write_json

    # refuse unusable output locations before the (long) analysis, not after it
    if args.json:
        check_output_file(args.json, "--json file")
    if args.plot:
        check_output_file(args.plot, "--plot file")
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_model()
    if not checkpoint.exists():
        raise DataError(checkpoint, "no analysis model here; train it with `mmaffect train-analysis-model` "
                                    "or pass --checkpoint")
    video = Path(args.video)
    if not video.is_file():
        raise DataError(video, "no such file" if not video.exists() else "not a file")
    result = Analyzer(checkpoint, asr_model=args.asr_model, threads=getattr(args, "threads", None) or 1)(video)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"json: {args.json}")
    if args.plot:
        plot_timeline(result, args.plot)
        print(f"plot: {args.plot}")
    return 0
