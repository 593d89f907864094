"""Presentation-attack-detection metrics in the style of ISO/IEC 30107-3, in plain numpy.

Conventions used everywhere in this project:

* the score is the probability that the presentation is an attack (spoof = positive class);
* decision rule: **spoof iff score >= threshold**, else live (bona fide);
* APCER: share of attack presentations accepted as live, per attack type (PAI species);
  the reported ``apcer`` is the worst type's (ISO/IEC 30107-3 "APCER_PAIS max");
* BPCER: share of live presentations rejected as spoofs;
* ACER = (max APCER + BPCER) / 2 (kept for comparison with papers; ISO discourages it);
* EER: where APCER (over all attacks pooled) equals BPCER on the candidate thresholds;
* BPCER@APCER=x: the lowest BPCER at a threshold whose APCER is at most x (APCER@BPCER=x
  likewise), threshold-free summaries of the DET curve;
* confidence intervals: Wilson for a rate at a fixed threshold (treats images as
  independent, which neighbouring video frames are not: optimistic), and a cluster bootstrap
  that resamples whole recordings/frame blocks within subject x label (honest about the
  correlation, wide when there are few clusters).

Candidate thresholds are the midpoints between adjacent distinct scores, plus the lowest
score (everything rejected) and just above the highest (everything accepted), so every
distinct operating point of the data is reachable and none sits exactly on a score.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _arrays(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 (live) or 1 (spoof)")
    return scores, labels


def apcer(spoof_scores: Sequence[float], threshold: float) -> float:
    """Share of attack scores below ``threshold`` (accepted as live); nan without attacks."""
    s = np.asarray(spoof_scores, dtype=np.float64)
    return float(np.mean(s < threshold)) if s.size else math.nan


def bpcer(live_scores: Sequence[float], threshold: float) -> float:
    """Share of live scores at or above ``threshold`` (rejected as spoof); nan without live."""
    s = np.asarray(live_scores, dtype=np.float64)
    return float(np.mean(s >= threshold)) if s.size else math.nan


def candidate_thresholds(scores: Sequence[float]) -> np.ndarray:
    unique = np.unique(np.asarray(scores, dtype=np.float64))
    if unique.size == 0:
        return np.array([0.5])
    above = unique[-1] + max(1e-6, abs(unique[-1]) * 1e-6)
    return np.concatenate([[unique[0]], (unique[:-1] + unique[1:]) / 2.0, [above]])


def _rates(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(APCER over all attacks, BPCER) at each threshold, vectorised via sorted searches."""
    spoof = np.sort(scores[labels == 1])
    live = np.sort(scores[labels == 0])
    apcers = np.searchsorted(spoof, thresholds, side="left") / max(spoof.size, 1)
    bpcers = 1.0 - np.searchsorted(live, thresholds, side="left") / max(live.size, 1)
    return apcers, bpcers


def _need_both(labels: np.ndarray) -> None:
    if not (np.any(labels == 0) and np.any(labels == 1)):
        raise ValueError("need both live (0) and spoof (1) samples")


def eer(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """(EER, threshold): the candidate threshold where APCER and BPCER are closest.

    Ties go to the lower APCER + BPCER; the EER is their mean there.
    """
    scores, labels = _arrays(scores, labels)
    _need_both(labels)
    thresholds = candidate_thresholds(scores)
    apcers, bpcers = _rates(scores, labels, thresholds)
    order = np.lexsort((apcers + bpcers, np.abs(apcers - bpcers)))
    best = int(order[0])
    return float((apcers[best] + bpcers[best]) / 2.0), float(thresholds[best])


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """P(score of a random spoof > score of a random live), ties counting one half."""
    scores, labels = _arrays(scores, labels)
    _need_both(labels)
    # Mann-Whitney U with average ranks for ties.
    unique, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    ranks = average_rank[inverse]
    n_pos = int(np.sum(labels == 1))
    n_neg = scores.size - n_pos
    u = ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def bpcer_at_apcer(scores: Sequence[float], labels: Sequence[int], target: float) -> tuple[float, float]:
    """(lowest BPCER with APCER <= target, its threshold), APCER over all attacks pooled."""
    scores, labels = _arrays(scores, labels)
    _need_both(labels)
    thresholds = candidate_thresholds(scores)
    apcers, bpcers = _rates(scores, labels, thresholds)
    ok = np.flatnonzero(apcers <= target + 1e-12)
    # APCER rises and BPCER falls with the threshold: the highest allowed threshold is best.
    best = int(ok[-1])  # the lowest candidate always has APCER 0, so ``ok`` is never empty
    return float(bpcers[best]), float(thresholds[best])


def pad_metrics(
    scores: Sequence[float],
    labels: Sequence[int],
    attacks: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> dict:
    """Every metric above for one score set, at ``threshold`` and threshold-free."""
    scores, labels = _arrays(scores, labels)
    attacks = np.asarray(["" if a is None else str(a) for a in attacks] if attacks is not None else
                         ["spoof" if l else "" for l in labels], dtype=object)
    if attacks.shape != labels.shape:
        raise ValueError(f"{attacks.size} attack names but {labels.size} labels")
    live = scores[labels == 0]
    spoof = scores[labels == 1]
    per_attack = {}
    for name in sorted({a or "unknown" for a in attacks[labels == 1]}):
        mask = (labels == 1) & (np.array([(a or "unknown") == name for a in attacks]))
        per_attack[name] = {"n": int(mask.sum()), "apcer": apcer(scores[mask], threshold)}
    apcer_max = max((v["apcer"] for v in per_attack.values()), default=math.nan)
    b = bpcer(live, threshold)
    report = {
        "threshold": float(threshold),
        "n_live": int(live.size),
        "n_spoof": int(spoof.size),
        "apcer_by_attack": per_attack,
        "apcer_max": apcer_max,
        "apcer_pooled": apcer(spoof, threshold),
        "bpcer": b,
        "acer": (apcer_max + b) / 2.0 if live.size and spoof.size else math.nan,
    }
    if live.size and spoof.size:
        e, t = eer(scores, labels)
        b1, t1 = bpcer_at_apcer(scores, labels, 0.01)
        b5, t5 = bpcer_at_apcer(scores, labels, 0.05)
        a5, ta5 = apcer_at_bpcer(scores, labels, 0.05)
        report.update(
            apcer_at_bpcer_5pct=a5,
            apcer_at_bpcer_5pct_threshold=ta5,
            auc=roc_auc(scores, labels),
            eer=e,
            eer_threshold=t,
            bpcer_at_apcer_1pct=b1,
            bpcer_at_apcer_1pct_threshold=t1,
            bpcer_at_apcer_5pct=b5,
            bpcer_at_apcer_5pct_threshold=t5,
        )
    return report


def apcer_at_bpcer(scores: Sequence[float], labels: Sequence[int], target: float) -> tuple[float, float]:
    """(lowest APCER with BPCER <= target, its threshold), APCER over all attacks pooled."""
    scores, labels = _arrays(scores, labels)
    _need_both(labels)
    thresholds = candidate_thresholds(scores)
    apcers, bpcers = _rates(scores, labels, thresholds)
    ok = np.flatnonzero(bpcers <= target + 1e-12)
    # the highest candidate always has BPCER 0; APCER falls as the threshold falls
    best = int(ok[0])
    return float(apcers[best]), float(thresholds[best])


def det_points(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, APCER, BPCER) at every candidate threshold, thresholds ascending."""
    scores, labels = _arrays(scores, labels)
    _need_both(labels)
    thresholds = candidate_thresholds(scores)
    apcers, bpcers = _rates(scores, labels, thresholds)
    return thresholds, apcers, bpcers


def rates_by_attack(
    scores: Sequence[float], labels: Sequence[int], attacks: Sequence[str], thresholds: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({attack: APCER at each threshold}, BPCER at each threshold)."""
    scores, labels = _arrays(scores, labels)
    attacks = np.asarray([a or "unknown" for a in attacks], dtype=object)
    live = np.sort(scores[labels == 0])
    bpcers = 1.0 - np.searchsorted(live, thresholds, side="left") / max(live.size, 1)
    out = {}
    for name in sorted(set(attacks[labels == 1].tolist())):
        spoof = np.sort(scores[(labels == 1) & (attacks == name)])
        out[name] = np.searchsorted(spoof, thresholds, side="left") / max(spoof.size, 1)
    return out, bpcers


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95 % by default); (nan, nan) when n == 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_bootstrap(
    statistic,
    clusters: Sequence[str],
    strata: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, int]:
    """Percentile interval of ``statistic(indices)`` over resamples of whole clusters.

    Clusters (e.g. one recording session, or a block of consecutive video frames) are drawn
    with replacement within each stratum (e.g. subject x label), so every resample keeps the
    design's composition; images inside a cluster are nearly copies of each other and are
    never treated as independent. Resamples where the statistic is undefined (nan) are
    dropped; returns (low, high, resamples used).
    """
    clusters = np.asarray(clusters, dtype=object)
    strata = np.asarray(strata if strata is not None else ["all"] * len(clusters), dtype=object)
    rng = np.random.default_rng(seed)
    groups = []  # per stratum: list of index arrays, one per cluster
    for stratum in sorted(set(strata.tolist())):
        in_stratum = strata == stratum
        members = [np.flatnonzero(in_stratum & (clusters == c)) for c in sorted(set(clusters[in_stratum].tolist()))]
        groups.append(members)
    values = []
    for _ in range(n_boot):
        parts = []
        for members in groups:
            picks = rng.integers(0, len(members), size=len(members))
            parts.extend(members[i] for i in picks)
        indices = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        value = statistic(indices)
        if value is not None and np.isfinite(value):
            values.append(float(value))
    if not values:
        return math.nan, math.nan, 0
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)), len(values)
