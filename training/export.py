"""ONNX export of a trained checkpoint, its metadata file, and a PyTorch/ONNX parity check.

The graph takes ``image``: float32 (N, S, S, 3) RGB in 0..255 (N dynamic) and returns
``spoof_probability``: (N,). Normalisation and the sigmoid are inside the graph, so the
server only decodes, detects, crops and casts: there is no preprocessing for training and
serving to disagree on.

The metadata (``<model>.json``) is the server's contract: ``version``, ``crop``
(``CropRule.to_dict()``), ``threshold`` (= the default profile's), ``profiles``
(``strict``/``balanced``/``lenient``: threshold, target, val_apcer, val_bpcer, review_band)
and ``default_profile``; plus the ONNX file's ``onnx.sha256`` (``publish`` and
``ekyc.model_store`` verify downloads against it), the input spec, licences, a parity
probe and the training/validation record.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ekyc.model_store import sha256_file
from ekyc.models.liveness import INPUT_NAME, OUTPUT_NAME
from ekyc.ort_session import cpu_session
from ekyc.training.model import SpoofProbability
OPSET = 17
# fp32 MobileNetV2 is 9 MB, EfficientNet-B0 16 MB: every supported backbone must fit.
MAX_MODEL_BYTES = 20 * 1024 * 1024
DEFAULT_VERSION = "liveness-mnv2-128-v1"
SHORT_NAMES = {"mobilenet_v3_small": "mnv3s", "mobilenet_v2": "mnv2", "efficientnet_b0": "effb0"}


def default_version(architecture: str, size: int, scale: float, tag: str = "v2") -> str:
    """``liveness-<arch>-<size>-x<scale>-<tag>``, e.g. ``liveness-mnv2-128-x1.2-v2``."""
    return f"liveness-{SHORT_NAMES.get(architecture, architecture)}-{size}-x{scale:g}-{tag}"

LICENCE_NOTES = {
    "model": "Apache-2.0 (the weights trained by this project, as the rest of the project)",
    "initialisation": "torchvision MobileNetV2 IMAGENET1K_V1 weights, BSD-3-Clause (torchvision); "
    "ImageNet's own terms of access are for non-commercial research",
    "training_data": "NUAA Photograph Imposter Database (research database, Tan et al., ECCV 2010) and two "
    "public demo replay sets with no licence stated: the terms under which the weights may be used "
    "commercially are unclear; see models/liveness.md",
}


def probe_batch(size: int = 128, n: int = 4) -> np.ndarray:
    """A fixed, analytic (no RNG) uint8 batch for parity checks of a shipped model."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    out = []
    for k in range(n):
        r = 127.5 + 127.5 * np.sin(2 * np.pi * (xx * (k + 1) + yy * 0.5))
        g = 255.0 * ((xx + yy * (k + 1) / n) % 1.0)
        b = 255.0 * np.exp(-(((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * (4 + 6 * k)))
        out.append(np.stack([r, g, b], axis=-1))
    return np.clip(np.round(np.stack(out)), 0, 255).astype(np.uint8)


def export_onnx(net: torch.nn.Module, path: Path | str, size: int = 128) -> Path:
    """Write ``net`` (logit model) wrapped with a sigmoid as ONNX opset 17, dynamic batch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = SpoofProbability(net).eval()
    dummy = torch.from_numpy(probe_batch(size, 2)).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, over the {MAX_MODEL_BYTES}-byte budget")
    return path


def onnx_scores(onnx_path: Path | str, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Spoof probabilities straight from an ONNX file (no metadata needed)."""
    session = cpu_session(onnx_path, intra_op_threads=2)
    out = []
    for start in range(0, len(crops), batch_size):
        batch = np.asarray(crops[start : start + batch_size], dtype=np.float32)
        out.append(session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0].reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def torch_scores(net: torch.nn.Module, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    wrapper = SpoofProbability(net).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(crops), batch_size):
            batch = torch.from_numpy(np.asarray(crops[start : start + batch_size], dtype=np.float32))
            out.append(wrapper(batch).numpy().reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def parity(torch_model: torch.nn.Module, onnx_path: Path | str, crops: np.ndarray) -> float:
    """Max |PyTorch - ONNX Runtime| spoof probability over ``crops`` (uint8 NHWC)."""
    a = torch_scores(torch_model, crops)
    b = onnx_scores(onnx_path, crops)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def write_metadata(
    onnx_path: Path | str,
    net: torch.nn.Module,
    crop_rule,
    threshold: float | None = None,
    version: str = DEFAULT_VERSION,
    extra: dict | None = None,
    profiles: dict | None = None,
    default_profile: str = "balanced",
) -> Path:
    """Write ``<model>.json`` next to the ONNX file: everything the server and a reader need.

    With ``profiles`` (``ekyc.training.calibrate.metadata_profiles``) the top-level
    ``threshold`` is the default profile's; without, ``threshold`` must be given.
    """
    onnx_path = Path(onnx_path)
    size = crop_rule.size
    probe = probe_batch(size)
    if profiles:
        if default_profile not in profiles:
            raise ValueError(f"default profile {default_profile!r} is not among {sorted(profiles)}")
        threshold = profiles[default_profile]["threshold"]
    if threshold is None:
        raise ValueError("a threshold or profiles are needed")
    metadata = {
        "version": version,
        "crop": crop_rule.to_dict(),
        "threshold": float(min(1.0, max(0.0, threshold))),
        "decision": "spoof iff spoof_probability >= threshold; with a profile's review_band [lo, hi], "
        "lo <= spoof_probability < hi is UNCERTAIN (human review)",
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", size, size, 3],
            "dtype": "float32",
            "layout": "NHWC",
            "color": "RGB",
            "range": [0, 255],
            "normalisation": "inside the graph (ImageNet mean/std)",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["N"], "meaning": "probability that the face is a spoof"},
        "onnx": {"file": onnx_path.name, "opset": OPSET, "sha256": sha256_file(onnx_path),
                 "bytes": onnx_path.stat().st_size},
        "licence": LICENCE_NOTES,
        # Scores PyTorch gave for ``ekyc.training.export.probe_batch(size)`` at export time:
        # a parity check of the shipped file that needs neither the checkpoint nor data.
        "parity_probe": {
            "generator": "ekyc.training.export.probe_batch",
            "size": size,
            "n": int(len(probe)),
            "torch_spoof_probability": [float(v) for v in torch_scores(net, probe)],
        },
        **(extra or {}),
    }
    if profiles:
        metadata["profiles"] = profiles
        metadata["default_profile"] = default_profile
    path = onnx_path.with_suffix(".json")
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def update_metadata(onnx_path: Path | str, **fields) -> Path:
    path = Path(onnx_path).with_suffix(".json")
    metadata = json.loads(path.read_text())
    metadata.update(fields)
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def latency_ms(onnx_path: Path | str, size: int | dict[str, int], threads: int = 1, n: int = 200,
               warmup: int = 20) -> dict:
    """Per-face latency of one-face calls on ``threads`` ONNX Runtime threads (the server's setting).

    ``size``: the crop side of a single-input model, or ``{input name: side}`` for a model
    that takes several crops of a face (all of them are fed in each call)."""
    import time

    session = cpu_session(onnx_path, intra_op_threads=threads)
    sizes = size if isinstance(size, dict) else {INPUT_NAME: size}
    feed = {name: probe_batch(side, 1).astype(np.float32) for name, side in sizes.items()}
    for _ in range(warmup):
        session.run([OUTPUT_NAME], feed)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    times = np.sort(np.asarray(times))
    return {"threads": threads, "n": n, "median_ms": float(np.median(times)), "p90_ms": float(np.quantile(times, 0.9)),
            "min_ms": float(times[0])}
