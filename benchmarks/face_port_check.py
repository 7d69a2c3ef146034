"""How close ``FaceAnalyzer(backend="tflite")`` comes to the default mediapipe backend on real IEMOCAP frames.

    python benchmarks/face_port_check.py          # writes benchmarks/results/face_port_check.json

Frames: 10 of the real IEMOCAP clips (evenly spaced in ``iemocap_clips/manifest.csv``), 5 frames of each
(the centres of 5 equal parts of the clip), at full resolution. Both backends analyse every frame, one
frame per call, after a warm-up call that loads the models. Compared:

* detection: frames where both / only one / neither found a face; IoU of the two boxes; score difference;
* landmarks, on frames where both meshes found the face: NME = mean point distance (frame pixels) /
  inter-ocular distance (outer eye corners 33-263 of the mediapipe landmarks), over the 468 mesh points
  and over the 10 iris points;
* expression: L1 distance of the two 7-class probability vectors, and how often their argmax agrees;
* time per frame of each backend (whole ``FaceAnalyzer`` call: detection, mesh, alignment, FER): the
  best of 3 calls per frame, the two backends taking turns, so load from other jobs on a shared machine
  hits both alike.

Two references put the landmark numbers in context (``reference`` in the JSON):

* ``port_vs_mediapipe_plain_mesh``: the port's 468 points against mediapipe's own *plain* mesh
  (``FaceMesh(refine_landmarks=False)``, the same ``face_landmark.tflite``) on the same 192x192 face
  crop -- how exactly the port reproduces mediapipe where the models are the same;
  ``mediapipe_refined_vs_plain_mesh``: mediapipe's refined mesh (the default backend's) against its plain
  mesh on those crops -- the part of the NME due to the model the port cannot run;
* ``mediapipe_shift_1px``: the mediapipe backend against itself on the frames shifted right by one
  pixel (landmarks compared after undoing the shift): how much the output moves for a change nobody
  would call different.

Needs mediapipe 0.10.21 installed (the default backend) and the data root (``MMAFFECT_DATA``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import csv  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "face_port_check.json"
N_CLIPS = 10
FRAMES_PER_CLIP = 5
OUTER_EYE_CORNERS = (33, 263)
MESH = slice(0, 468)
IRIS = slice(468, 478)


def _clips(n: int) -> list[Path]:
    from mmaffect.settings import data_root

    folder = data_root() / "iemocap_clips"
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"{manifest} not found: set MMAFFECT_DATA to the folder holding iemocap_clips/")
    with open(manifest, newline="") as fh:
        names = sorted(row["clip_file"] for row in csv.DictReader(fh))
    picks = np.linspace(0, len(names) - 1, min(n, len(names))).round().astype(int)
    return [folder / names[i] for i in picks]


def _frames(clip: Path, k: int) -> tuple[np.ndarray, list[int]]:
    from mmaffect.features.media import decode

    media = decode(clip, fps=30.0, max_side=None)  # 29.97 fps clips: every frame
    n = len(media.frames)
    idx = sorted({min(n - 1, int((j + 0.5) * n / k)) for j in range(k)})
    return media.frames[idx], idx


def _stats(values) -> dict | None:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not v.size:
        return None
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)), "max": float(v.max())}


def _nme(points: np.ndarray, ref: np.ndarray, sel: slice) -> float:
    """Mean distance of ``points`` to ``ref`` ((N, 2) pixels) over ``sel``, per inter-ocular distance."""
    iod = float(np.linalg.norm(ref[OUTER_EYE_CORNERS[0]] - ref[OUTER_EYE_CORNERS[1]]))
    return float(np.linalg.norm(points[sel] - ref[sel], axis=1).mean() / iod)


def _run(analyzers: dict, frames: np.ndarray, repeats: int = 3) -> tuple[dict, dict]:
    """Analyse frame by frame with each analyzer, taking turns; per analyzer the merged ``FaceFrames`` and
    the per-frame seconds (best of ``repeats`` calls). A warm-up call loads the models first."""
    from mmaffect.features.face import FaceFrames

    for analyzer in analyzers.values():
        analyzer(frames[:1])
    parts = {k: [] for k in analyzers}
    seconds = {k: np.full(len(frames), np.inf) for k in analyzers}
    for t, frame in enumerate(frames):
        for r in range(repeats):
            for name, analyzer in analyzers.items():
                started = time.perf_counter()
                out = analyzer(frame)
                seconds[name][t] = min(seconds[name][t], time.perf_counter() - started)
                if r == 0:  # the analysis is deterministic: keep the first call's output
                    parts[name].append(out)
    fields = ("detected", "score", "box", "landmarks", "expression", "crops")
    merged = {k: FaceFrames(**{f: np.concatenate([getattr(p, f) for p in v]) for f in fields})
              for k, v in parts.items()}
    return merged, seconds


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = min(ax1, bx1) - max(a[0], b[0]), min(ay1, by1) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def _same_crop_references(frames: np.ndarray, port) -> tuple[list, list]:
    """NME of the port's mesh, and of mediapipe's refined mesh, against mediapipe's plain mesh on the
    crops the port meshes (see the module docstring)."""
    import mediapipe as mp

    from mmaffect.features.face_tflite import face_crop

    def mp_points(mesh, crop):
        res = mesh.process(crop).multi_face_landmarks
        if not res:
            return None
        return np.array([(p.x, p.y) for p in res[0].landmark], np.float64) * crop.shape[1]

    plain = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                            min_detection_confidence=0.3)
    refined = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                              min_detection_confidence=0.3)
    port_nme, refined_nme = [], []
    for f in frames:
        det = port.detect(f)
        if det is None:
            continue
        crop, _, _ = face_crop(f, det.box)
        ref = mp_points(plain, crop)
        ours = port.landmarks_in_crop(crop)
        if ref is None or ours is None:
            continue
        port_nme.append(_nme(ours[:468, :2], ref, MESH))
        ref_refined = mp_points(refined, crop)
        if ref_refined is not None:
            refined_nme.append(_nme(ref_refined[:468], ref, MESH))
    plain.close()
    refined.close()
    return port_nme, refined_nme


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("mediapipe", "ai-edge-litert", "opencv-python-headless", "numpy", "fer"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON results file")
    parser.add_argument("--clips", type=int, default=N_CLIPS, help=f"number of clips (default {N_CLIPS})")
    parser.add_argument("--frames", type=int, default=FRAMES_PER_CLIP, help="frames per clip (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="model threads (default 1)")
    args = parser.parse_args(argv)

    from mmaffect.features.face import FaceAnalyzer
    from mmaffect.features.face_tflite import TFLiteFaceMesh
    from mmaffect.io import write_json

    load_start = os.getloadavg()[0]
    frames, where = [], []
    for clip in _clips(args.clips):
        f, idx = _frames(clip, args.frames)
        frames.append(f)
        where += [(clip.name, i) for i in idx]
    frames = np.concatenate(frames)
    h, w = frames.shape[1:3]
    print(f"{len(frames)} frames ({w}x{h}) from {args.clips} clips", flush=True)

    analyzers = {b: FaceAnalyzer(threads=args.threads, backend=b) for b in ("mediapipe", "tflite")}
    results, seconds = _run(analyzers, frames)
    for analyzer in analyzers.values():
        analyzer.close()
    a, b = results["mediapipe"], results["tflite"]
    scale = np.array([w, h], np.float64)
    meshed_a = np.abs(a.landmarks).sum((1, 2)) > 0
    meshed_b = np.abs(b.landmarks).sum((1, 2)) > 0

    rows = []
    for t, (clip, index) in enumerate(where):
        row = {"clip": clip, "frame": index, "mediapipe_face": bool(a.detected[t]), "tflite_face": bool(b.detected[t]),
               "mediapipe_mesh": bool(meshed_a[t]), "tflite_mesh": bool(meshed_b[t]),
               "box_iou": None, "nme_mesh": None, "nme_iris": None, "expression_l1": None,
               "ms_mediapipe": round(1000 * seconds["mediapipe"][t], 2),
               "ms_tflite": round(1000 * seconds["tflite"][t], 2)}
        if a.detected[t] and b.detected[t]:
            row["box_iou"] = _box_iou(a.box[t], b.box[t])
            row["expression_l1"] = float(np.abs(a.expression[t] - b.expression[t]).sum())
        if meshed_a[t] and meshed_b[t]:
            pa, pb = a.landmarks[t, :, :2] * scale, b.landmarks[t, :, :2] * scale
            row["nme_mesh"], row["nme_iris"] = _nme(pb, pa, MESH), _nme(pb, pa, IRIS)
        rows.append(row)

    both = a.detected & b.detected
    # reference 1: the port and mediapipe's refined mesh against mediapipe's plain mesh, same crops
    port = TFLiteFaceMesh(threads=args.threads)
    port_nme, refined_nme = _same_crop_references(frames, port)
    # reference 2: mediapipe against itself, frames shifted right by one pixel
    shifted = np.zeros_like(frames)
    shifted[:, :, 1:] = frames[:, :, :-1]
    with FaceAnalyzer(threads=args.threads) as analyzer:
        s = analyzer(shifted)
    s_both = a.detected & s.detected
    s_mesh = meshed_a & (np.abs(s.landmarks).sum((1, 2)) > 0)
    shift_mesh, shift_iris = [], []
    for t in np.flatnonzero(s_mesh):
        pa, ps = a.landmarks[t, :, :2] * scale, s.landmarks[t, :, :2] * scale - [1.0, 0.0]
        shift_mesh.append(_nme(ps, pa, MESH))
        shift_iris.append(_nme(ps, pa, IRIS))

    result = {
        "benchmark": "face_port_check",
        "what": "FaceAnalyzer(backend='tflite') against the default backend='mediapipe' on real IEMOCAP frames",
        "data": {"clips": sorted({c for c, _ in where}), "frames_per_clip": args.frames, "frames": len(frames),
                 "frame_size": [int(w), int(h)]},
        "nme_definition": "mean point distance in frame pixels / distance of the outer eye corners (33, 263) "
                          "of the mediapipe landmarks",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_at_start": load_start,
                    "threads": args.threads},
        "versions": _versions(),
        "detection": {
            "both": int(both.sum()), "only_mediapipe": int((a.detected & ~b.detected).sum()),
            "only_tflite": int((~a.detected & b.detected).sum()), "neither": int((~a.detected & ~b.detected).sum()),
            "box_iou": _stats(r["box_iou"] for r in rows),
            "score_abs_diff_max": float(np.abs(a.score - b.score)[both].max()) if both.any() else None,
        },
        "mesh": {
            "both": int((meshed_a & meshed_b).sum()), "only_mediapipe": int((meshed_a & ~meshed_b).sum()),
            "only_tflite": int((~meshed_a & meshed_b).sum()),
            "nme_mesh_468": _stats(r["nme_mesh"] for r in rows),
            "nme_iris_10": _stats(r["nme_iris"] for r in rows),
        },
        "expression": {
            "l1": _stats(r["expression_l1"] for r in rows),
            "argmax_agreement": float((a.expression.argmax(1) == b.expression.argmax(1))[both].mean())
            if both.any() else None,
        },
        "time_ms_per_frame": {k: {"mean": float(1000 * v.mean()), "median": float(1000 * np.median(v))}
                              for k, v in seconds.items()},
        "reference": {
            "port_vs_mediapipe_plain_mesh": {"nme_mesh_468": _stats(port_nme)},
            "mediapipe_refined_vs_plain_mesh": {"nme_mesh_468": _stats(refined_nme)},
            "mediapipe_shift_1px": {
                "nme_mesh_468": _stats(shift_mesh), "nme_iris_10": _stats(shift_iris),
                "expression_l1": _stats(np.abs(a.expression - s.expression).sum(1)[s_both]),
                "argmax_agreement": float((a.expression.argmax(1) == s.expression.argmax(1))[s_both].mean())
                if s_both.any() else None,
            },
        },
        "frames_detail": rows,
    }
    write_json(args.output, result)

    det, mesh, expr = result["detection"], result["mesh"], result["expression"]
    ref = result["reference"]

    def fmt(stats: dict | None, key: str = "mean", digits: int = 4) -> str:
        return "-" if stats is None else f"{stats[key]:.{digits}f}"

    print(f"{'':34}{'mean':>9}{'median':>9}{'max':>9}")
    for label, stats in (("box IoU", det["box_iou"]), ("NME mesh (468)", mesh["nme_mesh_468"]),
                         ("NME iris (10)", mesh["nme_iris_10"]), ("expression L1", expr["l1"]),
                         ("ref: port vs mp plain mesh", ref["port_vs_mediapipe_plain_mesh"]["nme_mesh_468"]),
                         ("ref: mp refined vs plain mesh", ref["mediapipe_refined_vs_plain_mesh"]["nme_mesh_468"]),
                         ("ref: mp 1-px shift, NME mesh", ref["mediapipe_shift_1px"]["nme_mesh_468"]),
                         ("ref: mp 1-px shift, NME iris", ref["mediapipe_shift_1px"]["nme_iris_10"]),
                         ("ref: mp 1-px shift, expr. L1", ref["mediapipe_shift_1px"]["expression_l1"])):
        print(f"{label:<34}{fmt(stats):>9}{fmt(stats, 'median'):>9}{fmt(stats, 'max'):>9}")
    print(f"faces: both {det['both']}, only mediapipe {det['only_mediapipe']}, only tflite {det['only_tflite']}, "
          f"neither {det['neither']}; meshes: both {mesh['both']}, only mediapipe {mesh['only_mediapipe']}, "
          f"only tflite {mesh['only_tflite']}; expression argmax agreement {expr['argmax_agreement']:.2f}")
    for k, v in result["time_ms_per_frame"].items():
        print(f"{k:<10} {v['mean']:6.1f} ms/frame (median {v['median']:.1f})")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
