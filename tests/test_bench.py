"""Smoke run of the benchmark script: it runs end to end and reports every figure (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report == json.loads(result.stdout)
    assert report["cores"] >= 1 and report["compute_threads"] >= 1
    entry = report["sizes"]["640x480"]
    for key in (
        "pipeline_images_per_s", "unary_images_per_s", "unary_p50_ms", "unary_p99_ms", "stream_images_per_s",
        "cold_start_s", "server_rss_mb", "grpc_overhead_p50_ms", "grpc_empty_rpc_after_idle_p50_ms",
        "pipeline_sequential_p50_ms", "unary_sequential_p50_ms", "unary_handler_sequential_p50_ms",
    ):
        assert isinstance(entry[key], (int, float)) and entry[key] == entry[key], key  # a number, not NaN
    assert set(entry["stages_ms"]) == {"decode", "detect", "landmarks", "quality", "crop", "model"}
    reference = entry["reference"]
    for key in ("embed_ms", "embed_two_in_one_call_ms", "reference_checks_ms", "pipeline_verify_p50_ms",
                "pipeline_verify_with_reference_p50_ms", "reference_cost_p50_ms", "unary_verify_with_reference_p50_ms",
                "unary_reference_cost_p50_ms"):
        assert isinstance(reference[key], (int, float)) and reference[key] == reference[key], key
    # Each selfie's reference is its own face as an ID card: the bench measures real matches.
    assert reference["pairs"] >= 5 and reference["matched_share"] >= 0.5
    assert entry["unary_errors"] == 0 and entry["stream_ok_items"] == entry["stream_items"] * entry["stream_runs"]
