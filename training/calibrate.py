"""Operating points (profiles) chosen on the validation split, and the review band around them.

A profile is a threshold on the spoof probability with the target it was chosen for:

* ``strict``   — APCER <= 1 % (every attack type on its own), the lowest BPCER that allows;
* ``balanced`` — the equal-error point (APCER of the worst attack type = BPCER);
* ``lenient``  — BPCER <= 1 %, the lowest worst-type APCER that allows.

APCER is taken per attack type and the worst type counts (ISO/IEC 30107-3 reports APCER per
PAI species): a threshold that is strict for prints but lets replays through is not strict.
Among the thresholds that give the same (APCER, BPCER) on the validation data — a gap
between two neighbouring scores — the one in the middle of the gap (in logit space) is
taken, not its edge, so that the next, unseen score is as far from it as the data allows.

Decision rule (stored in the model metadata): spoof iff score >= threshold. With a
``review_band`` [lo, hi], lo <= score < hi is UNCERTAIN (human review). A band is only set
when, on the validation split, it removes a measurable share of the errors for a bounded
review load (see ``choose_band``); otherwise it is ``null``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ekyc.training.metrics import _arrays, candidate_thresholds, rates_by_attack

PROFILES = {
    "strict": {"target": "APCER<=1%", "apcer_max": 0.01},
    "balanced": {"target": "APCER=BPCER (EER)"},
    "lenient": {"target": "BPCER<=1%", "bpcer_max": 0.01},
}
DEFAULT_PROFILE = "balanced"
EPS = 1e-7


def logit(p: float | np.ndarray) -> float | np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def expit(x: float | np.ndarray) -> float | np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _plateau_middle(thresholds: np.ndarray, best: int, same: np.ndarray, scores: np.ndarray) -> float:
    """The logit-space middle of the run of candidate thresholds around ``best`` with equal rates.

    Candidate thresholds are midpoints between neighbouring scores; a run of equal rates spans
    the scores in between, and the gap to use is between the highest score below the run's
    first threshold and the lowest score above its last.
    """
    lo = best
    while lo > 0 and same[lo - 1]:
        lo -= 1
    hi = best
    while hi + 1 < len(thresholds) and same[hi + 1]:
        hi += 1
    below = scores[scores < thresholds[lo]]
    above = scores[scores >= thresholds[hi]]
    if below.size and above.size:
        # every threshold in (max(below), min(above)] gives the same decisions: take the middle
        a, b = logit(below.max()), logit(above.min())
        middle = float(expit((a + b) / 2.0))
        if below.max() < middle <= above.min():
            return middle
    return float(thresholds[best])


def choose_threshold(
    scores: Sequence[float], labels: Sequence[int], attacks: Sequence[str], profile: str
) -> dict:
    """The profile's threshold on these scores, with the APCER (worst type, per type) and BPCER it gives."""
    scores, labels = _arrays(scores, labels)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if not (np.any(labels == 0) and np.any(labels == 1)):
        raise ValueError("calibration needs live and spoof scores")
    thresholds = candidate_thresholds(scores)
    by_attack, bpcers = rates_by_attack(scores, labels, attacks, thresholds)
    apcer_max = np.max(np.stack(list(by_attack.values())), axis=0)
    spec = PROFILES[profile]
    if profile == "strict":
        ok = apcer_max <= spec["apcer_max"] + 1e-12  # never empty: the lowest threshold has APCER 0
        key = np.lexsort((apcer_max, bpcers))  # min BPCER, then min APCER
    elif profile == "lenient":
        ok = bpcers <= spec["bpcer_max"] + 1e-12  # never empty: the highest threshold has BPCER 0
        key = np.lexsort((bpcers, apcer_max))  # min APCER, then min BPCER
    else:
        ok = np.ones_like(bpcers, dtype=bool)
        key = np.lexsort((apcer_max + bpcers, np.abs(apcer_max - bpcers)))
    best = int(next(i for i in key if ok[i]))
    same = ok & (apcer_max == apcer_max[best]) & (bpcers == bpcers[best])
    threshold = _plateau_middle(thresholds, best, same, scores)
    live, spoof = scores[labels == 0], scores[labels == 1]
    attacks_arr = np.asarray([a or "unknown" for a in attacks], dtype=object)
    per_attack = {name: float(np.mean(scores[(labels == 1) & (attacks_arr == name)] < threshold))
                  for name in by_attack}
    return {
        "threshold": float(threshold),
        "target": spec["target"],
        "val_apcer": float(max(per_attack.values())),
        "val_bpcer": float(np.mean(live >= threshold)),
        "val_apcer_by_attack": per_attack,
        "val_apcer_pooled": float(np.mean(spoof < threshold)),
    }


# --- the review band -----------------------------------------------------------------------

BAND_WIDTHS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # half-width in logit units


def band_outcome(scores: np.ndarray, labels: np.ndarray, lo: float, hi: float) -> dict:
    """Errors among automatic decisions and the share sent to review, for band [lo, hi).

    A spoof sent to review is not an accepted attack, and a live face sent to review is not a
    rejection: both cost a reviewer's time instead (review load = share of all images).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    review = (scores >= lo) & (scores < hi)
    live, spoof = labels == 0, labels == 1
    accepted_attacks = int(np.sum(spoof & (scores < lo)))
    rejected_live = int(np.sum(live & (scores >= hi)))
    return {
        "lo": float(lo),
        "hi": float(hi),
        "review_rate": float(review.mean()) if scores.size else math.nan,
        "review_live": int(np.sum(review & live)),
        "review_spoof": int(np.sum(review & spoof)),
        "apcer": accepted_attacks / max(int(spoof.sum()), 1),
        "bpcer": rejected_live / max(int(live.sum()), 1),
        "errors": accepted_attacks + rejected_live,
    }


def band_tradeoff(
    scores: Sequence[float], labels: Sequence[int], threshold: float, widths: Sequence[float] = BAND_WIDTHS
) -> list[dict]:
    """``band_outcome`` for symmetric logit-space bands around ``threshold`` (width 0 = no band)."""
    scores, labels = _arrays(scores, labels)
    centre = float(logit(threshold))
    out = []
    for w in widths:
        lo, hi = (threshold, threshold) if w == 0 else (float(expit(centre - w)), float(expit(centre + w)))
        out.append({"half_width_logit": float(w), **band_outcome(scores, labels, lo, hi)})
    return out


def choose_band(
    tradeoff: list[dict], max_review_rate: float = 0.05, min_errors_removed: int = 3, min_share_removed: float = 0.3
) -> dict | None:
    """The widest band within ``max_review_rate`` if it removes a measurable share of the errors.

    Measurable: at least ``min_errors_removed`` errors and ``min_share_removed`` of them, on the
    data the band was chosen on. Returns the chosen row or None (no band).
    """
    base = next(row for row in tradeoff if row["half_width_logit"] == 0)
    allowed = [row for row in tradeoff if row["half_width_logit"] > 0 and row["review_rate"] <= max_review_rate]
    if not allowed or base["errors"] == 0:
        return None
    best = max(allowed, key=lambda row: row["half_width_logit"])
    removed = base["errors"] - best["errors"]
    if removed >= min_errors_removed and removed >= min_share_removed * base["errors"]:
        return best
    return None


def calibrate(
    scores: Sequence[float],
    labels: Sequence[int],
    attacks: Sequence[str],
    max_review_rate: float = 0.05,
) -> dict:
    """Every profile with its threshold, validation rates, band trade-off and chosen band."""
    scores, labels = _arrays(scores, labels)
    profiles = {}
    for name in PROFILES:
        chosen = choose_threshold(scores, labels, attacks, name)
        tradeoff = band_tradeoff(scores, labels, chosen["threshold"])
        band = choose_band(tradeoff, max_review_rate=max_review_rate)
        chosen["review_band"] = [band["lo"], band["hi"]] if band else None
        chosen["val_band_tradeoff"] = tradeoff
        profiles[name] = chosen
    return profiles


def metadata_profiles(calibrated: dict) -> dict:
    """The ``profiles`` block of the model metadata (the server's contract) from ``calibrate``."""
    keep = ("threshold", "target", "val_apcer", "val_bpcer", "review_band", "val_apcer_by_attack", "val_apcer_pooled")
    return {name: {k: profile[k] for k in keep} for name, profile in calibrated.items()}


def decide(score: float, profile: dict) -> str:
    """LIVE, SPOOF or UNCERTAIN for one score under a metadata profile."""
    band = profile.get("review_band")
    if band and band[0] <= score < band[1]:
        return "UNCERTAIN"
    return "SPOOF" if score >= profile["threshold"] else "LIVE"
