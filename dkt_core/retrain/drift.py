"""Data-quality and drift summaries of an ingested version against its parent.

PSI (population stability index) compares category shares: sum((p - q) * ln(p / q)). Rules of thumb:
< 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dkt_core.models.base import LABEL, USER

EPS = 1e-4


def psi(expected: pd.Series, actual: pd.Series, top: int = 50) -> float | None:
    """PSI of the category distribution of ``actual`` vs ``expected`` (top categories + "other")."""
    if expected.empty or actual.empty:
        return None
    keep = expected.value_counts().index[:top]
    e = expected.where(expected.isin(keep), "__other__").value_counts(normalize=True)
    a = actual.where(actual.isin(keep), "__other__").value_counts(normalize=True)
    cats = e.index.union(a.index)
    p = np.clip(a.reindex(cats, fill_value=0).to_numpy(), EPS, None)
    q = np.clip(e.reindex(cats, fill_value=0).to_numpy(), EPS, None)
    return float(np.sum((p - q) * np.log(p / q)))


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


def drift_summary(parent: pd.DataFrame | None, new_rows: pd.DataFrame) -> dict[str, Any]:
    """Profiles of the parent version and of the new rows, plus PSI of items/tests/tags (new vs parent)."""
    out: dict[str, Any] = {"new_rows": profile(new_rows), "parent": profile(parent) if parent is not None else None}
    if parent is None or parent.empty:
        out["psi"] = {}
        out["note"] = "first data version: nothing to compare with"
        return out
    out["psi"] = {col: psi(parent[col].astype(str), new_rows[col].astype(str))
                  for col in ("assessmentItemID", "testId", "KnowledgeTag")}
    pa, na = out["parent"]["accuracy"], out["new_rows"].get("accuracy")
    out["accuracy_shift"] = None if pa is None or na is None else na - pa
    out["new_users"] = len(set(new_rows[USER].unique()) - set(parent[USER].unique()))
    worst = max((v for v in out["psi"].values() if v is not None), default=0.0)
    out["verdict"] = "stable" if worst < 0.1 else "moderate shift" if worst < 0.25 else "major shift"
    return out


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
