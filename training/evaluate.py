"""Score a split's cached crops with the shipped runtime (``ekyc.server.model.LivenessModel``)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ekyc.training.crops import CropCache, load_crops
from ekyc.training.data import Sample
from ekyc.training.metrics import pad_metrics


def _clean(value):
    """JSON-safe: nan/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def score_items(model, items: list[tuple[Sample, Path]], batch_size: int = 64) -> np.ndarray:
    scores = []
    for start in range(0, len(items), batch_size):
        crops = load_crops([p for _, p in items[start : start + batch_size]])
        scores.append(model.score(crops))
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def evaluate(
    model_path: Path | str,
    samples: list[Sample],
    cache: CropCache,
    threshold: float | None = None,
    split_name: str = "test",
    report_path: Path | str | None = None,
) -> dict:
    """Metrics of the ONNX model on ``samples`` (their cached crops), at its metadata threshold.

    Samples without a crop (no face found in a frame) are counted, not scored: the server
    refuses them at the quality gate before the liveness model runs.
    """
    from ekyc.server.model import LivenessModel

    model = LivenessModel(Path(model_path), intra_op_threads=2)
    if model.crop_rule != cache.rule:
        raise ValueError(f"model crop rule {model.crop_rule} differs from the crop cache's {cache.rule}")
    threshold = model.metadata.threshold if threshold is None else float(threshold)
    items = cache.usable(samples)
    scores = score_items(model, items)
    labels = np.array([s.label for s, _ in items], dtype=np.int64)
    attacks = [s.attack for s, _ in items]
    sources = np.array([s.source for s, _ in items])
    report = {
        "model": str(model_path),
        "version": model.version,
        "split": split_name,
        "threshold": threshold,
        "decision": "spoof iff score >= threshold",
        "n_samples": len(samples),
        "n_scored": len(items),
        "n_without_crop": len(samples) - len(items),
        "subjects": sorted({s.subject for s in samples}),
        "overall": pad_metrics(scores, labels, attacks, threshold) if len(items) else {},
        "by_source": {},
    }
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        report["by_source"][source] = pad_metrics(
            scores[mask], labels[mask], [a for a, m in zip(attacks, mask) if m], threshold
        )
    report["score_counts"] = dict(Counter("spoof" if v >= threshold else "live" for v in scores.tolist()))
    report = _clean(report)
    if report_path:
        report_path = Path(report_path)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary_line(report: dict) -> str:
    m = report.get("overall") or {}
    if not m:
        return f"{report['split']}: nothing scored"
    per_attack = ", ".join(f"{k} {v['apcer']:.3f} (n={v['n']})" for k, v in m["apcer_by_attack"].items())

    def fmt(key):
        value = m.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    return (
        f"{report['split']} ({m['n_live']} live, {m['n_spoof']} spoof): AUC {fmt('auc')}, EER {fmt('eer')}; "
        f"at threshold {report['threshold']:.4f}: APCER {per_attack}; BPCER {fmt('bpcer')}; "
        f"ACER {fmt('acer')}; BPCER@APCER=1% {fmt('bpcer_at_apcer_1pct')}, "
        f"BPCER@APCER=5% {fmt('bpcer_at_apcer_5pct')}"
    )
