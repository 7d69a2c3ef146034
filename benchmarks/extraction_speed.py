"""Extraction speed on the 40 real IEMOCAP clips: per-stage throughput and real-time factor (RTF).

    python benchmarks/extraction_speed.py                # writes benchmarks/results/extraction_speed.json
    python benchmarks/extraction_speed.py --limit 4 --workers 1 --output /tmp/quick.json   # a quick check

RTF = processing seconds / media seconds (lower is faster; the issue's target for the whole
pipeline is <= 0.5 on 2 cores). For each worker count (1 and 2) the script runs the whole pipeline
into a fresh temporary cache twice:

* ``pipeline``: the default configuration; the clips come with transcripts, so ASR is skipped;
* ``pipeline_asr``: ``asr="always"``, i.e. what a dataset without transcripts costs; this run gives
  the ASR stage its numbers.

Per stage (decode, asr, audio, face, geometry, hash) ``seconds`` is summed over items as measured
inside the workers; ``rtf`` = that / media seconds (cost per media second, on one core), and
``wall_rtf`` = ``rtf / workers`` (the stage's share of the wall clock when the workers run in
parallel). Whole-pipeline numbers are wall-clock, from the call to the last commit, including
worker start-up (spawn + model loading, also reported alone as ``startup_seconds``, the time to the
first committed item). Text embedding (MiniLM, the dataset layer's stage) is timed on the 40
transcripts with 1 and 2 torch threads, model load excluded.

Run it on an otherwise idle machine: the load average at the start is recorded.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch/onnx/ctranslate2 are imported
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

TARGET_RTF = 0.5
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "extraction_speed.json"


def _items():
    from mmaffect.commands.extract import items_from_manifest
    from mmaffect.settings import data_root

    manifest = data_root() / "iemocap_clips" / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"{manifest} not found: set MMAFFECT_DATA to the folder holding iemocap_clips/")
    items, skipped = items_from_manifest(str(manifest), "path=clip_file,text=transcript,id=utterance_id")
    if skipped:
        sys.exit("\n".join(map(str, skipped)))
    return items


def _pipeline_run(items, workers: int, config) -> dict:
    from mmaffect.extraction.pipeline import extract

    first: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mmaffect-bench-") as tmp:
        started = time.perf_counter()
        report = extract(items, Path(tmp) / "cache", config, workers=workers, progress=False,
                         on_result=lambda *_: first.append(time.perf_counter()) if not first else None)
        wall = time.perf_counter() - started
    media = report.media_seconds
    stages = {
        stage: {"seconds": round(sec, 3), "rtf": round(sec / media, 4), "wall_rtf": round(sec / media / workers, 4),
                "media_seconds_per_second": round(media / sec, 1) if sec > 0 else None}
        for stage, sec in sorted(report.stage_seconds.items())
    }
    startup = (first[0] - started) if first else None
    steady = (wall - startup) / (media * (len(items) - 1) / len(items)) if startup is not None else None
    return {
        "workers": workers, "items": report.n_items, "extracted": report.n_extracted, "failed": report.n_failed,
        "media_seconds": round(media, 3), "wall_seconds": round(wall, 3), "rtf": round(wall / media, 4),
        "items_per_second": round(report.n_items / wall, 3),
        "startup_seconds": round(startup, 3) if startup is not None else None,
        "steady_rtf_approx": round(steady, 4) if steady is not None else None,
        "meets_target": wall / media <= TARGET_RTF, "stages": stages,
    }


def _text_embedding(texts: list[str], media_seconds: float, threads: int) -> dict:
    import torch

    from mmaffect.features.text import TextEncoder

    torch.set_num_threads(threads)
    encoder = TextEncoder()
    t = time.perf_counter()
    encoder.encode(texts[:2])  # loads the model
    load = time.perf_counter() - t
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        encoder.encode(texts)
        runs.append(time.perf_counter() - t)
    best = min(runs)
    return {"threads": threads, "texts": len(texts), "load_seconds": round(load, 3), "seconds": round(best, 4),
            "rtf": round(best / media_seconds, 5), "texts_per_second": round(len(texts) / best, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT),
                        help="JSON results file (default: benchmarks/results/extraction_speed.json)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--limit", type=int, help="only the first N clips (quick check)")
    args = parser.parse_args(argv)

    from mmaffect.errors import OutputError
    from mmaffect.extraction.pipeline import ExtractConfig, package_versions
    from mmaffect.io import check_output_file, write_json

    try:
        check_output_file(args.output, "results file")  # before minutes of extraction, not after
    except OutputError as exc:
        sys.exit(f"error: {exc}")

    items = _items()[: args.limit]
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result: dict = {
        "benchmark": "extraction_speed", "clips": len(items), "target_rtf": TARGET_RTF,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_at_start": load_start},
        "config": ExtractConfig().to_dict(), "versions": package_versions(ExtractConfig()), "runs": {},
    }
    for workers in [int(w) for w in args.workers.split(",")]:
        for name, config in (("pipeline", ExtractConfig()), ("pipeline_asr", ExtractConfig(asr="always"))):
            run = _pipeline_run(items, workers, config)
            result["runs"][f"{name}_w{workers}"] = run
            print(f"{name:<13} workers={workers}: {run['wall_seconds']:7.1f} s wall for {run['media_seconds']:.0f} s "
                  f"of media, RTF {run['rtf']:.3f} (start-up {run['startup_seconds']:.1f} s); per stage RTF "
                  + ", ".join(f"{k} {v['rtf']:.3f}" for k, v in run["stages"].items()), flush=True)
    media = result["runs"][next(iter(result["runs"]))]["media_seconds"]
    texts = [i.text or "" for i in items]
    result["text_embedding"] = [_text_embedding(texts, media, threads) for threads in (1, 2)]
    for row in result["text_embedding"]:
        print(f"text embedding threads={row['threads']}: {row['seconds']:.3f} s for {row['texts']} transcripts, "
              f"RTF {row['rtf']:.4f}", flush=True)
    write_json(args.output, result)
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":  # workers are spawned and re-import this module
    sys.exit(main())
