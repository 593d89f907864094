"""The shipped recipe's pieces: balanced weights, the head fit, and the head members' export."""

from __future__ import annotations

import numpy as np
import pytest

from ekyc.training.heads import EMBEDDING, HeadConfig, balance_weights, fit_head
from test_minifasnet import needs_teacher


def test_balance_weights_give_every_setup_label_and_subject_the_same_weight():
    sources = np.array(["a"] * 90 + ["b"] * 10 + ["a"] * 30 + ["b"] * 6, dtype=object)
    labels = np.array([0] * 100 + [1] * 36)
    subjects = np.array(["p1"] * 80 + ["p2"] * 10 + ["p3"] * 10 + ["p1"] * 30 + ["p3"] * 6, dtype=object)
    w = balance_weights(sources, labels, subjects)
    groups = {(s, l): w[(sources == s) & (labels == l)].sum() for s in "ab" for l in (0, 1)}
    assert np.allclose(list(groups.values()), list(groups.values())[0])
    live_a = (sources == "a") & (labels == 0)
    assert np.isclose(w[live_a & (subjects == "p1")].sum(), w[live_a & (subjects == "p2")].sum())


def test_head_fit_learns_a_correction_and_keeps_the_teacher_when_told_to():
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    feats = []
    for m in range(2):
        emb = rng.normal(0, 1, (n, EMBEDDING))
        emb[:, 3] += 2.5 * (labels - 0.5)  # one embedding direction carries the label
        original = rng.normal(0, 1, n)  # the teacher knows nothing here
        feats += [emb, original[:, None]]
    x = np.concatenate(feats, 1).astype(np.float32)
    w = np.ones(n)
    params = fit_head(x, labels, w, HeadConfig(distill_weight=0.0, l2=1e-4, epochs=200))
    logit = params["bias"] + sum(params["a"][m] * x[:, m * 129 + 128] + x[:, m * 129 : m * 129 + 128] @ np.array(params["weight"][m])
                                 for m in range(2))
    from ekyc.training.metrics import roc_auc

    assert roc_auc(logit, labels) > 0.95
    frozen = fit_head(x, labels, w, HeadConfig(distill_weight=0.0, l2=100.0, epochs=200))
    assert np.abs(np.array(frozen["weight"])).max() < np.abs(np.array(params["weight"])).max() / 10


@needs_teacher
def test_head_members_export_and_run_through_onnx_runtime(tmp_path):
    import torch

    from ekyc.training.heads import build_model
    from ekyc.training.multimodel import export_fused, open_model, write_fused_metadata

    rng = np.random.default_rng(3)
    params = {"weight": [rng.normal(0, 0.01, EMBEDDING).tolist(), rng.normal(0, 0.01, EMBEDDING).tolist()],
              "a": [0.4, 0.6], "bias": 0.3}
    model = build_model(params)
    crops = {"face_x2.7": rng.integers(0, 256, (3, 80, 80, 3)).astype(np.uint8),
             "face_x4": rng.integers(0, 256, (3, 80, 80, 3)).astype(np.uint8)}
    with torch.no_grad():
        expected = model(torch.from_numpy(crops["face_x2.7"]).float(), torch.from_numpy(crops["face_x4"]).float()).numpy()
        (e1, o1), (e2, o2) = (m.features(torch.from_numpy(crops[k]).float()) for m, k in zip(model.members, crops))
        by_hand = torch.sigmoid(0.3 + 0.4 * o1 + 0.6 * o2 + e1 @ torch.tensor(params["weight"][0])
                                + e2 @ torch.tensor(params["weight"][1])).numpy()
    assert np.abs(expected - by_hand).max() < 1e-5
    path = export_fused(model, tmp_path / "m.onnx")
    write_fused_metadata(path, model, "heads-test")
    assert np.abs(open_model(path).score_inputs(crops) - expected).max() < 1e-4
