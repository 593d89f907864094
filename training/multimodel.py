"""Liveness models with one or several named crop inputs, fused into one spoof probability.

A ``FusedLiveness`` holds members (our MobileNetV2 ``LivenessNet``, MiniFASNets...), each
reading one named input (a ``CropSpec``), each giving a spoof logit; the fusion is either
the mean of the members' spoof probabilities (Silent-Face's own way of combining its two
models) or a logistic combination of their logits (weights fitted on held-out scores).
It exports to ONE ONNX file whose inputs are the crops by name (float32 NHWC RGB 0..255,
dynamic batch) and whose output is ``spoof_probability``; the metadata's ``inputs`` list
says how to cut each crop. The server's ``ekyc.models.liveness.LivenessModel`` runs
such a file (or a single-input ``image`` model) through ONNX Runtime from its metadata alone;
evaluation scores every candidate, peer and ensemble through it (``open_model``, ``score_arrays``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ekyc.training.facecrops import CropSpec

OUTPUT_NAME = "spoof_probability"
LEGACY_INPUT = "image"


class FusedLiveness(nn.Module):
    """Members (module, input name) -> fused spoof probability (or fused logit with ``logit=True``)."""

    def __init__(self, specs: list[CropSpec], members: list[tuple[str, nn.Module, str]], fusion: str = "mean_prob",
                 weights: list[float] | None = None, bias: float = 0.0):
        super().__init__()
        if fusion not in ("mean_prob", "logistic"):
            raise ValueError(f"unknown fusion {fusion!r}")
        self.specs = list(specs)
        self.input_names = [s.name for s in self.specs]
        self.member_names = [m[0] for m in members]
        self.member_inputs = [self.input_names.index(m[2]) for m in members]
        self.members = nn.ModuleList([m[1] for m in members])
        self.fusion = fusion
        w = weights if weights is not None else [1.0] * len(members)
        self.register_buffer("weights", torch.tensor(w, dtype=torch.float32), persistent=True)
        self.register_buffer("bias", torch.tensor(float(bias), dtype=torch.float32), persistent=True)

    def member_logits(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(inputs[i]) for m, i in zip(self.members, self.member_inputs)], dim=1)

    def fuse(self, logits: torch.Tensor) -> torch.Tensor:
        if self.fusion == "mean_prob":
            return torch.sigmoid(logits).mean(dim=1)
        return torch.sigmoid(logits @ self.weights + self.bias)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.member_logits(*inputs))

    def describe(self) -> dict:
        return {"members": [{"name": n, "input": self.input_names[i]} for n, i in zip(self.member_names, self.member_inputs)],
                "fusion": self.fusion, "weights": [float(v) for v in self.weights], "bias": float(self.bias),
                "rule": ("spoof_probability = mean of the members' spoof probabilities" if self.fusion == "mean_prob"
                         else "spoof_probability = sigmoid(sum(weights * member spoof logits) + bias)")}


def probe_inputs(specs: list[CropSpec], n: int = 2) -> list[np.ndarray]:
    from ekyc.training.export import probe_batch

    return [probe_batch(s.size, n) for s in specs]


def export_fused(model: FusedLiveness, path: Path | str, opset: int = 17) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = tuple(torch.from_numpy(a).float() for a in probe_inputs(model.specs))
    names = model.input_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, dummy, str(path), input_names=names, output_names=[OUTPUT_NAME],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    return path


def input_specs(metadata: dict) -> list[CropSpec]:
    """The crop inputs a model's metadata describes (``inputs``, or the single legacy ``crop``)."""
    if metadata.get("inputs") and isinstance(metadata["inputs"], list):
        return [CropSpec.from_dict(d) for d in metadata["inputs"]]
    crop = metadata["crop"]
    return [CropSpec(LEGACY_INPUT, int(crop["size"]), float(crop["scale"]), "replicate")]


def open_model(path: Path | str, intra_op_threads: int = 2):
    """The model as the server runs it: ``ekyc.models.liveness.LivenessModel`` (ONNX Runtime)."""
    from ekyc.models.liveness import LivenessModel

    return LivenessModel(Path(path), intra_op_threads=intra_op_threads)


def model_specs(model) -> list[CropSpec]:
    return [CropSpec.from_input(name, rule) for name, rule in model.inputs]


def score_arrays(model, arrays: dict[str, np.ndarray], batch_size: int = 128) -> np.ndarray:
    """Spoof probabilities of a LivenessModel for cached crops (one array per input name)."""
    names = [name for name, _ in model.inputs]
    n = len(arrays[names[0]])
    out = [model.score_inputs({name: arrays[name][i : i + batch_size] for name in names})
           for i in range(0, n, batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def write_fused_metadata(path: Path | str, model: FusedLiveness, version: str, extra: dict | None = None,
                         threshold: float = 0.5) -> Path:
    """Metadata of a fused model: its inputs (crop rules) and fusion, plus ``extra``."""
    from ekyc.training.export import sha256_file

    path = Path(path)
    specs = model.specs
    meta = {
        "version": version,
        "inputs": [{**s.to_dict(), "shape": ["N", s.size, s.size, 3], "dtype": "float32", "layout": "NHWC",
                    "color": "RGB", "range": [0, 255]} for s in specs],
        "crop": {"size": specs[0].size, "scale": specs[0].scale, "border": "replicate" if specs[0].fit == "replicate" else "shift"},
        "threshold": float(threshold),
        "output": {"name": OUTPUT_NAME, "shape": ["N"], "meaning": "probability that the face is a spoof"},
        "fusion": model.describe(),
        "onnx": {"file": path.name, "opset": 17, "sha256": sha256_file(path), "bytes": path.stat().st_size},
        **(extra or {}),
    }
    out = path.with_suffix(".json")
    out.write_text(json.dumps(meta, indent=2) + "\n")
    return out
