"""How well the face matcher tells people apart, measured on every identity-labelled face in
the shared data, with honest intervals; and the operating points chosen from it.

Pairs:
- selfie pairs: the NUAA people's live webcam frames across sessions, glasses and positions
  (two frames of one recording are near copies and are never paired), and the photos of
  public figures (resolution variants and crops of one photograph are one photo);
- ID-card pairs: one side rendered as an ID-card portrait (30-40 px between the eyes,
  desaturated, print texture, guilloche, laminate glare, JPEG 30-50), the other a selfie of
  another capture.

Faces go through the service's own path: the quality gate's BlazeFace box and MediaPipe
face-mesh landmarks, the five-point alignment (quality/alignment.py) and the embedding
(ekyc/models/face_match.py).
Intervals come from a bootstrap over identities (every pair of a resampled identity counts
as often as the identity was drawn), the only honest unit with so few people.

    python -m ekyc.training.face_match_eval --data-dir ../shared/data \
        --report models/reports/face-match.json --write-metadata models/face-match/sface.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ekyc.models.face_match import FaceMatcher, FaceMatcherOptions, similarity_from_cosine
from ekyc.paths import DEFAULT_MATCHER
from ekyc.quality.alignment import five_points
from ekyc.quality.faces import Face
from ekyc.quality.gate import QualityGate
from ekyc.quality.options import load_gate_options
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# The photos of public figures in faces/photos: who is in each, and which photograph it is
# (obama.jpg and obama-240p ... 1080p are one photograph; biden.jpg is cut from two_people.jpg;
# the knn_examples copies of obama.jpg, obama2.jpg and biden.jpg are byte-identical). In a
# photo of several people, faces are listed left to right.
PUBLIC_FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    "faces/photos/obama.jpg": (("obama", "obama-portrait"),),
    "faces/photos/obama-240p.jpg": (("obama", "obama-portrait"),),
    "faces/photos/obama-480p.jpg": (("obama", "obama-portrait"),),
    "faces/photos/obama-720p.jpg": (("obama", "obama-portrait"),),
    "faces/photos/obama-1080p.jpg": (("obama", "obama-portrait"),),
    "faces/photos/obama2.jpg": (("obama", "obama2"),),
    "faces/photos/obama_small.jpg": (("obama", "obama_small"),),
    "faces/photos/knn_examples/test/obama1.jpg": (("obama", "obama1"),),
    "faces/photos/two_people.jpg": (("obama", "two_people"), ("biden", "two_people")),
    "faces/photos/biden.jpg": (("biden", "two_people"),),
    "faces/photos/knn_examples/train/biden/biden2.jpg": (("biden", "biden2"),),
    "faces/photos/knn_examples/test/obama_and_biden.jpg": (("biden", "obama_and_biden"), ("obama", "obama_and_biden")),
    "faces/photos/alex-lacamoire.png": (("alex_lacamoire", "alex-lacamoire"),),
    "faces/photos/knn_examples/train/alex_lacamoire/img1.jpg": (("alex_lacamoire", "alex_img1"),),
    "faces/photos/knn_examples/test/alex_lacamoire1.jpg": (("alex_lacamoire", "alex_lacamoire1"),),
    "faces/photos/knn_examples/train/kit_harington/john1.jpeg": (("kit_harington", "john1"),),
    "faces/photos/knn_examples/train/kit_harington/john2.jpeg": (("kit_harington", "john2"),),
    "faces/photos/knn_examples/test/johnsnow_test1.jpg": (("kit_harington", "johnsnow_test1"),),
    "faces/photos/knn_examples/test/kit_with_rose.jpg": (("rose_leslie", "kit_with_rose"), ("kit_harington", "kit_with_rose")),
    "faces/photos/knn_examples/train/rose_leslie/img1.jpg": (("rose_leslie", "rose_img1"),),
    "faces/photos/knn_examples/train/rose_leslie/img2.jpg": (("rose_leslie", "rose_img2"),),
    "faces/photos/lin-manuel-miranda.png": (("lin_manuel_miranda", "lin-manuel-miranda"),),
    "faces/annotated/Tom_Cruise_avp_2014_4.jpg": (("tom_cruise", "tom_cruise"),),
}
PROFILE_TARGETS = {"strict": 0.001, "balanced": 0.01}


@dataclass(frozen=True)
class FaceItem:
    """One face of a known person. ``capture`` groups images that are one photograph or one
    recording: two items of one capture are never a pair."""

    path: str
    identity: str
    capture: str
    source: str  # "nuaa" or "photos"
    face_index: int = 0  # left-to-right position in a photo of several people
    of_faces: int = 1


def identity_faces(data_dir: Path, frames_per_capture: int = 8) -> list[FaceItem]:
    """Every identity-labelled face in the shared data: NUAA's live frames (``frames_per_capture``
    spread evenly over each recording) and the public figures' photos."""
    from ekyc.training.data import frame_number, load_manifest

    captures: dict[str, list] = defaultdict(list)
    for sample in load_manifest(data_dir):
        if sample.source != "nuaa" or sample.label != 0:
            continue
        meta = sample.meta
        capture = f"{sample.subject}/g{meta.get('glasses')}-p{meta.get('pos')}-s{meta.get('session')}"
        captures[capture].append(sample)
    items = []
    for capture, samples in sorted(captures.items()):
        samples.sort(key=lambda s: frame_number(s.path) or 0)
        picks = np.unique(np.linspace(0, len(samples) - 1, min(frames_per_capture, len(samples))).round().astype(int))
        items += [FaceItem(samples[i].path, samples[i].subject, capture, "nuaa") for i in picks]
    for path, faces in PUBLIC_FIGURES.items():
        if (data_dir / path).is_file():
            items += [FaceItem(path, who, f"photo/{photo}", "photos", index, len(faces))
                      for index, (who, photo) in enumerate(faces)]
    return items


def quality_gate() -> QualityGate:
    """The quality gate with its shipped options (quality/defaults.toml)."""
    return QualityGate(load_gate_options())


def find_face(gate: QualityGate, rgb: np.ndarray, item: FaceItem | None = None):
    """(face box, landmarks) of the item's face, as the service finds it: the gate's main face
    and its landmarks; in a photo of several people, the ``face_index``-th face from the left,
    measured on a crop around it. (None, None) when the gate finds no face with landmarks."""
    if item is None or item.of_faces == 1:
        faces, landmarks = gate.find_faces(rgb)
        return (faces[0], landmarks) if faces and landmarks is not None else (None, None)
    faces = gate.search_all_faces(rgb)
    faces = sorted(faces, key=lambda f: f.area, reverse=True)[: item.of_faces]
    if len(faces) < item.of_faces:
        return None, None
    face = sorted(faces, key=lambda f: f.x)[item.face_index]
    side = int(2.2 * max(face.width, face.height))
    x0 = max(0, face.x + face.width // 2 - side // 2)
    y0 = max(0, face.y + face.height // 2 - side // 2)
    crop = np.ascontiguousarray(rgb[y0 : y0 + side, x0 : x0 + side])
    found, landmarks = gate.find_faces(crop)
    if not found or landmarks is None:
        return None, None
    points = landmarks.points.copy()
    points[:, 0] += x0
    points[:, 1] += y0
    main = found[0]
    return Face(main.x + x0, main.y + y0, main.width, main.height, main.score), points_landmarks(landmarks, points)


def points_landmarks(landmarks, points):
    from dataclasses import replace

    return replace(landmarks, points=points)


# --- ID-card portraits -----------------------------------------------------------------------

@dataclass(frozen=True)
class CardStyle:
    """How an ID-card portrait is rendered (ranges drawn per card)."""

    interocular_px: tuple[float, float] = (30.0, 40.0)
    jpeg_quality: tuple[int, int] = (30, 50)
    saturation: tuple[float, float] = (0.2, 0.6)
    contrast: tuple[float, float] = (0.7, 0.9)
    halftone_period_px: tuple[float, float] = (1.6, 2.6)
    halftone_amount: tuple[float, float] = (0.08, 0.25)
    guilloche_amount: tuple[float, float] = (0.04, 0.12)
    glare_peak: tuple[float, float] = (0.25, 0.6)
    blur_sigma: tuple[float, float] = (0.3, 0.8)


def render_id_portrait(rgb: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                       style: CardStyle = CardStyle()) -> bytes:
    """The face with landmarks ``points`` (MediaPipe's 478) as the portrait on an ID card,
    photographed: an upright ICAO-like crop (35 x 45 proportions, eyes 40 % from the top)
    with ``interocular_px`` between the eyes, then the card's print and laminate and a
    phone's JPEG. Returns JPEG bytes."""
    five = five_points(points)
    right_eye, left_eye = five[0], five[1]
    eyes = (right_eye + left_eye) / 2.0
    iod = float(np.linalg.norm(left_eye - right_eye))
    target_iod = rng.uniform(*style.interocular_px)
    scale = target_iod / max(iod, 1e-6)
    angle = math.degrees(math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    width = int(round(target_iod / 0.29))
    height = int(round(width * 45 / 35))
    matrix = cv2.getRotationMatrix2D((float(eyes[0]), float(eyes[1])), angle, scale)
    matrix[:, 2] += (width / 2.0 - eyes[0], 0.40 * height - eyes[1])
    portrait = cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    x = portrait.astype(np.float32) / 255.0
    # Printed colour: desaturated, flatter, a slight cast.
    gray = x @ LUMA
    x = gray[..., None] + (x - gray[..., None]) * rng.uniform(*style.saturation)
    mean = float(x.mean())
    x = mean + (x - mean) * rng.uniform(*style.contrast)
    x = x * rng.uniform(0.92, 1.05, 3).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Print: an ordered dot screen, and the card's guilloche (fine sinusoidal security lines).
    period = rng.uniform(*style.halftone_period_px)
    theta = rng.uniform(0, np.pi)
    u = (xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period
    v = (-xx * np.sin(theta) + yy * np.cos(theta)) * 2 * np.pi / period
    screen = 0.5 + 0.25 * (np.cos(u) + np.cos(v))
    dots = cv2.GaussianBlur((x > screen[..., None]).astype(np.float32), (0, 0), 0.5)
    amount = rng.uniform(*style.halftone_amount)
    x = x * (1 - amount) + dots * amount
    waves = np.sin(2 * np.pi * (yy / rng.uniform(5, 9) + 0.15 * np.sin(2 * np.pi * xx / rng.uniform(25, 45))))
    ink = np.array(rng.uniform(0.3, 0.8, 3), dtype=np.float32)
    lines = (waves > 0.85).astype(np.float32)[..., None] * rng.uniform(*style.guilloche_amount)
    x = x * (1 - lines) + ink * lines
    x = cv2.GaussianBlur(x, (0, 0), rng.uniform(*style.blur_sigma))
    # Laminate glare: a soft elliptical highlight and a faint sheen band.
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    rx, ry = rng.uniform(0.15, 0.45) * width, rng.uniform(0.1, 0.3) * height
    glare = np.exp(-(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)) * rng.uniform(*style.glare_peak)
    tilt = rng.uniform(-1, 1)
    band = np.exp(-((yy - cy - tilt * (xx - cx)) / (0.08 * height)) ** 2) * rng.uniform(0.0, 0.15)
    shine = np.clip(glare + band, 0, 1)[..., None]
    x = x * (1 - shine) + shine
    x = x + rng.normal(0, 0.01, x.shape).astype(np.float32)
    out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(style.jpeg_quality[0], style.jpeg_quality[1] + 1))])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


# --- embedding the faces -----------------------------------------------------------------------

Embedder = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (rgb, landmarks (478, 3)) -> embedding


@dataclass
class Embedded:
    """Embeddings of the items whose face was found; the rest failed to enrol."""

    items: list[FaceItem]
    vectors: np.ndarray
    failed: list[FaceItem] = field(default_factory=list)
    card_of: list[str] = field(default_factory=list)  # for cards: the item they were rendered from


def decode(data: bytes) -> np.ndarray:
    from ekyc.quality.decode import decode_image

    return decode_image(data, 40_000_000)


def embed_items(gate: QualityGate, embed: Embedder, data_dir: Path, items: Sequence[FaceItem]) -> tuple[Embedded, dict]:
    """Embeddings of the items' faces (the service's path) and each found face's landmarks by path."""
    kept, vectors, failed, landmarks_of = [], [], [], {}
    for item in items:
        rgb = decode((data_dir / item.path).read_bytes())
        face, landmarks = find_face(gate, rgb, item)
        if landmarks is None:
            failed.append(item)
            continue
        kept.append(item)
        vectors.append(embed(rgb, landmarks.points))
        landmarks_of[(item.path, item.face_index)] = (rgb, landmarks.points)
    return Embedded(kept, np.asarray(vectors, dtype=np.float32), failed), landmarks_of


def card_items(embedded: Embedded, faces: dict, cards_per_capture: int = 2) -> list[tuple[FaceItem, np.ndarray, np.ndarray]]:
    """The faces that become ID cards: ``cards_per_capture`` per capture (NUAA) or photo."""
    chosen, seen = [], defaultdict(int)
    for item in embedded.items:
        if seen[item.capture] >= cards_per_capture:
            continue
        seen[item.capture] += 1
        rgb, points = faces[(item.path, item.face_index)]
        chosen.append((item, rgb, points))
    return chosen


def embed_cards(gate: QualityGate, embed: Embedder, cards, seed: int) -> Embedded:
    rng = np.random.default_rng(seed)
    kept, vectors, failed = [], [], []
    for item, rgb, points in cards:
        card = decode(render_id_portrait(rgb, points, rng))
        face, landmarks = find_face(gate, card)
        if landmarks is None:
            failed.append(item)
            continue
        kept.append(item)
        vectors.append(embed(card, landmarks.points))
    return Embedded(kept, np.asarray(vectors, dtype=np.float32).reshape(len(kept), -1), failed)


# --- pairs and metrics ------------------------------------------------------------------------------

@dataclass
class Pairs:
    """Scores of genuine and impostor pairs with the identities each pair involves."""

    scores: np.ndarray
    genuine: np.ndarray  # bool
    first: np.ndarray  # identity index of each side
    second: np.ndarray
    identities: list[str]
    sources: np.ndarray | None = None  # "nuaa/nuaa", "photos/nuaa", ...: each side's source

    def subset(self, mask: np.ndarray) -> "Pairs":
        return Pairs(self.scores[mask], self.genuine[mask], self.first[mask], self.second[mask], self.identities,
                     None if self.sources is None else self.sources[mask])

    def summary(self) -> dict:
        genuine_ids = sorted({self.identities[i] for i in self.first[self.genuine]})
        return {"genuine_pairs": int(self.genuine.sum()), "impostor_pairs": int((~self.genuine).sum()),
                "identities": len(set(self.first.tolist()) | set(self.second.tolist())),
                "identities_with_genuine_pairs": len(genuine_ids)}


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def make_pairs(left: Embedded, right: Embedded, same_set: bool) -> Pairs:
    """Every pair of an item of ``left`` with one of ``right`` from another capture; with
    ``same_set`` each unordered pair once."""
    identities = sorted({i.identity for i in left.items} | {i.identity for i in right.items})
    index = {name: k for k, name in enumerate(identities)}
    cos = cosine_matrix(left.vectors, right.vectors)
    li = np.array([index[i.identity] for i in left.items])
    ri = np.array([index[i.identity] for i in right.items])
    lc = np.array([i.capture for i in left.items], dtype=object)
    rc = np.array([i.capture for i in right.items], dtype=object)
    valid = lc[:, None] != rc[None, :]
    if same_set:
        valid &= np.triu(np.ones_like(valid, dtype=bool), k=1)
    rows, cols = np.nonzero(valid)
    ls = np.array([i.source for i in left.items], dtype=object)
    rs = np.array([i.source for i in right.items], dtype=object)
    return Pairs(cos[rows, cols].astype(np.float64), li[rows] == ri[cols], li[rows], ri[cols], identities,
                 ls[rows] + "/" + rs[cols])


def _weighted_rates(scores, genuine, weights):
    """Sorted thresholds and, at each, (weighted FMR, weighted TAR) for 'match iff score >= t'."""
    order = np.argsort(-scores, kind="stable")
    s, g, w = scores[order], genuine[order], weights[order]
    tar = np.cumsum(w * g) / max(float((w * g).sum()), 1e-300)
    fmr = np.cumsum(w * ~g) / max(float((w * ~g).sum()), 1e-300)
    return s, fmr, tar


def weighted_auc(scores, genuine, weights) -> float:
    """P(a genuine pair scores above an impostor pair), ties one half, pairs weighted."""
    g_w, i_w = weights * genuine, weights * ~genuine
    total = float(g_w.sum() * i_w.sum())
    if total <= 0:
        return math.nan
    order = np.argsort(scores, kind="stable")
    s, gw, iw = scores[order], g_w[order], i_w[order]
    unique, start = np.unique(s, return_index=True)
    gsum = np.add.reduceat(gw, start)
    isum = np.add.reduceat(iw, start)
    below = np.cumsum(isum) - isum
    return float((gsum * (below + 0.5 * isum)).sum() / total)


def threshold_at_fmr(scores, genuine, weights, target: float) -> tuple[float, float, float]:
    """(threshold, TAR, FMR): the lowest threshold, between observed scores, whose weighted FMR
    is at most ``target`` (match iff score >= threshold)."""
    s, fmr, tar = _weighted_rates(scores, genuine, weights)
    ok = np.flatnonzero(fmr <= target + 1e-12)
    if ok.size == 0:
        return float(s[0] + 1e-6), 0.0, 0.0
    k = int(ok[-1])
    # Threshold halfway to the next (lower) score, so it sits on no score.
    nxt = s[k + 1] if k + 1 < s.size else s[k] - 1e-3
    return float((s[k] + nxt) / 2.0), float(tar[k]), float(fmr[k])


def rates_at(scores, genuine, weights, threshold: float) -> dict:
    match = scores >= threshold
    gw, iw = weights * genuine, weights * ~genuine
    tar = float((gw * match).sum() / max(gw.sum(), 1e-300))
    fmr = float((iw * match).sum() / max(iw.sum(), 1e-300))
    return {"tar": tar, "fnmr": 1.0 - tar, "fmr": fmr, "balanced_accuracy": (tar + 1.0 - fmr) / 2.0}


def best_balanced_accuracy(scores, genuine, weights) -> tuple[float, float]:
    """LFW-style accuracy: the best (TAR + TNR) / 2 over thresholds, and that threshold."""
    s, fmr, tar = _weighted_rates(scores, genuine, weights)
    accuracy = (tar + 1.0 - fmr) / 2.0
    k = int(np.argmax(accuracy))
    return float(accuracy[k]), float(s[k])


def identity_bootstrap(pairs: Pairs, statistic, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """Percentile interval of ``statistic(weights)`` over resamples of identities: a pair counts
    m_a (genuine, identity a) or m_a x m_b (impostor) times when a was drawn m_a times."""
    rng = np.random.default_rng(seed)
    present = np.unique(np.concatenate([pairs.first, pairs.second]))
    n = len(pairs.identities)
    values = []
    for _ in range(n_boot):
        counts = np.bincount(rng.choice(present, size=present.size), minlength=n).astype(np.float64)
        weights = np.where(pairs.genuine, counts[pairs.first], counts[pairs.first] * counts[pairs.second])
        if not (weights * pairs.genuine).any() or not (weights * ~pairs.genuine).any():
            continue
        value = statistic(weights)
        if value is not None and np.isfinite(value):
            values.append(float(value))
    if not values:
        return [math.nan, math.nan]
    alpha = (1 - level) / 2
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]


def evaluate_pairs(pairs: Pairs, profiles: dict[str, float], n_boot: int, seed: int) -> dict:
    """AUC, TAR at FMR 1 % / 0.1 %, best balanced accuracy and each profile's rates, with
    identity-bootstrap intervals. Scores are the reported similarity (cosine clipped to 0..1)
    for the profile rates; threshold-free figures use the raw cosine."""
    s, g = pairs.scores, pairs.genuine
    ones = np.ones_like(s)
    out: dict = {**pairs.summary()}
    if not g.any() or g.all():
        return out
    out["auc"] = {"value": weighted_auc(s, g, ones), "ci95": identity_bootstrap(pairs, lambda w: weighted_auc(s, g, w), n_boot, seed)}
    for name, target in (("tar_at_fmr_1pct", 0.01), ("tar_at_fmr_0.1pct", 0.001)):
        t, tar, _ = threshold_at_fmr(s, g, ones, target)
        out[name] = {"value": tar, "threshold": t,
                     "ci95": identity_bootstrap(pairs, lambda w, target=target: threshold_at_fmr(s, g, w, target)[1], n_boot, seed)}
    accuracy, t = best_balanced_accuracy(s, g, ones)
    out["best_balanced_accuracy"] = {"value": accuracy, "threshold": t,
                                     "ci95": identity_bootstrap(pairs, lambda w: best_balanced_accuracy(s, g, w)[0], n_boot, seed)}
    similarity = similarity_from_cosine(s)
    out["profiles"] = {}
    for name, threshold in profiles.items():
        point = rates_at(similarity, g, ones, threshold)
        point["threshold"] = threshold
        point["ci95"] = {key: identity_bootstrap(pairs, lambda w, key=key: rates_at(similarity, g, w, threshold)[key], n_boot, seed)
                         for key in ("tar", "fmr", "balanced_accuracy")}
        out["profiles"][name] = point
    out["cosine_quantiles"] = {
        "genuine": np.quantile(s[g], [0.0, 0.05, 0.5, 0.95, 1.0]).round(4).tolist(),
        "impostor": np.quantile(s[~g], [0.0, 0.5, 0.99, 0.999, 1.0]).round(4).tolist(),
    }
    return out


def concat(a: Pairs, b: Pairs) -> Pairs:
    identities = sorted(set(a.identities) | set(b.identities))
    index = {name: k for k, name in enumerate(identities)}

    def remap(p: Pairs, arr):
        return np.array([index[p.identities[i]] for i in arr], dtype=np.int64)

    return Pairs(np.concatenate([a.scores, b.scores]), np.concatenate([a.genuine, b.genuine]),
                 np.concatenate([remap(a, a.first), remap(b, b.first)]),
                 np.concatenate([remap(a, a.second), remap(b, b.second)]), identities,
                 np.concatenate([a.sources, b.sources]) if a.sources is not None and b.sources is not None else None)


def choose_profiles(*impostor_sets: np.ndarray) -> dict[str, float]:
    """Thresholds (similarity units) at which the impostor pairs' FMR is at most each target
    (strict 0.1 %, balanced 1 %) in every one of ``impostor_sets`` (selfie pairs, ID-card
    pairs): the highest of the per-set thresholds, so that neither kind of pair goes over."""
    out = {}
    for name, target in PROFILE_TARGETS.items():
        thresholds = []
        for scores in impostor_sets:
            s = np.asarray(scores, dtype=np.float64)
            t, _, _ = threshold_at_fmr(s, np.zeros(s.size, dtype=bool), np.ones_like(s), target)
            thresholds.append(float(similarity_from_cosine(t)))
        out[name] = round(max(thresholds), 4)
    return out


def profile_metadata(thresholds: dict[str, float]) -> dict:
    """The metadata's ``profiles``: strict MATCHes at its threshold and sends the pairs between
    the balanced and the strict threshold to a person (UNCERTAIN); balanced has no band."""
    strict, balanced = thresholds["strict"], thresholds["balanced"]
    return {
        "strict": {"threshold": strict, "review_band": [balanced, strict] if balanced < strict else None,
                   "target": "FMR <= 0.1 % on the shared data's impostor pairs (selfie and ID-card pairs each)"},
        "balanced": {"threshold": balanced,
                     "target": "FMR <= 1 % on the shared data's impostor pairs (selfie and ID-card pairs each)"},
    }


@dataclass
class Evaluation:
    selfie: Pairs
    card: Pairs
    enrolment: dict
    seconds: float
    embedded: Embedded | None = None  # the selfies
    faces: dict = field(default_factory=dict, repr=False)  # (path, face index) -> (rgb, landmarks)


def run_pairs(data_dir: Path, embed: Embedder, frames_per_capture: int = 8, cards_per_capture: int = 2,
              seed: int = 0, gate: QualityGate | None = None) -> Evaluation:
    """Embed every identity-labelled face and its ID-card renderings; build both pair sets."""
    started = time.perf_counter()
    own_gate = gate is None
    gate = gate or quality_gate()
    try:
        items = identity_faces(data_dir, frames_per_capture)
        embedded, faces = embed_items(gate, embed, data_dir, items)
        cards = embed_cards(gate, embed, card_items(embedded, faces, cards_per_capture), seed)
    finally:
        if own_gate:
            gate.close()
    selfie = make_pairs(embedded, embedded, same_set=True)
    card = make_pairs(cards, embedded, same_set=False)
    enrolment = {
        "faces": len(items), "faces_without_landmarks": [f"{i.path}#{i.face_index}" for i in embedded.failed],
        "cards": len(cards.items) + len(cards.failed),
        "cards_without_landmarks": [f"{i.path}#{i.face_index}" for i in cards.failed],
    }
    return Evaluation(selfie, card, enrolment, time.perf_counter() - started, embedded, faces)


def matcher_embedder(matcher: FaceMatcher) -> Embedder:
    return lambda rgb, points: matcher.embed_face(rgb, points)


def _fmt(entry: dict, key: str = "value", pct: bool = True) -> str:
    if not entry:
        return "-"
    value, (lo, hi) = entry[key], entry["ci95"]
    if pct:
        return f"{100 * value:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{value:.4f} [{lo:.4f}, {hi:.4f}]"


def markdown(report: dict) -> str:
    """The report's tables as Markdown (models/reports/face-match.md)."""
    lines = [f"# Face matching on the shared data: {report['model']['version']}", "",
             f"Measured by `{report['command']}`. Intervals: 95 % bootstrap over identities "
             f"({report['n_boot']} resamples).", ""]
    lines += ["| pairs | identities (with genuine pairs) | genuine / impostor pairs | ROC AUC | TAR @ FMR 1 % | TAR @ FMR 0.1 % | best balanced accuracy |",
              "|---|---|---|---|---|---|---|"]
    rows = [(report["pairs"][name], title) for name, title in
            (("selfie", "selfie vs selfie"), ("card", "ID card vs selfie"), ("all", "both"))]
    rows += [(r, f"{name.split('/')[0]}, {name.split('/')[1]} only") for name, r in report.get("by_source", {}).items()]
    for r, title in rows:
        lines.append(f"| {title} | {r['identities']} ({r['identities_with_genuine_pairs']}) | {r['genuine_pairs']} / {r['impostor_pairs']} | "
                     f"{_fmt(r.get('auc', {}), pct=False)} | {_fmt(r.get('tar_at_fmr_1pct', {}))} | "
                     f"{_fmt(r.get('tar_at_fmr_0.1pct', {}))} | {_fmt(r.get('best_balanced_accuracy', {}))} |")
    lines += ["", "At each profile (similarity = cosine clipped to 0..1; MATCH iff similarity >= threshold):", "",
              "| pairs | profile | threshold | TAR | FMR | balanced accuracy |", "|---|---|---|---|---|---|"]
    for name, title in (("selfie", "selfie vs selfie"), ("card", "ID card vs selfie")):
        for profile, r in report["pairs"][name].get("profiles", {}).items():
            ci = r["ci95"]
            lines.append(f"| {title} | {profile} | {r['threshold']:.3f} | {100 * r['tar']:.1f} % [{100 * ci['tar'][0]:.1f}, {100 * ci['tar'][1]:.1f}] | "
                         f"{100 * r['fmr']:.2f} % [{100 * ci['fmr'][0]:.2f}, {100 * ci['fmr'][1]:.2f}] | "
                         f"{100 * r['balanced_accuracy']:.1f} % [{100 * ci['balanced_accuracy'][0]:.1f}, {100 * ci['balanced_accuracy'][1]:.1f}] |")
    published = report["model"].get("published", {})
    if published:
        lines += ["", f"Published: {published.get('text', '')}"]
    lines += ["", f"Enrolment: {json.dumps(report['enrolment'])}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the face matcher on the shared data's identities")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("EKYC_DATA_DIR"))
    parser.add_argument("--model", type=Path, default=DEFAULT_MATCHER)
    parser.add_argument("--frames-per-capture", type=int, default=8)
    parser.add_argument("--cards-per-capture", type=int, default=2)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, help="write the JSON report here (and the Markdown next to it)")
    parser.add_argument("--write-metadata", type=Path,
                        help="write the operating points chosen here into this metadata file (models/face-match/sface.json)")
    args = parser.parse_args(argv)
    if not args.data_dir or not Path(args.data_dir).is_dir():
        parser.error("--data-dir (or EKYC_DATA_DIR) must name the shared data folder")
    metadata_path = args.write_metadata or args.model.with_suffix(".json")
    with FaceMatcher(FaceMatcherOptions(args.model, metadata_path=metadata_path if metadata_path.is_file() else None)) as matcher:
        evaluation = run_pairs(Path(args.data_dir), matcher_embedder(matcher), args.frames_per_capture,
                               args.cards_per_capture, args.seed)
        metadata = dict(matcher.metadata.raw)
    both = concat(evaluation.selfie, evaluation.card)
    profiles = choose_profiles(evaluation.selfie.scores[~evaluation.selfie.genuine],
                               evaluation.card.scores[~evaluation.card.genuine])
    report = {
        "command": "python -m ekyc.training.face_match_eval " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": {"file": args.model.name, "sha256": hashlib.sha256(args.model.read_bytes()).hexdigest(),
                  "version": metadata.get("version", ""), "published": metadata.get("published", {})},
        "n_boot": args.n_boot, "seed": args.seed,
        "enrolment": evaluation.enrolment, "seconds": round(evaluation.seconds, 1),
        "profiles": profiles,
        "pairs": {name: evaluate_pairs(p, profiles, args.n_boot, args.seed)
                  for name, p in (("selfie", evaluation.selfie), ("card", evaluation.card), ("all", both))},
        # Pairs whose two sides come from one source: the NUAA webcam frames, the photos.
        "by_source": {f"{name}/{source}": evaluate_pairs(p.subset(p.sources == f"{source}/{source}"), profiles, args.n_boot, args.seed)
                      for name, p in (("selfie", evaluation.selfie), ("card", evaluation.card))
                      for source in ("nuaa", "photos")},
    }
    text = json.dumps(report, indent=2)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
        args.report.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    if args.write_metadata:
        metadata["profiles"] = profile_metadata(profiles)
        metadata["evaluation"] = {"report": "models/reports/face-match.json", "model_sha256": report["model"]["sha256"]}
        args.write_metadata.write_text(json.dumps(metadata, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
