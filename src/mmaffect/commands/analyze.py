"""``mmaffect analyze MEDIA``: segments, emotion labels, confidences and modality contributions.

A video is analysed by the default analysis model (text, audio, video); a file without a video
stream (a voice recording) by the default voice model, unless ``--checkpoint`` names another."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmaffect.errors import DataError
from mmaffect.settings import cache_root


def default_model() -> Path:
    """Where ``mmaffect train-analysis-model`` puts the default model (its fold models are averaged): the
    variant its ``summary.json`` names as chosen on validation (``fusion`` unless a voice-transfer
    variant won)."""
    from mmaffect.pretrained import trained_or_shipped  # else the copy shipped in the package

    root = cache_root() / "models" / "analysis"
    try:
        name = json.loads((root / "summary.json").read_text()).get("default", "fusion")
    except (OSError, ValueError, AttributeError):
        name = "fusion"
    if not (isinstance(name, str) and name.startswith("fusion") and "/" not in name):
        name = "fusion"
    return trained_or_shipped(root / name, "analysis")


def default_voice_model() -> Path:
    """Where ``mmaffect train-analysis-model --voice`` puts the voice-only model (seed models averaged)."""
    from mmaffect.pretrained import trained_or_shipped  # else the copy shipped in the package

    return trained_or_shipped(cache_root() / "models" / "analysis" / "voice", "voice-ravdess")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("analyze", help="analyse a video or a voice recording: per-utterance emotion "
                                              "with modality contributions")
    p.add_argument("video", metavar="MEDIA", help="video or audio-only file (wav, flac, mp3, m4a, ...)")
    p.add_argument("--checkpoint", help="model file or training folder (default: the model of "
                                        "`mmaffect train-analysis-model`, or with --voice for audio-only files)")
    p.add_argument("--asr", choices=["auto", "always", "never"], default="auto",
                   help="speech recognition: auto = only if the model reads text (default); never = off "
                        "(e.g. non-English speech; segments then come from voice activity alone)")
    p.add_argument("--json", help="write the result as JSON here")
    p.add_argument("--plot", help="write a timeline plot (PNG) here")
    p.add_argument("--asr-model", help="Whisper model name or folder (default: packaged tiny.en)")
    return p


def run(args: argparse.Namespace) -> int:
    from mmaffect.features.media import has_video_stream
    from mmaffect.io import check_output_file, write_json

    # refuse unusable output locations before the (long) analysis, not after it
    if args.json:
        check_output_file(args.json, "--json file")
    if args.plot:
        check_output_file(args.plot, "--plot file")
    video = Path(args.video)
    if not video.is_file():
        raise DataError(video, "no such file" if not video.exists() else "not a file")
    # an unreadable file goes to the default model, whose analysis reports what is wrong with it
    voice = not args.checkpoint and not has_video_stream(video, unreadable=True)
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_voice_model() if voice else default_model()
    if not checkpoint.exists() and not str(checkpoint).startswith(("pretrained:", "hf:")):  # names: load checks
        command = "mmaffect train-analysis-model" + (" --voice" if voice else "")
        raise DataError(checkpoint, f"no {'voice ' if voice else ''}analysis model here; train it with "
                                    f"`{command}` or pass --checkpoint")
    threads = getattr(args, "threads", None) or 1
    # Whisper starts on the file now, while torch and the models load, when the run is known to transcribe:
    # --asr always, or the default video model (it reads text); the Analyzer checks it is the ASR it wants
    heard = None
    if args.asr == "always" or (args.asr == "auto" and not args.checkpoint and not voice):
        from mmaffect.features.asr import BackgroundTranscript

        heard = BackgroundTranscript(video, args.asr_model, threads=threads)
    from mmaffect.analysis import Analyzer, format_table, plot_timeline

    result = Analyzer(checkpoint, asr_model=args.asr_model, threads=threads, asr=args.asr)(video, heard=heard)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"json: {args.json}")
    if args.plot:
        plot_timeline(result, args.plot)
        print(f"plot: {args.plot}")
    return 0
