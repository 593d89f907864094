"""Training for capture setups never seen: balanced draws, camera randomisation, a teacher.

One recipe, two kinds of member:

* ``mobilenet_v2`` (our ``LivenessNet`` on the 1.2x, 128 px crop), trained on hard labels
  plus distillation towards the MiniFASNet V2+V1SE teacher (the mean of their spoof
  probabilities, computed on the same augmented face through their own crops);
* ``minifasnet_v2`` / ``minifasnet_v1se`` fine-tuned from Minivision's weights on their own
  crops, with a learning-without-forgetting term (KL divergence to the original network's
  3-class output on the same augmented input) so that what they learnt from their large
  private data set is kept where ours says nothing.

Every epoch draws ``per_group`` faces from every (capture setup, label) group, each person of
a group equally often, so no setup's global look (brightness, colour cast, sharpness, size)
can tell live from spoof; augmentations (``ekyc.training.augment``, with the camera exposure
and white-balance randomisation on) are drawn from one distribution for live and spoof,
and the same draw is applied to every crop of a face (one seed per face). Synthetic prints
and replays (``synthesize``) are made from live faces of every setup, then augmented like
the rest, so they also appear in dim and bright light. Fixed epochs, no early stopping:
a model is judged by leave-one-setup-out (``ekyc.training.loso``), never by a split inside
the setups it trained on.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ekyc.training.augment import AugmentConfig, augment_crop, synthesize
from ekyc.training.data import LIVE, SPOOF
from ekyc.training.facecrops import CropSpec, FaceArrays

SPECS = {
    "mobilenet_v2": CropSpec("face_x1.2", 128, 1.2, "replicate"),
    "minifasnet_v2": CropSpec("face_x2.7", 80, 2.7, "shift"),
    "minifasnet_v1se": CropSpec("face_x4", 80, 4.0, "shift"),
}
TEACHERS = ("minifasnet_v2", "minifasnet_v1se")


def loso_augment() -> AugmentConfig:
    return AugmentConfig(camera_p=0.5)


@dataclass
class MemberConfig:
    member: str = "mobilenet_v2"
    epochs: int = 3
    per_group: int = 200  # faces per (setup, label) and epoch
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    synth_ratio: float = 0.3  # synthetic spoofs per live face drawn
    distill_weight: float = 1.0  # mobilenet_v2: weight of the teacher's soft target
    lwf_weight: float = 1.0  # minifasnet: weight of the KL term to the original network
    seed: int = 0
    num_threads: int = 2
    augment: AugmentConfig = field(default_factory=loso_augment)

    @classmethod
    def from_dict(cls, data: dict) -> "MemberConfig":
        data = dict(data)
        augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("augment", {}).items()
                                   if k in AugmentConfig.__dataclass_fields__})
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__}, augment=augment)


def balanced_draw(arrays: FaceArrays, per_group: int, rng: np.random.Generator) -> np.ndarray:
    """``per_group`` indices from each (setup, label) group, each subject of a group equally likely."""
    sources = np.array([s.source for s in arrays.samples], dtype=object)
    labels = np.array([s.label for s in arrays.samples])
    subjects = np.array([s.subject for s in arrays.samples], dtype=object)
    chosen = []
    for src in sorted(set(sources.tolist())):
        for lab in (LIVE, SPOOF):
            members = np.flatnonzero((sources == src) & (labels == lab))
            if not members.size:
                continue
            _, inverse, counts = np.unique(subjects[members], return_inverse=True, return_counts=True)
            p = 1.0 / counts[inverse]
            chosen.append(rng.choice(members, size=per_group, replace=members.size < per_group, p=p / p.sum()))
    out = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    rng.shuffle(out)
    return out


def _augmented(crop: np.ndarray, seed: int, cfg: AugmentConfig, synth: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if synth:
        crop = synthesize(crop, rng)[0]
    return augment_crop(crop, rng, cfg)


def build_member(name: str) -> nn.Module:
    if name == "mobilenet_v2":
        from ekyc.training.model import build_model

        return build_model("mobilenet_v2", pretrained=True, dropout=0.2)
    from ekyc.training.minifasnet import member

    return member(name)


def _freeze_batchnorm(module: nn.Module) -> None:
    """Keep the pretrained statistics (MiniFASNet's one BatchNorm1d) while fine-tuning."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.eval()


def train_member(arrays: FaceArrays, config: MemberConfig, run_dir: Path | str | None = None,
                 progress: bool = True) -> nn.Module:
    """Train one member on ``arrays`` (every crop the recipe needs); returns it in eval mode."""
    from ekyc.training.train import seed_everything

    torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    spec = SPECS[config.member]
    net = build_member(config.member)
    if config.epochs == 0:  # the member as it comes (ImageNet / Minivision weights)
        return net.eval()
    is_student = config.member == "mobilenet_v2"
    teachers = [build_member(t).eval() for t in TEACHERS] if is_student else []
    original = build_member(config.member).eval() if not is_student else None
    for t in teachers + ([original] if original is not None else []):
        for p in t.parameters():
            p.requires_grad_(False)
    labels = np.array([s.label for s in arrays.samples], dtype=np.float32)
    live_idx = np.flatnonzero(labels == LIVE)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    n_groups = len({(s.source, s.label) for s in arrays.samples})
    n_synth = int(round(config.synth_ratio * config.per_group * n_groups / 2))
    per_epoch = config.per_group * n_groups + n_synth
    steps = math.ceil(per_epoch / config.batch_size) * config.epochs
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: (k + 1) / warmup if k < warmup else 0.5 * (1 + math.cos(math.pi * (k - warmup) / max(1, steps - warmup))))
    history = []
    started = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        net.train()
        if not is_student:
            _freeze_batchnorm(net)
        real = balanced_draw(arrays, config.per_group, rng)
        synth = rng.choice(live_idx, size=n_synth, replace=True) if n_synth and live_idx.size else np.zeros(0, np.int64)
        order = np.concatenate([real, synth])
        fake = np.concatenate([np.zeros(real.size, bool), np.ones(synth.size, bool)])
        perm = rng.permutation(order.size)
        order, fake = order[perm], fake[perm]
        seeds = rng.integers(0, 2**62, size=order.size)
        total, seen, t0 = 0.0, 0, time.monotonic()
        for start in range(0, order.size, config.batch_size):
            idx, f, sd = order[start:start + config.batch_size], fake[start:start + config.batch_size], seeds[start:start + config.batch_size]
            x = torch.from_numpy(np.stack([_augmented(arrays.arrays[spec.name][i], s, config.augment, ff)
                                           for i, s, ff in zip(idx, sd, f)])).float()
            y = torch.from_numpy(np.where(f, 1.0, labels[idx]).astype(np.float32))
            if is_student:
                logit = net(x)
                loss_vec = nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none")
                if config.distill_weight > 0 and (~f).any():
                    with torch.no_grad():
                        t_logits = []
                        for name, teacher in zip(TEACHERS, teachers):
                            ts = SPECS[name]
                            xt = torch.from_numpy(np.stack([_augmented(arrays.arrays[ts.name][i], s, config.augment, ff)
                                                            for i, s, ff in zip(idx, sd, f)])).float()
                            t_logits.append(teacher(xt))
                        soft = torch.sigmoid(torch.stack(t_logits, 1)).mean(1)
                    distill = nn.functional.binary_cross_entropy_with_logits(logit, soft, reduction="none")
                    loss_vec = loss_vec + config.distill_weight * distill * torch.from_numpy((~f).astype(np.float32))
                loss = loss_vec.mean()
            else:
                class_logits = net.class_logits(x)
                logp = torch.log_softmax(class_logits, 1)
                p_live_log = logp[:, 1]
                p_spoof_log = torch.logsumexp(torch.cat([logp[:, :1], logp[:, 2:]], 1), 1)
                hard = -(y * p_spoof_log + (1 - y) * p_live_log)
                with torch.no_grad():
                    ref = torch.softmax(original.class_logits(x), 1)
                lwf = torch.sum(ref * (torch.log(ref.clamp_min(1e-8)) - logp), 1)
                loss = (hard + config.lwf_weight * lwf).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.item()) * idx.size
            seen += idx.size
        record = {"epoch": epoch, "loss": total / max(seen, 1), "seconds": time.monotonic() - t0}
        history.append(record)
        if progress:
            print(f"{config.member} epoch {epoch}/{config.epochs}: loss {record['loss']:.4f} ({record['seconds']:.0f}s)",
                  file=sys.stderr, flush=True)
    net.eval()
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": net.state_dict(), "config": asdict(config)}, run_dir / f"{config.member}.pt")
        (run_dir / f"{config.member}.json").write_text(json.dumps(
            {"config": asdict(config), "history": history, "seconds": time.monotonic() - started,
             "n_train": len(arrays), "setups": sorted({s.source for s in arrays.samples})}, indent=2) + "\n")
    return net


def load_member(name: str, checkpoint: Path | str) -> nn.Module:
    net = build_member(name) if name != "mobilenet_v2" else _bare_mobilenet()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict(state)
    return net.eval()


def _bare_mobilenet() -> nn.Module:
    from ekyc.training.model import build_model

    return build_model("mobilenet_v2", pretrained=False, dropout=0.2)
