"""Speed of ``mmaffect analyze`` on real IEMOCAP clips: cold (first call, models loading) and warm
(the same Analyzer again), seconds and real-time factor. Target: a 10 s clip in <= 5 s warm.

    python benchmarks/analyze_speed.py --checkpoint out/analysis-model/fusion \
        --output benchmarks/results/analyze_speed.json
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GLOG_minloglevel", "2")

import torch  # noqa: E402

from mmaffect.analysis import Analyzer  # noqa: E402
from mmaffect.io import write_json  # noqa: E402
from mmaffect.settings import data_root  # noqa: E402

CLIPS = ["Ses01M_script02_2_F040.mp4", "Ses01M_impro07_M013.mp4", "Ses01F_impro03_F005.mp4"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    analyzer = Analyzer(args.checkpoint)
    load = time.perf_counter() - started
    rows = []
    for name in CLIPS:
        path = data_root() / "iemocap_clips" / name
        timings = []
        for _ in range(3):
            result = analyzer(path)
            timings.append(result["seconds"])
        rows.append({"clip": name, "duration": result["duration"], "segments": len(result["segments"]),
                     "cold_s": timings[0], "warm_s": min(timings[1:]),
                     "warm_rtf": min(timings[1:]) / result["duration"]})
        print(f"{name}: {result['duration']:.1f} s media, cold {timings[0]:.2f} s, warm {min(timings[1:]):.2f} s")
    write_json(args.output, {"benchmark": "analyze", "threads": args.threads, "analyzer_load_s": load,
                             "n_models": len(analyzer.models), "rows": rows,
                             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


if __name__ == "__main__":
    main()
