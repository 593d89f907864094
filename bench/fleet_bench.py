"""One batch over a fleet: two ekyc-server processes (one compute thread each) behind Envoy,
against one two-thread process, with the same client (`ekyc-client verify DIR --stream
--connections N`).

    python bench/fleet_bench.py                   # prints one JSON object
    python bench/fleet_bench.py --images 600 --connections 4 --runs 3

Images: 640x480 JPEGs as bench/bench.py makes them (NUAA frames from $EKYC_DATA_DIR, or the
packaged portrait), written to a temporary folder. Each run times the whole client command
(start to summary), alternating the two set-ups; from the servers' own log lines it counts
how many images each backend answered. Envoy, the servers and the client share this
machine's cores, as they would not in a fleet: the figure to read is the fleet's total
against the single process on the same cores, and each backend's share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from bench import load_images  # noqa: E402
from conftest import ServerProcess  # noqa: E402  (tests/conftest.py: ekyc-server as a child process)
from fleet import EnvoyProcess, stream_items  # noqa: E402  (tests/fleet.py: Envoy with docker/envoy/envoy.yaml)

CLIENT = str(Path(sys.executable).parent / "ekyc-client")


def run_client(target: str, folder: Path, connections: int, output: Path) -> float:
    """Seconds for `ekyc-client verify FOLDER --stream --connections N` to finish."""
    started = time.perf_counter()
    result = subprocess.run([CLIENT, "--server", target, "verify", str(folder), "--stream", "--connections",
                             str(connections), "--output", str(output), "--progress", "off"],
                            capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 2, 3, 4):
        raise RuntimeError(f"ekyc-client failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed


def answered(output: Path) -> int:
    return sum(1 for line in output.read_text().splitlines() if line.strip() and '"error"' not in line[:40])


def single(folder: Path, count: int, connections: int, tmp: Path) -> dict:
    with ServerProcess("--threads", "2") as server:
        server.wait_serving()
        out = tmp / "single.jsonl"
        elapsed = run_client(server.target, folder, connections, out)
        server.process.terminate()
        log = server.rest_of_log()
    return {"images_per_s": round(count / elapsed, 1), "seconds": round(elapsed, 2), "lines": answered(out),
            "answered_by_server": stream_items(log)}


def fleet(folder: Path, count: int, connections: int, tmp: Path) -> dict:
    with ServerProcess("--threads", "1") as first, ServerProcess("--threads", "1") as second:
        first.wait_serving()
        second.wait_serving()
        with EnvoyProcess([first.target, second.target]).wait_ready(backends=2) as envoy:
            out = tmp / "fleet.jsonl"
            elapsed = run_client(envoy.target, folder, connections, out)
        for server in (first, second):
            server.process.terminate()
        logs = [first.rest_of_log(), second.rest_of_log()]
    split = [stream_items(log) for log in logs]
    return {"images_per_s": round(count / elapsed, 1), "seconds": round(elapsed, 2), "lines": answered(out),
            "answered_by_backend": split, "backend_shares": [round(n / max(sum(split), 1), 3) for n in split]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    images = load_images(args.images, (640, 480))
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ekyc-fleet-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        folder.mkdir()
        for index, data in enumerate(images):
            (folder / f"{index:05d}.jpg").write_bytes(data)
        for run in range(args.runs):  # alternating set-ups
            runs.append({"single_process_two_threads": single(folder, len(images), args.connections, tmp),
                         "two_processes_behind_envoy": fleet(folder, len(images), args.connections, tmp)})
            print(f"fleet_bench: run {run + 1}: {json.dumps(runs[-1])}", file=sys.stderr, flush=True)
    ratios = [r["two_processes_behind_envoy"]["images_per_s"] / r["single_process_two_threads"]["images_per_s"]
              for r in runs]
    result = {
        "cores": os.cpu_count(),
        "images": len(images),
        "connections": args.connections,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "runs": runs,
        "single_images_per_s": statistics.median(r["single_process_two_threads"]["images_per_s"] for r in runs),
        "fleet_images_per_s": statistics.median(r["two_processes_behind_envoy"]["images_per_s"] for r in runs),
        "fleet_vs_single": [round(v, 3) for v in ratios],
        "backend_shares": [r["two_processes_behind_envoy"]["backend_shares"] for r in runs],
        "every_image_answered_once": all(r[k]["lines"] == len(images) for r in runs for k in r),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
