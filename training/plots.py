"""PNG plots of an evaluation report: DET curve, score histograms, confusion, loss curves, band.

Small files on purpose (they are committed next to the model card): 80 dpi, few colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 80


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _scores(report: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    scores = report.get("scores") or {}
    live = np.asarray(scores.get("live", []), dtype=np.float64)
    spoofs = {k.split(":", 1)[1]: np.asarray(v, dtype=np.float64) for k, v in scores.items() if k.startswith("spoof:")}
    return live, spoofs


def _domain_live(report: dict, attack: str, live: np.ndarray) -> np.ndarray:
    """The live scores of the sources an attack's spoofs come from (as in the report's by_attack)."""
    scores = report.get("scores") or {}
    sources = (report.get("by_attack") or {}).get(attack, {}).get("live_from") or []
    parts = [np.asarray(scores[f"live:{s}"], dtype=np.float64) for s in sources if f"live:{s}" in scores]
    return np.concatenate(parts) if parts else live


def _det(live: np.ndarray, spoof: np.ndarray):
    from ekyc.training.metrics import det_points

    scores = np.concatenate([live, spoof])
    labels = np.concatenate([np.zeros(live.size, int), np.ones(spoof.size, int)])
    _, apcer, bpcer = det_points(scores, labels)
    return apcer, bpcer


def write_plots(report: dict, out_dir: Path, history: list[dict] | None = None, prefix: str = "report") -> dict[str, str]:
    """Write the PNGs for ``report`` into ``out_dir``; returns {plot name: path}."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    live, spoofs = _scores(report)
    profiles = report.get("at_profiles") or {}

    # DET curve: APCER vs BPCER on log axes, per attack type against the live faces of the same
    # sources (as in the tables), and all attacks against all live faces at one threshold
    if live.size and spoofs:
        fig, ax = plt.subplots(figsize=(5, 4))
        floor = 1e-3
        for name, spoof in spoofs.items():
            own = _domain_live(report, name, live)
            apcer, bpcer = _det(own, spoof)
            ax.plot(np.maximum(apcer, floor), np.maximum(bpcer, floor), label=f"{name} vs own live ({spoof.size}/{own.size})")
        if len(spoofs) > 1:
            apcer, bpcer = _det(live, np.concatenate(list(spoofs.values())))
            ax.plot(np.maximum(apcer, floor), np.maximum(bpcer, floor), "k--", lw=1, label="all vs all live (pooled)")
        for name, p in profiles.items():
            t = p["threshold"]
            a = max(v["rate"] for v in p["apcer_by_attack"].values())
            b = p["bpcer"]["rate"]
            ax.plot(max(a, floor), max(b, floor), "o", ms=5)
            ax.annotate(name, (max(a, floor), max(b, floor)), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor * 0.9, 1.05)
        ax.set_ylim(floor * 0.9, 1.05)
        ax.axvline(0.01, color="0.8", lw=0.8, ls="--")
        ax.set_xlabel("APCER (attacks accepted)")
        ax.set_ylabel("BPCER (live rejected)")
        ax.set_title(f"DET, {report['split']} (0 drawn at {floor:g}; dots: profiles, pooled)", fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{prefix}-det.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written["det"] = str(path)

    # score histograms by class and attack type
    if live.size or spoofs:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        bins = np.linspace(0, 1, 41)
        ax.hist(live, bins=bins, alpha=0.6, label=f"live (n={live.size})")
        for name, spoof in spoofs.items():
            ax.hist(spoof, bins=bins, alpha=0.5, label=f"{name} (n={spoof.size})")
        for name, p in profiles.items():
            ax.axvline(p["threshold"], color="k", lw=0.7, ls=":")
            ax.text(p["threshold"], ax.get_ylim()[1] * 0.9, name, fontsize=6, rotation=90, va="top")
        ax.set_yscale("log")
        ax.set_xlabel("spoof probability")
        ax.set_ylabel("images")
        ax.set_title(f"Scores, {report['split']}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{prefix}-scores.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written["scores"] = str(path)

    # confusion matrices at each profile (LIVE / UNCERTAIN / SPOOF)
    if profiles:
        fig, axes = plt.subplots(1, len(profiles), figsize=(2.4 * len(profiles), 2.4), squeeze=False)
        for ax, (name, p) in zip(axes[0], profiles.items()):
            conf = p.get("confusion", {})
            cols = ("LIVE", "UNCERTAIN", "SPOOF")
            grid = np.array([[conf.get(f"{truth}->{c}", 0) for c in cols] for truth in ("live", "spoof")])
            ax.imshow(grid, cmap="Blues")
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
            ax.set_xticks(range(3), ["live", "review", "spoof"], fontsize=7)
            ax.set_yticks(range(2), ["live", "spoof"], fontsize=7)
            ax.set_title(f"{name} t={p['threshold']:.3f}", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{prefix}-confusion.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written["confusion"] = str(path)

    # review band trade-off
    if report.get("band"):
        fig, ax = plt.subplots(figsize=(4.5, 3))
        for name, rows in report["band"].items():
            ax.plot([100 * r["review_rate"] for r in rows], [r["errors"] for r in rows], "o-", ms=3, label=name)
        ax.set_xlabel("% of images sent to review")
        ax.set_ylabel("errors (auto decisions)")
        ax.set_title(f"Review band, {report['split']}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{prefix}-band.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written["band"] = str(path)

    # loss curves from the training history
    if history:
        fig, ax = plt.subplots(figsize=(4.5, 3))
        epochs = [h["epoch"] for h in history]
        ax.plot(epochs, [h["train_loss"] for h in history], "o-", ms=3, label="train loss")
        ax.plot(epochs, [h["val_loss"] for h in history], "o-", ms=3, label="val loss")
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.get("val_eer_max", h.get("val_eer")) for h in history], "s--", ms=3, color="C3",
                 label="val EER (worst attack)")
        ax2.set_ylabel("val EER", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7)
        ax.set_title("Training", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{prefix}-loss.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written["loss"] = str(path)
    return written
