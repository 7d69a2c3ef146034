"""Speech emotion from the voice alone on RAVDESS speech (1440 utterances, 24 actors, 8 emotions).

    mmaffect --threads 1 extract ../shared/data/ravdess_speech/manifest.csv --asr never --egemaps \\
        --columns id=utterance_id,label=emotion,speaker=actor,text= \\
        --audio-encoders logmel,whisper --whisper-window trim --output CACHE
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE \
        python benchmarks/speech_emotion.py --cache CACHE --work DIR [--rows NAME,...] [--speed]

Speaker-independent protocols only (actors never shared between train, valid and test):

* test split: train Actors 1-16, valid 17-20 (model selection, early stopping), test 21-24; seeds 0-2.
* 6-fold CV over the manifest's ``fold`` column (four actors per fold; valid = the next fold).

Rows: ``majority`` (the training majority class on every test row); ``logreg-*`` multinomial logistic
regression with ``C`` chosen on validation UA (the dataset README's floor recipe on our vectors,
deterministic, so one value); ``-spk`` rows z-score the audio features within each actor over all of
the actor's utterances (``speaker_norm``: no labels, but the test actors' unlabelled audio is used);
the engine's models ``audio-mlp`` (utterance vector), ``audio-asp``
(attentive statistics pooling over encoder frames) and ``audio-cnn`` (over log-mel or encoder frames),
trained through :func:`mmaffect.training.runs.run_experiment` exactly as ``mmaffect train`` does.
``--speed``: seconds per audio minute of each extractor on 48 files (two per actor), one thread.
``--analyze MODEL``: ``mmaffect analyze`` (ASR off) on one file per emotion and actor (statement 1,
repetition 1, normal intensity: 32 files of the 4 validation actors, 32 of the 4 test actors) with a
voice model trained on the fixed split (e.g. the folder of ``mmaffect train-analysis-model --voice``):
the label of the longest segment against the file's emotion, beside the same model's predictions on
the whole files read from the cache (the seeds' ``predictions.csv``, averaged) -- what cutting at
voice activity costs. Each ``--pads`` value (seconds of context around each speech window,
:func:`mmaffect.analysis.pad_windows`) is scored on the validation files; the best one is the value
to ship as ``analysis.PAD``; test files are reported for every value, the choice never looks at them.

Results are merged into ``benchmarks/results/speech_emotion.json`` row by row (re-running a row
replaces it), so rows can be run in separate processes.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "speech_emotion.json"
GRID = [1e-2, 1e-1, 1.0]
METRICS = ("acc", "wacc", "f1_weighted", "f1_macro")
READER = {"label": "label", "speaker": "speaker", "split": "split", "fold": "fold"}
_TRAIN = {"select": "wacc", "class_weights": "balanced", "epochs": 60, "patience": 10}

# name -> (model, dataset_args, model_args, train overrides). Hyper-parameters are fixed (no validation
# search) to keep the runs affordable on a shared 2-core machine.
_SPK = {"speaker_norm": True}
_MLP = ({"hidden": 256}, {"weight_decay": 1e-2})
ROWS: dict[str, tuple[str, dict, dict, dict]] = {
    "mlp-whisper-spk": ("audio-mlp", {"audio_vector": "whisper", **_SPK}, *_MLP),
    "asp-whisper-spk": ("audio-asp", {"audio_vector": "whisper", "audio_sequence": "whisper", **_SPK}, {}, {}),
    "mlp-whisper": ("audio-mlp", {"audio_vector": "whisper"}, *_MLP),
    "mlp-all-spk": ("audio-mlp", {"audio_vector": "functionals,egemaps,whisper", **_SPK}, *_MLP),
    "asp-whisper": ("audio-asp", {"audio_vector": "whisper", "audio_sequence": "whisper"}, {}, {}),
    "cnn-logmel-spk": ("audio-cnn", {"audio_sequence": "logmel", **_SPK}, {}, {}),
    "cnn-whisper-spk": ("audio-cnn", {"audio_vector": "whisper", "audio_sequence": "whisper", **_SPK},
                        {"channels": [128, 128]}, {}),
}
LOGREG = {"logreg-functionals-egemaps": ("functionals,egemaps", False), "logreg-whisper": ("whisper", False),
          "logreg-whisper-spk": ("whisper", True)}


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "values": v.tolist()}


def _split_rows(data) -> dict[str, np.ndarray]:
    return {s: np.flatnonzero(data.split == s) for s in ("train", "valid", "test")}


def _cv_rows(data) -> list[dict[str, np.ndarray]]:
    """Leave-one-fold-out over the fold column, valid = the next fold (as ``--cv column`` plans it)."""
    names = sorted(np.unique(data.fold).tolist())
    out = []
    for i, fold in enumerate(names):
        valid = names[(i + 1) % len(names)]
        out.append({"train": np.flatnonzero((data.fold != fold) & (data.fold != valid)),
                    "valid": np.flatnonzero(data.fold == valid), "test": np.flatnonzero(data.fold == fold)})
    return out


def majority(data) -> dict:
    from mmaffect.metrics import classification_metrics

    y = data.label.numpy()

    def score(rows):
        guess = np.bincount(y[rows["train"]]).argmax()
        return classification_metrics(np.full(len(rows["test"]), guess), y[rows["test"]])

    test = score(_split_rows(data))
    folds = [score(r) for r in _cv_rows(data)]
    return {"model": "majority class of the training rows", "test": {m: test[m] for m in METRICS},
            "cv": {m: _summary([f[m] for f in folds]) for m in METRICS}}


def logreg(data) -> dict:
    """Logistic regression, C on validation UA; standardised on the training rows."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from mmaffect.metrics import classification_metrics

    x_all = data.modalities["a"].vector.numpy().astype(np.float64)
    y = data.label.numpy()

    def fit(rows):
        scaler = StandardScaler().fit(x_all[rows["train"]])
        x = {k: scaler.transform(x_all[v]) for k, v in rows.items()}
        best = None
        for c in GRID:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LogisticRegression(C=c, max_iter=3000).fit(x["train"], y[rows["train"]])
            ua = classification_metrics(model.predict(x["valid"]), y[rows["valid"]])["wacc"]
            if best is None or ua > best[0]:
                best = (ua, c, model)
        return classification_metrics(best[2].predict(x["test"]), y[rows["test"]]), best[1]

    test, c = fit(_split_rows(data))
    folds = [fit(r) for r in _cv_rows(data)]
    return {"model": "logistic regression, C on valid UA", "C_test": c, "C_folds": [f[1] for f in folds],
            "test": {m: test[m] for m in METRICS}, "cv": {m: _summary([f[0][m] for f in folds]) for m in METRICS}}


def engine_row(cache: str, name: str, work: Path, seeds: int, cv_seeds: int, progress: bool) -> dict:
    from dataclasses import replace

    from mmaffect.models.registry import model_info
    from mmaffect.training.config import CVConfig, ExperimentConfig, TrainConfig
    from mmaffect.training.runs import run_experiment

    model, dataset_args, model_args, train = ROWS[name]
    # the model's registered training defaults (as `mmaffect train` applies them), then ours
    train_cfg = replace(TrainConfig(), **{**model_info(model).train_defaults, **_TRAIN, **train})
    base = dict(dataset=f"cache:{cache}", dataset_args={**READER, **dataset_args}, model=model,
                model_args=model_args, modalities=["a"], train=train_cfg)
    t0 = time.time()
    test = run_experiment(ExperimentConfig(**base, seeds=list(range(seeds))), work / f"{name}_test", progress)
    t1 = time.time()
    cv = run_experiment(ExperimentConfig(**base, seeds=list(range(cv_seeds)), cv=CVConfig(folds="column")),
                        work / f"{name}_cv", progress) if cv_seeds else None
    t2 = time.time()

    def pick(res):
        return {m: {"mean": res["test"][m]["mean"], "std": res["test"][m]["std"],
                    "per_seed": res["test"][m]["per_seed"]} for m in METRICS}

    return {"model": model, "dataset_args": dataset_args, "model_args": model_args,
            "train": {k: getattr(train_cfg, k) for k in ("lr", "batch_size", "epochs", "patience", "select",
                                                         "class_weights", "weight_decay")},
            "n_params": test["n_params"], "seeds": list(range(seeds)), "cv_seeds": list(range(cv_seeds)),
            "test": pick(test), "cv": pick(cv) if cv else None,
            "cv_split": cv["split"] if cv else None, "best_epochs_test": test["best_epochs"],
            "audio_vector": test["features"]["features"]["audio_vector"]["parts"],
            "audio_sequence": test["features"]["features"]["audio_sequence"]["pooling"],
            "train_seconds_test": round(t1 - t0, 1), "train_seconds_cv": round(t2 - t1, 1)}


def speed(cache_meta: dict, manifest: Path, n_per_actor: int = 2) -> dict:
    """Seconds per audio minute of each extractor stage on ``2 x 24`` files, one thread, both Whisper windows."""
    import csv

    from mmaffect.extraction.config import ExtractConfig, ExtractItem
    from mmaffect.extraction.stages import _Extractor

    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked, seen = [], {}
    for r in rows:
        if seen.get(r["actor"], 0) < n_per_actor and r["emotion"] in ("angry", "calm"):
            seen[r["actor"]] = seen.get(r["actor"], 0) + 1
            picked.append(ExtractItem(id=r["utterance_id"], path=manifest.parent / r["path"], text=""))
    out = {"files": len(picked), "threads": 1}
    for window in ("trim", "full"):
        config = ExtractConfig(asr="never", egemaps=True, audio_encoders=("logmel", "whisper"), whisper_window=window)
        ext = _Extractor(config, threads=1)
        ext._whisper = None
        ext.process(picked[0])  # warm-up: imports, model loading, numba compilation
        totals: dict[str, float] = {}
        media = 0.0
        for item in picked:
            result = ext.process(item)
            media += result.media_seconds
            for stage, sec in result.timings.items():
                totals[stage] = totals.get(stage, 0.0) + sec
        per_min = {stage: round(60.0 * sec / media, 3) for stage, sec in sorted(totals.items()) if stage != "hash"}
        out[f"whisper_window_{window}"] = {"audio_minutes": round(media / 60, 3), "seconds_per_audio_minute": per_min}
    out["note"] = ("'audio' = librosa LLDs + functionals, 'egemaps' = openSMILE eGeMAPSv02, 'logmel' = 64-band "
                   "log-mel, 'whisper' = Whisper tiny.en encoder (CTranslate2 int8); measured on a shared, loaded "
                   "2-core machine")
    return out


def analyze_check(analyzer, checkpoint: Path, manifest: Path, split: str, pad: float) -> dict:
    """``analyze`` on the 32 ``split`` files vs the model's whole-file predictions (see --analyze)."""
    import pandas as pd

    from mmaffect.errors import DataError

    rows = pd.read_csv(manifest)
    rows = rows[(rows.split == split) & (rows.statement == 1) & (rows.repetition == 1)
                & (rows.intensity == "normal")].sort_values(["actor", "emotion"])
    whole = pd.concat([pd.read_csv(f) for f in sorted(checkpoint.glob("seed*/predictions.csv"))])
    probs = [c for c in whole.columns if c.startswith("prob_")]
    whole = whole[whole.split == split].groupby("id")[probs].mean()
    analyzer.pad = pad
    files, started = [], time.perf_counter()
    for row in rows.itertuples():
        try:
            result = analyzer(manifest.parent / row.path)
        except DataError as exc:  # too quiet to find anything (Actor 20 has such files)
            files.append({"id": row.utterance_id, "emotion": row.emotion, "error": str(exc)})
            continue
        longest = max(result["segments"], key=lambda s: s["end"] - s["start"])
        whole_label = whole.loc[row.utterance_id].idxmax().removeprefix("prob_") \
            if row.utterance_id in whole.index else None  # a file the extractor found silent
        files.append({"id": row.utterance_id, "emotion": row.emotion, "segments": len(result["segments"]),
                      "analyze": longest["label"], "whole_file": whole_label})
    table = pd.DataFrame(files)
    table = table[table.get("error", pd.Series(index=table.index, dtype=object)).isna()]
    scored = table[table.whole_file.notna()]
    return {"split": split, "pad": pad, "files": files, "n": len(table), "n_failed": len(files) - len(table),
            "analyze_acc": 100.0 * float((table.analyze == table.emotion).mean()),
            "whole_file_acc": 100.0 * float((scored.whole_file == scored.emotion).mean()),
            "whole_file_n": len(scored),
            "agreement": 100.0 * float((scored.analyze == scored.whole_file).mean()),
            "seconds_per_file": (time.perf_counter() - started) / max(len(files), 1)}


def analyze_pads(checkpoint: Path, manifest: Path, threads: int, pads: list[float]) -> dict:
    """Every pad on the validation and the test files; the pad is chosen on validation accuracy only."""
    from mmaffect.analysis import Analyzer

    analyzer = Analyzer(checkpoint, threads=threads, asr="never")
    runs = {split: [analyze_check(analyzer, checkpoint, manifest, split, pad) for pad in pads]
            for split in ("valid", "test")}
    best = max(range(len(pads)), key=lambda i: (runs["valid"][i]["analyze_acc"], -pads[i]))
    return {"checkpoint": str(checkpoint), "pads": pads, "chosen_pad": pads[best],
            "criterion": "validation accuracy of the longest segment's label (ties: the smaller pad)", **runs}


def _cell(value) -> str:
    if value is None:
        return "not run"
    if isinstance(value, (int, float)):
        return f"{value:.1f}"
    if isinstance(value, str):
        return value
    return f"{value['mean']:.1f} ± {value['std']:.1f}"


def results_table(results: dict) -> str:
    """Test split and 6-fold actor CV of every row, beside the dataset README's floor."""
    ref = results["reference_floor"]
    lines = ["| row | model | audio features | test acc | test UA | 6-fold CV acc | 6-fold CV UA |",
             "|---|---|---|---|---|---|---|",
             f"| reference floor | logistic regression | MFCC/RMS/ZCR/centroid stats (dataset README) | "
             f"{ref['test']['acc']} | {ref['test']['wacc']} | {ref['cv']['acc']} | {ref['cv']['wacc']} |"]
    order = ["majority", *LOGREG, *ROWS]
    for name in sorted(results["rows"], key=order.index):
        row = results["rows"][name]
        args = row.get("dataset_args", {})
        feats = "-" if name == "majority" else (args.get("audio_sequence") or args.get("audio_vector"))
        if args.get("speaker_norm"):
            feats += ", speaker_norm"
        model = "majority class" if name == "majority" else row["model"].split(",")[0]
        cv = row.get("cv") or {}
        lines.append(f"| {name} | {model} | {feats} | {_cell(row['test']['acc'])} | {_cell(row['test']['wacc'])} | "
                     f"{_cell(cv.get('acc'))} | {_cell(cv.get('wacc'))} |")
    return "\n".join(lines)


def speed_table(results: dict) -> str:
    """Extraction seconds per audio minute of each extractor."""
    sp = results["extraction_speed"]
    trim, full = (sp[f"whisper_window_{w}"]["seconds_per_audio_minute"] for w in ("trim", "full"))
    rows = ["| extractor | s per audio minute |", "|---|---|"]
    rows += [f"| {k} | {trim[k]:.2f} |" for k in ("decode", "audio", "egemaps", "logmel")]
    rows += [f"| whisper, --whisper-window trim | {trim['whisper']:.2f} |",
             f"| whisper, --whisper-window full | {full['whisper']:.2f} |"]
    return "\n".join(rows)


def analyze_table(results: dict) -> str:
    """What analyze's cutting costs: windows with 0-2 s of context per side, chosen on validation files."""
    a = results["analyze"]
    rows = ["| context per side | validation files correct | test files correct | "
            "test: same label as the whole file |", "|---|---|---|---|"]
    for valid, test in zip(a["valid"], a["test"], strict=True):
        pad = f"{valid['pad']:g} s" + (" (default)" if valid["pad"] == a["chosen_pad"] else "")
        cells = [pad, f"{valid['analyze_acc']:.1f} %", f"{test['analyze_acc']:.1f} %"]
        if valid["pad"] == a["chosen_pad"]:
            cells = [f"**{c}**" for c in cells]
        rows.append(f"| {' | '.join(cells)} | {test['agreement']:.1f} % |")
    return "\n".join(rows)


def table(results: dict) -> str:
    """The markdown tables of docs/voice.md, printed from a results file (``--table``)."""
    parts = [results_table(results)]
    parts += [speed_table(results)] if "extraction_speed" in results else []
    parts += [analyze_table(results)] if "analyze" in results else []
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", help="RAVDESS cache extracted as in the module docstring")
    p.add_argument("--work", help="folder for the runs (resumable)")
    p.add_argument("--rows", help="comma-separated rows (default: all): majority, " + ", ".join([*LOGREG, *ROWS]))
    p.add_argument("--seeds", type=int, default=3, help="seeds on the test split (default 3)")
    p.add_argument("--cv-seeds", type=int, default=1, help="seeds per CV fold (default 1; 0 = no CV)")
    p.add_argument("--speed", action="store_true", help="also measure extraction speed")
    p.add_argument("--analyze", metavar="MODEL", help="only: analyze 32 valid + 32 test files with this voice model")
    p.add_argument("--pads", default="0,0.25,0.5,1", help="with --analyze: context seconds to compare")
    p.add_argument("--manifest", default=str(Path(os.environ.get("MMAFFECT_DATA", "../shared/data"))
                                             / "ravdess_speech" / "manifest.csv"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=str(RESULTS), help=f"results file (default {RESULTS})")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--table", action="store_true", help="only print the markdown tables of the results file")
    args = p.parse_args(argv)

    import json

    if args.table:
        print(table(json.loads(Path(args.results).read_text())))
        return 0
    import torch

    import mmaffect.models.audio  # noqa: F401  (registers audio-cnn / audio-asp)
    from mmaffect.data import load_dataset
    from mmaffect.extraction.cache import FeatureCache
    from mmaffect.io import check_output_file, write_json

    if args.analyze:
        results_path = check_output_file(args.results)
        results = json.loads(results_path.read_text()) if results_path.exists() else {"rows": {}}
        results["analyze"] = analyze_pads(Path(args.analyze), Path(args.manifest), args.threads,
                                          [float(x) for x in args.pads.split(",")])
        write_json(results_path, results)
        a = results["analyze"]
        for split in ("valid", "test"):
            for r in a[split]:
                print(f"analyze, {split} files, pad {r['pad']}: acc {r['analyze_acc']:.1f} (longest segment) vs "
                      f"{r['whole_file_acc']:.1f} (whole files, cache); agreement {r['agreement']:.1f}")
        print(f"chosen on validation: pad {a['chosen_pad']}")
        return 0
    if not (args.cache and args.work):
        p.error("--cache and --work are required (except with --table)")
    torch.set_num_threads(args.threads)
    results_path = check_output_file(args.results)
    results = json.loads(results_path.read_text()) if results_path.exists() else {"rows": {}}
    wanted = args.rows.split(",") if args.rows else ["majority", *LOGREG, *ROWS]
    unknown = [r for r in wanted if r not in ("majority", *LOGREG, *ROWS)]
    if unknown:
        p.error(f"unknown rows {unknown}")
    with FeatureCache(args.cache) as cache:
        meta = cache.meta
    results.update(
        dataset="RAVDESS speech (../shared/data/ravdess_speech), 1440 utterances, 24 actors, 8 emotions",
        protocols={"test": "train Actors 1-16, valid 17-20, test 21-24", "cv": "6 folds of 4 actors (fold column), "
                   "valid = next fold"},
        reference_floor={"source": "ravdess_speech/README.md (40 MFCC + deltas, RMS, ZCR, centroid; mean/std; "
                                   "logistic regression, C on valid UA)",
                         "test": {"acc": 42.9, "wacc": 41.4, "f1_weighted": 42.7},
                         "cv": {"acc": "48.0 ± 5.9", "wacc": "46.5 ± 5.4"}},
        extraction={"config": meta["config"], "extractors": meta["extractors"], "versions": meta["versions"]},
        metrics={"acc": "accuracy", "wacc": "UA (mean per-class recall)", "f1_weighted": "weighted F1",
                 "f1_macro": "macro F1"})
    work = Path(args.work)
    for name in wanted:
        t0 = time.time()
        if name == "majority" or name in LOGREG:
            opts = {} if name == "majority" else {"audio_vector": LOGREG[name][0], "speaker_norm": LOGREG[name][1]}
            data = load_dataset(f"cache:{args.cache}", **READER, **opts).with_modalities(["a"])
            row = majority(data) if name == "majority" else {**logreg(data), "dataset_args": opts}
        else:
            row = engine_row(args.cache, name, work, args.seeds, args.cv_seeds, not args.quiet)
        row["seconds"] = round(time.time() - t0, 1)
        if results_path.exists():  # rows finished meanwhile by another process running other rows
            results["rows"] = {**json.loads(results_path.read_text())["rows"], **results["rows"]}
        results["rows"][name] = row
        write_json(results_path, results)
        t = row["test"]["wacc"]
        t = f"{t:.1f}" if isinstance(t, float) else f"{t['mean']:.1f} ± {t['std']:.1f}"
        c = f"{row['cv']['wacc']['mean']:.1f} ± {row['cv']['wacc']['std']:.1f}" if row["cv"] else "not run"
        print(f"{name}: test UA {t}; CV UA {c}", flush=True)
    if args.speed:
        results["extraction_speed"] = speed(meta, Path(args.manifest))
        write_json(results_path, results)
        print(json.dumps(results["extraction_speed"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
