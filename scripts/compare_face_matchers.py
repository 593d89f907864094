"""Compare face-embedding candidates on the shared data's pairs (training/face_match_eval.py)
and time one embedding on one core: how models/face-match was chosen (models/face-match.md).

Candidates:
- ``sface``: the converted SFace on ONNX Runtime (models/face-match/sface.onnx), as served;
- ``sface-opencv``: OpenCV's FaceRecognizerSF on the original OpenCV Zoo file (its 29 stale
  graph inputs dropped), on the same aligned crops: the original runtime;
- ``sface-original-ort``: the original file on ONNX Runtime as it comes (stale inputs dropped);
- ``dlib``: dlib's ResNet (dlib_face_recognition_resnet_model_v1.dat, CC0) with dlib's own
  5-point shape predictor and face chip, on dlib's HOG box nearest to the gate's face (the
  gate's box when HOG misses); ranked by Euclidean distance, as dlib scores.

dlib is not a project dependency; for it, in a throwaway environment:

    pip download --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1 -d /tmp/dlib
    pip install --no-deps --target /tmp/dlib/pkg /tmp/dlib/dlib_bin-*.whl
    tar xzf /tmp/dlib/face_recognition_models-0.3.0.tar.gz -C /tmp/dlib
    python scripts/compare_face_matchers.py --data-dir ../shared/data --dlib /tmp/dlib

Without --dlib only the SFace rows run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ekyc.models.face_match import FaceMatcher
from ekyc.quality.alignment import align_face, five_points
from ekyc.training import face_match_eval as harness

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL = ROOT / "models" / "face-match" / "face_recognition_sface_2021dec_int8bq.onnx"


def stripped_original(folder: Path) -> Path:
    import onnx

    model = onnx.load(ORIGINAL)
    keep = [value for value in model.graph.input if value.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    path = folder / "original.onnx"
    onnx.save(model, path)
    return path


TIMES: list[float] = []


def clock(run, *args):
    """Run the network, adding its time to TIMES: ms per embedding counts the model alone
    (not the alignment, nor dlib's HOG box)."""
    started = time.perf_counter()
    out = run(*args)
    TIMES.append(time.perf_counter() - started)
    return out


def candidates(folder: Path, dlib_dir: Path | None):
    """(name, licence, file size in bytes, embedder, uses cosine?)"""
    matcher = FaceMatcher()

    def sface_embed(rgb, points):
        return clock(matcher.embed, align_face(rgb, five_points(points)))[0]

    yield "sface", "Apache-2.0", (ROOT / "models/face-match/sface.onnx").stat().st_size, sface_embed, True
    original = stripped_original(folder)
    opencv = cv2.FaceRecognizerSF.create(str(original), "")

    def opencv_embed(rgb, points):
        crop = align_face(rgb, five_points(points))
        return clock(opencv.feature, np.ascontiguousarray(crop[..., ::-1]))[0]

    yield "sface-opencv", "Apache-2.0", ORIGINAL.stat().st_size, opencv_embed, True
    from ekyc.ort_session import cpu_session

    session = cpu_session(original)

    def ort_embed(rgb, points):
        crop = align_face(rgb, five_points(points)).transpose(2, 0, 1)[None].astype(np.float32)
        return clock(session.run, None, {"data": crop})[0][0]

    yield "sface-original-ort", "Apache-2.0", ORIGINAL.stat().st_size, ort_embed, True
    if dlib_dir is None:
        return
    sys.path.insert(0, str(dlib_dir / "pkg"))
    import dlib

    models = dlib_dir / "face_recognition_models-0.3.0" / "face_recognition_models" / "models"
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    network = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    hog = dlib.get_frontal_face_detector()

    def dlib_embed(rgb, points):
        x0, y0 = points[:, 0].min(), points[:, 1].min()
        x1, y1 = points[:, 0].max(), points[:, 1].max()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        box = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        found = [d for d in hog(rgb, 1) if d.left() <= cx <= d.right() and d.top() <= cy <= d.bottom()]
        if found:
            box = min(found, key=lambda d: (d.center().x - cx) ** 2 + (d.center().y - cy) ** 2)
        shape = predictor(rgb, box)
        return np.array(clock(network.compute_face_descriptor, rgb, shape, 0))

    size = (models / "dlib_face_recognition_resnet_model_v1.dat").stat().st_size
    yield "dlib", "CC0-1.0", size, dlib_embed, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("EKYC_DATA_DIR"))
    parser.add_argument("--dlib", type=Path, help="folder with dlib-bin installed under pkg/ and the face_recognition_models sdist")
    parser.add_argument("--n-boot", type=int, default=300)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    cosine = harness.cosine_matrix
    with tempfile.TemporaryDirectory() as folder, harness.quality_gate() as gate:
        for name, licence, size, embed, uses_cosine in candidates(Path(folder), args.dlib):
            harness.cosine_matrix = cosine if uses_cosine else (
                lambda a, b: -np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2))
            TIMES.clear()
            evaluation = harness.run_pairs(Path(args.data_dir), embed, gate=gate)
            times = list(TIMES)
            row = {"candidate": name, "licence": licence, "size_mb": round(size / 1e6, 1),
                   "ms_per_embedding_median": round(1000 * float(np.median(times)), 1)}
            for kind, pairs in (("selfie", evaluation.selfie), ("card", evaluation.card)):
                result = harness.evaluate_pairs(pairs, {}, args.n_boot, 0)
                row[kind] = {key: {"value": round(result[key]["value"], 4), "ci95": [round(v, 4) for v in result[key]["ci95"]]}
                             for key in ("auc", "tar_at_fmr_1pct", "tar_at_fmr_0.1pct")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    harness.cosine_matrix = cosine
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
