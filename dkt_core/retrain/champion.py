"""The champion alias ``models/champion.json``: which model version serves, and how to load it.

It is written only after a promotion fully succeeded (rollout + smoke test, or package only when
deployment is disabled), so it always names a model that is actually serving.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dkt_core.ingest.layout import CHAMPION_KEY, parse_version
from dkt_core.retrain.artifacts import fetch_artifact
from dkt_core.storage.objects import read_json, write_json
from dkt_core.training.versions import check_model_version


def read_champion(client, bucket: str) -> dict[str, Any] | None:
    """The alias, its model version and data version checked: nothing read from the bucket names a path
    or a key before it matched its pattern (ValueError naming the object otherwise)."""
    doc = read_json(client, bucket, CHAMPION_KEY)
    if doc is None:
        return None
    where = f"s3://{bucket}/{CHAMPION_KEY}"
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is not a JSON object; restore it from the run that promoted the champion")
    check_model_version(doc.get("model_version"), source=f"{where} model_version")
    if doc.get("data_version") is not None:
        parse_version(str(doc["data_version"]))
    return doc


def champion_dir(client, champion: dict[str, Any], cache_dir: Path) -> Path:
    """Local copy of the champion's artifact, checked against the sha256 champion.json recorded."""
    return fetch_artifact(client, champion["artifact_uri"], cache_dir, champion["model_version"],
                          sha256=champion.get("artifact_sha256"))


def write_champion(client, bucket: str, record: dict[str, Any]) -> dict[str, Any]:
    """Replace the alias; the previous champion's version is kept in the record for the audit trail."""
    missing = [k for k in ("model_version", "artifact_uri", "data_version") if not record.get(k)]
    if missing:
        raise ValueError(f"champion record lacks {missing}")
    check_model_version(record["model_version"])
    current = read_champion(client, bucket)
    if current and current.get("model_version") == record["model_version"]:
        return current  # a retry after the write: keep the first record (and its timestamp)
    doc = {**record, "promoted_at": datetime.now(UTC).isoformat(),
           "previous_model_version": current.get("model_version") if current else None}
    write_json(client, bucket, CHAMPION_KEY, doc)
    return doc
