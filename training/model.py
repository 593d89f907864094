"""The liveness network: MobileNetV2 with a one-logit head, normalisation inside the module.

Input: float32 NHWC RGB in 0..255 (exactly what the server feeds the ONNX model).
``LivenessNet`` returns the spoof logit (N,); ``SpoofProbability`` wraps it for export and
returns the spoof probability (N,).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from ekyc.training.crops import DEFAULT_CACHE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
# Where the shared checkout keeps torchvision's ImageNet weights (no network needed).
SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "models" / MOBILENET_V2_FILE
ARCHITECTURES = ("mobilenet_v2",)


def prepare_imagenet_weights(source: Path | str | None = None) -> bool:
    """Put the MobileNetV2 ImageNet file where torchvision looks for it; True when it is there.

    ``TORCH_HOME`` defaults to ``.cache/torch`` in the project. The file is looked for at
    ``source``, ``$EKYC_MOBILENET_WEIGHTS`` or the shared checkout's ``models/``.
    """
    os.environ.setdefault("TORCH_HOME", str(DEFAULT_CACHE / "torch"))
    target = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / MOBILENET_V2_FILE
    if target.is_file():
        return True
    candidates = [source, os.environ.get("EKYC_MOBILENET_WEIGHTS"), SHARED_WEIGHTS]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, target)
            return True
    return False


class LivenessNet(nn.Module):
    """uint8-range NHWC RGB -> spoof logit (N,)."""

    def __init__(self, pretrained: bool = True, dropout: float = 0.2, weights_file: Path | str | None = None):
        super().__init__()
        from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

        weights = None
        if pretrained:
            if prepare_imagenet_weights(weights_file):
                weights = MobileNet_V2_Weights.IMAGENET1K_V1
            else:
                warnings.warn(
                    f"ImageNet weights {MOBILENET_V2_FILE} not found (set EKYC_MOBILENET_WEIGHTS); "
                    "starting from random weights, expect a much weaker model",
                    stacklevel=2,
                )
        self.pretrained = weights is not None
        backbone = mobilenet_v2(weights=weights)
        self.features = backbone.features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.last_channel, 1))
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2)
        x = (x - self.mean) / self.std  # == ((x / 255) - mean) / std
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.head(x).reshape(-1)


class SpoofProbability(nn.Module):
    """The export graph: ``image`` (N,S,S,3) float 0..255 -> ``spoof_probability`` (N,)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image))


def build_model(architecture: str = "mobilenet_v2", pretrained: bool = True) -> LivenessNet:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return LivenessNet(pretrained=pretrained)


def save_checkpoint(path: Path | str, model: LivenessNet, config: dict, extra: dict | None = None) -> None:
    torch.save({"state_dict": model.state_dict(), "config": config, **(extra or {})}, path)


def load_checkpoint(path: Path | str) -> tuple[LivenessNet, dict]:
    """(model in eval mode, checkpoint dict); no ImageNet file is needed to rebuild it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = checkpoint.get("config", {})
        model = build_model(config.get("architecture", "mobilenet_v2"), pretrained=False)
        model.load_state_dict(checkpoint["state_dict"])
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, ... for foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ValueError(f"checkpoint {path} cannot be loaded ({exc.__class__.__name__}: {first})") from None
    model.eval()
    return model, checkpoint
