"""Minivision's MiniFASNetV2 / MiniFASNetV1SE (Silent-Face Anti-Spoofing, Apache-2.0) in PyTorch.

The shared ONNX files (``shared/models/minifasnet``) are checked against ``SHA256SUMS`` and
converted with onnx2torch, so they can be scored, distilled from and fine-tuned here. Two
changes, neither of which alters a single output value:

* the flatten before the classifier (a Shape/Gather/Concat/Reshape chain with a dynamic
  batch, which onnx2torch cannot give a rank) becomes an ONNX ``Flatten``;
* ``PRelu`` becomes ``max(x, a * x)`` (exact for slopes <= 1, as all of these are; else
  ``relu(x) - a * relu(-x)``): ONNX Runtime's CPU PRelu kernel with a per-channel slope
  took ~2/3 of the model's time (4.2 ms -> ~1.3 ms per face on one thread).

``MiniFASNetMember`` wraps one network for our input convention (uint8-range NHWC RGB,
float32) and returns the spoof logit ``log((1 - p_live) / p_live)``, where ``p_live`` is the
softmax of class 1 ("real" in the original code; 0 and 2 are two spoof classes).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

SHARED_MINIFASNET = Path(__file__).resolve().parents[2] / "shared" / "models" / "minifasnet"
FILES = {
    "minifasnet_v2": ("2.7_80x80_MiniFASNetV2.onnx", 2.7),
    "minifasnet_v1se": ("4_0_0_80x80_MiniFASNetV1SE.onnx", 4.0),
}
LIVE_CLASS = 1
INPUT_SIZE = 80
LICENCE = ("MiniFASNetV2 and MiniFASNetV1SE from Silent-Face Anti-Spoofing by Minivision "
           "(github.com/minivision-ai/Silent-Face-Anti-Spoofing), Apache-2.0; trained on Minivision's private data")


class TeacherFileError(ValueError):
    """A MiniFASNet file is missing or its checksum does not match SHA256SUMS."""


def models_dir() -> Path:
    import os

    env = os.environ.get("EKYC_MINIFASNET_DIR")
    if env:
        return Path(env)
    data = os.environ.get("EKYC_DATA_DIR")  # ../shared/data -> ../shared/models/minifasnet
    if not SHARED_MINIFASNET.is_dir() and data and (Path(data).parent / "models" / "minifasnet").is_dir():
        return Path(data).parent / "models" / "minifasnet"
    return SHARED_MINIFASNET


def expected_sha256(directory: Path | None = None) -> dict[str, str]:
    """``file name -> sha256`` from ``SHA256SUMS`` in the folder above the MiniFASNet folder."""
    directory = Path(directory or models_dir())
    sums = directory.parent / "SHA256SUMS"
    out = {}
    if sums.is_file():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[Path(parts[1]).name] = parts[0]
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_file(name: str, directory: Path | None = None) -> Path:
    """The ONNX file of ``name`` (``minifasnet_v2`` / ``minifasnet_v1se``), its sha256 checked."""
    directory = Path(directory or models_dir())
    path = directory / FILES[name][0]
    if not path.is_file():
        raise TeacherFileError(f"MiniFASNet file not found: {path} (set EKYC_MINIFASNET_DIR)")
    expected = expected_sha256(directory).get(path.name)
    if expected is None:
        raise TeacherFileError(f"no checksum for {path.name} in {directory.parent / 'SHA256SUMS'}")
    actual = sha256_file(path)
    if actual != expected:
        raise TeacherFileError(f"{path}: sha256 {actual} does not match SHA256SUMS ({expected})")
    return path


def _flatten_fix(model):
    """Replace the dynamic-shape flatten chain before the classifier by one ONNX Flatten."""
    from onnx import helper

    graph = model.graph
    nodes = list(graph.node)
    reshape = next(n for n in nodes if n.op_type == "Reshape")
    shape_chain = {n.output[0] for n in nodes if n.op_type in ("Shape", "Gather", "Unsqueeze", "Concat", "Constant")
                   and n.output[0].startswith(reshape.output[0].rsplit("/", 1)[0] + "/")}
    kept = [n for n in nodes if n is not reshape and n.output[0] not in shape_chain]
    at = next(i for i, n in enumerate(kept) if reshape.output[0] in n.input)
    kept.insert(at, helper.make_node("Flatten", [reshape.input[0]], [reshape.output[0]], axis=1))
    del graph.node[:]
    graph.node.extend(kept)
    return model


def fast_prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """PReLU with a per-channel slope, as ops ONNX Runtime runs fast (identical values).

    With every slope at most 1 (all of Minivision's are, -0.36..0.59), ``max(x, s * x)`` is
    PReLU exactly; otherwise ``relu(x) - s * relu(-x)``."""
    s = slope.reshape(1, -1, 1, 1) if x.dim() == 4 else slope.reshape(1, -1)
    if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export() and s.requires_grad:
        return torch.relu(x) - s * torch.relu(-x)  # training: slopes may pass 1
    if bool((slope <= 1).all()):
        return torch.maximum(x, s * x)
    return torch.relu(x) - s * torch.relu(-x)


def _patch_prelu(gm):
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and type(gm.get_submodule(node.target)).__name__ == "OnnxPReLU":
            with gm.graph.inserting_after(node):
                new = gm.graph.call_function(fast_prelu, node.args)
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def load_torch(name: str, directory: Path | None = None) -> nn.Module:
    """MiniFASNet ``name`` as a PyTorch module: (N, 3, 80, 80) BGR 0..255 -> logits (N, 3)."""
    import onnx
    from onnx2torch import convert

    path = verified_file(name, directory)
    model = onnx.shape_inference.infer_shapes(_flatten_fix(onnx.load(str(path))))
    gm = _patch_prelu(convert(model))
    # onnx2torch keeps the PReLU slopes as buffers: make them trainable like the rest
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            owner_name, _, attr = node.target.rpartition(".")
            owner = gm.get_submodule(owner_name) if owner_name else gm
            value = getattr(owner, attr)
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter) and value.is_floating_point():
                if attr in owner._buffers:
                    del owner._buffers[attr]
                owner.register_parameter(attr, nn.Parameter(value.detach().clone()))
    return gm.eval()


class MiniFASNetMember(nn.Module):
    """uint8-range NHWC RGB (N, 80, 80, 3) -> spoof logit (N,), via the BGR network's live softmax."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def class_logits(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).flip(1)  # RGB -> BGR, values stay 0..255 as the original expects
        return self.net(x)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.class_logits(image)
        live = logits[:, LIVE_CLASS]
        others = torch.cat([logits[:, :LIVE_CLASS], logits[:, LIVE_CLASS + 1 :]], dim=1)
        return torch.logsumexp(others, dim=1) - live  # log(p_spoof / p_live)


def member(name: str, directory: Path | None = None) -> MiniFASNetMember:
    return MiniFASNetMember(load_torch(name, directory))
