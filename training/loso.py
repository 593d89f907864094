"""Leave-one-setup-out (LOSO): train without a capture setup, test on it, for every setup.

The setups are the ``source`` values of the data (the manifest's ``source`` column; never a
list in code), so a setup added to the data becomes a fold by itself. A fold's test part is
every image of its held-out setup; its training part is every image of the other setups,
minus any subject that also appears in the held-out setup (none in the shared data; the
check makes sure). ``fold_splits`` writes the folds as split files and ``check_fold``
verifies that no setup or person of a fold's test part is in its training part.

``run`` trains a candidate's members on each fold's training part (``ekyc.training.distill``),
fuses them into one ONNX file (``ekyc.training.multimodel``), and scores the held-out setup,
as captured and under every capture shift (``ekyc.training.shifts``), through ONNX Runtime.
The out-of-fold scores (each face scored by a model that never saw its setup) make the
LOSO table, the pooled row (one score scale for every setup) and the calibration that
travels (``ekyc.training.transfer``).

    python -m ekyc.training.loso run --name mnv2-distill --member mobilenet_v2
    python -m ekyc.training.loso run --name peer --peer
    python -m ekyc.training.loso report .cache/loso/mnv2-distill .cache/loso/peer
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ekyc.training.data import Sample

LOSO_FORMAT = "loso-1"


def setups(samples: list[Sample]) -> list[str]:
    """The capture setups of the data: its distinct ``source`` values."""
    return sorted({s.source for s in samples})


def fold_split(samples: list[Sample], held_out: str) -> dict:
    """The split file of one fold: train = other setups (minus shared subjects), test = ``held_out``."""
    test = [s for s in samples if s.source == held_out]
    if not test:
        raise ValueError(f"no samples of setup {held_out!r}")
    test_subjects = {s.subject for s in test}
    train = [s for s in samples if s.source != held_out and s.subject not in test_subjects]
    dropped = sorted({s.subject for s in samples if s.source != held_out and s.subject in test_subjects})

    def counts(part):
        return {"live": sum(1 for s in part if s.label == 0), "spoof": sum(1 for s in part if s.label == 1)}

    return {
        "format": LOSO_FORMAT,
        "unit": "setup (manifest source)",
        "held_out": held_out,
        "train": {"sources": setups(train), "subjects": sorted({s.subject for s in train}), "counts": counts(train)},
        "test": {"sources": [held_out], "subjects": sorted(test_subjects), "counts": counts(test)},
        "dropped_from_train": dropped,
    }


def fold_splits(samples: list[Sample]) -> list[dict]:
    return [fold_split(samples, src) for src in setups(samples)]


def check_fold(fold: dict, samples: list[Sample] | None = None) -> None:
    """Raise ValueError if a setup or subject of the test part is in the training part
    (in the split file, and in ``samples`` assigned by it)."""
    test_sources, train_sources = set(fold["test"]["sources"]), set(fold["train"]["sources"])
    test_subjects, train_subjects = set(fold["test"]["subjects"]), set(fold["train"]["subjects"])
    if test_sources & train_sources:
        raise ValueError(f"fold {fold['held_out']}: setups {sorted(test_sources & train_sources)} in both parts")
    if test_subjects & train_subjects:
        raise ValueError(f"fold {fold['held_out']}: subjects {sorted(test_subjects & train_subjects)} in both parts")
    if samples is not None:
        train, test = apply_fold(samples, fold)
        if {s.source for s in train} & {s.source for s in test} or {s.subject for s in train} & {s.subject for s in test}:
            raise ValueError(f"fold {fold['held_out']}: the samples' train and test parts overlap")
        if not test:
            raise ValueError(f"fold {fold['held_out']}: no test samples")


def apply_fold(samples: list[Sample], fold: dict) -> tuple[list[Sample], list[Sample]]:
    train_sources, train_subjects = set(fold["train"]["sources"]), set(fold["train"]["subjects"])
    test_sources = set(fold["test"]["sources"])
    train = [s for s in samples if s.source in train_sources and s.subject in train_subjects]
    test = [s for s in samples if s.source in test_sources]
    return train, test


def write_fold_splits(samples: list[Sample], directory: Path | str) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for fold in fold_splits(samples):
        check_fold(fold, samples)
        path = directory / f"{fold['held_out']}.json"
        path.write_text(json.dumps(fold, indent=2) + "\n")
        out.append(path)
    return out


# --- running a candidate --------------------------------------------------------------------

def _arrays(data_dir, samples, specs, shift=None, cache_dir=None):
    from ekyc.quality.faces import CropRule
    from ekyc.training.crops import CropCache, build_crops
    from ekyc.training.facecrops import FaceArrays

    box = CropCache.for_data(data_dir, CropRule(128, 1.2), cache_dir)
    build_crops(samples, data_dir, box, progress=False)  # incremental: the detector runs once per image
    return FaceArrays.build(samples, data_dir, box, specs, shift=shift, cache_dir=cache_dir, progress=False)


def _score_fold(model, fold_dir: Path, name: str, held: str, fold: dict, everything, shifted: dict, in_test,
                extra: dict) -> dict:
    """Export a fold's model, score its held-out setup (as captured and shifted) via ONNX Runtime."""
    from ekyc.training.multimodel import export_fused, open_model, score_arrays, write_fused_metadata

    onnx_path = export_fused(model, fold_dir / "model.onnx")
    write_fused_metadata(onnx_path, model, version=f"{name}-loso-{held}",
                         extra={"loso": {"held_out": held, "train_sources": fold["train"]["sources"]}})
    runtime = open_model(onnx_path)
    test = everything.subset(in_test)
    result = {"candidate": name, "held_out": held, **extra,
              "paths": [s.path for s in test.samples],
              "scores": score_arrays(runtime, test.arrays).round(7).tolist(), "shifts": {}}
    for sh, arr in shifted.items():
        mask = np.array([s.source == held for s in arr.samples])
        sub = arr.subset(mask)
        result["shifts"][sh] = {"paths": [s.path for s in sub.samples],
                                "scores": score_arrays(runtime, sub.arrays).round(7).tolist()}
    (fold_dir / "scores.json").write_text(json.dumps(result) + "\n")
    print(f"{name}/{held}: scored {len(test)} faces", file=sys.stderr, flush=True)
    return result


def head_features(data_dir, samples, everything, n_views: int = 2, synth_per_live: float = 0.5, cache_dir=None):
    """Features of every face (clean) and of augmented/synthetic views, computed once and cached."""
    from ekyc.training.heads import augmented_views, extract, head_members, log

    root = Path(cache_dir or ".cache") / "loso" / "features"
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"heads-v{n_views}-s{synth_per_live:g}-{len(everything)}.npz"
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    members = head_members()
    log(f"features: {len(everything)} clean faces")
    clean = extract(members, everything.arrays)
    views, index, labels, synth = augmented_views(everything, n_views, synth_per_live)
    log(f"features: {len(index)} augmented/synthetic views")
    augmented = extract(members, views)
    out = {"clean": clean, "views": augmented, "index": index, "labels": labels, "synth": synth}
    np.savez(path, **out)
    return out


def run_heads(name: str, data_dir, head_config=None, n_views: int = 2, synth_per_live: float = 0.5,
              synth_weight: float = 0.5, cache_dir=None, out_root=None, shifts: bool = True) -> Path:
    """LOSO of the re-fitted-head MiniFASNet pair (``ekyc.training.heads``)."""
    from ekyc.training.data import load_samples
    from ekyc.training.distill import SPECS
    from ekyc.training.heads import HeadConfig, balance_weights, build_model, config_dict, fit_head, log
    from ekyc.training.shifts import SHIFTS

    head_config = head_config or HeadConfig()
    out = Path(out_root or Path(cache_dir or ".cache") / "loso") / name
    out.mkdir(parents=True, exist_ok=True)
    samples = load_samples(data_dir)
    everything = _arrays(data_dir, samples, list(SPECS.values()), cache_dir=cache_dir)
    shifted = {sh: _arrays(data_dir, samples, list(SPECS.values()), shift=sh, cache_dir=cache_dir) for sh in SHIFTS} if shifts else {}
    feats = head_features(data_dir, samples, everything, n_views, synth_per_live, cache_dir)
    src = np.array([s.source for s in everything.samples], dtype=object)
    subj = np.array([s.subject for s in everything.samples], dtype=object)
    lab = np.array([s.label for s in everything.samples])
    for fold in fold_splits(samples):
        held = fold["held_out"]
        fold_dir = out / held
        if (fold_dir / "scores.json").is_file():
            continue
        check_fold(fold, samples)
        fold_dir.mkdir(parents=True, exist_ok=True)
        (fold_dir / "split.json").write_text(json.dumps(fold, indent=2) + "\n")
        train_sources, train_subjects = set(fold["train"]["sources"]), set(fold["train"]["subjects"])
        in_train = np.array([s.source in train_sources and s.subject in train_subjects for s in everything.samples])
        in_test = src == held
        t0 = time.monotonic()
        params = fit_fold_head(feats, in_train, src, subj, lab, head_config, synth_weight)
        (fold_dir / "head.json").write_text(json.dumps({"params": params, "config": config_dict(head_config)}) + "\n")
        model = build_model(params)
        log(f"{name}/{held}: head fitted ({time.monotonic() - t0:.0f}s), exporting and scoring")
        _score_fold(model, fold_dir, name, held, fold, everything, shifted, in_test,
                    {"members": ["minifasnet_v2+head", "minifasnet_v1se+head"], "train_seconds": time.monotonic() - t0})
    return out


def fit_fold_head(feats: dict, in_train: np.ndarray, src, subj, lab, head_config, synth_weight: float = 0.5) -> dict:
    """The head fitted on the clean and augmented views of the faces in ``in_train``."""
    from ekyc.training.heads import balance_weights, fit_head

    idx = feats["index"]
    keep_views = in_train[idx]
    x = np.concatenate([feats["clean"][in_train], feats["views"][keep_views]])
    face = np.concatenate([np.flatnonzero(in_train), idx[keep_views]])
    y = np.concatenate([lab[in_train], feats["labels"][keep_views]])
    synth = np.concatenate([np.zeros(int(in_train.sum()), bool), feats["synth"][keep_views]])
    group_src = np.where(synth, src[face] + "+synthetic", src[face])
    w = balance_weights(group_src.astype(object), y, subj[face].astype(object))
    w = np.where(synth, w * synth_weight, w)
    return fit_head(x, y, w, head_config)


def peer_model():
    """Silent-Face's MiniFASNetV2 + V1SE, their live probabilities averaged (the original demo's fusion)."""
    from ekyc.training.distill import SPECS
    from ekyc.training.minifasnet import member
    from ekyc.training.multimodel import FusedLiveness

    return FusedLiveness([SPECS["minifasnet_v2"], SPECS["minifasnet_v1se"]],
                         [("minifasnet_v2", member("minifasnet_v2"), "face_x2.7"),
                          ("minifasnet_v1se", member("minifasnet_v1se"), "face_x4")])


def fused(members: dict, fusion: str = "mean_prob", weights=None, bias: float = 0.0):
    """A FusedLiveness of trained members ``{name: module}`` with their own crop inputs."""
    from ekyc.training.distill import SPECS
    from ekyc.training.multimodel import FusedLiveness

    names = list(members)
    specs = [SPECS[n] for n in names]
    return FusedLiveness(specs, [(n, members[n], SPECS[n].name) for n in names], fusion=fusion,
                         weights=weights, bias=bias)


def run(name: str, data_dir, member_names: list[str], peer: bool = False, out_root=None, cache_dir=None,
        config_overrides: dict | None = None, only: list[str] | None = None, shifts: bool = True) -> Path:
    """Train and score ``name`` on every fold; writes ``<out>/<held_out>/{model.onnx,scores.json}``."""
    from ekyc.training.data import load_samples
    from ekyc.training.distill import SPECS, MemberConfig, train_member
    from ekyc.training.multimodel import export_fused, open_model, score_arrays, write_fused_metadata
    from ekyc.training.shifts import SHIFTS

    out = Path(out_root or Path(cache_dir or ".cache") / "loso") / name
    out.mkdir(parents=True, exist_ok=True)
    samples = load_samples(data_dir)
    specs = list(SPECS.values())
    everything = _arrays(data_dir, samples, specs, cache_dir=cache_dir)
    shifted = {sh: _arrays(data_dir, samples, specs, shift=sh, cache_dir=cache_dir) for sh in SHIFTS} if shifts else {}
    for fold in fold_splits(samples):
        held = fold["held_out"]
        if only and held not in only:
            continue
        check_fold(fold, samples)
        fold_dir = out / held
        if (fold_dir / "scores.json").is_file():
            print(f"{name}/{held}: done before", file=sys.stderr)
            continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        (fold_dir / "split.json").write_text(json.dumps(fold, indent=2) + "\n")
        train_sources, train_subjects = set(fold["train"]["sources"]), set(fold["train"]["subjects"])
        in_train = np.array([s.source in train_sources and s.subject in train_subjects for s in everything.samples])
        in_test = np.array([s.source == held for s in everything.samples])
        t0 = time.monotonic()
        if peer:
            model = peer_model()
        else:
            members = {}
            for m in member_names:
                cfg = MemberConfig(member=m)
                for k, v in (config_overrides or {}).get(m, {}).items():
                    setattr(cfg, k, v)
                print(f"{name}/{held}: training {m} on {', '.join(sorted(train_sources))} "
                      f"({int(in_train.sum())} faces)", file=sys.stderr, flush=True)
                members[m] = train_member(everything.subset(in_train), cfg, run_dir=fold_dir)
            model = fused(members)
        _score_fold(model, fold_dir, name, held, fold, everything, shifted, in_test,
                    {"members": member_names if not peer else ["peer"], "train_seconds": time.monotonic() - t0})
    return out


def final(name: str, data_dir, member_names: list[str], loso_dir: Path, output: Path, version: str,
          config_overrides: dict | None = None, cache_dir=None, run_dir: Path | None = None) -> dict:
    """Train the candidate's members on every setup and export the shipped model.

    Its profiles are the candidate's travelling profiles from its LOSO out-of-fold scores (each
    face scored by a model that never saw its setup), so the thresholds describe unseen
    setups rather than the training data; its metadata records the LOSO summary.
    """
    import torch

    from ekyc.training.data import load_samples
    from ekyc.training.distill import SPECS, MemberConfig, load_member, train_member
    from ekyc.training.facecrops import CropSpec
    from ekyc.training.multimodel import FusedLiveness, export_fused, open_model, write_fused_metadata
    from ekyc.training.transfer import loso_report

    samples = load_samples(data_dir)
    arrays = _arrays(data_dir, samples, list(SPECS.values()), cache_dir=cache_dir)
    run_dir = Path(run_dir or Path(cache_dir or ".cache") / "final" / name)
    members, configs = {}, {}
    for m in member_names:
        cfg = MemberConfig(member=m)
        for k, v in (config_overrides or {}).get(m, {}).items():
            setattr(cfg, k, v)
        configs[m] = cfg
        checkpoint = run_dir / f"{m}.pt"
        if checkpoint.is_file():
            members[m] = load_member(m, checkpoint)
        else:
            print(f"final {name}: training {m} on every setup ({len(arrays)} faces)", file=sys.stderr, flush=True)
            members[m] = train_member(arrays, cfg, run_dir=run_dir)
    specs = [SPECS[m] for m in member_names]
    if len(specs) == 1 and specs[0].fit == "replicate":
        specs = [CropSpec("image", specs[0].size, specs[0].scale, "replicate")]  # the single-input contract
    model = FusedLiveness(specs, [(m, members[m], spec.name) for m, spec in zip(member_names, specs)])
    rep = loso_report(loso_dir, samples, arrays, n_boot=1000)
    profiles = rep["profiles"]
    output = Path(output)
    export_fused(model, output)
    from ekyc.training.export import probe_batch

    with torch.no_grad():
        probe = model(*[torch.from_numpy(probe_batch(s.size)).float() for s in specs]).numpy()
    extra = {
        "decision": "spoof iff spoof_probability >= threshold; with a profile's review_band [lo, hi], "
                    "lo <= spoof_probability < hi is UNCERTAIN (human review)",
        "profiles": {k: {kk: vv for kk, vv in v.items() if kk != "val_band_tradeoff"} for k, v in profiles.items()},
        "default_profile": "balanced",
        "calibration": {"on": "pooled leave-one-setup-out out-of-fold scores (every face scored by a model that "
                              "never saw its capture setup)", "candidate": rep["candidate"]},
        "parity_probe": {"generator": "ekyc.training.export.probe_batch", "inputs": [s.name for s in specs],
                         "sizes": [s.size for s in specs], "torch_spoof_probability": [float(v) for v in probe]},
        "training": {"members": {m: asdict_config(c) for m, c in configs.items()}, "setups": setups(samples),
                     "n_faces": len(arrays), "run_dir": run_dir.name,
                     "recipe": {"kind": "members", "name": rep["candidate"], "members": member_names,
                                "overrides": config_overrides or {}}},
        "licence": _licence(member_names, configs),
        "minifasnet_sources": _teacher_sources(member_names),
        "loso": {"rows": {k: _summary(v) for k, v in rep["rows"].items()}, "pooled": _summary(rep["pooled"]),
                 "min_shift_auc": rep.get("min_shift_auc")},
    }
    write_fused_metadata(output, model, version=version, extra=extra, threshold=float(profiles["balanced"]["threshold"]))
    scores = open_model(output).score_inputs({s.name: probe_batch(s.size) for s in specs})
    print(f"final {name}: {output} ({output.stat().st_size / 1e6:.2f} MB), parity probe max diff "
          f"{float(np.max(np.abs(scores - probe))):.2e}", file=sys.stderr)
    return rep


def _licence(member_names, configs) -> dict:
    from ekyc.training.minifasnet import LICENCE

    trained = any(configs[m].epochs > 0 for m in member_names)
    out = {"model": "Apache-2.0"}
    if any(m.startswith("minifasnet") for m in member_names):
        out["minifasnet"] = LICENCE + ("; the weights are Minivision's, unchanged" if not trained else
                                       "; fine-tuned by this project")
        out["notice"] = "NOTICE at the repository root names Minivision's Silent-Face Anti-Spoofing"
    if "mobilenet_v2" in member_names:
        out["initialisation"] = "torchvision MobileNetV2 IMAGENET1K_V1 weights, BSD-3-Clause"
    if trained:
        out["training_data"] = ("NUAA Photograph Imposter Database (research) and public demo replay sets with no "
                                "licence stated; see models/liveness.md")
    return out


def _teacher_sources(member_names) -> dict:
    from ekyc.training.minifasnet import FILES, sha256_file, verified_file

    return {FILES[m][0]: sha256_file(verified_file(m)) for m in member_names if m in FILES}


def asdict_config(cfg) -> dict:
    from dataclasses import asdict

    return asdict(cfg)


def _summary(row: dict) -> dict:
    keep = ("n_live", "n_spoof", "auc", "eer", "bpcer_at_apcer_1pct", "apcer_at_bpcer_5pct", "ci", "baseline")
    return {k: row.get(k) for k in keep}


def report(candidates: list[Path], data_dir, out: Path, n_boot: int = 1000) -> dict:
    """LOSO reports (JSON next to ``out``) and one Markdown file comparing the candidates."""
    from ekyc.training.data import load_samples
    from ekyc.training.distill import SPECS
    from ekyc.training.transfer import loso_report, loso_table, profile_table, shift_table, slice_table

    samples = load_samples(data_dir)
    arrays = _arrays(data_dir, samples, list(SPECS.values()))
    reports = {}
    lines = ["# Leave-one-setup-out", ""]
    for cand in candidates:
        rep = loso_report(cand, samples, arrays, n_boot=n_boot)
        reports[rep["candidate"]] = rep
        out.parent.mkdir(parents=True, exist_ok=True)
        (out.parent / f"loso-{rep['candidate']}.json").write_text(json.dumps(rep) + "\n")
        lines += [f"## {rep['candidate']}", "", loso_table(rep), "Profiles (pooled out-of-fold):", "", profile_table(rep),
                  f"Shifts (at the pooled balanced threshold {rep['profiles']['balanced']['threshold']:.4f}); min shift AUC "
                  f"{rep.get('min_shift_auc')}:", "", shift_table(rep), "Slices of live faces:", "", slice_table(rep)]
    out.write_text("\n".join(lines) + "\n")
    for name, rep in reports.items():
        rows = " ".join(f"{k} {v.get('auc', float('nan')):.3f}/{v.get('bpcer_at_apcer_1pct', float('nan')):.3f}"
                        for k, v in rep["rows"].items())
        print(f"{name}: {rows} | pooled AUC {rep['pooled'].get('auc', float('nan')):.4f} "
              f"APCER@BPCER5 {rep['pooled'].get('apcer_at_bpcer_5pct', float('nan')):.3f} "
              f"min shift AUC {rep.get('min_shift_auc')}")
    return reports


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ekyc.training.loso")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--name", required=True)
    p.add_argument("--member", action="append", default=[], choices=("mobilenet_v2", "minifasnet_v2", "minifasnet_v1se"))
    p.add_argument("--peer", action="store_true")
    p.add_argument("--data-dir", default=os.environ.get("EKYC_DATA_DIR"))
    p.add_argument("--out-root", default=None)
    p.add_argument("--only", action="append", default=None)
    p.add_argument("--set", action="append", default=[], help="member.key=value (JSON value)")
    p.add_argument("--no-shifts", action="store_true")
    p = sub.add_parser("heads")
    p.add_argument("--name", required=True)
    p.add_argument("--data-dir", default=os.environ.get("EKYC_DATA_DIR"))
    p.add_argument("--distill-weight", type=float, default=1.0)
    p.add_argument("--l2", type=float, default=1e-2)
    p.add_argument("--synth-weight", type=float, default=0.5)
    p.add_argument("--no-shifts", action="store_true")
    p = sub.add_parser("report")
    p.add_argument("candidates", nargs="+", type=Path)
    p.add_argument("--data-dir", default=os.environ.get("EKYC_DATA_DIR"))
    p.add_argument("--out", type=Path, default=Path(".cache/loso/report.md"))
    p.add_argument("--n-boot", type=int, default=1000)
    p = sub.add_parser("final")
    p.add_argument("--name", required=True)
    p.add_argument("--member", action="append", default=[], choices=("mobilenet_v2", "minifasnet_v2", "minifasnet_v1se"))
    p.add_argument("--loso-dir", type=Path, required=True)
    p.add_argument("--output", type=Path, default=Path("models/liveness.onnx"))
    p.add_argument("--version", required=True)
    p.add_argument("--data-dir", default=os.environ.get("EKYC_DATA_DIR"))
    p.add_argument("--set", action="append", default=[], help="member.key=value (JSON value)")
    p = sub.add_parser("splits")
    p.add_argument("--data-dir", default=os.environ.get("EKYC_DATA_DIR"))
    p.add_argument("--out", default="training/splits/loso")
    args = parser.parse_args(argv)
    if args.command == "splits":
        from ekyc.training.data import load_samples

        for path in write_fold_splits(load_samples(args.data_dir), args.out):
            print(path)
        return 0
    if args.command == "heads":
        from ekyc.training.heads import HeadConfig

        run_heads(args.name, args.data_dir, HeadConfig(distill_weight=args.distill_weight, l2=args.l2),
                  synth_weight=args.synth_weight, shifts=not args.no_shifts)
        return 0
    if args.command == "report":
        report(args.candidates, args.data_dir, args.out, args.n_boot)
        return 0
    overrides: dict = {}
    for item in args.set:
        key, value = item.split("=", 1)
        member, field_name = key.split(".", 1)
        overrides.setdefault(member, {})[field_name] = json.loads(value)
    if args.command == "final":
        final(args.name, args.data_dir, args.member, args.loso_dir, args.output, args.version, overrides)
        return 0
    run(args.name, args.data_dir, args.member, peer=args.peer, out_root=args.out_root, config_overrides=overrides,
        only=args.only, shifts=not args.no_shifts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
