"""No object can stop ingestion: every kind of poison upload is quarantined with its reason, the run
finishes, and the next upload is ingested by the next run (real moto S3 server, the real pipeline).

The size caps are set small through their settings (DKT_INGEST_MAX_*), so a bomb and an oversized
object stay quick to build; bench/bench_ingest.py runs the default caps on a full-size bomb.
"""

from __future__ import annotations

import gzip
import io
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dkt_core.ingest import IngestConfig, ingest, layout
from dkt_core.storage.s3 import ensure_bucket, s3_client
from tests.integration._ingest_helpers import (
    HEADER,
    assert_exactly_once,
    get_json,
    keys,
    latest_df,
    row_keys,
    rows,
    upload,
)

pytestmark = pytest.mark.integration

MAX_OBJECT = 1 << 20
MAX_DECOMPRESSED = 4 << 20


@pytest.fixture
def s3(s3_env, monkeypatch):
    monkeypatch.setenv("DKT_INGEST_MAX_OBJECT_BYTES", str(MAX_OBJECT))
    monkeypatch.setenv("DKT_INGEST_MAX_DECOMPRESSED_BYTES", str(MAX_DECOMPRESSED))
    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    return client, s3_env


def gzip_bomb(decompressed: int) -> bytes:
    """A gzip'd CSV whose header is valid and whose body expands to ``decompressed`` bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    out = [comp.compress(HEADER.encode())]
    block = rows("bomb", 1, day="2020-01-02").encode() * 65536
    for _ in range(decompressed // len(block) + 1):
        out.append(comp.compress(block))
    out.append(comp.flush())
    return b"".join(out)


def parquet_nested() -> bytes:
    table = pa.table({"userID": [[1, 2]], "assessmentItemID": [{"a": 1}], "testId": ["T1"], "answerCode": [1],
                      "Timestamp": ["2020-01-01 00:00:00"], "KnowledgeTag": ["7"]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def oversized() -> bytes:
    line = rows("big", 1).encode()
    return HEADER.encode() + line * (MAX_OBJECT // len(line) + 10)


# kind -> (key, body, text expected in the reason)
POISON = {
    "gzip bomb": ("interactions/p/bomb.csv.gz", lambda: gzip_bomb(64 << 20), "DKT_INGEST_MAX_DECOMPRESSED_BYTES"),
    "over the size cap": ("interactions/p/huge.csv", oversized, "DKT_INGEST_MAX_OBJECT_BYTES"),
    "duplicated header column": (
        "interactions/p/dup.csv",
        lambda: "userID,userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag\nu,u,A1,T1,1,2020-01-01 00:00:00,7\n",
        "more than once"),
    "parquet list/struct columns": ("interactions/p/nested.parquet", parquet_nested, "list"),
    "corrupt gzip": ("interactions/p/corrupt.csv.gz",
                     lambda: gzip.compress((HEADER + rows("cz", 50)).encode())[:-40] + b"garbage", "gzip"),
    "binary junk": ("interactions/p/junk.csv", lambda: bytes(range(256)) * 64, "binary"),
    "key with ..": ("interactions/../curated/v=000001/interactions.parquet", lambda: HEADER + rows("dd", 2), ".."),
    "key with odd characters": ("interactions/a b;$(reboot)'.csv", lambda: HEADER + rows("odd", 2), "characters"),
    "key with unicode": ("interactions/\u00fcber.csv", lambda: HEADER + rows("uni", 2), "characters"),
    "key with an empty name": ("interactions//x.csv", lambda: HEADER + rows("empty", 2), "empty name"),
}


@pytest.mark.parametrize("kind", list(POISON))
def test_poison_object_is_quarantined_the_run_finishes_and_the_next_upload_is_ingested(s3, kind):
    client, settings = s3
    bucket = settings.bucket
    key, make, why = POISON[kind]
    body = make()
    good1 = HEADER + rows("g1", 5)
    upload(client, bucket, key, body)
    upload(client, bucket, "interactions/p/good1.csv", good1)

    r = ingest(IngestConfig(run_id="poisoned", settings=settings))
    assert (r.status, r.objects_ingested, r.objects_quarantined, r.rows_added) == ("ingested", 1, 1, 5)
    qkey = layout.quarantine_key("poisoned", key)
    reason = get_json(client, bucket, qkey + ".reason.json")
    assert why in reason["reason"] and reason["key"] == key
    raw_body = body.encode() if isinstance(body, str) else body
    assert client.get_object(Bucket=bucket, Key=qkey)["Body"].read() == raw_body  # byte-exact copy
    if layout.raw_key_problem(key):  # an unsafe key never becomes part of another key
        assert qkey.startswith("quarantine/poisoned/unsafe-keys/")
        assert not [k for k in keys(client, bucket, "") if "/../" in k and k != key]
        assert keys(client, bucket, "archive/") == ["archive/poisoned/interactions/p/good1.csv"]

    # the poison is consumed: the next run does not trip over it again, and the next upload goes in
    good2 = HEADER + rows("g2", 3)
    upload(client, bucket, "interactions/p/good2.csv", good2)
    r2 = ingest(IngestConfig(run_id="next", settings=settings))
    assert (r2.status, r2.objects, r2.objects_quarantined, r2.rows_added) == ("ingested", 1, 0, 3)
    assert_exactly_once(latest_df(client, bucket), row_keys(good1) + row_keys(good2))
    assert ingest(IngestConfig(run_id="after", settings=settings)).status == "nothing_new"


def test_a_row_dated_2300_is_rejected_alone_and_its_object_ingested(s3):
    client, settings = s3
    bucket = settings.bucket
    good = rows("y", 4)
    upload(client, bucket, "interactions/y/a.csv",
           HEADER + good + "y,A9,T1,1,2300-01-01 00:00:00,7\n" + "y,A8,T1,1,0000-01-01 00:00:00,7\n")
    r = ingest(IngestConfig(run_id="far", settings=settings))
    assert (r.status, r.rows_added, r.rows_rejected, r.objects_quarantined) == ("ingested", 4, 2, 0)
    rejected = client.get_object(Bucket=bucket, Key=r.quarantine_prefix + "interactions/y/a.csv.rejected.csv")
    text = rejected["Body"].read().decode()
    assert "2300-01-01" in text and "0000-01-01" in text
    assert_exactly_once(latest_df(client, bucket), row_keys(HEADER + good))
    upload(client, bucket, "interactions/y/b.csv", HEADER + rows("z", 2))
    assert ingest(IngestConfig(run_id="far2", settings=settings)).rows_added == 2


def test_every_poison_at_once_with_good_uploads_between(s3):
    client, settings = s3
    bucket = settings.bucket
    expected = []
    for i, (key, make, _) in enumerate(POISON.values()):
        upload(client, bucket, key, make())
        good = HEADER + rows(f"ok{i}", 3)
        upload(client, bucket, f"interactions/p/ok{i}.csv", good)
        expected += row_keys(good)
    r = ingest(IngestConfig(run_id="all", settings=settings))
    assert (r.objects_quarantined, r.objects_ingested, r.rows_added) == (len(POISON), len(POISON), len(expected))
    meta = get_json(client, bucket, layout.metadata_key(1))
    assert sum(s["status"] == "quarantined" for s in meta["sources"]) == len(POISON)
    assert_exactly_once(latest_df(client, bucket), expected)
