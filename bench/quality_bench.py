"""Milliseconds per image of the full quality gate on one CPU core, with a per-stage breakdown.

    python bench/quality_bench.py                 # 640x480 selfies, one core, prints JSON
    python bench/quality_bench.py --quick         # a few images (the smoke test)
    python bench/quality_bench.py --cores 0,1     # other CPUs (default: 0 only)
    python bench/quality_bench.py --accuracy      # also the accuracy benchmark (needs the data)
    python bench/quality_bench.py --config FILE   # other settings, e.g. [landmarks] enabled = false

Images: NUAA live webcam frames from $EKYC_DATA_DIR (640x480 JPEG as captured) or, without the
data, matplotlib's packaged portrait resized to 640x480. The process pins itself to the given
CPUs before ONNX Runtime, OpenCV or NumPy start threads (like `taskset -c 0`), and OpenCV is told
to use one thread, so "one core" means one core. Stages, each a median over the images:

    decode     JPEG bytes -> upright RGB (Pillow)
    detect     BlazeFace on the frame, plus tiles when a face could hide (FaceFinder.find)
    landmarks  the face mesh (MediaPipe's models on ONNX Runtime) on the crop around the face (also confirms it)
    quality    every measurement and threshold (assess_quality)
    total      the sum, per image (median of the per-image sums)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path



def pin(cores: list[int]) -> list[int]:
    """Restrict this process (and the threads it will start) to ``cores``; returns what it got."""
    if hasattr(os, "sched_setaffinity"):
        available = os.sched_getaffinity(0)
        wanted = {c for c in cores if c in available} or {min(available)}
        os.sched_setaffinity(0, wanted)
        return sorted(wanted)
    return []


def load_images(count: int) -> tuple[list[bytes], str]:
    """``count`` 640x480 JPEGs of real faces, and where they came from."""
    from PIL import Image

    data_dir = os.environ.get("EKYC_DATA_DIR")
    if data_dir and (Path(data_dir) / "manifest.csv").is_file():
        from ekyc.training.data import nuaa_live_frames

        frames = nuaa_live_frames(data_dir)
        step = max(1, len(frames) // count)
        images = [(Path(data_dir) / s.path).read_bytes() for s in frames[::step][:count]]
        return images, "NUAA live frames (640x480 JPEG)"
    import matplotlib.cbook

    path = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    image = Image.open(path).convert("RGB")
    width, height = image.size  # a portrait: crop a 4:3 band around the face, then resize
    band = int(width * 3 / 4)
    top = max(0, min(height - band, int(height * 0.12)))
    image = image.crop((0, top, width, top + band)).resize((640, 480), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return [buffer.getvalue()] * count, "matplotlib grace_hopper.jpg resized to 640x480"


def run(images: list[bytes], warmup: int, repeats: int, config_path: Path | None = None) -> dict:
    from ekyc.quality.gate import QualityGate
    from ekyc.quality.options import load_gate_options

    options = load_gate_options(config_path, environ={})
    per_stage: dict[str, list[float]] = {}
    totals: list[float] = []
    reasons: dict[str, int] = {}
    with QualityGate(options) as gate:
        gate.warm_up()
        for data in images[:warmup]:
            gate.assess(gate.decode(data))
        for _ in range(repeats):
            for data in images:
                started = time.perf_counter()
                rgb = gate.decode(data)
                stages = {"decode": (time.perf_counter() - started) * 1000.0}
                result = gate.assess(rgb, timings=stages, stage_detail=True)
                totals.append((time.perf_counter() - started) * 1000.0)
                for name, value in stages.items():
                    per_stage.setdefault(name, []).append(value)
                for reason in result.reasons:
                    reasons[reason.value] = reasons.get(reason.value, 0) + 1
    return {
        "ms_per_image_p50": round(statistics.median(totals), 2),
        "ms_per_image_mean": round(statistics.fmean(totals), 2),
        "ms_per_image_p90": round(sorted(totals)[int(0.9 * (len(totals) - 1))], 2),
        "gate_ms_per_image_p50_without_decode": round(
            statistics.median([t - d for t, d in zip(totals, per_stage["decode"])]), 2
        ),
        "stages_ms_p50": {name: round(statistics.median(values), 3) for name, values in per_stage.items()},
        "images_timed": len(totals),
        "reasons_seen": reasons,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few images, for the smoke test")
    parser.add_argument("--images", type=int, default=100, help="distinct images (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images (default 3)")
    parser.add_argument("--cores", default="0", help="CPUs to pin to, comma-separated (default 0)")
    parser.add_argument("--config", type=Path, help="thresholds/settings file (TOML), as for ekyc-server --config")
    parser.add_argument("--accuracy", action="store_true", help="also run the accuracy benchmark (needs the data)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    cores = pin([int(c) for c in args.cores.split(",") if c.strip()])
    import cv2

    cv2.setNumThreads(1)
    count, repeats = (4, 1) if args.quick else (args.images, args.repeats)
    images, source = load_images(count)
    report = {
        "cores": cores,
        "image_size": "640x480",
        "images": source,
        "config": str(args.config) if args.config else "shipped defaults",
        **run(images, warmup=min(len(images), 5), repeats=repeats, config_path=args.config),
    }
    if args.accuracy:
        import quality_accuracy  # bench/quality_accuracy.py, beside this file

        buffer = io.StringIO()
        stdout, sys.stdout = sys.stdout, buffer
        try:
            code = quality_accuracy.main(["--json"])
        finally:
            sys.stdout = stdout
        report["accuracy"] = json.loads(buffer.getvalue()) if code == 0 else None
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
