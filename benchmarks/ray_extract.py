"""Ray extraction of the 40 shared IEMOCAP clips equals the serial run's cache (issue 24, item 2).

    python benchmarks/ray_extract.py --work /tmp/ray_extract        # ~2 min on 2 busy cores

Runs the real command twice on the clips (transcripts given, ``--fps 2``, ``--threads 1``): once in
this process (``--workers 1``) and once as Ray tasks on a local Ray with 2 workers (``--ray --workers
2``), then compares the two caches entry by entry (same ids, same JSON records, every array the same
dtype, shape and bytes) and the two report.csv files (status and reason per row). Optionally also
compares the arrays with an older cache of the same clips (``--reference``, e.g. /work/cache/clips;
records are not compared there since an older cache may carry another config hash).

Writes ``benchmarks/results/ray_extract.json`` with the wall times (the machine is shared: timings
are indicative), the per-stage seconds from each report and the comparison.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from mmaffect.extraction.cache import FeatureCache
from mmaffect.io import check_output_dir, check_output_file, write_json
from mmaffect.settings import data_root

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "ray_extract.json"
COLUMNS = "path=clip_file,text=transcript,id=utterance_id"


def extract(manifest: Path, out: Path, *extra: str) -> float:
    command = [sys.executable, "-m", "mmaffect.cli", "--threads", "1", "extract", str(manifest), "--columns", COLUMNS,
               "--output", str(out), "--quiet", *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def compare(a: Path, b: Path, records: bool = True) -> dict:
    """Differences between two caches: ids only in one, and per common id the differing parts."""
    with FeatureCache(a) as ca, FeatureCache(b) as cb:
        ids_a, ids_b = set(ca.ids()), set(cb.ids())
        differing = {}
        for key in sorted(ids_a & ids_b):
            xa, xb = ca.arrays(key), cb.arrays(key)
            parts = [n for n in sorted(set(xa) | set(xb)) if n != "record" and (
                n not in xa or n not in xb or xa[n].dtype != xb[n].dtype or xa[n].shape != xb[n].shape
                or xa[n].tobytes() != xb[n].tobytes())]
            if records and ca.record(key) != cb.record(key):
                parts.append("record")
            if parts:
                differing[key] = parts
    return {"items": len(ids_a & ids_b), "only_in_first": sorted(ids_a - ids_b),
            "only_in_second": sorted(ids_b - ids_a), "differing": differing,
            "equal": ids_a == ids_b and not differing}


def report_rows(folder: Path) -> dict:
    with open(folder / "report.csv", newline="") as fh:
        return {r["id"]: (r["status"], r["reason"]) for r in csv.DictReader(fh)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="folder for the two caches (not the repo)")
    parser.add_argument("--reference", type=Path, help="an older cache of the same clips to compare arrays with")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    check_output_file(args.output)
    work = check_output_dir(args.work)
    manifest = data_root() / "iemocap_clips" / "manifest.csv"
    load_start = os.getloadavg()
    serial_s = extract(manifest, work / "serial", "--workers", "1")
    ray_s = extract(manifest, work / "ray", "--ray", "--workers", "2")
    result = {"data": "the 40 IEMOCAP clips of data/iemocap_clips (transcripts given), fps 2, 1 thread per model",
              "serial_seconds": serial_s, "ray_2_workers_seconds": ray_s,
              "serial_vs_ray": compare(work / "serial", work / "ray"),
              "reports_equal": report_rows(work / "serial") == report_rows(work / "ray"),
              "load_average_start": load_start, "load_average_end": os.getloadavg(),
              "note": "wall times include model loading (Ray: start-up of a local Ray and 2 actors); "
                      "machine shared with other jobs"}
    if args.reference:
        result["reference"] = str(args.reference)
        result["serial_vs_reference_arrays"] = compare(work / "serial", args.reference, records=False)
    write_json(args.output, result)
    print(f"serial {serial_s:.1f} s, Ray 2 workers {ray_s:.1f} s; caches equal: {result['serial_vs_ray']['equal']}, "
          f"reports equal: {result['reports_equal']}")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
