"""Speed of ``mmaffect analyze`` on real IEMOCAP clips, with the shipped default model unless told otherwise.

* cold: the whole command, ``mmaffect --threads N analyze CLIP --json F`` in a fresh process (Python start,
  imports, model loading, analysis) with an empty ``$MMAFFECT_CACHE`` (nothing cached, as on a first
  run), wall seconds, CPU seconds and peak RSS of that process, ``--cold-runs`` times on the ~15 s
  clip (the target: <= 6 s wall on 2 cores). CPU seconds say what wall time would be on an idle
  machine with one thread; wall time on a shared machine depends on what else runs;
* warm: one :class:`mmaffect.analysis.Analyzer` in this process, each clip 3 times (the first call
  loads the extractors; warm = the best of the other two).

    python benchmarks/analyze_speed.py --threads 1 --output benchmarks/results/analyze_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GLOG_minloglevel", "2")

COLD_CLIP = "Ses01M_script02_2_M035.mp4"  # 14.4 s
WARM_CLIPS = ["Ses01M_script02_2_F040.mp4", "Ses01M_impro07_M013.mp4", "Ses01F_impro03_F005.mp4"]


def cold_run(clip: Path, checkpoint: str | None, threads: int) -> dict:
    """One ``mmaffect analyze`` process: wall seconds, its peak RSS and the analysis seconds it reports."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "mmaffect.cli", "--threads", str(threads), "analyze", str(clip),
                   "--json", str(out)] + (["--checkpoint", checkpoint] if checkpoint else [])
        # an empty cache, as on a first run: no text vectors cached, the default model is the shipped one
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MMAFFECT_CACHE": str(Path(tmp) / "cache")}
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        if status != 0:
            raise SystemExit(f"analyze failed ({status}): {stderr[-2000:]}")
        result = json.loads(out.read_text())
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "analysis_s": result["seconds"],
            "segments": len(result["segments"]), "n_models": result["n_models"], "checkpoint": result["checkpoint"]}


def warm_rows(clips: list[Path], checkpoint: str | None, threads: int) -> tuple[float, list[dict]]:
    import torch

    from mmaffect.analysis import Analyzer
    from mmaffect.commands.analyze import default_model

    torch.set_num_threads(threads)
    started = time.perf_counter()
    analyzer = Analyzer(checkpoint or default_model(), threads=threads)
    load = time.perf_counter() - started
    rows = []
    for path in clips:
        timings = []
        for _ in range(3):
            result = analyzer(path)
            timings.append(result["seconds"])
        rows.append({"clip": path.name, "duration": result["duration"], "segments": len(result["segments"]),
                     "first_call_s": timings[0], "warm_s": min(timings[1:]),
                     "warm_rtf": min(timings[1:]) / result["duration"]})
        print(f"warm {path.name}: {result['duration']:.1f} s media, first call {timings[0]:.2f} s, "
              f"warm {min(timings[1:]):.2f} s", flush=True)
    return load, rows


def main() -> None:
    from mmaffect.io import check_output_file, write_json
    from mmaffect.settings import data_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="default: what `mmaffect analyze` uses (the shipped model)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--no-warm", action="store_true")
    parser.add_argument("--note", default="", help="how loaded the machine was, to keep with the numbers")
    args = parser.parse_args()
    check_output_file(args.output, "--output")
    clips = data_root() / "iemocap_clips"
    cold = []
    for i in range(args.cold_runs):
        row = cold_run(clips / COLD_CLIP, args.checkpoint, args.threads)
        cold.append(row)
        print(f"cold {i + 1}/{args.cold_runs} {COLD_CLIP}: {row['wall_s']:.2f} s wall, {row['cpu_s']:.2f} s CPU, "
              f"{row['peak_rss_mb']:.0f} MB "
              f"peak RSS, analysis {row['analysis_s']:.2f} s", flush=True)
    load, warm = (None, []) if args.no_warm else warm_rows([clips / c for c in WARM_CLIPS], args.checkpoint,
                                                           args.threads)
    walls = sorted(r["wall_s"] for r in cold)
    write_json(args.output, {
        "benchmark": "analyze", "threads": args.threads, "cold_clip": COLD_CLIP, "cold_runs": cold,
        "cold_wall_s_median": walls[len(walls) // 2] if walls else None,
        "cold_peak_rss_mb_max": max((r["peak_rss_mb"] for r in cold), default=None),
        "analyzer_load_s": load, "warm_rows": warm, "cpu": platform.processor() or platform.machine(),
        "load_average_at_end": os.getloadavg(), "note": args.note,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


if __name__ == "__main__":
    main()
