"""Smoke run of bench/quality_bench.py: it runs end to end and reports every figure (no timing asserts)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quality_bench_quick_reports_ms_per_image_and_stages(tmp_path):
    out = tmp_path / "quality-bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality_bench.py"), "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report == json.loads(done.stdout)
    assert report["image_size"] == "640x480" and len(report["cores"]) == 1
    for key in ("ms_per_image_p50", "ms_per_image_mean", "ms_per_image_p90", "gate_ms_per_image_p50_without_decode"):
        assert isinstance(report[key], float) and math.isfinite(report[key]) and report[key] > 0, key
    stages = report["stages_ms_p50"]
    assert set(stages) == {"decode", "detect", "landmarks", "quality"}
    assert all(value > 0 for value in stages.values())
    assert report["images_timed"] == 4
    # Each image counts a reason at most once, and only the gate's reasons.
    from ekyc.quality.rules import QualityReason

    reasons = report["reasons_seen"]
    assert set(reasons) <= {reason.value for reason in QualityReason}, reasons
    assert all(isinstance(v, int) and 0 < v <= report["images_timed"] for v in reasons.values()), reasons
