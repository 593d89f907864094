"""Throughput and latency of ekyc: the in-process pipeline (the limit) against the served paths;
and what a reference image (face matching) adds to Verify.

    python bench/bench.py                 # full run (make bench): 3 runs, prints one JSON object
    python bench/bench.py --quick         # a few images, for the smoke test

Images: NUAA webcam frames from $EKYC_DATA_DIR (640x480 JPEG as captured; 1280x720 made by
cropping them to 16:9 and upscaling, re-encoded at JPEG quality 90), or, without the data,
matplotlib's packaged portrait resized to those sizes.

The load client runs in this process, the server in its own. On a 2-core machine the client
cannot be pinned away from the server's cores, so its CPU time is measured and reported
(`client_cpu_ms_per_image`) next to the server's, instead of being hidden.

Each of ``--runs`` runs starts its own server and alternates pipeline / unary / stream blocks;
every figure is reported as the median over the runs, with the runs' values under ``spread``
(a shared VM moves throughput by 5-10 % between runs). ``pipeline_cpu_ms_per_image`` (CPU
time per image, whatever the machine's load) is the figure to compare between machines;
``stages_cpu_ms`` splits it by stage, one image at a time on one thread.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}


def load_images(count: int, size: tuple[int, int]) -> list[bytes]:
    """``count`` JPEGs of ``size`` made from real face images."""
    width, height = size
    data_dir = os.environ.get("EKYC_DATA_DIR")
    sources: list[Path] = []
    if data_dir:
        from ekyc.training.data import nuaa_live_frames

        frames = nuaa_live_frames(data_dir)
        step = max(1, len(frames) // count)
        sources = [Path(data_dir) / s.path for s in frames[::step][:count]]
    if not sources:
        import matplotlib.cbook

        sources = [Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    images = []
    for index in range(count):
        path = sources[index % len(sources)]
        if path.suffix.lower() in (".jpg", ".jpeg") and Image.open(path).size == size:
            images.append(path.read_bytes())
            continue
        image = Image.open(path).convert("RGB")
        image = _crop_to_aspect(image, width / height).resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def _crop_to_aspect(image: Image.Image, aspect: float) -> Image.Image:
    width, height = image.size
    if width / height > aspect:
        new_width = int(height * aspect)
        left = (width - new_width) // 2
        return image.crop((left, 0, left + new_width, height))
    new_height = int(width / aspect)
    top = (height - new_height) // 2
    return image.crop((0, top, width, top + new_height))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class CpuProbes:
    """Thread CPU time (ms) spent in named calls, by wrapping them on the given objects for the
    duration of a ``with`` block; a probe whose object or attribute is missing is skipped."""

    def __init__(self, targets: dict[str, tuple[object, str]]):
        self.targets = {name: t for name, t in targets.items() if t[0] is not None and hasattr(t[0], t[1])}
        self.totals: dict[str, float] = {}
        self._saved: list[tuple[object, str, object, bool]] = []

    def __enter__(self) -> "CpuProbes":
        for label, (owner, attribute) in self.targets.items():
            original = getattr(owner, attribute)
            own = attribute in getattr(owner, "__dict__", {})
            self._saved.append((owner, attribute, original, own))

            def probe(*args, _original=original, _label=label, **kwargs):
                started = time.thread_time()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.totals[_label] = self.totals.get(_label, 0.0) + (time.thread_time() - started) * 1000.0

            setattr(owner, attribute, probe)
        return self

    def __exit__(self, *exc) -> None:
        for owner, attribute, original, own in reversed(self._saved):
            if own:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)


def _session_probes(pipeline) -> dict[str, tuple[object, str]]:
    """Where each model runs and where the landmarker and the measurements are called."""
    import ekyc.quality.gate as gate_module

    finder = getattr(pipeline.gate, "faces", None)
    detector = getattr(finder, "_detector", None)
    mesh = getattr(finder, "_landmarkers", None)
    return {
        "landmarks": (mesh, "measure"),
        "quality": (gate_module, "assess_quality"),
        "detector_model": (getattr(detector, "_session", None), "run"),
        "landmark_model": (getattr(mesh, "_landmarks", None), "run"),
        "blendshape_model": (getattr(mesh, "_blendshapes", None), "run"),
    }


def stage_breakdown(pipeline, images: list[bytes]) -> tuple[dict, dict]:
    """Milliseconds per image of each stage, one image at a time on one thread: (wall, CPU).

    Wall: medians of the gate's own stage timings. CPU (thread time, means over the images,
    which add up): decode, detect (the face search: detector, tiles, NMS), landmarks (the face
    mesh: crop, landmark and blendshape models, pose), quality (the measurements), crop, model,
    total; and inside them the ONNX Runtime calls of each model (``*_model``)."""
    from ekyc.quality.face_search import crop_main_face_inputs

    times: dict[str, list[float]] = {}
    cpu: dict[str, float] = {}
    counted = 0
    probes = CpuProbes({**_session_probes(pipeline), "liveness_model": (getattr(pipeline.model, "_session", None), "run")})
    with probes:
        for image in images:
            before = dict(probes.totals)
            c0 = time.thread_time()
            t0 = time.perf_counter()
            rgb = pipeline.gate.decode(image)
            stages = {"decode": (time.perf_counter() - t0) * 1000.0}
            c1 = time.thread_time()
            result = pipeline.gate.assess(rgb, timings=stages, stage_detail=True)
            c2 = time.thread_time()
            if result.face is None:
                continue
            t1 = time.perf_counter()
            crops = crop_main_face_inputs(rgb, result.faces, pipeline.model.inputs)
            t2 = time.perf_counter()
            c3 = time.thread_time()
            pipeline.model.score_inputs(crops)
            c4 = time.thread_time()
            stages.update(crop=(t2 - t1) * 1000.0, model=(time.perf_counter() - t2) * 1000.0)
            for name, value in stages.items():
                times.setdefault(name, []).append(value)
            spent = {k: v - before.get(k, 0.0) for k, v in probes.totals.items()}
            assess_ms = (c2 - c1) * 1000.0
            row = {
                "decode": (c1 - c0) * 1000.0,
                "detect": assess_ms - spent.get("landmarks", 0.0) - spent.get("quality", 0.0),
                "landmarks": spent.get("landmarks", 0.0),
                "quality": spent.get("quality", 0.0),
                "crop": (c3 - c2) * 1000.0,
                "model": (c4 - c3) * 1000.0,
                "total": (c4 - c0) * 1000.0,
                **{k: v for k, v in spent.items() if k.endswith("_model")},
            }
            for name, value in row.items():
                cpu[name] = cpu.get(name, 0.0) + value
            counted += 1
    wall = {name: round(statistics.median(values), 3) for name, values in times.items()}
    return wall, {name: round(value / max(counted, 1), 3) for name, value in cpu.items()}


def id_cards(pipeline, images: list[bytes]) -> list[bytes]:
    """Each image's face rendered as an ID-card portrait (training/face_match_eval.py): the
    references of Verify-with-reference, the same person as the selfie."""
    import numpy as np

    from ekyc.training.face_match_eval import render_id_portrait

    rng = np.random.default_rng(0)
    cards = []
    for image in images:
        rgb = pipeline.gate.decode(image)
        _, landmarks = pipeline.gate.find_faces(rgb)
        if landmarks is not None:
            cards.append(render_id_portrait(rgb, landmarks.points, rng))
    return cards


def bench_reference(target: str, pipeline, pool, images: list[bytes], rounds: int) -> dict:
    """What a reference image costs Verify: sequential calls without and with the image's own
    ID-card portrait as the reference, in process and served, alternating so that both see
    the same machine state; the cost is the median of the paired differences. The embedding
    itself (one aligned face, one thread) and the reference's checks are timed apart."""
    import numpy as np

    from ekyc.client import LivenessClient
    from ekyc.quality.alignment import align_face, five_points

    cards = id_cards(pipeline, images[: min(len(images), 60)])
    pairs = [(image, card) for image, card in zip(images, cards)]
    local, local_ref, served, served_ref, assess, embed, embed_pair = [], [], [], [], [], [], []
    matched = 0
    with LivenessClient(target, timeout=60) as client:
        for image, card in pairs[:3]:
            client.verify(image, reference_image=card)
        for _ in range(rounds):
            for image, card in pairs:
                t0 = time.perf_counter()
                pool.run(pipeline.verify, image, True, wait=None)
                t1 = time.perf_counter()
                verdict = pool.run(pipeline.verify, image, True, "", card, wait=None)
                t2 = time.perf_counter()
                client.verify(image)
                t3 = time.perf_counter()
                client.verify(image, reference_image=card)
                t4 = time.perf_counter()
                local.append((t1 - t0) * 1000.0)
                local_ref.append((t2 - t1) * 1000.0)
                served.append((t3 - t2) * 1000.0)
                served_ref.append((t4 - t3) * 1000.0)
                matched += bool(verdict.match is not None and verdict.match.is_match)
    for _, card in pairs:
        rgb = pipeline.gate.decode(card)
        t0 = time.perf_counter()
        result = pipeline.gate.assess_reference(rgb)
        assess.append((time.perf_counter() - t0) * 1000.0)
        if result.landmarks is None:
            continue
        crop = align_face(rgb, five_points(result.landmarks.points))
        for _ in range(5):
            t0 = time.perf_counter()
            pipeline.matcher.embed(crop)
            embed.append((time.perf_counter() - t0) * 1000.0)
        both = np.stack([crop, crop])
        t0 = time.perf_counter()
        pipeline.matcher.embed(both)
        embed_pair.append((time.perf_counter() - t0) * 1000.0)
    return {
        "pairs": len(pairs),
        "matched_share": round(matched / max(1, len(pairs) * rounds), 3),
        "embed_ms": round(percentile(embed, 50), 2),
        "embed_two_in_one_call_ms": round(percentile(embed_pair, 50), 2),
        "reference_checks_ms": round(percentile(assess, 50), 2),
        "pipeline_verify_p50_ms": round(percentile(local, 50), 2),
        "pipeline_verify_with_reference_p50_ms": round(percentile(local_ref, 50), 2),
        "reference_cost_p50_ms": round(statistics.median(b - a for a, b in zip(local, local_ref)), 2),
        "unary_verify_p50_ms": round(percentile(served, 50), 2),
        "unary_verify_with_reference_p50_ms": round(percentile(served_ref, 50), 2),
        "unary_reference_cost_p50_ms": round(statistics.median(b - a for a, b in zip(served, served_ref)), 2),
    }


def bench_pipeline(pipeline, pool, images: list[bytes], concurrency: int) -> dict:
    """One block of the limit: the server's own pipeline and compute pool, no gRPC, with
    ``concurrency`` callers (as many as the unary block has)."""
    latencies: list[float] = []

    def one(image: bytes) -> None:
        started = time.perf_counter()
        pool.run(pipeline.verify, image, True, wait=None)
        latencies.append((time.perf_counter() - started) * 1000.0)

    cpu = _client_cpu()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as callers:
        list(callers.map(one, images))
    return {"images": len(images), "elapsed": time.perf_counter() - started, "latencies": latencies,
            "cpu": _client_cpu() - cpu}


def bench_overhead(target: str, pipeline, pool, images: list[bytes], server: ServerProcess, rounds: int = 3) -> dict:
    """What gRPC adds to one image: sequential calls, each image in-process and then served,
    alternately, so that both see the same machine state; the overhead is the median of the
    paired differences. The floor: an empty call (health) right after the server was idle for
    as long as a selfie takes (16 ms), which is what every sequential call meets. The
    handler's own time (the server's log line) shows what the servicer adds."""
    from ekyc.client import LivenessClient

    served, local, floor_hot, floor_idle = [], [], [], []
    with LivenessClient(target, timeout=60) as client:
        for image in images[:5]:
            client.verify(image)
        time.sleep(0.2)
        server.verify_latencies_ms.clear()
        for _ in range(rounds):
            for image in images[: min(len(images), 100)]:
                t0 = time.perf_counter()
                pool.run(pipeline.verify, image, True, wait=None)
                local.append((time.perf_counter() - t0) * 1000.0)
                t0 = time.perf_counter()
                client.verify(image)
                served.append((time.perf_counter() - t0) * 1000.0)
        time.sleep(0.2)  # the drain thread reads the last log lines
        handler = list(server.verify_latencies_ms)
        for _ in range(200):
            t0 = time.perf_counter()
            client.health()
            floor_hot.append((time.perf_counter() - t0) * 1000.0)
        for _ in range(100):
            time.sleep(0.016)
            t0 = time.perf_counter()
            client.health()
            floor_idle.append((time.perf_counter() - t0) * 1000.0)
    return {
        "pipeline_sequential_p50_ms": round(percentile(local, 50), 2),
        "unary_sequential_p50_ms": round(percentile(served, 50), 2),
        "unary_handler_sequential_p50_ms": round(percentile(handler, 50), 2) if handler else float("nan"),
        "grpc_overhead_p50_ms": round(statistics.median(s - l for s, l in zip(served, local)), 2),
        "grpc_empty_rpc_p50_ms": round(percentile(floor_hot, 50), 3),
        "grpc_empty_rpc_after_idle_p50_ms": round(percentile(floor_idle, 50), 3),
    }


class ServerProcess:
    def __init__(self, args: list[str]):
        self.started = time.perf_counter()
        command = [str(Path(sys.executable).parent / "ekyc-server"), "--host", "127.0.0.1", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = 0
        self.cold_start_s = float("nan")
        # Verify's handler time from the server's own log lines (latency_ms).
        self.verify_latencies_ms: list[float] = []

    def wait_serving(self, timeout: float = 120.0) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("ekyc-server exited during start-up")
            entry = json.loads(line)
            if entry["event"] == "listening":
                self.port = entry["port"]
            if entry["event"] == "serving":
                break
        from ekyc.client import LivenessClient

        with LivenessClient(f"127.0.0.1:{self.port}", timeout=5) as client:
            assert client.health() == "SERVING"
        self.cold_start_s = time.perf_counter() - self.started
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            if '"method":"Verify"' in line:
                self.verify_latencies_ms.append(json.loads(line)["latency_ms"])

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_unary(client, images: list[bytes], concurrency: int, server: ServerProcess) -> dict:
    """One block of unary Verify calls from ``concurrency`` threads on one channel."""
    latencies: list[float] = []
    errors = 0

    def one(image: bytes) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            client.verify(image)
        except Exception:  # noqa: BLE001 - counted
            errors += 1
            return
        latencies.append((time.perf_counter() - started) * 1000.0)

    cpu_client, cpu_server = _client_cpu(), server.cpu_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as callers:
        list(callers.map(one, images))
    return {"images": len(images), "elapsed": time.perf_counter() - started, "latencies": latencies,
            "errors": errors, "cpu_client": _client_cpu() - cpu_client, "cpu_server": server.cpu_seconds() - cpu_server}


def bench_stream(client, images: list[bytes], items: int, server: ServerProcess) -> dict:
    """One VerifyStream of ``items`` requests."""
    from ekyc.v1 import liveness_pb2 as pb

    requests = [pb.VerifyRequest(image=images[i % len(images)], request_id=str(i)) for i in range(items)]
    cpu_client, cpu_server = _client_cpu(), server.cpu_seconds()
    started = time.perf_counter()
    ok = sum(1 for response in client.verify_stream(iter(requests), timeout=600) if response.HasField("result"))
    return {"images": items, "ok": ok, "elapsed": time.perf_counter() - started,
            "cpu_client": _client_cpu() - cpu_client, "cpu_server": server.cpu_seconds() - cpu_server}


def _sum(blocks: list[dict], key: str):
    values = [block[key] for block in blocks]
    return sum(values, []) if isinstance(values[0], list) else sum(values)


def summarise(pipeline: list[dict], unary: list[dict], stream: list[dict]) -> dict:
    """Totals over the blocks: images / total time, percentiles over every call."""
    cores = os.cpu_count() or 1
    images = {name: _sum(blocks, "images") for name, blocks in (("p", pipeline), ("u", unary), ("s", stream))}
    elapsed = {name: _sum(blocks, "elapsed") for name, blocks in (("p", pipeline), ("u", unary), ("s", stream))}
    unary_latencies = _sum(unary, "latencies")
    return {
        "pipeline_images_per_s": round(images["p"] / elapsed["p"], 1),
        "pipeline_p50_ms": round(percentile(_sum(pipeline, "latencies"), 50), 2),
        "pipeline_cpu_ms_per_image": round(_sum(pipeline, "cpu") * 1000.0 / images["p"], 2),
        "unary_images_per_s": round(images["u"] / elapsed["u"], 1),
        "unary_p50_ms": round(percentile(unary_latencies, 50), 2),
        "unary_p99_ms": round(percentile(unary_latencies, 99), 2),
        "unary_errors": _sum(unary, "errors"),
        # The load client shares the cores: give back the CPU time it took from them.
        "unary_images_per_s_client_accounted": round(
            images["u"] / (elapsed["u"] - _sum(unary, "cpu_client") / cores), 1),
        "unary_client_cpu_ms_per_image": round(_sum(unary, "cpu_client") * 1000.0 / images["u"], 2),
        "unary_server_cpu_ms_per_image": round(_sum(unary, "cpu_server") * 1000.0 / images["u"], 2),
        "stream_images_per_s": round(_sum(stream, "ok") / elapsed["s"], 1),
        "stream_items": stream[0]["images"],
        "stream_runs": len(stream),
        "stream_ok_items": _sum(stream, "ok"),
        "stream_client_cpu_ms_per_image": round(_sum(stream, "cpu_client") * 1000.0 / images["s"], 2),
        "stream_server_cpu_ms_per_image": round(_sum(stream, "cpu_server") * 1000.0 / images["s"], 2),
    }


# Issue 15's targets on 2 vCPU.
TARGETS = {"640x480": 150.0, "1280x720": 90.0}
UNARY_MIN_RATIO = 0.9
STREAM_MIN_RATIO = 0.95
OVERHEAD_MARGIN_MS = 0.5
# The figures whose run-to-run spread is reported.
SPREAD_KEYS = (
    "pipeline_images_per_s", "pipeline_cpu_ms_per_image", "unary_images_per_s", "stream_images_per_s",
    "unary_vs_pipeline", "stream_vs_pipeline", "unary_p50_ms", "grpc_overhead_p50_ms",
    "grpc_empty_rpc_after_idle_p50_ms", "unary_sequential_p50_ms", "pipeline_sequential_p50_ms",
    "unary_server_cpu_ms_per_image", "stream_server_cpu_ms_per_image",
)


def run_size(args, config, name: str, images: list[bytes], server_args: list[str]) -> dict:
    """One run at one image size: a fresh server, alternating blocks, the overhead pairs."""
    from ekyc.client import LivenessClient
    from ekyc.server.compute import ComputePool
    from ekyc.server.pipeline import LivenessPipeline

    with LivenessPipeline(config) as pipeline:
        pipeline.warm_up()
        pool = ComputePool(config.compute.threads, config.compute.queue_size)
        server = ServerProcess(server_args)
        try:
            server.wait_serving()
            target = f"127.0.0.1:{server.port}"
            stages, stages_cpu = stage_breakdown(pipeline, images[: min(len(images), 50)])
            blocks: dict[str, list[dict]] = {"pipeline": [], "unary": [], "stream": []}
            with LivenessClient(target, timeout=600) as client:
                for image in images[:10]:
                    pool.run(pipeline.verify, image, True, wait=None)
                    client.verify(image)
                # Blocks alternate, so that a change in the machine's load between them
                # (a shared VM) falls on the three paths alike instead of on one.
                for _ in range(args.rounds):
                    blocks["pipeline"].append(bench_pipeline(pipeline, pool, images, args.concurrency))
                    blocks["unary"].append(bench_unary(client, images, args.concurrency, server))
                    blocks["stream"].append(bench_stream(client, images, args.stream_items, server))
            entry = {**summarise(blocks["pipeline"], blocks["unary"], blocks["stream"]),
                     "stages_ms": stages, "stages_cpu_ms": stages_cpu}
            entry.update(bench_overhead(target, pipeline, pool, images, server, 1 if args.quick else 3))
            if pipeline.matcher is not None:
                entry["reference"] = bench_reference(target, pipeline, pool, images, 1 if args.quick else 3)
            entry["cold_start_s"] = round(server.cold_start_s, 2)
            entry["server_rss_mb"] = round(server.rss_mb(), 1)
        finally:
            server.stop()
            pool.shutdown()
    limit = entry["pipeline_images_per_s"]
    entry["unary_vs_pipeline"] = round(entry["unary_images_per_s"] / limit, 3)
    entry["unary_client_accounted_vs_pipeline"] = round(entry["unary_images_per_s_client_accounted"] / limit, 3)
    entry["stream_vs_pipeline"] = round(entry["stream_images_per_s"] / limit, 3)
    return entry


def combine(runs: list[dict], name: str) -> dict:
    """The runs of one size: every number as the median over the runs, the key figures'
    per-run values under ``spread``, and the issue's targets checked on the medians."""
    entry: dict = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            entry[key] = {k: round(statistics.median(r[key][k] for r in runs if k in r[key]), 3)
                          for k in value if all(isinstance(r[key].get(k), (int, float)) for r in runs if k in r[key])}
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            entry[key] = value
        else:
            values = [r[key] for r in runs]
            median = statistics.median(values)
            entry[key] = round(median, 3) if isinstance(median, float) else median
    entry["runs"] = len(runs)
    entry["spread"] = {key: [r[key] for r in runs] for key in SPREAD_KEYS if key in runs[0]}
    # The gRPC overhead target as restated in issue 15: a sequential served call costs at most
    # the in-process time + an empty call after the server idled + 0.5 ms, in the same run. The
    # served and in-process times are paired image by image (bench_overhead), so the check is
    # on the median of the paired differences; the p50s of the two series are given too.
    entry["overhead_target"] = {
        "paired_overhead_p50_ms": [r["grpc_overhead_p50_ms"] for r in runs],
        "limit_ms": [round(r["grpc_empty_rpc_after_idle_p50_ms"] + OVERHEAD_MARGIN_MS, 3) for r in runs],
        "met_in_runs": sum(r["grpc_overhead_p50_ms"] <= r["grpc_empty_rpc_after_idle_p50_ms"] + OVERHEAD_MARGIN_MS
                           for r in runs),
        "unary_sequential_p50_ms": [r["unary_sequential_p50_ms"] for r in runs],
        "pipeline_sequential_p50_ms_plus_limit": [
            round(r["pipeline_sequential_p50_ms"] + r["grpc_empty_rpc_after_idle_p50_ms"] + OVERHEAD_MARGIN_MS, 3)
            for r in runs],
    }
    entry["targets"] = {
        "pipeline_images_per_s": TARGETS.get(name),
        "pipeline_met": TARGETS.get(name) is not None and entry["pipeline_images_per_s"] >= TARGETS[name],
        "unary_vs_pipeline_met": entry["unary_vs_pipeline"] >= UNARY_MIN_RATIO,
        "stream_vs_pipeline_met": entry["stream_vs_pipeline"] >= STREAM_MIN_RATIO,
        "overhead_met": entry["overhead_target"]["met_in_runs"] * 2 > len(runs),
    }
    return entry


def bench_decode(sizes: dict[str, tuple[int, int]], count: int, min_short_side: int, rounds: int = 3) -> dict:
    """Per image size: thread CPU ms to decode a JPEG at full size and reduced in the DCT
    domain (quality/decode.py's ``decode`` with ``min_short_side``), calls interleaved; the
    scale chosen. A size whose shorter side is under twice ``min_short_side`` is not reduced."""
    from ekyc.quality.decode import decode

    out = {}
    for name, size in sizes.items():
        images = load_images(count, size)
        full, reduced = [], []
        scale = 1
        for _ in range(rounds):
            for image in images:
                t0 = time.thread_time()
                decode(image, 100_000_000)
                t1 = time.thread_time()
                scale = decode(image, 100_000_000, min_short_side).scale
                t2 = time.thread_time()
                full.append((t1 - t0) * 1000.0)
                reduced.append((t2 - t1) * 1000.0)
        out[name] = {"full_cpu_ms": round(statistics.median(full), 3), "reduced_cpu_ms": round(statistics.median(reduced), 3),
                     "scale": scale, "jpeg_kb": round(statistics.median(len(i) for i in images) / 1024, 1)}
    return {"min_short_side": min_short_side, "sizes": out}


DECODE_SIZES = {"640x480": (640, 480), "1280x720": (1280, 720), "1920x1080": (1920, 1080),
                "2560x1440": (2560, 1440), "4032x3024": (4032, 3024)}


def run(args) -> dict:
    from ekyc.server.config import available_cpus, load_config

    overrides = {"compute": {"threads": args.threads}} if args.threads else None
    config = load_config(None, overrides)
    result: dict = {
        "cores": os.cpu_count(),
        "available_cpus": available_cpus(),
        "compute_threads": config.compute.threads,
        "intra_op_threads": config.model.intra_op_threads,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "runs": args.runs,
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
        "data": "EKYC_DATA_DIR" if os.environ.get("EKYC_DATA_DIR") else "packaged portrait",
        "sizes": {},
    }
    # gRPC only: http_bench.py measures the HTTP path.
    server_args = ["--port", "0", "--http-port", "0"] + (["--threads", str(args.threads)] if args.threads else [])
    images = {name: load_images(args.images, SIZES[name]) for name in args.sizes}
    runs: dict[str, list[dict]] = {name: [] for name in args.sizes}
    for index in range(args.runs):
        for name in args.sizes:  # sizes alternate within each run too
            runs[name].append(run_size(args, config, name, images[name], server_args))
            print(f"bench: run {index + 1}/{args.runs} {name}: pipeline {runs[name][-1]['pipeline_images_per_s']}/s,"
                  f" unary {runs[name][-1]['unary_images_per_s']}/s, stream {runs[name][-1]['stream_images_per_s']}/s",
                  file=sys.stderr, flush=True)
    for name in args.sizes:
        result["sizes"][name] = combine(runs[name], name)
    if not args.quick:
        result["decode"] = bench_decode(DECODE_SIZES, 12, args.decode_min_short_side)
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300, help="images per size (default 300)")
    parser.add_argument("--stream-items", type=int, default=500, help="items in each VerifyStream block (default 500)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent unary callers (default 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating blocks of pipeline, unary and stream runs, each over every image (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="server compute threads (default: one per CPU)")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["640x480", "1280x720"])
    parser.add_argument("--runs", type=int, default=3, help="whole runs, each with its own server (default 3)")
    parser.add_argument("--decode-min-short-side", type=int, default=720,
                        help="the reduced decode's quality.decode_min_short_side for the decode figures (default 720)")
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.stream_items, args.concurrency, args.sizes, args.rounds, args.runs = 12, 16, 2, ["640x480"], 1, 1
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
