"""Live evaluation: the serving champion scored on the newly ingested rows, before they train anything.

The new rows are the rows of the curated version about to train that the version last trained on
lacks (retrain.batch: several small ingests add up to one batch). Each is predicted from its own past,
with the user's earlier curated history as context (the features are past-only, so predicting the
user's whole history and keeping the new rows is exactly that). This is the honest measure of how the
deployed model does on real traffic; one entry per data version goes to ``reports/live_auc.json`` with
its row and user counts, a user-bootstrap 95 % interval and ``judged: false`` ("too few to judge")
below DKT_JUDGE_MIN_ROWS rows or DKT_JUDGE_MIN_USERS users.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from dkt_core.data.columns import COLUMNS, LABEL, USER
from dkt_core.evaluation.metrics import evaluate_predictions
from dkt_core.ingest import layout as ingest_layout
from dkt_core.ingest.curated import read_version
from dkt_core.ingest.layout import LIVE_AUC_KEY
from dkt_core.retrain.champion import champion_dir, read_champion
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.objects import ConflictExhausted, get_json, update_json
from dkt_core.storage.workspace import Workspace


def new_rows_mask(current: pd.DataFrame, parent: pd.DataFrame | None) -> np.ndarray:
    """True for rows of ``current`` that ``parent`` does not hold (curated versions have no exact dups)."""
    if parent is None or not len(parent):
        return np.ones(len(current), dtype=bool)
    keys = parent[COLUMNS].astype(current[COLUMNS].dtypes.to_dict())
    merged = current[COLUMNS].merge(keys.drop_duplicates(), how="left", on=COLUMNS, indicator=True)
    return (merged["_merge"] == "left_only").to_numpy()


def score_new_rows(predictor, current: pd.DataFrame, is_new: np.ndarray, *, n_boot: int = 0,
                   seed: int = 0) -> dict[str, Any]:
    """Metrics of ``predictor`` on the new answered rows, each predicted with the user's full past
    (``n_boot`` > 0: with user-bootstrap intervals)."""
    users = current.loc[is_new, USER].unique()
    context = current[current[USER].isin(users)]  # still sorted per user by time
    new_in_context = is_new[context.index.to_numpy()]
    context = context.reset_index(drop=True)
    proba = predictor.predict_frame(context)
    sel = new_in_context & (context[LABEL].to_numpy() >= 0)
    if not sel.any():
        return {"n_rows": 0, "n_users": 0, "auc_all": None}
    return evaluate_predictions(context.loc[sel, USER].to_numpy(), context.loc[sel, LABEL].to_numpy(),
                                proba[sel], n_boot=n_boot, seed=seed)


def record_live_auc(client, bucket: str, entry: dict[str, Any], attempts: int = 5) -> str:
    """Insert/replace the entry of entry["data_version"] with compare-and-set (retry-safe, no dups)."""
    def insert(current: Any) -> dict[str, Any]:
        entries = [e for e in (current["entries"] if current else []) if e["data_version"] != entry["data_version"]]
        return {"schema": 1, "entries": sorted(entries + [entry], key=lambda e: e["data_version"])}

    try:
        update_json(client, bucket, LIVE_AUC_KEY, insert, attempts=attempts)
    except ConflictExhausted:
        raise RuntimeError(f"s3://{bucket}/{LIVE_AUC_KEY} kept changing under us; retry the task") from None
    return f"s3://{bucket}/{LIVE_AUC_KEY}"


def live_history(client, bucket: str) -> list[dict[str, Any]]:
    got = get_json(client, bucket, LIVE_AUC_KEY)
    return got[0]["entries"] if got else []


def live_evaluate(data_version: str, parent_version: str | None, *, new_rows_uri: str | None = None,
                  settings: RetrainSettings, ws: Workspace) -> dict[str, Any]:
    """Score the champion on the rows ``data_version`` holds and ``parent_version`` (the version last
    trained on) lacks; record and return the result with its counts, interval and judgement.
    ``new_rows_uri``: which rows those are, as the minimum batch stored them (else computed here)."""
    client, bucket = ws.client, ws.bucket
    champion = read_champion(client, bucket)
    if champion is None:
        return {"status": "skipped", "reason": "no champion serves yet: nothing to evaluate live",
                "data_version": data_version}
    if parent_version == data_version:  # retrain_anyway without new rows
        return {"status": "skipped", "reason": f"no rows added since {parent_version}: nothing to evaluate live",
                "data_version": data_version}
    from dkt_core.predict import Predictor
    from dkt_core.retrain.batch import new_rows, read_new_rows

    if new_rows_uri:
        current = read_version(client, bucket, ingest_layout.parse_version(data_version))
        is_new = read_new_rows(client, new_rows_uri, current)
    else:
        current, is_new = new_rows(client, bucket, data_version, parent_version)
    predictor = Predictor.load(champion_dir(client, champion, ws.cache_dir))
    metrics = score_new_rows(predictor, current, is_new, n_boot=settings.bootstrap, seed=settings.bootstrap_seed)
    n_scored, n_users = int(metrics.get("n_rows", 0)), int(metrics.get("n_users", 0))
    too_few = settings.too_few(n_scored, n_users)
    entry = {
        "data_version": data_version,
        "parent_version": parent_version,
        "model_version": champion["model_version"],
        "champion_data_version": champion.get("data_version"),
        "n_new_rows": int(is_new.sum()),
        "n_scored": n_scored,
        "n_users": n_users,
        "auc": metrics.get("auc_all"),
        "auc_ci95": metrics.get("auc_all_ci95"),  # user bootstrap, fixed seed
        "n_boot": settings.bootstrap,
        "judged": too_few is None,
        "judgement": too_few or "enough rows and users to judge",
        "acc": metrics.get("acc_all"),
        "logloss": metrics.get("logloss_all"),
        "evaluated_at": datetime.now(UTC).isoformat(),
    }
    uri = record_live_auc(client, bucket, entry)
    return {"status": "evaluated", "live_auc_uri": uri, **entry}
