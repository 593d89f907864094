"""1:1 face matching (ekyc/models/face_match.py, quality/alignment.py, models/face-match/): the converted SFace model
against OpenCV running the original file, the alignment against OpenCV's alignCrop, the
profiles and the score mapping, the ID-card rendering and the accuracy harness
(training/face_match_eval.py) on the shared data's identities."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA_DIR, ROOT, needs_data, packaged_face_path
import degrade
from ekyc.errors import ModelLoadError
from ekyc.models.face_match import (
    MATCH,
    NO_MATCH,
    UNCERTAIN,
    FaceMatcher,
    FaceMatcherModelError,
    FaceMatcherOptions,
    MatcherMetadata,
    MatchProfile,
    UnknownMatchProfileError,
    similarity_from_cosine,
)
from ekyc.quality.alignment import TEMPLATE, align_face, five_points, similarity_transform
from ekyc.quality.options import ReferenceThresholds, load_gate_options
from ekyc.quality.rules import REFERENCE_REASONS, QualityReason, reference_reasons
from ekyc.training import face_match_eval as harness
from ekyc.training.metrics import roc_auc

MODELS = ROOT / "models" / "face-match"
ORIGINAL = MODELS / "face_recognition_sface_2021dec_int8bq.onnx"
CONVERTED = MODELS / "sface.onnx"
LIMITS = load_gate_options().reference  # the shipped [reference] section
OPENCV_ZOO_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"


@pytest.fixture(scope="module")
def gate():
    with harness.quality_gate() as gate:
        yield gate


@pytest.fixture(scope="module")
def matcher():
    with FaceMatcher() as matcher:
        yield matcher


@pytest.fixture(scope="module")
def opencv_sface(tmp_path_factory):
    """OpenCV's FaceRecognizerSF on the original OpenCV Zoo file: the reference runtime.
    OpenCV 5 refuses the file's 29 stale graph inputs as ONNX Runtime does, so they (and only
    they) are dropped here; every weight stays as published."""
    import onnx

    model = onnx.load(ORIGINAL)
    keep = [value for value in model.graph.input if value.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    path = tmp_path_factory.mktemp("sface") / "original.onnx"
    onnx.save(model, path)
    return cv2.FaceRecognizerSF.create(str(path), "")


@pytest.fixture(scope="module")
def portrait():
    return cv2.cvtColor(cv2.imread(str(packaged_face_path())), cv2.COLOR_BGR2RGB)


def rotate(rgb: np.ndarray, degrees: float, scale: float = 1.0) -> np.ndarray:
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, scale)
    return cv2.warpAffine(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def face_and_points(gate, rgb):
    face, landmarks = harness.find_face(gate, rgb)
    assert landmarks is not None, "the gate found no face with landmarks"
    return face, landmarks.points


def portrait_variants(portrait):
    return [portrait, portrait[:, ::-1].copy(), rotate(portrait, 15), rotate(portrait, -25, 0.8),
            cv2.resize(portrait, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)]


# --- provenance and parity --------------------------------------------------------------------

def test_the_committed_original_is_the_opencv_zoo_file_and_converts_to_the_committed_model(tmp_path):
    provenance = json.loads((MODELS / "provenance.json").read_text())
    assert hashlib.sha256(ORIGINAL.read_bytes()).hexdigest() == OPENCV_ZOO_SHA256 == provenance["source_sha256"]
    assert provenance["licence"] == "Apache-2.0"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_sface.py"), str(ORIGINAL), str(tmp_path)],
                   check=True, capture_output=True)
    rebuilt = hashlib.sha256((tmp_path / "sface.onnx").read_bytes()).hexdigest()
    assert rebuilt == provenance["files"]["sface.onnx"]["sha256"] == hashlib.sha256(CONVERTED.read_bytes()).hexdigest()
    assert provenance["files"]["sface.onnx"]["stale_inputs_dropped"] == 29


def test_the_conversion_refuses_any_other_file(tmp_path):
    other = tmp_path / "other.onnx"
    shutil.copy(ROOT / "models" / "mediapipe" / "face_detector.onnx", other)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_sface.py"), str(other), str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "is not the OpenCV Zoo record" in result.stderr
    assert not (tmp_path / "out").exists()


def embeddings_agree(matcher, opencv_sface, crops) -> np.ndarray:
    ours = matcher.embed(np.stack(crops))
    theirs = np.concatenate([opencv_sface.feature(np.ascontiguousarray(crop[..., ::-1])) for crop in crops])
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    return (ours * theirs).sum(axis=1)


def test_converted_model_gives_opencvs_embeddings_on_the_packaged_portrait(gate, matcher, opencv_sface, portrait):
    crops = [align_face(rgb, five_points(face_and_points(gate, rgb)[1])) for rgb in portrait_variants(portrait)]
    cosines = embeddings_agree(matcher, opencv_sface, crops)
    # Measured: > 0.99999 (the weights are the original's, dequantised once instead of per call).
    assert cosines.min() > 0.9999, cosines


@needs_data
@pytest.mark.data
def test_converted_model_gives_opencvs_embeddings_on_real_faces(matcher, opencv_sface, evaluation):
    faces = list(evaluation.faces.values())
    crops = [align_face(rgb, five_points(points)) for rgb, points in faces[:: max(1, len(faces) // 40)]]
    assert len(crops) >= 40
    cosines = embeddings_agree(matcher, opencv_sface, crops)
    assert cosines.min() > 0.9999, cosines


def test_alignment_is_opencvs_align_crop(gate, opencv_sface, portrait):
    for rgb in portrait_variants(portrait):
        face, points = face_and_points(gate, rgb)
        five = five_points(points)
        row = np.array([[face.x, face.y, face.width, face.height, *five.ravel(), 1.0]], dtype=np.float32)
        theirs = opencv_sface.alignCrop(rgb, row)
        ours = align_face(rgb, five)
        difference = np.abs(ours.astype(int) - theirs.astype(int))
        # OpenCV computes the transform in float32: a level apart at most, on a few pixels.
        assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())


def test_similarity_transform_recovers_a_known_similarity():
    angle, scale, shift = np.radians(17.0), 2.5, np.array([40.0, -12.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = (TEMPLATE - shift) @ np.linalg.inv(rotation).T
    matrix = similarity_transform(source)
    assert np.allclose(source @ matrix[:, :2].T + matrix[:, 2], TEMPLATE, atol=1e-9)
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)))


def test_five_points_need_the_face_mesh():
    with pytest.raises(ValueError, match="478"):
        five_points(np.zeros((68, 2)))
    points = np.arange(478 * 3, dtype=np.float64).reshape(478, 3)
    assert five_points(points).shape == (5, 2)


# --- the matcher ------------------------------------------------------------------------------

def test_one_face_stays_one_person_across_pose_scale_and_an_id_card_print(gate, matcher, portrait):
    strict = matcher.profile("strict")
    _, points = face_and_points(gate, portrait)
    reference = matcher.embed_face(portrait, points)
    variants = portrait_variants(portrait)[1:]
    rng = np.random.default_rng(0)
    cards = [harness.decode(harness.render_id_portrait(portrait, points, rng)) for _ in range(3)]
    for rgb in variants + cards:
        _, found = face_and_points(gate, rgb)
        similarity = matcher.similarity(reference, matcher.embed_face(rgb, found))
        assert strict.decide(similarity) == MATCH, similarity


def test_a_batch_equals_one_at_a_time_and_bad_crops_are_refused(matcher, portrait):
    crops = np.stack([cv2.resize(portrait, (112, 112)), cv2.resize(portrait[::-1], (112, 112))])
    together = matcher.embed(crops)
    apart = np.concatenate([matcher.embed(crop) for crop in crops])
    assert np.allclose(together, apart, atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="112, 112, 3"):
        matcher.embed(np.zeros((1, 96, 96, 3), np.uint8))


def test_similarity_is_the_cosine_clipped_to_0_1(matcher):
    cosines = np.linspace(-1, 1, 41)
    mapped = similarity_from_cosine(cosines)
    assert np.all(np.diff(mapped) >= 0) and mapped.min() == 0.0 and mapped.max() == 1.0
    assert np.allclose(mapped[cosines >= 0], cosines[cosines >= 0])
    a, b = np.array([1.0, 0.0]), np.array([0.6, 0.8])
    assert matcher.similarity(a, b) == pytest.approx(0.6)
    assert matcher.similarity(a, -b) == 0.0
    assert matcher.similarity(a, np.zeros(2)) == 0.0


def test_profiles_decide_with_their_review_band():
    strict = MatchProfile.from_dict("strict", {"threshold": 0.4, "review_band": [0.3, 0.4]})
    assert [strict.decide(s) for s in (0.29, 0.3, 0.39, 0.4, 0.9)] == [NO_MATCH, UNCERTAIN, UNCERTAIN, MATCH, MATCH]
    balanced = MatchProfile.from_dict("balanced", {"threshold": 0.3})
    assert [balanced.decide(s) for s in (0.29, 0.3)] == [NO_MATCH, MATCH]
    for bad in ({"threshold": 1.5}, {"threshold": 0.2, "review_band": [0.3, 0.4]}):
        with pytest.raises(ValueError):
            MatchProfile.from_dict("bad", bad)


def test_shipped_profiles_are_ordered_and_the_default_exists(matcher):
    strict, balanced = matcher.profile("strict"), matcher.profile("balanced")
    assert 0.0 < balanced.threshold < strict.threshold < 1.0
    assert strict.review_band == (balanced.threshold, strict.threshold)
    assert matcher.profile().name == matcher.metadata.default_profile == "strict"
    with pytest.raises(UnknownMatchProfileError, match="strict"):
        matcher.profile("lenient")


def test_a_missing_or_foreign_model_or_bad_metadata_is_a_typed_error(tmp_path):
    with pytest.raises(FaceMatcherModelError, match="not found"):
        FaceMatcher(FaceMatcherOptions(tmp_path / "none.onnx"))
    foreign = tmp_path / "detector.onnx"
    shutil.copy(ROOT / "models" / "mediapipe" / "face_detector.onnx", foreign)
    shutil.copy(MODELS / "sface.json", foreign.with_suffix(".json"))
    with pytest.raises(FaceMatcherModelError, match="not an SFace"):
        FaceMatcher(FaceMatcherOptions(foreign))
    broken = tmp_path / "broken.json"
    for text in ("{", json.dumps({"version": "x", "profiles": {"a": {"threshold": 0.3}}, "default_profile": "b"})):
        broken.write_text(text)
        with pytest.raises(FaceMatcherModelError, match="invalid"):
            MatcherMetadata.load(broken)
    with pytest.raises(ModelLoadError, match="matcher.profile 'nonesuch'"):
        FaceMatcher(FaceMatcherOptions(metadata_path=MODELS / "sface.json", profile="nonesuch"))


# --- a reference that cannot be matched ---------------------------------------------------------

def test_a_reference_fails_only_the_checks_that_decide_whether_it_can_be_matched(gate, portrait):
    clean = gate.assess(portrait)
    assert reference_reasons(clean, LIMITS) == ()
    # Small: a face 15 px between the eyes on a plain card-sized background; 22 px is enough.
    for eyes, expected in ((15.0, (QualityReason.FACE_TOO_SMALL,)), (22.0, ())):
        factor = eyes / clean.scores.interocular_distance_px
        small = cv2.resize(portrait, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        canvas = np.full((240, 320, 3), 200, np.uint8)
        canvas[: small.shape[0], : small.shape[1]] = small
        result = gate.assess(canvas)
        assert result.face is not None and reference_reasons(result, LIMITS) == expected, result.scores
        # The selfie gate's own limits would refuse both (LOW_RESOLUTION, FACE_TOO_SMALL): not the reference's.
        assert not result.passed
    blurred = gate.assess(cv2.GaussianBlur(portrait, (0, 0), 30))
    assert QualityReason.BLURRY in reference_reasons(blurred, LIMITS) or reference_reasons(blurred, LIMITS) == (QualityReason.NO_FACE,)
    two = gate.assess(degrade.side_by_side(portrait, portrait, clean.face, clean.face))
    assert reference_reasons(two, LIMITS) == (QualityReason.MULTIPLE_FACES,)
    assert reference_reasons(gate.assess(np.full((240, 320, 3), 128, np.uint8)), LIMITS) == (QualityReason.NO_FACE,)
    # Dark or overexposed is the document's lighting, not a reason to refuse it.
    dim = gate.assess((portrait * 0.25).astype(np.uint8))
    assert QualityReason.TOO_DARK in dim.reasons and reference_reasons(dim, LIMITS) == ()
    assert set(REFERENCE_REASONS) <= set(QualityReason)


@needs_data
@pytest.mark.data
def test_reference_blur_limit_is_where_matching_breaks(gate, matcher, evaluation):
    """ID-card portraits blurred more and more: the ones the reference check refuses as BLURRY
    had lost much of their similarity to the same person's selfies, and no card as rendered
    (unblurred) is refused. Measured: median similarity 0.38 refused, 0.47 kept."""
    embedded, faces = evaluation.embedded, evaluation.faces
    rng = np.random.default_rng(0)
    kept, refused = [], []
    for item, rgb, points in harness.card_items(embedded, faces, cards_per_capture=1):
        selfies = np.array([v for other, v in zip(embedded.items, embedded.vectors)
                            if other.identity == item.identity and other.capture != item.capture])
        if not len(selfies):
            continue
        card = harness.decode(harness.render_id_portrait(rgb, points, rng))
        for sigma in (0.0, 1.5, 2.5, 3.5):
            blurred = cv2.GaussianBlur(card, (0, 0), sigma) if sigma else card
            result = gate.assess(blurred)
            reasons = reference_reasons(result, LIMITS)
            if reasons == (QualityReason.NO_FACE,):
                continue
            similarity = float(np.median(selfies @ matcher.embed_face(blurred, result.landmarks.points)))
            (refused if QualityReason.BLURRY in reasons else kept).append((sigma, similarity))
    assert len(refused) >= 10 and len(kept) >= 40
    assert all(sigma > 0 for sigma, _ in refused)
    refused_median = np.median([s for _, s in refused])
    assert refused_median < np.median([s for _, s in kept]) - 0.05
    assert refused_median < matcher.profile("strict").threshold + 0.02


def test_reference_thresholds_come_from_the_config_and_are_validated(gate, portrait):
    assert LIMITS == ReferenceThresholds()  # the dataclass defaults are the shipped values
    strict = load_gate_options(environ={"EKYC_REFERENCE_MIN_INTEROCULAR_DISTANCE_PX": "100"}).reference
    assert strict.min_interocular_distance_px == 100.0
    # The gate judges a reference by its own section: the portrait (81 px between the eyes) fails 100.
    from dataclasses import replace

    with harness.QualityGate(replace(gate.options, reference=strict)) as picky:
        assert picky.assess_reference(portrait).reasons == (QualityReason.FACE_TOO_SMALL,)
    assert gate.assess_reference(portrait).passed
    with pytest.raises(ValueError, match="reference.min_sharpness"):
        load_gate_options(environ={"EKYC_REFERENCE_MIN_SHARPNESS": "-1"})
    ReferenceThresholds().validate()
    for bad in (dict(min_interocular_distance_px=-1), dict(min_sharpness=float("nan")),
                dict(multiple_faces_min_area_ratio=0), dict(min_sharpness=True)):
        with pytest.raises(ValueError, match="reference."):
            ReferenceThresholds(**bad).validate()


# --- the ID card and the harness ----------------------------------------------------------------

def test_id_card_portrait_has_the_asked_eye_distance_and_is_a_small_jpeg(gate, portrait):
    _, points = face_and_points(gate, portrait)
    for target in (30.0, 40.0):
        style = harness.CardStyle(interocular_px=(target, target), jpeg_quality=(40, 40))
        data = harness.render_id_portrait(portrait, points, np.random.default_rng(1), style)
        assert data[:2] == b"\xff\xd8" and len(data) < 20_000
        card = harness.decode(data)
        assert card.shape[1] == round(target / 0.29)
        _, found = face_and_points(gate, card)
        eyes = five_points(found)
        assert abs(np.linalg.norm(eyes[1] - eyes[0]) - target) < 0.1 * target
        # Printed colour: far less saturated than the photo.
        saturation = lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].mean()
        assert saturation(card) < 0.7 * saturation(portrait)


def test_weighted_metrics_agree_with_the_liveness_metrics_and_hold_their_targets():
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.normal(0.6, 0.1, 300), rng.normal(0.1, 0.1, 3000)])
    genuine = np.arange(scores.size) < 300
    ones = np.ones_like(scores)
    assert harness.weighted_auc(scores, genuine, ones) == pytest.approx(roc_auc(scores, genuine.astype(int)))
    for target in (0.01, 0.001):
        threshold, tar, fmr = harness.threshold_at_fmr(scores, genuine, ones, target)
        rates = harness.rates_at(scores, genuine, ones, threshold)
        assert rates["fmr"] == pytest.approx(fmr) and fmr <= target and rates["tar"] == pytest.approx(tar)
    # Weights: counting each impostor pair twice changes nothing; dropping the genuine ones is undefined.
    assert harness.weighted_auc(scores, genuine, np.where(genuine, 1.0, 2.0)) == pytest.approx(roc_auc(scores, genuine.astype(int)))
    assert np.isnan(harness.weighted_auc(scores, genuine, np.where(genuine, 0.0, 1.0)))


@pytest.fixture(scope="module")
def evaluation(gate, matcher):
    if DATA_DIR is None:
        pytest.skip("EKYC_DATA_DIR is not set (shared face images)")
    return harness.run_pairs(DATA_DIR, harness.matcher_embedder(matcher), gate=gate)


@needs_data
@pytest.mark.data
def test_pairs_use_every_identity_and_never_pair_a_capture_with_itself(evaluation):
    selfie, card = evaluation.selfie, evaluation.card
    # 12 NUAA people and 7 public figures; 6 + 5 of them with two captures or more.
    assert len(selfie.identities) == 19 and selfie.summary()["identities_with_genuine_pairs"] == 11
    assert card.summary()["identities_with_genuine_pairs"] == 11
    assert not evaluation.enrolment["faces_without_landmarks"]
    assert len(evaluation.enrolment["cards_without_landmarks"]) <= 0.1 * evaluation.enrolment["cards"]
    items = harness.identity_faces(DATA_DIR)
    captures = {}
    for item in items:
        captures.setdefault(item.identity, set()).add(item.capture)
    genuine_possible = sum(len(c) > 1 for c in captures.values())
    assert genuine_possible == 11


@needs_data
@pytest.mark.data
def test_matcher_separates_the_shared_datas_people(evaluation):
    selfie = harness.evaluate_pairs(evaluation.selfie, {}, n_boot=0, seed=0)
    card = harness.evaluate_pairs(evaluation.card, {}, n_boot=0, seed=0)
    # Measured (models/reports/face-match.json): AUC 1.000 on selfie pairs, 0.988 on ID-card pairs.
    assert selfie["auc"]["value"] > 0.995 and selfie["tar_at_fmr_1pct"]["value"] > 0.95
    assert card["auc"]["value"] > 0.97 and card["tar_at_fmr_1pct"]["value"] > 0.75


@needs_data
@pytest.mark.data
def test_shipped_profiles_are_the_impostor_pairs_fmr_points(evaluation, matcher):
    chosen = harness.choose_profiles(evaluation.selfie.scores[~evaluation.selfie.genuine],
                                     evaluation.card.scores[~evaluation.card.genuine])
    for name, threshold in chosen.items():
        assert matcher.profile(name).threshold == pytest.approx(threshold, abs=0.003), name
    for pairs in (evaluation.selfie, evaluation.card):
        impostors = similarity_from_cosine(pairs.scores[~pairs.genuine])
        assert np.mean(impostors >= matcher.profile("strict").threshold) <= 0.001 + 1e-3
        assert np.mean(impostors >= matcher.profile("balanced").threshold) <= 0.01 + 1e-3


def test_the_committed_report_matches_the_model_card():
    report = json.loads((ROOT / "models" / "reports" / "face-match.json").read_text())
    card = (ROOT / "models" / "face-match.md").read_text()
    assert report["model"]["sha256"] == hashlib.sha256(CONVERTED.read_bytes()).hexdigest()
    for name in ("selfie", "card"):
        auc = report["pairs"][name]["auc"]["value"]
        assert f"{auc:.3f}" in card, (name, auc)
    metadata = json.loads((MODELS / "sface.json").read_text())
    assert {k: v["threshold"] for k, v in metadata["profiles"].items()} == report["profiles"]


def test_face_match_bench_reports_every_figure(tmp_path):
    """Smoke run of bench/face_match_bench.py (no timing asserts: timings belong in bench/)."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "face_match_bench.py"), "--quick", "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["images"] >= 1
    for key in ("embed_ms", "embed_original_ort_ms", "embed_original_opencv_ms", "align_ms", "reference_card_ms"):
        assert isinstance(report[key], float) and report[key] > 0, key
