"""Data-quality and drift summaries of an ingested version against its parent.

PSI (population stability index) compares category shares: sum((p - q) * ln(p / q)). Rules of thumb:
< 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift. Every number carries its n (rows and users
of the new rows) and a user-bootstrap interval; below DKT_JUDGE_MIN_ROWS / DKT_JUDGE_MIN_USERS the
verdict is "too few to judge" whatever the PSI says (9 rows always look like a "major shift").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dkt_core.evaluation.metrics import json_safe, user_bootstrap
from dkt_core.models.base import LABEL, USER
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
                  settings: RetrainSettings | None = None) -> dict[str, Any]:
    """Profiles of the parent version and of the new rows, PSI of items/tests/tags (new vs parent) and the
    accuracy shift, each with a user-bootstrap 95 % interval over the new rows' users (``n_boot`` > 0),
    and the counts behind them. Fewer new rows or users than the judge thresholds: the verdict is
    "too few to judge" (the numbers are still shown)."""
    settings = settings or RetrainSettings.from_env()
    out: dict[str, Any] = {"new_rows": profile(new_rows), "parent": profile(parent) if parent is not None else None,
                           "n_rows": int(len(new_rows)), "n_users": int(new_rows[USER].nunique()) if len(new_rows)
                           else 0, "n_boot": n_boot}
    if parent is None or parent.empty:
        out["psi"] = {}
        out["note"] = "first data version: nothing to compare with"
        return out
    users = new_rows[USER].to_numpy()
    out["psi"], out["psi_ci95"] = {}, {}
    for col in ("assessmentItemID", "testId", "KnowledgeTag"):
        out["psi"][col] = psi(parent[col].astype(str), new_rows[col].astype(str))
        if out["psi"][col] is not None:
            q, codes = _psi_parts(parent[col].astype(str), new_rows[col].astype(str), 50)
            out["psi_ci95"][col] = list(user_bootstrap(users, lambda w, q=q, c=codes: _psi_weighted(q, c, w),
                                                       n_boot=n_boot, seed=seed))
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
    worst = max((v for v in out["psi"].values() if v is not None), default=0.0)
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
