"""The served decision on the held-out test split of the shared data (subjects never trained on)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from conftest import DATA_DIR, manifest_rows, needs_data
from ekyc.v1 import liveness_pb2 as pb

PER_GROUP = 40  # images per (source, label): enough for a stable rate, short enough for CI
MIN_ACCURACY_PER_CLASS = 0.85
MAX_LIVE_QUALITY_REJECTS = 0.15


@needs_data
def test_verify_on_the_test_split_meets_the_stated_accuracy(client):
    rows = manifest_rows("test")
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["source"], row["label"]), []).append(row)
    assert {label for _, label in groups} == {"live", "spoof"}
    assert {source for source, _ in groups} >= {"nuaa", "replay-b"}  # prints and replays both held out
    rng = random.Random(0)
    sample = [row for key in sorted(groups) for row in rng.sample(groups[key], min(PER_GROUP, len(groups[key])))]
    requests = (
        pb.VerifyRequest(image=(DATA_DIR / row["path"]).read_bytes(), request_id=str(index))
        for index, row in enumerate(sample)
    )
    outcomes: dict[str, Counter] = {"live": Counter(), "spoof": Counter()}
    for response in client.verify_stream(requests, timeout=600):
        row = sample[int(response.request_id)]
        assert response.WhichOneof("outcome") == "result", response.error.message
        result = response.result
        if result.status == pb.VERIFY_STATUS_QUALITY_FAILED:
            outcomes[row["label"]]["quality_failed"] += 1
        else:
            outcomes[row["label"]]["live" if result.is_live else "spoof"] += 1
    live, spoof = outcomes["live"], outcomes["spoof"]
    live_scored = live["live"] + live["spoof"]
    spoof_scored = spoof["live"] + spoof["spoof"]
    report = f"live {dict(live)}, spoof {dict(spoof)}"
    assert live_scored and spoof_scored, report
    assert live["live"] / live_scored >= MIN_ACCURACY_PER_CLASS, report
    assert spoof["spoof"] / spoof_scored >= MIN_ACCURACY_PER_CLASS, report
    assert live["quality_failed"] / sum(live.values()) <= MAX_LIVE_QUALITY_REJECTS, report
