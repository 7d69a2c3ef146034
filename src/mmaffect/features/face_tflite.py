"""Face detection, 468-point face mesh and iris landmarks without mediapipe: its tflite models run by ai-edge-litert.

mediapipe 0.10.21 cannot be an ordinary dependency (it pins numpy<2 and protobuf<5), yet its
Apache-2.0 models are small tflite files that ai-edge-litert runs as they are. This module re-implements
the few pieces of mediapipe's graphs around those models (what its ``.pbtxt`` graphs and calculators
specify), so :class:`TFLiteFaceMesh` gives what ``mmaffect.features.face.FaceAnalyzer`` got from
``mp.solutions`` -- the largest face's detection and 478 landmarks -- with numpy and OpenCV only:

* :class:`FaceDetector`: the BlazeFace SSD detectors (full-range 192x192 or short-range 128x128 input).
  The frame is letterboxed into the square input, raw outputs are decoded against fixed-size anchors
  (:func:`ssd_anchor_centers`, :func:`decode_detections`) and overlapping boxes are merged by weighted
  non-maximum suppression (:func:`weighted_nms`).
* :class:`MeshModel`: ``face_landmark.tflite`` (468 points) on a square crop around the face, rotated so
  the eyes are level (:func:`rotated_square_roi`, :class:`Roi`).
* :class:`IrisModel`: ``iris_landmark.tflite`` on a 64x64 crop around each eye (71 eye-contour points and
  5 iris points; the eye on the image's right is mirrored, the model knows one eye only).

The 478-point layout is mediapipe's refined mesh: the 468 mesh points, then the iris centre and its 4
edge points of the eye on the image's left (468-472), then those of the eye on the image's right
(473-477). The refined mesh comes from ``face_landmark_with_attention.tflite``, which ai-edge-litert
cannot run (custom op ``Landmarks2TransformMatrix``), so the mesh here is the plain model's and the
iris points are the iris model's: close to, not identical with, mediapipe's output
(``benchmarks/face_port_check.py`` measures how close).

Coordinates follow two conventions. Model tensors are in *tensor pixels*: ``u`` in ``[0, W]`` spans the
crop from edge to edge (mediapipe's ImageToTensor convention, reproduced by :meth:`Roi.crop`). Results
are in *frame pixels* inside the pipeline and relative (x / width, y / height, z / width) at the end,
like ``mp.solutions``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

__all__ = [
    "FULL_RANGE",
    "SHORT_RANGE",
    "N_MESH",
    "N_LANDMARKS",
    "Detections",
    "DetectorConfig",
    "FaceDetection",
    "FaceDetector",
    "IrisModel",
    "MeshModel",
    "Roi",
    "TFLiteFaceMesh",
    "TFLiteModel",
    "asset_path",
    "decode_detections",
    "detection_frame",
    "face_crop",
    "rotated_square_roi",
    "ssd_anchor_centers",
    "weighted_nms",
]

N_MESH = 468
N_LANDMARKS = 478  # mesh + 2 x 5 iris points
N_KEYPOINTS = 6  # detector keypoints: eye (image left), eye (image right), nose tip, mouth, ear, ear
_ASSETS = ("assets", "face")  # inside the mmaffect.features package

# The two eyes in the mesh: (outer-left, inner-right) corners of the eye on the image's left, and
# (inner-left, outer-right) corners of the eye on the image's right. The iris model's eye ROI is spanned
# by these corners and rotated along them.
_EYE_CORNERS = ((33, 133), (362, 263))
# The eyelid contour of each eye in the mesh (lower lid corner to corner, then the upper lid): the
# refined mesh gives each iris the mean z of its eye's eyelid, the iris model's own z having no common
# origin with the mesh's.
_EYELIDS = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398),
)
# Iris model output (centre, then 4 edge points) -> mediapipe's refined-mesh order, per eye: the refined
# mesh orders the edges in image space (right, top, left, bottom), while the iris model reports the
# mirrored eye in mirrored space, so that eye's left and right edges swap. Found by matching the two on
# IEMOCAP frames (any other order of the 4 edges was off by 2.5 % or more of the eye-centre distance).
_IRIS_ORDER = ((0, 1, 2, 3, 4), (0, 3, 2, 1, 4))

_MESH_SIZE = 192  # face_landmark.tflite input side
_IRIS_SIZE = 64  # iris_landmark.tflite input side
_MESH_ROI_SCALE = 1.5  # mesh crop side / detection box long side (face_detection_front_detection_to_roi)
_IRIS_ROI_SCALE = 2.3  # eye crop side / eye-corner box long side (iris_landmark_landmarks_to_roi)
_NMS_IOU = 0.3  # boxes overlapping more than this are merged (face_detection.pbtxt)
_SCORE_CLIP = 100.0  # raw scores are clipped to +-this before the sigmoid

# What mmaffect's FaceAnalyzer has always done before meshing (its mediapipe path): cut an axis-aligned
# square of twice the detected face's side around it, resampled to 192x192, and look for the face again
# there with the short-range detector. A small face in a large frame becomes a large face in the crop.
_CROP_SIZE = 192
_CROP_MARGIN = 2.0


def asset_path(name: str):
    """A traversable for a vendored model file (``importlib.resources``; works from a wheel)."""
    return files("mmaffect.features").joinpath(*_ASSETS, name)


# -- anchors and decoding ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorConfig:
    """One BlazeFace detector: its model file, the SSD layout its outputs are decoded with, its threshold.

    ``strides`` lists one entry per SSD layer; consecutive layers with the same stride share one feature
    map. ``interpolated_scale`` adds a second anchor per layer and cell (mediapipe's
    ``interpolated_scale_aspect_ratio: 1.0``). The anchors have a fixed size of 1, so only their centres
    matter and regressed sizes are fractions of the input side. ``min_score`` is the threshold of
    mediapipe's graph for this model.
    """

    model: str
    input_size: int
    strides: tuple[int, ...]
    interpolated_scale: bool
    min_score: float


# face_detection_full_range.pbtxt: one 48x48 layer, one anchor per cell (2304 anchors)
FULL_RANGE = DetectorConfig("face_detection_full_range_sparse.tflite", 192, (4,), False, 0.6)
# face_detection_short_range.pbtxt: a 16x16 layer and three 8x8 layers, two anchors each (896 anchors)
SHORT_RANGE = DetectorConfig("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.5)


def ssd_anchor_centers(
    input_size: int, strides: Sequence[int], interpolated_scale: bool, offset: float = 0.5
) -> np.ndarray:
    """Anchor centres ``(N, 2)`` (x, y as fractions of the input side), in the model's output order.

    The order is: feature maps by increasing layer, then rows (y), columns (x), and the anchors of one
    cell last -- the order the SSD head writes its N outputs in, so row i of the model's output belongs to
    anchor i. A feature map has ``ceil(input_size / stride)`` cells a side; layers that repeat a stride
    stack their anchors into the same cells.
    """
    if not strides:
        raise ValueError("strides must not be empty")
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = (j - i) * (2 if interpolated_scale else 1)
        n = math.ceil(input_size / strides[i])
        grid = (np.arange(n, dtype=np.float64) + offset) / n
        yy, xx = np.meshgrid(grid, grid, indexing="ij")
        cells = np.stack([xx.ravel(), yy.ravel()], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
        i = j
    return np.concatenate(centres).astype(np.float32)


@dataclass
class Detections:
    """N face detections, best score first; coordinates relative to the image they were found in."""

    boxes: np.ndarray  # float32 (N, 4): xmin, ymin, xmax, ymax
    keypoints: np.ndarray  # float32 (N, 6, 2): x, y
    scores: np.ndarray  # float32 (N,)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, N_KEYPOINTS, 2), np.float32), np.zeros(0, np.float32))

    def largest(self) -> int:
        """Index of the detection with the largest box area (the subject rather than a bystander)."""
        if not len(self):
            raise ValueError("no detections")
        area = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        return int(np.argmax(area))


def decode_detections(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_size: int, min_score: float
) -> Detections:
    """Turn the SSD head's raw outputs into detections in input-relative coordinates.

    ``raw_boxes`` ``(N, 16)`` holds per anchor: box centre offset x, y, box width, height, then 6 keypoint
    offsets x, y -- all in input pixels, relative to the anchor centre. ``raw_scores`` ``(N,)`` are logits,
    clipped to +-100 before the sigmoid (as mediapipe does, so exp cannot overflow). Detections scoring
    below ``min_score`` and boxes with a negative or NaN size are dropped. Vectorised over anchors.
    """
    raw_boxes = np.asarray(raw_boxes, np.float32).reshape(len(anchors), -1)
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(-1), -_SCORE_CLIP, _SCORE_CLIP)
    scores = 1.0 / (1.0 + np.exp(-logits))  # float64: exp(100) overflows float32
    keep = scores >= min_score
    raw, centre, scores = raw_boxes[keep], anchors[keep], scores[keep]
    xy = raw[:, 0:2] / input_size + centre
    wh = raw[:, 2:4] / input_size
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    keypoints = raw[:, 4 : 4 + 2 * N_KEYPOINTS].reshape(-1, N_KEYPOINTS, 2) / input_size + centre[:, None, :]
    valid = (wh[:, 0] >= 0) & (wh[:, 1] >= 0)  # NaN compares False as well
    order = np.argsort(-scores[valid], kind="stable")
    return Detections(
        boxes[valid][order].astype(np.float32),
        keypoints[valid][order].astype(np.float32),
        scores[valid][order].astype(np.float32),
    )


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``(4,)`` box with each of ``(N, 4)`` boxes (xmin, ymin, xmax, ymax)."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(dets: Detections, iou_threshold: float = _NMS_IOU) -> Detections:
    """Merge overlapping detections into score-weighted averages (mediapipe's WEIGHTED suppression).

    Repeatedly: the best remaining detection and every remaining one overlapping it by more than
    ``iou_threshold`` (itself included) form a cluster; the output is the cluster's score-weighted mean
    box corners and keypoints, with the best detection's score. Averaging, rather than keeping the best
    box only, steadies the box: the SSD head fires on several neighbouring anchors for one face. One
    loop iteration per output face, each vectorised over the remaining detections.
    """
    order = np.argsort(-dets.scores, kind="stable")
    boxes, kps, scores = dets.boxes[order], dets.keypoints[order], dets.scores[order]
    out_boxes, out_kps, out_scores = [], [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        top = remaining[0]
        member = box_iou(boxes[top], boxes[remaining]) > iou_threshold
        member[0] = True  # a degenerate (zero-area) top box still forms its own cluster
        cluster = remaining[member]
        w = scores[cluster].astype(np.float64)
        w_sum = w.sum()
        out_boxes.append((boxes[cluster] * w[:, None]).sum(0) / w_sum)
        out_kps.append((kps[cluster] * w[:, None, None]).sum(0) / w_sum)
        out_scores.append(scores[top])
        remaining = remaining[~member]
    if not out_scores:
        return Detections.empty()
    return Detections(
        np.asarray(out_boxes, np.float32), np.asarray(out_kps, np.float32), np.asarray(out_scores, np.float32)
    )


# -- regions of interest -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Roi:
    """A rotated rectangle in image pixels: centre, size and rotation (radians).

    The rotation turns the rectangle's x axis onto the image direction ``(cos r, sin r)``; with the
    image's y axis pointing down, a positive rotation is clockwise on screen. A crop of the ROI to a
    ``W x H`` tensor maps the rectangle's edges to the tensor's edges (tensor pixel ``u`` in ``[0, W]``),
    optionally mirrored left-right.
    """

    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0

    def tensor_to_image(self, size: tuple[int, int], flip: bool = False) -> np.ndarray:
        """The 2x3 affine map from tensor pixels ``(u, v)`` of a ``size = (W, H)`` crop to image pixels."""
        tw, th = size
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        a = self.width / tw * (-1.0 if flip else 1.0)
        b = self.height / th
        # image = centre + R(rotation) @ (a * (u - W/2), b * (v - H/2))
        return np.array(
            [
                [c * a, -s * b, self.cx - c * a * tw / 2 + s * b * th / 2],
                [s * a, c * b, self.cy - s * a * tw / 2 - c * b * th / 2],
            ],
            np.float64,
        )

    def crop(self, image: np.ndarray, size: tuple[int, int], flip: bool = False, border: str = "replicate"):
        """Resample the ROI into a ``size = (W, H)`` uint8 image (bilinear; outside the image: edge
        pixels repeated, or black with ``border="zero"``)."""
        import cv2

        mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
        return cv2.warpAffine(
            image,
            self.tensor_to_image(size, flip),
            size,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=mode,
            borderValue=0,
        )

    def to_image(self, points: np.ndarray, size: tuple[int, int], flip: bool = False) -> np.ndarray:
        """Map ``(N, 2)`` or ``(N, 3)`` tensor-pixel points to image pixels; a z column is scaled like x."""
        points = np.asarray(points, np.float64)
        m = self.tensor_to_image(size, flip)
        out = points.copy()
        out[:, :2] = points[:, :2] @ m[:, :2].T + m[:, 2]
        if points.shape[1] > 2:
            out[:, 2] = points[:, 2] * (self.width / size[0])
        return out

    def to_tensor(self, points: np.ndarray, size: tuple[int, int], flip: bool = False) -> np.ndarray:
        """The inverse of :meth:`to_image` for ``(N, 2)`` image-pixel points."""
        m = self.tensor_to_image(size, flip)
        inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
        points = np.asarray(points, np.float64)
        return points @ inv[:, :2].T + inv[:, 2]


def _normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def rotated_square_roi(box: Sequence[float], start: Sequence[float], end: Sequence[float], scale: float) -> Roi:
    """A square ROI around ``box`` (xmin, ymin, xmax, ymax, pixels), rotated along ``start`` -> ``end``.

    Side = ``scale`` x the box's longer side (the box is axis-aligned, so a tilted face's box already
    errs large); centre = the box centre. The rotation levels the ``start -> end`` line (e.g. the two eye
    keypoints), so the landmark models see an upright face or eye whatever the head roll.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    rotation = _normalize_radians(math.atan2(float(end[1]) - float(start[1]), float(end[0]) - float(start[0])))
    side = max(x1 - x0, y1 - y0) * scale
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, side, side, rotation)


# -- models ------------------------------------------------------------------------------------------------
class TFLiteModel:
    """A vendored tflite model (an ``importlib.resources`` traversable) run by ai-edge-litert; outputs
    picked by their element count."""

    def __init__(self, asset, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        if not asset.is_file():
            raise FileNotFoundError(f"model asset missing: {asset} (reinstall mmaffect)")
        # from bytes: works wherever the package lives (a zip included); kept alive with the interpreter
        self._content = asset.read_bytes()
        self._interp = Interpreter(model_content=self._content, num_threads=int(threads))
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        self.input_index = inp["index"]
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self._outputs = {int(np.prod(d["shape"])): d["index"] for d in self._interp.get_output_details()}

    def run(self, x: np.ndarray, *sizes: int) -> list[np.ndarray]:
        """Run on one float32 NHWC input; return the outputs with these element counts, flattened."""
        self._interp.set_tensor(self.input_index, np.ascontiguousarray(x, np.float32).reshape(self.input_shape))
        self._interp.invoke()
        return [self._interp.get_tensor(self._outputs[n]).reshape(-1) for n in sizes]


class FaceDetector:
    """A BlazeFace detector on a whole RGB image: detections relative to the image, best first.

    The image is letterboxed (black bars, aspect ratio kept) into the square input, scaled to ``[-1, 1]``;
    the decoded detections are merged by :func:`weighted_nms` and mapped back out of the letterbox.
    ``min_score`` defaults to the model's own threshold in mediapipe's graph (``config.min_score``).
    """

    def __init__(self, config: DetectorConfig, min_score: float | None = None, threads: int = 1):
        self.config = config
        self.min_score = float(config.min_score if min_score is None else min_score)
        self._model = TFLiteModel(asset_path(config.model), threads)
        self.anchors = ssd_anchor_centers(config.input_size, config.strides, config.interpolated_scale)
        if self._model.input_shape[1:3] != (config.input_size, config.input_size):
            raise ValueError(f"{config.model}: input {self._model.input_shape}, expected side {config.input_size}")

    def __call__(self, rgb: np.ndarray) -> Detections:
        h, w = rgb.shape[:2]
        n = self.config.input_size
        side = float(max(w, h))
        roi = Roi(w / 2, h / 2, side, side)  # the letterbox: a square of the long side, centred
        x = roi.crop(rgb, (n, n), border="zero").astype(np.float32) / 127.5 - 1.0
        raw_boxes, raw_scores = self._model.run(x[None], len(self.anchors) * 16, len(self.anchors))
        dets = weighted_nms(decode_detections(raw_boxes, raw_scores, self.anchors, n, self.min_score))
        if not len(dets):
            return dets
        # input-relative -> image pixels -> image-relative (the map has no rotation: boxes stay boxes)
        corners = roi.to_image(dets.boxes.reshape(-1, 2) * n, (n, n)).reshape(-1, 4)
        kps = roi.to_image(dets.keypoints.reshape(-1, 2) * n, (n, n)).reshape(-1, N_KEYPOINTS, 2)
        scale = np.array([w, h], np.float64)
        return Detections(
            (corners.reshape(-1, 2, 2) / scale).reshape(-1, 4).astype(np.float32),
            (kps / scale).astype(np.float32),
            dets.scores,
        )


class MeshModel:
    """``face_landmark.tflite``: 468 points of the face in a :class:`Roi` (input 192x192, RGB in [0, 1])."""

    def __init__(self, threads: int = 1):
        self._model = TFLiteModel(asset_path("face_landmark.tflite"), threads)

    def __call__(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """``(468, 3)`` points in image pixels (z in pixels, like x) and the face-presence probability."""
        size = (_MESH_SIZE, _MESH_SIZE)
        x = roi.crop(rgb, size).astype(np.float32) / 255.0
        raw, flag = self._model.run(x[None], N_MESH * 3, 1)
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(flag[0], -_SCORE_CLIP, _SCORE_CLIP))))
        return roi.to_image(raw.reshape(N_MESH, 3), size), presence


class IrisModel:
    """``iris_landmark.tflite``: 71 eye-contour points and 5 iris points (centre first) of one eye.

    The model was trained on the eye on the image's left; the other eye is mirrored into it (``flip``)
    and its points mirrored back by the same crop map.
    """

    def __init__(self, threads: int = 1):
        self._model = TFLiteModel(asset_path("iris_landmark.tflite"), threads)

    def __call__(self, rgb: np.ndarray, roi: Roi, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(71, 3)`` eye contour/brow and ``(5, 3)`` iris points in image pixels (z scaled like x)."""
        size = (_IRIS_SIZE, _IRIS_SIZE)
        x = roi.crop(rgb, size, flip=flip).astype(np.float32) / 255.0
        contour, iris = self._model.run(x[None], 71 * 3, 5 * 3)
        return roi.to_image(contour.reshape(-1, 3), size, flip), roi.to_image(iris.reshape(5, 3), size, flip)


# -- the whole pipeline ------------------------------------------------------------------------------------
@dataclass
class FaceDetection:
    """One face found by the frame detector, relative to the frame (like ``mp.solutions`` detections)."""

    box: tuple[float, float, float, float]  # xmin, ymin, width, height; not clipped to the frame
    score: float
    keypoints: np.ndarray  # float32 (6, 2) x, y: eye (image left), eye (image right), nose, mouth, ear, ear


def detection_frame(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """The frame a face detector sees: downscaled (area filter) so its longest side is ``max_side``, or
    as is. Detections are relative to the frame, so they hold for the full-size frame as well."""
    import cv2

    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def face_crop(rgb: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The 192x192 crop the mesh stage works in: twice the face's side, centred on the detection box.

    ``box`` is (xmin, ymin, width, height) relative to the frame, unclipped (a face cut by the border keeps
    its size). Returns the crop and the map back: frame pixel = (crop pixel - offset) / scale. This is the
    crop ``FaceAnalyzer``'s mediapipe path feeds ``FaceMesh``, same arithmetic, so both backends mesh the
    same pixels.
    """
    import cv2

    h, w = rgb.shape[:2]
    bx, by, bw, bh = (float(v) for v in box)
    cx, cy = (bx + bw / 2) * w, (by + bh / 2) * h
    side = max(bw * w, bh * h, 2.0)
    k = _CROP_SIZE / (side * _CROP_MARGIN)
    m = np.float32([[k, 0, _CROP_SIZE / 2 - k * cx], [0, k, _CROP_SIZE / 2 - k * cy]])
    crop = cv2.warpAffine(rgb, m, (_CROP_SIZE, _CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return crop, k, (float(m[0, 2]), float(m[1, 2]))


class TFLiteFaceMesh:
    """Largest-face detection and 478-point mesh of RGB frames, mediapipe's models without mediapipe.

    Mirrors ``FaceAnalyzer``'s mediapipe path: the frame detector (full-range by default, as there) finds
    the faces and the largest is kept; a 192x192 axis-aligned crop of twice the face's side is cut around
    it; in that crop the short-range detector finds the face again (best score first, threshold
    ``crop_detection_confidence``) and its eye keypoints level the mesh ROI; the mesh and both eyes' iris
    models run on the crop, and the points are mapped back to the frame. The mesh is dropped when its
    face-presence probability is below ``min_presence``: 0.1, not mediapipe's 0.5, because the plain
    mesh model is less sure than the refined one mediapipe gates at 0.5. On the 42 faces of
    ``benchmarks/face_port_check.py`` the default backend meshed all 42; at 0.5 the port lost 3 of them
    (presence 0.15-0.46), at 0.1 none, and the landmarks of those 3 were as close to mediapipe's as the rest.

    The frame detector keeps faces scoring at least ``max(min_detection_confidence, model threshold)``
    (0.6 full-range, 0.5 short-range). The floor is there for parity: mediapipe 0.10.21's
    ``FaceDetection`` ignores its ``min_detection_confidence`` and always applies the graph's own
    threshold (measured: scores below 0.6 never come out of the full-range model, whatever is asked).

    ``detect_max_side`` downscales the frame for the frame detector only. Not thread-safe: one instance
    per thread.
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        full_range: bool = True,
        detect_max_side: int | None = None,
        threads: int = 1,
        crop_detection_confidence: float = 0.3,
        min_presence: float = 0.1,
    ):
        config = FULL_RANGE if full_range else SHORT_RANGE
        self.detect_max_side = detect_max_side
        self.min_presence = float(min_presence)
        self.detector = FaceDetector(config, max(float(min_detection_confidence), config.min_score), threads)
        # 0.3 in the crop (FaceAnalyzer's FaceMesh setting): the frame detector has already found a face there
        self.crop_detector = FaceDetector(SHORT_RANGE, crop_detection_confidence, threads)
        self.mesh = MeshModel(threads)
        self.iris = IrisModel(threads)

    def detect(self, rgb: np.ndarray) -> FaceDetection | None:
        """The largest face found by the frame detector, or None."""
        dets = self.detector(detection_frame(rgb, self.detect_max_side))
        if not len(dets):
            return None
        i = dets.largest()
        x0, y0, x1, y1 = (float(v) for v in dets.boxes[i])
        return FaceDetection((x0, y0, x1 - x0, y1 - y0), float(dets.scores[i]), dets.keypoints[i].copy())

    def landmarks(self, rgb: np.ndarray, detection: FaceDetection) -> np.ndarray | None:
        """The 478 landmarks of the detected face, or None: float32 ``(478, 3)``, x / width, y / height and
        z / width (negative = nearer), as ``mp.solutions`` gives them."""
        h, w = rgb.shape[:2]
        crop, k, (tx, ty) = face_crop(rgb, detection.box)
        pts = self.landmarks_in_crop(crop)
        if pts is None:
            return None
        out = np.empty((N_LANDMARKS, 3), np.float32)
        out[:, 0] = (pts[:, 0] - tx) / k / w
        out[:, 1] = (pts[:, 1] - ty) / k / h
        out[:, 2] = pts[:, 2] / k / w
        return out

    def landmarks_in_crop(self, crop: np.ndarray) -> np.ndarray | None:
        """478 points ``(x, y, z)`` in pixels of an image that holds one large face, or None."""
        h, w = crop.shape[:2]
        dets = self.crop_detector(crop)
        if not len(dets):
            return None
        scale = np.array([w, h], np.float64)
        box = dets.boxes[0].reshape(2, 2) * scale  # the best-scoring face, as mediapipe's FaceMesh takes
        eyes = dets.keypoints[0, :2] * scale
        roi = rotated_square_roi(box.ravel(), eyes[0], eyes[1], _MESH_ROI_SCALE)
        mesh, presence = self.mesh(crop, roi)
        if presence < self.min_presence:
            return None
        out = np.empty((N_LANDMARKS, 3), np.float64)
        out[:N_MESH] = mesh
        for e, (i0, i1) in enumerate(_EYE_CORNERS):
            corners = mesh[[i0, i1], :2]
            eye_box = np.concatenate([corners.min(0), corners.max(0)])
            eye_roi = rotated_square_roi(eye_box, corners[0], corners[1], _IRIS_ROI_SCALE)
            _, iris = self.iris(crop, eye_roi, flip=e == 1)
            # The iris model's 71 eye-contour points are not used: put in place of the mesh's eye points
            # (as mediapipe's iris graph does), they moved those points further from mediapipe's refined
            # mesh (on 50 IEMOCAP frames, NME 0.075 -> 0.106 of the eye-centre distance).
            iris = iris[list(_IRIS_ORDER[e])]
            iris[:, 2] = mesh[list(_EYELIDS[e]), 2].mean()
            out[N_MESH + 5 * e : N_MESH + 5 * (e + 1)] = iris
        return out
