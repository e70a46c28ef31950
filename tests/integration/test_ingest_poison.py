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
from dkt_core.settings import ReadLimits, load
from tests.integration import _ingest_helpers as h

pytestmark = pytest.mark.integration

MAX_OBJECT = 1 << 20
MAX_DECOMPRESSED = 4 << 20


@pytest.fixture
def limits(monkeypatch) -> ReadLimits:
    """Small caps set through their settings, read as the edge (`dkt ingest`, the DAG task) reads them."""
    monkeypatch.setenv("DKT_INGEST_MAX_OBJECT_BYTES", str(MAX_OBJECT))
    monkeypatch.setenv("DKT_INGEST_MAX_DECOMPRESSED_BYTES", str(MAX_DECOMPRESSED))
    return load(ReadLimits)


def gzip_bomb(decompressed: int) -> bytes:
    """A gzip'd CSV whose header is valid and whose body expands to ``decompressed`` bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    out = [comp.compress(h.HEADER.encode())]
    block = h.rows("bomb", 1, day="2020-01-02").encode() * 65536
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
    line = h.rows("big", 1).encode()
    return h.HEADER.encode() + line * (MAX_OBJECT // len(line) + 10)


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
                     lambda: gzip.compress((h.HEADER + h.rows("cz", 50)).encode())[:-40] + b"garbage", "gzip"),
    "binary junk": ("interactions/p/junk.csv", lambda: bytes(range(256)) * 64, "binary"),
    "key with ..": ("interactions/../curated/v=000001/interactions.parquet", lambda: h.HEADER + h.rows("dd", 2), ".."),
    "key with odd characters": ("interactions/a b;$(reboot)'.csv", lambda: h.HEADER + h.rows("odd", 2), "characters"),
    "key with unicode": ("interactions/\u00fcber.csv", lambda: h.HEADER + h.rows("uni", 2), "characters"),
    "key with an empty name": ("interactions//x.csv", lambda: h.HEADER + h.rows("empty", 2), "empty name"),
}


@pytest.mark.parametrize("kind", list(POISON))
def test_poison_object_is_quarantined_the_run_finishes_and_the_next_upload_is_ingested(s3, limits, kind):
    client, settings = s3
    bucket = settings.bucket
    key, make, why = POISON[kind]
    body = make()
    good1 = h.HEADER + h.rows("g1", 5)
    h.upload(client, bucket, key, body)
    h.upload(client, bucket, "interactions/p/good1.csv", good1)

    r = ingest(IngestConfig(run_id="poisoned", settings=settings, limits=limits))
    assert (r.status, r.objects_ingested, r.objects_quarantined, r.rows_added) == ("ingested", 1, 1, 5)
    qkey = layout.quarantine_key("poisoned", key)
    reason = h.get_json(client, bucket, qkey + ".reason.json")
    assert why in reason["reason"] and reason["key"] == key
    raw_body = body.encode() if isinstance(body, str) else body
    assert client.get_object(Bucket=bucket, Key=qkey)["Body"].read() == raw_body  # byte-exact copy
    if layout.raw_key_problem(key):  # an unsafe key never becomes part of another key
        assert qkey.startswith("quarantine/poisoned/unsafe-keys/")
        assert not [k for k in h.keys(client, bucket, "") if "/../" in k and k != key]
        assert h.keys(client, bucket, "archive/") == ["archive/poisoned/interactions/p/good1.csv"]

    # the poison is consumed: the next run does not trip over it again, and the next upload goes in
    good2 = h.HEADER + h.rows("g2", 3)
    h.upload(client, bucket, "interactions/p/good2.csv", good2)
    r2 = ingest(IngestConfig(run_id="next", settings=settings, limits=limits))
    assert (r2.status, r2.objects, r2.objects_quarantined, r2.rows_added) == ("ingested", 1, 0, 3)
    h.assert_exactly_once(h.latest_df(client, bucket), h.row_keys(good1) + h.row_keys(good2))
    assert ingest(IngestConfig(run_id="after", settings=settings, limits=limits)).status == "nothing_new"


def test_a_row_dated_2300_is_rejected_alone_and_its_object_ingested(s3, limits):
    client, settings = s3
    bucket = settings.bucket
    good = h.rows("y", 4)
    h.upload(client, bucket, "interactions/y/a.csv",
           h.HEADER + good + "y,A9,T1,1,2300-01-01 00:00:00,7\n" + "y,A8,T1,1,0000-01-01 00:00:00,7\n")
    r = ingest(IngestConfig(run_id="far", settings=settings, limits=limits))
    assert (r.status, r.rows_added, r.rows_rejected, r.objects_quarantined) == ("ingested", 4, 2, 0)
    rejected = client.get_object(Bucket=bucket, Key=r.quarantine_prefix + "interactions/y/a.csv.rejected.csv")
    text = rejected["Body"].read().decode()
    assert "2300-01-01" in text and "0000-01-01" in text
    h.assert_exactly_once(h.latest_df(client, bucket), h.row_keys(h.HEADER + good))
    h.upload(client, bucket, "interactions/y/b.csv", h.HEADER + h.rows("z", 2))
    assert ingest(IngestConfig(run_id="far2", settings=settings, limits=limits)).rows_added == 2


def test_every_poison_at_once_with_good_uploads_between(s3, limits):
    client, settings = s3
    bucket = settings.bucket
    expected = []
    for i, (key, make, _) in enumerate(POISON.values()):
        h.upload(client, bucket, key, make())
        good = h.HEADER + h.rows(f"ok{i}", 3)
        h.upload(client, bucket, f"interactions/p/ok{i}.csv", good)
        expected += h.row_keys(good)
    r = ingest(IngestConfig(run_id="all", settings=settings, limits=limits))
    assert (r.objects_quarantined, r.objects_ingested, r.rows_added) == (len(POISON), len(POISON), len(expected))
    meta = h.get_json(client, bucket, layout.metadata_key(1))
    assert sum(s["status"] == "quarantined" for s in meta["sources"]) == len(POISON)
    h.assert_exactly_once(h.latest_df(client, bucket), expected)
