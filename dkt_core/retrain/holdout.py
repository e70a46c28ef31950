"""The fixed hold-out: users whose stable hash bucket is below a fraction never train.

Membership depends only on (salt, userID), so a user stays on the same side in every curated version
and the gate compares champion and challenger on users neither has seen.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dkt_core.data.columns import USER
from dkt_core.data.split import user_buckets
from dkt_core.ingest import layout as ingest_layout
from dkt_core.ingest.curated import read_version
from dkt_core.ingest.layout import split_key
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.objects import read_json, write_json, write_parquet
from dkt_core.storage.workspace import Workspace


def holdout_mask(frame: pd.DataFrame, fraction: float, salt: str) -> pd.Series:
    """True for rows of hold-out users."""
    return pd.Series(user_buckets(frame[USER], salt) < fraction, index=frame.index)


def split_frame(frame: pd.DataFrame, fraction: float, salt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, hold-out rows); fails with advice when one side would be empty."""
    mask = holdout_mask(frame, fraction, salt).to_numpy()
    users = frame[USER].nunique()
    if mask.all() or not mask.any():
        raise ValueError(f"a hold-out of {fraction:.0%} of {users} user(s) leaves one side empty: "
                         "ingest more users or change DKT_HOLDOUT_FRACTION")
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def prepare_split(data_version: str, *, settings: RetrainSettings, ws: Workspace) -> dict[str, Any]:
    """Write splits/v=N/{train,holdout}.parquet for a curated version (once; reused afterwards)."""
    client, bucket = ws.client, ws.bucket
    version = ingest_layout.parse_version(data_version)
    done = read_json(client, bucket, split_key(version, "split.json"))
    if done and done["fraction"] == settings.holdout_fraction and done["salt"] == settings.holdout_salt:
        return done
    frame = read_version(client, bucket, version)
    train, holdout = split_frame(frame, settings.holdout_fraction, settings.holdout_salt)
    result = {
        "data_version": data_version,
        "fraction": settings.holdout_fraction,
        "salt": settings.holdout_salt,
        "train_uri": write_parquet(client, bucket, split_key(version, "train.parquet"), train),
        "holdout_uri": write_parquet(client, bucket, split_key(version, "holdout.parquet"), holdout),
        "train_rows": int(len(train)),
        "train_users": int(train[USER].nunique()),
        "holdout_rows": int(len(holdout)),
        "holdout_users": int(holdout[USER].nunique()),
    }
    write_json(client, bucket, split_key(version, "split.json"), result)  # last: marks it complete
    return result
