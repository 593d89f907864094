"""What face matching costs on one core: the embedding (converted SFace, against the original
file on ONNX Runtime and on OpenCV), the alignment, and a whole reference image (decode,
face and landmarks, alignment, embedding).

    python bench/face_match_bench.py                # prints one JSON object
    python bench/face_match_bench.py --quick        # a few repetitions, for the smoke test

Faces: NUAA webcam frames from $EKYC_DATA_DIR and ID-card portraits rendered from them
(training/face_match_eval.py), or, without the data, matplotlib's packaged portrait.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL = ROOT / "models" / "face-match" / "face_recognition_sface_2021dec_int8bq.onnx"


def sources(count: int) -> list[bytes]:
    data_dir = os.environ.get("EKYC_DATA_DIR")
    if data_dir:
        with open(Path(data_dir) / "manifest.csv", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["source"] == "nuaa" and r["label"] == "live"]
        step = max(1, len(rows) // count)
        return [(Path(data_dir) / r["path"]).read_bytes() for r in rows[::step][:count]]
    import matplotlib.cbook

    return [Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()]


def median_ms(run, repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(1000.0 * statistics.median(times), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeat = 2, 3
    cv2.setNumThreads(1)
    import onnx

    from ekyc.models.face_match import FaceMatcher
    from ekyc.quality.alignment import align_face, five_points
    from ekyc.ort_session import cpu_session
    from ekyc.training import face_match_eval as harness

    rng = np.random.default_rng(0)
    report: dict = {"threads": 1, "images": 0}
    with harness.quality_gate() as gate, FaceMatcher() as matcher, tempfile.TemporaryDirectory() as folder:
        original = onnx.load(ORIGINAL)
        keep = [v for v in original.graph.input if v.name == "data"]
        del original.graph.input[:]
        original.graph.input.extend(keep)
        stripped = Path(folder) / "original.onnx"
        onnx.save(original, stripped)
        original_ort = cpu_session(stripped)
        original_cv = cv2.FaceRecognizerSF.create(str(stripped), "")
        faces, cards = [], []
        for data in sources(args.images):
            rgb = harness.decode(data)
            _, landmarks = harness.find_face(gate, rgb)
            if landmarks is None:
                continue
            faces.append((rgb, landmarks.points))
            cards.append(harness.render_id_portrait(rgb, landmarks.points, rng))
        report["images"] = len(faces)
        crops = [align_face(rgb, five_points(points)) for rgb, points in faces]
        figures: dict[str, list[float]] = {k: [] for k in (
            "embed_ms", "embed_original_ort_ms", "embed_original_opencv_ms", "align_ms", "reference_card_ms")}
        for (rgb, points), crop, card in zip(faces, crops, cards):
            tensor = crop.transpose(2, 0, 1)[None].astype(np.float32)
            bgr = np.ascontiguousarray(crop[..., ::-1])
            figures["embed_ms"].append(median_ms(lambda: matcher.embed(crop), args.repeat))
            figures["embed_original_ort_ms"].append(median_ms(lambda: original_ort.run(None, {"data": tensor}), max(3, args.repeat // 5)))
            figures["embed_original_opencv_ms"].append(median_ms(lambda: original_cv.feature(bgr), args.repeat))
            figures["align_ms"].append(median_ms(lambda: align_face(rgb, five_points(points)), args.repeat))

            def reference():
                image = harness.decode(card)
                _, found = harness.find_face(gate, image)
                if found is not None:
                    matcher.embed_face(image, found.points)

            figures["reference_card_ms"].append(median_ms(reference, args.repeat))
        for key, values in figures.items():
            report[key] = round(statistics.median(values), 2) if values else float("nan")
    text = json.dumps(report)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
