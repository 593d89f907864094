"""``ekyc-train``: split, crop, train, export and evaluate the liveness model.

    ekyc-train all --data-dir /path/to/data          # the whole pipeline, in order
    ekyc-train split | crops | train | export | evaluate [options]

``--data-dir`` defaults to ``$EKYC_DATA_DIR``. The data directory holds either a
``manifest.csv`` (``path,label,attack,subject,source,kind,note``) or ``live/`` and ``spoof/``
folders (optionally ``live/<subject>/...``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ekyc.training.crops import DEFAULT_CACHE, DEFAULT_DETECTOR, PROJECT_ROOT

DEFAULT_SPLIT = PROJECT_ROOT / "training" / "splits" / "shared-data.json"
DEFAULT_MODEL = PROJECT_ROOT / "models" / "liveness.onnx"
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
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    parser = argparse.ArgumentParser(prog=PROG, description="Train and ship the ekyc liveness model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text):
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    def split_opts(p):
        p.add_argument("--seed", type=int, default=0, help="seed of the subject shuffle (default 0)")
        p.add_argument("--force", action="store_true", help="make a new split even if the file exists")

    def crop_opts(p):
        p.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR, help="face detector model (.task/.tflite)")
        p.add_argument("--crop-size", type=int, default=128)
        p.add_argument("--crop-scale", type=float, default=1.2)

    def train_opts(p):
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--max-per-group", type=int, default=None,
                       help="crops per (subject, label) and epoch, 0 = all")
        p.add_argument("--patience", type=int, default=None)
        p.add_argument("--train-seed", type=int, default=None)
        p.add_argument("--no-pretrained", action="store_true", help="random init instead of ImageNet weights")

    def export_opts(p, standalone):
        p.add_argument("--output", type=Path, default=DEFAULT_MODEL, help="ONNX file (metadata goes next to it)")
        p.add_argument("--threshold", type=float, default=None,
                       help="decision threshold (default: the validation split's EER threshold)")
        p.add_argument("--version", default=None, help="model version string")
        if standalone:
            p.add_argument("--checkpoint", type=Path, default=None,
                           help="best.pt of a run (default: the latest run)")

    def eval_opts(p, standalone):
        p.add_argument("--split", choices=("train", "val", "test"), default="test")
        p.add_argument("--report", type=Path, default=None, help="JSON report (default under .cache/reports/)")
        if standalone:
            p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
            p.add_argument("--eval-threshold", type=float, default=None, help="override the model's threshold")
            p.add_argument("--update-metadata", action="store_true",
                           help="store the metrics in the model's .json as test_metrics")

    split_opts(add("split", "make (or check) the subject-disjoint train/val/test split"))
    crop_opts(add("crops", "detect and crop every face into the crop cache"))
    p = add("train", "fine-tune the network on the train split, select on the validation EER")
    crop_opts(p)
    train_opts(p)
    p = add("export", "export a checkpoint to ONNX + metadata, threshold from the validation split")
    crop_opts(p)
    export_opts(p, True)
    p = add("evaluate", "score a split through ONNX Runtime (LivenessModel) and write a report")
    crop_opts(p)
    eval_opts(p, True)
    p = add("all", "split, crops, train, export and evaluate the test split")
    split_opts(p)
    crop_opts(p)
    train_opts(p)
    export_opts(p, False)
    eval_opts(p, False)
    return parser


# --- steps -------------------------------------------------------------------------------

def _samples(args):
    from ekyc.training.data import load_samples

    return load_samples(args.data_dir)


def _rule(args):
    from ekyc.quality.faces import CropRule

    if args.crop_size < 16 or args.crop_scale <= 0:
        raise CliError("--crop-size must be >= 16 and --crop-scale > 0")
    return CropRule(size=args.crop_size, scale=args.crop_scale)


def _split(args, samples):
    from ekyc.training.data import ensure_split, load_split, split_samples

    if getattr(args, "seed", None) is not None and args.command in ("split", "all"):
        split, created = ensure_split(samples, args.split_file, seed=args.seed, force=args.force)
        state = "wrote" if created else "reusing"
        print(f"split: {state} {_rel(args.split_file)}")
    else:
        split = load_split(args.split_file)
    return split, split_samples(samples, split)


def step_split(args):
    samples = _samples(args)
    split, parts = _split(args, samples)
    for name, counts in split["counts"].items():
        print(f"  {name}: {', '.join(split['subjects'][name])} -> {counts['live']} live, "
              f"{counts['spoof']} spoof {counts['spoof_by_attack']}")


def _cache(args):
    from ekyc.training.crops import CropCache

    return CropCache.for_data(args.data_dir, _rule(args), args.cache_dir)


def step_crops(args, samples=None):
    from ekyc.training.crops import build_crops, describe_counts

    samples = samples if samples is not None else _samples(args)
    if not Path(args.detector).is_file():
        raise CliError(f"face detector model not found: {args.detector}")
    cache = _cache(args)
    counts = build_crops(samples, args.data_dir, cache, args.detector, progress=not args.quiet)
    print(f"crops: {_rel(cache.root)}: {describe_counts(counts, samples, cache)}")
    return cache


def _latest_file(args) -> Path:
    return Path(args.cache_dir) / "runs" / "latest.txt"


def step_train(args, samples=None, parts=None, cache=None):
    from ekyc.training.train import TrainConfig, new_run_dir, train

    samples = samples if samples is not None else _samples(args)
    if parts is None:
        _, parts = _split(args, samples)
    cache = cache or _cache(args)
    train_items, val_items = cache.usable(parts["train"]), cache.usable(parts["val"])
    if not train_items or not val_items:
        raise CliError("no cached crops for the train/val split: run `ekyc-train crops` first")
    config = TrainConfig()
    for arg, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                     ("max_per_group", "max_per_group"), ("patience", "patience"), ("train_seed", "seed")):
        value = getattr(args, arg, None)
        if value is not None:
            setattr(config, key, value)
    if args.no_pretrained:
        config.pretrained = False
    if config.epochs < 1 or config.batch_size < 1 or config.lr <= 0:
        raise CliError("--epochs and --batch-size must be >= 1 and --lr > 0")
    run_dir = new_run_dir(Path(args.cache_dir) / "runs")
    extra = {"data_dir": Path(args.data_dir).resolve().name, "split_file": _rel(args.split_file),
             "crop": cache.rule.to_dict()}
    summary = train(train_items, val_items, config, run_dir, progress=not args.quiet, extra_config=extra)
    _latest_file(args).write_text(str(run_dir.resolve()) + "\n")
    best = summary["best"]
    print(f"train: {_rel(run_dir)}: best epoch {best['epoch']} val EER {best['val_eer']:.4f} "
          f"AUC {best['val_auc']:.4f}; {summary['epochs_run']} epochs in {summary['seconds']:.0f}s")
    return summary["checkpoint"]


def _training_description(samples, split, args) -> dict:
    sources = sorted({s.source for s in samples})
    return {
        "data": {
            "data_dir_name": Path(args.data_dir).resolve().name if args.data_dir else None,
            "sources": sources,
            "description": "NUAA Photograph Imposter Database frames (print attacks, 12 subjects) and two "
            "public demo replay sets (replay-a, replay-b; face crops, video replay attacks)"
            if {"nuaa", "replay-a"} <= set(sources) else "see split file",
        },
        "split_file": _rel(args.split_file),
        "split": {"unit": split["unit"], "subjects": split["subjects"], "counts": split["counts"]},
    }


def step_export(args, checkpoint=None, samples=None, split=None, parts=None, cache=None):
    from ekyc.training.export import (
        DEFAULT_VERSION, export_onnx, onnx_scores, parity, sha256_file, write_metadata,
    )
    from ekyc.training.metrics import eer
    from ekyc.training.model import load_checkpoint
    from ekyc.training.crops import load_crops

    checkpoint = checkpoint or getattr(args, "checkpoint", None)
    if checkpoint is None:
        latest = _latest_file(args)
        if not latest.is_file():
            raise CliError("no checkpoint given and no training run found: pass --checkpoint or run `train`")
        checkpoint = Path(latest.read_text().strip()) / "best.pt"
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CliError(f"checkpoint not found: {checkpoint}")
    net, ckpt = load_checkpoint(checkpoint)
    rule = _rule(args)
    ckpt_crop = ckpt.get("config", {}).get("crop")
    if ckpt_crop and ckpt_crop != rule.to_dict():
        raise CliError(f"checkpoint was trained on crops {ckpt_crop}, not {rule.to_dict()}")
    out = export_onnx(net, args.output, rule.size)

    extra = {"training": {"run": checkpoint.parent.name, "checkpoint_sha256": sha256_file(checkpoint),
                          "best_epoch": ckpt.get("epoch"), "best_val": ckpt.get("val"),
                          "config": ckpt.get("config")}}
    threshold = args.threshold
    if args.data_dir:
        samples = samples if samples is not None else _samples(args)
        if parts is None:
            split, parts = _split(args, samples)
        cache = cache or _cache(args)
        val_items = cache.usable(parts["val"])
        crops = load_crops([p for _, p in val_items])
        val_scores = onnx_scores(out, crops)
        labels = [s.label for s, _ in val_items]
        val_eer, val_threshold = eer(val_scores, labels)
        diff = parity(net, out, crops[:64])
        extra["validation"] = {"eer": val_eer, "eer_threshold": val_threshold, "n": len(val_items),
                               "subjects": split["subjects"]["val"], "scored_by": "onnxruntime"}
        extra["parity_max_abs_diff_val"] = diff
        extra.update(_training_description(samples, split, args))
        if threshold is None:
            threshold = val_threshold
        print(f"export: validation EER {val_eer:.4f} at threshold {val_threshold:.4f}; "
              f"PyTorch/ONNX max abs diff {diff:.2e}")
    elif threshold is None:
        raise CliError("no --threshold and no data directory to take the validation EER threshold from")
    if not 0.0 <= threshold <= 1.0:
        raise CliError(f"--threshold must be within 0..1, got {threshold}")
    meta = write_metadata(out, net, rule, threshold, version=args.version or DEFAULT_VERSION, extra=extra)
    print(f"export: {_rel(out)} ({out.stat().st_size / 1e6:.2f} MB), {_rel(meta)}, threshold {threshold:.4f}")
    return out


def step_evaluate(args, model_path=None, samples=None, parts=None, cache=None, update_metadata=None):
    from ekyc.training.evaluate import evaluate, summary_line
    from ekyc.training.export import update_metadata as update

    model_path = Path(model_path or args.model)
    samples = samples if samples is not None else _samples(args)
    if parts is None:
        _, parts = _split(args, samples)
    cache = cache or _cache(args)
    report_path = args.report or Path(args.cache_dir) / "reports" / f"{model_path.stem}-{args.split}.json"
    report = evaluate(model_path, parts[args.split], cache, threshold=getattr(args, "eval_threshold", None),
                      split_name=args.split, report_path=report_path)
    print(f"evaluate: {summary_line(report)}")
    for source, m in report["by_source"].items():
        print(f"  {source}: {m['n_live']} live, {m['n_spoof']} spoof, APCER {m['apcer_pooled']}, "
              f"BPCER {m['bpcer']}, AUC {m.get('auc')}")
    print(f"evaluate: report {_rel(report_path)}")
    if update_metadata if update_metadata is not None else getattr(args, "update_metadata", False):
        keep = {k: report[k] for k in ("split", "subjects", "threshold", "n_scored", "n_without_crop",
                                       "overall", "by_source")}
        keep["scored_by"] = "ekyc.server.model.LivenessModel (onnxruntime)"
        update(model_path, **{f"{args.split}_metrics": keep})
    return report


def step_all(args):
    samples = _samples(args)
    split, parts = _split(args, samples)
    cache = step_crops(args, samples)
    checkpoint = step_train(args, samples, parts, cache)
    out = step_export(args, checkpoint, samples, split, parts, cache)
    step_evaluate(args, out, samples, parts, cache, update_metadata=(args.split == "test"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ekyc.quality.errors import EkycError
    from ekyc.server.model import ModelLoadError
    from ekyc.training.data import DataError

    try:
        if args.command == "split":
            step_split(args)
        elif args.command == "crops":
            step_crops(args)
        elif args.command == "train":
            step_train(args)
        elif args.command == "export":
            step_export(args)
        elif args.command == "evaluate":
            step_evaluate(args)
        elif args.command == "all":
            step_all(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (CliError, DataError, ModelLoadError, EkycError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
