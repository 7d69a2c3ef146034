"""Load test of ``mmaffect serve`` on loopback (a benchmark, not a unit test).

Starts ``mmaffect serve`` in its own process with the shipped default model, then at once: 20 uploads
of real IEMOCAP clips of about 10 s from 20 client threads, and the bad uploads a public server gets
(zero bytes, a text file renamed .mp4, a truncated mp4, an over-size file, path-like file names).
Checks that every good job completes with exactly the result ``mmaffect analyze CLIP --json`` gives
for the same clip (segments, texts, labels, probabilities and contributions; only timings and names
may differ), that none is lost, that every bad upload gets a 4xx with a message, and that the server
still serves afterwards. Reports the server's peak RSS (VmHWM) and the p50/p95 job latency (from the
upload's start to the client seeing the job done).

    python benchmarks/load_test.py --workers 2 --output benchmarks/results/load_test.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

CLIPS = ["Ses01M_script02_2_F019.mp4", "Ses01M_script02_2_F040.mp4", "Ses01M_impro07_M013.mp4",
         "Ses01M_impro04_F011.mp4"]  # 8.9, 10.7, 11.7 and 12.2 s
UPLOADS = 20
MAX_UPLOAD_MB = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def comparable(result: dict) -> dict:
    """What must be identical between the server's and the CLI's analysis of one file."""
    keys = ("id", "start", "end", "text", "label", "confidence", "probabilities", "contributions", "face_rate",
            "warnings")
    return {"duration": result["duration"], "classes": result["classes"], "modalities": result["modalities"],
            "n_models": result["n_models"], "contributions_from": result["contributions_from"],
            "segments": [{k: s.get(k) for k in keys} for s in result["segments"]], "failed": result["failed"]}


def cli_reference(clip: Path, model: Path, threads: int, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run([sys.executable, "-m", "mmaffect.cli", "--threads", str(threads), "analyze", str(clip),
                        "--checkpoint", str(model), "--json", str(out)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bad_uploads(tmp: Path, good: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (file name sent, bytes)."""
    data = good.read_bytes()
    return {
        "zero bytes": ("empty.mp4", b""),
        "text renamed .mp4": ("notes.mp4", b"These are my notes, not a video.\n" * 200),
        "truncated mp4": ("cut.mp4", data[: len(data) * 2 // 5]),
        "over-size": ("big.mp4", np.random.default_rng(0).bytes(MAX_UPLOAD_MB * 2**20 + 2**20)),
        "path-like name ../": ("../../etc/passwd.mp4", data),
        "path-like name backslash": ("..\\..\\evil.mp4", data),
        "path-like name absolute": ("/tmp/clip.mp4", data),
        "path-like name subfolder": ("uploads/clip.mp4", data),
    }


def main() -> None:
    import httpx

    from mmaffect.io import check_output_file, write_json
    from mmaffect.pretrained import location
    from mmaffect.settings import data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", required=True)
    p.add_argument("--workers", type=int, default=2, help="server analysis workers (default 2, one per core)")
    p.add_argument("--threads", type=int, default=1, help="threads per analysis (default 1)")
    p.add_argument("--uploads", type=int, default=UPLOADS, help=f"concurrent good uploads (default {UPLOADS})")
    p.add_argument("--note", default="")
    args = p.parse_args()
    check_output_file(args.output, "--output")
    model = location("analysis")
    clips = [data_root() / "iemocap_clips" / c for c in CLIPS]
    work = Path(tempfile.mkdtemp(prefix="mmaffect-load-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OMP_WAIT_POLICY": "PASSIVE",
           "MMAFFECT_CACHE": str(work / "cache")}
    print("CLI references ...", flush=True)
    clips = clips[:min(len(clips), args.uploads)]
    reference = {c.name: cli_reference(c, model, args.threads, env) for c in clips}

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mmaffect.cli", "--threads", str(args.threads), "serve", "--port", str(port),
         "--model", str(model), "--workers", str(args.workers), "--queue", str(args.uploads + 10),
         "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-seconds", "60", "--storage", str(work / "uploads")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = time.perf_counter()
        with httpx.Client(base_url=base, timeout=600) as client:
            while True:
                try:
                    if client.get("/api/config").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None:
                    raise SystemExit(f"the server exited: {server.stdout.read()}")
                time.sleep(0.2)
            ready = time.perf_counter() - started
            print(f"server ready in {ready:.1f} s (pid {server.pid})", flush=True)

            def good(i: int) -> dict:
                try:
                    return _good(i)
                except httpx.TransportError as exc:  # the server went away: this job is lost
                    return {"clip": clips[i % len(clips)].name, "upload_status": None, "status": "lost",
                            "error": f"{type(exc).__name__}: {exc}"}

            def _good(i: int) -> dict:
                clip = clips[i % len(clips)]
                t0 = time.perf_counter()
                r = client.post("/api/jobs", files={"file": (clip.name, clip.read_bytes(), "video/mp4")})
                if r.status_code != 202:
                    return {"clip": clip.name, "upload_status": r.status_code, "detail": r.text}
                job_id = r.json()["id"]
                while True:
                    job = client.get(f"/api/jobs/{job_id}").json()
                    if job["status"] in ("done", "error"):
                        break
                    time.sleep(0.25)
                latency = time.perf_counter() - t0
                same = job["status"] == "done" and comparable(job["result"]) == comparable(reference[clip.name])
                return {"clip": clip.name, "upload_status": 202, "status": job["status"], "error": job["error"],
                        "latency_s": latency, "server_s": job["finished"] - job["created"],
                        "identical_to_cli": same}

            def bad(item: tuple[str, tuple[str, bytes]]) -> dict:
                case, (name, data) = item
                r = client.post("/api/jobs", files={"file": (name, data, "video/mp4")})
                detail = r.json().get("detail") if r.headers.get("content-type", "").startswith("application/json") \
                    else r.text
                return {"case": case, "file_name": name, "bytes": len(data), "status": r.status_code,
                        "detail": detail}

            bads = bad_uploads(work, clips[0])
            with ThreadPoolExecutor(args.uploads + len(bads)) as pool:
                good_futures = [pool.submit(good, i) for i in range(args.uploads)]
                bad_futures = [pool.submit(bad, item) for item in bads.items()]
                jobs = [f.result() for f in good_futures]
                refused = [f.result() for f in bad_futures]
            after = good(0)  # and the server still serves
            alive = server.poll() is None
            rss = peak_rss_mb(server.pid) if alive else float("nan")
            leftover = sorted(p.name for p in (work / "uploads").glob("*"))
    finally:
        server.terminate()
        server.wait(30)
    server_output = server.stdout.read()[-4000:]
    if not alive:
        print(f"the server died (exit {server.returncode}):\n{server_output}", flush=True)
    latencies = sorted(j["latency_s"] for j in jobs if "latency_s" in j)
    done = [j for j in jobs if j.get("status") == "done"]
    summary = {
        "uploads": args.uploads, "completed": len(done), "lost": args.uploads - len(latencies),
        "identical_to_cli": sum(bool(j.get("identical_to_cli")) for j in jobs),
        "latency_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_p95_s": float(np.percentile(latencies, 95)) if latencies else None,
        "server_peak_rss_mb": rss, "server_ready_s": ready,
        "bad_uploads_4xx": sum(400 <= r["status"] < 500 for r in refused), "bad_uploads": len(refused),
        "served_after": after.get("status") == "done" and after.get("identical_to_cli"),
        "server_alive_at_end": alive, "server_exit_code": None if alive else server.returncode,
        "uploads_left_on_disk": leftover}
    for key, value in summary.items():
        print(f"{key}: {value}")
    for r in refused:
        print(f"  {r['case']}: {r['status']} {r['detail']}")
    write_json(args.output, {"benchmark": "serve load test", "clips": CLIPS, "workers": args.workers,
                             "threads_per_analysis": args.threads, "model": "pretrained:analysis (shipped)",
                             "summary": summary, "jobs": jobs, "bad_uploads": refused, "after": after,
                             "server_output_tail": server_output,
                             "load_average_at_end": os.getloadavg(), "note": args.note,
                             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


if __name__ == "__main__":
    main()
