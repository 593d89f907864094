"""One function chooses and crops the main face for training and serving alike: on images
with two faces, training's crop cache holds exactly the crop the server scores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import DATA_DIR, encode
from ekyc.paths import DEFAULT_DETECTOR
from ekyc.quality.face_search import crop_main_face
from ekyc.training.crops import OK, CropCache, build_crops, load_crop
from ekyc.training.data import LIVE, Sample


def _pair(first: np.ndarray, second: np.ndarray, factor: float) -> np.ndarray:
    """``first`` with ``second`` scaled by ``factor`` beside it, on a grey canvas."""
    small = cv2.resize(second, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    canvas = np.full((first.shape[0], first.shape[1] + small.shape[1], 3), 120, np.uint8)
    canvas[:, : first.shape[1]] = first
    top = (first.shape[0] - small.shape[0]) // 3
    canvas[top : top + small.shape[0], first.shape[1] :] = small
    return canvas


def _two_face_images(face_rgb: np.ndarray) -> dict[str, bytes]:
    images = {
        "big-and-small": encode(_pair(face_rgb, face_rgb, 0.7)),
        "small-and-big": encode(_pair(face_rgb[:, ::-1].copy(), face_rgb, 1.0)[:, ::-1].copy()),
    }
    if DATA_DIR is not None:
        for name in ("two_people.jpg", "knn_examples/test/obama_and_biden.jpg"):
            images[name.rsplit("/", 1)[-1].removesuffix(".jpg")] = (DATA_DIR / "faces" / "photos" / name).read_bytes()
    return images


def test_training_crops_exactly_the_face_the_server_scores(server, face_rgb, tmp_path):
    pipeline = server.service.pipeline
    inputs = pipeline.model.inputs  # every crop the model takes, (name, rule)
    data_dir = tmp_path / "data"
    (data_dir / "live").mkdir(parents=True)
    samples = []
    for name, image in _two_face_images(face_rgb).items():
        (data_dir / "live" / f"{name}.jpg").write_bytes(image)
        samples.append(Sample(f"live/{name}.jpg", LIVE, "", name, "test", "frame"))
    caches = {name: CropCache.for_data(data_dir, rule, tmp_path / "cache") for name, rule in inputs}
    for cache in caches.values():
        counts = build_crops(samples, data_dir, cache, DEFAULT_DETECTOR, progress=False)
        assert counts[OK] == len(samples), counts
    first = caches[inputs[0][0]]
    rows = {s.path: row for s, row in zip(samples, first.rows(samples))}
    for sample, _ in first.usable(samples):
        image = (data_dir / sample.path).read_bytes()
        rgb = pipeline.gate.decode(image)
        quality = pipeline.gate.assess(rgb)
        assert len(quality.faces) >= 2, (sample.path, quality.faces)  # really two faces that matter
        main = quality.face
        row = rows[sample.path]
        assert (int(row["x"]), int(row["y"]), int(row["width"]), int(row["height"])) == (
            main.x, main.y, main.width, main.height), sample.path
        trained = {}
        for name, rule in inputs:
            crop_path = dict(caches[name].usable([sample]))[sample]
            trained[name] = load_crop(crop_path)
            assert np.array_equal(trained[name], crop_main_face(rgb, quality.faces, rule)), (sample.path, name)
        verdict = pipeline.verify(image, enable_quality_checks=False)
        score = pipeline.model.score_inputs({name: crop[None] for name, crop in trained.items()})
        assert float(score[0]) == pytest.approx(verdict.liveness_score, abs=1e-6)


def test_the_main_face_is_the_one_in_front(server, face_rgb):
    """In a frame with a large face and a smaller one, the main face is the large one."""
    gate = server.service.pipeline.gate
    rgb = _pair(face_rgb, face_rgb, 0.6)
    quality = gate.assess(rgb)
    assert quality.face is not None and quality.face.x + quality.face.width <= face_rgb.shape[1]
    assert quality.face.area == max(face.area for face in quality.faces)
