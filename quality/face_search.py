"""Face search: which faces matter in an image and which one is the main face.

BlazeFace on the frame (tiles only where small faces could hide), each candidate confirmed by
the face mesh (a box where it finds no face that fits is a false detection), the main face
being the most prominent confirmed one. The gate (quality/gate.py) and training's crops
(training/crops.py) both take the main face from here.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

from ekyc.quality.faces import (
    RELIABLE_FACE_SHARE,
    CropRule,
    Face,
    FaceDetector,
    FaceDetectorOptions,
    clip_box,
    crop_face,
    search_faces,
)
from ekyc.quality.landmarks import FaceLandmarks, FaceMesh
from ekyc.quality.options import QualityGateOptions


def crop_main_face(rgb: np.ndarray, faces: Sequence[Face], rule: CropRule) -> np.ndarray | None:
    """The liveness model's input: the main face (``faces[0]``, as ``FaceFinder.find`` orders
    them: the most prominent face the face mesh confirmed) cut out with ``rule``; None without
    a face. The server (server/pipeline.py) and training's crop cache (training/crops.py) both
    crop through here, so the model is trained on the face it is later asked about."""
    if not faces:
        return None
    return crop_face(rgb, faces[0], rule)


def crop_main_face_inputs(rgb: np.ndarray, faces: Sequence[Face], inputs) -> dict[str, np.ndarray] | None:
    """Every named input of a model (``(name, CropRule)`` pairs, ``LivenessModel.inputs``) cut
    from the main face; None without a face. One crop function for serving and training."""
    if not faces:
        return None
    return {name: crop_face(rgb, faces[0], rule) for name, rule in inputs}


def _warm_up_portrait() -> np.ndarray | None:
    try:
        import matplotlib.cbook
        from PIL import Image

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        with Image.open(path) as image:
            return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    except Exception:  # noqa: BLE001 - optional: without it the warm-up uses a blank image
        return None


def _by_area(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.area, reverse=True)


def _by_prominence(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.area * f.score, reverse=True)


def _same(a: Face, b: Face) -> bool:
    return (a.x, a.y, a.width, a.height) == (b.x, b.y, b.width, b.height)


def _landmarks_fit(landmarks: FaceLandmarks, face: Face) -> bool:
    """The landmarker's face is the candidate's: its centre inside the box, a similar width."""
    points = landmarks.points
    cx, cy = float(points[:, 0].mean()), float(points[:, 1].mean())
    width = float(points[:, 0].max() - points[:, 0].min())
    inside = face.x <= cx <= face.x + face.width and face.y <= cy <= face.y + face.height
    # Measured landmark width / box width: 0.81-1.15 on clean photos, up to 1.41 rotated or cut.
    return inside and 0.7 * face.width <= width <= 1.7 * face.width



class FaceFinder:
    """The face detector and the face mesh, and the search that uses both; thread-safe (both
    are ONNX Runtime sessions); a context manager."""

    def __init__(self, options: QualityGateOptions):
        self.options = options
        self._detector = FaceDetector(FaceDetectorOptions(options.detector_model, options.min_detection_confidence))
        self._landmarkers: FaceMesh | None = None
        if options.search.landmarks:
            self._landmarkers = FaceMesh(options.search.landmarker_model, options.search.landmarker_min_presence_confidence)

    def find(
        self, rgb: np.ndarray, timings: dict | None = None, unconfirmed: list[Face] | None = None
    ) -> tuple[list[Face], FaceLandmarks | None]:
        """The faces that matter, main face first, and the main face's landmarks; the boxes the
        landmarker rejected are appended to ``unconfirmed`` (if given), largest first.

        1. BlazeFace on the whole frame (it finds faces at least RELIABLE_FACE_SHARE of the
           frame's longer side).
        2. The landmarker confirms candidates, most prominent first (area x detector score): a
           box where it finds no face, or a face that does not fit the box, is a false detection
           and is dropped. The first one confirmed is the main face. (Without landmarks: the
           most prominent box.)
        3. Tiles, only where a face that changes the answer could hide: down to ``min_face_px``
           when no face is confirmed yet (a small face is FACE_TOO_SMALL, not NO_FACE), else
           down to the size of a second face that would count for MULTIPLE_FACES, in frames
           whose longer side is at least ``second_face_tiles_min_side`` (smaller frames, such
           as a 640x480 selfie, rely on the frame pass for second faces, which keeps them fast).
        4. Every other face at least ``multiple_faces_min_area_ratio`` of the main one is
           confirmed too. At most ``max_confirmations`` landmarker runs per image; candidates
           left unchecked are kept as detected.
        """
        search = self.options.search
        ratio = self.options.thresholds.multiple_faces_min_area_ratio
        height, width = rgb.shape[:2]
        budget = [max(1, search.max_confirmations)]
        rejected: list[Face] = []
        spent = [0.0]

        def confirm(face: Face) -> FaceLandmarks | None:
            started = time.perf_counter()
            budget[0] -= 1
            # The eye keypoints of a box the detector is unsure of can point anywhere (a logo's
            # windows one above the other), and a crop turned by them can make the landmark
            # model see a face: such a box must hold a face in an upright crop too.
            found = self._landmarkers.measure(rgb, face, check_upright=face.score < search.upright_check_below_score)
            spent[0] += time.perf_counter() - started
            if found is None or not _landmarks_fit(found, face):
                rejected.append(face)
                return None
            return found

        def first_confirmed(candidates: list[Face]) -> tuple[Face | None, FaceLandmarks | None]:
            for face in candidates:
                if budget[0] <= 0:
                    break
                if any(_same(face, r) for r in rejected):
                    continue
                found = confirm(face)
                if found is not None:
                    return face, found
            return None, None

        started = time.perf_counter()
        detector = self._detector
        boxes = detector.detect_boxes(rgb)
        faces = _by_prominence([f for f in (clip_box(b, width, height) for b in boxes) if f])
        if self._landmarkers is None:
            main, landmarks = (faces[0] if faces else None), None
        else:
            main, landmarks = first_confirmed(faces)
        need = float(search.min_face_px)
        tiles = search.max_tiles > 0
        if main is not None:
            need = max(need, math.sqrt(ratio) * min(main.width, main.height))
            tiles = tiles and max(width, height) >= search.second_face_tiles_min_side
        if tiles and need < RELIABLE_FACE_SHARE * max(width, height):
            # A rejected box must not hide a real, smaller face found inside it.
            kept = [b for b in boxes if not any(_same(clip_box(b, width, height), r) for r in rejected)]
            faces = _by_prominence(search_faces(detector, rgb, need, search.max_tiles, full_frame=kept))
            if self._landmarkers is None:
                main = faces[0] if faces else None
            elif main is None:
                main, landmarks = first_confirmed(faces)
        others: list[Face] = []
        for face in faces if main is not None else []:
            if _same(face, main) or any(_same(face, r) for r in rejected):
                continue
            if self._landmarkers is not None and face.area >= ratio * main.area and budget[0] > 0:
                if confirm(face) is None:
                    continue  # a false detection
            others.append(face)
        result = ([main] if main is not None else []) + _by_area(others)
        if unconfirmed is not None:
            unconfirmed.extend(_by_area(rejected))
        if timings is not None:
            total = time.perf_counter() - started
            timings["detect"] = (total - spent[0]) * 1000.0
            timings["landmarks"] = spent[0] * 1000.0
        return result, landmarks

    def search_all_faces(self, rgb: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        """Every face the detector finds down to ``min_face_px`` (default: detector.min_face_px),
        whatever the gate needs: the detection strategy on its own, for measuring recall."""
        search = self.options.search
        return search_faces(self._detector, rgb, float(min_face_px or search.min_face_px), search.max_tiles)

    def warm_up(self) -> None:
        """Run the detector and the face mesh once on a real portrait (matplotlib's public-domain
        sample, when installed), so that the first requests pay no lazy start-up (ONNX Runtime
        allocates its buffers on the first call)."""
        portrait = _warm_up_portrait()
        blank = np.full((240, 320, 3), 128, dtype=np.uint8)
        self._detector.detect(blank)
        face = Face(110, 70, 100, 100, 1.0)
        if portrait is not None:
            found = self._detector.detect(portrait)
            face = found[0] if found else face
        if self._landmarkers is not None:
            self._landmarkers.measure(portrait if portrait is not None else blank, face)

    def close(self) -> None:
        self._detector.close()
        if self._landmarkers is not None:
            self._landmarkers.close()

    def __enter__(self) -> "FaceFinder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
