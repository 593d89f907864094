"""The liveness model: an ONNX Runtime session plus the metadata file that describes it."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ekyc.quality.faces import CropRule

INPUT_NAME = "image"
OUTPUT_NAME = "spoof_probability"


class ModelLoadError(Exception):
    """The model or its metadata is missing, unreadable or of the wrong shape."""


@dataclass(frozen=True)
class ModelMetadata:
    """The parts of ``<model>.json`` the server relies on."""

    version: str
    crop: CropRule
    threshold: float
    raw: dict

    @classmethod
    def load(cls, path: Path) -> "ModelMetadata":
        try:
            raw = json.loads(Path(path).read_text())
            return cls(
                version=str(raw["version"]),
                crop=CropRule.from_dict(raw["crop"]),
                threshold=float(raw["threshold"]),
                raw=raw,
            )
        except FileNotFoundError:
            raise ModelLoadError(f"model metadata not found: {path}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"model metadata {path} is invalid: {exc!r}") from None


def metadata_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LivenessModel:
    """Scores face crops: uint8 (N, S, S, 3) RGB in, spoof probability (N,) out.

    Normalisation is inside the ONNX graph, so training and serving cannot drift apart.
    """

    def __init__(self, model_path: Path, intra_op_threads: int = 1):
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        self.path = model_path
        self.metadata = ModelMetadata.load(metadata_path(model_path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, intra_op_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped errors for bad files
            raise ModelLoadError(f"model {model_path} cannot be loaded: {exc}") from None
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        size = self.metadata.crop.size
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ModelLoadError(
                f"model {model_path} must have input '{INPUT_NAME}' and output '{OUTPUT_NAME}'"
            )
        shape = inputs[INPUT_NAME].shape
        if len(shape) != 4 or list(shape[1:]) != [size, size, 3]:
            raise ModelLoadError(
                f"model {model_path} input shape {shape} does not match its metadata crop size {size}"
            )

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def crop_rule(self) -> CropRule:
        return self.metadata.crop

    def score(self, crops: np.ndarray) -> np.ndarray:
        """Spoof probabilities for a batch of crops."""
        batch = np.asarray(crops, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        (probabilities,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)

    def warm_up(self) -> None:
        size = self.metadata.crop.size
        self.score(np.zeros((1, size, size, 3), dtype=np.uint8))


def resolve_threshold(configured: float, metadata: ModelMetadata) -> float:
    """The configured threshold, or the model's own when the config leaves it unset (nan)."""
    threshold = metadata.threshold if configured is None or math.isnan(configured) else configured
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within 0..1, got {threshold}")
    return float(threshold)
