"""Data-quality and drift summaries of an ingested version against its parent.

PSI (population stability index) compares category shares: sum((p - q) * ln(p / q)). Rules of thumb:
< 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift, counted only where the PSI is beyond the
range that as many users drawn from the previous version give by chance. Every number carries its n
(rows and users of the new rows) and a user-bootstrap interval or noise range; below
DKT_JUDGE_MIN_ROWS / DKT_JUDGE_MIN_USERS the verdict is "too few to judge" whatever the PSI says
(9 rows always look like a "major shift").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.evaluation.metrics import json_safe, user_bootstrap
from dkt_core.retrain.settings import RetrainSettings

EPS = 1e-4


def _psi_parts(expected: pd.Series, actual: pd.Series, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(expected shares over the categories, category code of each actual row): PSI as a function of
    row weights, so a bootstrap replicate only re-weights the actual rows."""
    keep = expected.value_counts().index[:top]
    e = expected.where(expected.isin(keep), "__other__").value_counts(normalize=True)
    a = actual.where(actual.isin(keep), "__other__")
    cats = e.index.union(pd.Index(a.unique()))
    q = np.clip(e.reindex(cats, fill_value=0).to_numpy(), EPS, None)
    return q, pd.Categorical(a, categories=cats).codes


def _psi_weighted(q: np.ndarray, codes: np.ndarray, w: np.ndarray) -> float:
    counts = np.bincount(codes, weights=w, minlength=len(q))
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = np.clip(counts / total, EPS, None)
    return float(np.sum((p - q) * np.log(p / q)))


def psi(expected: pd.Series, actual: pd.Series, top: int = 50) -> float | None:
    """PSI of the category distribution of ``actual`` vs ``expected`` (top categories + "other")."""
    if expected.empty or actual.empty:
        return None
    q, codes = _psi_parts(expected, actual, top)
    return _psi_weighted(q, codes, np.ones(len(codes)))


def psi_noise(parent: pd.DataFrame, col: str, n_users: int, *, n_boot: int, seed: int = 0,
              top: int = 50) -> list[float | None]:
    """95 % range of the PSI that ``n_users`` users drawn from the parent itself give (no drift at all).

    The bootstrap distribution of a divergence like PSI is biased upwards, so a percentile interval
    around the observed PSI would not even contain it; what a reader needs is the noise floor: a PSI of
    new rows inside this range is what a batch of that many users shows by chance.
    """
    if n_boot <= 0 or n_users <= 0 or parent.empty:
        return [None, None]
    expected = parent[col].astype(str)
    q, codes = _psi_parts(expected, expected, top)
    user_codes, _ = pd.factorize(parent[USER].to_numpy())
    n_parent = int(user_codes.max()) + 1
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n_parent, n_users), minlength=n_parent).astype(np.float64)
        draws.append(_psi_weighted(q, codes, counts[user_codes]))
    lo, hi = np.nanpercentile(draws, [2.5, 97.5])
    return [float(lo), float(hi)]


def profile(frame: pd.DataFrame) -> dict[str, Any]:
    """Shape and label statistics of a set of interactions."""
    if frame.empty:
        return {"rows": 0, "users": 0}
    answered = frame[frame[LABEL] >= 0]
    per_user = frame.groupby(USER, sort=False).size()
    return {
        "rows": int(len(frame)),
        "users": int(per_user.size),
        "items": int(frame["assessmentItemID"].nunique()),
        "tags": int(frame["KnowledgeTag"].nunique()),
        "accuracy": float(answered[LABEL].mean()) if len(answered) else None,
        "rows_per_user_mean": float(per_user.mean()),
        "rows_per_user_median": float(per_user.median()),
        "first_timestamp": str(frame["Timestamp"].min()),
        "last_timestamp": str(frame["Timestamp"].max()),
    }


def drift_summary(parent: pd.DataFrame | None, new_rows: pd.DataFrame, *, n_boot: int = 0, seed: int = 0,
                  settings: RetrainSettings) -> dict[str, Any]:
    """Profiles of the parent version and of the new rows, PSI of items/tests/tags (new vs parent) with its
    noise range (``psi_noise``: what as many users drawn from the parent give) and the accuracy shift
    with a user-bootstrap 95 % interval (``n_boot`` > 0), and the counts behind them. The verdict counts
    only PSIs beyond their noise range; fewer new rows or users than the judge thresholds: the verdict is
    "too few to judge" (the numbers are still shown)."""
    out: dict[str, Any] = {"new_rows": profile(new_rows), "parent": profile(parent) if parent is not None else None,
                           "n_rows": int(len(new_rows)), "n_users": int(new_rows[USER].nunique()) if len(new_rows)
                           else 0, "n_boot": n_boot}
    if parent is None or parent.empty:
        out["psi"] = {}
        out["note"] = "first data version: nothing to compare with"
        return out
    users = new_rows[USER].to_numpy()
    out["psi"], out["psi_noise95"] = {}, {}
    for col in ("assessmentItemID", "testId", "KnowledgeTag"):
        out["psi"][col] = psi(parent[col].astype(str), new_rows[col].astype(str))
        if out["psi"][col] is not None:
            out["psi_noise95"][col] = psi_noise(parent, col, out["n_users"], n_boot=n_boot, seed=seed)
    pa, na = out["parent"]["accuracy"], out["new_rows"].get("accuracy")
    out["accuracy_shift"] = None if pa is None or na is None else na - pa
    if out["accuracy_shift"] is not None:
        y = new_rows[LABEL].to_numpy().astype(float)
        answered = y >= 0

        def shift(w: np.ndarray) -> float:
            ww = w * answered
            return float(np.sum(ww * y) / ww.sum()) - pa if ww.sum() > 0 else float("nan")

        out["accuracy_shift_ci95"] = list(user_bootstrap(users, shift, n_boot=n_boot, seed=seed))
    out["new_users"] = len(set(new_rows[USER].unique()) - set(parent[USER].unique()))
    # a PSI inside what same-sized samples of the parent itself produce is sampling noise, not drift
    # (no resamples: no noise range, every PSI counts as before)
    beyond = {c: v for c, v in out["psi"].items()
              if v is not None and v > ((out["psi_noise95"].get(c) or [None, None])[1] or 0.0)}
    out["psi_beyond_noise"] = sorted(beyond)
    worst = max(beyond.values(), default=0.0)
    too_few = settings.too_few(out["n_rows"], out["n_users"])
    out["judged"] = too_few is None
    out["judgement"] = too_few or "enough rows and users to judge"
    out["verdict"] = ("too few to judge" if too_few else
                      "stable" if worst < 0.1 else "moderate shift" if worst < 0.25 else "major shift")
    return json_safe(out)


def quality_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """What the ingest of one curated version accepted and rejected, per source object."""
    sources = metadata.get("sources", [])
    reasons: dict[str, int] = {}
    for src in sources:
        for reason, n in (src.get("reasons") or {}).items():
            reasons[reason] = reasons.get(reason, 0) + int(n)
    return {
        "objects": len(sources),
        "objects_quarantined": sum(1 for s in sources if s.get("status") == "quarantined"),
        "rows_read": sum(int(s.get("rows_read", 0)) for s in sources),
        "rows_valid": sum(int(s.get("rows_valid", 0)) for s in sources),
        "rows_rejected": sum(int(s.get("rows_rejected", 0)) for s in sources),
        "duplicates": sum(int(s.get("duplicates", 0)) for s in sources),
        "reasons": reasons,
        "sources": [{k: s.get(k) for k in ("key", "status", "rows_read", "rows_valid", "rows_rejected", "reason")}
                    for s in sources],
    }
