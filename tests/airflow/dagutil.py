"""Helpers of the dkt_retrain dag.test() tests: tiny model configs, uploads, task states and XComs."""

from __future__ import annotations

import io
import json

import pandas as pd

TINY = {"lgbm": {"num_boost_round": 30, "num_leaves": 15, "min_data_in_leaf": 20, "early_stopping_rounds": 10,
                 "num_threads": 1}}
STUMP = {"lgbm": {"num_boost_round": 1, "num_leaves": 2, "min_data_in_leaf": 20, "num_threads": 1}}
PROMOTE_PATH = ["package", "deploy", "set_champion"]


def upload(client, bucket: str, key: str, frame: pd.DataFrame, extra: str = "") -> None:
    from dkt_core.data.validate import to_seed_csv

    buf = io.StringIO()
    to_seed_csv(frame, buf)
    client.put_object(Bucket=bucket, Key=key, Body=(buf.getvalue() + extra).encode())


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def xcom(run, task_id: str, key: str = "return_value"):
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id, key=key)


def get_json(client, bucket: str, key: str) -> dict:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def keys(client, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def curated_rows(client, bucket: str, version: str) -> pd.DataFrame:
    body = client.get_object(Bucket=bucket, Key=f"curated/{version}/interactions.parquet")["Body"].read()
    return pd.read_parquet(io.BytesIO(body))
