"""Cost model: measured per-item costs -> projected wall time and cost at scale (issue 24, item 4).

    python benchmarks/cost_model.py                 # writes benchmarks/results/cost_model.json
    python benchmarks/cost_model.py --markdown      # also prints the tables of docs/scaling.md

Reads only measured results in ``benchmarks/results`` (nothing here is timed):
``extraction_speed.json`` (the 40 IEMOCAP clips, 1 and 2 pinned workers), ``train-speed_*.json``
and ``speed_*.json`` (seconds per epoch on an idle machine), the ``results.json`` copies of training
runs (``<dataset>_<model>.json``; seconds per epoch include the validation pass), and this issue's
``ray_extract.json``, ``stream_epoch.json`` and ``tune_demo.json`` when present.

Projection rules (the assumptions, also written into the JSON):

* extraction is item-parallel: wall = media seconds x core-seconds per media second / N cores +
  one model load per worker; core-seconds per media second come from the 2-worker run on 2 cores
  (both cores busy), i.e. 2 x its steady real-time factor. One writer commits results; at ~25 KB per
  media second of cache this is not the bottleneck below ~100 cores (not measured beyond 2).
* training cost per utterance-epoch = seconds per epoch / training rows (validation pass included);
  a run is ``EPOCHS`` epochs over the training rows; N workers run N seeds or search trials at once
  (data parallelism inside one run did not pay on small models here: bc-LSTM 0.155 s/epoch on 2
  processes vs 0.120 on 1).
* money = core-hours x ``--usd-per-core-hour`` (default 0.04, a typical on-demand cloud vCPU price;
  change it to yours).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmaffect.io import check_output_file, write_json

RESULTS = Path(__file__).resolve().parent / "results"
EPOCHS = 30  # epochs per run assumed in projections (early stopping typically ends 20-60 epochs in)
CORPORA = {  # name -> (utterances, media hours, training utterances)
    "CMU-MOSEI (23,453 utterances, 65.9 h of video: the published total, an upper bound on the utterance windows)":
        (23_453, 65.9, 16_326),
    "a 1000-hour corpus (~800k utterances of 4.5 s, 70 % for training)": (800_000, 1000.0, 560_000),
}
WORKERS = (1, 2, 8, 32, 128)
TRAIN_ROWS = {"mosi-bclstm": 1209, "iemocap6-text": 5163, "meld7-text": 9989}
# (label, file, dataset, how to read seconds per epoch, cores used = threads x processes)
TRAINING = [
    ("lf-dnn, 1 thread, batch 64 (idle)", "train-speed_mosi-bclstm_lf-dnn.json", "mosi-bclstm", (1, 64), 1),
    ("lmf, 1 thread, batch 64 (idle)", "train-speed_mosi-bclstm_lmf.json", "mosi-bclstm", (1, 64), 1),
    ("tfn, 1 thread, batch 512 (idle)", "train-speed_mosi-bclstm_tfn.json", "mosi-bclstm", (1, 512), 1),
    ("tfn, 2 threads, batch 512 (idle)", "train-speed_mosi-bclstm_tfn.json", "mosi-bclstm", (2, 512), 2),
    ("bc-lstm, 1 process (idle)", "speed_bc-lstm_1p.json", "mosi-bclstm", None, 1),
    ("bc-lstm, 2 processes (idle)", "speed_bc-lstm_2p.json", "mosi-bclstm", None, 2),
    ("text-mlp, 2 threads (shared machine)", "iemocap6-text_text-mlp.json", "iemocap6-text", None, 2),
    ("ef-lstm on MiniLM token sequences, 2 threads (shared machine)", "iemocap6-text_ef-lstm.json",
     "iemocap6-text", None, 2),
    ("text-finetune (MiniLM fine-tuned), 2 threads (idle)", "speed_text-finetune_iemocap6-text.json",
     "iemocap6-text", None, 2),
]


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def extraction_costs() -> dict:
    speed = load("extraction_speed.json")
    runs = speed["runs"]
    out = {"source": "extraction_speed.json", "media_seconds": runs["pipeline_w1"]["media_seconds"],
           "startup_seconds_per_worker": runs["pipeline_w1"]["startup_seconds"], "pipelines": {}}
    for name, w1, w2 in (("transcripts given", "pipeline_w1", "pipeline_w2"),
                         ("with ASR (Whisper tiny.en)", "pipeline_asr_w1", "pipeline_asr_w2")):
        out["pipelines"][name] = {
            "wall_s_1_worker": runs[w1]["wall_seconds"], "wall_s_2_workers": runs[w2]["wall_seconds"],
            "steady_rtf_1_worker": runs[w1]["steady_rtf_approx"], "steady_rtf_2_workers": runs[w2]["steady_rtf_approx"],
            "core_seconds_per_media_second": 2 * runs[w2]["steady_rtf_approx"]}
    out["stages_core_seconds_per_media_second"] = {
        stage: v["rtf"] for stage, v in runs["pipeline_asr_w1"]["stages"].items() if v["rtf"] >= 0.001}
    out["stages_core_seconds_per_media_second"]["text embedding (MiniLM)"] = speed["text_embedding"][0]["rtf"]
    ray = load("ray_extract.json")
    if ray:
        out["ray_2_workers"] = {"serial_seconds": ray["serial_seconds"], "ray_seconds": ray["ray_2_workers_seconds"],
                                "cache_equal": ray["serial_vs_ray"]["equal"], "reports_equal": ray["reports_equal"]}
    return out


def seconds_per_epoch(record: dict, pick) -> float:
    if pick is None:
        return record["seconds_per_epoch"]
    threads, batch = pick
    return next(r["median_epoch_s"] for r in record["rows"] if r["threads"] == threads and r["batch_size"] == batch)


def training_costs() -> list[dict]:
    rows = []
    for label, name, dataset, pick, cores in TRAINING:
        record = load(name)
        if record is None:
            continue
        spe = seconds_per_epoch(record, pick)
        rows.append({"model": label, "source": name, "dataset": dataset, "train_rows": TRAIN_ROWS[dataset],
                     "seconds_per_epoch": spe, "cores": cores,
                     "ms_per_utterance_epoch": 1000 * spe / TRAIN_ROWS[dataset]})
    stream = load("stream_epoch.json")
    if stream:
        rows.append({"model": "audio-asp on 50 Hz audio descriptors, streamed from shards, 1 thread (shared machine)",
                     "source": "stream_epoch.json", "dataset": "synthetic 200k", "train_rows": stream["train_rows"],
                     "seconds_per_epoch": stream["epoch_seconds"], "cores": 1,
                     "ms_per_utterance_epoch": 1000 * stream["epoch_seconds"] / stream["train_rows"]})
    return rows


def projections(extraction: dict, training: list[dict], usd: float) -> dict:
    out = {}
    for corpus, (utterances, hours, train_rows) in CORPORA.items():
        media = hours * 3600
        block = {"utterances": utterances, "media_hours": hours, "train_utterances": train_rows, "extraction": {},
                 "training": {}}
        for name, p in extraction["pipelines"].items():
            core_s = media * p["core_seconds_per_media_second"]
            block["extraction"][name] = {
                "core_hours": core_s / 3600, "usd": core_s / 3600 * usd,
                "wall_hours": {n: (core_s / n + extraction["startup_seconds_per_worker"]) / 3600 for n in WORKERS}}
        for row in training:
            wall = train_rows * EPOCHS * row["ms_per_utterance_epoch"] / 1000
            core_h = wall * row["cores"] / 3600
            block["training"][row["model"]] = {"wall_hours_per_run": wall / 3600, "core_hours_per_run": core_h,
                                               "usd_per_run": core_h * usd}
        out[corpus] = block
    return out


def tune_costs() -> list[dict]:
    demo = load("tune_demo.json")
    if not demo:
        return []
    rows = []
    for row in demo["rows"]:
        search = row["search"]
        max_epochs = row["best_config"]["train"]["epochs"]
        rows.append({"dataset": row["dataset"], "model": row["model"], "trials": search["trials"],
                     "epochs_trained": search["epochs_trained"], "epochs_without_asha": search["trials"] * max_epochs,
                     "status": search["status"], "wall_seconds": row["wall_seconds"]})
    return rows


def markdown(result: dict) -> str:
    ext = result["extraction"]
    lines = ["| pipeline | wall, 1 worker | wall, 2 workers | core-s per media s |", "|---|---|---|---|"]
    for name, p in ext["pipelines"].items():
        lines.append(f"| {name} | {p['wall_s_1_worker']:.1f} s | {p['wall_s_2_workers']:.1f} s | "
                     f"{p['core_seconds_per_media_second']:.3f} |")
    lines += ["", "| stage (1 worker, ASR run) | core-s per media s |", "|---|---|"]
    lines += [f"| {s} | {v:.4f} |" for s, v in ext["stages_core_seconds_per_media_second"].items()]
    lines += ["", "| model (data) | s/epoch | training rows | ms per utterance-epoch |", "|---|---|---|---|"]
    for r in result["training"]:
        lines.append(f"| {r['model']} ({r['dataset']}) | {r['seconds_per_epoch']:.3f} | {r['train_rows']} | "
                     f"{r['ms_per_utterance_epoch']:.3f} |")
    for corpus, block in result["projections"].items():
        walls = " | ".join(f"wall, {n} core{'s' if n > 1 else ''}" for n in WORKERS)
        lines += ["", f"**{corpus}**", "", f"| extraction | core-hours | USD | {walls} |",
                  "|---|---|---|" + "---|" * len(WORKERS)]
        for name, p in block["extraction"].items():
            lines.append(f"| {name} | {p['core_hours']:.1f} | {p['usd']:.2f} | "
                         + " | ".join(_hours(p["wall_hours"][n]) for n in WORKERS) + " |")
        lines += ["", f"| training, one run of {EPOCHS} epochs over {block['train_utterances']:,} utterances "
                  "| wall | core-hours | USD |", "|---|---|---|---|"]
        for name, p in block["training"].items():
            lines.append(f"| {name} | {_hours(p['wall_hours_per_run'])} | {p['core_hours_per_run']:.3g} | "
                         f"{p['usd_per_run']:.2g} |")
    if result["tune"]:
        lines += ["", "| tune demo | trials | ASHA stopped | epochs trained | epochs without ASHA | wall |",
                  "|---|---|---|---|---|---|"]
        for r in result["tune"]:
            stopped = r["status"].get("stopped early by ASHA", 0)
            lines.append(f"| {r['model']} on {r['dataset'][:30]} | {r['trials']} | {stopped} | {r['epochs_trained']} | "
                         f"{r['epochs_without_asha']} | {r['wall_seconds']:.0f} s |")
    return "\n".join(lines)


def _hours(h: float) -> str:
    return f"{h * 3600:.0f} s" if h < 1 / 60 else f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--usd-per-core-hour", type=float, default=0.04)
    parser.add_argument("--output", type=Path, default=RESULTS / "cost_model.json")
    parser.add_argument("--markdown", action="store_true", help="print the tables of docs/scaling.md")
    args = parser.parse_args()
    check_output_file(args.output)
    extraction, training = extraction_costs(), training_costs()
    result = {"assumptions": {"epochs_per_run": EPOCHS, "usd_per_core_hour": args.usd_per_core_hour,
                              "corpora": {k: {"utterances": u, "media_hours": h, "train_utterances": t}
                                          for k, (u, h, t) in CORPORA.items()},
                              "extraction": "item-parallel, core-seconds per media second from 2 pinned workers on "
                                            "2 cores, plus one model load per worker",
                              "training": "one run = epochs x training rows x measured cost per utterance-epoch; "
                                          "N workers run N runs (seeds, trials) at once"},
              "extraction": extraction, "training": training, "tune": tune_costs(),
              "projections": projections(extraction, training, args.usd_per_core_hour)}
    write_json(args.output, result)
    if args.markdown:
        print(markdown(result))
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
