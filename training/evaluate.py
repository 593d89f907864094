"""Evaluate an ONNX liveness model on a split's cached crops, scored by the shipped runtime.

Scores come from ``ekyc.models.liveness.LivenessModel`` (ONNX Runtime), never from PyTorch.
Only faces the detector found are scored: the server answers ``NO_FACE`` before the model
runs for the others, which are counted, not scored.

The report (JSON, and ``render_markdown`` for people) holds, in ISO/IEC 30107-3 terms
(spoof = attack presentation; APCER per attack type and its maximum; BPCER; ACER):

* ``at_profiles``: APCER per attack type and BPCER at every operating point of the model's
  metadata (strict / balanced / lenient), with 95 % intervals, and what its review band does;
* ``by_attack``: per attack type, threshold-free (AUC, EER, BPCER@APCER=1 %/5 %,
  APCER@BPCER=5 %) on that attack's spoofs against the live faces of the same sources (so a
  replay set is judged against its own live faces, not against easy ones from elsewhere);
* ``overall`` and ``by_source`` (the same, pooled / per collection);
* ``slices``: BPCER (and APCER) by subject, glasses, session, measured lighting, CelebA-Spoof
  attributes, illumination and environment when present;
* ``baselines``: the best trivial single-feature score on the same samples;
* ``stress``: the same model on the same crops after (a) removing a shortcut cue for every
  crop alike — the same effective resolution (``resolution_64px``), the same luma mean and
  contrast (``luma_standardised``) — the ranking must survive these; and (b) a camera-like
  change — JPEG, darker, brighter, flatter — which shows how far absolute scores (the
  thresholds) move;
* ``band``: errors against the share sent to review, for review bands around each profile.

Intervals: ``boot`` = cluster bootstrap (recordings / frame blocks resampled within subject
x label, ``ekyc.training.data.cluster_key``); ``wilson`` = Wilson interval treating images
as independent (optimistic with video frames). Read the bootstrap one.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ekyc.training import metrics as M
from ekyc.training.baselines import baseline_table, features
from ekyc.training.calibrate import band_tradeoff, decide
from ekyc.training.crops import CropCache, load_crops
from ekyc.training.data import SPOOF, Sample, cluster_key, slice_values

LIGHTING_BINS = ((0, 70, "dark"), (70, 160, "normal"), (160, 256, "bright"))


def _clean(value):
    """JSON-safe: nan/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    return value


def input_caches(model, cache: CropCache) -> dict[str, CropCache]:
    """A crop cache per model input: ``cache`` (the first input's rule) and its siblings of the
    same data for the other inputs' rules (``ekyc-train`` builds them all)."""
    from ekyc.training.crops import rule_name

    base = cache.root.parent.parent
    return {name: cache if rule == cache.rule else CropCache(base / rule_name(rule) / cache.root.name, rule)
            for name, rule in model.inputs}


def usable_inputs(model, cache: CropCache, samples: list[Sample], fallback: bool = False):
    """(samples with a crop for every input, {input name: crop files})."""
    caches = input_caches(model, cache)
    per_input = {name: dict(c.usable(samples, fallback)) for name, c in caches.items()}
    kept = [s for s in samples if all(s in found for found in per_input.values())]
    return kept, {name: [found[s] for s in kept] for name, found in per_input.items()}


def score_items(model, items: list[tuple[Sample, Path]], batch_size: int = 64, cache: CropCache | None = None) -> np.ndarray:
    if cache is not None and len(model.inputs) > 1:
        kept, files = usable_inputs(model, cache, [s for s, _ in items])
        if len(kept) != len(items):
            raise ValueError("some faces lack a crop for one of the model's inputs")
        return score_crops(model, {name: load_crops(paths) for name, paths in files.items()}, batch_size)
    scores = []
    for start in range(0, len(items), batch_size):
        crops = load_crops([p for _, p in items[start : start + batch_size]])
        scores.append(model.score(crops))
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def score_crops(model, crops, batch_size: int = 64) -> np.ndarray:
    """Scores of an array of crops (single-input model) or of ``{input name: crops}``."""
    if isinstance(crops, dict):
        n = len(next(iter(crops.values())))
        out = [model.score_inputs({k: v[i : i + batch_size] for k, v in crops.items()}) for i in range(0, n, batch_size)]
    else:
        out = [model.score(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# --- stress conditions ---------------------------------------------------------------------

def _stress_conditions() -> dict:
    from ekyc.training.augment import jpeg, rescale

    def scaled(factor):
        return lambda c: np.clip(c.astype(np.float32) * factor, 0, 255).astype(np.uint8)

    def flat(c):
        x = c.astype(np.float32)
        return np.clip((x - x.mean()) * 0.6 + x.mean(), 0, 255).astype(np.uint8)

    def standardised(c):
        x = c.astype(np.float32)
        luma = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip((x - luma.mean()) * (50.0 / max(float(luma.std()), 1.0)) + 128.0, 0, 255).astype(np.uint8)

    def grey(c):
        luma = c.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.repeat(np.clip(luma, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)

    return {
        # every crop brought to the same effective resolution (all sources are sharper than 64 px
        # across the crop): removes the source-resolution cue for live and spoof alike
        "resolution_64px": lambda c: rescale(c, 64 / c.shape[0]),
        # every crop's luma mean/std set to 128/50: brightness and contrast carry no information
        "luma_standardised": standardised,
        # colour removed (luma in all three channels): saturation carries no information
        "greyscale": grey,
        # all three at once
        "all_cues_removed": lambda c: grey(standardised(rescale(c, 64 / c.shape[0]))),
        "jpeg_q40": lambda c: jpeg(c, 40),
        "darker_x0.6": scaled(0.6),
        "brighter_x1.4": scaled(1.4),
        "contrast_x0.6": flat,
    }


# --- metric helpers ------------------------------------------------------------------------

def _threshold_free(scores, labels) -> dict:
    if not (np.any(labels == 0) and np.any(labels == 1)):
        return {}
    b1, t1 = M.bpcer_at_apcer(scores, labels, 0.01)
    b5, _ = M.bpcer_at_apcer(scores, labels, 0.05)
    a5, _ = M.apcer_at_bpcer(scores, labels, 0.05)
    e, te = M.eer(scores, labels)
    n_live = int(np.sum(labels == 0))
    return {"n_live": n_live, "n_spoof": int(np.sum(labels == 1)),
            "auc": M.roc_auc(scores, labels), "eer": e, "eer_threshold": te,
            "bpcer_at_apcer_1pct": b1, "bpcer_at_apcer_1pct_threshold": t1,
            # Wilson on the live images at that threshold: a bound even when every resample of a
            # perfectly separated set is perfect (images treated as independent: optimistic)
            "bpcer_at_apcer_1pct_wilson": list(M.wilson(int(round(b1 * n_live)), n_live)),
            "bpcer_at_apcer_5pct": b5, "apcer_at_bpcer_5pct": a5}


def _boot_threshold_free(scores, labels, clusters, strata, n_boot, seed) -> dict:
    """Cluster-bootstrap intervals of AUC, EER and BPCER@APCER=1 %/5 %, APCER@BPCER=5 %."""
    if n_boot <= 0 or not (np.any(labels == 0) and np.any(labels == 1)):
        return {}

    def stat(fn):
        def inner(idx):
            l = labels[idx]
            if not (np.any(l == 0) and np.any(l == 1)):
                return None
            return fn(scores[idx], l)
        return inner

    out = {}
    for name, fn in (("auc", M.roc_auc), ("eer", lambda s, l: M.eer(s, l)[0]),
                     ("bpcer_at_apcer_1pct", lambda s, l: M.bpcer_at_apcer(s, l, 0.01)[0]),
                     ("bpcer_at_apcer_5pct", lambda s, l: M.bpcer_at_apcer(s, l, 0.05)[0]),
                     ("apcer_at_bpcer_5pct", lambda s, l: M.apcer_at_bpcer(s, l, 0.05)[0])):
        lo, hi, _ = M.cluster_bootstrap(stat(fn), clusters, strata, n_boot=n_boot, seed=seed)
        out[name] = [lo, hi]
    return out


def _rate(flags: np.ndarray, clusters: np.ndarray, strata: np.ndarray, n_boot: int, seed: int) -> dict:
    """A rate (mean of 0/1 flags) with Wilson and cluster-bootstrap intervals."""
    n = int(flags.size)
    k = int(flags.sum())
    out = {"rate": k / n if n else math.nan, "k": k, "n": n, "wilson": list(M.wilson(k, n))}
    if n and n_boot > 0:
        lo, hi, _ = M.cluster_bootstrap(lambda idx: float(flags[idx].mean()) if idx.size else None,
                                        clusters, strata, n_boot=n_boot, seed=seed)
        out["boot"] = [lo, hi]
    return out


def _at_threshold(scores, labels, attacks, clusters, strata, profile: dict, n_boot: int, seed: int) -> dict:
    t = float(profile["threshold"])
    live = labels == 0
    out = {"threshold": t, "apcer_by_attack": {}}
    for name in sorted(set(attacks[labels == 1].tolist())):
        mask = (labels == 1) & (attacks == name)
        out["apcer_by_attack"][name] = _rate(scores[mask] < t, clusters[mask], strata[mask], n_boot, seed)
    out["apcer_max"] = max((v["rate"] for v in out["apcer_by_attack"].values()), default=math.nan)
    out["bpcer"] = _rate(scores[live] >= t, clusters[live], strata[live], n_boot, seed)
    out["acer"] = (out["apcer_max"] + out["bpcer"]["rate"]) / 2 if live.any() and (~live).any() else math.nan
    decisions = Counter((("live" if l == 0 else "spoof"), decide(float(s), profile)) for s, l in zip(scores, labels))
    out["confusion"] = {f"{truth}->{dec}": n for (truth, dec), n in sorted(decisions.items())}
    band = profile.get("review_band")
    if band:
        from ekyc.training.calibrate import band_outcome

        out["with_review_band"] = band_outcome(scores, labels, band[0], band[1])
    return out


def _lighting(brightness: float) -> str:
    return next(name for lo, hi, name in LIGHTING_BINS if lo <= brightness < hi)


def _slices(samples, scores, labels, threshold, brightness) -> dict:
    table: dict[str, dict[str, dict]] = {}
    for i, sample in enumerate(samples):
        values = slice_values(sample)
        values["lighting (measured)"] = _lighting(brightness[i])
        for name, value in values.items():
            cell = table.setdefault(name, {}).setdefault(value, {"n_live": 0, "rejected": 0, "n_spoof": 0, "accepted": 0})
            if labels[i] == 0:
                cell["n_live"] += 1
                cell["rejected"] += int(scores[i] >= threshold)
            else:
                cell["n_spoof"] += 1
                cell["accepted"] += int(scores[i] < threshold)
    out = {}
    for name, cells in table.items():
        if name.startswith("attr:") and len(cells) < 2:
            continue
        out[name] = {}
        for value, c in sorted(cells.items()):
            out[name][value] = {
                "n_live": c["n_live"],
                "bpcer": c["rejected"] / c["n_live"] if c["n_live"] else None,
                "bpcer_wilson": list(M.wilson(c["rejected"], c["n_live"])) if c["n_live"] else None,
                "n_spoof": c["n_spoof"],
                "apcer_pooled": c["accepted"] / c["n_spoof"] if c["n_spoof"] else None,
            }
    return out


def _attack_domains(samples, labels, attacks, sources) -> dict[str, np.ndarray]:
    """attack -> mask of its spoofs plus the live faces of the sources those spoofs come from."""
    out = {}
    for name in sorted(set(attacks[labels == 1].tolist())):
        spoof = (labels == 1) & (attacks == name)
        domain_sources = set(sources[spoof].tolist())
        live = (labels == 0) & np.isin(sources, sorted(domain_sources))
        out[name] = spoof | live
    return out


def load_profiles(metadata: dict, threshold: float | None = None) -> tuple[dict, str]:
    """The metadata's profiles (or one made from its single threshold) and the default's name."""
    profiles = metadata.get("profiles")
    default = metadata.get("default_profile", "balanced")
    if not profiles:
        profiles = {"default": {"threshold": metadata["threshold"], "target": "metadata threshold",
                                "review_band": None}}
        default = "default"
    if threshold is not None:
        profiles = {**profiles, "override": {"threshold": float(threshold), "target": "--eval-threshold",
                                             "review_band": None}}
        default = "override"
    return profiles, default


def evaluate(
    model_path: Path | str,
    samples: list[Sample],
    cache: CropCache,
    threshold: float | None = None,
    split_name: str = "test",
    report_path: Path | str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    stress: bool = True,
    plots_dir: Path | str | None = None,
    markdown_path: Path | str | None = None,
    history: list[dict] | None = None,
    val_report: dict | None = None,
    fallback: bool = False,
) -> dict:
    """Score ``samples`` (their cached, detected-face crops) with the ONNX model; the full report."""
    from ekyc.model_store import sha256_file
    from ekyc.models.liveness import LivenessModel

    model = LivenessModel(Path(model_path), intra_op_threads=2)
    if model.crop_rule != cache.rule:
        raise ValueError(f"model crop rule {model.crop_rule} differs from the crop cache's {cache.rule}")
    profiles, default = load_profiles(model.metadata.raw, threshold)
    t_default = float(profiles[default]["threshold"])
    statuses = Counter((row or {}).get("status", "missing") for row in cache.rows(samples))
    kept, files = usable_inputs(model, cache, samples, fallback)
    all_crops = {name: load_crops(paths) for name, paths in files.items()}
    first = model.inputs[0][0]
    crops = all_crops[first]  # the first input's crops: trivial baselines, stress examples
    scores = score_crops(model, all_crops if len(all_crops) > 1 else crops).astype(np.float64)
    labels = np.array([s.label for s in kept], dtype=np.int64)
    attacks = np.array([s.attack or "unknown" if s.label == SPOOF else "" for s in kept], dtype=object)
    sources = np.array([s.source for s in kept], dtype=object)
    clusters = np.array([cluster_key(s) for s in kept], dtype=object)
    strata = np.array([f"{s.subject}/{s.label}" for s in kept], dtype=object)
    index_rows = cache.rows(kept)
    feats = features(crops, index_rows) if len(kept) else {}

    report: dict = {
        "model": Path(model_path).name,
        "version": model.version,
        "onnx_sha256": sha256_file(Path(model_path)),
        "split": split_name,
        "scored_by": "ekyc.models.liveness.LivenessModel (onnxruntime)",
        "decision": "spoof iff score >= threshold; UNCERTAIN iff lo <= score < hi of a review band",
        "default_profile": default,
        "threshold": t_default,
        "n_samples": len(samples),
        "n_scored": len(kept),
        "n_without_crop": len(samples) - len(kept),
        "crop_status": dict(sorted(statuses.items())),
        "subjects": sorted({s.subject for s in samples}),
        "intervals": {"boot": f"cluster bootstrap, {n_boot} resamples of recordings/frame blocks within "
                              "subject x label, 95 % percentile", "wilson": "Wilson 95 %, images as independent"},
        "n_clusters": {"live": len(set(clusters[labels == 0].tolist())), "spoof": len(set(clusters[labels == 1].tolist()))},
    }
    if not len(kept):
        report = _clean(report)
        if report_path:
            Path(report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
        return report

    attack_list = list(attacks)
    report["overall"] = M.pad_metrics(scores, labels, attack_list, t_default)
    report["overall"]["ci"] = _boot_threshold_free(scores, labels, clusters, strata, n_boot, seed)
    report["at_profiles"] = {name: _at_threshold(scores, labels, attacks, clusters, strata, p, n_boot, seed)
                             for name, p in profiles.items()}
    domains = _attack_domains(kept, labels, attacks, sources)
    report["by_attack"] = {}
    for name, mask in domains.items():
        entry = _threshold_free(scores[mask], labels[mask])
        entry["live_from"] = sorted(set(sources[mask & (labels == 0)].tolist()))
        entry["ci"] = _boot_threshold_free(scores[mask], labels[mask], clusters[mask], strata[mask], n_boot, seed)
        report["by_attack"][name] = entry
    report["by_source"] = {}
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        entry = M.pad_metrics(scores[mask], labels[mask], list(attacks[mask]), t_default)
        entry["ci"] = _boot_threshold_free(scores[mask], labels[mask], clusters[mask], strata[mask], n_boot, seed)
        report["by_source"][source] = entry
    report["slices"] = _slices(kept, scores, labels, t_default, feats["brightness"])
    report["baselines"] = {"overall": baseline_table(feats, labels)}
    for name, mask in domains.items():
        report["baselines"][name] = baseline_table(feats, labels, mask)
    for source in sorted(set(sources.tolist())):
        report["baselines"][f"source:{source}"] = baseline_table(feats, labels, sources == source)
    report["band"] = {name: band_tradeoff(scores, labels, p["threshold"]) for name, p in profiles.items()}
    if stress:
        report["stress"] = {}
        for cond, fn in _stress_conditions().items():
            shifted = {name: np.stack([fn(c) for c in arr]) for name, arr in all_crops.items()}
            s2 = score_crops(model, shifted if len(shifted) > 1 else shifted[first]).astype(np.float64)
            entry = {"overall": _threshold_free(s2, labels),
                     "at_default": {"apcer_max": max(float(np.mean(s2[(labels == 1) & (attacks == a)] < t_default))
                                                     for a in set(attacks[labels == 1].tolist())),
                                    "bpcer": float(np.mean(s2[labels == 0] >= t_default)) if (labels == 0).any() else None}}
            for name, mask in domains.items():
                entry[name] = _threshold_free(s2[mask], labels[mask])
            report["stress"][cond] = entry
    report["scores"] = {"live": np.sort(scores[labels == 0]).round(6).tolist(),
                        **{f"live:{src}": np.sort(scores[(labels == 0) & (sources == src)]).round(6).tolist()
                           for src in sorted(set(sources[labels == 0].tolist()))},
                        **{f"spoof:{a}": np.sort(scores[(labels == 1) & (attacks == a)]).round(6).tolist()
                           for a in sorted(set(attacks[labels == 1].tolist()))}}
    report = _clean(report)
    if plots_dir is not None:
        from ekyc.training.plots import write_plots

        report["plots"] = write_plots(report, Path(plots_dir), history=history,
                                      prefix=f"{Path(model_path).stem}-{split_name}")
    if report_path:
        report_path = Path(report_path)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(render_markdown(report, val_report=val_report,
                                                       base=Path(markdown_path).parent))
    return report


# --- Markdown ------------------------------------------------------------------------------

def _pct(value, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.{digits}f} %"


def _ci(interval, digits: int = 1) -> str:
    if not interval or interval[0] is None:
        return ""
    return f" [{100 * interval[0]:.{digits}f}, {100 * interval[1]:.{digits}f}]"


def _num(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _num_ci(value, interval, digits: int = 4) -> str:
    text = _num(value, digits)
    if interval and interval[0] is not None:
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


def summary_line(report: dict) -> str:
    m = report.get("overall") or {}
    if not m:
        return f"{report['split']}: nothing scored"
    parts = [f"{report['split']} ({m['n_live']} live, {m['n_spoof']} spoof): AUC {_num(m.get('auc'))}, EER {_num(m.get('eer'))}"]
    for name, entry in (report.get("by_attack") or {}).items():
        parts.append(f"{name}: AUC {_num(entry.get('auc'))} BPCER@APCER1% {_num(entry.get('bpcer_at_apcer_1pct'))}")
    prof = (report.get("at_profiles") or {}).get(report.get("default_profile"), {})
    if prof:
        per = ", ".join(f"{k} {v['rate']:.3f}" for k, v in prof["apcer_by_attack"].items())
        parts.append(f"at {report['default_profile']} {prof['threshold']:.4f}: APCER {per}; BPCER {prof['bpcer']['rate']:.3f}")
    return "; ".join(parts)


def render_markdown(report: dict, val_report: dict | None = None, base: Path | None = None) -> str:
    """A human summary of one report (and the validation report's band evidence when given)."""
    lines = [f"# Evaluation: `{report['model']}` ({report['version']}), {report['split']} split", ""]
    lines += [f"Scored by {report['scored_by']} on {report['n_scored']} detected-face crops "
              f"({report['n_without_crop']} images without a detected face are not scored: the server "
              f"answers NO_FACE for them; crop status {report['crop_status']}). Subjects: "
              f"{', '.join(report['subjects'])}. Clusters (independent recordings/frame blocks): "
              f"{report['n_clusters']['live']} live, {report['n_clusters']['spoof']} spoof.", "",
              "Intervals are 95 %: **boot** = cluster bootstrap over recordings/frame blocks within subject x "
              "label (the honest one: neighbouring video frames are nearly copies), *wilson* = Wilson, images "
              "treated as independent (optimistic).", ""]
    if not report.get("overall"):
        return "\n".join(lines + ["Nothing was scored.", ""])
    lines += ["## Per attack type (threshold-free)", "",
              "Each attack type's spoofs against the live faces of the same sources. Next to each metric: the best "
              "trivial single-feature baseline on the same samples (its better polarity, chosen on these samples).", "",
              "| attack | live from | live / spoof | AUC [boot] | EER [boot] | BPCER@APCER=1 % [boot] *wilson* | BPCER@APCER=5 % | APCER@BPCER=5 % | best trivial baseline: AUC, BPCER@APCER=1 % |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, e in report["by_attack"].items():
        b = (report["baselines"].get(name) or {}).get("best", {})
        ci = e.get("ci", {})
        lines.append(
            f"| {name} | {', '.join(e.get('live_from', []))} | {e.get('n_live')} / {e.get('n_spoof')} | "
            f"{_num_ci(e.get('auc'), ci.get('auc'))} | {_pct(e.get('eer'))}{_ci(ci.get('eer'))} | "
            f"{_pct(e.get('bpcer_at_apcer_1pct'))}{_ci(ci.get('bpcer_at_apcer_1pct'))} *{_ci(e.get('bpcer_at_apcer_1pct_wilson')).strip()}* | {_pct(e.get('bpcer_at_apcer_5pct'))} | "
            f"{_pct(e.get('apcer_at_bpcer_5pct'))} | {b.get('feature', '–')}: {_num(b.get('auc'), 3)}, {_pct(b.get('bpcer_at_apcer_1pct'))} |")
    o = report["overall"]
    ob = report["baselines"]["overall"].get("best", {})
    oc = o.get("ci", {})
    lines.append(f"| all (pooled, one threshold for every source) | all | {o['n_live']} / {o['n_spoof']} | {_num_ci(o.get('auc'), oc.get('auc'))} | "
                 f"{_pct(o.get('eer'))}{_ci(oc.get('eer'))} | {_pct(o.get('bpcer_at_apcer_1pct'))}{_ci(oc.get('bpcer_at_apcer_1pct'))} | "
                 f"{_pct(o.get('bpcer_at_apcer_5pct'))} | {_pct(o.get('apcer_at_bpcer_5pct'))} | "
                 f"{ob.get('feature', '–')}: {_num(ob.get('auc'), 3)}, {_pct(ob.get('bpcer_at_apcer_1pct'))} |")
    lines += ["", "## At the operating points (profiles from the model metadata)", "",
              "| profile | threshold | " + " | ".join(f"APCER {a} [boot] *wilson*" for a in
                                                      next(iter(report['at_profiles'].values()))['apcer_by_attack'])
              + " | BPCER [boot] *wilson* | ACER |",
              "|---|---|" + "---|" * len(next(iter(report['at_profiles'].values()))['apcer_by_attack']) + "---|---|"]
    for name, p in report["at_profiles"].items():
        cells = [f"{_pct(v['rate'])} ({v['k']}/{v['n']}){_ci(v.get('boot'))} *{_ci(v.get('wilson')).strip()}*"
                 for v in p["apcer_by_attack"].values()]
        bp = p["bpcer"]
        star = " (default)" if name == report["default_profile"] else ""
        lines.append(f"| {name}{star} | {p['threshold']:.4f} | " + " | ".join(cells) +
                     f" | {_pct(bp['rate'])} ({bp['k']}/{bp['n']}){_ci(bp.get('boot'))} *{_ci(bp.get('wilson')).strip()}* | {_pct(p['acer'])} |")
    lines += ["", "## Review band: errors against review load", "",
              "Symmetric bands around each profile's threshold (half-width in logit units). A spoof in the band is "
              "not accepted and a live face in the band is not rejected: both go to a person. Errors = accepted "
              "attacks + rejected live faces among the automatic decisions.", ""]
    for source_name, rep in (("validation", val_report), (report["split"], report)):
        if not rep or not rep.get("band"):
            continue
        lines += [f"**{source_name}**", "", "| profile | half-width | band | review | errors (APCER / BPCER) |", "|---|---|---|---|---|"]
        for name, rows in rep["band"].items():
            for row in rows:
                lines.append(f"| {name} | {row['half_width_logit']} | [{row['lo']:.4f}, {row['hi']:.4f}) | "
                             f"{_pct(row['review_rate'])} | {row['errors']} ({_pct(row['apcer'])} / {_pct(row['bpcer'])}) |")
        lines.append("")
    lines += ["## BPCER by slice (default profile)", "", "| slice | value | live | BPCER *wilson* | spoof | APCER (pooled) |", "|---|---|---|---|---|---|"]
    for name, cells in report["slices"].items():
        for value, c in cells.items():
            lines.append(f"| {name} | {value} | {c['n_live']} | {_pct(c['bpcer'])} *{_ci(c['bpcer_wilson']).strip()}* | "
                         f"{c['n_spoof']} | {_pct(c['apcer_pooled'])} |")
    lines += ["", "## Trivial single-feature baselines (AUC, better polarity)", "",
              "| samples | " + " | ".join(("brightness", "contrast", "saturation", "laplacian_var", "face_size", "image_height")) + " |",
              "|---|" + "---|" * 6]
    for name, table in report["baselines"].items():
        lines.append(f"| {name} | " + " | ".join(_num(table.get(f, {}).get("auc"), 3) for f in
                                                 ("brightness", "contrast", "saturation", "laplacian_var", "face_size", "image_height")) + " |")
    if report.get("stress"):
        attacks = list(report["by_attack"])
        lines += ["", "## Stress: the same crops, degraded (AUC / BPCER@APCER=1 % per attack type; rates at the default threshold)", "",
                  "| condition | " + " | ".join(attacks) + " | APCER max / BPCER at default |", "|---|" + "---|" * (len(attacks) + 1)]
        plain = {a: report["by_attack"][a] for a in attacks}
        lines.append("| none | " + " | ".join(f"{_num(plain[a].get('auc'))} / {_pct(plain[a].get('bpcer_at_apcer_1pct'))}" for a in attacks)
                     + f" | {_pct(report['at_profiles'][report['default_profile']]['apcer_max'])} / "
                       f"{_pct(report['at_profiles'][report['default_profile']]['bpcer']['rate'])} |")
        for cond, entry in report["stress"].items():
            lines.append(f"| {cond} | " + " | ".join(f"{_num(entry.get(a, {}).get('auc'))} / {_pct(entry.get(a, {}).get('bpcer_at_apcer_1pct'))}"
                                                     for a in attacks)
                         + f" | {_pct(entry['at_default']['apcer_max'])} / {_pct(entry['at_default']['bpcer'])} |")
    if report.get("plots"):
        lines += ["", "## Plots", ""]
        for name, path in report["plots"].items():
            rel = Path(path)
            if base is not None:
                try:
                    rel = Path(path).resolve().relative_to(Path(base).resolve())
                except ValueError:
                    pass
            lines.append(f"![{name}]({rel.as_posix()})")
    return "\n".join(lines) + "\n"
