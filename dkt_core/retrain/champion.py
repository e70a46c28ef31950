"""The champion alias ``models/champion.json``: which model version serves, and how to load it.

It is written only after a promotion fully succeeded (rollout + smoke test, or package only when
deployment is disabled), so it always names a model that is actually serving.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dkt_core.retrain.layout import CHAMPION_KEY
from dkt_core.retrain.s3io import fetch_artifact, read_json, write_json


def read_champion(client, bucket: str) -> dict[str, Any] | None:
    return read_json(client, bucket, CHAMPION_KEY)


def champion_dir(client, champion: dict[str, Any], cache_dir: Path) -> Path:
    return fetch_artifact(client, champion["artifact_uri"], cache_dir, champion["model_version"])


def write_champion(client, bucket: str, record: dict[str, Any]) -> dict[str, Any]:
    """Replace the alias; the previous champion's version is kept in the record for the audit trail."""
    missing = [k for k in ("model_version", "artifact_uri", "data_version") if not record.get(k)]
    if missing:
        raise ValueError(f"champion record lacks {missing}")
    current = read_champion(client, bucket)
    if current and current.get("model_version") == record["model_version"]:
        return current  # a retry after the write: keep the first record (and its timestamp)
    doc = {**record, "promoted_at": datetime.now(UTC).isoformat(),
           "previous_model_version": current.get("model_version") if current else None}
    write_json(client, bucket, CHAMPION_KEY, doc)
    return doc
