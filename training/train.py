"""Fine-tune the liveness network on cached face crops.

Augmentations work on the uint8 crop, before the model's own normalisation, and target
the shortcuts a small spoof set offers: image size/sharpness (down-then-up rescale),
compression (JPEG re-encoding), exposure and colour (brightness/contrast/saturation),
framing (small shift/scale jitter) and pose (horizontal flip).

Each epoch draws at most ``max_per_group`` crops per (subject, label), so subjects with
hundreds of near-identical video frames do not drown the others, and an epoch stays short
on a CPU. Model selection: lowest validation EER, ties to the lower validation loss;
training stops after ``patience`` epochs without improvement.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ekyc.training.crops import load_crops
from ekyc.training.data import Sample
from ekyc.training.metrics import eer, roc_auc
from ekyc.training.model import build_model, save_checkpoint


@dataclass
class AugmentConfig:
    flip_p: float = 0.5
    rescale_p: float = 0.4
    rescale_range: tuple[float, float] = (0.3, 0.8)  # downscale factor before scaling back up
    jitter_p: float = 0.8
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (35, 95)
    shift: float = 0.06  # max shift, share of the side
    scale: float = 0.1  # max zoom in/out


@dataclass
class TrainConfig:
    architecture: str = "mobilenet_v2"
    pretrained: bool = True
    epochs: int = 15
    patience: int = 5
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    spoof_weight: float = 1.5  # pos_weight = spoof_weight * n_live / n_spoof: favours spoof recall
    max_per_group: int = 150  # crops drawn per (subject, label) and epoch; 0 = all
    eval_batch_size: int = 64
    num_threads: int = 2
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = dict(data)
        augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("augment", {}).items()})
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known, augment=augment)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def augment_crop(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One random augmentation of a uint8 (S, S, 3) RGB crop; returns uint8 of the same shape."""
    size = crop.shape[0]
    out = crop
    if cfg.shift > 0 or cfg.scale > 0:
        zoom = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
        dx, dy = rng.uniform(-cfg.shift, cfg.shift, size=2) * size
        c = (size - 1) / 2.0
        matrix = np.array([[zoom, 0, c - zoom * c + dx], [0, zoom, c - zoom * c + dy]], dtype=np.float64)
        out = cv2.warpAffine(out, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < cfg.flip_p:
        out = out[:, ::-1]
    if rng.random() < cfg.rescale_p:
        factor = rng.uniform(*cfg.rescale_range)
        small = max(8, int(round(size * factor)))
        out = cv2.resize(np.ascontiguousarray(out), (small, small), interpolation=cv2.INTER_AREA)
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.jitter_p:
        x = out.astype(np.float32)
        x *= 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
        mean = x.mean()
        x = (x - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
        gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        x = (x - gray[..., None]) * (1.0 + rng.uniform(-cfg.saturation, cfg.saturation)) + gray[..., None]
        out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_p:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out, dtype=np.uint8)


def epoch_indices(groups: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffled indices with at most ``cap`` per group (0 = no cap)."""
    chosen = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if cap and members.size > cap:
            members = rng.choice(members, size=cap, replace=False)
        chosen.append(members)
    indices = np.concatenate(chosen)
    rng.shuffle(indices)
    return indices


def predict_logits(model: nn.Module, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(crops), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + batch_size])).float()
            out.append(model(batch).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def train(
    train_items: list[tuple[Sample, Path]],
    val_items: list[tuple[Sample, Path]],
    config: TrainConfig,
    run_dir: Path | str,
    progress: bool = True,
    extra_config: dict | None = None,
) -> dict:
    """Train, keep the best checkpoint in ``run_dir/best.pt``; returns a summary dict."""
    from tqdm import tqdm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    if not train_items or not val_items:
        raise ValueError("training needs crops in both the train and the validation split")

    x_train = load_crops([p for _, p in train_items])
    y_train = np.array([s.label for s, _ in train_items], dtype=np.float32)
    groups = np.array([f"{s.subject}/{s.label}" for s, _ in train_items])
    x_val = load_crops([p for _, p in val_items])
    y_val = np.array([s.label for s, _ in val_items], dtype=np.float32)
    if len(set(y_train.tolist())) < 2 or len(set(y_val.tolist())) < 2:
        raise ValueError("train and validation splits each need live and spoof crops")

    n_spoof = float(y_train.sum())
    pos_weight = config.spoof_weight * (len(y_train) - n_spoof) / n_spoof
    criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    model = build_model(config.architecture, pretrained=config.pretrained)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = len(epoch_indices(groups, config.max_per_group, np.random.default_rng(0)))
    steps_per_epoch = math.ceil(per_epoch / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, total_steps, warmup))

    full_config = {
        **asdict(config),
        "pretrained_loaded": model.pretrained,
        "pos_weight": pos_weight,
        "n_train": len(train_items),
        "n_val": len(val_items),
        "crops_per_epoch": per_epoch,
        "torch": str(torch.__version__),
        **(extra_config or {}),
    }
    (run_dir / "config.json").write_text(json.dumps(full_config, indent=2) + "\n")

    history: list[dict] = []
    best: dict | None = None
    stale = 0
    started = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        t0 = time.monotonic()
        model.train()
        indices = epoch_indices(groups, config.max_per_group, rng)
        total_loss, seen = 0.0, 0
        bar = tqdm(
            range(0, len(indices), config.batch_size),
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        )
        for start in bar:
            idx = indices[start : start + config.batch_size]
            batch = np.stack([augment_crop(x_train[i], rng, config.augment) for i in idx])
            images = torch.from_numpy(batch).float()
            targets = torch.from_numpy(y_train[idx])
            loss = criterion(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        bar.close()

        logits = predict_logits(model, x_val, config.eval_batch_size)
        val_loss = float(criterion(torch.from_numpy(logits), torch.from_numpy(y_val)))
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        val_eer, val_threshold = eer(probs, y_val)
        record = {
            "epoch": epoch,
            "train_loss": total_loss / max(seen, 1),
            "val_loss": val_loss,
            "val_eer": val_eer,
            "val_eer_threshold": val_threshold,
            "val_auc": roc_auc(probs, y_val),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.monotonic() - t0,
        }
        history.append(record)
        improved = best is None or (record["val_eer"], record["val_loss"]) < (best["val_eer"], best["val_loss"])
        if improved:
            best = dict(record)
            stale = 0
            save_checkpoint(run_dir / "best.pt", model, full_config, {"epoch": epoch, "val": record})
        else:
            stale += 1
        (run_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        print(
            f"epoch {epoch}: train_loss {record['train_loss']:.4f} val_loss {val_loss:.4f} "
            f"val_eer {val_eer:.4f} val_auc {record['val_auc']:.4f} "
            f"({record['seconds']:.0f}s){' *' if improved else ''}",
            file=sys.stderr,
        )
        if stale >= config.patience:
            print(f"early stop: no val EER improvement for {stale} epochs", file=sys.stderr)
            break
    summary = {
        "run_dir": str(run_dir),
        "checkpoint": str(run_dir / "best.pt"),
        "best": best,
        "epochs_run": len(history),
        "seconds": time.monotonic() - started,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def new_run_dir(runs_root: Path | str) -> Path:
    runs_root = Path(runs_root)
    run_dir = runs_root / _timestamp()
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = runs_root / f"{_timestamp()}-{n}"
    return run_dir
