"""Operating points chosen on validation scores, the review band, and the new metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ekyc.training import metrics
from ekyc.training.calibrate import (
    PROFILES,
    band_outcome,
    band_tradeoff,
    calibrate,
    choose_band,
    choose_threshold,
    decide,
    metadata_profiles,
)


def _overlapping(seed: int = 0, n_live: int = 400, n_print: int = 300, n_replay: int = 120):
    rng = np.random.default_rng(seed)
    live = 1 / (1 + np.exp(-rng.normal(-3.0, 1.4, n_live)))
    printed = 1 / (1 + np.exp(-rng.normal(2.5, 1.5, n_print)))
    replay = 1 / (1 + np.exp(-rng.normal(1.5, 1.5, n_replay)))  # the harder attack
    scores = np.concatenate([live, printed, replay])
    labels = np.array([0] * n_live + [1] * (n_print + n_replay))
    attacks = [""] * n_live + ["print"] * n_print + ["replay"] * n_replay
    return scores, labels, attacks


def _apcer_max(scores, labels, attacks, t):
    attacks = np.asarray(attacks, dtype=object)
    return max(float(np.mean(scores[(labels == 1) & (attacks == a)] < t)) for a in ("print", "replay"))


def _bpcer(scores, labels, t):
    return float(np.mean(scores[labels == 0] >= t))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_profiles_meet_their_targets_on_the_data_they_were_fit_on(seed):
    scores, labels, attacks = _overlapping(seed)
    strict = choose_threshold(scores, labels, attacks, "strict")
    lenient = choose_threshold(scores, labels, attacks, "lenient")
    balanced = choose_threshold(scores, labels, attacks, "balanced")
    # the targets hold, recomputed here from the scores (APCER per attack type, the worst counts)
    assert _apcer_max(scores, labels, attacks, strict["threshold"]) <= 0.01
    assert _bpcer(scores, labels, lenient["threshold"]) <= 0.01
    assert strict["val_apcer"] == pytest.approx(_apcer_max(scores, labels, attacks, strict["threshold"]))
    assert strict["val_bpcer"] == pytest.approx(_bpcer(scores, labels, strict["threshold"]))
    assert strict["val_apcer_by_attack"]["replay"] >= strict["val_apcer_by_attack"]["print"] - 0.02
    assert strict["threshold"] < balanced["threshold"] < lenient["threshold"]
    # optimal on a fine grid: no threshold meeting the target does better
    grid = np.unique(np.concatenate([scores, np.linspace(0, 1, 2001)]))
    best_strict = min(_bpcer(scores, labels, t) for t in grid if _apcer_max(scores, labels, attacks, t) <= 0.01)
    assert strict["val_bpcer"] <= best_strict + 1e-12
    best_lenient = min(_apcer_max(scores, labels, attacks, t) for t in grid if _bpcer(scores, labels, t) <= 0.01)
    assert lenient["val_apcer"] <= best_lenient + 1e-12
    gap = abs(balanced["val_apcer"] - balanced["val_bpcer"])
    assert gap <= min(abs(_apcer_max(scores, labels, attacks, t) - _bpcer(scores, labels, t)) for t in grid) + 1e-12


def test_separable_scores_put_every_threshold_in_the_middle_of_the_gap():
    live = [0.01, 0.02, 0.05]
    spoof = [0.9, 0.95, 0.99]
    scores = np.array(live + spoof)
    labels = np.array([0, 0, 0, 1, 1, 1])
    attacks = ["", "", "", "print", "print", "print"]
    for name in PROFILES:
        chosen = choose_threshold(scores, labels, attacks, name)
        assert chosen["val_apcer"] == 0 and chosen["val_bpcer"] == 0
        # the logit-space middle of (0.05, 0.9), not an edge next to a score
        mid = 1 / (1 + math.exp(-(math.log(0.05 / 0.95) + math.log(0.9 / 0.1)) / 2))
        assert chosen["threshold"] == pytest.approx(mid)


def test_strict_counts_each_attack_type_not_the_pool():
    # 100 prints all caught; 10 replays, one scoring like a live face. Pooled APCER 1/110 < 1 %
    # would accept it; per type it is 10 %, so strict must go below it.
    live = np.linspace(0.01, 0.2, 50)
    printed = np.linspace(0.8, 0.99, 100)
    replay = np.array([0.15] + list(np.linspace(0.7, 0.9, 9)))
    scores = np.concatenate([live, printed, replay])
    labels = np.array([0] * 50 + [1] * 110)
    attacks = [""] * 50 + ["print"] * 100 + ["replay"] * 10
    strict = choose_threshold(scores, labels, attacks, "strict")
    assert strict["threshold"] <= 0.15 and strict["val_apcer"] == 0.0 and strict["val_bpcer"] > 0


def test_review_band_trades_review_load_for_errors():
    scores, labels, attacks = _overlapping(0)
    balanced = choose_threshold(scores, labels, attacks, "balanced")
    rows = band_tradeoff(scores, labels, balanced["threshold"])
    assert rows[0]["half_width_logit"] == 0 and rows[0]["review_rate"] == 0
    # wider bands send more to review and never make more automatic errors
    assert all(a["review_rate"] <= b["review_rate"] and a["errors"] >= b["errors"] for a, b in zip(rows, rows[1:]))
    chosen = choose_band(rows, max_review_rate=0.10)
    assert chosen is not None and chosen["review_rate"] <= 0.10 and chosen["errors"] < rows[0]["errors"]
    assert chosen["lo"] < balanced["threshold"] < chosen["hi"]
    # on separable data no band is worth a reviewer's time
    sep = np.array([0.1, 0.2, 0.8, 0.9])
    assert choose_band(band_tradeoff(sep, np.array([0, 0, 1, 1]), 0.5)) is None
    # by hand: band [0.3, 0.7) on these scores
    out = band_outcome(np.array([0.1, 0.5, 0.75, 0.2, 0.6, 0.9]), np.array([0, 0, 0, 1, 1, 1]), 0.3, 0.7)
    assert out["review_rate"] == pytest.approx(2 / 6) and out["review_live"] == 1 and out["review_spoof"] == 1
    assert out["apcer"] == pytest.approx(1 / 3) and out["bpcer"] == pytest.approx(1 / 3) and out["errors"] == 2


def test_calibrate_writes_the_metadata_contract():
    scores, labels, attacks = _overlapping(1)
    profiles = metadata_profiles(calibrate(scores, labels, attacks, max_review_rate=0.1))
    assert set(profiles) == {"strict", "balanced", "lenient"}
    for name, p in profiles.items():
        assert {"threshold", "target", "val_apcer", "val_bpcer", "review_band"} <= set(p)
        assert 0.0 <= p["threshold"] <= 1.0
        if p["review_band"] is not None:
            lo, hi = p["review_band"]
            assert lo <= p["threshold"] <= hi
    assert profiles["strict"]["target"] == "APCER<=1%" and profiles["lenient"]["target"] == "BPCER<=1%"
    p = {"threshold": 0.5, "review_band": [0.4, 0.6]}
    assert [decide(s, p) for s in (0.39, 0.4, 0.55, 0.6)] == ["LIVE", "UNCERTAIN", "UNCERTAIN", "SPOOF"]
    assert decide(0.5, {"threshold": 0.5, "review_band": None}) == "SPOOF"


def test_apcer_at_bpcer_and_det_points_by_hand():
    live, spoof = [0.1, 0.2, 0.3, 0.6], [0.4, 0.7, 0.8, 0.9]
    scores = np.array(live + spoof)
    labels = np.array([0] * 4 + [1] * 4)
    # BPCER 0 needs threshold > 0.6, where spoof 0.4 is accepted: APCER 1/4
    a0, t0 = metrics.apcer_at_bpcer(scores, labels, 0.0)
    assert a0 == pytest.approx(0.25) and 0.6 < t0 <= 0.7
    # BPCER 1/4 allows threshold down to just above 0.3, where no spoof passes
    a25, t25 = metrics.apcer_at_bpcer(scores, labels, 0.25)
    assert a25 == 0.0 and 0.3 < t25 <= 0.4
    thresholds, apcer, bpcer = metrics.det_points(scores, labels)
    assert np.all(np.diff(thresholds) > 0) and apcer[0] == 0 and bpcer[0] == 1 and apcer[-1] == 1 and bpcer[-1] == 0
    m = metrics.pad_metrics(scores, labels, ["", "", "", "", "print", "print", "print", "print"], 0.5)
    assert m["apcer_at_bpcer_5pct"] == pytest.approx(0.25)


def test_wilson_interval_known_values():
    lo, hi = metrics.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = metrics.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert all(math.isnan(v) for v in metrics.wilson(0, 0))


def test_cluster_bootstrap_widens_with_correlated_clusters():
    # 20 clusters of 10 identical flags each: effectively 20 observations, not 200
    flags = np.repeat(np.array([1] * 6 + [0] * 14, dtype=float), 10)
    clusters = np.repeat(np.arange(20), 10).astype(str)
    lo_c, hi_c, n = metrics.cluster_bootstrap(lambda idx: flags[idx].mean(), clusters, n_boot=400, seed=0)
    lo_i, hi_i, _ = metrics.cluster_bootstrap(lambda idx: flags[idx].mean(), np.arange(200).astype(str), n_boot=400, seed=0)
    assert n == 400 and lo_c < 0.3 < hi_c
    assert (hi_c - lo_c) > 2 * (hi_i - lo_i)
    # the i.i.d. bootstrap agrees with Wilson on 60/200
    w_lo, w_hi = metrics.wilson(60, 200)
    assert abs(lo_i - w_lo) < 0.03 and abs(hi_i - w_hi) < 0.03
