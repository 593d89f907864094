"""MediaPipe's models run directly on ONNX Runtime (models/mediapipe): BlazeFace
(quality/faces.py) checked against MediaPipe's FaceDetector task, and the face mesh
(quality/landmarks.py: landmarks, blendshapes, pose from the detector's box) against its
FaceLandmarker task. MediaPipe itself is a test dependency only: the reference."""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA_DIR, packaged_face_path
from ekyc.quality.faces import FaceDetector, FaceDetectorOptions
from ekyc.quality.landmarks import (
    BLENDSHAPE_NAMES,
    BLENDSHAPE_POINTS,
    FACE_MESH_FILES,
    FaceMesh,
    LandmarkerModelError,
    Roi,
    fit_rotation,
    pose_from_matrix,
    read_canonical_face,
)
from ekyc.paths import BUNDLED_MODELS, DEFAULT_DETECTOR

FACE_MESH = BUNDLED_MODELS / "mediapipe"
# MediaPipe's own bundle, the source of the converted models and the reference here.
BUNDLE = BUNDLED_MODELS / "face_landmarker.task"


@pytest.fixture(scope="module")
def detector():
    with FaceDetector(FaceDetectorOptions(DEFAULT_DETECTOR, 0.5)) as detector:
        yield detector


@pytest.fixture(scope="module")
def mesh():
    with FaceMesh(FACE_MESH) as mesh:
        yield mesh


class MediaPipeReference:
    """MediaPipe's FaceLandmarker task (IMAGE mode) on a 2x crop around the detector's face:
    the reference the direct models must agree with."""

    def __init__(self):
        from mediapipe.tasks.python import BaseOptions, vision

        self._task = vision.FaceLandmarker.create_from_options(
            vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(BUNDLE)),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=1,
                min_face_detection_confidence=0.3,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
        )

    def measure(self, rgb, face):
        import mediapipe as mp

        side = 2.0 * max(face.width, face.height)
        x0, y0 = face.x + face.width / 2.0 - side / 2.0, face.y + face.height / 2.0 - side / 2.0
        size = int(min(256, round(side)))
        scale = size / side
        warp = np.float32([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
        crop = cv2.warpAffine(rgb, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        result = self._task.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
        if not result.face_landmarks:
            return None
        normalized = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]])
        points = np.column_stack([x0 + normalized[:, 0] * side, y0 + normalized[:, 1] * side, normalized[:, 2] * side])
        blendshapes = {c.category_name: c.score for c in result.face_blendshapes[0]}
        return points, blendshapes, pose_from_matrix(np.asarray(result.facial_transformation_matrixes[0]))

    def close(self):
        self._task.close()


@pytest.fixture(scope="module")
def reference():
    task = MediaPipeReference()
    yield task
    task.close()


def rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, 1.0)
    return cv2.warpAffine(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def compare(detector, mesh, reference, images):
    """Per face: mean landmark distance / interocular distance, |pose difference| (yaw, pitch,
    roll), |eyes closed difference| between the direct models and MediaPipe's task."""
    rows = []
    for rgb in images:
        faces = detector.detect(rgb)
        if not faces:
            continue
        ours, theirs = mesh.measure(rgb, faces[0]), reference.measure(rgb, faces[0])
        assert (ours is None) == (theirs is None), "one finds a face where the other does not"
        if ours is None:
            continue
        points, blendshapes, pose = theirs
        interocular = ours.interocular_distance
        error = float(np.linalg.norm(ours.points[:, :2] - points[:, :2], axis=1).mean() / interocular)
        depth = float(np.abs(ours.points[:, 2] - points[:, 2]).mean() / interocular)
        angles = np.abs(np.subtract((ours.pose.yaw, ours.pose.pitch, ours.pose.roll), (pose.yaw, pose.pitch, pose.roll)))
        blink = 0.5 * (blendshapes["eyeBlinkLeft"] + blendshapes["eyeBlinkRight"])
        rows.append((error, depth, angles, abs(ours.eyes_closed - blink)))
    return rows


def assert_agrees(rows, minimum):
    assert len(rows) >= minimum
    errors = np.array([r[0] for r in rows])
    depths = np.array([r[1] for r in rows])
    angles = np.array([r[2] for r in rows])
    blinks = np.array([r[3] for r in rows])
    # Measured on 321 NUAA frames and photos (upright and turned 25 deg): landmarks 0.9 % of
    # the interocular distance apart (median; max 3.8 %), pose within 2.3 deg (95th
    # percentile), blink score within 0.07 (95th percentile; max 0.13).
    assert np.median(errors) < 0.02 and errors.max() < 0.06, errors
    assert np.median(depths) < 0.02, depths
    assert np.percentile(angles, 95, axis=0).max() < 4.0 and angles.max() < 7.0, angles
    assert np.percentile(blinks, 95) < 0.12 and blinks.max() < 0.2, blinks


def test_agrees_with_mediapipes_face_landmarker_on_the_packaged_portrait(detector, mesh, reference):
    rgb = cv2.cvtColor(cv2.imread(str(packaged_face_path())), cv2.COLOR_BGR2RGB)
    images = [rgb, rgb[:, ::-1].copy()] + [rotate(rgb, angle) for angle in (-30, -15, 15, 30)]
    assert_agrees(compare(detector, mesh, reference, images), minimum=6)


@pytest.mark.data
@pytest.mark.skipif(DATA_DIR is None, reason="needs EKYC_DATA_DIR")
def test_agrees_with_mediapipes_face_landmarker_on_real_frames(detector, mesh, reference):
    frames = sorted((DATA_DIR / "nuaa").glob("*/*/*.jpg"))
    picked = random.Random(5).sample(frames, 40)
    images = []
    for path in picked:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        images += [rgb, rotate(rgb, 25.0)]
    assert_agrees(compare(detector, mesh, reference, images), minimum=70)


def test_no_face_in_the_box_gives_none(mesh):
    from ekyc.quality.faces import Face

    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert mesh.measure(noise, Face(200, 150, 200, 200, 0.9)) is None
    assert mesh.measure(np.full((480, 640, 3), 128, np.uint8), Face(200, 150, 200, 200, 0.9)) is None


def test_the_roi_crop_and_projection_are_inverse():
    """A dot drawn in the image lands, through crop then project, where it was drawn."""
    rgb = np.zeros((400, 500, 3), np.uint8)
    dot = (310.0, 140.0)
    cv2.circle(rgb, (int(dot[0]), int(dot[1])), 3, (255, 255, 255), -1)
    roi = Roi(cx=280.0, cy=170.0, width=150.0, height=150.0, rotation=math.radians(20))
    crop = roi.crop(rgb, 256).astype(float).sum(axis=2)
    v, u = np.unravel_index(np.argmax(cv2.GaussianBlur(crop, (9, 9), 0)), crop.shape)
    found = roi.project(np.array([[(u + 0.5) / 256, (v + 0.5) / 256, 0.0]]))[0]
    assert np.hypot(found[0] - dot[0], found[1] - dot[1]) < 1.5, found


def test_a_known_rotation_is_recovered_from_the_canonical_face():
    vertices, ids, weights = read_canonical_face((FACE_MESH / FACE_MESH_FILES[2]).read_bytes())
    assert vertices.shape == (468, 3) and len(ids) == len(weights) > 20
    assert ids.min() >= 0 and ids.max() < 468 and (weights >= 0).all() and weights.sum() > 0
    yaw, pitch = math.radians(25), math.radians(-10)
    turn = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    nod = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    rotation = turn @ nod
    observed = 3.7 * vertices[ids] @ rotation.T + (40.0, -12.0, 5.0)
    fitted = fit_rotation(vertices[ids], observed, weights)
    assert np.allclose(fitted, rotation, atol=1e-6)
    # The face's forward axis (0, 0, 1) ends at (sin 25 cos 10, sin 10, cos 25 cos 10): turned
    # 25 deg to the image's right and 10 deg up; its up axis (0, 1, 0) at (-sin 25 sin 10,
    # cos 10, -cos 25 sin 10), whose angle in the image plane is the roll.
    pose = pose_from_matrix(fitted)
    assert pose.yaw == pytest.approx(25.0, abs=1e-6) and pose.pitch == pytest.approx(10.0, abs=1e-6)
    ten = math.radians(10)
    assert pose.roll == pytest.approx(math.degrees(math.atan2(math.sin(yaw) * math.sin(ten), math.cos(ten))))


def test_blendshape_tables_match_the_model(mesh):
    assert len(BLENDSHAPE_POINTS) == 146 and len(set(BLENDSHAPE_POINTS)) == 146
    assert len(BLENDSHAPE_NAMES) == 52 and {"eyeBlinkLeft", "eyeBlinkRight"} <= set(BLENDSHAPE_NAMES)
    points = np.random.default_rng(1).uniform(100, 300, (478, 3)).astype(np.float32)
    assert set(mesh.blendshapes(points)) == set(BLENDSHAPE_NAMES)


def test_the_committed_models_are_the_converted_ones():
    """provenance.json (written by scripts/convert_face_mesh.py) names each file's sha256 and
    the bundle it came from: a changed file or bundle shows here."""
    provenance = json.loads((FACE_MESH / "provenance.json").read_text())
    assert provenance["source_sha256"] == hashlib.sha256(BUNDLE.read_bytes()).hexdigest()
    for name in (*FACE_MESH_FILES, DEFAULT_DETECTOR.name):
        assert provenance["files"][name]["sha256"] == hashlib.sha256((FACE_MESH / name).read_bytes()).hexdigest()


def test_the_prelu_rewrite_keeps_the_function():
    """scripts/convert_face_mesh.py's rewrite: Relu(x) * (1 - a) + x * a == PRelu(x, a)."""
    pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from convert_face_mesh import rewrite_prelu

    slope = np.array([0.1, -0.5, 2.0], np.float32).reshape(1, 3, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "a"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [numpy_helper.from_array(slope, "a")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(2).normal(size=(1, 3, 4, 4)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert rewrite_prelu(model) == 1 and "PRelu" not in {n.op_type for n in model.graph.node}
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.allclose(before, after, atol=1e-6)


@pytest.mark.parametrize("damage", ["missing", "corrupt onnx", "corrupt geometry"])
def test_a_broken_face_mesh_folder_is_a_clear_error(tmp_path, damage):
    folder = tmp_path / "face_mesh"
    shutil.copytree(FACE_MESH, folder)
    if damage == "missing":
        (folder / "face_blendshapes.onnx").unlink()
    elif damage == "corrupt onnx":
        (folder / "face_landmarks.onnx").write_bytes(b"not an onnx model")
    else:
        (folder / FACE_MESH_FILES[2]).write_bytes(b"\x0a\xff")
    with pytest.raises(LandmarkerModelError):
        FaceMesh(folder)


def test_the_server_refuses_to_start_on_a_broken_face_mesh(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ekyc-server"), "--host", "127.0.0.1", "--port", "0"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "EKYC_LANDMARKS_PATH": str(tmp_path)},
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert any("face_landmarks.onnx" in line for line in result.stderr.splitlines() if "error" in line)


@pytest.mark.data
@pytest.mark.skipif(DATA_DIR is None, reason="needs EKYC_DATA_DIR")
def test_an_unsure_box_with_wild_keypoints_is_not_confirmed():
    """obama1.jpg: BlazeFace also boxes the White House logo behind him (score 0.69) with its
    'eyes' one above the other; a crop turned by them makes the landmark model see a face
    (presence 0.99), the upright crop does not (0.00). The logo must not become a face."""
    from ekyc.quality.gate import QualityGate, QualityReason
    from ekyc.server.config import load_config

    path = DATA_DIR / "faces" / "photos" / "knn_examples" / "test" / "obama1.jpg"
    quality = load_config(None, {}).quality
    with QualityGate(quality) as gate:
        rgb = gate.decode(path.read_bytes())
        boxes = gate.search_all_faces(rgb)
        logo = [f for f in boxes if f.score < quality.search.upright_check_below_score]
        assert logo, "the detector no longer boxes the logo: this test has lost its subject"
        result = gate.assess(rgb)
    assert result.face is not None and result.face.score >= quality.search.upright_check_below_score
    assert QualityReason.MULTIPLE_FACES not in result.reasons and QualityReason.POSE_TOO_LARGE not in result.reasons


class MediaPipeDetector:
    """MediaPipe's FaceDetector task on the bundle's face_detector.tflite: the reference."""

    def __init__(self, min_confidence: float = 0.5):
        import zipfile

        from mediapipe.tasks.python import BaseOptions, vision

        with zipfile.ZipFile(BUNDLE) as bundle:
            model = bundle.read("face_detector.tflite")
        self._task = vision.FaceDetector.create_from_options(
            vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=model),
                                       min_detection_confidence=min_confidence)
        )

    def detect(self, rgb):
        """(x0, y0, x1, y1, score, (right eye x, y, left eye x, y)) per face, as ekyc's detector."""
        import mediapipe as mp

        height, width = rgb.shape[:2]
        found = []
        for detection in self._task.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))).detections:
            box, points = detection.bounding_box, detection.keypoints
            found.append((box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height,
                          detection.categories[0].score,
                          (points[0].x * width, points[0].y * height, points[1].x * width, points[1].y * height)))
        return found

    def close(self):
        self._task.close()


@pytest.fixture(scope="module")
def reference_detector():
    task = MediaPipeDetector()
    yield task
    task.close()


def assert_same_detections(detector, reference_detector, images, minimum):
    """Measured on 200 NUAA frames, the 50 photos and 215 replay crops: 465 boxes, 95 % within
    0.5 % of their size; the worst, a weak (0.54) face in a group photo, 2.7 % off; eyes within
    0.9 %, scores within 0.007."""
    exact = compared = 0
    for rgb in images:
        ours = sorted(detector.detect_boxes(rgb), key=lambda b: -b[4])
        theirs = sorted(reference_detector.detect(rgb), key=lambda b: -b[4])
        assert len(ours) == len(theirs), (len(ours), len(theirs))
        for mine, other in zip(ours, theirs):
            side = other[2] - other[0]
            box_error = np.abs(np.subtract(mine[:4], other[:4])).max()
            assert box_error <= max(2.0, 0.03 * side), (mine, other)
            assert np.abs(np.subtract(mine[5], other[5])).max() <= 0.02 * side, (mine[5], other[5])
            assert mine[4] == pytest.approx(other[4], abs=0.01)
            exact += box_error <= 1.0
            compared += 1
    assert compared >= minimum and exact >= 0.9 * compared, (exact, compared)


def test_the_detector_agrees_with_mediapipes_face_detector(detector, reference_detector):
    """Same boxes (to MediaPipe's whole pixels), eye keypoints and scores, on the packaged
    portrait: whole, mirrored, turned, cut by each border, small in a large frame, and on
    frames without a face."""
    import degrade

    rgb = cv2.cvtColor(cv2.imread(str(packaged_face_path())), cv2.COLOR_BGR2RGB)
    face = detector.detect(rgb)[0]
    canvas = np.zeros((900, 1400, 3), np.uint8)
    small = rgb[::3, ::3]
    canvas[500:500 + small.shape[0], 900:900 + small.shape[1]] = small
    images = [rgb, degrade.mirror(rgb), rotate(rgb, 25.0), rotate(rgb, -40.0), canvas,
              *(degrade.cut_face(rgb, face, side, 0.25) for side in ("left", "right", "top", "bottom")),
              np.full((480, 640, 3), 90, np.uint8), np.random.default_rng(3).integers(0, 256, (300, 400, 3), np.uint8)]
    assert_same_detections(detector, reference_detector, images, minimum=8)


@pytest.mark.data
@pytest.mark.skipif(DATA_DIR is None, reason="needs EKYC_DATA_DIR")
def test_the_detector_agrees_with_mediapipe_on_real_frames_and_photos(detector, reference_detector):
    frames = random.Random(6).sample(sorted((DATA_DIR / "nuaa").glob("*/*/*.jpg")), 60)
    photos = sorted((DATA_DIR / "faces").glob("**/*.jpg"))
    crops = sorted((DATA_DIR / "replay").glob("*/*/*.jpg"))[::15]  # tight face crops: boxes past the edges
    images = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in frames + photos + crops]
    assert_same_detections(detector, reference_detector, images, minimum=150)


def test_a_detector_model_that_is_not_blazeface_is_a_clear_error(tmp_path):
    from ekyc.quality.faces import FaceDetectorModelError

    bundle = tmp_path / "face_landmarker.task"
    shutil.copy(BUNDLE, bundle)
    with pytest.raises(FaceDetectorModelError, match="ONNX"):
        FaceDetector(FaceDetectorOptions(bundle))
    for name, data in (("garbage.onnx", b"not a model"), ("landmarks.onnx", (FACE_MESH / "face_landmarks.onnx").read_bytes())):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FaceDetectorModelError):
            FaceDetector(FaceDetectorOptions(tmp_path / name))
