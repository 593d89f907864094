"""Face matching through the real server, over gRPC and HTTP/JSON, and the CLI: Verify with a
reference image, CompareFaces, the reference's typed failures, match profiles, a stream of
items with references, the [matcher] configuration and ekyc-client's verify --reference /
compare."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import base64

import cv2
import grpc
import numpy as np
import pytest
import requests

import degrade
from conftest import DATA_DIR, darken, encode, needs_data, packaged_face_path, start_server
from ekyc.client import LivenessClient, LivenessError
from ekyc.models.face_match import FaceMatcher
from ekyc.paths import DEFAULT_MATCHER
from ekyc.server.config import ConfigError, load_config
from ekyc.training import face_match_eval as harness
from ekyc.v1 import liveness_pb2 as pb

CLIENT = str(Path(sys.executable).parent / "ekyc-client")
METADATA = json.loads(DEFAULT_MATCHER.with_suffix(".json").read_text())
STRICT = METADATA["profiles"]["strict"]["threshold"]
BALANCED = METADATA["profiles"]["balanced"]["threshold"]


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(packaged_face_path())), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def gate():
    with harness.quality_gate() as gate:
        yield gate


@pytest.fixture(scope="module")
def card(portrait, gate) -> bytes:
    """The packaged portrait as an ID-card portrait (35 px between the eyes, print, glare, JPEG)."""
    _, landmarks = harness.find_face(gate, portrait)
    style = harness.CardStyle(interocular_px=(35.0, 35.0))
    return harness.render_id_portrait(portrait, landmarks.points, np.random.default_rng(0), style)


@pytest.fixture(scope="module")
def selfie(portrait) -> bytes:
    return encode(portrait)


def tiny_face(portrait: np.ndarray, eyes_px: float = 15.0) -> bytes:
    """The portrait shrunk to ``eyes_px`` between the eyes (81 px in the original) on a plain card."""
    factor = eyes_px / 81.4
    small = cv2.resize(portrait, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    canvas = np.full((240, 320, 3), 200, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    return encode(canvas, "PNG")


# --- Verify with a reference ---------------------------------------------------------------------

def test_verify_with_a_reference_answers_liveness_and_match_in_one_call(client, selfie, card):
    plain = client.verify(selfie)
    answer = client.verify(selfie, reference_image=card)
    assert not plain.HasField("match") and answer.HasField("match")
    # Liveness is the same answer with or without a reference.
    assert (answer.status, answer.decision, answer.profile) == (plain.status, plain.decision, plain.profile)
    assert answer.liveness_score == pytest.approx(plain.liveness_score)
    match = answer.match
    assert match.status == pb.MATCH_STATUS_SUCCESS
    assert match.decision == pb.MATCH_DECISION_MATCH and match.is_match
    assert STRICT < match.similarity <= 1.0
    assert match.threshold == pytest.approx(STRICT) and match.profile == "strict"
    assert match.model_version == METADATA["version"]
    reference = match.reference_quality
    assert reference.passed and not reference.reasons
    assert reference.image_width == round(35 / 0.29) and 0 < reference.face_box.width <= reference.image_width
    assert 31 < reference.scores.interocular_distance_px < 39


def test_the_server_scores_what_the_matcher_scores_offline(client, gate, selfie, card):
    """One embedding per image, aligned from the gate's landmarks: the reply's similarity is the
    library's on the same two images."""
    portrait = harness.decode(selfie)
    with FaceMatcher() as matcher:
        _, ours = harness.find_face(gate, portrait)
        reference = harness.decode(card)
        _, theirs = harness.find_face(gate, reference)
        expected = matcher.similarity(matcher.embed_face(portrait, ours.points),
                                      matcher.embed_face(reference, theirs.points))
    assert client.verify(selfie, reference_image=card).match.similarity == pytest.approx(expected, abs=1e-4)
    assert client.compare_faces(selfie, card).match.similarity == pytest.approx(expected, abs=1e-4)


def test_match_profiles_pick_the_threshold_and_an_unknown_one_is_refused(client, selfie, card):
    balanced = client.verify(selfie, reference_image=card, match_profile="balanced").match
    assert balanced.profile == "balanced" and balanced.threshold == pytest.approx(BALANCED)
    compared = client.compare_faces(selfie, card, profile="balanced").match
    assert compared.profile == "balanced" and compared.threshold == pytest.approx(BALANCED)
    for call in (lambda: client.verify(selfie, reference_image=card, match_profile="lenient"),
                 lambda: client.compare_faces(selfie, card, profile="lenient")):
        with pytest.raises(LivenessError) as error:
            call()
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "balanced, strict" in error.value.details
    # A match profile without a reference is ignored: there is nothing to match.
    assert not client.verify(selfie, match_profile="lenient").HasField("match")


def test_a_reference_that_cannot_be_matched_gets_typed_reasons_never_a_score(client, selfie, portrait):
    face = cv2.cvtColor(cv2.imread(str(packaged_face_path())), cv2.COLOR_BGR2RGB)
    with harness.quality_gate() as gate:
        main = gate.assess(face).face
    cases = {
        "NO_FACE": encode(np.full((240, 320, 3), 128, np.uint8), "PNG"),
        "MULTIPLE_FACES": encode(degrade.side_by_side(face, face, main, main)),
        "FACE_TOO_SMALL": tiny_face(portrait),
    }
    for reason, reference in cases.items():
        for match in (client.verify(selfie, reference_image=reference).match,
                      client.compare_faces(selfie, reference).match):
            assert match.status == pb.MATCH_STATUS_REFERENCE_REJECTED, reason
            names = [pb.QualityReason.Name(r) for r in match.reference_quality.reasons]
            assert names == [f"QUALITY_REASON_{reason}"], (reason, names)
            assert not match.reference_quality.passed
            assert match.similarity == 0.0 and not match.is_match
            assert match.decision == pb.MATCH_DECISION_UNSPECIFIED
            assert match.threshold == pytest.approx(STRICT)  # what would have applied


def test_a_blurry_reference_is_refused_by_the_reference_limit(selfie, card):
    """The [reference] section decides: with min_sharpness raised over the card's sharpness,
    the same card is BLURRY (tests/test_face_match.py measures where blur breaks matching)."""
    server, port = start_server(reference__min_sharpness=5000.0)
    try:
        with LivenessClient(f"127.0.0.1:{port}") as client:
            match = client.verify(selfie, reference_image=card).match
    finally:
        server.stop(0)
    assert match.status == pb.MATCH_STATUS_REFERENCE_REJECTED
    assert list(match.reference_quality.reasons) == [pb.QUALITY_REASON_BLURRY]


def test_an_undecodable_or_empty_reference_is_invalid_argument_naming_it(client, selfie):
    for call in (lambda: client.verify(selfie, reference_image=b"not an image"),
                 lambda: client.compare_faces(selfie, b"not an image"),
                 lambda: client.compare_faces(selfie, b"")):
        with pytest.raises(LivenessError) as error:
            call()
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details.startswith("reference_image")
    with pytest.raises(LivenessError) as error:
        client.compare_faces(b"", encode(np.zeros((8, 8, 3), np.uint8)))
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT and "image is empty" in error.value.details


def test_a_selfie_the_gate_refuses_is_not_matched_but_the_reference_is_still_judged(client, portrait, card):
    answer = client.verify(encode(darken(portrait)), reference_image=card)
    assert answer.status == pb.VERIFY_STATUS_QUALITY_FAILED
    assert answer.match.status == pb.MATCH_STATUS_PROBE_REJECTED and not answer.match.is_match
    assert answer.match.reference_quality.passed


def test_compare_faces_judges_both_images_as_references(client, selfie, card, portrait):
    answer = client.compare_faces(selfie, card, request_id="pair-1")
    assert answer.request_id == "pair-1"
    assert answer.match.status == pb.MATCH_STATUS_SUCCESS and answer.match.is_match
    assert answer.quality.passed and answer.quality.face_box.width > 0
    # The selfie gate would refuse a dark image; as a reference it is matched.
    dark = client.compare_faces(encode(darken(portrait)), card)
    assert pb.QUALITY_REASON_TOO_DARK not in dark.quality.reasons and dark.match.status == pb.MATCH_STATUS_SUCCESS
    faceless = client.compare_faces(encode(np.full((240, 320, 3), 90, np.uint8), "PNG"), card)
    assert faceless.match.status == pb.MATCH_STATUS_PROBE_REJECTED
    assert list(faceless.quality.reasons) == [pb.QUALITY_REASON_NO_FACE]


# --- the stream ---------------------------------------------------------------------------------

def test_a_stream_with_references_keeps_order_and_per_item_errors(client, selfie, card):
    blank = encode(np.full((240, 320, 3), 128, np.uint8), "PNG")
    items = [
        pb.VerifyRequest(image=selfie, reference_image=card, request_id="match"),
        pb.VerifyRequest(image=selfie, reference_image=b"junk", request_id="bad-reference"),
        pb.VerifyRequest(image=selfie, request_id="no-reference"),
        pb.VerifyRequest(image=selfie, reference_image=blank, request_id="faceless-reference"),
        pb.VerifyRequest(image=selfie, reference_image=card, match_profile="nonesuch", request_id="bad-profile"),
        pb.VerifyRequest(image=selfie, reference_image=card, match_profile="balanced", request_id="balanced"),
    ] * 3
    responses = list(client.verify_stream(iter(items)))
    assert [r.request_id for r in responses] == [i.request_id for i in items]
    by_id = {r.request_id: r for r in responses[:6]}
    assert by_id["match"].result.match.decision == pb.MATCH_DECISION_MATCH
    assert by_id["bad-reference"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert by_id["bad-reference"].error.message.startswith("reference_image")
    assert by_id["no-reference"].HasField("result") and not by_id["no-reference"].result.HasField("match")
    assert by_id["faceless-reference"].result.match.status == pb.MATCH_STATUS_REFERENCE_REJECTED
    assert by_id["bad-profile"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert by_id["balanced"].result.match.profile == "balanced"
    unary = client.verify(selfie, reference_image=card).match.similarity
    assert all(r.result.match.similarity == pytest.approx(unary) for r in responses[::6])


# --- configuration ------------------------------------------------------------------------------

def test_matching_switched_off_is_failed_precondition_and_liveness_still_works(selfie, card):
    server, port = start_server(matcher__enabled=False)
    try:
        with LivenessClient(f"127.0.0.1:{port}") as client:
            assert client.verify(selfie).status == pb.VERIFY_STATUS_SUCCESS
            for call in (lambda: client.verify(selfie, reference_image=card), lambda: client.compare_faces(selfie, card)):
                with pytest.raises(LivenessError) as error:
                    call()
                assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
                assert "matcher.enabled" in error.value.details
            items = [pb.VerifyRequest(image=selfie, reference_image=card, request_id="a"),
                     pb.VerifyRequest(image=selfie, request_id="b")]
            answers = list(client.verify_stream(iter(items)))
            assert answers[0].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
            assert answers[1].HasField("result")
        assert server.service.pipeline.matcher is None  # the model was not even loaded
    finally:
        server.stop(0)


def test_matcher_config_keys_and_their_checks():
    config = load_config(None, environ={"EKYC_MATCHER_PROFILE": "balanced", "EKYC_MATCHER_ENABLED": "true"})
    assert config.matcher.profile == "balanced" and config.matcher.enabled
    assert config.matcher_path == str(DEFAULT_MATCHER)
    assert load_config(None, {"matcher": {"path": "/x/y.onnx"}}).matcher_path == "/x/y.onnx"
    with pytest.raises(ConfigError, match="landmarks.enabled"):
        load_config(None, {"landmarks": {"enabled": False}})
    assert not load_config(None, {"landmarks": {"enabled": False}, "matcher": {"enabled": False}}).matcher.enabled
    with pytest.raises(ConfigError, match="matcher.intra_op_threads"):
        load_config(None, {"matcher": {"intra_op_threads": 0}})
    with pytest.raises(ConfigError, match="unknown key matcher.nonesuch"):
        load_config(None, {"matcher": {"nonesuch": 1}})


def test_a_configured_match_profile_the_matcher_lacks_stops_the_start():
    from ekyc.server.app import StartupError, create_server

    server, _ = create_server(load_config(None, {"server": {"host": "127.0.0.1", "port": 0},
                                                 "matcher": {"profile": "lenient"}}))
    try:
        with pytest.raises(StartupError, match="matcher.profile 'lenient'"):
            server.load()
    finally:
        server.stop(0)


# --- real people -----------------------------------------------------------------------------------

@needs_data
@pytest.mark.data
def test_real_pairs_through_the_server_match_as_measured(client, gate):
    """NUAA people across recordings, the photos' public figures, and an ID card of each: the
    server's decisions are the ones the accuracy report's operating points give."""
    items = harness.identity_faces(DATA_DIR, frames_per_capture=1)
    by_identity: dict[str, list] = {}
    for item in items:
        if item.of_faces == 1:
            by_identity.setdefault(item.identity, []).append(item)
    genuine = [(v[0], v[-1]) for v in by_identity.values() if len({i.capture for i in v}) > 1][:6]
    people = sorted(by_identity)
    impostor = [(by_identity[a][0], by_identity[b][0]) for a, b in zip(people, people[1:] + people[:1])][:8]
    assert len(genuine) >= 5 and len(impostor) >= 8
    outcomes = {"genuine": [], "impostor": []}
    rng = np.random.default_rng(0)
    for kind, pairs in (("genuine", genuine), ("impostor", impostor)):
        for first, second in pairs:
            probe = (DATA_DIR / first.path).read_bytes()
            reference_rgb = harness.decode((DATA_DIR / second.path).read_bytes())
            _, landmarks = harness.find_face(gate, reference_rgb)
            card = harness.render_id_portrait(reference_rgb, landmarks.points, rng)
            compared = client.compare_faces(probe, (DATA_DIR / second.path).read_bytes()).match
            carded = client.verify(probe, reference_image=card, enable_quality_checks=False).match
            outcomes[kind].append((compared.decision, carded.decision, compared.similarity, carded.similarity))
    # Selfie pairs: the report's genuine pairs all score above the strict threshold, and its
    # impostors above it are 0.08 %: every pair here decides as measured.
    assert all(o[0] == pb.MATCH_DECISION_MATCH for o in outcomes["genuine"]), outcomes["genuine"]
    assert all(o[0] == pb.MATCH_DECISION_NO_MATCH for o in outcomes["impostor"]), outcomes["impostor"]
    # ID cards are harder (TAR 72 % at strict): most genuine cards match, no impostor card does.
    assert sum(o[1] == pb.MATCH_DECISION_MATCH for o in outcomes["genuine"]) >= len(genuine) - 2
    assert all(o[1] != pb.MATCH_DECISION_MATCH for o in outcomes["impostor"]), outcomes["impostor"]
    assert min(o[2] for o in outcomes["genuine"]) > max(o[2] for o in outcomes["impostor"])


# --- HTTP/JSON ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def http():
    from httpkit import start_http

    endpoint = start_http()
    yield endpoint
    endpoint.stop()


def test_http_routes_carry_the_reference_and_compare_faces(http, selfie, card):
    """POST /v1/faces:compare and a reference on /v1/liveness:verify, as JSON (base64) and as
    multipart files: the same FaceMatch as over gRPC, by its JSON names."""
    with LivenessClient(http.target) as client:
        grpc_match = client.compare_faces(selfie, card).match
    encoded = {"image": base64.b64encode(selfie).decode(), "referenceImage": base64.b64encode(card).decode()}
    compared = requests.post(f"{http.base}/v1/faces:compare", json={**encoded, "requestId": "c1"}, timeout=60)
    assert compared.status_code == 200, compared.text
    body = compared.json()
    assert body["requestId"] == "c1" and body["quality"]["passed"] is True
    match = body["match"]
    assert match["status"] == "MATCH_STATUS_SUCCESS" and match["decision"] == "MATCH_DECISION_MATCH"
    assert match["isMatch"] is True and match["profile"] == "strict"
    assert match["similarity"] == pytest.approx(grpc_match.similarity, abs=1e-6)
    assert match["referenceQuality"]["faceBox"]["width"] > 0
    files = {"image": ("selfie.jpg", selfie, "image/jpeg"), "reference_image": ("id.jpg", card, "image/jpeg")}
    verified = requests.post(f"{http.base}/v1/liveness:verify", files=files, data={"match_profile": "balanced"},
                             timeout=60)
    assert verified.status_code == 200, verified.text
    verdict = verified.json()
    assert verdict["status"] == "VERIFY_STATUS_SUCCESS" and verdict["match"]["profile"] == "balanced"
    assert verdict["match"]["similarity"] == pytest.approx(grpc_match.similarity, abs=1e-6)
    # Without a reference the reply has no match.
    plain = requests.post(f"{http.base}/v1/liveness:verify", files={"image": ("s.jpg", selfie, "image/jpeg")}, timeout=60)
    assert plain.status_code == 200 and "match" not in plain.json()


def test_http_reference_failures_are_typed(http, selfie):
    blank = encode(np.full((240, 320, 3), 128, np.uint8), "PNG")
    files = {"image": ("s.jpg", selfie, "image/jpeg"), "reference_image": ("r.png", blank, "image/png")}
    rejected = requests.post(f"{http.base}/v1/faces:compare", files=files, timeout=60)
    assert rejected.status_code == 200
    assert rejected.json()["match"]["status"] == "MATCH_STATUS_REFERENCE_REJECTED"
    assert rejected.json()["match"]["referenceQuality"]["reasons"] == ["QUALITY_REASON_NO_FACE"]
    bad = requests.post(f"{http.base}/v1/faces:compare",
                        files={"image": ("s.jpg", selfie, "image/jpeg"), "reference_image": ("r.jpg", b"junk", "image/jpeg")},
                        timeout=60)
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_ARGUMENT"
    assert bad.json()["message"].startswith("reference_image")
    missing = requests.post(f"{http.base}/v1/faces:compare", files={"image": ("s.jpg", selfie, "image/jpeg")}, timeout=60)
    assert missing.status_code == 400 and "reference_image is empty" in missing.json()["message"]
    profile = requests.post(f"{http.base}/v1/faces:compare", files=files, data={"profile": "nonesuch"}, timeout=60)
    assert profile.status_code == 400 and profile.json()["code"] == "INVALID_ARGUMENT"


def test_http_stream_items_carry_references(http, selfie, card):
    lines = [
        {"request": {"image": base64.b64encode(selfie).decode(), "referenceImage": base64.b64encode(card).decode(),
                     "requestId": "a"}},
        {"request": {"image": base64.b64encode(selfie).decode(), "referenceImage": base64.b64encode(b"junk").decode(),
                     "requestId": "b"}},
        {"request": {"image": base64.b64encode(selfie).decode(), "requestId": "c"}},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    response = requests.post(f"{http.base}/v1/liveness:verifyStream", data=body.encode(),
                             headers={"content-type": "application/x-ndjson"}, timeout=60)
    assert response.status_code == 200, response.text
    answers = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    assert [a["requestId"] for a in answers] == ["a", "b", "c"]
    assert answers[0]["result"]["match"]["decision"] == "MATCH_DECISION_MATCH"
    assert answers[1]["error"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "match" not in answers[2]["result"]


def test_the_openapi_document_lists_compare_faces(http):
    document = requests.get(f"{http.base}/openapi.json", timeout=30)
    if document.status_code == 404:
        pytest.skip("no OpenAPI document served")
    paths = document.json()["paths"]
    assert "/v1/faces:compare" in paths


# --- the CLI ---------------------------------------------------------------------------------------

def run_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))


@pytest.fixture(scope="module")
def files(tmp_path_factory, selfie, card, portrait) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("match")
    paths = {"selfie": folder / "selfie.jpg", "card": folder / "card.jpg", "blank": folder / "blank.png",
             "tiny": folder / "tiny.png"}
    paths["selfie"].write_bytes(selfie)
    paths["card"].write_bytes(card)
    paths["blank"].write_bytes(encode(np.full((240, 320, 3), 128, np.uint8), "PNG"))
    paths["tiny"].write_bytes(tiny_face(portrait))
    return paths


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """Liveness threshold 1.0 (every scored face live), so that the exit code is the match's;
    and a second matcher whose metadata demands similarity 0.999 (every pair NO_MATCH), as
    tests/test_cli.py's accepting and rejecting servers do for liveness."""
    folder = tmp_path_factory.mktemp("picky-matcher")
    (folder / "sface.onnx").symlink_to(DEFAULT_MATCHER)
    picky = dict(METADATA, profiles={"strict": {"threshold": 0.999}, "balanced": {"threshold": 0.998}})
    (folder / "sface.json").write_text(json.dumps(picky))
    accepting, port = start_server(model__threshold=1.0)
    rejecting, picky_port = start_server(model__threshold=1.0, matcher__path=str(folder / "sface.onnx"))
    yield f"127.0.0.1:{port}", f"127.0.0.1:{picky_port}"
    accepting.stop(0)
    rejecting.stop(0)


def test_cli_verify_with_a_reference_prints_the_match_by_its_proto_names(live_server, files):
    matching, _ = live_server
    result = run_client("--server", matching, "verify", str(files["selfie"]), "--reference", str(files["card"]), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["path"] == str(files["selfie"]) and record["reference"] == str(files["card"])
    match = record["match"]
    for field in ("status", "similarity", "is_match", "decision", "threshold", "profile", "model_version",
                  "reference_quality"):
        assert field in match, field
    assert match["decision"] == "MATCH_DECISION_MATCH" and match["is_match"] is True
    assert match["reference_quality"]["face_box"]["width"] > 0
    human = run_client("--server", matching, "verify", str(files["selfie"]), "--reference", str(files["card"]))
    assert human.returncode == 0 and "LIVE" in human.stdout and "; MATCH (similarity" in human.stdout


def test_cli_exit_codes_with_a_reference(live_server, files):
    matching, picky = live_server
    selfie, card = str(files["selfie"]), str(files["card"])
    no_match = run_client("--server", picky, "verify", selfie, "--reference", card)
    assert no_match.returncode == 5 and "NO_MATCH" in no_match.stdout  # live, but not the holder
    rejected = run_client("--server", matching, "verify", selfie, "--reference", str(files["tiny"]))
    assert rejected.returncode == 3 and "REFERENCE_REJECTED (FACE_TOO_SMALL)" in rejected.stdout
    # The worst outcome over the batch decides: a non-match outranks a rejected reference.
    worst = run_client("--server", picky, "verify", selfie, selfie, "--reference", card, "--stream")
    assert worst.returncode == 5 and "no_match 2" in worst.stderr
    missing = run_client("--server", matching, "verify", selfie, "--reference", str(files["card"]) + ".missing")
    assert missing.returncode == 1 and "cannot read reference" in missing.stderr and "Traceback" not in missing.stderr
    usage = run_client("--server", matching, "verify", selfie, "--match-profile", "strict")
    assert usage.returncode == 1 and "--match-profile needs --reference" in usage.stderr


def test_cli_compare(live_server, files, tmp_path):
    matching, picky = live_server
    selfie, card = str(files["selfie"]), str(files["card"])
    same = run_client("--server", matching, "compare", selfie, card, "--json")
    assert same.returncode == 0, same.stderr
    record = json.loads(same.stdout)
    assert record["match"]["is_match"] is True and record["match"]["profile"] == "strict"
    assert record["path"] == selfie and record["reference"] == card and "quality" in record
    balanced = json.loads(run_client("--server", matching, "compare", selfie, card, "--json", "--profile", "balanced").stdout)
    assert balanced["match"]["threshold"] == pytest.approx(BALANCED)
    assert run_client("--server", picky, "compare", selfie, card).returncode == 5
    blank = run_client("--server", matching, "compare", str(files["blank"]), card)
    assert blank.returncode == 3 and "IMAGE_REJECTED (NO_FACE)" in blank.stdout
    output = tmp_path / "pairs.csv"
    assert run_client("--server", matching, "compare", selfie, card, "--output", str(output)).returncode == 0
    row = next(csv.DictReader(output.open()))
    assert row["match_decision"] == "MATCH" and row["reference"] == card and float(row["similarity"]) > STRICT
    bad = run_client("--server", matching, "compare", selfie, card, "--profile", "lenient")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr
