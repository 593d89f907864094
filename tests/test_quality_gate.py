"""The full quality gate (QualityGate) on a real portrait and controlled degradations of it.

Runs without the shared data (matplotlib's packaged portrait); with EKYC_DATA_DIR the
portrait is obama.jpg. tests/test_quality_benchmark.py measures rates on many photos.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import degrade
from ekyc.quality.faces import Face, plan_tiles, RELIABLE_FACE_SHARE, TILE_OVERLAP
from ekyc.quality.gate import QualityGate, QualityReason, QualityScores, assess_quality
from ekyc.quality.measures import border_margin, exposure, luma, sharpness
from ekyc.server.config import ConfigError, load_config

R = QualityReason


@pytest.fixture(scope="module")
def options():
    return load_config(environ={}).quality


@pytest.fixture(scope="module")
def gate(options):
    with QualityGate(options) as gate:
        gate.warm_up()
        yield gate


@pytest.fixture(scope="module")
def clean(gate, face_rgb):
    result = gate.assess(face_rgb)
    assert result.face is not None and result.landmarks is not None, result
    return result


def test_clean_portrait_passes_with_every_score_measured(clean, options, face_rgb):
    limits = options.thresholds
    assert clean.passed, clean.reasons
    scores = clean.scores
    assert scores.landmarks_measured and scores.face_count == 1
    for field in dataclasses.fields(QualityScores):
        value = getattr(scores, field.name)
        assert isinstance(value, (bool, int, float)) and math.isfinite(value), field.name
    assert limits.min_brightness < scores.brightness < limits.max_brightness
    assert scores.sharpness > limits.min_sharpness and scores.dynamic_range > limits.min_dynamic_range
    # The interocular distance is a plausible share of the face box (about 0.36 on frontal faces).
    assert 0.25 * clean.face.width < scores.interocular_distance_px < 0.55 * clean.face.width
    assert abs(scores.yaw_deg) < limits.max_abs_yaw_deg and abs(scores.roll_deg) < limits.max_abs_roll_deg
    assert scores.eyes_closed_score < limits.max_eyes_closed_score
    assert scores.eyes_occluded_score < limits.max_eyes_occluded_score
    assert scores.face_border_margin > 0 and scores.second_face_area_ratio == 0.0
    height, width = face_rgb.shape[:2]
    assert (clean.image_width, clean.image_height) == (width, height)


DEGRADATIONS = {
    "blur sigma 3": (R.BLURRY, lambda rgb, r: degrade.blur(rgb, r.face, 3.0)),
    "3 stops under": (R.TOO_DARK, lambda rgb, r: degrade.expose(rgb, r.face, -3.0)),
    "gamma 4": (R.TOO_DARK, lambda rgb, r: degrade.gamma(degrade.expose(rgb, r.face, 0.0), 4.0)),
    "2.5 stops over": (R.TOO_BRIGHT, lambda rgb, r: degrade.expose(rgb, r.face, 2.5)),
    "gamma 0.1": (R.TOO_BRIGHT, lambda rgb, r: degrade.gamma(degrade.expose(rgb, r.face, 0.0), 0.1)),
    "contrast x 0.15": (R.LOW_CONTRAST, lambda rgb, r: degrade.contrast(rgb, 0.15)),
    "downscaled": (R.LOW_RESOLUTION, lambda rgb, r: degrade.downscale(rgb, 160)),
    "face 40 px": (R.FACE_TOO_SMALL, lambda rgb, r: degrade.shrink_face(rgb, r.face, 40)),
    "cut left": (R.FACE_CUT_OFF, lambda rgb, r: degrade.cut_face(rgb, r.face, "left", 0.25)),
    "cut right": (R.FACE_CUT_OFF, lambda rgb, r: degrade.cut_face(rgb, r.face, "right", 0.25)),
    "cut top": (R.FACE_CUT_OFF, lambda rgb, r: degrade.cut_face(rgb, r.face, "top", 0.25)),
    "cut bottom": (R.FACE_CUT_OFF, lambda rgb, r: degrade.cut_face(rgb, r.face, "bottom", 0.25)),
    "side by side": (R.MULTIPLE_FACES, lambda rgb, r: degrade.side_by_side(rgb, degrade.mirror(rgb), r.face, r.face)),
    "rotated 35": (R.POSE_TOO_LARGE, lambda rgb, r: degrade.rotate(rgb, 35.0)),
    "rotated -35": (R.POSE_TOO_LARGE, lambda rgb, r: degrade.rotate(rgb, -35.0)),
    "sunglasses 10 %": (R.EYES_OCCLUDED, lambda rgb, r: degrade.sunglasses(rgb, r.landmarks.points, 0.10)),
    "aviators 20 %": (R.EYES_OCCLUDED, lambda rgb, r: degrade.sunglasses(
        rgb, r.landmarks.points, 0.20, "aviator", degrade.SUNGLASS_TINTS[1])),
    "face masked": (R.NO_FACE, lambda rgb, r: degrade.mask_face(rgb, r.face)),
}


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_each_degradation_is_caught_with_its_reason(gate, clean, face_rgb, name):
    reason, make = DEGRADATIONS[name]
    result = gate.assess(make(face_rgb, clean))
    assert not result.passed
    assert reason in result.reasons, (result.reasons, result.scores)


def test_a_mild_version_of_each_degradation_passes(gate, clean, face_rgb):
    """The thresholds are not so tight that any change of the photo fails it."""
    mild = {
        "blur sigma 0.5": degrade.blur(face_rgb, clean.face, 0.5),
        "half a stop under": degrade.expose(face_rgb, clean.face, -0.5),
        "contrast x 0.8": degrade.contrast(face_rgb, 0.8),
        "rotated 8": degrade.rotate(face_rgb, 8.0),
        "light tint 70 %": degrade.sunglasses(face_rgb, clean.landmarks.points, 0.7, highlight=False),
        "mirrored": degrade.mirror(face_rgb),
    }
    for name, image in mild.items():
        result = gate.assess(image)
        assert result.passed, (name, result.reasons, result.scores)


def test_pose_signs_mirror_and_rotation(gate, clean, face_rgb):
    """Mirroring negates yaw and roll; rotating the image by theta (counter-clockwise) adds
    theta to roll. Sign convention: docs/quality.md."""
    mirrored = gate.assess(degrade.mirror(face_rgb)).scores
    assert mirrored.yaw_deg == pytest.approx(-clean.scores.yaw_deg, abs=3.0)
    assert mirrored.roll_deg == pytest.approx(-clean.scores.roll_deg, abs=3.0)
    assert mirrored.pitch_deg == pytest.approx(clean.scores.pitch_deg, abs=3.0)
    for angle in (-30.0, -15.0, 15.0, 30.0):
        turned = gate.assess(degrade.rotate(face_rgb, angle)).scores
        assert turned.landmarks_measured, angle
        assert turned.roll_deg - clean.scores.roll_deg == pytest.approx(angle, abs=5.0), angle
        assert turned.yaw_deg == pytest.approx(clean.scores.yaw_deg, abs=6.0), angle


def test_a_small_face_in_a_large_frame_is_found_by_the_tiles(gate, clean, face_rgb):
    """BlazeFace sees the frame at 128 px: a 40 px face in 640x480 is 8 px to it. The tiles
    find it, so the answer is FACE_TOO_SMALL, not NO_FACE."""
    from cv2 import INTER_AREA, resize

    canvas = np.full((480, 640, 3), 120, np.uint8)
    scale = 40.0 / clean.face.width
    small = resize(face_rgb, None, fx=scale, fy=scale, interpolation=INTER_AREA)
    small = small[: 480 - 200, : 640 - 300]
    canvas[200 : 200 + small.shape[0], 300 : 300 + small.shape[1]] = small
    assert gate.find_faces(canvas)[0], "the search found no face"
    result = gate.assess(canvas)
    assert R.FACE_TOO_SMALL in result.reasons and R.NO_FACE not in result.reasons, result.reasons
    assert result.face.x >= 300 and result.face.y >= 200 and result.face.width < 60


def test_timings_report_each_stage(gate, face_rgb):
    plain, detailed = {}, {}
    gate.assess(face_rgb, timings=plain)
    gate.assess(face_rgb, timings=detailed, stage_detail=True)
    assert set(plain) == {"detect", "quality"}
    assert set(detailed) == {"detect", "landmarks", "quality"}
    assert all(value >= 0 for value in [*plain.values(), *detailed.values()])
    assert detailed["landmarks"] > 0


def test_the_gate_is_thread_safe(options, face_rgb):
    images = [face_rgb, degrade.mirror(face_rgb), degrade.rotate(face_rgb, 30.0), face_rgb[::2, ::2].copy()]
    with QualityGate(options) as gate:
        expected = [gate.assess(image) for image in images]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(gate.assess, images * 3))
    for index, result in enumerate(got):
        want = expected[index % len(images)]
        assert result.reasons == want.reasons and result.face == want.face
        assert result.scores.yaw_deg == pytest.approx(want.scores.yaw_deg, abs=1e-3)


def test_without_landmarks_the_gate_skips_pose_and_eyes(face_rgb):
    # The face matcher aligns faces by their landmarks: it goes off with them.
    config = load_config(environ={"EKYC_LANDMARKS_ENABLED": "false", "EKYC_MATCHER_ENABLED": "false"})
    assert config.quality.search.landmarks is False
    with QualityGate(config.quality) as gate:
        rotated = gate.assess(degrade.rotate(face_rgb, 35.0))
        plain = gate.assess(face_rgb)
    assert plain.passed and not plain.scores.landmarks_measured
    assert plain.scores.interocular_distance_px == 0.0
    assert R.POSE_TOO_LARGE not in rotated.reasons and not rotated.scores.landmarks_measured


def test_low_resolution_is_reported_with_the_other_reasons(gate):
    result = gate.assess(np.full((150, 200, 3), 128, np.uint8))
    assert set(result.reasons) == {R.NO_FACE, R.LOW_RESOLUTION}


def test_a_faceless_image_reports_only_no_face(gate):
    result = gate.assess(np.full((480, 640, 3), 128, np.uint8))
    assert result.reasons == (R.NO_FACE,) and result.face is None and result.faces == ()


def test_reasons_come_in_the_proto_order(gate, clean, face_rgb):
    image = degrade.downscale(degrade.expose(degrade.blur(face_rgb, clean.face, 4.0), clean.face, -3.0), 150)
    result = gate.assess(image)
    order = list(QualityReason)
    assert len(result.reasons) >= 2
    assert list(result.reasons) == sorted(result.reasons, key=order.index)


# --- the measurements ---------------------------------------------------------------------


def test_exposure_fractions_and_range_on_a_known_histogram():
    region = np.concatenate([np.full(30, 5), np.full(50, 128), np.full(20, 252)]).astype(np.uint8).reshape(10, 10)
    light = exposure(region, 15, 250)
    assert light.underexposed_fraction == pytest.approx(0.30)
    assert light.overexposed_fraction == pytest.approx(0.20)
    assert light.brightness == pytest.approx(region.mean())
    assert light.dynamic_range == 252 - 5


def test_sharpness_depends_neither_on_exposure_nor_on_face_size(clean, face_rgb):
    face = clean.face
    gray = luma(face_rgb)[face.y : face.y + face.height, face.x : face.x + face.width]
    base = sharpness(gray)
    darker = sharpness((gray * 0.4).astype(np.uint8))
    assert 0.7 < darker / base < 1.4, (base, darker)
    from cv2 import INTER_AREA, resize

    half = sharpness(resize(gray, (max(96, gray.shape[1] // 2),) * 2, interpolation=INTER_AREA))
    assert 0.5 < half / base < 2.0, (base, half)


def test_border_margin_uses_the_unclipped_box():
    inside = Face(100, 100, 100, 100, 0.9, bounds=(100.0, 100.0, 200.0, 200.0))
    beyond = Face(0, 100, 80, 100, 0.9, bounds=(-20.0, 100.0, 80.0, 200.0))
    assert border_margin(inside, None, 400, 400) == pytest.approx(1.0)
    assert border_margin(beyond, None, 400, 400) == pytest.approx(-0.25)
    points = np.array([[50.0, 120.0, 0.0], [150.0, 410.0, 0.0]], np.float32)
    assert border_margin(inside, points, 400, 400) == pytest.approx(-0.1)


def test_assess_quality_flags_a_second_face_by_its_area_ratio(options, face_rgb):
    limits = options.thresholds
    main = Face(10, 10, 200, 200, 0.9)
    big = Face(300, 10, 120, 120, 0.8)  # 0.36 of the main face's area
    tiny = Face(300, 10, 40, 40, 0.6)
    assert R.MULTIPLE_FACES in assess_quality(face_rgb, [main, big], limits).reasons
    result = assess_quality(face_rgb, [main, tiny], limits)
    assert R.MULTIPLE_FACES not in result.reasons
    assert result.scores.second_face_area_ratio == pytest.approx(0.04)


def test_tile_plan_covers_the_frame_only_when_needed():
    assert plan_tiles(640, 480, 120, 24) == []  # the frame pass finds 100 px faces
    for width, height, face in ((640, 480, 32), (500, 375, 40), (1920, 1080, 48)):
        tiles = plan_tiles(width, height, face, 24)
        assert 0 < len(tiles) <= 24
        sides = sorted({tw for _, _, tw, _ in tiles})
        # The finest tiles see the smallest face at the reliable share, or the budget forced larger ones.
        assert sides[0] * RELIABLE_FACE_SHARE >= face * 0.99
        for x, y, tw, th in tiles:
            assert 0 <= x and x + tw <= width and 0 <= y and y + th <= height
        finest = [t for t in tiles if t[2] == sides[0]]
        xs = sorted({x for x, _, _, _ in finest})
        assert xs[0] == 0 and xs[-1] + sides[0] >= width - 1
        assert all(b - a <= sides[0] * (1 - TILE_OVERLAP) + 1 for a, b in zip(xs, xs[1:]))


# --- configuration ------------------------------------------------------------------------


def test_new_thresholds_and_sections_come_from_config_and_env(tmp_path):
    own = tmp_path / "camera.toml"
    own.write_text("[quality]\nmax_abs_yaw_deg = 20.0\n\n[detector]\nmax_tiles = 8\n\n[landmarks]\nmax_confirmations = 2\nupright_check_below_score = 0.6\n")
    config = load_config(own, environ={"EKYC_QUALITY_MAX_EYES_OCCLUDED_SCORE": "0.3", "EKYC_DETECTOR_MIN_FACE_PX": "40"})
    quality = config.quality
    assert quality.thresholds.max_abs_yaw_deg == 20.0 and quality.thresholds.max_eyes_occluded_score == 0.3
    assert quality.search.max_tiles == 8 and quality.search.min_face_px == 40 and quality.search.max_confirmations == 2
    assert quality.search.upright_check_below_score == 0.6
    assert quality.thresholds.max_abs_roll_deg == load_config(environ={}).quality.thresholds.max_abs_roll_deg


@pytest.mark.parametrize(
    "text, words",
    [
        ("[landmarks]\nenabeld = true\n", "unknown key"),
        ("[landmarks]\nenabled = 'yes'\n", "true or false"),
        ("[detector]\nmax_tiles = -1\n", "max_tiles"),
        ("[detector]\nmin_face_px = 'x'\n", "number"),
        ("[quality]\nmax_eyes_closed_score = 2.0\n", "max_eyes_closed_score"),
        ("[quality]\nmax_abs_yaw_deg = 0\n", "max_abs_yaw_deg"),
        ("[quality]\nunderexposed_level = 251\n", "underexposed_level"),
        ("[quality]\nmin_image_short_side_px = 800\n", "min_image_short_side_px"),
        ("[quality]\nmin_sharpness = nan\n", "nan"),
        ("[quality]\nmin_sharpness = true\n", "number"),
        ("[landmarks]\nmin_presence_confidence = 1.5\n", "min_presence_confidence"),
        ("[quality]\nmin_sharpnes = 3\n", "unknown key"),
        ("[qualty]\nmin_sharpness = 3\n", "unknown section"),
        ("[quality]\nmin_brightness = 250\n", "below"),
        ("[quality]\nmin_sharpness = 'x'\n", "number"),
        ("not toml = = =", "TOML"),
    ],
)
def test_bad_quality_config_is_a_clear_error(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(path, environ={})


def test_landmarks_belong_to_the_box_even_with_a_neighbour_in_the_crop(gate, clean, face_rgb):
    """Two faces close together: the landmarker's crop around one holds part of the other."""
    face = clean.face
    margin = face.width // 10
    strip = face_rgb[:, max(0, face.x - margin) : face.x + face.width + margin]
    pair = np.ascontiguousarray(np.hstack([strip, strip[:, ::-1]]))
    result = gate.assess(pair)
    assert R.MULTIPLE_FACES in result.reasons
    points, main = result.landmarks.points, result.face
    assert main.x < points[:, 0].mean() < main.x + main.width
    assert main.y < points[:, 1].mean() < main.y + main.height
