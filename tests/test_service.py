"""The transport-neutral service layer (server/service.py) on the real pipeline, without gRPC:
errors become a status in one place, log lines and metrics come from the domain results."""

from __future__ import annotations

import io
import json

import grpc
import pytest

from conftest import flat_image
from ekyc.server import logs
from ekyc.server.errors import CallFailed, InvalidRequestError
from ekyc.server.limits import RateLimiter
from ekyc.server.metrics import MetricsAggregator
from ekyc.server.service import CallContext, LivenessService, QualityInput, VerifyInput


@pytest.fixture()
def log_lines(ekyc_logger):
    stream = io.StringIO()
    logs.configure("INFO", stream=stream)
    return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


def _service(server, **kwargs) -> tuple[LivenessService, MetricsAggregator]:
    metrics = MetricsAggregator(min_scores=1)
    kwargs.setdefault("pipeline", server.service.pipeline)
    return LivenessService(server.compute, 4, metrics=metrics, **kwargs), metrics


def _requests(metrics: MetricsAggregator) -> dict:
    return {(r["method"], r["code"]): r["Requests"] for r in metrics.records() if "Requests" in r}


def test_log_line_and_metrics_come_from_the_verdict(server, face_jpeg, log_lines):
    service, metrics = _service(server)
    verdict = service.verify(VerifyInput(face_jpeg, request_id="r-1", profile="strict"), CallContext())
    (line,) = [entry for entry in log_lines() if entry["event"] == "rpc"]
    assert line["method"] == "Verify" and line["code"] == "OK" and line["request_id"] == "r-1"
    assert line["decision"] == verdict.outcome and line["profile"] == "strict"
    assert line["model_version"] == verdict.model_version
    assert "liveness_score" not in json.dumps(line) and str(verdict.liveness_score) not in json.dumps(line)
    records = metrics.records()
    (scored,) = [r for r in records if "LivenessScore" in r]
    assert scored["LivenessScore"] == [round(verdict.liveness_score, 3)]
    assert {(r["method"], r["decision"]) for r in records if "Decisions" in r} == {("Verify", verdict.outcome)}


def test_quality_failures_are_counted_with_their_reasons(server, log_lines):
    service, metrics = _service(server)
    result = service.check_quality(QualityInput(flat_image(), "wall"), CallContext())
    assert not result.passed
    (line,) = [entry for entry in log_lines() if entry["event"] == "rpc"]
    assert line["decision"] == "quality_failed" and "NO_FACE" in line["reasons"]
    assert any(r.get("Reason_NO_FACE") == 1 for r in metrics.records())


@pytest.mark.parametrize("request_input, code", [
    (VerifyInput(b"junk"), grpc.StatusCode.INVALID_ARGUMENT),
    (VerifyInput(b"junk", request_id="x" * 129), grpc.StatusCode.INVALID_ARGUMENT),
    (VerifyInput(flat_image(), profile="no-such-profile"), grpc.StatusCode.INVALID_ARGUMENT),
])
def test_a_failed_call_raises_its_status_after_logging_and_counting_it(server, log_lines, request_input, code):
    service, metrics = _service(server)
    with pytest.raises(CallFailed) as failed:
        service.verify(request_input, CallContext())
    assert failed.value.code == code and failed.value.message
    (line,) = [entry for entry in log_lines() if entry["event"] == "rpc"]
    assert line["code"] == code.name and line["error"] == failed.value.message
    assert _requests(metrics) == {("Verify", code.name): 1}


def test_calls_before_the_models_load_are_unavailable(server, face_jpeg):
    service, metrics = _service(server, pipeline=None)
    with pytest.raises(CallFailed) as failed:
        service.check_quality(QualityInput(face_jpeg), CallContext())
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE


def test_a_stream_refused_before_its_first_item_reaches_the_metrics(server, face_jpeg, log_lines):
    service, metrics = _service(server, pipeline=None)
    with pytest.raises(CallFailed) as failed:
        next(service.verify_stream(iter([VerifyInput(face_jpeg)]), CallContext()))
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert _requests(metrics) == {("VerifyStream", "UNAVAILABLE"): 1}
    assert [entry["code"] for entry in log_lines() if entry["event"] == "rpc"] == ["UNAVAILABLE"]


def test_a_stream_over_its_item_limit_is_counted_once_it_fails(server, face_jpeg, log_lines):
    service, metrics = _service(server, max_stream_items=2)
    answers = []
    with pytest.raises(CallFailed) as failed:
        for answer in service.verify_stream(iter([VerifyInput(face_jpeg, str(i)) for i in range(5)]), CallContext()):
            answers.append(answer)
    assert failed.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [a.request_id for a in answers] == ["0", "1"] and all(a.verdict is not None for a in answers)
    assert _requests(metrics) == {("VerifyStream", "OK"): 2, ("VerifyStream", "RESOURCE_EXHAUSTED"): 1}
    (line,) = [entry for entry in log_lines() if entry["event"] == "rpc"]
    assert line["code"] == "RESOURCE_EXHAUSTED" and sum(line["items"].values()) == 2


def test_stream_items_fail_alone_in_order(server, face_jpeg, log_lines):
    service, metrics = _service(server)
    items = [VerifyInput(face_jpeg, "a"), InvalidRequestError("not a valid message"), VerifyInput(b"junk", "c"),
             VerifyInput(face_jpeg, "d")]
    answers = list(service.verify_stream(iter(items), CallContext()))
    assert [a.request_id for a in answers] == ["a", "", "c", "d"]
    assert [a.error.code if a.error else None for a in answers] == [
        None, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT, None]
    assert _requests(metrics) == {("VerifyStream", "OK"): 2, ("VerifyStream", "INVALID_ARGUMENT"): 2}
    (line,) = [entry for entry in log_lines() if entry["event"] == "rpc"]
    assert line["code"] == "OK" and line["items"]["error"] == 2


def test_rate_limits_apply_to_the_client_the_adapter_names(server, face_jpeg):
    service, metrics = _service(server, limiter=RateLimiter(per_minute=1, burst=1))
    assert service.identifies_clients
    service.check_quality(QualityInput(face_jpeg), CallContext(client="key:a"))
    with pytest.raises(CallFailed) as failed:
        service.check_quality(QualityInput(face_jpeg), CallContext(client="key:a"))
    assert failed.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    service.check_quality(QualityInput(face_jpeg), CallContext(client="key:b"))
