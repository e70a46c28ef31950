"""Helpers shared by the ingestion fault-injection tests (real moto S3 server, no mocks)."""

from __future__ import annotations

import io
import json

import pandas as pd

from dkt_core.ingest import layout

HEADER = "userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag\n"


def rows(user: str, n: int, start: int = 0, day: str = "2020-01-01") -> str:
    """``n`` valid seed rows of ``user``, one second apart from ``start``."""
    return "".join(
        f"{user},A{i:03d},T1,{i % 2},{day} {(start + i) // 3600:02d}:{(start + i) // 60 % 60:02d}:"
        f"{(start + i) % 60:02d},7{i % 3}\n"
        for i in range(n)
    )


def upload(client, bucket: str, key: str, body: bytes | str) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def get_json(client, bucket: str, key: str):
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def latest_df(client, bucket: str) -> pd.DataFrame:
    """The dataset LATEST points at (what training reads)."""
    version = layout.parse_version(client.get_object(Bucket=bucket, Key=layout.LATEST_KEY)["Body"].read().decode())
    body = client.get_object(Bucket=bucket, Key=layout.dataset_key(version))["Body"].read()
    return pd.read_parquet(io.BytesIO(body))


def row_keys(csv_text: str) -> list[tuple]:
    """(userID, item, answer, timestamp) of each data row of a seed CSV text, to compare with curated rows."""
    out = []
    for line in csv_text.strip().splitlines():
        if line.startswith("userID,"):
            continue
        u, item, _test, ans, ts, _tag = line.split(",")
        out.append((u, item, int(ans), pd.Timestamp(ts)))
    return out


def curated_keys(df: pd.DataFrame) -> list[tuple]:
    return list(zip(df["userID"], df["assessmentItemID"], df["answerCode"].astype(int), df["Timestamp"],
                    strict=True))


def assert_exactly_once(df: pd.DataFrame, expected: list[tuple]) -> None:
    """Every expected row is in ``df`` exactly once, and ``df`` holds nothing else."""
    got = pd.Series(curated_keys(df)).value_counts()
    want = pd.Series(expected).value_counts()
    assert (want == 1).all(), "test data must not repeat rows"
    missing = set(want.index) - set(got.index)
    extra = set(got.index) - set(want.index)
    twice = got[got > 1]
    assert not missing and not extra and twice.empty, (
        f"{len(missing)} rows missing, {len(extra)} unexpected, {len(twice)} more than once")


def keys(client, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)
