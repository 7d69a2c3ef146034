"""Small data: do our default models reach a linear floor on the same features? (issue 16, item 14)

    OMP_WAIT_POLICY=PASSIVE python benchmarks/small_data.py --work /tmp/small_data --threads 1
    python benchmarks/small_data.py --work DIR --only text --seeds 1      # a quick look at one part

Two comparisons, each on exactly the rows, vectors and folds the models get:

* ``text``: 800 binary MELD rows (``train_sent_emo.csv``, Sentiment positive vs negative, a fixed
  random sample with seed 0, written to ``WORK/meld_binary800.csv`` -- never into the repository),
  read by the ``manifest:`` reader (MiniLM sentence vectors), 3-fold stratified CV grouped by
  dialogue (valid = the next fold, so each run trains on ~267 rows).
* ``audio``: RAVDESS speech (1440 files, 24 actors, audio only), features from ``mmaffect extract
  --asr never --egemaps`` into ``--cache`` (run here if the cache is not complete; resumable), read as
  ``cache:CACHE``; leave-four-actors-out over the manifest's 6 ``fold`` values (``--cv column``),
  audio vector with and without the 88 eGeMAPS functionals.

Rows per comparison: ``floor`` = scikit-learn ``LogisticRegression`` on the features standardised on
the training rows, ``C`` from a fixed grid chosen by validation UA (the RAVDESS README's recipe),
deterministic, one value per fold; ``<modality>-mlp`` = the registered default, which on small
training sets now chooses width and weight decay on validation (:mod:`mmaffect.training.selection`);
``<modality>-mlp (fixed)`` = the recipe before that change (256 hidden units, no weight decay, no
search); ``linear`` = the registered linear model, its weight decay chosen on validation. Models are
trained through :func:`mmaffect.training.runs.run_one`, as ``mmaffect train`` does, for ``--seeds``
seeds; mean ± sample std over all (seed, fold) runs. The chosen values of every run are recorded.

Writes ``benchmarks/results/small_data.json`` (or ``--output``; a part run with ``--only`` replaces
that part), with the load average at the start and the end (the machine is shared; timings are not
the point here, the accuracies are).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from mmaffect.data.dataset import Modality  # noqa: E402
from mmaffect.io import check_output_dir, check_output_file, write_json  # noqa: E402
from mmaffect.models.registry import MODELS  # noqa: E402
from mmaffect.settings import data_root  # noqa: E402
from mmaffect.training.config import load_config  # noqa: E402
from mmaffect.training.runs import load_experiment_data, plan_runs, run_one, summarise  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "small_data.json"
FLOOR_C = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)  # chosen values were 3e-3..0.1 on both data sets
RAVDESS_COLUMNS = "path=path,id=utterance_id,text=,label=emotion,speaker=actor,split=split,fold=fold"
N_EGEMAPS = 88
PARTS = ("text", "audio", "audio_no_egemaps")


def meld_binary_manifest(work: Path) -> Path:
    """800 positive/negative MELD training rows (seed 0) as a manifest in ``work``."""
    frame = pd.read_csv(data_root() / "meld" / "train_sent_emo.csv")
    rows = frame[frame.Sentiment.isin(["positive", "negative"])].sample(n=800, random_state=0)
    manifest = pd.DataFrame({"id": [f"train_{d}_{u}" for d, u in zip(rows.Dialogue_ID, rows.Utterance_ID, strict=True)],
                             "text": rows.Utterance, "label": rows.Sentiment, "speaker": rows.Speaker,
                             "dialogue_id": rows.Dialogue_ID})
    path = work / "meld_binary800.csv"
    manifest.to_csv(path, index=False)
    return path


def ensure_ravdess_cache(cache: Path, threads: int) -> None:
    """Run (or resume) ``mmaffect extract`` on the RAVDESS manifest; a complete cache is a no-op."""
    manifest = data_root() / "ravdess_speech" / "manifest.csv"
    command = [sys.executable, "-m", "mmaffect.cli", "--threads", str(threads), "extract", str(manifest),
               "--output", str(cache), "--asr", "never", "--egemaps", "--workers", "1",
               "--columns", RAVDESS_COLUMNS, "--quiet"]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def floor(data, plans) -> dict:
    """Logistic regression per plan on the concatenated vectors, C chosen on validation UA."""
    x = np.concatenate([m.vector.numpy() for m in data.modalities.values()], axis=1)
    y = data.label.numpy()
    acc, ua, chosen = [], [], []
    for plan in plans:
        scaler = StandardScaler().fit(x[plan.train])
        best = None
        for c in FLOOR_C:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(x[plan.train]), y[plan.train])
            value = balanced_accuracy_score(y[plan.valid], model.predict(scaler.transform(x[plan.valid])))
            if best is None or value > best[0]:
                best = (value, c, model)
        pred = best[2].predict(scaler.transform(x[plan.test]))
        acc.append(100.0 * float(np.mean(pred == y[plan.test])))
        ua.append(100.0 * float(balanced_accuracy_score(y[plan.test], pred)))
        chosen.append(best[1])
    return {"acc": summarise(acc), "ua": summarise(ua), "chosen": [{"C": c} for c in chosen],
            "folds": [p.fold for p in plans]}


def train(config, data, workdir: Path) -> dict:
    """Every (seed, fold) of ``config`` on ``data`` through ``run_one``; resumable per run."""
    records = []
    for plan in plan_runs(data, config):
        rundir = workdir / plan.name
        done = rundir / "result.json"
        records.append(json.loads(done.read_text()) if done.exists()
                       else run_one(config, data, plan, rundir, progress=False))
    ua_key = "wacc"
    return {"acc": summarise([r["test"]["acc"] for r in records]),
            "ua": summarise([r["test"][ua_key] for r in records]),
            "valid_acc": summarise([r["valid"]["acc"] for r in records]),
            "chosen": [(r.get("search") or {}).get("chosen") for r in records],
            "runs": [{"seed": r["seed"], "fold": r["fold"], "n_train": r["n_train"]} for r in records],
            "seconds": float(sum(r["seconds"] for r in records))}


def comparison(name: str, overrides: dict, data, mlp: str, work: Path, seeds: list[int]) -> dict:
    """Floor, searched MLP, fixed MLP and linear on ``data`` (already loaded, the plans' rows)."""
    rows = {}
    base = load_config(None, {**overrides, "model": "linear", "seeds": seeds})
    plans = plan_runs(data, replace(base, seeds=[0]))
    rows["floor (logistic regression)"] = floor(data, plans)
    print(f"[{name}] floor: acc {rows['floor (logistic regression)']['acc']['mean']:.1f}", flush=True)
    for label, model in ((mlp, mlp), (f"{mlp} (fixed)", mlp), ("linear", "linear")):
        fixed = {"search": {}} if label.endswith("(fixed)") else {}  # the recipe before validation search
        config = load_config(None, {**overrides, "model": model, "seeds": seeds, **fixed})
        folder = work / name / label.replace(" ", "_").replace("(", "").replace(")", "")
        rows[label] = train(config, data, folder)
        print(f"[{name}] {label}: acc {rows[label]['acc']['mean']:.1f} ua {rows[label]['ua']['mean']:.1f}",
              flush=True)
    return {"n_rows": len(data), "folds": sorted({p.fold for p in plans}), "seeds": seeds, "rows": rows}


def without_egemaps(data):
    """The audio vector without its 88 eGeMAPS columns (they sit between the functionals and the flags)."""
    names = data.meta["features"]["audio_vector"]["names"]
    keep = [i for i, n in enumerate(names) if not n.startswith("egemaps_")]
    if len(names) - len(keep) != N_EGEMAPS:
        raise SystemExit(f"expected {N_EGEMAPS} eGeMAPS columns in the cache, found {len(names) - len(keep)}")
    return replace(data, modalities={"a": Modality(data.modalities["a"].vector[:, keep])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", required=True, type=Path, help="folder for the manifest and runs (not the repo)")
    parser.add_argument("--cache", type=Path, help="RAVDESS feature cache (default WORK/ravdess_cache)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-extract", action="store_true",
                        help="read --cache as it is (a complete, read-only cache: extract would rewrite its report)")
    parser.add_argument("--only", choices=PARTS, help="run one part (the others in the output are kept)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    check_output_file(args.output)
    check_output_dir(args.work).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    started, load_start = time.time(), os.getloadavg()
    results: dict = {}
    if args.only in (None, "text"):
        manifest = meld_binary_manifest(args.work)
        overrides = {"dataset": f"manifest:{manifest}", "cv": {"folds": 3, "group_by": "dialogue_id"}}
        data = load_experiment_data(load_config(None, {**overrides, "model": "text-mlp"}))
        results["text"] = {"data": "MELD train, 800 positive/negative rows (pandas sample, random_state=0), "
                                   "MiniLM sentence vectors", "split": "3-fold stratified group CV by dialogue_id, "
                                   "valid = next fold",
                           **comparison("text", overrides, data, "text-mlp", args.work, seeds)}
    if args.only in (None, "audio", "audio_no_egemaps"):
        cache = args.cache or args.work / "ravdess_cache"
        if not args.no_extract:
            ensure_ravdess_cache(cache, args.threads)
        overrides = {"dataset": f"cache:{cache}", "cv": {"folds": "column", "group_by": "group"},
                     "modalities": ["a"]}
        data = load_experiment_data(load_config(None, {**overrides, "model": "audio-mlp"}))
        skipped = data.meta.get("skipped", {})
        about = {"data": f"RAVDESS speech, {len(data)} of 1440 files (extraction failed: "
                         f"{', '.join(sorted(skipped)) or 'none'})",
                 "split": "leave-one-fold-out over the manifest's 6 actor folds (4 actors each), valid = next fold"}
        if args.only in (None, "audio"):
            results["audio"] = {**about, "features": "LLD functionals + eGeMAPS",
                                **comparison("audio", overrides, data, "audio-mlp", args.work, seeds)}
        if args.only in (None, "audio_no_egemaps"):
            results["audio_no_egemaps"] = {**about, "features": "LLD functionals only",
                                           **comparison("audio_no_egemaps", overrides, without_egemaps(data),
                                                        "audio-mlp", args.work, seeds)}
    for part in results:
        results[part]["environment"] = {
            "threads": args.threads, "load_average_start": load_start, "load_average_end": os.getloadavg(),
            "seconds": time.time() - started, "python": platform.python_version(), "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    merged = json.loads(args.output.read_text()) if args.output.is_file() else {}  # --only re-runs one part
    merged.update(results)
    merged["search_defaults"] = {name: {"space": {k: list(v) for k, v in info.search.items()},
                                        "max_train_rows": info.search_max_train_rows}
                                 for name, info in sorted(MODELS.items()) if info.search}
    write_json(args.output, merged)
    for part, res in results.items():
        print(f"\n{part}: {res['split']}; seeds {res['seeds']}")
        for label, row in res["rows"].items():
            print(f"  {label:30s} acc {row['acc']['mean']:5.1f} ± {row['acc']['std']:4.1f}   "
                  f"UA {row['ua']['mean']:5.1f} ± {row['ua']['std']:4.1f}")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
