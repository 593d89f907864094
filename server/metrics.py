"""Metrics as CloudWatch Embedded Metric Format (EMF) lines: no agent, no SDK, no network.

Each RPC may add one JSON line to stdout that CloudWatch Logs turns into metrics on its
own (the ``awslogs`` driver of the ECS task sends stdout there; no header or agent is
needed). The line is an ordinary JSON object, so it also stays queryable in Logs Insights
(``filter event = "metrics"``). Specification:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

Metrics (namespace ``ekyc``; see docs/observability.md):

=====================  =========================================  ======================================
metric                 dimension sets                             meaning
=====================  =========================================  ======================================
Requests, Errors,      [method], [method, code],                  calls, calls not OK, latency (ms),
Latency, Rejects       [method, decision]                         calls rejected by the quality gate
Decisions              [model_version, decision]                  decisions per model (spoof rate)
Reason_<REASON>        [method]                                   one count per quality reason
LivenessScore          [model_version]                            the spoof score: percentiles = drift
Scored                 [model_version, score_bucket]              score histogram (10 buckets of 0.1)
=====================  =========================================  ======================================

Privacy: a line never carries a request id, an image or anything else that names a
person; the score is rounded to 3 decimals and appears only in these lines, never in the
``rpc`` log line that carries the request id.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Iterable

from ekyc.server.logs import LOGGER_NAME

NAMESPACE = "ekyc"
SCORE_BUCKETS = 10
# Limits of the EMF specification.
MAX_DIMENSIONS_PER_SET = 30
MAX_METRICS_PER_EVENT = 100
MAX_VALUES_PER_METRIC = 100
MAX_DIMENSION_VALUE_LENGTH = 1024
_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def _finite(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _dimension(value) -> str | None:
    """A usable dimension value: a non-empty string of at most 1024 characters, else None."""
    if value is None:
        return None
    text = str(value).strip()
    return text[:MAX_DIMENSION_VALUE_LENGTH] if text else None


def score_bucket(score: float) -> str:
    """The lower edge of the score's bucket: '0.0' .. '0.9' (1.0 falls in '0.9')."""
    index = min(SCORE_BUCKETS - 1, max(0, int(score * SCORE_BUCKETS)))
    return f"{index / SCORE_BUCKETS:.1f}"


def emf_record(
    method: str,
    code: str,
    latency_ms: float | None,
    decision: str | None = None,
    reasons: Iterable[str] | None = (),
    model_version: str | None = None,
    liveness_score: float | None = None,
    *,
    namespace: str = NAMESPACE,
    timestamp_ms: int | None = None,
) -> dict:
    """One EMF object for one RPC (or one VerifyStream item).

    ``code`` is the gRPC status name ("OK", "INVALID_ARGUMENT" ...); ``decision`` is
    "live", "spoof", "quality_failed" or "passed"; ``reasons`` are QualityReason names.
    ``latency_ms`` None (or not finite) leaves Latency out; ``liveness_score`` None leaves
    the score metrics out. Members that are missing leave out the dimension sets that
    need them, so every dimension a directive names is present, as the specification requires.
    """
    method = _dimension(method) or "unknown"
    code = _dimension(code) or "UNKNOWN"
    decision = _dimension(decision)
    model_version = _dimension(model_version)
    latency = _finite(latency_ms)
    score = _finite(liveness_score)
    if score is not None:
        score = min(1.0, max(0.0, score))
    reason_names = sorted({r for r in (str(x).strip().upper() for x in (reasons or ())) if _REASON.match(r)})

    record: dict = {"event": "metrics", "method": method, "code": code}
    directives: list[dict] = []

    request_metrics = [_metric("Requests", "Count"), _metric("Errors", "Count")]
    record["Requests"] = 1
    record["Errors"] = 0 if code == "OK" else 1
    if latency is not None:
        request_metrics.append(_metric("Latency", "Milliseconds"))
        record["Latency"] = round(latency, 3)
    request_dimensions = [["method"], ["method", "code"]]
    if decision is not None:
        record["decision"] = decision
        record["Rejects"] = 1 if decision == "quality_failed" else 0
        request_metrics.append(_metric("Rejects", "Count"))
        request_dimensions.append(["method", "decision"])
    directives.append(_directive(namespace, request_dimensions, request_metrics))

    if model_version is not None:
        record["model_version"] = model_version
        if decision is not None:
            record["Decisions"] = 1
            directives.append(_directive(namespace, [["model_version", "decision"]], [_metric("Decisions", "Count")]))

    if reason_names:
        names = [f"Reason_{reason}" for reason in reason_names]
        for name in names:
            record[name] = 1
        directives.append(_directive(namespace, [["method"]], [_metric(name, "Count") for name in names]))

    if score is not None and model_version is not None:
        record["LivenessScore"] = round(score, 3)
        record["score_bucket"] = score_bucket(score)
        record["Scored"] = 1
        directives.append(_directive(namespace, [["model_version"]], [_metric("LivenessScore", "None")]))
        directives.append(_directive(namespace, [["model_version", "score_bucket"]], [_metric("Scored", "Count")]))

    stamp = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
    record["_aws"] = {"Timestamp": stamp, "CloudWatchMetrics": directives}
    return record


def _metric(name: str, unit: str) -> dict:
    return {"Name": name, "Unit": unit}


def _directive(namespace: str, dimensions: list[list[str]], metrics: list[dict]) -> dict:
    return {"Namespace": namespace, "Dimensions": dimensions, "Metrics": metrics}


def emit(record: dict) -> None:
    """Write ``record`` as one JSON line on the stream of the ``ekyc`` logger's handler
    (stdout once logs.configure() ran), under the handler's lock so that it never
    interleaves with a log line. Independent of the log level: metrics are not logs.
    A stream that cannot be written (closed at shutdown) loses the line, never the RPC."""
    line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
    handler = next(
        (h for h in logging.getLogger(LOGGER_NAME).handlers if isinstance(h, logging.StreamHandler)), None
    )
    try:
        if handler is None:
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.flush()
        finally:
            handler.release()
    except (OSError, ValueError):
        pass


def _sample(values: list[float], limit: int = MAX_VALUES_PER_METRIC) -> list[float]:
    """At most ``limit`` values that keep the distribution: evenly spaced order statistics."""
    if len(values) <= limit:
        return [round(v, 3) for v in values]
    ordered = sorted(values)
    step = (len(ordered) - 1) / (limit - 1)
    return [round(ordered[round(i * step)], 3) for i in range(limit)]


class MetricsAggregator:
    """Collects RPC outcomes and writes EMF lines once per interval, aggregated.

    One line per RPC would let anyone who reads the log group pair a score with the
    request logged next to it; aggregated lines carry counts, latency and score samples
    of a whole interval. Scores are held back until ``min_scores`` of one model version
    are collected, so that no line carries the score of a single request.
    """

    def __init__(self, interval_s: float = 60.0, min_scores: int = 5, namespace: str = NAMESPACE):
        self.interval_s = interval_s
        self.min_scores = max(1, min_scores)
        self.namespace = namespace
        self._lock = threading.Lock()
        self._scores: dict[str, list[float]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self._requests: Counter = Counter()
        self._errors: Counter = Counter()
        self._latency: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._decisions: Counter = Counter()
        self._model_decisions: Counter = Counter()
        self._reasons: Counter = Counter()

    def observe(
        self,
        method: str,
        code: str,
        latency_ms: float | None = None,
        decision: str | None = None,
        reasons: Iterable[str] = (),
        model_version: str | None = None,
        liveness_score: float | None = None,
    ) -> None:
        """Count one RPC (or one stream item)."""
        method = _dimension(method) or "unknown"
        code = _dimension(code) or "UNKNOWN"
        latency, score = _finite(latency_ms), _finite(liveness_score)
        model_version, decision = _dimension(model_version), _dimension(decision)
        with self._lock:
            self._requests[(method, code)] += 1
            if latency is not None:
                self._latency[(method, code)].append(latency)
            if decision is not None:
                self._decisions[(method, decision)] += 1
                if model_version is not None:
                    self._model_decisions[(model_version, decision)] += 1
            for reason in reasons or ():
                name = str(reason).strip().upper()
                if _REASON.match(name):
                    self._reasons[(method, name)] += 1
            if score is not None and model_version is not None:
                self._scores[model_version].append(min(1.0, max(0.0, score)))

    def records(self, timestamp_ms: int | None = None) -> list[dict]:
        """The EMF objects for everything observed since the last call; resets the counts."""
        stamp = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        with self._lock:
            requests, latency = self._requests, self._latency
            decisions, model_decisions, reasons = self._decisions, self._model_decisions, self._reasons
            ready = {v: s for v, s in self._scores.items() if len(s) >= self.min_scores}
            for version in ready:
                del self._scores[version]
            self._reset()
        out: list[dict] = []

        def add(members: dict, dimensions: list[list[str]], metrics: list[dict]) -> None:
            out.append({"event": "metrics", **members,
                        "_aws": {"Timestamp": stamp,
                                 "CloudWatchMetrics": [_directive(self.namespace, dimensions, metrics)]}})

        for (method, code), count in sorted(requests.items()):
            members = {"method": method, "code": code, "Requests": count, "Errors": 0 if code == "OK" else count}
            metrics = [_metric("Requests", "Count"), _metric("Errors", "Count")]
            if latency.get((method, code)):
                members["Latency"] = _sample(latency[(method, code)])
                metrics.append(_metric("Latency", "Milliseconds"))
            add(members, [["method"], ["method", "code"]], metrics)
        for (method, decision), count in sorted(decisions.items()):
            members = {"method": method, "decision": decision, "Decisions": count,
                       "Rejects": count if decision == "quality_failed" else 0}
            add(members, [["method", "decision"], ["method"]], [_metric("Decisions", "Count"), _metric("Rejects", "Count")])
        for (version, decision), count in sorted(model_decisions.items()):
            add({"model_version": version, "decision": decision, "ModelDecisions": count},
                [["model_version", "decision"]], [_metric("ModelDecisions", "Count")])
        by_method: dict[str, dict[str, int]] = defaultdict(dict)
        for (method, reason), count in reasons.items():
            by_method[method][f"Reason_{reason}"] = count
        for method, counts in sorted(by_method.items()):
            add({"method": method, **counts}, [["method"]], [_metric(name, "Count") for name in sorted(counts)])
        for version, scores in sorted(ready.items()):
            add({"model_version": version, "LivenessScore": _sample(scores), "Scored": len(scores)},
                [["model_version"]], [_metric("LivenessScore", "None"), _metric("Scored", "Count")])
            buckets = Counter(score_bucket(score) for score in scores)
            for bucket, count in sorted(buckets.items()):
                add({"model_version": version, "score_bucket": bucket, "ScoredInBucket": count},
                    [["model_version", "score_bucket"]], [_metric("ScoredInBucket", "Count")])
        return out

    def flush(self) -> None:
        for record in self.records():
            emit(record)

    def start(self) -> None:
        """Flush every ``interval_s`` seconds in a daemon thread until stop()."""
        def loop():
            while not self._stop.wait(self.interval_s):
                self.flush()

        self._thread = threading.Thread(target=loop, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and flush what is left (scores still below min_scores stay unwritten)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
