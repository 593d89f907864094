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
    # The CPU split adds up: stages to the total, and each model's calls fit inside their stage.
    cpu = entry["stages_cpu_ms"]
    stages = ("decode", "detect", "landmarks", "quality", "crop", "model")
    assert all(cpu[name] > 0 for name in (*stages, "total", "detector_model", "landmark_model", "blendshape_model",
                                           "liveness_model"))
    assert abs(sum(cpu[name] for name in stages) - cpu["total"]) < 0.01 * cpu["total"] + 0.01
    assert cpu["landmark_model"] + cpu["blendshape_model"] <= cpu["landmarks"] + 0.01
    assert cpu["detector_model"] <= cpu["detect"] + 0.01 and cpu["liveness_model"] <= cpu["model"] + 0.01
    # One run here; every key figure has its per-run values, and the restated overhead target
    # (in-process + empty call after idle + 0.5 ms) is computed from the same run.
    assert entry["runs"] == report["runs"] == 1
    assert all(len(values) == 1 for values in entry["spread"].values()) and "pipeline_cpu_ms_per_image" in entry["spread"]
    target = entry["overhead_target"]
    assert target["limit_ms"] == [round(entry["grpc_empty_rpc_after_idle_p50_ms"] + 0.5, 3)]
    assert target["paired_overhead_p50_ms"] == [entry["grpc_overhead_p50_ms"]]
    assert target["met_in_runs"] == int(entry["grpc_overhead_p50_ms"] <= target["limit_ms"][0])
    limit = entry["pipeline_sequential_p50_ms"] + entry["grpc_empty_rpc_after_idle_p50_ms"] + 0.5
    assert target["pipeline_sequential_p50_ms_plus_limit"] == [round(limit, 3)]
    assert entry["targets"]["pipeline_images_per_s"] == 150.0 and isinstance(entry["targets"]["overhead_met"], bool)
    reference = entry["reference"]
    for key in ("embed_ms", "embed_two_in_one_call_ms", "reference_checks_ms", "pipeline_verify_p50_ms",
                "pipeline_verify_with_reference_p50_ms", "reference_cost_p50_ms", "unary_verify_with_reference_p50_ms",
                "unary_reference_cost_p50_ms"):
        assert isinstance(reference[key], (int, float)) and reference[key] == reference[key], key
    # Each selfie's reference is its own face as an ID card: the bench measures real matches.
    assert reference["pairs"] >= 5 and reference["matched_share"] >= 0.5
    assert entry["unary_errors"] == 0 and entry["stream_ok_items"] == entry["stream_items"] * entry["stream_runs"]


def test_decode_figures_name_the_reduction_per_size():
    sys.path.insert(0, str(ROOT / "bench"))
    import bench

    report = bench.bench_decode({"640x480": (640, 480), "1280x720": (1280, 720)}, count=2, min_short_side=360, rounds=1)
    sizes = report["sizes"]
    assert report["min_short_side"] == 360
    assert sizes["640x480"]["scale"] == 1 and sizes["1280x720"]["scale"] == 2
    assert all(s["full_cpu_ms"] > 0 and s["reduced_cpu_ms"] > 0 and s["jpeg_kb"] > 0 for s in sizes.values())
