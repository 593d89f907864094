"""``ekyc-train``: the liveness model's pipeline, one subcommand per step.

    ekyc-train all --data-dir /path/to/data      # split, crops, train, export (+ calibrate), evaluate
    ekyc-train split | crops | train | export | calibrate | evaluate | baselines | compare | bench | publish

``--data-dir`` defaults to ``$EKYC_DATA_DIR``. The data directory holds a ``manifest.csv``
(``path,label,attack,subject,source,kind,note``), CelebA-Spoof's own layout (``Data/`` +
``metas/intra_test/``) or ``live/`` and ``spoof/`` folders (optionally ``live/<subject>/...``).
``python -m ekyc.training ...`` is the same program.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ekyc.paths import DEFAULT_CACHE, DEFAULT_DETECTOR, DEFAULT_MODEL, PROJECT_ROOT

DEFAULT_SPLIT = PROJECT_ROOT / "training" / "splits" / "shared-data.json"
PROG = "ekyc-train"


class CliError(Exception):
    """A one-line message for the user; exit status 1."""


def _rel(path: Path) -> str:
    try:
        return Path(path).resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=os.environ.get("EKYC_DATA_DIR") or None,
                        help="labelled images (default: $EKYC_DATA_DIR)")
    common.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="crops, runs, reports and torch weights (default: .cache/)")
    common.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT,
                        help="subject split, made by `split` and reused (default: training/splits/shared-data.json)")
    common.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR, help="face detector model (BlazeFace .onnx)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    parser = argparse.ArgumentParser(prog=PROG, description="Train, evaluate and ship the ekyc liveness model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text):
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    def split_opts(p):
        p.add_argument("--seed", type=int, default=0, help="seed of the subject shuffle (default 0)")
        p.add_argument("--force", action="store_true", help="make a new split even if the file exists")

    def crop_opts(p):
        p.add_argument("--crop-size", type=int, default=128, help="model input side in pixels (default 128)")
        p.add_argument("--crop-scale", type=float, default=1.2,
                       help="crop side / face box side: more context above 1.2 (default 1.2)")

    def train_opts(p):
        p.add_argument("--arch", dest="architecture", default=None,
                       choices=("mobilenet_v3_small", "mobilenet_v2", "efficientnet_b0"))
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--max-per-group", type=int, default=None, help="crops per (subject, label) and epoch, 0 = all")
        p.add_argument("--patience", type=int, default=None)
        p.add_argument("--train-seed", type=int, default=None)
        p.add_argument("--loss", choices=("bce", "focal"), default=None)
        p.add_argument("--spoof-weight", type=float, default=None, help="cost of a missed spoof x class ratio")
        p.add_argument("--synth-ratio", type=float, default=None, help="synthetic spoofs per live crop drawn (0 = off)")
        p.add_argument("--hard-mining", action="store_true", help="draw crops in proportion to their running loss")
        p.add_argument("--ema-decay", type=float, default=None, help="validate/keep an EMA of the weights (e.g. 0.98)")
        p.add_argument("--select", choices=("eer_max", "eer"), default=None,
                       help="early stopping metric: worst attack type's validation EER (default) or pooled")
        p.add_argument("--no-pretrained", action="store_true", help="random init instead of ImageNet weights")
        p.add_argument("--name", default=None, help="suffix of the run directory name")

    def export_opts(p, standalone):
        p.add_argument("--output", type=Path, default=DEFAULT_MODEL, help="ONNX file (metadata goes next to it)")
        p.add_argument("--threshold", type=float, default=None,
                       help="a fixed threshold instead of calibrated profiles (only without data)")
        p.add_argument("--version", default=None, help="model version string (default liveness-<arch>-<size>-x<scale>-v2)")
        p.add_argument("--default-profile", default="balanced", choices=("strict", "balanced", "lenient"))
        p.add_argument("--max-review-rate", type=float, default=0.05,
                       help="largest share of validation images a review band may send to a person (default 0.05)")
        if standalone:
            p.add_argument("--checkpoint", type=Path, default=None, help="best.pt of a run (default: the latest run)")

    def eval_opts(p, standalone):
        p.add_argument("--split", choices=("train", "val", "test", "all"), default=None,
                       help="which part of the data (default: test when the split file fits the data, else all)")
        p.add_argument("--report", type=Path, default=None, help="JSON report (default .cache/reports/<model>-<split>.json)")
        p.add_argument("--out-dir", type=Path, default=None,
                       help="also write <model>-<split>.md and PNG plots there")
        p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for intervals (0 = none)")
        p.add_argument("--no-stress", action="store_true", help="skip the degraded-crop stress conditions")
        if standalone:
            p.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL, help="ONNX model (default models/liveness.onnx)")
            p.add_argument("data", nargs="?", type=Path, default=None, help="data directory (default --data-dir)")
            p.add_argument("--eval-threshold", type=float, default=None, help="also evaluate at this threshold")
            p.add_argument("--update-metadata", action="store_true",
                           help="store the summary in the model's .json as <split>_metrics")
            p.add_argument("--fallback-crops", action="store_true",
                           help="also score images without a detected face (whole image / data set box)")

    split_opts(add("split", "make (or check) the subject-disjoint train/val/test split"))
    crop_opts(add("crops", "detect and crop every face into the crop cache"))
    p = add("train", "train a network on the train split, select on the validation split")
    crop_opts(p)
    train_opts(p)
    p.add_argument("--fallback-crops", action="store_true", help="also train on images without a detected face")
    p = add("export", "export a checkpoint to ONNX + metadata, calibrate the profiles on the validation split")
    export_opts(p, True)
    p = add("calibrate", "re-choose the operating points of an exported model on the validation split")
    p.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--default-profile", default=None, choices=("strict", "balanced", "lenient"))
    p.add_argument("--max-review-rate", type=float, default=0.05)
    p = add("evaluate", "score data through ONNX Runtime (LivenessModel): JSON report, Markdown, plots")
    eval_opts(p, True)
    p = add("baselines", "trivial single-feature baselines (brightness, contrast, ...) on a split")
    crop_opts(p)
    p.add_argument("--split", choices=("train", "val", "test"), default="val")
    p = add("compare", "export each run's best checkpoint, calibrate and score it on the validation split")
    p.add_argument("runs", nargs="+", type=Path, help="run directories (or best.pt files)")
    p.add_argument("--out", type=Path, default=None, help="Markdown table (default .cache/reports/compare.md; JSON next to it)")
    p.add_argument("--n-boot", type=int, default=200)
    p = add("bench", "latency of one-crop calls on one ONNX Runtime thread")
    p.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-n", type=int, default=300)
    p = add("publish", "upload model + metadata + reports to s3://bucket/prefix/<version>/ with sha256s")
    p.add_argument("model", type=Path)
    p.add_argument("destination", help="s3://bucket/prefix")
    p.add_argument("--report", type=Path, action="append", default=[], help="a report file to publish (repeatable)")
    p = add("all", "split, crops, train, export (+ calibrate) and evaluate the test split")
    split_opts(p)
    crop_opts(p)
    train_opts(p)
    export_opts(p, False)
    eval_opts(p, False)
    p.add_argument("--fallback-crops", action="store_true", help="also train on images without a detected face")
    return parser


# --- shared helpers ------------------------------------------------------------------------

def _samples(args, data_dir=None):
    from ekyc.training.data import load_samples

    return load_samples(data_dir or args.data_dir)


def _rule(args=None, size=None, scale=None):
    from ekyc.quality.faces import CropRule

    size = size if size is not None else args.crop_size
    scale = scale if scale is not None else args.crop_scale
    if size < 16 or scale <= 0:
        raise CliError("--crop-size must be >= 16 and --crop-scale > 0")
    return CropRule(size=int(size), scale=float(scale))


def _split(args, samples):
    from ekyc.training.data import ensure_split, load_split, split_samples

    if args.command in ("split", "all"):
        split, created = ensure_split(samples, args.split_file, seed=args.seed, force=args.force)
        print(f"split: {'wrote' if created else 'reusing'} {_rel(args.split_file)}")
    else:
        split = load_split(args.split_file)
    return split, split_samples(samples, split)


def _cache(args, rule, data_dir=None):
    from ekyc.training.crops import CropCache

    return CropCache.for_data(data_dir or args.data_dir, rule, args.cache_dir)


def _crops(args, samples, rule, data_dir=None):
    from ekyc.training.crops import build_crops, describe_counts

    if not Path(args.detector).is_file():
        raise CliError(f"face detector model not found: {args.detector}")
    cache = _cache(args, rule, data_dir)
    counts = build_crops(samples, data_dir or args.data_dir, cache, args.detector, progress=not args.quiet)
    print(f"crops: {_rel(cache.root)}: {describe_counts(counts, samples, cache)}")
    return cache


def _latest_file(args) -> Path:
    return Path(args.cache_dir) / "runs" / "latest.txt"


def _checkpoint_path(path: Path) -> Path:
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


# --- steps ---------------------------------------------------------------------------------

def step_split(args):
    samples = _samples(args)
    split, _ = _split(args, samples)
    for name, counts in split["counts"].items():
        print(f"  {name}: {', '.join(split['subjects'][name])} -> {counts['live']} live, "
              f"{counts['spoof']} spoof {counts['spoof_by_attack']}")


def step_crops(args, samples=None):
    samples = samples if samples is not None else _samples(args)
    return _crops(args, samples, _rule(args))


def step_train(args, samples=None, parts=None, cache=None):
    from ekyc.training.train import TrainConfig, new_run_dir, train

    samples = samples if samples is not None else _samples(args)
    if parts is None:
        _, parts = _split(args, samples)
    cache = cache or _crops(args, parts["train"] + parts["val"], _rule(args))
    fallback = getattr(args, "fallback_crops", False)
    train_items, val_items = cache.usable(parts["train"], fallback), cache.usable(parts["val"])
    if not train_items or not val_items:
        raise CliError("no cached crops for the train/val split: run `ekyc-train crops` first")
    config = TrainConfig()
    for arg, key in (("architecture", "architecture"), ("epochs", "epochs"), ("batch_size", "batch_size"),
                     ("lr", "lr"), ("max_per_group", "max_per_group"), ("patience", "patience"),
                     ("train_seed", "seed"), ("loss", "loss"), ("spoof_weight", "spoof_weight"),
                     ("synth_ratio", "synth_ratio"), ("select", "select"), ("ema_decay", "ema_decay")):
        value = getattr(args, arg, None)
        if value is not None:
            setattr(config, key, value)
    if args.hard_mining:
        config.hard_mining = True
    if args.no_pretrained:
        config.pretrained = False
    if config.epochs < 1 or config.batch_size < 1 or config.lr <= 0 or config.synth_ratio < 0:
        raise CliError("--epochs and --batch-size must be >= 1, --lr > 0 and --synth-ratio >= 0")
    run_dir = new_run_dir(Path(args.cache_dir) / "runs", getattr(args, "name", None))
    extra = {"data_dir": Path(args.data_dir).resolve().name, "split_file": _rel(args.split_file),
             "crop": cache.rule.to_dict(), "fallback_crops": fallback}
    summary = train(train_items, val_items, config, run_dir, progress=not args.quiet, extra_config=extra)
    _latest_file(args).parent.mkdir(parents=True, exist_ok=True)
    _latest_file(args).write_text(str(run_dir.resolve()) + "\n")
    best = summary["best"]
    print(f"train: {_rel(run_dir)}: best epoch {best['epoch']} val EER {best['val_eer']:.4f} "
          f"(worst attack {best['val_eer_max']:.4f}) AUC {best['val_auc']:.4f}; "
          f"{summary['epochs_run']} epochs in {summary['seconds']:.0f}s")
    return summary["checkpoint"]


def _training_description(samples, split, args) -> dict:
    sources = sorted({s.source for s in samples})
    shared = {"nuaa", "replay-a"} <= set(sources)
    return {
        "data": {
            "data_dir_name": Path(args.data_dir).resolve().name if args.data_dir else None,
            "sources": sources,
            "description": "NUAA Photograph Imposter Database frames (print attacks, 12 subjects) and two "
            "public demo replay sets (replay-a, replay-b; face crops, video replay attacks, two people each)"
            if shared else "see split file",
        },
        "split_file": _rel(args.split_file),
        "split": {"unit": split["unit"], "subjects": split["subjects"], "counts": split["counts"]},
    }


def _val_scores(onnx_path, items):
    from ekyc.training.crops import load_crops
    from ekyc.training.export import onnx_scores

    crops = load_crops([p for _, p in items])
    return crops, onnx_scores(onnx_path, crops)


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compact_history(history: list[dict]) -> list[dict]:
    keys = ("epoch", "train_loss", "val_loss", "val_eer", "val_eer_max", "val_auc", "val_bpcer_at_apcer_1pct_max", "seconds")
    return [{k: h[k] for k in keys if k in h} for h in history]


def export_checkpoint(args, checkpoint, output, samples=None, split=None, parts=None, version=None,
                      default_profile="balanced", max_review_rate=0.05) -> tuple[Path, dict]:
    """Checkpoint -> ONNX + metadata with profiles calibrated on the validation split."""
    import numpy as np

    from ekyc.training.calibrate import calibrate, metadata_profiles
    from ekyc.training.export import default_version, export_onnx, latency_ms, parity, sha256_file, write_metadata
    from ekyc.training.metrics import eer, roc_auc
    from ekyc.training.model import load_checkpoint

    checkpoint = _checkpoint_path(checkpoint)
    if not checkpoint.is_file():
        raise CliError(f"checkpoint not found: {checkpoint}")
    net, ckpt = load_checkpoint(checkpoint)
    config = ckpt.get("config", {})
    crop = config.get("crop") or {"size": 128, "scale": 1.2}
    rule = _rule(size=crop["size"], scale=crop["scale"])
    out = export_onnx(net, output, rule.size)
    history_file = checkpoint.parent / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    extra = {"training": {"run": checkpoint.parent.name, "checkpoint_sha256": sha256_file(checkpoint),
                          "best_epoch": ckpt.get("epoch"), "best_val": ckpt.get("val"), "config": config,
                          "history": _compact_history(history)}}
    version = version or default_version(config.get("architecture", "mobilenet_v2"), rule.size, rule.scale)
    if not args.data_dir:
        threshold = getattr(args, "threshold", None)
        if threshold is None:
            raise CliError("no data directory to calibrate on: pass --data-dir or a fixed --threshold")
        if not 0.0 <= threshold <= 1.0:
            raise CliError(f"--threshold must be within 0..1, got {threshold}")
        meta = write_metadata(out, net, rule, threshold, version=version, extra=extra)
        return out, json.loads(meta.read_text())
    samples = samples if samples is not None else _samples(args)
    if parts is None:
        split, parts = _split(args, samples)
    cache = _crops(args, parts["val"], rule)  # incremental: only missing crops are made
    val_items = cache.usable(parts["val"])
    if not val_items:
        raise CliError("no validation crops to calibrate on")
    crops, scores = _val_scores(out, val_items)
    labels = np.array([s.label for s, _ in val_items])
    attacks = [s.attack for s, _ in val_items]
    calibrated = calibrate(scores, labels, attacks, max_review_rate=max_review_rate)
    pick = np.unique(np.linspace(0, len(crops) - 1, min(len(crops), 96)).astype(int))
    diff = parity(net, out, crops[pick])
    val_eer, val_t = eer(scores, labels)
    extra["validation"] = {"subjects": split["subjects"]["val"], "n_live": int((labels == 0).sum()),
                           "n_spoof": int((labels == 1).sum()), "eer": val_eer, "eer_threshold": val_t,
                           "auc": roc_auc(scores, labels), "scored_by": "onnxruntime",
                           "band_tradeoff": {k: v["val_band_tradeoff"] for k, v in calibrated.items()},
                           "max_review_rate": max_review_rate}
    extra["parity"] = {"max_abs_diff": diff, "n_crops": int(len(pick)), "crops": "real validation face crops",
                       "compared": "PyTorch float32 vs ONNX Runtime CPU, spoof probability"}
    extra.update(_training_description(samples, split, args))
    extra["latency"] = {**latency_ms(out, rule.size, threads=1, n=200), "cpu": _cpu_name(),
                        "note": "one-crop calls, ONNX Runtime CPU, intra_op_num_threads=1 (the server's default)"}
    meta = write_metadata(out, net, rule, version=version, extra=extra, profiles=metadata_profiles(calibrated),
                          default_profile=default_profile)
    return out, json.loads(meta.read_text())


def step_export(args, checkpoint=None, samples=None, split=None, parts=None):
    checkpoint = checkpoint or getattr(args, "checkpoint", None)
    if checkpoint is None:
        latest = _latest_file(args)
        if not latest.is_file():
            raise CliError("no checkpoint given and no training run found: pass --checkpoint or run `train`")
        checkpoint = Path(latest.read_text().strip()) / "best.pt"
    out, meta = export_checkpoint(args, checkpoint, args.output, samples, split, parts, version=args.version,
                                  default_profile=args.default_profile, max_review_rate=args.max_review_rate)
    print(f"export: {_rel(out)} ({out.stat().st_size / 1e6:.2f} MB), version {meta['version']}, "
          f"threshold {meta['threshold']:.4f}")
    if "parity" in meta:
        print(f"export: PyTorch/ONNX Runtime max abs diff {meta['parity']['max_abs_diff']:.2e} "
              f"on {meta['parity']['n_crops']} real crops")
    for name, p in (meta.get("profiles") or {}).items():
        print(f"  {name}: threshold {p['threshold']:.4f} ({p['target']}) val APCER {p['val_apcer']:.4f} "
              f"BPCER {p['val_bpcer']:.4f} band {p['review_band']}")
    return out


def step_calibrate(args):
    import numpy as np

    from ekyc.models.liveness import LivenessModel
    from ekyc.training.calibrate import calibrate, metadata_profiles
    from ekyc.training.evaluate import score_items
    from ekyc.training.export import update_metadata

    model = LivenessModel(Path(args.model), intra_op_threads=2)
    samples = _samples(args)
    _, parts = _split(args, samples)
    cache = _crops(args, parts["val"], model.crop_rule)
    items = cache.usable(parts["val"])
    scores = score_items(model, items)
    labels = np.array([s.label for s, _ in items])
    calibrated = calibrate(scores, labels, [s.attack for s, _ in items], max_review_rate=args.max_review_rate)
    default = args.default_profile or model.metadata.raw.get("default_profile", "balanced")
    profiles = metadata_profiles(calibrated)
    update_metadata(args.model, profiles=profiles, default_profile=default, threshold=profiles[default]["threshold"])
    for name, p in profiles.items():
        print(f"calibrate: {name}: threshold {p['threshold']:.4f} val APCER {p['val_apcer']:.4f} "
              f"BPCER {p['val_bpcer']:.4f} band {p['review_band']}")


def _eval_parts(args, samples, data_dir):
    """(split name, samples) to evaluate: the requested split, or all when the split file does not fit."""
    from ekyc.training.data import DataError, load_split, split_samples

    wanted = args.split
    if wanted == "all":
        return "all", samples
    try:
        parts = split_samples(samples, load_split(args.split_file))
    except DataError as exc:
        if wanted is not None:
            raise
        print(f"evaluate: {exc}; evaluating all of {data_dir}", file=sys.stderr)
        return "all", samples
    name = wanted or "test"
    return name, parts[name]


def step_evaluate(args, model_path=None, samples=None, update_metadata=None):
    from ekyc.models.liveness import LivenessModel
    from ekyc.training.evaluate import evaluate, summary_line
    from ekyc.training.export import update_metadata as update

    model_path = Path(model_path or args.model)
    data_dir = getattr(args, "data", None) or args.data_dir
    if data_dir is None:
        raise CliError("no data to evaluate on: pass DATA or --data-dir (or set EKYC_DATA_DIR)")
    samples = samples if samples is not None else _samples(args, data_dir)
    split_name, part = _eval_parts(args, samples, data_dir)
    model = LivenessModel(model_path)
    meta = model.metadata.raw
    cache = _crops(args, part, model.crop_rule, data_dir)
    stem = f"{model_path.stem}-{split_name}"
    report_path = args.report or Path(args.cache_dir) / "reports" / f"{stem}.json"
    out_dir = args.out_dir
    val_report = None
    if out_dir is not None and split_name == "test":
        val_json = Path(out_dir) / f"{model_path.stem}-val.json"
        val_report = json.loads(val_json.read_text()) if val_json.is_file() else None
    report = evaluate(model_path, part, cache, threshold=getattr(args, "eval_threshold", None), split_name=split_name,
                      report_path=report_path, n_boot=args.n_boot, stress=not args.no_stress,
                      plots_dir=out_dir, markdown_path=(Path(out_dir) / f"{stem}.md") if out_dir else None,
                      history=(meta.get("training") or {}).get("history"), val_report=val_report,
                      fallback=getattr(args, "fallback_crops", False))
    print(f"evaluate: {summary_line(report)}")
    print(f"evaluate: report {_rel(report_path)}" + (f", Markdown and plots in {_rel(out_dir)}" if out_dir else ""))
    if out_dir is not None:
        Path(out_dir, f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    if update_metadata if update_metadata is not None else getattr(args, "update_metadata", False):
        keep = {k: report.get(k) for k in ("split", "subjects", "default_profile", "threshold", "n_scored",
                                           "n_without_crop", "overall", "by_attack", "at_profiles", "intervals")}
        for entry in (keep.get("at_profiles") or {}).values():
            entry.pop("confusion", None)
        keep["overall"] = {k: v for k, v in (keep["overall"] or {}).items() if k != "apcer_by_attack"}
        keep["scored_by"] = report["scored_by"]
        update(model_path, **{f"{split_name}_metrics": keep})
    return report


def step_baselines(args):
    import numpy as np

    from ekyc.training.baselines import baseline_table, features
    from ekyc.training.crops import load_crops

    samples = _samples(args)
    _, parts = _split(args, samples)
    cache = _crops(args, parts[args.split], _rule(args))
    items = cache.usable(parts[args.split])
    kept = [s for s, _ in items]
    feats = features(load_crops([p for _, p in items]), cache.rows(kept))
    labels = np.array([s.label for s in kept])
    sources = np.array([s.source for s in kept])
    tables = {"all": baseline_table(feats, labels)}
    for source in sorted(set(sources.tolist())):
        tables[source] = baseline_table(feats, labels, sources == source)
    print(f"baselines on {args.split} (AUC, better polarity; BPCER@APCER=1%):")
    for name, table in tables.items():
        cells = ", ".join(f"{f} {v['auc']:.3f}/{v['bpcer_at_apcer_1pct']:.3f}" for f, v in table.items() if f != "best")
        print(f"  {name}: {cells}")
    return tables


def step_compare(args):
    from ekyc.training.evaluate import evaluate
    from ekyc.training.export import latency_ms
    from ekyc.training.model import load_checkpoint

    samples = _samples(args)
    split, parts = _split(args, samples)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, run in enumerate(args.runs):
            checkpoint = _checkpoint_path(run)
            net, ckpt = load_checkpoint(checkpoint)
            config = ckpt.get("config", {})
            onnx_path = Path(tmp) / f"cand{n}.onnx"
            out, meta = export_checkpoint(args, checkpoint, onnx_path, samples, split, parts)
            rule = _rule(size=meta["crop"]["size"], scale=meta["crop"]["scale"])
            cache = _cache(args, rule)
            report = evaluate(out, parts["val"], cache, split_name="val", n_boot=args.n_boot, stress=True)
            summary = json.loads((checkpoint.parent / "summary.json").read_text()) if (checkpoint.parent / "summary.json").is_file() else {}
            rows.append({
                "run": checkpoint.parent.name, "architecture": config.get("architecture"), "crop": meta["crop"],
                "pretrained": config.get("pretrained_loaded"), "loss": config.get("loss", "bce"),
                "synth_ratio": config.get("synth_ratio", 0), "hard_mining": config.get("hard_mining", False),
                "epochs_run": summary.get("epochs_run"), "best_epoch": ckpt.get("epoch"),
                "train_seconds": summary.get("seconds"), "params": sum(p.numel() for p in net.parameters()),
                "onnx_mb": out.stat().st_size / 1e6, "latency": latency_ms(out, rule.size, threads=1, n=100),
                "profiles": meta["profiles"], "overall": {k: report["overall"].get(k) for k in ("auc", "eer", "bpcer_at_apcer_1pct")},
                "by_attack": report["by_attack"], "baselines": report["baselines"],
                "stress": {c: {a: e.get(a, {}).get("auc") for a in report["by_attack"]} for c, e in report["stress"].items()},
            })
            worst = max(e["bpcer_at_apcer_1pct"] for e in report["by_attack"].values())
            print(f"compare: {rows[-1]['run']}: worst-attack BPCER@APCER=1% {worst:.4f}, "
                  + ", ".join(f"{a} AUC {e['auc']:.4f}" for a, e in report["by_attack"].items()))
    for row in rows:
        row["select_worst_bpcer_at_apcer_1pct"] = max(e["bpcer_at_apcer_1pct"] for e in row["by_attack"].values())
    rows.sort(key=lambda r: (r["select_worst_bpcer_at_apcer_1pct"],
                             -min(e["auc"] for e in r["by_attack"].values())))
    out = args.out or Path(args.cache_dir) / "reports" / "compare.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    out.write_text(render_compare(rows))
    print(f"compare: best {rows[0]['run']}; table {_rel(out)}")
    return rows


def render_compare(rows: list[dict]) -> str:
    attacks = sorted({a for r in rows for a in r["by_attack"]})
    head = ("| run | backbone | crop | loss | synth | hard mining | epochs (best) | "
            + " | ".join(f"{a}: BPCER@APCER=1 % / AUC" for a in attacks)
            + " | pooled AUC | stress AUC min | ms/crop (1 thread) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [f"{100 * r['by_attack'][a]['bpcer_at_apcer_1pct']:.1f} % / {r['by_attack'][a]['auc']:.4f}"
                 if a in r["by_attack"] else "–" for a in attacks]
        stress_min = min((v for c in r["stress"].values() for v in c.values() if v is not None), default=None)
        lines.append(
            f"| {r['run']} | {r['architecture']}{'' if r['pretrained'] else ' (scratch)'} | "
            f"{r['crop']['size']} x{r['crop']['scale']} | {r['loss']} | {r['synth_ratio']} | {r['hard_mining']} | "
            f"{r['epochs_run']} ({r['best_epoch']}) | " + " | ".join(cells) +
            f" | {r['overall']['auc']:.4f} | {stress_min if stress_min is None else f'{stress_min:.4f}'} | "
            f"{r['latency']['median_ms']:.2f} |")
    base = rows[0]["baselines"] if rows else {}
    cells = []
    for a in attacks:
        best = (base.get(a) or {}).get("best")
        cells.append(f"{100 * best['bpcer_at_apcer_1pct']:.1f} % / {best['auc']:.4f} ({best['feature']})" if best else "–")
    overall = (base.get("overall") or {}).get("best") or {}
    lines.append("| best trivial feature | – | – | – | – | – | – | " + " | ".join(cells)
                 + f" | {overall.get('auc', float('nan')):.4f} ({overall.get('feature', '–')}) | – | – |")
    return "\n".join(lines) + "\n"


def step_bench(args):
    from ekyc.models.liveness import LivenessModel
    from ekyc.training.export import latency_ms

    model = LivenessModel(Path(args.model))
    result = latency_ms(args.model, model.crop_rule.size, threads=args.threads, n=args.n)
    print(f"bench: {args.model}: {result['median_ms']:.2f} ms median, {result['p90_ms']:.2f} ms p90 per crop "
          f"({args.threads} thread(s), {args.n} one-crop calls)")
    return result


def step_publish(args):
    from ekyc.training.publish import publish

    manifest = publish(args.model, args.destination, args.report)
    for obj in manifest["objects"]:
        print(f"publish: {'uploaded' if obj['uploaded'] else 'unchanged'} {obj['key']} sha256 {obj['sha256'][:12]}...")
    print(f"publish: serve it with: ekyc-server --model {manifest['model_uri']}")
    return manifest


def step_all(args):
    samples = _samples(args)
    split, parts = _split(args, samples)
    cache = step_crops(args, samples)
    checkpoint = step_train(args, samples, parts, cache)
    out = step_export(args, checkpoint, samples, split, parts)
    args.model, args.data = out, None
    args.split = args.split or "test"
    step_evaluate(args, out, samples, update_metadata=(args.split == "test"))


STEPS = {"split": step_split, "crops": step_crops, "train": step_train, "export": step_export,
         "calibrate": step_calibrate, "evaluate": step_evaluate, "baselines": step_baselines,
         "compare": step_compare, "bench": step_bench, "publish": step_publish, "all": step_all}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ekyc.errors import EkycError
    from ekyc.errors import ModelLoadError
    from ekyc.training.data import DataError
    from ekyc.training.publish import PublishError

    try:
        STEPS[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (CliError, DataError, ModelLoadError, PublishError, EkycError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
