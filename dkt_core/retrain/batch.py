"""The minimum batch: retrain only when enough rows arrived since the last training.

Every run ingests what was uploaded, but training and deployment start only when the *answered* rows
added since the last training reach ``min_new_rows`` and come from at least ``min_new_users`` users.
Below that the run ends early, saying why; the rows stay in the curated data and count toward the
next run, so a trickle of uploads retrains once the trickle adds up.

"The last training" is the newest training of any challenger, promoted or not
(``models/last_trained.json``, written by ``training.train_challenger``), falling back to the
champion's ``data_version`` for buckets written before that record existed. A rejected challenger has
seen those rows already: retraining on them plus a handful more would repeat its result.

``retrain_anyway`` (a manual run's param) trains on the latest curated version whatever arrived.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from dkt_core.data.columns import LABEL, USER
from dkt_core.ingest import layout as ingest_layout
from dkt_core.ingest.layout import LAST_TRAINED_KEY, new_rows_key
from dkt_core.retrain.champion import read_champion
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.objects import ConflictExhausted, get_json, read_parquet, update_json, write_parquet
from dkt_core.storage.workspace import Workspace
from dkt_core.training.versions import check_model_version


def read_last_trained(client, bucket: str) -> dict[str, Any] | None:
    """``models/last_trained.json`` with its versions checked (ValueError naming the object otherwise)."""
    got = get_json(client, bucket, LAST_TRAINED_KEY)
    if got is None:
        return None
    doc, where = got[0], f"s3://{bucket}/{LAST_TRAINED_KEY}"
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is not a JSON object; delete it (the champion's data version is used then)")
    ingest_layout.parse_version(str(doc.get("data_version")))
    check_model_version(doc.get("model_version"), source=f"{where} model_version")
    return doc


def record_training(client, bucket: str, record: dict[str, Any], attempts: int = 5) -> dict[str, Any]:
    """Move ``models/last_trained.json`` forward to ``record`` (compare-and-set; never backwards)."""
    new = ingest_layout.parse_version(record["data_version"])

    def forward(current: Any) -> dict[str, Any] | None:
        if current is not None and ingest_layout.parse_version(str(current.get("data_version"))) > new:
            return None  # a later training was recorded already (runs never go back in data)
        return {**record, "recorded_at": datetime.now(UTC).isoformat()}

    try:
        return update_json(client, bucket, LAST_TRAINED_KEY, forward, attempts=attempts)
    except ConflictExhausted:
        raise RuntimeError(f"s3://{bucket}/{LAST_TRAINED_KEY} kept changing under us; retry the task") from None


def last_training(client, bucket: str) -> dict[str, Any] | None:
    """{"data_version", "model_version", "source"} of the newest training, or None (never trained)."""
    found = []
    last = read_last_trained(client, bucket)
    if last is not None:
        found.append({"data_version": last["data_version"], "model_version": last["model_version"],
                      "source": LAST_TRAINED_KEY})
    champion = read_champion(client, bucket)
    if champion is not None and champion.get("data_version"):
        found.append({"data_version": champion["data_version"], "model_version": champion["model_version"],
                      "source": "models/champion.json"})
    return max(found, key=lambda f: ingest_layout.parse_version(f["data_version"]), default=None)


def new_rows(client, bucket: str, data_version: str, base_version: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """(curated ``data_version``, True for each of its rows that ``base_version`` lacks): each version read once."""
    from dkt_core.ingest.curated import read_version
    from dkt_core.retrain.live_eval import new_rows_mask

    current = read_version(client, bucket, ingest_layout.parse_version(data_version))
    if base_version == data_version:
        return current, np.zeros(len(current), dtype=bool)
    base = read_version(client, bucket, ingest_layout.parse_version(base_version)) if base_version else None
    return current, new_rows_mask(current, base)


def read_new_rows(client, uri: str, current: pd.DataFrame) -> np.ndarray:
    """The new-rows mask the minimum batch stored at ``uri``, checked against the version it describes."""
    mask = read_parquet(client, uri)["new"].to_numpy(dtype=bool)
    if len(mask) != len(current):
        raise ValueError(f"{uri} describes {len(mask)} rows, the curated version has {len(current)}; "
                         "delete it and rerun the run (has_new_data writes it again)")
    return mask


def count_new(current: pd.DataFrame, is_new: np.ndarray) -> tuple[int, int]:
    """(answered rows, distinct users among them) of the new rows."""
    new = current[is_new]
    new = new[new[LABEL] >= 0]  # rows to predict (-1) teach nothing
    return int(len(new)), int(new[USER].nunique())


def check_batch(ingest_result: dict[str, Any], *, min_new_rows: int | None = None, min_new_users: int | None = None,
                retrain_anyway: bool = False, settings: RetrainSettings, ws: Workspace) -> dict[str, Any]:
    """Whether this run trains, on which version, and why (the reason goes to the log and the run note).

    Returns {"proceed", "reason", "data_version" (train on it), "parent_version" (the version last
    trained on: live evaluation and drift look at the rows since), "new_rows", "new_users", "new_rows_uri"
    (which rows are new: computed here once, read by live evaluation and the report), thresholds}.
    """
    min_rows = settings.min_new_rows if min_new_rows is None else int(min_new_rows)
    min_users = settings.min_new_users if min_new_users is None else int(min_new_users)
    if min_rows < 0 or min_users < 0:
        raise ValueError(f"min_new_rows and min_new_users must be >= 0, got {min_rows} and {min_users}")
    client, bucket = ws.client, ws.bucket
    data_version = ingest_result.get("data_version")
    status = ingest_result.get("status")
    ingested = status == "ingested"
    out: dict[str, Any] = {"ingest_status": status, "data_version": data_version, "parent_version": None,
                           "base": None, "new_rows": 0, "new_users": 0, "min_new_rows": min_rows,
                           "min_new_users": min_users, "retrain_anyway": bool(retrain_anyway)}
    if data_version is None:
        return {**out, "proceed": False,
                "reason": "no curated data yet: nothing to train on (upload interactions first)"}
    ingest_layout.parse_version(data_version)
    base = last_training(client, bucket)
    base_version = base["data_version"] if base else None
    current, is_new = new_rows(client, bucket, data_version, base_version)
    rows, users = count_new(current, is_new)
    base_number = ingest_layout.parse_version(base_version) if base_version else None
    new_uri = write_parquet(client, bucket, new_rows_key(ingest_layout.parse_version(data_version), base_number),
                            pd.DataFrame({"new": is_new}))
    del current
    since = (f"since the last training (on {base_version}, model {base['model_version']})" if base
             else "in all data (never trained)")
    counts = f"{rows} new answered row(s) from {users} user(s) {since}"
    limits = f"thresholds: {min_rows} rows and {min_users} users"
    this_run = "" if ingested else f"; this run ingested nothing new ({ingest_result.get('reason') or status})"
    ready = rows >= min_rows and users >= min_users and rows > 0
    if ready:
        proceed, reason = True, f"retraining on {data_version}: {counts} reach the {limits}{this_run}"
    elif retrain_anyway:
        proceed, reason = True, f"retrain_anyway: retraining on {data_version} although {counts} ({limits})"
    else:
        proceed = False
        reason = (f"not retraining: {counts}, below the {limits}{this_run}. The rows are kept in {data_version} "
                  "and count toward the next run; a manual run with retrain_anyway=true trains now")
    return {**out, "proceed": proceed, "reason": reason, "parent_version": base_version, "base": base,
            "new_rows": rows, "new_users": users, "new_rows_uri": new_uri}
