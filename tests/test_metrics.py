"""server/metrics.py: every record is a valid CloudWatch Embedded Metric Format document.

The schema below transcribes the EMF specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
the ``_aws`` metadata object with an integer Timestamp and a CloudWatchMetrics array of
MetricDirectives (Namespace, Dimensions as an array of arrays of at most 30 keys, at most
100 MetricDefinitions). What a JSON Schema cannot say (every referenced dimension and metric
is a top-level member of the right type, at most 100 values per metric) is checked in code.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading

import jsonschema
import pytest

from ekyc.server import logs
from ekyc.server.metrics import (
    MAX_DIMENSIONS_PER_SET,
    MAX_METRICS_PER_EVENT,
    MAX_VALUES_PER_METRIC,
    emf_record,
    emit,
    score_bucket,
)

UNITS = (
    "Seconds|Microseconds|Milliseconds|Bytes|Kilobytes|Megabytes|Gigabytes|Terabytes|Bits|Kilobits|"
    "Megabits|Gigabits|Terabits|Percent|Count|Bytes/Second|Kilobytes/Second|Megabytes/Second|"
    "Gigabytes/Second|Terabytes/Second|Bits/Second|Kilobits/Second|Megabits/Second|Gigabits/Second|"
    "Terabits/Second|Count/Second|None"
)
EMF_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "title": "Root Node",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "title": "Metadata",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "LogGroupName": {"type": "string", "minLength": 1},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "title": "MetricDirective",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[^:].*"},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "title": "DimensionSet",
                                    "maxItems": MAX_DIMENSIONS_PER_SET,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": MAX_METRICS_PER_EVENT,
                                "items": {
                                    "type": "object",
                                    "title": "MetricDefinition",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {"type": "string", "pattern": f"^({UNITS})$"},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}
PERSONAL_FIELDS = {"request_id", "image", "path", "face_box", "landmarks", "api_key", "authorization"}


def assert_valid_emf(record: dict) -> None:
    """The EMF specification's rules, schema and target members, for one record."""
    jsonschema.Draft7Validator.check_schema(EMF_SCHEMA)
    jsonschema.validate(record, EMF_SCHEMA)
    text = json.dumps(record, allow_nan=False)  # a NaN would not be JSON
    assert len(text.encode()) < 256 * 1024
    metric_count = 0
    for directive in record["_aws"]["CloudWatchMetrics"]:
        names = [metric["Name"] for metric in directive["Metrics"]]
        assert len(names) == len(set(names)), f"duplicate metric in {directive}"
        metric_count += len(names)
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) == len(set(dimension_set))
            for key in dimension_set:
                value = record.get(key)
                assert isinstance(value, str) and 1 <= len(value) <= 1024, f"dimension {key!r} = {value!r}"
        for name in names:
            value = record.get(name)
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= MAX_VALUES_PER_METRIC, name
            for item in values:
                assert isinstance(item, (int, float)) and not isinstance(item, bool), f"metric {name!r} = {item!r}"
                assert math.isfinite(item)
    assert metric_count <= MAX_METRICS_PER_EVENT
    assert not PERSONAL_FIELDS & set(record), PERSONAL_FIELDS & set(record)


def directive_for(record: dict, metric: str) -> dict:
    (found,) = [d for d in record["_aws"]["CloudWatchMetrics"] if metric in {m["Name"] for m in d["Metrics"]}]
    return found


CASES = {
    "verify live": dict(method="Verify", code="OK", latency_ms=41.7, decision="live", reasons=[],
                        model_version="liveness-v3", liveness_score=0.0123),
    "verify spoof": dict(method="Verify", code="OK", latency_ms=39.2, decision="spoof", reasons=[],
                         model_version="liveness-v3", liveness_score=0.97),
    "verify quality failed": dict(method="Verify", code="OK", latency_ms=12.0, decision="quality_failed",
                                  reasons=["TOO_DARK", "BLURRY"], model_version="liveness-v3"),
    "check quality": dict(method="CheckQuality", code="OK", latency_ms=10.5, decision="passed", reasons=()),
    "check quality failed": dict(method="CheckQuality", code="OK", latency_ms=9.0, decision="quality_failed",
                                 reasons=["NO_FACE"]),
    "invalid argument": dict(method="Verify", code="INVALID_ARGUMENT", latency_ms=0.8),
    "stream item": dict(method="VerifyStream", code="OK", latency_ms=None, decision="live",
                        model_version="liveness-v3", liveness_score=0.2),
    "every reason": dict(method="Verify", code="OK", latency_ms=5, decision="quality_failed",
                         reasons=["NO_FACE", "MULTIPLE_FACES", "FACE_TOO_SMALL", "TOO_DARK", "TOO_BRIGHT", "BLURRY"],
                         model_version="m"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_every_record_follows_the_emf_specification(case):
    assert_valid_emf(emf_record(**CASES[case]))


def test_request_metrics_by_method_code_and_decision():
    record = emf_record(**CASES["verify spoof"], timestamp_ms=1_700_000_000_123)
    assert record["_aws"]["Timestamp"] == 1_700_000_000_123
    requests = directive_for(record, "Requests")
    assert requests["Namespace"] == "ekyc"
    assert requests["Dimensions"] == [["method"], ["method", "code"], ["method", "decision"]]
    units = {m["Name"]: m["Unit"] for m in requests["Metrics"]}
    assert units == {"Requests": "Count", "Errors": "Count", "Latency": "Milliseconds", "Rejects": "Count"}
    assert (record["Requests"], record["Errors"], record["Rejects"], record["Latency"]) == (1, 0, 0, 39.2)
    assert (record["method"], record["code"], record["decision"]) == ("Verify", "OK", "spoof")


def test_decisions_per_model_version_give_the_spoof_rate():
    record = emf_record(**CASES["verify spoof"])
    assert directive_for(record, "Decisions")["Dimensions"] == [["model_version", "decision"]]
    assert (record["Decisions"], record["model_version"], record["decision"]) == (1, "liveness-v3", "spoof")


def test_each_reject_reason_is_counted():
    record = emf_record(**CASES["verify quality failed"])
    assert record["Rejects"] == 1 and record["Reason_TOO_DARK"] == 1 and record["Reason_BLURRY"] == 1
    reasons = directive_for(record, "Reason_BLURRY")
    assert reasons["Dimensions"] == [["method"]]
    assert {m["Name"] for m in reasons["Metrics"]} == {"Reason_BLURRY", "Reason_TOO_DARK"}
    assert "LivenessScore" not in record


def test_liveness_score_distribution_per_model_version():
    record = emf_record(**CASES["verify live"])
    assert directive_for(record, "LivenessScore")["Dimensions"] == [["model_version"]]
    assert directive_for(record, "Scored")["Dimensions"] == [["model_version", "score_bucket"]]
    assert record["LivenessScore"] == 0.012 and record["score_bucket"] == "0.0" and record["Scored"] == 1


@pytest.mark.parametrize("score,bucket", [(0.0, "0.0"), (0.099, "0.0"), (0.1, "0.1"), (0.55, "0.5"), (0.999, "0.9"), (1.0, "0.9")])
def test_score_buckets(score, bucket):
    assert score_bucket(score) == bucket


def test_missing_members_leave_out_the_dimension_sets_that_need_them():
    errored = emf_record(**CASES["invalid argument"])
    assert errored["Errors"] == 1
    assert directive_for(errored, "Requests")["Dimensions"] == [["method"], ["method", "code"]]
    assert not {"decision", "model_version", "Rejects", "Decisions", "LivenessScore"} & set(errored)
    no_model = emf_record(**CASES["check quality"])
    assert "model_version" not in no_model and "Decisions" not in no_model
    # A score without a model version has no dimension to go under: left out.
    assert "LivenessScore" not in emf_record("Verify", "OK", 3.0, "live", liveness_score=0.4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "fast"])
def test_non_finite_values_are_left_out_never_written_as_nan(bad):
    record = emf_record("Verify", "OK", bad, "live", model_version="m", liveness_score=bad)
    assert_valid_emf(record)
    assert "Latency" not in record and "LivenessScore" not in record


def test_unusable_reasons_and_dimension_values_are_dropped_or_replaced():
    record = emf_record("", "", 1.0, decision="", reasons=["no_face", "bad name!", ""], model_version="  ")
    assert_valid_emf(record)
    assert record["method"] == "unknown" and record["code"] == "UNKNOWN"
    assert record["Reason_NO_FACE"] == 1 and not any(k.startswith("Reason_BAD") for k in record)
    assert "decision" not in record and "model_version" not in record


def test_no_request_id_or_other_personal_data_in_any_record():
    for case in CASES.values():
        record = emf_record(**case)
        assert "request_id" not in json.dumps(record)


@pytest.fixture()
def captured(ekyc_logger):
    stream = io.StringIO()
    logs.configure("INFO", stream=stream)
    return stream


def test_emit_writes_one_json_line_on_the_log_stream(captured):
    record = emf_record(**CASES["verify live"])
    emit(record)
    lines = captured.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == record


def test_emit_ignores_the_log_level(captured):
    logging.getLogger(logs.LOGGER_NAME).setLevel(logging.ERROR)
    emit(emf_record(**CASES["check quality"]))
    assert len(captured.getvalue().splitlines()) == 1


def test_emit_and_log_lines_never_interleave(captured):
    def work(index: int) -> None:
        for n in range(200):
            emit(emf_record(**CASES["verify quality failed"]))
            logs.log_event("rpc", method="Verify", code="OK", request_id=f"{index}-{n}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = captured.getvalue().splitlines()
    assert len(lines) == 8 * 200 * 2
    parsed = [json.loads(line) for line in lines]
    metrics = [p for p in parsed if p.get("event") == "metrics"]
    assert len(metrics) == 1600
    for record in metrics[:20]:
        assert_valid_emf(record)


def test_emit_without_configured_logging_goes_to_stdout(ekyc_logger, capsys):
    ekyc_logger.handlers.clear()
    emit(emf_record(**CASES["invalid argument"]))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["code"] == "INVALID_ARGUMENT"


def test_emit_on_a_closed_stream_loses_the_line_not_the_caller(ekyc_logger, capsys):
    """At shutdown the log stream may be closed: the line is lost (not written elsewhere, not
    kept for later) and the RPC that emitted it does not fail."""
    stream = io.StringIO()
    logs.configure("INFO", stream=stream)
    stream.close()
    try:
        emit(emf_record(**CASES["verify live"]))
    except Exception as exc:  # noqa: BLE001 - the assertion is that nothing escapes
        pytest.fail(f"emit raised {exc!r} on a closed stream")
    assert capsys.readouterr() == ("", "")
    reopened = io.StringIO()
    logs.configure("INFO", stream=reopened)
    emit(emf_record(**CASES["check quality"]))
    (line,) = reopened.getvalue().splitlines()
    assert json.loads(line)["method"] == emf_record(**CASES["check quality"])["method"]
