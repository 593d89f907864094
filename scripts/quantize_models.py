"""Static int8 quantisation (ONNX Runtime, QDQ) of the models ekyc runs per image, kept only
where it is faster AND agrees with the float model.

    python scripts/quantize_models.py face-mesh --data ../shared/data
        BlazeFace, the face landmark and the blendshape model (models/mediapipe/): writes
        <name>.int8.onnx for each model that passes, and quantization.json with every model's
        calibration, timing and parity figures, kept or not (the provenance of the kept files
        goes into provenance.json, as scripts/convert_face_mesh.py's does).
    python scripts/quantize_models.py liveness models/liveness.onnx --data ../shared/data
        A liveness model (whichever ships): writes <stem>-int8.onnx and <stem>-int8.json (its
        metadata, version suffixed -int8, with a "quantization" block) when it passes.

Method: onnxruntime.quantization's quant_pre_process, then quantize_static in QDQ format, per
channel, uint8 activations and int8 weights (the u8s8 kernels ONNX Runtime's x86 CPU provider
runs with VNNI), MinMax calibration. Calibration inputs are captured from the float pipeline
on images of the TRAINING subjects of training/splits/shared-data.json; every parity and timing
figure is measured on the validation and test subjects and the photos, never on calibration
images.

Kept only when, on those held-out images (the thresholds of issue 15):
- detector: boxes equal (every side within 1 px) on >= 95 % of the float model's faces;
- landmarks: mean landmark distance within 1 % of the interocular distance (median over
  faces) and head pose within 2 degrees (95th percentile of the largest of yaw, pitch, roll);
- every face-mesh model: the quality gate's reasons unchanged on >= 99.5 % of the quality
  benchmark's images (its clean photos and frames and their degradations);
- liveness: ROC AUC within 0.002 (either way) of the float model's on the model card's
  evaluation (the faces of the setups of its leave-one-setup-out table, or the test split of
  the split file for a card evaluated on one; the crops the training code scores, every model
  input's), without the calibration faces; the decisions that change at the metadata's
  operating points are reported;
- and the int8 model costs at least 10 % less CPU per call (thread CPU time, float and int8
  calls interleaved, median), on this machine.

Needs the test environment (onnx, the quality benchmark, the training package for liveness)
and EKYC_DATA_DIR's shared data; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPLIT_FILE = ROOT / "training" / "splits" / "shared-data.json"
FACE_MESH_DIR = ROOT / "models" / "mediapipe"
SCRIPT = "scripts/quantize_models.py"

# Issue 15's parity thresholds, and the speed-up that makes an int8 model worth shipping.
MIN_EQUAL_BOXES = 0.95
MAX_LANDMARK_ERROR_IOD = 0.01
MAX_POSE_DIFF_P95_DEG = 2.0
MIN_REASONS_UNCHANGED = 0.995
MAX_AUC_DIFFERENCE = 0.002
MIN_SPEEDUP = 0.10

FACE_MESH_MODELS = {
    # name -> (float file, int8 file)
    "detector": ("face_detector.onnx", "face_detector.int8.onnx"),
    "landmarks": ("face_landmarks.onnx", "face_landmarks.int8.onnx"),
    "blendshapes": ("face_blendshapes.onnx", "face_blendshapes.int8.onnx"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- data


def split_rows(data_dir: Path, parts: tuple[str, ...]) -> list[dict]:
    """Manifest rows of the subjects in ``parts`` of the committed split file."""
    from ekyc.training.data import load_manifest, load_split, split_samples

    samples = split_samples(load_manifest(data_dir), load_split(SPLIT_FILE), strict=False)
    return [{"path": s.path, "label": s.label, "subject": s.subject, "source": s.source}
            for part in parts for s in samples[part]]


def draw(rows: list, count: int, seed: int) -> list:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows[:count] if count else rows


def photos(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "faces" / "photos").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


@dataclass
class FaceMeshInputs:
    """What the three models are fed, captured from the float gate."""

    detector: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    blendshapes: list[np.ndarray] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)  # the decoded images, for parity


def capture_inputs(gate, paths: list[Path]) -> FaceMeshInputs:
    """Decode each image, run the float gate, and keep the inputs its models see: the whole
    frame for the detector, the main face's crop for the landmark model, its points for the
    blendshape model."""
    from ekyc.quality.faces import detector_input
    from ekyc.quality.landmarks import Roi, blendshape_input, landmark_input

    inputs = FaceMeshInputs()
    for path in paths:
        rgb = gate.decode(Path(path).read_bytes())
        inputs.images.append(rgb)
        inputs.detector.append(detector_input(rgb)[0])
        result = gate.assess(rgb)
        if result.face is not None and result.landmarks is not None:
            inputs.landmarks.append(landmark_input(rgb, Roi.around(result.face)))
            inputs.blendshapes.append(blendshape_input(result.landmarks.points))
    return inputs


# --------------------------------------------------------------------------- quantisation


# Ways to quantise a model: each is tried, the best that passes is kept. "float-ends" leaves the
# first and the last weighted layer in float (the usual remedy when int8 moves the output).
RECIPES = ("minmax", "percentile", "minmax-float-ends")


def quantize(float_path: Path, out_path: Path, feeds: list[np.ndarray], recipe: str = "minmax") -> None:
    """Static QDQ int8 of ``float_path`` calibrated on ``feeds`` (one array per call, no batch axis)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; one of {', '.join(RECIPES)}")
    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter(feeds)

        def get_next(self):
            feed = next(self._feeds, None)
            if feed is None:
                return None
            return {k: v[None] for k, v in feed.items()} if isinstance(feed, dict) else {input_name: feed[None]}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        weighted = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        quantize_static(
            str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile if recipe == "percentile" else CalibrationMethod.MinMax,
            nodes_to_exclude=[weighted[0], weighted[-1]] if recipe == "minmax-float-ends" and weighted else [],
        )


def cpu_ms_per_call(paths: list[Path], feeds: list[np.ndarray], rounds: int = 3) -> list[float]:
    """Median thread CPU ms per call of each model in ``paths`` (one intra-op thread, as the
    server runs them), calls interleaved input by input so that both see the same machine."""
    from ekyc.ort_session import cpu_session

    sessions = [cpu_session(p) for p in paths]
    names = [s.get_inputs()[0].name for s in sessions]

    def batch(feed, name):  # one call's feed: a single input's array, or one per input name
        return {k: v[None] for k, v in feed.items()} if isinstance(feed, dict) else {name: feed[None]}

    for session, name in zip(sessions, names):
        for feed in feeds[:5]:
            session.run(None, batch(feed, name))
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for feed in feeds:
            for session, name, out in zip(sessions, names, times):
                call = batch(feed, name)
                started = time.thread_time()
                session.run(None, call)
                out.append((time.thread_time() - started) * 1000.0)
    return [round(statistics.median(t), 3) for t in times]


# --------------------------------------------------------------------------- parity


def detector_parity(float_detector, int8_detector, images: list[np.ndarray]) -> dict:
    """Share of the float model's faces that the int8 model boxes within 1 px on every side."""
    equal = total = 0
    worst = 0.0
    for rgb in images:
        ours = int8_detector.detect_boxes(rgb)
        for box in float_detector.detect_boxes(rgb):
            total += 1
            side = max(box[2] - box[0], 1.0)
            errors = [max(abs(a - b) for a, b in zip(box[:4], other[:4])) for other in ours]
            error = min(errors) if errors else float("inf")
            equal += error <= 1.0
            worst = max(worst, error / side)
    return {"faces": total, "equal_boxes": round(equal / total, 4) if total else None,
            "worst_box_error_of_side": round(worst, 4) if worst != float("inf") else None}


def landmark_parity(float_mesh, int8_mesh, detector, images: list[np.ndarray]) -> dict:
    """Per face of the detector: mean landmark distance / interocular distance and the largest
    head-pose difference (degrees) between the two face meshes, on the same crop."""
    errors, poses, blinks = [], [], []
    for rgb in images:
        faces = detector.detect(rgb)
        if not faces:
            continue
        a, b = float_mesh.measure(rgb, faces[0]), int8_mesh.measure(rgb, faces[0])
        if a is None or b is None:
            continue
        errors.append(float(np.linalg.norm(a.points[:, :2] - b.points[:, :2], axis=1).mean() / a.interocular_distance))
        poses.append(max(abs(a.pose.yaw - b.pose.yaw), abs(a.pose.pitch - b.pose.pitch), abs(a.pose.roll - b.pose.roll)))
        blinks.append(abs(a.eyes_closed - b.eyes_closed))
    return {
        "faces": len(errors),
        "landmark_error_iod_median": round(float(np.median(errors)), 5) if errors else None,
        "landmark_error_iod_max": round(float(np.max(errors)), 5) if errors else None,
        "pose_diff_deg_p95": round(float(np.percentile(poses, 95)), 3) if poses else None,
        "eyes_closed_diff_p95": round(float(np.percentile(blinks, 95)), 4) if blinks else None,
        "eyes_closed_diff_max": round(float(np.max(blinks)), 4) if blinks else None,
    }


def benchmark_images(gate, data_dir: Path, nuaa_frames: int, seed: int = 0, photos_every: int = 1):
    """The quality benchmark's images: its clean photos and NUAA live frames (``nuaa_frames``
    drawn with ``seed``) and every degradation of each (bench/quality_accuracy.py's cases), made
    once with ``gate``. Yields (name, rgb)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import quality_accuracy as benchmark  # bench/quality_accuracy.py: the quality benchmark

    samples = benchmark.clean_samples(data_dir, gate, frames=False)[::photos_every]
    samples += benchmark.clean_samples(data_dir, gate, nuaa_count=nuaa_frames, photos=False, seed=seed)
    samples += benchmark.closed_eye_samples(data_dir, gate)
    cases = benchmark.default_cases(gate)
    rng = np.random.default_rng(seed)
    results = [gate.assess(s.rgb) for s in samples]
    with_face = [i for i, r in enumerate(results) if r.face is not None]
    for index, (sample, result) in enumerate(zip(samples, results)):
        yield sample.name, sample.rgb
        if result.face is None:
            continue
        partners = [i for i in with_face if i != index]
        partner = partners[int(rng.integers(len(partners)))] if partners else index
        context = benchmark.Context(sample, result, samples[partner], results[partner].face, rng, True)
        for case in cases:
            image = case.make(context)
            if image is not None:
                yield f"{sample.name} / {case.name}", image


def reasons_parity(gate_a, gate_b, images) -> dict:
    """Share of images on which two gates give the same reasons, and how often each reason
    appears or disappears (counts only: no image names in the report)."""
    same = total = 0
    flips: dict[str, int] = {}
    for _, rgb in images:
        a, b = set(gate_a.assess(rgb).reasons), set(gate_b.assess(rgb).reasons)
        total += 1
        same += a == b
        for reason in a ^ b:
            key = f"{reason.value} {'gained' if reason in b else 'lost'}"
            flips[key] = flips.get(key, 0) + 1
    return {"images": total, "unchanged": round(same / total, 5) if total else None,
            "changed_reasons": dict(sorted(flips.items()))}


# --------------------------------------------------------------------------- face mesh


def gate_with(quality_options, detector_file: str, landmarks_file: str, blendshapes_file: str, folder: Path):
    """A QualityGate whose face models are the named files of ``folder``."""
    from dataclasses import replace

    from ekyc.quality.faces import FaceDetector, FaceDetectorOptions
    from ekyc.quality.gate import QualityGate
    from ekyc.quality.landmarks import FaceMesh

    options = replace(quality_options, detector_model=folder / detector_file)
    gate = QualityGate(options)
    finder = gate.faces
    if finder._landmarkers is not None:  # the gate's options name a folder, not files: swap the mesh in
        finder._landmarkers = FaceMesh(folder, options.search.landmarker_min_presence_confidence,
                                       landmarks_file=landmarks_file, blendshapes_file=blendshapes_file)
    finder._detector = FaceDetector(FaceDetectorOptions(folder / detector_file, options.min_detection_confidence))
    return gate


def face_mesh(args) -> dict:
    from ekyc.quality.faces import FaceDetector, FaceDetectorOptions
    from ekyc.quality.landmarks import FaceMesh
    from ekyc.quality.options import load_gate_options

    data_dir, folder = args.data, args.out
    quality = load_gate_options(None, environ={})
    float_gate = gate_with(quality, *(FACE_MESH_MODELS[m][0] for m in ("detector", "landmarks", "blendshapes")), FACE_MESH_DIR)
    calibration_paths = [data_dir / r["path"] for r in draw(split_rows(data_dir, ("train",)), args.calibration, args.seed)]
    held_out_paths = [data_dir / r["path"] for r in draw(split_rows(data_dir, ("val", "test")), args.held_out, args.seed)]
    held_out_paths += photos(data_dir)
    print(f"calibration: {len(calibration_paths)} images of the training subjects; "
          f"held out: {len(held_out_paths)} images", file=sys.stderr)
    calibration = capture_inputs(float_gate, calibration_paths)
    held_out = capture_inputs(float_gate, held_out_paths)
    report: dict = {
        "script": SCRIPT,
        "onnxruntime": __import__("onnxruntime").__version__,
        "method": "quant_pre_process + quantize_static: QDQ, per channel, uint8 activations, int8 weights, MinMax",
        "recipe": "minmax",
        "calibration": {"split_file": "training/splits/shared-data.json", "parts": ["train"], "images": len(calibration_paths),
                        "seed": args.seed},
        "held_out": {"parts": ["val", "test"], "frames": args.held_out, "photos": len(photos(data_dir))},
        "thresholds": {"min_equal_boxes": MIN_EQUAL_BOXES, "max_landmark_error_iod_median": MAX_LANDMARK_ERROR_IOD,
                       "max_pose_diff_deg_p95": MAX_POSE_DIFF_P95_DEG, "min_reasons_unchanged": MIN_REASONS_UNCHANGED,
                       "min_cpu_saving": MIN_SPEEDUP},
        "models": {},
    }
    bench_images = list(benchmark_images(float_gate, data_dir, args.benchmark_frames, args.seed))
    report["quality_benchmark_images"] = len(bench_images)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (float_file, int8_file) in FACE_MESH_MODELS.items():
            if args.models and name not in args.models:
                continue
            feeds = {"detector": calibration.detector, "landmarks": calibration.landmarks,
                     "blendshapes": calibration.blendshapes}[name]
            timing_feeds = {"detector": held_out.detector, "landmarks": held_out.landmarks,
                            "blendshapes": held_out.blendshapes}[name][: args.timing_inputs]
            candidate = tmp / int8_file
            for other in FACE_MESH_MODELS.values():  # the candidate folder: float models + this int8 one
                for file in (other[0], "geometry_pipeline_metadata_landmarks.binarypb"):
                    if not (tmp / file).exists():
                        (tmp / file).write_bytes((FACE_MESH_DIR / file).read_bytes())
            quantize(FACE_MESH_DIR / float_file, candidate, feeds)
            float_ms, int8_ms = cpu_ms_per_call([FACE_MESH_DIR / float_file, candidate], timing_feeds)
            entry: dict = {"float": float_file, "float_sha256": sha256(FACE_MESH_DIR / float_file),
                           "calibration_inputs": len(feeds),
                           "cpu_ms_per_call": {"float": float_ms, "int8": int8_ms,
                                               "saving": round(1.0 - int8_ms / float_ms, 3)}}
            files = {m: FACE_MESH_MODELS[m][0] for m in FACE_MESH_MODELS}
            files[name] = int8_file
            int8_gate = gate_with(quality, files["detector"], files["landmarks"], files["blendshapes"], tmp)
            if name == "detector":
                entry["parity"] = detector_parity(float_gate.faces._detector, int8_gate.faces._detector, held_out.images)
                ok = entry["parity"]["equal_boxes"] is not None and entry["parity"]["equal_boxes"] >= MIN_EQUAL_BOXES
            else:
                entry["parity"] = landmark_parity(float_gate.faces._landmarkers, int8_gate.faces._landmarkers, float_gate.faces._detector,
                                                  held_out.images)
                ok = (entry["parity"]["landmark_error_iod_median"] is not None
                      and entry["parity"]["landmark_error_iod_median"] <= MAX_LANDMARK_ERROR_IOD
                      and entry["parity"]["pose_diff_deg_p95"] <= MAX_POSE_DIFF_P95_DEG)
            faster = entry["cpu_ms_per_call"]["saving"] >= MIN_SPEEDUP
            if ok and faster:  # the slow whole-gate check only for a candidate that could ship
                entry["quality_reasons"] = reasons_parity(float_gate, int8_gate, bench_images)
                ok = entry["quality_reasons"]["unchanged"] >= MIN_REASONS_UNCHANGED
            entry["kept"] = bool(ok and faster)
            entry["why"] = ("faster and agrees" if entry["kept"] else
                            "slower or not enough faster on this CPU" if not faster else "parity fails")
            if entry["kept"]:
                (folder / int8_file).write_bytes(candidate.read_bytes())
                entry["int8"] = int8_file
                entry["int8_sha256"] = sha256(folder / int8_file)
            report["models"][name] = entry
            print(json.dumps({name: entry}, indent=2), file=sys.stderr)
    (folder / "quantization.json").write_text(json.dumps(report, indent=2) + "\n")
    provenance_path = folder / "provenance.json"
    provenance = json.loads(provenance_path.read_text())
    for name, entry in report["models"].items():
        int8_file = FACE_MESH_MODELS[name][1]
        provenance["files"].pop(int8_file, None)
        if entry["kept"]:
            provenance["files"][int8_file] = {
                "from": entry["float"], "from_sha256": entry["float_sha256"], "sha256": entry["int8_sha256"],
                "script": SCRIPT, "method": report["method"], "report": "quantization.json",
            }
        elif (folder / int8_file).exists():
            (folder / int8_file).unlink()
    provenance_path.write_text(json.dumps(provenance, indent=2) + "\n")
    return report


# --------------------------------------------------------------------------- liveness


Crops = dict  # input name -> uint8 (N, S, S, 3): one array per model input, faces in the same order


def liveness_crops(data_dir: Path, model, samples: list, cache_dir: Path | None = None) -> tuple[Crops, np.ndarray, list]:
    """Every model input's crop of each sample's detected face, as the training code makes and
    scores them (training/facecrops.py over the detector's box cache), their labels (1 =
    spoof) and the samples that had a face."""
    from ekyc.quality.faces import CropRule
    from ekyc.training.crops import CropCache, build_crops
    from ekyc.training.facecrops import CropSpec, FaceArrays

    box = CropCache.for_data(data_dir, CropRule(128, 1.2), cache_dir)
    build_crops(samples, data_dir, box, progress=False)
    specs = [CropSpec.from_input(name, rule) for name, rule in model.inputs]
    arrays = FaceArrays.build(samples, data_dir, box, specs, cache_dir=cache_dir, progress=False)
    return dict(arrays.arrays), np.array([s.label for s in arrays.samples], dtype=np.int64), arrays.samples


def card_evaluation(model, data_dir: Path) -> tuple[list, dict]:
    """The samples of the model card's evaluation and how it is named: every face of the
    capture setups its leave-one-setup-out table reports (metadata ``loso``), else the test
    subjects of the split file (a card evaluated on a test split)."""
    from ekyc.training.data import load_manifest, load_split, split_samples

    samples = load_manifest(data_dir)
    setups = sorted((model.metadata.raw.get("loso") or {}).get("rows", {}))
    if setups:
        return [s for s in samples if s.source in setups], {"setups": setups, "what": "the card's leave-one-setup-out setups"}
    test = split_samples(samples, load_split(SPLIT_FILE), strict=False)["test"]
    return test, {"split_file": "training/splits/shared-data.json", "parts": ["test"]}


def _take(crops: Crops, index) -> Crops:
    return {name: array[index] for name, array in crops.items()}


def _feeds(crops: Crops, dtypes: dict) -> list[dict]:
    count = len(next(iter(crops.values())))
    return [{name: crops[name][i].astype(dtypes[name]) for name in crops} for i in range(count)]


def input_dtypes(model_path: Path) -> dict:
    """The numpy type of each model input (a liveness model may take float or uint8 crops)."""
    from ekyc.ort_session import cpu_session

    kinds = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(float16)": np.float16}
    return {i.name: kinds.get(i.type, np.float32) for i in cpu_session(model_path).get_inputs()}


def liveness_scores(model_path: Path, crops: Crops) -> np.ndarray:
    from ekyc.models.liveness import LivenessModel

    model = LivenessModel(model_path)
    count = len(next(iter(crops.values())))
    return np.concatenate([model.score_inputs(_take(crops, slice(i, i + 64))) for i in range(0, count, 64)]
                          ).astype(np.float64)


def quantize_liveness(model_path: Path, out_path: Path, data_dir: Path, calibration: int = 300, seed: int = 0,
                      cache_dir: Path | None = None, timing_inputs: int = 100,
                      recipes: tuple[str, ...] = RECIPES) -> dict:
    """Quantise a liveness model on the shared data: calibration on faces of the training
    subjects of the split file, parity on the model card's evaluation (card_evaluation),
    without the calibration faces."""
    from ekyc.models.liveness import LivenessModel
    from ekyc.training.data import load_manifest, load_split, split_samples

    model = LivenessModel(Path(model_path))
    train = split_samples(load_manifest(data_dir), load_split(SPLIT_FILE), strict=False)["train"]
    train_crops, _, train_samples = liveness_crops(data_dir, model, train, cache_dir)
    order = np.random.default_rng(seed).permutation(len(train_samples))[:calibration]
    used = {train_samples[i].path for i in order}
    evaluation, note = card_evaluation(model, data_dir)
    evaluation = [s for s in evaluation if s.path not in used]
    crops, labels, _ = liveness_crops(data_dir, model, evaluation, cache_dir)
    return quantize_liveness_on(
        model_path, out_path, _take(train_crops, order), crops, labels, timing_inputs, recipes,
        calibration_note={"split_file": "training/splits/shared-data.json", "parts": ["train"], "seed": seed},
        evaluation_note={**note, "without": "the calibration faces"},
    )


def quantize_liveness_on(model_path: Path, out_path: Path, calibration_crops, crops, labels: np.ndarray,
                         timing_inputs: int = 100, recipes: tuple[str, ...] = RECIPES,
                         max_auc_difference: float | None = None, min_cpu_saving: float = MIN_SPEEDUP,
                         calibration_note: dict | None = None,
                         evaluation_note: dict | None = None) -> dict:
    """Quantise a liveness model (ONNX + its .json metadata) with each recipe, calibrated on
    ``calibration_crops`` (uint8 face crops: an array for a single-input model, or one per
    input name); keep the candidate whose ROC AUC on ``crops`` / ``labels`` (1 = spoof) is
    within ``max_auc_difference`` of the float model's and that costs at least
    ``min_cpu_saving`` less CPU. Returns the report; when one passes, writes ``out_path`` and
    its metadata beside it (the float model's, version suffixed -int8, with the report)."""
    from ekyc.models.liveness import LivenessModel, metadata_path
    from ekyc.training.metrics import roc_auc

    limit = MAX_AUC_DIFFERENCE if max_auc_difference is None else max_auc_difference
    model_path, out_path = Path(model_path), Path(out_path)
    model = LivenessModel(model_path)
    names = [name for name, _ in model.inputs]
    if not isinstance(calibration_crops, dict):
        calibration_crops = {names[0]: calibration_crops}
    if not isinstance(crops, dict):
        crops = {names[0]: crops}
    dtypes = input_dtypes(model_path)
    feeds = _feeds(calibration_crops, dtypes)
    test_labels = np.asarray(labels, dtype=np.int64)
    timing = _feeds(_take(crops, slice(0, timing_inputs)), dtypes)
    metadata = json.loads(metadata_path(model_path).read_text())
    scores_float = liveness_scores(model_path, crops)
    auc_float = float(roc_auc(scores_float, test_labels))
    report = {
        "script": SCRIPT,
        "onnxruntime": __import__("onnxruntime").__version__,
        "method": "quant_pre_process + quantize_static: QDQ, per channel, uint8 activations, int8 weights",
        "float": model_path.name, "float_sha256": sha256(model_path), "float_version": model.version,
        "inputs": names,
        "calibration": {**(calibration_note or {}), "faces": len(feeds)},
        "evaluation": {**(evaluation_note or {}), "faces": int(len(test_labels)),
                       "spoof": int(test_labels.sum()), "live": int(len(test_labels) - test_labels.sum())},
        "auc_float": round(auc_float, 5),
        "thresholds": {"max_auc_difference": limit, "min_cpu_saving": min_cpu_saving},
        "candidates": {},
        "kept": False,
    }
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in recipes:
            candidate = Path(tmp) / recipe / out_path.name
            candidate.parent.mkdir()
            quantize(model_path, candidate, feeds, recipe)
            metadata_path(candidate).write_text(json.dumps(metadata))
            scores_int8 = liveness_scores(candidate, crops)
            auc_int8 = float(roc_auc(scores_int8, test_labels))
            difference = np.abs(scores_float - scores_int8)
            float_ms, int8_ms = cpu_ms_per_call([model_path, candidate], timing)
            entry = {
                "auc_int8": round(auc_int8, 5), "auc_difference": round(auc_int8 - auc_float, 5),
                "score_difference": {"p50": round(float(np.median(difference)), 5),
                                     "p95": round(float(np.percentile(difference, 95)), 5),
                                     "max": round(float(difference.max()), 5)},
                # The operating points ship with the metadata, calibrated on the float model's scores.
                "decisions_changed_at_profiles": {
                    name: int(((scores_float >= p["threshold"]) != (scores_int8 >= p["threshold"])).sum())
                    for name, p in (metadata.get("profiles") or {}).items()},
                "cpu_ms_per_call": {"float": float_ms, "int8": int8_ms, "saving": round(1.0 - int8_ms / float_ms, 3)},
            }
            # Within 0.002 either way: a model whose AUC moves up as much scores differently
            # too, and the shipped operating points were calibrated on the float model's scores.
            agrees = abs(auc_int8 - auc_float) <= limit
            faster = entry["cpu_ms_per_call"]["saving"] >= min_cpu_saving
            entry["passes"] = bool(agrees and faster)
            entry["why"] = "faster and agrees" if entry["passes"] else (
                f"AUC moves more than {limit}" if not agrees else "not enough faster")
            report["candidates"][recipe] = entry
            if entry["passes"] and (best is None or abs(entry["auc_difference"]) < abs(best[1]["auc_difference"])):
                best = (recipe, entry, candidate.read_bytes())
        if best is not None:
            recipe, entry, data = best
            out_path.write_bytes(data)
            report.update(kept=True, recipe=recipe, int8=out_path.name, int8_sha256=sha256(out_path))
            metadata["version"] = f"{metadata['version']}-int8"
            metadata["quantization"] = report
            metadata_path(out_path).write_text(json.dumps(metadata, indent=2) + "\n")
    return report


def liveness(args) -> dict:
    out = args.out or args.model.with_name(f"{args.model.stem}-int8.onnx")
    report = quantize_liveness(args.model, out, args.data, args.calibration, args.seed, args.cache_dir,
                               args.timing_inputs, recipes=tuple(args.recipes or RECIPES))
    print(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("EKYC_DATA_DIR", ROOT.parent / "shared" / "data")),
                        help="the shared data (default: $EKYC_DATA_DIR or ../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", type=int, default=300, help="calibration images (crops) of the training subjects")
    parser.add_argument("--timing-inputs", type=int, default=150, help="held-out inputs timed per model")
    parser.add_argument("--report", type=Path, help="also write the report (JSON) here")
    commands = parser.add_subparsers(dest="command", required=True)
    mesh = commands.add_parser("face-mesh", help="BlazeFace, landmarks, blendshapes (models/mediapipe)")
    mesh.add_argument("--out", type=Path, default=FACE_MESH_DIR, help="where kept int8 models go (default models/mediapipe)")
    mesh.add_argument("--models", nargs="*", choices=sorted(FACE_MESH_MODELS), help="only these (default: all)")
    mesh.add_argument("--held-out", type=int, default=200, help="held-out frames (plus every photo)")
    mesh.add_argument("--benchmark-frames", type=int, default=40,
                      help="NUAA live frames in the quality-benchmark parity set (plus every photo)")
    live = commands.add_parser("liveness", help="a liveness model (ONNX with its .json metadata)")
    live.add_argument("model", type=Path)
    live.add_argument("--out", type=Path, help="default: <model stem>-int8.onnx beside it")
    live.add_argument("--cache-dir", type=Path, help="crop cache (default: the training code's)")
    live.add_argument("--recipes", nargs="*", choices=RECIPES, help="recipes to try (default: all; the best passing one is kept)")
    args = parser.parse_args(argv)
    report = face_mesh(args) if args.command == "face-mesh" else liveness(args)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    kept = report.get("kept") if "kept" in report else any(m["kept"] for m in report["models"].values())
    print(f"kept: {kept}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
