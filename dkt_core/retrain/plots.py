"""Report figures (matplotlib, Agg backend: no display needed on workers)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(5, 4.2), dpi=100)


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over all thresholds."""
    order = np.argsort(-p, kind="stable")
    y = y[order]
    tps, fps = np.cumsum(y), np.cumsum(1 - y)
    pos, neg = max(tps[-1], 1), max(fps[-1], 1)
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos]


def calibration_points(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed rate, count) per equal-width probability bin that holds rows."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    mean_p = np.bincount(idx, p, minlength=bins)
    obs = np.bincount(idx, y, minlength=bins)
    keep = count > 0
    return mean_p[keep] / count[keep], obs[keep] / count[keep], count[keep]


def roc_png(y: np.ndarray, curves: dict[str, np.ndarray]) -> bytes:
    plt, fig, ax = _figure()
    for name, p in curves.items():
        fpr, tpr = roc_points(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the hold-out users")
    ax.legend(loc="lower right")
    return _png(plt, fig)


def calibration_png(y: np.ndarray, curves: dict[str, np.ndarray]) -> bytes:
    plt, fig, ax = _figure()
    for name, p in curves.items():
        mp, obs, _ = calibration_points(y, p)
        ax.plot(mp, obs, marker="o", label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="mean predicted P(correct)", ylabel="observed accuracy", title="Calibration (hold-out)",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _png(plt, fig)


def live_auc_png(entries: list[dict[str, Any]]) -> bytes:
    plt, fig, ax = _figure()
    pts = [e for e in entries if e.get("auc") is not None]
    if pts:
        x, auc = np.arange(len(pts)), np.array([e["auc"] for e in pts], dtype=float)
        ci = [e.get("auc_ci95") or [None, None] for e in pts]
        lo = np.array([a - c[0] if c[0] is not None else 0.0 for a, c in zip(auc, ci, strict=True)])
        hi = np.array([c[1] - a if c[1] is not None else 0.0 for a, c in zip(auc, ci, strict=True)])
        ax.errorbar(x, auc, yerr=[lo, hi], marker="o", capsize=3, label="AUC, 95 % interval")
        few = np.array([e.get("judged") is False for e in pts])
        if few.any():  # hollow markers: too few rows/users to judge
            ax.plot(x[few], auc[few], "o", mfc="white", mec="red", label="too few to judge")
        ax.legend(loc="lower left", fontsize=7)
        ax.set_xticks(x, [f"{e['data_version']}\nn={e.get('n_scored', '?')}" for e in pts], rotation=30, fontsize=7)
    else:
        ax.text(0.5, 0.5, "no live evaluation yet", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="data version", ylabel="AUC of the serving model on new rows", title="Live AUC trend")
    return _png(plt, fig)
