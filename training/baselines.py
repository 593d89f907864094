"""Trivial single-feature baselines: what a model could learn instead of liveness.

Small spoof sets are full of shortcuts: in the shared data the image height alone separates
live from spoof in replay-b, and global contrast separates NUAA prints. Each feature below is
scored as if it were a model (either polarity, whichever is better *on the data it is
reported for*, which flatters the baseline), and every report puts the best one next to the
model's numbers: a model is only credible where it beats them clearly.

Features: of the crop the model sees — mean brightness (luma), contrast (luma standard
deviation), saturation (mean HSV saturation), sharpness (variance of the Laplacian, as the
quality gate measures it); of the source image — the face box's longer side and the image
height in pixels (which the crop hides by resizing, but which leaves traces such as blur).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ekyc.training.metrics import bpcer_at_apcer, eer, roc_auc

FEATURES = ("brightness", "contrast", "saturation", "laplacian_var", "face_size", "image_height")


def crop_features(crop: np.ndarray) -> dict[str, float]:
    from ekyc.quality.gate import sharpness

    gray = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    hsv = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2HSV)
    return {
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "saturation": float(hsv[..., 1].mean()),
        "laplacian_var": float(sharpness(gray)),
    }


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def features(crops: np.ndarray, rows: list[dict | None]) -> dict[str, np.ndarray]:
    """Every feature for a batch of crops and their crop-index rows (for the source sizes)."""
    out: dict[str, list[float]] = {name: [] for name in FEATURES}
    for crop, row in zip(crops, rows):
        for name, value in crop_features(crop).items():
            out[name].append(value)
        row = row or {}
        out["face_size"].append(max(_num(row.get("width")), _num(row.get("height"))))
        out["image_height"].append(_num(row.get("image_height")))
    return {name: np.asarray(values, dtype=np.float64) for name, values in out.items()}


def score_feature(values: np.ndarray, labels: np.ndarray) -> dict | None:
    """AUC, EER and BPCER@APCER=1 % of one feature used as a score, in its better polarity."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels)
    keep = np.isfinite(values)
    values, labels = values[keep], labels[keep]
    if not (np.any(labels == 0) and np.any(labels == 1)):
        return None
    auc = roc_auc(values, labels)
    sign = 1.0 if auc >= 0.5 else -1.0
    oriented = sign * values
    e, _ = eer(oriented, labels)
    b1, _ = bpcer_at_apcer(oriented, labels, 0.01)
    return {"auc": max(auc, 1 - auc), "eer": e, "bpcer_at_apcer_1pct": b1,
            "polarity": "higher = spoof" if sign > 0 else "lower = spoof", "n": int(labels.size)}


def baseline_table(feats: dict[str, np.ndarray], labels: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """{feature: scores} plus ``best`` (the feature with the highest AUC) on the masked samples."""
    labels = np.asarray(labels)
    mask = np.ones(labels.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    table = {}
    for name, values in feats.items():
        result = score_feature(values[mask], labels[mask])
        if result is not None:
            table[name] = result
    if table:
        best = max(table, key=lambda k: (table[k]["auc"], -table[k]["bpcer_at_apcer_1pct"]))
        table["best"] = {"feature": best, **table[best]}
    return table
