"""The numbers behind the README's "default analysis model" paragraph, from the 40 IEMOCAP clips.

    python benchmarks/analysis_model.py [--output out/analysis] [--threads 1]

1. ``mmaffect train-analysis-model --output OUT`` (text branch, clip extraction, speaker-gated late
   fusion cross-validated by dialogue and by speaker; resumable, writes ``OUT/summary.json``);
2. the same late-fusion runs with a free gate (``speaker_gate`` off), so the gate comparison is
   measured on the same folds and seeds;
3. ``speaker_sync`` (visible mouth opening vs voice loudness) read from the clip cache: its mean on
   clips showing the speaker vs the listener (``speaker_visible`` in the manifest) and the ROC-AUC of
   telling them apart;
4. the voice transfer, when ``OUT/voice`` holds a voice model (``--voice`` trains it first from
   ``--ravdess-cache``): the fusion model with its audio branch from the RAVDESS ``audio-mlp``, frozen
   and fine-tuned, on the same folds and seeds, and which variant validation chose as the default.

Writes ``benchmarks/results/analysis_model.json``; ``benchmarks/report.py`` prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from mmaffect.cli import main as mmaffect
from mmaffect.commands.analysis_model import visual_relevance
from mmaffect.data import load_dataset
from mmaffect.extraction.summaries import VISUAL_VECTOR_NAMES
from mmaffect.io import check_output_file, write_json
from mmaffect.settings import data_root
from mmaffect.training.config import CVConfig, ExperimentConfig
from mmaffect.training.runs import run_experiment

RESULTS = Path(__file__).resolve().parent / "results" / "analysis_model.json"
EVALUATIONS = {"fusion": CVConfig(5, "dialogue_id"), "fusion-by-speaker": CVConfig(2, "speaker")}
SHOWN = ("acc", "f1_weighted")


def _stats(results: dict, split: str) -> dict:
    return {m: {"mean": results[split][m]["mean"], "std": results[split][m]["std"]} for m in SHOWN}


def speaker_sync_stats(clips: Path, manifest: pd.DataFrame) -> dict:
    """Mean ``speaker_sync`` with the speaker vs the listener on screen, and the ROC-AUC separating them."""
    data = load_dataset(f"cache:{clips}")
    sync = data.modalities["v"].vector[:, VISUAL_VECTOR_NAMES.index("speaker_sync")].numpy()
    visible = manifest.set_index("utterance_id").loc[data.ids, "speaker_visible"].to_numpy()
    return {"n_speaker_visible": int((visible == 1).sum()), "n_listener_visible": int((visible == 0).sum()),
            "mean_speaker_visible": float(sync[visible == 1].mean()),
            "mean_listener_visible": float(sync[visible == 0].mean()),
            "roc_auc": float(roc_auc_score(visible, sync))}


def free_gate(out: Path, seeds: list[int]) -> dict:
    """The default model's late-fusion runs with the gate learned freely (no speaker cue)."""
    manifest = pd.read_csv(data_root() / "iemocap_clips" / "manifest.csv")
    base = {"dataset": f"cache:{out / 'clips'}", "seeds": seeds, "standardize": ["a"], "modalities": ["t", "a", "v"],
            "model_args": {"text_init": str(out / "text" / "seed0" / "model.safetensors"), "speaker_gate": False}}
    rows = {}
    for name, cv in EVALUATIONS.items():
        folder = out / "free-gate" / name
        results = run_experiment(ExperimentConfig(model="late-fusion", cv=cv, **base), folder, progress=False)
        rows[name] = {"test": _stats(results, "test"), "valid": _stats(results, "valid"),
                      "visual_relevance": visual_relevance(folder, manifest)}
    return rows


def speaker_gate(out: Path, seeds: list[int]) -> dict:
    """Test and validation metrics of the default (speaker-gated) model, read back from its folders."""
    manifest = pd.read_csv(data_root() / "iemocap_clips" / "manifest.csv")
    rows = {}
    for name in EVALUATIONS:
        results = json.loads((out / name / "results.json").read_text())
        rows[name] = {"test": _stats(results, "test"), "valid": _stats(results, "valid"),
                      "visual_relevance": visual_relevance(out / name, manifest)}
    return rows


def voice_transfer_rows(summary: dict) -> dict | None:
    """Test and validation acc / F1w of the voice-transfer variants (None when no voice model was there)."""
    transfer = summary.get("voice_transfer")
    if not transfer:
        return None
    return {name: {evaluation: {"test": _stats({"test": r["fusion"]}, "test"), "valid": _stats(r, "valid")}
                   for evaluation, r in rows.items()}
            for name, rows in transfer.items() if name != "voice_model"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="out/analysis", help="model folder (resumable)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--voice", action="store_true",
                        help="first train the RAVDESS voice model into OUTPUT/voice (for the transfer step)")
    parser.add_argument("--ravdess-cache", help="with --voice: a RAVDESS cache with Whisper-encoder frames")
    args = parser.parse_args()
    check_output_file(args.results)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)
    out, seeds = Path(args.output), list(range(args.seeds))
    started, load = time.perf_counter(), os.getloadavg()
    if args.voice:
        code = mmaffect(["--threads", str(args.threads), "train-analysis-model", "--voice", "--output", str(out),
                         "--seeds", str(args.seeds), "--quiet",
                         *(["--ravdess-cache", args.ravdess_cache] if args.ravdess_cache else [])])
        if code != 0:
            raise SystemExit(code)
    code = mmaffect(["--threads", str(args.threads), "train-analysis-model", "--output", str(out),
                     "--seeds", str(args.seeds), "--quiet"])
    if code != 0:
        raise SystemExit(code)
    summary = json.loads((out / "summary.json").read_text())
    manifest = pd.read_csv(data_root() / "iemocap_clips" / "manifest.csv")
    result = {
        "command": f"python benchmarks/analysis_model.py --output {out} --threads {args.threads} --seeds {args.seeds}",
        "clips": len(manifest), "seeds": seeds,
        "summary": summary,
        "text_branch_session1_rows": json.loads((out / "text" / "seed0" / "result.json").read_text())["n_test"],
        "speaker_sync": speaker_sync_stats(out / "clips", manifest),
        "speaker_gate": speaker_gate(out, seeds),
        "free_gate": free_gate(out, seeds),
        "voice_transfer": voice_transfer_rows(summary),
        "default": summary.get("default", "fusion"),
        "wall_seconds": time.perf_counter() - started,
        "load_average_at_start": list(load), "load_average_at_end": list(os.getloadavg()),
    }
    write_json(args.results, result)
    s = result["speaker_sync"]
    print(f"speaker_sync: speaker on screen {s['mean_speaker_visible']:.2f}, "
          f"listener {s['mean_listener_visible']:.2f}, ROC-AUC {s['roc_auc']:.2f}")
    for name in EVALUATIONS:
        for gate in ("speaker_gate", "free_gate"):
            r = result[gate][name]
            print(f"{name} {gate}: test acc {r['test']['acc']['mean']:.1f}, valid acc {r['valid']['acc']['mean']:.1f}, "
                  f"visual relevance {r['visual_relevance']['speaker_visible']:.3f} / "
                  f"{r['visual_relevance']['listener_visible']:.3f}")
    for name, rows in (result["voice_transfer"] or {}).items():
        for evaluation, r in rows.items():
            print(f"{name} ({evaluation}): test acc {r['test']['acc']['mean']:.1f}, "
                  f"valid acc {r['valid']['acc']['mean']:.1f}")
    print(f"default (best validation acc, 5-fold by dialogue): {result['default']}")
    print(f"results: {args.results} ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
