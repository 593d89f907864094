"""MiniFASNet members with a re-fitted head: keep the teacher, learn a small correction.

Each MiniFASNet keeps its convolutional body and its own 3-class output; a new head adds a
linear correction from its 128-d embedding (the input of its classifier):

    member spoof logit = a * (original spoof logit) + w . embedding + b

and the members' logits are summed (``FusedLiveness`` with logistic fusion, weights 1).
Starting from ``a = 0.5, w = 0`` (about the original V2+V1SE fusion), the head is fitted on
balanced, augmented faces (every setup and label weighs the same; camera and colour
randomisation drawn alike for live and spoof; synthetic prints and replays) with hard labels,
a distillation term towards the original pair's fused probability on the same augmented
face (learning without forgetting) and an L2 pull of ``w`` to zero. The bodies are frozen,
so the features of every face are computed once and each LOSO fold's head is a small,
fast fit; the exported member is the whole network and costs what the original costs.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ekyc.training.augment import augment_crop, synthesize
from ekyc.training.data import LIVE, SPOOF
from ekyc.training.distill import SPECS, TEACHERS, loso_augment
from ekyc.training.minifasnet import LIVE_CLASS

EMBEDDING = 128


def _two_outputs(gm):
    """A GraphModule sharing ``gm``'s weights that returns (embedding, class logits)."""
    from torch import fx

    graph = copy.deepcopy(gm.graph)
    output = next(n for n in graph.nodes if n.op == "output")
    prob = output.args[0]
    embedding = prob.args[0]
    output.args = ((embedding, prob),)
    graph.lint()
    return fx.GraphModule(gm, graph)


class HeadMember(nn.Module):
    """uint8-range NHWC RGB -> spoof logit: a * original spoof logit + w . embedding + b."""

    def __init__(self, net: nn.Module, weight=None, a: float = 0.5, bias: float = 0.0):
        super().__init__()
        self.body = _two_outputs(net)
        self.weight = nn.Parameter(torch.zeros(EMBEDDING) if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding (N, 128), original spoof logit (N,))."""
        x = image.permute(0, 3, 1, 2).flip(1)  # RGB -> BGR, 0..255
        embedding, logits = self.body(x)
        others = torch.cat([logits[:, :LIVE_CLASS], logits[:, LIVE_CLASS + 1 :]], dim=1)
        return embedding, torch.logsumexp(others, dim=1) - logits[:, LIVE_CLASS]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        embedding, original = self.features(image)
        return self.a * original + embedding @ self.weight + self.bias


def head_members() -> dict[str, HeadMember]:
    from ekyc.training.minifasnet import load_torch

    return {name: HeadMember(load_torch(name)).eval() for name in TEACHERS}


@torch.no_grad()
def extract(members: dict[str, HeadMember], arrays: dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
    """(N, 2 x 129) features: per member its embedding then its original spoof logit."""
    n = len(next(iter(arrays.values())))
    out = []
    for start in range(0, n, batch_size):
        parts = []
        for name, member in members.items():
            x = torch.from_numpy(np.ascontiguousarray(arrays[SPECS[name].name][start : start + batch_size])).float()
            e, o = member.features(x)
            parts += [e, o[:, None]]
        out.append(torch.cat(parts, 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(members) * (EMBEDDING + 1)), np.float32)


def augmented_views(arrays, n_views: int, synth_per_live: float, seed: int = 0):
    """Augmented copies of every face (same draw for every crop of a face) and synthetic
    spoofs from live faces: (crops by input name, source index, label, is_synthetic)."""
    cfg = loso_augment()
    rng = np.random.default_rng(seed)
    labels = np.array([s.label for s in arrays.samples])
    index, label, synth = [], [], []
    for _ in range(n_views):
        index += list(range(len(labels)))
        label += labels.tolist()
        synth += [False] * len(labels)
    live = np.flatnonzero(labels == LIVE)
    extra = rng.choice(live, size=int(round(synth_per_live * live.size)), replace=True) if live.size else []
    index += list(extra)
    label += [SPOOF] * len(extra)
    synth += [True] * len(extra)
    seeds = rng.integers(0, 2**62, size=len(index))
    out = {}
    for name in TEACHERS:
        key = SPECS[name].name
        src = arrays.arrays[key]
        views = np.empty((len(index), *src.shape[1:]), np.uint8)
        for k, (i, s, f) in enumerate(zip(index, seeds, synth)):
            r = np.random.default_rng(s)
            crop = synthesize(src[i], r)[0] if f else src[i]
            views[k] = augment_crop(crop, r, cfg)
        out[key] = views
    return out, np.asarray(index), np.asarray(label), np.asarray(synth)


@dataclass
class HeadConfig:
    distill_weight: float = 1.0
    l2: float = 1e-2  # on w (per member), relative to the mean loss
    a_pull: float = 1e-2  # pulls a towards 0.5
    epochs: int = 300  # full-batch Adam steps
    lr: float = 0.05
    seed: int = 0


def fit_head(features: np.ndarray, labels: np.ndarray, weights: np.ndarray, config: HeadConfig) -> dict:
    """Fit w, a, b per member on precomputed features; returns the parameters as lists."""
    torch.manual_seed(config.seed)
    n_members = features.shape[1] // (EMBEDDING + 1)
    x = torch.from_numpy(features.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    sw = torch.from_numpy((weights / weights.mean()).astype(np.float32))
    emb = [x[:, m * (EMBEDDING + 1) : m * (EMBEDDING + 1) + EMBEDDING] for m in range(n_members)]
    orig = [x[:, m * (EMBEDDING + 1) + EMBEDDING] for m in range(n_members)]
    scale = torch.stack([e.std(0) for e in emb]).clamp_min(1e-3)  # conditioning only; folded back below
    w = torch.zeros(n_members, EMBEDDING, requires_grad=True)
    a = torch.full((n_members,), 0.5, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    teacher = torch.sigmoid(torch.stack(orig, 1)).mean(1)
    optimizer = torch.optim.Adam([w, a, b], lr=config.lr)
    for _ in range(config.epochs):
        logit = b + sum(a[m] * orig[m] + (emb[m] / scale[m]) @ w[m] for m in range(n_members))
        hard = nn.functional.binary_cross_entropy_with_logits(logit, y, reduction="none")
        soft = nn.functional.binary_cross_entropy_with_logits(logit, teacher, reduction="none")
        loss = ((hard + config.distill_weight * soft) * sw).mean() + config.l2 * (w**2).sum() \
            + config.a_pull * ((a - 0.5) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    w_real = (w / scale).detach()
    return {"weight": w_real.numpy().tolist(), "a": a.detach().numpy().tolist(), "bias": float(b.detach())}


def balance_weights(sources: np.ndarray, labels: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """Every (setup, label) group weighs the same, every subject within a group the same."""
    w = np.zeros(len(labels), np.float64)
    groups = sorted(set(zip(sources.tolist(), labels.tolist())))
    for src, lab in groups:
        g = (sources == src) & (labels == lab)
        subj = subjects[g]
        _, inverse, counts = np.unique(subj, return_inverse=True, return_counts=True)
        share = 1.0 / counts[inverse] / len(counts)
        w[np.flatnonzero(g)] = share / len(groups)
    return w * len(labels)


def build_model(params: dict):
    """The exportable FusedLiveness of the two MiniFASNet members with fitted heads."""
    from ekyc.training.minifasnet import load_torch
    from ekyc.training.multimodel import FusedLiveness

    members = []
    for m, name in enumerate(TEACHERS):
        member = HeadMember(load_torch(name), weight=params["weight"][m], a=params["a"][m],
                            bias=params["bias"] if m == 0 else 0.0)
        members.append((name, member.eval(), SPECS[name].name))
    return FusedLiveness([SPECS[n] for n in TEACHERS], members, fusion="logistic", weights=[1.0] * len(members))


def config_dict(config: HeadConfig) -> dict:
    return asdict(config)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
