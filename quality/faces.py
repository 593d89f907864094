"""Face detection with MediaPipe's BlazeFace (short range, on ONNX Runtime) and the shared face-crop rule."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ekyc.ort_session import cpu_session


# A raw detection: x0, y0, x1, y1, score, and the eye keypoints (right x, y, left x, y) or None.
Box = tuple[float, float, float, float, float, "tuple[float, float, float, float] | None"]


@dataclass(frozen=True)
class Face:
    """A detected face: box in pixels of the upright image, detector score 0..1.

    ``bounds`` is the detector's box (x0, y0, x1, y1) before it was clipped to the image: it
    reaches past the border when the face is cut off (MediaPipe itself clips the left/top
    edges at 0). ``eyes`` is BlazeFace's eye keypoints (right x, y, left x, y; the subject's
    right eye is on the image's left in an unmirrored photo), which orient the landmark
    model's crop. Neither is part of equality.
    """

    x: int
    y: int
    width: int
    height: int
    score: float
    bounds: tuple[float, float, float, float] | None = field(default=None, compare=False, repr=False)
    eyes: tuple[float, float, float, float] | None = field(default=None, compare=False, repr=False)

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class FaceDetectorOptions:
    """Where the detector comes from and how sure it must be."""

    model_path: Path
    min_confidence: float = 0.5
    min_suppression_threshold: float = 0.3


class FaceDetectorModelError(ValueError):
    """The face detector model is missing or unusable."""


# BlazeFace short range, as MediaPipe's FaceDetectorGraph runs it (face_detector_graph.cc):
# a 128x128 input, 896 SSD anchors (strides 8, 16, 16, 16; two anchors per cell and layer;
# fixed size, so only their centres matter), 16 regressors per anchor (box centre and size,
# then 6 keypoints: right eye, left eye, nose tip, mouth, right and left ear tragion) in input
# pixels relative to the anchor, a sigmoid score clipped at +-100, then weighted NMS.
DETECTOR_INPUT = 128
_STRIDES = (8, 16, 16, 16)


def _ssd_anchor_centres() -> np.ndarray:
    centres = []
    layer = 0
    while layer < len(_STRIDES):
        last = layer
        while last < len(_STRIDES) and _STRIDES[last] == _STRIDES[layer]:
            last += 1
        cells = math.ceil(DETECTOR_INPUT / _STRIDES[layer])
        per_cell = 2 * (last - layer)
        for y in range(cells):
            for x in range(cells):
                centres += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell
        layer = last
    return np.asarray(centres, dtype=np.float32)


_ANCHORS = _ssd_anchor_centres()


def load_detector_model(path: Path) -> bytes:
    """The bytes of a BlazeFace ONNX model (models/mediapipe/face_detector.onnx)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face detector model not found: {path}")
    if zipfile.is_zipfile(path):
        raise FaceDetectorModelError(
            f"{path} is a MediaPipe bundle; the detector needs its BlazeFace as ONNX "
            "(scripts/convert_face_mesh.py makes models/mediapipe/face_detector.onnx)"
        )
    return path.read_bytes()


class FaceDetector:
    """MediaPipe's BlazeFace (short range) on ONNX Runtime, decoded as MediaPipe's
    FaceDetector task decodes it; thread-safe; a context manager.

    Not MediaPipe's task itself: its Python API (1.2) dispatches every call through a thread of
    its own and a calculator graph, 2.0-2.5 ms per 640x480 frame against 1.3-1.6 ms here, and
    the service would otherwise need MediaPipe only for this. tests/test_mediapipe_models.py checks the
    boxes, keypoints and scores against the task.
    """

    def __init__(self, options: FaceDetectorOptions, model_bytes: bytes | None = None):
        self._options = options
        model = model_bytes if model_bytes is not None else load_detector_model(options.model_path)
        try:
            self._session = cpu_session(model)
        except Exception as error:  # noqa: BLE001 - ORT raises its own exception types
            raise FaceDetectorModelError(f"cannot load the face detector {options.model_path}: {error}") from error
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(outputs) != 2 or list(inputs[0].shape[1:]) != [DETECTOR_INPUT, DETECTOR_INPUT, 3]:
            raise FaceDetectorModelError(f"{options.model_path} is not a BlazeFace short-range model")
        self._input = inputs[0].name
        # (regressors [1, 896, 16], scores [1, 896, 1]) whatever order the file lists them in.
        self._outputs = sorted((o.name for o in outputs), key=lambda name: 0 if "regress" in name else 1)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image (one pass over the whole frame), largest first."""
        height, width = rgb.shape[:2]
        faces = [face for face in (clip_box(box, width, height) for box in self.detect_boxes(rgb)) if face]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def detect_boxes(self, rgb: np.ndarray) -> list[Box]:
        """The detector's boxes (x0, y0, x1, y1, score, eyes) in pixels of ``rgb``, best first;
        ``eyes`` is (right x, y, left x, y). Like MediaPipe's task, a box that crosses the
        image's left or top edge is moved inside it, keeping its size (up to the image's)."""
        height, width = rgb.shape[:2]
        tensor, scale, offset_x, offset_y = detector_input(rgb)
        regressors, logits = self._session.run(self._outputs, {self._input: tensor[None]})
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100.0, 100.0)))
        keep = np.flatnonzero(scores >= self._options.min_confidence)
        if keep.size == 0:
            return []
        raw = regressors.reshape(-1, 16)[keep] / DETECTOR_INPUT
        centres = _ANCHORS[keep]
        cx, cy = raw[:, 0] + centres[:, 0], raw[:, 1] + centres[:, 1]
        half_w, half_h = raw[:, 2] / 2.0, raw[:, 3] / 2.0
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) + centres[:, None, :]
        found = []
        for box, points, score in _weighted_nms(boxes, keypoints, scores[keep], self._options.min_suppression_threshold):
            # Input pixels -> image pixels (undo the letterbox).
            x0, x1 = (box[[0, 2]] * DETECTOR_INPUT - offset_x) / scale
            y0, y1 = (box[[1, 3]] * DETECTOR_INPUT - offset_y) / scale
            eyes = (points[:2] * DETECTOR_INPUT - (offset_x, offset_y)) / scale
            # As MediaPipe's task reports them: whole pixels, the origin clamped at 0 and the
            # size at the image's (a box is moved, not cut, at the left and top edges).
            left, top = max(0, int(x0)), max(0, int(y0))
            box_width, box_height = min(int(x1 - x0), width), min(int(y1 - y0), height)
            found.append((float(left), float(top), float(left + box_width), float(top + box_height),
                          float(score), tuple(float(v) for v in eyes.ravel())))
        return found

    def close(self) -> None:
        """The session is freed with the object; kept for the context-manager protocol."""

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def detector_input(rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """BlazeFace's input for an RGB uint8 image: (tensor (128, 128, 3) float32 in [-1, 1],
    scale, x offset, y offset). The whole frame is letterboxed into the square input (zero
    border), mapped corner to corner as MediaPipe's ImageToTensor does."""
    height, width = rgb.shape[:2]
    scale = DETECTOR_INPUT / float(max(width, height))
    offset_x = (DETECTOR_INPUT - width * scale) / 2.0
    offset_y = (DETECTOR_INPUT - height * scale) / 2.0
    matrix = np.float32([[scale, 0.0, offset_x], [0.0, scale, offset_y]])
    tensor = cv2.warpAffine(
        rgb, matrix, (DETECTOR_INPUT, DETECTOR_INPUT), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    ).astype(np.float32)
    tensor *= 2.0 / 255.0
    tensor -= 1.0
    return tensor, scale, offset_x, offset_y


def _weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, threshold: float):
    """MediaPipe's WEIGHTED non-maximum suppression: from the best remaining detection, every
    detection overlapping it by IoU > ``threshold`` is merged into it, box and keypoints
    averaged by score, and keeps the best score. Yields (box, keypoints, score)."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    remaining = np.ones(len(scores), dtype=bool)
    for index in range(len(scores)):
        if not remaining[index]:
            continue
        box = boxes[index]
        width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0.0, None)
        height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0.0, None)
        inter = width * height
        overlap = inter / np.maximum(areas[index] + areas - inter, 1e-12)
        group = remaining & (overlap > threshold)
        group[index] = True
        weights = scores[group]
        total = weights.sum()
        yield (
            (boxes[group] * weights[:, None]).sum(axis=0) / total,
            (keypoints[group] * weights[:, None, None]).sum(axis=0) / total,
            float(scores[index]),
        )
        remaining &= ~group


def clip_box(box: Box, width: int, height: int) -> Face | None:
    bx0, by0, bx1, by1, score, eyes = box
    x0, y0 = max(0, int(bx0)), max(0, int(by0))
    x1, y1 = min(width, int(bx1)), min(height, int(by1))
    if x1 <= x0 or y1 <= y0:
        return None
    return Face(x0, y0, x1 - x0, y1 - y0, float(score), bounds=(bx0, by0, bx1, by1), eyes=eyes)


# BlazeFace short range (128 px input, letterboxed) finds a face reliably when the face's box
# is at least this share of the input's longer side: measured on the shared photos and NUAA
# frames, 63 % at 14 px, 96 % at 18 px, 100 % from 20 px up.
RELIABLE_FACE_SHARE = 20 / 128
# Tiles are resized to at most this side before detection (BlazeFace's input is 128 px).
TILE_SIDE = 256
# Neighbouring tiles overlap by this share of their side, so that every face up to that share
# lies wholly inside one tile.
TILE_OVERLAP = 0.4


def _axis_starts(length: int, side: int) -> list[int]:
    if side >= length:
        return [0]
    stride = side * (1.0 - TILE_OVERLAP)
    count = int(math.ceil((length - side) / stride)) + 1
    return [int(round(i * (length - side) / (count - 1))) for i in range(count)]


def plan_tiles(width: int, height: int, min_face_px: float, max_tiles: int) -> list[tuple[int, int, int, int]]:
    """Tiles (x, y, w, h) that, with one pass over the full frame, find faces down to ``min_face_px``.

    Level k has square tiles of side T_k = 2^k x min_face_px / RELIABLE_FACE_SHARE; a level finds
    faces from RELIABLE_FACE_SHARE x T_k to TILE_OVERLAP x T_k wide, the next one up from twice
    that, and the full frame from RELIABLE_FACE_SHARE x its longer side. No tiles when the full
    frame already suffices. Over ``max_tiles``, the finest level is dropped (the search then
    stops at larger faces) until the plan fits.
    """
    longer = max(width, height)
    side = float(min_face_px) / RELIABLE_FACE_SHARE
    while True:
        tiles: list[tuple[int, int, int, int]] = []
        level = side
        while level < longer:
            tw, th = min(int(round(level)), width), min(int(round(level)), height)
            if tw == width and th == height:
                break
            tiles += [(x, y, tw, th) for y in _axis_starts(height, th) for x in _axis_starts(width, tw)]
            if TILE_OVERLAP * level >= RELIABLE_FACE_SHARE * longer:
                break  # the full frame finds every larger face
            level *= 2.0
        if len(tiles) <= max_tiles:
            return tiles
        side *= 2.0


def boxes_overlap(a: tuple, b: tuple) -> bool:
    """Two boxes (x0, y0, x1, y1, ...) are one face: IoU >= 0.3, or one holds >= 70 % of the
    other and is at most 4 times its area (a much smaller box inside a big one can be a real
    small face inside a false detection, and is kept)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    if inter <= 0:
        return False
    area_a = max((a[2] - a[0]) * (a[3] - a[1]), 1e-6)
    area_b = max((b[2] - b[0]) * (b[3] - b[1]), 1e-6)
    if inter / (area_a + area_b - inter) >= 0.3:
        return True
    small, large = min(area_a, area_b), max(area_a, area_b)
    return inter / small >= 0.7 and small * 4.0 >= large


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Keep boxes in the given order (priority), dropping any that is one face with a kept one."""
    kept: list[tuple] = []
    for box in boxes:
        if not any(boxes_overlap(box, other) for other in kept):
            kept.append(box)
    return kept


def search_faces(
    detector: "FaceDetector",
    rgb: np.ndarray,
    min_face_px: float,
    max_tiles: int,
    full_frame: list[Box] | None = None,
) -> list[Face]:
    """Faces down to ``min_face_px`` wide: the full frame, then tiles where the frame is large
    (see plan_tiles); boxes merged with the full frame's first. Largest first.

    A box found in a tile that touches one of the tile's inner edges (not an image edge) is a
    face cut by the tile and is dropped: the overlap puts that face wholly in another tile.
    """
    height, width = rgb.shape[:2]
    boxes = list(full_frame) if full_frame is not None else detector.detect_boxes(rgb)
    found = []
    for x, y, tw, th in plan_tiles(width, height, min_face_px, max_tiles):
        edge = 0.01 * max(tw, th)
        # The detector sees 128 px anyway: hand it the tile at most TILE_SIDE px wide (one small
        # resize instead of a full-size copy of every tile).
        scale = min(1.0, TILE_SIDE / float(max(tw, th)))
        tile = rgb[y : y + th, x : x + tw]
        if scale < 1.0:
            size = (max(1, int(round(tw * scale))), max(1, int(round(th * scale))))
            tile = cv2.resize(tile, size, interpolation=cv2.INTER_AREA)
            sx, sy = tw / float(size[0]), th / float(size[1])
        else:
            sx = sy = 1.0
        for bx0, by0, bx1, by1, score, eyes in detector.detect_boxes(tile):
            bx0, bx1, by0, by1 = bx0 * sx, bx1 * sx, by0 * sy, by1 * sy
            if (x > 0 and bx0 <= edge) or (y > 0 and by0 <= edge):
                continue
            if (x + tw < width and bx1 >= tw - edge) or (y + th < height and by1 >= th - edge):
                continue
            if eyes is not None:
                eyes = (eyes[0] * sx + x, eyes[1] * sy + y, eyes[2] * sx + x, eyes[3] * sy + y)
            found.append((bx0 + x, by0 + y, bx1 + x, by1 + y, score, eyes))
    found.sort(key=lambda b: b[4], reverse=True)
    faces = [face for face in (clip_box(b, width, height) for b in merge_boxes(boxes + found)) if face]
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


CROP_FITS = ("replicate", "shift")


@dataclass(frozen=True)
class CropRule:
    """How a face box becomes a model input: the one rule training and serving share.

    The crop is a square of side ``scale`` x the longer box side, centred on the box,
    resized to ``size``. Where it crosses the image edge, ``fit`` says what happens:
    ``replicate`` (our MobileNetV2's rule) fills the outside by replicating the border;
    ``shift`` (Silent-Face's MiniFASNet rule) caps the scale so that a ``scale`` x box
    window fits the image, and moves the window back inside it, never padding.
    """

    size: int = 128
    scale: float = 1.2
    fit: str = "replicate"

    def __post_init__(self):
        if self.fit not in CROP_FITS:
            raise ValueError(f"crop fit must be one of {', '.join(CROP_FITS)}, got {self.fit!r}")

    def to_dict(self) -> dict:
        if self.fit == "replicate":
            return {"size": self.size, "scale": self.scale, "border": "replicate"}
        return {"size": self.size, "scale": self.scale, "fit": self.fit}

    @classmethod
    def from_dict(cls, data: dict) -> "CropRule":
        return cls(size=int(data["size"]), scale=float(data["scale"]), fit=str(data.get("fit", "replicate")))


def _shifted_window(rgb: np.ndarray, face: Face, rule: CropRule) -> np.ndarray:
    """Silent-Face's window: ``w*scale`` x ``h*scale`` around the box centre, inside the image."""
    height, width = rgb.shape[:2]
    w, h = max(float(face.width), 1.0), max(float(face.height), 1.0)
    scale = min((height - 1) / h, (width - 1) / w, rule.scale)
    cx, cy = face.x + w / 2.0, face.y + h / 2.0
    x0, y0 = cx - w * scale / 2.0, cy - h * scale / 2.0
    x1, y1 = cx + w * scale / 2.0, cy + h * scale / 2.0
    if x0 < 0:
        x1, x0 = x1 - x0, 0.0
    if y0 < 0:
        y1, y0 = y1 - y0, 0.0
    if x1 > width - 1:
        x0, x1 = x0 - (x1 - width + 1), width - 1.0
    if y1 > height - 1:
        y0, y1 = y0 - (y1 - height + 1), height - 1.0
    return rgb[int(max(0.0, y0)) : int(y1) + 1, int(max(0.0, x0)) : int(x1) + 1]


def crop_face(rgb: np.ndarray, face: Face, rule: CropRule) -> np.ndarray:
    """Cut the model input for ``face`` out of ``rgb``: uint8 (size, size, 3) RGB."""
    if rule.fit == "shift":
        window = np.ascontiguousarray(_shifted_window(rgb, face, rule))
        interpolation = cv2.INTER_AREA if window.shape[0] > rule.size else cv2.INTER_LINEAR
        return cv2.resize(window, (rule.size, rule.size), interpolation=interpolation)
    height, width = rgb.shape[:2]
    side = max(2, int(round(max(face.width, face.height) * rule.scale)))
    cx = face.x + face.width / 2.0
    cy = face.y + face.height / 2.0
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    x1, y1 = x0 + side, y0 + side
    inner = rgb[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    pad_top, pad_left = max(0, -y0), max(0, -x0)
    pad_bottom, pad_right = max(0, y1 - height), max(0, x1 - width)
    if pad_top or pad_left or pad_bottom or pad_right:
        inner = cv2.copyMakeBorder(
            inner, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE
        )
    interpolation = cv2.INTER_AREA if side > rule.size else cv2.INTER_LINEAR
    return cv2.resize(inner, (rule.size, rule.size), interpolation=interpolation)
