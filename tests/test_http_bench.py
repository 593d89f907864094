"""Smoke run of the HTTP-vs-gRPC benchmark: it runs end to end and reports every figure (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_http_bench_quick_reports_every_figure(tmp_path):
    out = tmp_path / "http_bench.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "http_bench.py"), "--quick", "--output", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report == json.loads(result.stdout)
    entry = report["sizes"]["640x480"]
    for path in ("grpc", "http_raw", "http_json"):
        assert entry[f"{path}_errors"] == 0, path
        for key in ("sequential_p50_ms", "images_per_s", "images_per_s_client_accounted", "p50_ms", "p99_ms",
                    "client_cpu_ms_per_image", "server_cpu_ms_per_image"):
            value = entry[f"{path}_{key}"]
            assert isinstance(value, (int, float)) and value == value and value > 0, (path, key)
    for path in ("http_raw", "http_json"):
        assert isinstance(entry[f"{path}_added_p50_ms"], (int, float))
        assert entry[f"{path}_vs_grpc_throughput"] > 0
