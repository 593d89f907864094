"""scripts/quantize_models.py: int8 models are kept only when faster and in parity.

The face-mesh report committed in models/mediapipe/quantization.json must describe the folder
(no int8 file without its passing entry, none left over from a dropped one), and the generic
liveness step must keep or drop a model by its rule: a small real ONNX model, quantised for
real, scored on crops whose labels it separates."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
MEDIAPIPE = ROOT / "models" / "mediapipe"

onnx = pytest.importorskip("onnx")

import quantize_models as Q  # noqa: E402  (scripts/quantize_models.py)


def test_the_face_mesh_report_describes_the_folder():
    report = json.loads((MEDIAPIPE / "quantization.json").read_text())
    provenance = json.loads((MEDIAPIPE / "provenance.json").read_text())
    assert set(report["models"]) == set(Q.FACE_MESH_MODELS)
    assert report["thresholds"]["min_equal_boxes"] == Q.MIN_EQUAL_BOXES
    assert report["thresholds"]["min_reasons_unchanged"] == Q.MIN_REASONS_UNCHANGED
    for name, entry in report["models"].items():
        float_file, int8_file = Q.FACE_MESH_MODELS[name]
        # Measured on the float model that ships.
        assert entry["float_sha256"] == provenance["files"][float_file]["sha256"]
        saving = entry["cpu_ms_per_call"]["saving"]
        assert saving == pytest.approx(1 - entry["cpu_ms_per_call"]["int8"] / entry["cpu_ms_per_call"]["float"], abs=1e-3)
        if entry["kept"]:
            assert saving >= Q.MIN_SPEEDUP
            digest = hashlib.sha256((MEDIAPIPE / int8_file).read_bytes()).hexdigest()
            assert digest == entry["int8_sha256"] == provenance["files"][int8_file]["sha256"]
            assert provenance["files"][int8_file]["from_sha256"] == entry["float_sha256"]
        else:
            assert not (MEDIAPIPE / int8_file).exists() and int8_file not in provenance["files"]
            assert entry["why"]


def tiny_liveness_model(folder: Path) -> Path:
    """A real (small) liveness model: uint8-valued float crops (N, 128, 128, 3) -> spoof
    probability (N,), with the metadata the server needs: its score is the mean red minus
    the mean blue of the crop, through a convolution and a sigmoid."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = np.zeros((8, 3, 3, 3), np.float32)
    weight[:4, 0] = 1.0 / 9  # red
    weight[4:, 2] = 1.0 / 9  # blue
    weight += rng.normal(0, 0.002, weight.shape).astype(np.float32)
    gemm = np.array([[1.0] * 4 + [-1.0] * 4], np.float32).T / 4 / 40.0
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "g", "gb"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
        helper.make_node("Reshape", ["prob", "shape"], ["spoof_probability"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 128, 128, 3])],
        [helper.make_tensor_value_info("spoof_probability", TensorProto.FLOAT, ["N"])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(8, np.float32), "b"),
         numpy_helper.from_array(gemm, "g"), numpy_helper.from_array(np.zeros(1, np.float32), "gb"),
         numpy_helper.from_array(np.array([-1], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "tiny.onnx"
    onnx.save(model, path)
    path.with_suffix(".json").write_text(json.dumps({
        "version": "tiny-1", "threshold": 0.5, "crop": {"size": 128, "scale": 1.2},
        "profiles": {"balanced": {"threshold": 0.5}}, "default_profile": "balanced"}))
    return path


def crops(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops that lean red (spoof, 1) or blue (live, 0), with noise and overlap."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    base = rng.integers(60, 180, (count, 128, 128, 3)).astype(np.float32)
    lean = np.where(labels == 1, 1.0, -1.0)[:, None, None] * rng.uniform(0, 40, count)[:, None, None]
    base[..., 0] += lean
    base[..., 2] -= lean
    return np.clip(base, 0, 255).astype(np.uint8), labels


def test_the_liveness_step_keeps_an_int8_model_that_agrees(tmp_path):
    model = tiny_liveness_model(tmp_path)
    calibration, _ = crops(24, 1)
    evaluation, labels = crops(80, 2)
    out = tmp_path / "tiny-int8.onnx"
    # The speed rule is what this CPU says; here only parity decides.
    report = Q.quantize_liveness_on(model, out, calibration, evaluation, labels, timing_inputs=4,
                                    recipes=("minmax",), min_cpu_saving=-100.0)
    entry = report["candidates"]["minmax"]
    assert 0.9 < report["auc_float"] <= 1.0
    assert abs(entry["auc_difference"]) <= Q.MAX_AUC_DIFFERENCE and entry["passes"], entry
    assert report["kept"] and out.exists() and report["int8_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert {n.op_type for n in onnx.load(out).graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    metadata = json.loads(out.with_suffix(".json").read_text())
    assert metadata["version"] == "tiny-1-int8" and metadata["quantization"]["float_sha256"] == report["float_sha256"]
    # The server loads it like any model.
    from ekyc.models.liveness import LivenessModel

    scores = LivenessModel(out).score(evaluation[:8])
    assert scores.shape == (8,) and np.all((scores >= 0) & (scores <= 1))


def test_the_liveness_step_drops_a_model_that_moves_the_auc(tmp_path):
    model = tiny_liveness_model(tmp_path)
    calibration, _ = crops(24, 1)
    evaluation, labels = crops(80, 2)
    out = tmp_path / "tiny-int8.onnx"
    # No tolerance at all: any change of the AUC (or none, but then the speed rule) drops it.
    report = Q.quantize_liveness_on(model, out, calibration, evaluation, labels, timing_inputs=4,
                                    recipes=("minmax",), max_auc_difference=-1.0, min_cpu_saving=-100.0)
    assert not report["kept"] and not out.exists() and not out.with_suffix(".json").exists()
    assert report["candidates"]["minmax"]["why"].startswith("AUC moves")


def test_the_liveness_report_is_of_the_shipped_model():
    """models/reports/liveness-int8.json is the generic step's report on the model that ships
    (`quantize_models.py liveness models/liveness.onnx`): a new model needs the step run again,
    and an int8 file ships only with a passing report."""
    model = ROOT / "models" / "liveness.onnx"
    report = json.loads((ROOT / "models" / "reports" / "liveness-int8.json").read_text())
    assert report["float_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest(), "re-run the step on this model"
    assert set(report["candidates"]) <= set(Q.RECIPES) and report["candidates"]
    assert report["thresholds"] == {"max_auc_difference": Q.MAX_AUC_DIFFERENCE, "min_cpu_saving": Q.MIN_SPEEDUP}
    for entry in report["candidates"].values():
        assert entry["passes"] == (abs(entry["auc_difference"]) <= Q.MAX_AUC_DIFFERENCE
                                   and entry["cpu_ms_per_call"]["saving"] >= Q.MIN_SPEEDUP)
    assert report["kept"] == any(e["passes"] for e in report["candidates"].values())
    int8 = ROOT / "models" / "liveness-int8.onnx"
    if report["kept"]:
        assert hashlib.sha256(int8.read_bytes()).hexdigest() == report["int8_sha256"]
    else:
        assert not int8.exists()
