"""``mmaffect train-analysis-model``: the default model of ``mmaffect analyze``, from the real data here.

Three steps, each resumable:

1. a ``text-mlp`` on IEMOCAP transcripts of Sessions 2-5 (``iemocap8-text``: train 2-4, valid 5),
   the 8 classes of the developer clips; Session 1, where the clips come from, is its test split;
2. the 40 IEMOCAP Session 1 clips extracted (``mmaffect extract``) with their transcripts;
3. ``late-fusion`` on the clips, its text branch initialised from step 1 and frozen, audio and visual
   branches and the relevance gate learned on the clips, the visual relevance scaled by the
   active-speaker cue (``speaker_gate``), cross-validated: 5-fold stratified group CV by dialogue (the
   default model = its 15 fold models, averaged), and leave-one-speaker-out (2 folds).

It prints the cross-validated accuracy of text alone and of the fusion, and the mean visual relevance
on clips where the visible face is the speaker versus the listener (``speaker_visible``).

``--voice`` trains instead the voice-only model that ``analyze`` uses for audio without a video
stream: ``audio-mlp`` on the pooled Whisper-encoder frames of RAVDESS speech (the best RAVDESS model
that needs no per-speaker statistics; see docs/voice.md), trained on Actors 1-16, validated on 17-20,
tested on 21-24, 3 seeds averaged. ``--ravdess-cache`` reuses an existing RAVDESS cache extracted
with ``--audio-encoders whisper``; otherwise the 1440 files are extracted first (resumable).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmaffect.errors import DataError
from mmaffect.settings import cache_root, data_root
from mmaffect.training.config import CVConfig

if TYPE_CHECKING:  # pandas is imported when the command runs: every `mmaffect` start builds this parser
    import pandas as pd

CLIP_COLUMNS = {"path": "clip_file", "text": "transcript", "id": "utterance_id"}
EVALUATIONS = {"fusion": CVConfig(5, "dialogue_id"), "fusion-by-speaker": CVConfig(2, "speaker")}
RAVDESS_COLUMNS = {"path": "path", "id": "utterance_id", "text": "", "label": "emotion", "speaker": "actor",
                   "split": "split", "fold": "fold"}
# the documented mlp-whisper recipe (docs/voice.md): test UA 62.1 +- 0.7 on the RAVDESS test actors
VOICE_RECIPE = {"model": "audio-mlp", "modalities": ["a"], "dataset_args": {"audio_vector": "whisper"},
                "model_args": {"hidden": 256},
                "train": {"select": "wacc", "class_weights": "balanced", "weight_decay": 0.01, "epochs": 60,
                          "patience": 10}}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train-analysis-model", help="train the default `mmaffect analyze` model on the "
                                                           "IEMOCAP clips and transcripts")
    p.add_argument("--output", help="folder (default: $MMAFFECT_CACHE/models/analysis)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--voice", action="store_true",
                   help="train the voice-only model (RAVDESS, Whisper encoder) used for audio-only input")
    p.add_argument("--ravdess-cache", metavar="DIR",
                   help="with --voice: a RAVDESS cache extracted with --audio-encoders whisper (default: extract)")
    p.add_argument("--voice-model", metavar="FILE",
                   help="audio-mlp checkpoint for the transfer step (default: the best seed of OUTPUT/voice "
                        "on RAVDESS validation UA, when --voice was run); 'none' skips the step")
    p.add_argument("--quiet", action="store_true")
    return p


def _summary(results: dict) -> str:
    return ", ".join(f"{m} {results['test'][m]['mean']:.1f} ± {results['test'][m]['std']:.1f}"
                     for m in ("acc", "wacc", "f1_weighted", "f1_macro"))


def visual_relevance(folder: Path, manifest: pd.DataFrame) -> dict[str, float]:
    """Mean test-fold relevance of the visual branch on clips showing the speaker vs the listener."""
    import pandas as pd

    frames = [pd.read_csv(f) for f in sorted(folder.glob("*/predictions.csv"))]
    pred = pd.concat(frames)
    pred = pred[pred.split == "test"].merge(manifest[["utterance_id", "speaker_visible"]], left_on="id",
                                            right_on="utterance_id")
    return {"speaker_visible": float(pred[pred.speaker_visible == 1].relevance_v.mean()),
            "listener_visible": float(pred[pred.speaker_visible == 0].relevance_v.mean())}


def train_voice_model(out: Path, seeds: list[int], cache: Path | None, progress: bool) -> dict:
    """The voice-only analysis model in ``out/voice``; returns its test results (mean +- std over seeds)."""
    from mmaffect.commands.extract import items_from_manifest
    from mmaffect.extraction import ExtractConfig
    from mmaffect.extraction.pipeline import extract
    from mmaffect.training.config import load_config
    from mmaffect.training.runs import run_experiment

    if cache is None:
        cache = out / "ravdess"
        manifest_path = data_root() / "ravdess_speech" / "manifest.csv"
        print(f"1/2 extracting {manifest_path.parent} (Whisper encoder, no ASR)", flush=True)
        items, skipped = items_from_manifest(str(manifest_path), RAVDESS_COLUMNS)
        for line in skipped:
            print(f"    skipped: {line}", flush=True)
        config = ExtractConfig(asr="never", audio_encoders=["whisper"], whisper_window="trim")
        print(f"    {extract(items, cache, config, progress=progress).summary()}", flush=True)
    print(f"2/2 audio-mlp on the pooled Whisper frames of {cache} (train Actors 1-16, valid 17-20, test 21-24)",
          flush=True)
    config = load_config(None, {**VOICE_RECIPE, "dataset": f"cache:{cache}", "seeds": seeds})
    results = run_experiment(config, out / "voice", progress=progress)
    print(f"    RAVDESS test actors: {_summary(results)}", flush=True)
    print(f"voice analysis model: {out / 'voice'} ({len(seeds)} seed models, averaged)")
    return results


def best_voice_model(out: Path) -> Path | None:
    """The seed model of ``out/voice`` with the best RAVDESS validation UA (None if not trained)."""
    runs = sorted((out / "voice").glob("seed*/result.json"))
    if not runs:
        return None
    best = max(runs, key=lambda r: json.loads(r.read_text())["valid"]["wacc"])
    return best.parent / "model.safetensors"


def voice_transfer(out: Path, items: list, base: dict, voice_model: Path, progress: bool) -> dict:
    """Step 4: the fusion model with its audio branch from ``voice_model`` (frozen / fine-tuned).

    The clips are extracted once more with the voice model's Whisper encoder (``clips-whisper``); the
    audio branch standardises with the voice model's RAVDESS statistics (so ``standardize`` is off;
    text and visual inputs reach their branches raw as in the default model)."""
    from mmaffect.extraction import ExtractConfig
    from mmaffect.extraction.pipeline import extract
    from mmaffect.training.config import ExperimentConfig
    from mmaffect.training.runs import run_experiment

    print(f"4/4 transfer: audio branch from {voice_model}; extracting the clips with the Whisper encoder",
          flush=True)
    cache = out / "clips-whisper"
    report = extract(items, cache, ExtractConfig(audio_encoders=["whisper"], whisper_window="trim"), progress=progress)
    print(f"    {report.summary()}", flush=True)
    rows = {}
    for frozen in (True, False):
        name = f"fusion-voice-{'frozen' if frozen else 'finetuned'}"
        for evaluation, cv in EVALUATIONS.items():
            config = ExperimentConfig(
                model="late-fusion-voice", modalities=["t", "a", "v"], cv=cv, dataset=f"cache:{cache}",
                dataset_args={"audio_vector": "whisper"}, seeds=base["seeds"], standardize=[],
                model_args={**base["model_args"], "audio_init": str(voice_model), "audio_frozen": frozen})
            folder = out / (name if evaluation == "fusion" else f"{name}-by-speaker")
            results = run_experiment(config, folder, progress=progress)
            rows.setdefault(name, {})[evaluation] = {"cv": f"{cv.folds}-fold by {cv.group_by}",
                                                     "fusion": results["test"], "valid": results["valid"]}
            print(f"    {name}, {cv.folds}-fold by {cv.group_by}: {_summary(results)}; "
                  f"valid acc {results['valid']['acc']['mean']:.1f}", flush=True)
    return rows


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from mmaffect.commands.extract import items_from_manifest
    from mmaffect.extraction.pipeline import extract
    from mmaffect.extraction.summaries import VISUAL_VECTOR_NAMES
    from mmaffect.io import check_output_dir, write_json
    from mmaffect.training.config import ExperimentConfig
    from mmaffect.training.runs import run_experiment

    out = check_output_dir(Path(args.output) if args.output else cache_root() / "models" / "analysis")
    progress = not args.quiet
    seeds = list(range(args.seeds))
    if args.voice:
        cache = Path(args.ravdess_cache) if args.ravdess_cache else None
        if cache is not None and not (cache / "meta.json").is_file():
            raise DataError(cache, "not a feature cache (no meta.json); extract RAVDESS with "
                                   "--audio-encoders whisper or leave out --ravdess-cache")
        results = train_voice_model(out, seeds, cache, progress)
        return 0 if np.isfinite(results["test"]["wacc"]["mean"]) else 1
    print("1/3 text branch: text-mlp on iemocap8-text (train Sessions 2-4, valid 5, test 1)", flush=True)
    text = run_experiment(ExperimentConfig(dataset="iemocap8-text", model="text-mlp", seeds=[0]), out / "text",
                          progress=progress)
    print(f"    Session 1 test (all its utterances of the 8 classes): {_summary(text)}", flush=True)
    manifest_path = data_root() / "iemocap_clips" / "manifest.csv"
    print(f"2/3 extracting {manifest_path.parent}", flush=True)
    items, skipped = items_from_manifest(str(manifest_path), CLIP_COLUMNS)
    for line in skipped:
        print(f"    skipped: {line}", flush=True)
    report = extract(items, out / "clips", progress=progress)
    print(f"    {report.summary()}", flush=True)
    # speaker_gate and raw visual inputs: chosen on validation (CV by dialogue, 3 seeds): accuracy 47.2
    # against 44.1 without the gate and 43.2 with standardised visual inputs
    base = {"dataset": f"cache:{out / 'clips'}", "seeds": seeds, "standardize": ["a"],
            "model_args": {"text_init": str(out / "text" / "seed0" / "model.safetensors"), "speaker_gate": True,
                           "visual_names": list(VISUAL_VECTOR_NAMES)}}
    summary = {"text_branch_session1": text["test"]}
    manifest = pd.read_csv(manifest_path)
    for name, cv in EVALUATIONS.items():
        print(f"3/4 late-fusion on the clips, {cv.folds}-fold CV by {cv.group_by}", flush=True)
        results = {}
        for subset in ("t", "tav"):
            config = ExperimentConfig(model="late-fusion", modalities=list(subset), cv=cv, **base)
            folder = out / (name if subset == "tav" else f"{name}-text-only")
            results[subset] = run_experiment(config, folder, progress=progress)
            print(f"    {subset}: {_summary(results[subset])}", flush=True)
        relevance = visual_relevance(out / name, manifest)
        print(f"    mean visual relevance: speaker on screen {relevance['speaker_visible']:.3f}, "
              f"listener on screen {relevance['listener_visible']:.3f}", flush=True)
        summary[name] = {"cv": f"{cv.folds}-fold by {cv.group_by}", "text_only": results["t"]["test"],
                         "fusion": results["tav"]["test"], "valid": results["tav"]["valid"],
                         "visual_relevance": relevance}
    voice_model = best_voice_model(out) if args.voice_model is None else \
        None if args.voice_model == "none" else Path(args.voice_model)
    summary["default"] = "fusion"
    if voice_model is None:
        print("4/4 transfer skipped: no voice model (run `mmaffect train-analysis-model --voice` first)", flush=True)
    else:
        if not voice_model.is_file():
            raise DataError(voice_model, "no such voice model (an audio-mlp model.safetensors)")
        summary["voice_transfer"] = {"voice_model": str(voice_model),
                                     **voice_transfer(out, items, base, voice_model, progress)}
        # the default: the variant with the best validation accuracy, 5-fold by dialogue (never test)
        valid = {"fusion": summary["fusion"]["valid"]["acc"]["mean"]}
        valid |= {name: rows["fusion"]["valid"]["acc"]["mean"] for name, rows in summary["voice_transfer"].items()
                  if name != "voice_model"}
        summary["default"] = max(valid, key=lambda name: (valid[name], name == "fusion"))
        print("    validation acc (5-fold by dialogue): " + ", ".join(f"{k} {v:.1f}" for k, v in valid.items()),
              flush=True)
    write_json(out / "summary.json", summary)
    print(f"default analysis model: {out / summary['default']} ({len(seeds) * 5} fold models, averaged)")
    print(f"summary: {out / 'summary.json'}")
    return 0 if np.isfinite(summary["fusion"]["fusion"]["acc"]["mean"]) else 1
