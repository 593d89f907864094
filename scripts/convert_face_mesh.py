"""Convert MediaPipe Face Landmarker's detector, landmark and blendshape models to ONNX (models/mediapipe/).

Why: MediaPipe's FaceLandmarker task runs its own face detector on every image, then the
landmark model, then the blendshape model, through a calculator graph: 8 ms per face on one
core here, of which the landmark model itself is 4.2 ms; and its Python API (1.2) sends every
call through a thread of its own. The gate already has the face box and eye keypoints from
BlazeFace, so it runs the models directly with ONNX Runtime, the runtime the service already
ships (quality/faces.py, quality/landmarks.py): detection 1.3-1.6 ms instead of 2.0-2.5 ms,
landmarks ~6.5 ms instead of 8-10 ms, and the server no longer needs MediaPipe.

Run once, by a maintainer, in a throwaway environment (TensorFlow is needed by tf2onnx and
is not a project dependency):

    python3.11 -m venv /tmp/convert && /tmp/convert/bin/pip install tensorflow-cpu tf2onnx onnx
    /tmp/convert/bin/python scripts/convert_face_mesh.py models/face_landmarker.task models/mediapipe

Tested with tensorflow-cpu 2.21.0, tf2onnx 1.17.0, onnx 1.23.2. The outputs are committed;
tests/test_mediapipe_models.py checks them against MediaPipe's own tasks on real faces.

One graph rewrite: tf2onnx keeps TFLite's per-channel PReLU as ONNX PRelu, which ONNX Runtime
1.2x runs through a slow broadcasting kernel (8.4 of 13 ms). PRelu(x) = Relu(x) * (1 - a) + x * a
is the same function and runs in 5 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

MEMBERS = {
    "face_detector.tflite": "face_detector.onnx",
    "face_landmarks_detector.tflite": "face_landmarks.onnx",
    "face_blendshapes.tflite": "face_blendshapes.onnx",
}
GEOMETRY = "geometry_pipeline_metadata_landmarks.binarypb"
OPSET = 17


def rewrite_prelu(model: onnx.ModelProto) -> int:
    """Replace every PRelu with constant slopes by Relu/Mul/Add; returns how many were replaced."""
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    nodes, replaced = [], 0
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in constants:
            nodes.append(node)
            continue
        x, slope = node.input
        y = node.output[0]
        keep = numpy_helper.from_array(
            (1.0 - numpy_helper.to_array(constants[slope])).astype(np.float32), f"{slope}_one_minus"
        )
        graph.initializer.append(keep)
        nodes += [
            helper.make_node("Relu", [x], [f"{y}_relu"]),
            helper.make_node("Mul", [f"{y}_relu", keep.name], [f"{y}_pos"]),
            helper.make_node("Mul", [x, slope], [f"{y}_lin"]),
            helper.make_node("Add", [f"{y}_pos", f"{y}_lin"], [y]),
        ]
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="face_landmarker.task")
    parser.add_argument("out", type=Path, help="output directory (models/mediapipe)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    provenance = {"source": args.bundle.name, "source_sha256": sha256(args.bundle.read_bytes()), "files": {}}
    with zipfile.ZipFile(args.bundle) as bundle, tempfile.TemporaryDirectory() as tmp:
        for member, target in MEMBERS.items():
            tflite = Path(tmp) / member
            tflite.write_bytes(bundle.read(member))
            onnx_path = Path(tmp) / target
            subprocess.run(
                [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite), "--output", str(onnx_path),
                 "--opset", str(OPSET)],
                check=True,
            )
            model = onnx.load(onnx_path)
            replaced = rewrite_prelu(model)
            onnx.checker.check_model(model)
            data = model.SerializeToString()
            (args.out / target).write_bytes(data)
            provenance["files"][target] = {
                "from": member, "from_sha256": sha256(tflite.read_bytes()), "sha256": sha256(data),
                "prelu_rewritten": replaced, "opset": OPSET,
            }
        geometry = bundle.read(GEOMETRY)
        (args.out / GEOMETRY).write_bytes(geometry)
        provenance["files"][GEOMETRY] = {"from": GEOMETRY, "sha256": sha256(geometry)}
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
