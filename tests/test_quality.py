"""The quality gate on a real face and controlled degradations of it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ekyc.quality.faces import CropRule, Face, FaceDetector, FaceDetectorOptions, crop_face
from ekyc.quality.gate import SHARPNESS_SIDE, QualityReason, QualityThresholds, assess_quality, sharpness
from conftest import darken
from ekyc.paths import DEFAULT_DETECTOR
from ekyc.server.config import load_config


@pytest.fixture(scope="module")
def detector():
    with FaceDetector(FaceDetectorOptions(DEFAULT_DETECTOR)) as detector:
        yield detector


@pytest.fixture(scope="module")
def limits() -> QualityThresholds:
    return load_config(environ={}).quality.thresholds


def gate(detector, limits, rgb):
    return assess_quality(rgb, detector.detect(rgb), limits)


def test_clean_face_passes_with_its_scores(detector, limits, face_rgb):
    result = gate(detector, limits, face_rgb)
    assert result.passed, result.reasons
    assert result.scores.face_count == 1
    assert 0.0 < result.scores.face_coverage < 1.0
    assert limits.min_brightness < result.scores.brightness < limits.max_brightness
    assert result.scores.sharpness > limits.min_sharpness
    face = result.face
    assert 0 <= face.x and face.x + face.width <= face_rgb.shape[1]


def test_flat_image_has_no_face(detector, limits):
    result = gate(detector, limits, np.full((480, 640, 3), 128, np.uint8))
    assert not result.passed
    assert QualityReason.NO_FACE in result.reasons
    assert result.face is None and result.scores.face_count == 0


def _gamma(rgb: np.ndarray, gamma: float) -> np.ndarray:
    table = (255.0 * (np.arange(256) / 255.0) ** gamma).clip(0, 255).astype(np.uint8)
    return cv2.LUT(rgb, table)


def test_darkening_gives_too_dark_and_brightening_too_bright(detector, limits, face_rgb):
    dark = gate(detector, limits, darken(face_rgb))
    bright = gate(detector, limits, np.clip(face_rgb.astype(int) + 140, 0, 255).astype(np.uint8))
    assert QualityReason.TOO_DARK in dark.reasons, dark.scores
    assert QualityReason.TOO_BRIGHT in bright.reasons, bright.scores


def test_blur_lowers_sharpness_monotonically_and_heavy_blur_is_rejected(detector, limits, face_rgb):
    face = gate(detector, limits, face_rgb).face
    scores = []
    for sigma in (0, 1, 2, 4):
        blurred = face_rgb if sigma == 0 else cv2.GaussianBlur(face_rgb, (0, 0), sigma * face.width / 128)
        scores.append(assess_quality(blurred, [face], limits).scores.sharpness)
    assert scores == sorted(scores, reverse=True), scores
    heavy = cv2.GaussianBlur(face_rgb, (0, 0), 6 * face.width / 128)
    assert QualityReason.BLURRY in assess_quality(heavy, [face], limits).reasons


def test_sharpness_does_not_depend_on_face_size(face_rgb, detector, limits):
    face = gate(detector, limits, face_rgb).face
    region = cv2.cvtColor(face_rgb, cv2.COLOR_RGB2GRAY)[face.y : face.y + face.height, face.x : face.x + face.width]
    # Down to the measuring side, not below it: smaller faces are upsampled (and FACE_TOO_SMALL).
    side = max(SHARPNESS_SIDE, min(region.shape) // 2)
    small = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA)
    large, half = sharpness(region), sharpness(small)
    assert 0.5 < half / large < 2.0, (large, half)


def test_small_face_is_too_small(detector, limits, face_rgb):
    face = gate(detector, limits, face_rgb).face
    factor = (limits.min_face_size_px * 0.75) / face.width
    height, width = face_rgb.shape[:2]
    small = cv2.resize(face_rgb, (int(width * factor), int(height * factor)), interpolation=cv2.INTER_AREA)
    result = gate(detector, limits, small)
    assert result.face is not None, "the detector lost the downscaled face"
    assert result.face.width < limits.min_face_size_px
    assert QualityReason.FACE_TOO_SMALL in result.reasons, result.scores


def test_two_faces_side_by_side_are_multiple_faces(detector, limits, face_rgb):
    pair = np.hstack([face_rgb, face_rgb[:, ::-1]])
    result = gate(detector, limits, pair)
    assert result.scores.face_count >= 2
    assert QualityReason.MULTIPLE_FACES in result.reasons


def test_a_much_smaller_second_face_is_tolerated(limits, face_rgb):
    main = Face(10, 10, 200, 200, 0.9)
    tiny = Face(300, 10, 40, 40, 0.6)
    result = assess_quality(face_rgb, [main, tiny], limits)
    assert QualityReason.MULTIPLE_FACES not in result.reasons


def test_crop_rule_makes_square_model_input_with_border_padding(face_rgb):
    rule = CropRule(size=96, scale=1.5)
    corner = Face(0, 0, 80, 80, 0.9)  # the square reaches outside the image
    crop = crop_face(face_rgb, corner, rule)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    inside = crop_face(face_rgb, Face(100, 100, 120, 120, 0.9), CropRule(size=180, scale=1.0))
    expected = cv2.resize(face_rgb[100:220, 100:220], (180, 180), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(inside, expected)


def test_thresholds_come_from_config_and_env(tmp_path):
    own = tmp_path / "camera.toml"
    own.write_text("[quality]\nmin_sharpness = 55.5\n")
    config = load_config(own, environ={"EKYC_QUALITY_MAX_BRIGHTNESS": "200"})
    assert config.quality.thresholds.min_sharpness == 55.5
    assert config.quality.thresholds.max_brightness == 200.0
    assert config.quality.thresholds.min_brightness == load_config(environ={}).quality.thresholds.min_brightness
