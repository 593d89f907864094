"""What travels to a setup never seen: the LOSO table, shifts, slices and calibration.

Input: a candidate's out-of-fold scores (``ekyc.training.loso.run``: every face scored by the
fold model that never saw its capture setup). Output (``loso_report``, ``render``):

* **LOSO table**: per held-out setup AUC, EER, BPCER@APCER=1 %, APCER@BPCER=5 % with
  cluster-bootstrap 95 % intervals (``ekyc.training.evaluate``), the best trivial single
  feature on the same faces beside it; the **pooled** row puts every setup on one score
  scale, as a deployment that meets several cameras does;
* **profiles that travel**: thresholds chosen on the pooled out-of-fold scores
  (``ekyc.training.calibrate``), and a review band spanning the spread of the per-setup
  thresholds for the same target, so that a new camera's threshold is likely inside it;
* **shift table**: per capture shift and setup, AUC and BPCER / APCER at the pooled
  ``balanced`` threshold;
* **slices** of live faces: face-luma tercile, setup, glasses; BPCER at every profile with
  Wilson and cluster-bootstrap intervals.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ekyc.training import metrics as M
from ekyc.training.calibrate import calibrate, expit, logit, metadata_profiles, band_outcome
from ekyc.training.data import SPOOF, Sample, cluster_key

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def load_scores(candidate_dir: Path | str) -> dict:
    """``{held_out: scores.json content}`` for every finished fold of a candidate."""
    out = {}
    for path in sorted(Path(candidate_dir).glob("*/scores.json")):
        data = json.loads(path.read_text())
        out[data["held_out"]] = data
    return out


def face_luma(crops_x12: np.ndarray) -> np.ndarray:
    """Mean luma of the face box inside 1.2x crops (the central 1/1.2 of the side)."""
    size = crops_x12.shape[1]
    m = int(round(size * (1 - 1 / 1.2) / 2))
    inner = crops_x12[:, m : size - m, m : size - m].astype(np.float32)
    return (inner @ LUMA).mean(axis=(1, 2))


def glasses(sample: Sample) -> str:
    g = sample.meta.get("glasses")
    if g is None:
        attrs = sample.meta.get("attributes") or {}
        return ("yes" if attrs.get("eyeglasses") else "no") if attrs else "unknown"
    return "yes" if g not in ("00", "0", "no") else "no"


def _metrics_row(scores, labels, samples, n_boot, seed=0) -> dict:
    from ekyc.training.evaluate import _boot_threshold_free, _threshold_free

    clusters = np.array([cluster_key(s) for s in samples], dtype=object)
    strata = np.array([f"{s.subject}/{s.label}" for s in samples], dtype=object)
    row = _threshold_free(scores, labels)
    row["ci"] = _boot_threshold_free(scores, labels, clusters, strata, n_boot, seed)
    row["n_clusters"] = {"live": len(set(clusters[labels == 0].tolist())), "spoof": len(set(clusters[labels == 1].tolist()))}
    return row


def setup_thresholds(scores, labels, attacks, sources, profile: str) -> dict[str, float]:
    """Each setup's own threshold for ``profile`` (what calibrating on that setup alone would give)."""
    from ekyc.training.calibrate import choose_threshold

    out = {}
    for src in sorted(set(sources.tolist())):
        mask = sources == src
        if len(set(labels[mask].tolist())) == 2:
            out[src] = choose_threshold(scores[mask], labels[mask], list(attacks[mask]), profile)["threshold"]
    return out


def travelling_profiles(scores, labels, attacks, sources) -> dict:
    """Pooled thresholds, each with a review band spanning the per-setup thresholds of its target."""
    scores = np.asarray(scores, dtype=np.float64)
    profiles = metadata_profiles(calibrate(scores, labels, list(attacks)))
    for name, p in profiles.items():
        per_setup = setup_thresholds(scores, labels, attacks, sources, name)
        values = list(per_setup.values()) + [p["threshold"]]
        lo, hi = float(min(values)), float(max(values))
        # a band must hold its threshold strictly inside [lo, hi): widen a degenerate edge a little
        lo = min(lo, float(expit(logit(p["threshold"]) - 0.05)))
        hi = max(hi, float(expit(logit(p["threshold"]) + 0.05)))
        outcome = band_outcome(scores, labels, lo, hi)
        p["review_band"] = [lo, hi]
        p["setup_thresholds"] = per_setup
        p["band_rule"] = "[min, max] of the per-setup thresholds for this target on out-of-fold scores"
        p["pooled_with_band"] = outcome
    return profiles


def _rates_at(scores, labels, attacks, threshold):
    live = labels == 0
    out = {"bpcer": float(np.mean(scores[live] >= threshold)) if live.any() else None, "apcer": {}}
    for a in sorted(set(attacks[labels == 1].tolist())):
        m = (labels == 1) & (attacks == a)
        out["apcer"][a] = float(np.mean(scores[m] < threshold))
    return out


def loso_report(candidate_dir: Path | str, samples: list[Sample], arrays=None, n_boot: int = 1000,
                profiles: dict | None = None) -> dict:
    """The full LOSO report of one candidate (see the module docstring).

    ``arrays``: the ``FaceArrays`` of the data (for the 1.2x crops: trivial baselines and face
    luma); ``profiles``: thresholds to judge shifts/slices at (default: this candidate's own
    pooled ones).
    """
    from ekyc.training.baselines import baseline_table, features

    folds = load_scores(candidate_dir)
    by_path = {s.path: s for s in samples}
    paths, scores, fold_of = [], [], []
    for held, data in folds.items():
        paths += data["paths"]
        scores += data["scores"]
        fold_of += [held] * len(data["paths"])
    kept = [by_path[p] for p in paths]
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.array([s.label for s in kept], dtype=np.int64)
    attacks = np.array([s.attack or "unknown" if s.label == SPOOF else "" for s in kept], dtype=object)
    sources = np.array([s.source for s in kept], dtype=object)
    report = {"candidate": Path(candidate_dir).name, "folds": sorted(folds), "n": int(len(kept)), "rows": {},
              "intervals": f"cluster bootstrap ({n_boot} resamples of recordings / 20-frame blocks within "
                           "subject x label), 95 % percentile; wilson: images as independent"}
    feats = None
    luma = None
    if arrays is not None:
        index = {s.path: i for i, s in enumerate(arrays.samples)}
        rows_idx = np.array([index[p] for p in paths])
        crops = arrays.arrays["face_x1.2"][rows_idx]
        feats = features(crops, [arrays.rows[i] for i in rows_idx])
        luma = face_luma(crops)
    for held in sorted(folds):
        mask = sources == held
        row = _metrics_row(scores[mask], labels[mask], [kept[i] for i in np.flatnonzero(mask)], n_boot)
        if feats is not None:
            row["baseline"] = baseline_table(feats, labels, mask).get("best")
        row["train_seconds"] = folds[held].get("train_seconds")
        report["rows"][held] = row
    pooled = _metrics_row(scores, labels, kept, n_boot)
    if feats is not None:
        pooled["baseline"] = baseline_table(feats, labels).get("best")
    report["pooled"] = pooled
    if len(report["rows"]):
        worst = min(report["rows"], key=lambda k: report["rows"][k].get("auc", 1.0))
        report["worst"] = {"setup": worst, "auc": report["rows"][worst].get("auc"),
                           "max_bpcer_at_apcer_1pct": max(r.get("bpcer_at_apcer_1pct", 0) for r in report["rows"].values())}
    own = travelling_profiles(scores, labels, attacks, sources)
    report["profiles"] = own
    judge = profiles or own
    report["judged_at"] = "own pooled profiles" if profiles is None else "given profiles"
    t_bal = float(judge["balanced"]["threshold"])
    # shifts: per setup, per shift
    shift_rows: dict = {}
    for held, data in folds.items():
        for sh, entry in (data.get("shifts") or {}).items():
            ss = [by_path[p] for p in entry["paths"]]
            sc = np.asarray(entry["scores"], dtype=np.float64)
            lb = np.array([s.label for s in ss])
            at = np.array([s.attack or "unknown" if s.label == SPOOF else "" for s in ss], dtype=object)
            cell = {"auc": M.roc_auc(sc, lb) if len(set(lb.tolist())) == 2 else None,
                    **_rates_at(sc, lb, at, t_bal)}
            shift_rows.setdefault(sh, {})[held] = cell
    plain = {}
    for held in folds:
        mask = sources == held
        plain[held] = {"auc": report["rows"][held].get("auc"), **_rates_at(scores[mask], labels[mask], attacks[mask], t_bal)}
    report["shifts"] = {"none": plain, **shift_rows}
    if shift_rows:
        report["min_shift_auc"] = min((c["auc"] for r in shift_rows.values() for c in r.values() if c["auc"] is not None),
                                      default=None)
    # slices of live faces
    live = labels == 0
    slices: dict = {"setup": {s: live & (sources == s) for s in sorted(set(sources.tolist()))}}
    if luma is not None:
        cuts = np.quantile(luma[live], [1 / 3, 2 / 3])
        tercile = np.where(luma < cuts[0], "dark", np.where(luma < cuts[1], "middle", "bright"))
        slices["face luma tercile"] = {t: live & (tercile == t) for t in ("dark", "middle", "bright")}
        report["luma_cuts"] = [float(c) for c in cuts]
    g = np.array([glasses(s) for s in kept], dtype=object)
    slices["glasses"] = {v: live & (g == v) for v in sorted(set(g[live].tolist()))}
    clusters = np.array([cluster_key(s) for s in kept], dtype=object)
    strata = np.array([f"{s.subject}/{s.label}" for s in kept], dtype=object)
    from ekyc.training.evaluate import _rate

    report["slices"] = {}
    for kind, masks in slices.items():
        for value, mask in masks.items():
            if not mask.any():
                continue
            cell = {"n_live": int(mask.sum())}
            for name, p in judge.items():
                cell[name] = _rate(scores[mask] >= float(p["threshold"]), clusters[mask], strata[mask], n_boot, 0)
            report["slices"].setdefault(kind, {})[value] = cell
    if "face luma tercile" in report["slices"]:
        t = report["slices"]["face luma tercile"]
        ratios = {}
        for name in judge:
            dark, bright = t["dark"][name]["rate"], t["bright"][name]["rate"]
            ratios[name] = {"dark": dark, "bright": bright,
                            "dark_over_twice_bright": bool(dark > 2 * bright) if dark > 0 else False}
        report["luma_flag"] = ratios
    report["oof"] = {"paths": paths, "scores": scores.round(7).tolist()}
    return _clean(report)


def _clean(value):
    from ekyc.training.evaluate import _clean as clean

    return clean(value)


# --- Markdown -------------------------------------------------------------------------------

def _pct(v, d=1):
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.{d}f} %"


def _ci(iv, d=1, pct=True):
    if not iv or iv[0] is None:
        return ""
    return f" [{100 * iv[0]:.{d}f}, {100 * iv[1]:.{d}f}]" if pct else f" [{iv[0]:.3f}, {iv[1]:.3f}]"


def _f(v, d=3):
    return "–" if v is None else f"{v:.{d}f}"


def loso_table(report: dict, title: str | None = None) -> str:
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines += ["| held-out setup | live / spoof | AUC [boot] | EER [boot] | BPCER@APCER=1 % [boot] *wilson* | "
              "APCER@BPCER=5 % [boot] | best trivial feature: AUC, BPCER@APCER=1 % |",
              "|---|---|---|---|---|---|---|"]
    rows = list(report["rows"].items()) + [("**pooled** (one score scale)", report["pooled"])]
    for name, r in rows:
        ci = r.get("ci", {})
        b = r.get("baseline") or {}
        lines.append(
            f"| {name} | {r.get('n_live')} / {r.get('n_spoof')} | {_f(r.get('auc'))}{_ci(ci.get('auc'), pct=False)} | "
            f"{_pct(r.get('eer'))}{_ci(ci.get('eer'))} | {_pct(r.get('bpcer_at_apcer_1pct'))}{_ci(ci.get('bpcer_at_apcer_1pct'))} "
            f"*{_ci(r.get('bpcer_at_apcer_1pct_wilson')).strip()}* | {_pct(r.get('apcer_at_bpcer_5pct'))}{_ci(ci.get('apcer_at_bpcer_5pct'))} | "
            f"{b.get('feature', '–')}: {_f(b.get('auc'))}, {_pct(b.get('bpcer_at_apcer_1pct'))} |")
    return "\n".join(lines) + "\n"


def shift_table(report: dict) -> str:
    setups_ = list(report["rows"])
    lines = ["| shift | " + " | ".join(f"{s}: AUC / BPCER / APCER" for s in setups_) + " |",
             "|---|" + "---|" * len(setups_)]
    for sh, cells in report["shifts"].items():
        out = []
        for s in setups_:
            c = cells.get(s)
            if not c:
                out.append("–")
                continue
            ap = max(c["apcer"].values()) if c.get("apcer") else None
            out.append(f"{_f(c.get('auc'))} / {_pct(c.get('bpcer'))} / {_pct(ap)}")
        lines.append(f"| {sh} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def slice_table(report: dict) -> str:
    names = list(report["profiles"])
    lines = ["| slice | value | live | " + " | ".join(f"BPCER at {n} [boot] *wilson*" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for kind, cells in report["slices"].items():
        for value, c in cells.items():
            lines.append(f"| {kind} | {value} | {c['n_live']} | " + " | ".join(
                f"{_pct(c[n]['rate'])} ({c[n]['k']}/{c[n]['n']}){_ci(c[n].get('boot'))} *{_ci(c[n].get('wilson')).strip()}*"
                for n in names) + " |")
    return "\n".join(lines) + "\n"


def profile_table(report: dict) -> str:
    lines = ["| profile | target | threshold (pooled) | per-setup thresholds | review band | pooled: APCER worst / BPCER | pooled with band: review / errors |",
             "|---|---|---|---|---|---|---|"]
    for name, p in report["profiles"].items():
        st = ", ".join(f"{k} {v:.3f}" for k, v in p["setup_thresholds"].items())
        o = p["pooled_with_band"]
        lines.append(f"| {name} | {p['target']} | {p['threshold']:.4f} | {st} | [{p['review_band'][0]:.4f}, {p['review_band'][1]:.4f}) | "
                     f"{_pct(p['val_apcer'])} / {_pct(p['val_bpcer'])} | {_pct(o['review_rate'])} / {o['errors']} "
                     f"(APCER {_pct(o['apcer'])}, BPCER {_pct(o['bpcer'])}) |")
    return "\n".join(lines) + "\n"


# --- recalibration on a deployment's own labelled sample ------------------------------------

def recalibrate(model_path: Path | str, data_dir: Path | str, cache_dir: Path | str | None = None,
                max_review_rate: float = 0.05, default_profile: str | None = None, write: bool = True) -> dict:
    """Re-choose a model's profiles on a labelled sample of the deployment's own traffic.

    ``data_dir``: any layout ``ekyc.training.data.load_samples`` reads (a manifest, CelebA-Spoof
    or ``live/`` + ``spoof/`` folders), all of it is the calibration sample. Faces are found and
    cut exactly as the server does; the model is run through ONNX Runtime. With one source the
    review band is ``calibrate``'s (errors removed for at most ``max_review_rate`` of traffic);
    with several, it spans their per-source thresholds (``travelling_profiles``). Writes the
    profiles into the model's metadata (``write``) with a record of the sample; returns them.
    """
    from ekyc.quality.faces import CropRule
    from ekyc.training.crops import CropCache, build_crops
    from ekyc.training.data import load_samples
    from ekyc.training.export import update_metadata
    from ekyc.training.facecrops import FaceArrays
    from ekyc.training.multimodel import model_specs, open_model, score_arrays

    model = open_model(model_path)
    samples = load_samples(data_dir)
    box = CropCache.for_data(data_dir, CropRule(128, 1.2), cache_dir)
    build_crops(samples, data_dir, box, progress=False)
    arrays = FaceArrays.build(samples, data_dir, box, model_specs(model), cache_dir=cache_dir, progress=False)
    labels = np.array([s.label for s in arrays.samples])
    if len(set(labels.tolist())) < 2:
        raise ValueError(f"{data_dir}: the calibration sample needs live and spoof faces "
                         f"({int((labels == 0).sum())} live, {int((labels == 1).sum())} spoof with a detected face)")
    scores = score_arrays(model, arrays.arrays).astype(np.float64)
    attacks = np.array([s.attack or "unknown" if s.label == SPOOF else "" for s in arrays.samples], dtype=object)
    sources = np.array([s.source for s in arrays.samples], dtype=object)
    if len(set(sources.tolist())) > 1:
        profiles = travelling_profiles(scores, labels, attacks, sources)
    else:
        profiles = metadata_profiles(calibrate(scores, labels, list(attacks), max_review_rate=max_review_rate))
    default = default_profile or model.metadata.raw.get("default_profile", "balanced")
    record = {"data_dir_name": Path(data_dir).resolve().name, "n_live": int((labels == 0).sum()),
              "n_spoof": int((labels == 1).sum()), "n_without_face": len(samples) - len(arrays),
              "sources": sorted(set(sources.tolist())), "scored_by": "ekyc.models.liveness.LivenessModel (onnxruntime)"}
    if write:
        update_metadata(model_path, profiles=_clean(profiles), default_profile=default,
                        threshold=float(profiles[default]["threshold"]), calibration=record)
    return {"profiles": _clean(profiles), "default_profile": default, "sample": record}


def candidates_table(reports: dict[str, dict], costs: dict[str, dict] | None = None) -> str:
    """One row per candidate: each held-out setup's AUC / BPCER@APCER=1 %, the worst row, pooled
    AUC and APCER@BPCER=5 %, the lowest AUC under any shift, serving cost."""
    setups_ = sorted({s for r in reports.values() for s in r["rows"]})
    head = ("| candidate | " + " | ".join(f"{s}: AUC / BPCER@APCER=1 %" for s in setups_)
            + " | worst AUC | pooled AUC | pooled APCER@BPCER=5 % | min AUC under shifts | ms/face, MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in reports.items():
        cells = [f"{_f(r['rows'][s].get('auc'))} / {_pct(r['rows'][s].get('bpcer_at_apcer_1pct'))}" if s in r["rows"] else "–"
                 for s in setups_]
        worst = min((r["rows"][s].get("auc", 1.0) for s in r["rows"]), default=None)
        c = (costs or {}).get(name) or {}
        cost = f"{c['ms']:.1f}, {c['mb']:.1f}" if c else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_f(worst)} | {_f(r['pooled'].get('auc'), 4)} | "
                     f"{_pct(r['pooled'].get('apcer_at_bpcer_5pct'))} | {_f(r.get('min_shift_auc'))} | {cost} |")
    any_report = next(iter(reports.values()), None)
    if any_report:
        cells = []
        for s in setups_:
            b = (any_report["rows"].get(s) or {}).get("baseline") or {}
            cells.append(f"{_f(b.get('auc'))} / {_pct(b.get('bpcer_at_apcer_1pct'))} ({b.get('feature', '–')})")
        pb = any_report["pooled"].get("baseline") or {}
        lines.append("| best trivial feature (chosen on the held-out setup itself) | " + " | ".join(cells)
                     + f" | – | {_f(pb.get('auc'), 4)} ({pb.get('feature', '–')}) | – | – | – |")
    return "\n".join(lines) + "\n"
