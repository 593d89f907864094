"""DCT-domain downscaling of large JPEGs, measured per size: what it saves and what it changes.

    python bench/decode_bench.py                      # EKYC_DATA_DIR; prints one JSON object
    python bench/decode_bench.py --min-short-side 720 --images 150

libjpeg decodes a JPEG at 1/2, 1/4 or 1/8 of its size directly (Pillow's draft(); quality/
decode.py's ``decode(..., min_short_side)``), at a fraction of the cost. The gate would then
run on the smaller image with every pixel threshold scaled (face size, interocular distance,
image size, the face search's smallest face and tile sizes) and its answer mapped back; a
main face smaller than ``--min-face`` pixels in the reduced image sends the image back to a
full decode. This script does exactly that (the "reduced path") and compares it with the
gate on the full decode, per image size:

- CPU ms per image (thread time) of decode + gate, full path and reduced path, interleaved;
- the share of images whose quality reasons are unchanged (issue 15's bar: 99.5 %);
- how many images took the reduced path (the rest fell back to a full decode).

Images: the quality benchmark's (bench/quality_accuracy.py: its clean photos and NUAA live
frames and their degradations), cropped to the size's aspect, resized to it and re-encoded as
JPEG (quality 90), as bench/bench.py makes its 1280x720 images. Needs EKYC_DATA_DIR.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "scripts"))

SIZES = {"1280x720": (1280, 720), "1920x1080": (1920, 1080), "2560x1440": (2560, 1440), "4032x3024": (4032, 3024)}


def scaled_gate(gate, scale: int):
    """The gate with every pixel threshold divided by ``scale``, sharing its models."""
    options = gate.options
    limits = options.thresholds
    thresholds = replace(
        limits,
        min_image_short_side_px=limits.min_image_short_side_px / scale,
        min_image_long_side_px=limits.min_image_long_side_px / scale,
        min_face_size_px=limits.min_face_size_px / scale,
        min_interocular_distance_px=limits.min_interocular_distance_px / scale,
    )
    search = replace(options.search, min_face_px=max(8, options.search.min_face_px / scale),
                     second_face_tiles_min_side=options.search.second_face_tiles_min_side / scale)
    scaled = copy.copy(gate)
    scaled.options = replace(options, thresholds=thresholds, search=search)
    scaled.faces = copy.copy(gate.faces)
    scaled.faces.options = scaled.options
    return scaled


def reduced_path(gate, scaled: dict, data: bytes, min_short_side: int, min_face: int):
    """(reasons, scale used): the gate on a DCT-reduced decode, or on the full decode when the
    image is not reduced or its main face is under ``min_face`` pixels once reduced."""
    from ekyc.quality.decode import decode

    decoded = decode(data, gate.options.max_image_pixels, min_short_side)
    if decoded.scale > 1:
        if decoded.scale not in scaled:
            scaled[decoded.scale] = scaled_gate(gate, decoded.scale)
        result = scaled[decoded.scale].assess(decoded.rgb)
        if result.face is not None and min(result.face.width, result.face.height) >= min_face:
            return result.reasons, decoded.scale
    return gate.assess(gate.decode(data)).reasons, 1


def jpeg(rgb: np.ndarray, size: tuple[int, int]) -> bytes:
    from bench import _crop_to_aspect

    image = _crop_to_aspect(Image.fromarray(rgb), size[0] / size[1]).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-short-side", type=int, default=360,
                        help="reduce while the shorter side stays at least this (default 360)")
    parser.add_argument("--min-face", type=int, default=128, help="smallest main face kept reduced (default 128 px)")
    parser.add_argument("--images", type=int, default=150, help="benchmark images per size (default 150)")
    parser.add_argument("--frames", type=int, default=12, help="NUAA frames in the benchmark set (default 12)")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=list(SIZES))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    data_dir = os.environ.get("EKYC_DATA_DIR")
    if not data_dir:
        print("decode_bench: needs EKYC_DATA_DIR (the quality benchmark's images)", file=sys.stderr)
        return 2
    from ekyc.quality.gate import QualityGate
    from ekyc.quality.options import load_gate_options
    from quantize_models import benchmark_images

    gate = QualityGate(load_gate_options(None, environ={}))
    images = list(benchmark_images(gate, Path(data_dir), nuaa_frames=args.frames, seed=1))
    random.Random(0).shuffle(images)
    images = images[: args.images]
    result: dict = {"min_short_side": args.min_short_side, "min_face": args.min_face, "images": len(images),
                    "load_average": [round(v, 2) for v in os.getloadavg()], "sizes": {}}
    scaled: dict = {}
    for name in args.sizes:
        full_ms, reduced_ms = [], []
        unchanged = reduced = 0
        changes: dict[str, int] = {}
        for _, rgb in images:
            data = jpeg(rgb, SIZES[name])
            t0 = time.thread_time()
            full = gate.assess(gate.decode(data)).reasons
            t1 = time.thread_time()
            reasons, scale = reduced_path(gate, scaled, data, args.min_short_side, args.min_face)
            t2 = time.thread_time()
            full_ms.append((t1 - t0) * 1000.0)
            reduced_ms.append((t2 - t1) * 1000.0)
            reduced += scale > 1
            unchanged += reasons == full
            for reason in set(full) ^ set(reasons):
                key = f"{reason.value} {'gained' if reason in reasons else 'lost'}"
                changes[key] = changes.get(key, 0) + 1
        result["sizes"][name] = {
            "full_cpu_ms_per_image": round(statistics.fmean(full_ms), 2),
            "reduced_path_cpu_ms_per_image": round(statistics.fmean(reduced_ms), 2),
            "took_the_reduced_path": round(reduced / len(images), 3),
            "reasons_unchanged": round(unchanged / len(images), 4),
            "changed_reasons": dict(sorted(changes.items())),
        }
        print(f"decode_bench: {name}: {json.dumps(result['sizes'][name])}", file=sys.stderr, flush=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
