"""Aggregated EMF metrics: valid lines per interval, counts that add up, no per-request scores."""

from __future__ import annotations

import json
import signal

import pytest

from conftest import ServerProcess, flat_image
from ekyc.client import LivenessClient, LivenessError
from ekyc.server.metrics import MetricsAggregator
from ekyc.v1 import liveness_pb2 as pb
from test_metrics import PERSONAL_FIELDS, assert_valid_emf


def _by_metric(records: list[dict], name: str) -> list[dict]:
    return [r for r in records if name in r]


def test_records_follow_the_emf_specification_and_add_up():
    metrics = MetricsAggregator(min_scores=3)
    for index in range(250):
        metrics.observe("Verify", "OK", 5.0 + index, "live", (), "m-1", index / 250)
    metrics.observe("Verify", "INVALID_ARGUMENT", 0.4)
    metrics.observe("CheckQuality", "OK", 3.0, "quality_failed", ["BLURRY", "TOO_DARK"])
    records = metrics.records(timestamp_ms=1_700_000_000_000)
    for record in records:
        assert_valid_emf(record)
        assert not PERSONAL_FIELDS & set(record)
    requests = {(r["method"], r["code"]): r for r in _by_metric(records, "Requests")}
    assert requests[("Verify", "OK")]["Requests"] == 250 and requests[("Verify", "OK")]["Errors"] == 0
    assert len(requests[("Verify", "OK")]["Latency"]) == 100  # sampled to the EMF limit
    assert min(requests[("Verify", "OK")]["Latency"]) == 5.0 and max(requests[("Verify", "OK")]["Latency"]) == 254.0
    assert requests[("Verify", "INVALID_ARGUMENT")]["Errors"] == 1
    (scores,) = _by_metric(records, "LivenessScore")
    assert scores["Scored"] == 250 and len(scores["LivenessScore"]) == 100
    buckets = _by_metric(records, "ScoredInBucket")
    assert sum(r["ScoredInBucket"] for r in buckets) == 250 and len(buckets) == 10
    (reasons,) = [r for r in records if "Reason_BLURRY" in r]
    assert reasons["Reason_TOO_DARK"] == 1
    assert metrics.records() == []  # an interval's counts are written once


def test_scores_wait_until_no_line_carries_a_single_request():
    metrics = MetricsAggregator(min_scores=5)
    metrics.observe("Verify", "OK", 10.0, "spoof", (), "m-1", 0.91)
    assert not _by_metric(metrics.records(), "LivenessScore")
    for _ in range(4):
        metrics.observe("Verify", "OK", 10.0, "live", (), "m-1", 0.2)
    (scores,) = _by_metric(metrics.records(), "LivenessScore")
    assert scores["Scored"] == 5 and 0.91 in scores["LivenessScore"]


def test_server_writes_aggregated_metrics_lines(face_jpeg):
    env = {"EKYC_SERVER_METRICS": "emf", "EKYC_SERVER_METRICS_INTERVAL_S": "0.3"}
    with ServerProcess(env=env) as server:
        server.wait_serving()
        with LivenessClient(server.target) as client:
            for index in range(6):
                client.verify(face_jpeg, request_id=f"metric-{index}")
            client.check_quality(flat_image())
            with pytest.raises(LivenessError):
                client.verify(b"junk")
            list(client.verify_stream([pb.VerifyRequest(image=face_jpeg)] * 2))
        server.process.send_signal(signal.SIGTERM)
        log = server.rest_of_log()
    records = [entry for entry in log if entry.get("event") == "metrics"]
    for record in records:
        assert_valid_emf(record)
        assert "request_id" not in record
    requests = {}
    for record in _by_metric(records, "Requests"):
        requests[(record["method"], record["code"])] = requests.get((record["method"], record["code"]), 0) + record["Requests"]
    assert requests[("Verify", "OK")] == 6 and requests[("Verify", "INVALID_ARGUMENT")] == 1
    assert requests[("CheckQuality", "OK")] == 1 and requests[("VerifyStream", "OK")] == 2
    scored = [r["Scored"] for r in _by_metric(records, "LivenessScore")]
    assert scored and all(count >= 5 for count in scored) and sum(scored) <= 8  # held back below 5
    rpc_lines = [entry for entry in log if entry.get("event") == "rpc"]
    assert all("liveness_score" not in json.dumps(entry) for entry in rpc_lines)
