"""The liveness network: a torchvision backbone (MobileNetV3-Small, MobileNetV2, EfficientNet-B0)
with a one-logit head, normalisation inside the module.

ImageNet initialisation is used where torchvision's weight file is on disk (no download): in
this project only MobileNetV2's (``shared/models/mobilenet_v2-b0353104.pth``); the others
start from random weights with a warning unless their files are put in ``$EKYC_WEIGHTS_DIR``.

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
SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
SHARED_WEIGHTS = SHARED_MODELS / MOBILENET_V2_FILE
# architecture -> (torchvision builder, weights enum name); the file name comes from the enum's URL
BACKBONES = {
    "mobilenet_v3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights"),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights"),
}
ARCHITECTURES = tuple(BACKBONES)


def _weights_enum(architecture: str):
    import torchvision.models as tvm

    return getattr(tvm, BACKBONES[architecture][1]).IMAGENET1K_V1


def weights_file_name(architecture: str) -> str:
    return Path(_weights_enum(architecture).url).name


def prepare_imagenet_weights(source: Path | str | None = None, architecture: str = "mobilenet_v2") -> bool:
    """Put the ImageNet file of ``architecture`` where torchvision looks for it; True when it is there.

    ``TORCH_HOME`` defaults to ``.cache/torch`` in the project. The file (torchvision's own
    name, e.g. ``mobilenet_v2-b0353104.pth``) is looked for at ``source``, in
    ``$EKYC_WEIGHTS_DIR``, ``$EKYC_MOBILENET_WEIGHTS`` (MobileNetV2 only) and the shared
    checkout's ``models/``. Nothing is downloaded.
    """
    os.environ.setdefault("TORCH_HOME", str(DEFAULT_CACHE / "torch"))
    name = weights_file_name(architecture)
    target = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / name
    if target.is_file():
        return True
    candidates = [source]
    if os.environ.get("EKYC_WEIGHTS_DIR"):
        candidates.append(Path(os.environ["EKYC_WEIGHTS_DIR"]) / name)
    if architecture == "mobilenet_v2":
        candidates.append(os.environ.get("EKYC_MOBILENET_WEIGHTS"))
    candidates.append(SHARED_MODELS / name)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, target)
            return True
    return False


class LivenessNet(nn.Module):
    """uint8-range NHWC RGB -> spoof logit (N,): a torchvision backbone's features, pooling, one unit."""

    def __init__(self, pretrained: bool = True, dropout: float = 0.2, weights_file: Path | str | None = None,
                 architecture: str = "mobilenet_v2"):
        super().__init__()
        import torchvision.models as tvm

        if architecture not in BACKBONES:
            raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
        weights = None
        if pretrained:
            if prepare_imagenet_weights(weights_file, architecture):
                weights = _weights_enum(architecture)
            else:
                warnings.warn(
                    f"ImageNet weights {weights_file_name(architecture)} for {architecture} not found "
                    "(put the file in $EKYC_WEIGHTS_DIR); starting from random weights",
                    stacklevel=2,
                )
        self.architecture = architecture
        self.pretrained = weights is not None
        backbone = getattr(tvm, BACKBONES[architecture][0])(weights=weights)
        self.features = backbone.features
        # torchvision's MobileNetV3 and EfficientNet use BatchNorm momentum 0.01, made for long
        # ImageNet schedules; a few hundred CPU steps need the usual 0.1 for sane running stats.
        for module in self.features.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1
        with torch.no_grad():
            channels = self.features.eval()(torch.zeros(1, 3, 64, 64)).shape[1]
        self.features.train()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, 1))
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


def build_model(architecture: str = "mobilenet_v2", pretrained: bool = True, dropout: float = 0.2) -> LivenessNet:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return LivenessNet(pretrained=pretrained, architecture=architecture, dropout=dropout)


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
