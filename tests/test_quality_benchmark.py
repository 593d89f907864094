"""The quality benchmark on real photos (EKYC_DATA_DIR): per reason, the share of degraded
images caught and of clean originals wrongly rejected, at the shipped thresholds; face
detection recall on the annotated faces; head-pose signs; clear glasses not taken for
sunglasses. A subsample keeps it short; `python bench/quality_accuracy.py` runs it all
(docs/quality.md has those figures)."""

from __future__ import annotations

import random

import pytest

from conftest import DATA_DIR, needs_data
import degrade
import quality_accuracy as benchmark
from ekyc.quality.gate import QualityGate, QualityReason
from ekyc.quality.options import load_gate_options
from ekyc.training.data import nuaa_live_frames

MIN_CAUGHT = 0.95
MAX_CLEAN_FALSE_REJECTS = 0.05
MIN_RECALL = 0.95
PHOTOS_EVERY = 3  # every 3rd single-person photo (sorted, deduplicated)
NUAA_FRAMES = 20  # drawn at random (seed 0)

pytestmark = needs_data


@pytest.fixture(scope="module")
def gate():
    with QualityGate(load_gate_options(environ={})) as gate:
        yield gate


@pytest.fixture(scope="module")
def samples(gate):
    photos = benchmark.clean_samples(DATA_DIR, gate, frames=False)
    frames = benchmark.clean_samples(DATA_DIR, gate, nuaa_count=NUAA_FRAMES, photos=False, seed=0)
    return photos[::PHOTOS_EVERY] + frames


@pytest.fixture(scope="module")
def report(gate, samples):
    cases = [case for case in benchmark.default_cases(gate) if case.target]
    return benchmark.run(gate, samples, cases, seed=0)


def test_the_subsample_is_real_photos_and_webcam_frames(samples, report):
    assert {s.source for s in samples} == {"photos", "nuaa"}
    assert report.clean_total == len(samples) >= 20
    # Every clean image yields every degradation but the NO_FACE ones (single-person images only).
    faced = report.clean_total - report.skipped.get("no face on the clean image", 0)
    for name, tally in report.cases.items():
        if report.case_reason[name] is not QualityReason.NO_FACE:
            assert tally.total >= faced - 1, name


@pytest.mark.parametrize(
    "reason", [r for r in QualityReason if r is not QualityReason.EYES_CLOSED], ids=lambda r: r.value
)
def test_degraded_images_are_caught_with_their_reason(report, reason):
    caught = report.caught_rate(reason)
    total = sum(t.total for n, t in report.cases.items() if report.case_reason[n] is reason)
    assert total >= 5, f"too few {reason.value} cases: {total}"
    detail = {n: f"{t.caught}/{t.total}" for n, t in report.cases.items() if report.case_reason[n] is reason}
    assert caught >= MIN_CAUGHT, (reason.value, caught, detail)


@pytest.mark.parametrize("reason", list(QualityReason), ids=lambda r: r.value)
def test_clean_photos_are_rarely_rejected_for_each_reason(report, reason):
    rate = report.false_reject_rate(reason)
    assert rate <= MAX_CLEAN_FALSE_REJECTS, (reason.value, rate, report.clean_flagged_names.get(reason))


def test_eyes_closed_still_fires_on_the_frames_a_person_confirmed(gate):
    """A regression check, not a recall measurement: these frames were found by ranking the
    blink score and then confirmed closed by eye (docs/quality.md), so a rate on them says
    nothing about closed eyes the score misses. It fails if the model, the score or the
    threshold stop flagging any of them."""
    frames = benchmark.closed_eye_samples(DATA_DIR, gate)
    assert len(frames) == len(benchmark.CLOSED_EYE_FRAMES)
    missed = [f.name for f in frames if QualityReason.EYES_CLOSED not in gate.assess(f.rgb).reasons]
    assert missed == []


def test_face_detection_recall_on_the_annotated_faces(gate):
    recall = benchmark.detection_recall(gate, DATA_DIR, min_width=40)
    assert recall["total"] >= 20
    assert recall["recall"] >= MIN_RECALL, recall["missed"]


def test_clear_glasses_are_not_taken_for_sunglasses(gate):
    """NUAA frames of people wearing clear glasses (manifest note glasses=01)."""
    frames = [s for s in nuaa_live_frames(DATA_DIR) if s.meta.get("glasses") == "01"]
    frames = random.Random(1).sample(frames, 30)
    flagged = measured = 0
    for frame in frames:
        result = gate.assess(gate.decode((DATA_DIR / frame.path).read_bytes()))
        measured += result.scores.landmarks_measured
        flagged += QualityReason.EYES_OCCLUDED in result.reasons
    assert measured >= 28
    assert flagged / measured <= MAX_CLEAN_FALSE_REJECTS, flagged


def test_head_pose_signs_on_real_photos(gate, samples):
    """A mirrored face flips yaw (and roll); turning the image by theta adds theta to roll."""
    photos = [s for s in samples if s.source == "photos"][:4]
    checks = benchmark.pose_checks(gate, photos, angles=(-30.0, 15.0))
    assert len(checks["mirror"]) == len(photos)
    for yaw, yaw_mirrored, roll, roll_mirrored in checks["mirror"]:
        assert yaw_mirrored == pytest.approx(-yaw, abs=4.0)
        assert roll_mirrored == pytest.approx(-roll, abs=4.0)
        if abs(yaw) > 6.0:
            assert yaw * yaw_mirrored < 0
    for angle, errors in checks["roll_error"].items():
        assert len(errors) == len(photos)
        assert max(abs(e) for e in errors) <= 6.0, (angle, errors)
    # At least one of these photos is turned clearly enough for the sign check to bite.
    assert any(abs(yaw) > 6.0 for yaw, *_ in checks["mirror"])


def test_yaw_sign_convention_on_a_turned_face(gate):
    """obama2.jpg: he looks towards the image's left, so yaw < 0 (docs/quality.md); mirrored, > 0."""
    rgb = gate.decode((DATA_DIR / "faces" / "photos" / "obama2.jpg").read_bytes())
    assert gate.assess(rgb).scores.yaw_deg < -6.0
    assert gate.assess(degrade.mirror(rgb)).scores.yaw_deg > 6.0


def test_the_main_face_is_the_person_in_front_not_the_one_behind(gate):
    """NUAA frames with a person behind, whose face falls inside the landmarker's crop of the
    main face: the landmarks (and so pose and eyes) must be the main face's, and the main face
    must be the large one in front."""
    for name in ("0001_00_00_02_196.jpg", "0001_00_00_02_313.jpg"):
        rgb = gate.decode((DATA_DIR / "nuaa" / "live" / "0001" / name).read_bytes())
        result = gate.assess(rgb)
        face, points = result.face, result.landmarks.points
        assert face.width > 150, (name, result.faces)
        cx, cy = points[:, 0].mean(), points[:, 1].mean()
        assert face.x < cx < face.x + face.width and face.y < cy < face.y + face.height, name
        assert abs(result.scores.yaw_deg) < 15.0, (name, result.scores)
