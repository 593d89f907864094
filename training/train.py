"""Fine-tune the liveness network on cached face crops.

One epoch draws at most ``max_per_group`` crops per (subject, label), so subjects with
hundreds of near-identical video frames do not drown the others, and an epoch stays short
on a CPU. Optional levers, each measured on the validation split (``models/liveness.md``):

* ``synth_ratio``: spoofs synthesised from live training crops (print: halftone, paper,
  colour loss, edge; replay: moire, pixel grid, gamma, bezel, glare), this many per live
  crop drawn;
* ``hard_mining``: crops are drawn (with replacement) in proportion to their running loss,
  so live faces that look like spoofs and spoofs that pass get seen more often;
* ``loss``: BCE with ``pos_weight`` (a missed spoof costs ``spoof_weight`` x the class
  ratio) or a focal loss with the same weighting;
* ``ema_decay``: validate (and keep) an exponential moving average of the weights, which
  smooths the epoch-to-epoch swings a small validation set shows.

Model selection: the lowest validation EER of the worst attack type (each attack type
against all live faces), ties to the lower validation loss; training stops after
``patience`` epochs without improvement. Augmentations: ``ekyc.training.augment``.
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

import numpy as np
import torch
from torch import nn

from ekyc.training.augment import AugmentConfig, augment_crop, synthesize
from ekyc.training.crops import load_crops
from ekyc.training.data import LIVE, SPOOF, Sample
from ekyc.training.metrics import bpcer_at_apcer, eer, rates_by_attack, roc_auc, candidate_thresholds
from ekyc.training.model import build_model, save_checkpoint

__all__ = ["AugmentConfig", "TrainConfig", "augment_crop", "train", "new_run_dir", "seed_everything",
           "epoch_indices", "predict_logits", "val_metrics"]


@dataclass
class TrainConfig:
    architecture: str = "mobilenet_v2"
    pretrained: bool = True
    dropout: float = 0.2
    # defaults = the recipe of the shipped model (candidate F in models/reports/candidates.md)
    epochs: int = 4
    patience: int = 2
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    loss: str = "focal"  # "bce" (pos_weight) or "focal"
    focal_gamma: float = 2.0
    spoof_weight: float = 1.5  # pos_weight = spoof_weight * n_live / n_spoof: favours spoof recall
    max_per_group: int = 60  # crops drawn per (subject, label) and epoch; 0 = all
    synth_ratio: float = 0.5  # synthetic spoofs per live crop drawn; 0 = off
    synth_kinds: tuple[str, ...] = ("print", "replay")
    hard_mining: bool = False
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights
    select: str = "eer_max"  # "eer_max" (worst attack type's EER) or "eer" (pooled)
    eval_batch_size: int = 64
    num_threads: int = 2
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = dict(data)
        augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("augment", {}).items()
                                   if k in AugmentConfig.__dataclass_fields__})
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known, augment=augment)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_indices(groups: np.ndarray, cap: int, rng: np.random.Generator, weights: np.ndarray | None = None) -> np.ndarray:
    """Shuffled indices with at most ``cap`` per group (0 = no cap).

    With ``weights`` (hard mining) each group's ``min(cap, size)`` draws are made with
    replacement in proportion to the weights.
    """
    chosen = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        n = min(cap, members.size) if cap else members.size
        if weights is not None:
            p = weights[members] / weights[members].sum()
            members = rng.choice(members, size=n, replace=True, p=p)
        elif n < members.size:
            members = rng.choice(members, size=n, replace=False)
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


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: float, loss: str = "bce",
                  gamma: float = 2.0) -> torch.Tensor:
    """Per-sample loss: BCE with spoofs weighted ``pos_weight``, optionally focal-modulated."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weight = 1.0 + (pos_weight - 1.0) * targets
    if loss == "focal":
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        bce = bce * (1 - p_t).pow(gamma)
    elif loss != "bce":
        raise ValueError(f"unknown loss {loss!r} (bce or focal)")
    return bce * weight


def val_metrics(probs: np.ndarray, labels: np.ndarray, attacks: list[str]) -> dict:
    """Validation summary: pooled and per-attack-type EER, AUC, BPCER at worst-type APCER <= 1 %."""
    labels = np.asarray(labels).astype(np.int64)
    out = {"val_eer": eer(probs, labels)[0], "val_auc": roc_auc(probs, labels)}
    attacks_arr = np.asarray([a or "unknown" for a in attacks], dtype=object)
    per_attack = {}
    for name in sorted(set(attacks_arr[labels == 1].tolist())):
        mask = (labels == 0) | (attacks_arr == name)
        per_attack[name] = eer(probs[mask], labels[mask])[0]
    out["val_eer_by_attack"] = per_attack
    out["val_eer_max"] = max(per_attack.values())
    thresholds = candidate_thresholds(probs)
    by_attack, bpcers = rates_by_attack(probs, labels, list(attacks_arr), thresholds)
    apcer_max = np.max(np.stack(list(by_attack.values())), axis=0)
    out["val_bpcer_at_apcer_1pct_max"] = float(np.min(bpcers[apcer_max <= 0.01 + 1e-12]))
    out["val_bpcer_at_apcer_1pct"] = bpcer_at_apcer(probs, labels, 0.01)[0]
    return out


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
    if config.select not in ("eer_max", "eer"):
        raise ValueError(f"unknown selection metric {config.select!r} (eer_max or eer)")

    x_train = load_crops([p for _, p in train_items])
    y_train = np.array([s.label for s, _ in train_items], dtype=np.float32)
    groups = np.array([f"{s.subject}/{s.label}" for s, _ in train_items])
    x_val = load_crops([p for _, p in val_items])
    y_val = np.array([s.label for s, _ in val_items], dtype=np.float32)
    attacks_val = [s.attack for s, _ in val_items]
    if len(set(y_train.tolist())) < 2 or len(set(y_val.tolist())) < 2:
        raise ValueError("train and validation splits each need live and spoof crops")
    live_pool = np.flatnonzero(y_train == LIVE)

    model = build_model(config.architecture, pretrained=config.pretrained, dropout=config.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    first = epoch_indices(groups, config.max_per_group, np.random.default_rng(0))
    n_live = float(np.sum(y_train[first] == LIVE))
    n_synth = int(round(config.synth_ratio * n_live))
    n_spoof = float(np.sum(y_train[first] == SPOOF)) + n_synth
    pos_weight = config.spoof_weight * n_live / max(n_spoof, 1.0)
    per_epoch = len(first) + n_synth
    steps_per_epoch = math.ceil(per_epoch / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, total_steps, warmup))
    loss_ema = np.ones(len(train_items), dtype=np.float64)
    averaged = None
    if config.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)

    full_config = {
        **asdict(config),
        "pretrained_loaded": model.pretrained,
        "pos_weight": pos_weight,
        "n_train": len(train_items),
        "n_val": len(val_items),
        "crops_per_epoch": per_epoch,
        "synthetic_per_epoch": n_synth,
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
        real = epoch_indices(groups, config.max_per_group, rng,
                             weights=(loss_ema + 0.05) if config.hard_mining else None)
        synth = rng.choice(live_pool, size=n_synth, replace=True) if n_synth else np.zeros(0, np.int64)
        order = np.concatenate([real, synth])
        is_synth = np.concatenate([np.zeros(real.size, bool), np.ones(synth.size, bool)])
        perm = rng.permutation(order.size)
        order, is_synth = order[perm], is_synth[perm]
        total_loss, seen = 0.0, 0
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                   disable=not progress, file=sys.stderr, leave=False)
        for start in bar:
            idx, fake = order[start : start + config.batch_size], is_synth[start : start + config.batch_size]
            images, targets = [], []
            for i, f in zip(idx, fake):
                crop = synthesize(x_train[i], rng, tuple(config.synth_kinds))[0] if f else x_train[i]
                images.append(augment_crop(crop, rng, config.augment))
                targets.append(1.0 if f else y_train[i])
            logits = model(torch.from_numpy(np.stack(images)).float())
            per_sample = weighted_loss(logits, torch.tensor(targets, dtype=torch.float32), pos_weight,
                                       config.loss, config.focal_gamma)
            loss = per_sample.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if averaged is not None:
                averaged.update_parameters(model)
            values = per_sample.detach().numpy().astype(np.float64)
            for i, f, v in zip(idx, fake, values):
                if not f:
                    loss_ema[i] = 0.5 * loss_ema[i] + 0.5 * v
            total_loss += float(loss.item()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        bar.close()

        judged = averaged.module if averaged is not None else model
        logits = predict_logits(judged, x_val, config.eval_batch_size)
        val_loss = float(weighted_loss(torch.from_numpy(logits), torch.from_numpy(y_val), pos_weight).mean())
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        record = {
            "epoch": epoch,
            "train_loss": total_loss / max(seen, 1),
            "val_loss": val_loss,
            **val_metrics(probs, y_val, attacks_val),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.monotonic() - t0,
        }
        history.append(record)
        key = "val_eer_max" if config.select == "eer_max" else "val_eer"
        improved = best is None or (record[key], record["val_loss"]) < (best[key], best["val_loss"])
        if improved:
            best = dict(record)
            stale = 0
            save_checkpoint(run_dir / "best.pt", judged, full_config, {"epoch": epoch, "val": record})
        else:
            stale += 1
        (run_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        per_attack = " ".join(f"{k} {v:.4f}" for k, v in record["val_eer_by_attack"].items())
        print(
            f"epoch {epoch}: train_loss {record['train_loss']:.4f} val_loss {val_loss:.4f} "
            f"val_eer {record['val_eer']:.4f} ({per_attack}) val_auc {record['val_auc']:.4f} "
            f"bpcer@apcer1% {record['val_bpcer_at_apcer_1pct_max']:.4f} "
            f"({record['seconds']:.0f}s){' *' if improved else ''}",
            file=sys.stderr,
        )
        if stale >= config.patience:
            print(f"early stop: no val {key} improvement for {stale} epochs", file=sys.stderr)
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


def new_run_dir(runs_root: Path | str, name: str | None = None) -> Path:
    runs_root = Path(runs_root)
    stem = f"{_timestamp()}-{name}" if name else _timestamp()
    run_dir = runs_root / stem
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = runs_root / f"{stem}-{n}"
    return run_dir
