"""Manifest and versioning of the ingestion against a real moto S3 server."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from dkt_core.ingest import IngestBusy, IngestConfig, ingest, layout
from dkt_core.ingest.manifest import ingest_lease
from dkt_core.storage.s3 import ensure_bucket, s3_client

pytestmark = pytest.mark.integration

HEADER = "userID,assessmentItemID,testId,answerCode,Timestamp,KnowledgeTag\n"


def rows(user: str, n: int, start: int = 0) -> str:
    return "".join(
        f"{user},A{i:03d},T1,{i % 2},2020-01-01 00:{(start + i) // 60:02d}:{(start + i) % 60:02d},7{i % 3}\n"
        for i in range(n)
    )


@pytest.fixture
def s3(s3_env):
    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    return client, s3_env


def upload(s3, key: str, text: str) -> None:
    client, settings = s3
    client.put_object(Bucket=settings.bucket, Key=key, Body=text.encode())


def curated_df(s3, version: int) -> pd.DataFrame:
    client, settings = s3
    body = client.get_object(Bucket=settings.bucket, Key=layout.dataset_key(version))["Body"].read()
    return pd.read_parquet(io.BytesIO(body))


def get_json(s3, key: str):
    client, settings = s3
    return json.loads(client.get_object(Bucket=settings.bucket, Key=key)["Body"].read())


def test_first_ingest_creates_v1_then_rerun_has_nothing_new_then_new_objects_make_v2(s3):
    client, settings = s3
    upload(s3, "interactions/date=2020-01-01/a.csv", HEADER + rows("u1", 5) + rows("u2", 3))
    r1 = ingest(IngestConfig(run_id="run-1", settings=settings))
    assert (r1.status, r1.data_version, r1.rows_added, r1.objects) == ("ingested", "v=000001", 8, 1)
    assert r1.data_uri == f"s3://{settings.bucket}/curated/v=000001/interactions.parquet"
    assert client.get_object(Bucket=settings.bucket, Key=layout.LATEST_KEY)["Body"].read() == b"v=000001"
    meta = get_json(s3, layout.metadata_key(1))
    assert (meta["rows"], meta["users"], meta["parent_version"]) == (8, 2, None)
    assert meta["sources"][0]["key"] == "interactions/date=2020-01-01/a.csv"
    # archived copy is byte-identical; the original is kept (the manifest says it was consumed)
    archived = client.get_object(Bucket=settings.bucket, Key=layout.archive_key("run-1", meta["sources"][0]["key"]))
    assert archived["Body"].read().decode() == HEADER + rows("u1", 5) + rows("u2", 3)
    assert client.list_objects_v2(Bucket=settings.bucket, Prefix="interactions/")["KeyCount"] == 1

    # same run id again: replays the committed result; a new run id with nothing new: nothing_new
    again = ingest(IngestConfig(run_id="run-1", settings=settings))
    assert again.replayed and again.data_version == "v=000001"
    r2 = ingest(IngestConfig(run_id="run-2", settings=settings))
    assert (r2.status, r2.data_version) == ("nothing_new", "v=000001")
    assert "no new objects" in r2.reason

    upload(s3, "interactions/date=2020-01-02/b.csv", HEADER + rows("u3", 4) + rows("u1", 2, start=100))
    r3 = ingest(IngestConfig(run_id="run-3", settings=settings))
    assert (r3.status, r3.data_version, r3.parent_version, r3.rows_added) == ("ingested", "v=000002", "v=000001", 6)
    v1, v2 = curated_df(s3, 1), curated_df(s3, 2)
    assert len(v2) == len(v1) + 6
    new_rows = pd.concat([v2, v1]).drop_duplicates(keep=False)
    assert len(new_rows) == 6 and set(new_rows["userID"]) == {"u1", "u3"}
    assert curated_df(s3, 1).equals(v1)  # v1 untouched (immutable)
    for _, g in v2.groupby("userID", sort=False):
        assert g["Timestamp"].is_monotonic_increasing
    index = get_json(s3, layout.MANIFEST_INDEX_KEY)
    assert [r["run_id"] for r in index["runs"]] == ["run-1", "run-3"]
    assert get_json(s3, layout.metadata_key(2))["parent_version"] == "v=000001"


def test_an_overwritten_key_with_new_content_is_ingested_again(s3):
    _, settings = s3
    upload(s3, "interactions/date=2020-01-01/a.csv", HEADER + rows("u1", 3))
    ingest(IngestConfig(run_id="r1", settings=settings))
    upload(s3, "interactions/date=2020-01-01/a.csv", HEADER + rows("u1", 3) + rows("u9", 2))  # new ETag
    r = ingest(IngestConfig(run_id="r2", settings=settings))
    assert (r.status, r.rows_added) == ("ingested", 2)  # the 3 old rows are exact duplicates


def test_malformed_rows_are_quarantined_with_reasons_and_good_rows_ingested(s3):
    client, settings = s3
    bad = HEADER + rows("u1", 3) + "u2,A1,T1,7,2020-01-01 00:00:00,7\n" + "u3,A1,T1,1,yesterday,7\n" + "u4,only,three\n"
    upload(s3, "interactions/date=2020-01-01/mixed.csv", bad)
    upload(s3, "interactions/date=2020-01-01/garbage.csv", "this is,not\nan interaction log\n")
    r = ingest(IngestConfig(run_id="q", settings=settings))
    assert (r.status, r.rows_added, r.rows_rejected, r.objects_quarantined) == ("ingested", 3, 3, 1)
    qp = r.quarantine_prefix
    rejected = pd.read_csv(io.BytesIO(client.get_object(
        Bucket=settings.bucket, Key=qp + "interactions/date=2020-01-01/mixed.csv.rejected.csv")["Body"].read()))
    assert sorted(rejected["reason"]) == ["bad answerCode", "unparsable Timestamp", "wrong field count"]
    assert rejected["line"].tolist() == [5, 6, 7]
    reason = get_json(s3, qp + "interactions/date=2020-01-01/garbage.csv.reason.json")
    assert "column" in reason["reason"]
    # the unusable object is consumed too (quarantined whole), so it is not retried forever
    assert ingest(IngestConfig(run_id="q2", settings=settings)).status == "nothing_new"


def test_only_invalid_rows_commit_the_objects_without_a_new_version(s3):
    _, settings = s3
    upload(s3, "interactions/x.csv", HEADER + "u2,A1,T1,7,2020-01-01 00:00:00,7\n")
    r = ingest(IngestConfig(run_id="bad-only", settings=settings))
    assert (r.status, r.data_version, r.rows_rejected) == ("nothing_new", None, 1)
    assert "no new valid rows" in r.reason


def test_failure_mid_ingest_then_retry_duplicates_nothing_and_skips_nothing(s3, monkeypatch):
    client, settings = s3
    upload(s3, "interactions/d1/a.csv", HEADER + rows("u1", 4))
    ingest(IngestConfig(run_id="base", settings=settings))
    upload(s3, "interactions/d2/b.csv", HEADER + rows("u2", 5))
    upload(s3, "interactions/d2/c.csv", HEADER + rows("u3", 6))

    from dkt_core.ingest import curated

    real_write = curated.write_version

    def crash_after_write(*args, **kwargs):  # fault injection: the worker dies after downloading+writing
        real_write(*args, **kwargs)
        raise ConnectionError("injected: worker lost after writing the version")

    monkeypatch.setattr(curated, "write_version", crash_after_write)
    with pytest.raises(ConnectionError):
        ingest(IngestConfig(run_id="flaky", settings=settings))
    assert client.get_object(Bucket=settings.bucket, Key=layout.LATEST_KEY)["Body"].read() == b"v=000001"
    assert client.list_objects_v2(Bucket=settings.bucket, Prefix=layout.LOCK_KEY)["KeyCount"] == 0  # released
    # A hard kill (SIGKILL, lost node) cannot release its lease: leave one behind as it would.
    client.put_object(Bucket=settings.bucket, Key=layout.LOCK_KEY,
                      Body=json.dumps({"run_id": "flaky", "expires_at": 4e9}).encode())
    # a different run cannot slip in while the dead attempt's lease is live ...
    with pytest.raises(IngestBusy, match="flaky"):
        ingest(IngestConfig(run_id="other", settings=settings))
    # ... but the retry of the same run id (Airflow's retry) takes it over and finishes the job
    monkeypatch.setattr(curated, "write_version", real_write)
    upload(s3, "interactions/d3/late.csv", HEADER + rows("u4", 2))  # arrived between attempts
    r = ingest(IngestConfig(run_id="flaky", settings=settings))
    # v=000002 was claimed and written by the dead attempt: never overwritten, never reused (a gap)
    assert (r.status, r.data_version, r.parent_version, r.rows_added, r.objects) == (
        "ingested", "v=000003", "v=000001", 13, 3)
    v3 = curated_df(s3, 3)
    assert len(v3) == 4 + 5 + 6 + 2 and not v3.duplicated().any()
    assert len(curated_df(s3, 2)) == 4 + 5 + 6  # the uncommitted attempt's version is left as it was
    assert ingest(IngestConfig(run_id="after", settings=settings)).status == "nothing_new"


def test_crash_after_commit_is_repaired_by_the_retry(s3, monkeypatch):
    client, settings = s3
    upload(s3, "interactions/a.csv", HEADER + rows("u1", 2))
    from dkt_core.ingest import curated

    def crash(*a, **k):  # moving LATEST is the first write after the commit (no version existed before)
        raise ConnectionError("injected: died right after the commit")

    monkeypatch.setattr(curated, "set_latest", crash)
    with pytest.raises(ConnectionError):
        ingest(IngestConfig(run_id="c", settings=settings))
    monkeypatch.undo()
    assert client.list_objects_v2(Bucket=settings.bucket, Prefix=layout.LATEST_KEY)["KeyCount"] == 0
    assert client.list_objects_v2(Bucket=settings.bucket, Prefix=layout.manifest_run_key("c"))["KeyCount"] == 1
    # a new run sees the committed run (no re-ingest) and repairs LATEST too
    assert ingest(IngestConfig(run_id="d", settings=settings)).status == "nothing_new"
    client.delete_object(Bucket=settings.bucket, Key=layout.LATEST_KEY)
    r = ingest(IngestConfig(run_id="c", settings=settings))
    assert r.replayed and r.data_version == "v=000001"
    assert client.get_object(Bucket=settings.bucket, Key=layout.LATEST_KEY)["Body"].read() == b"v=000001"


def test_expired_lease_of_a_dead_run_is_taken_over(s3):
    client, settings = s3
    with pytest.raises(RuntimeError):
        with ingest_lease(client, settings.bucket, "dead", ttl_s=3600):
            # a live lease blocks others
            with pytest.raises(IngestBusy):
                with ingest_lease(client, settings.bucket, "other", ttl_s=3600):
                    pass
            client.put_object(Bucket=settings.bucket, Key=layout.LOCK_KEY,
                              Body=json.dumps({"run_id": "dead", "expires_at": 0}).encode())
            raise RuntimeError("the holder dies")
    with ingest_lease(client, settings.bucket, "other", ttl_s=3600):
        assert get_json(s3, layout.LOCK_KEY)["run_id"] == "other"
    assert client.list_objects_v2(Bucket=settings.bucket, Prefix=layout.LOCK_KEY)["KeyCount"] == 0


def test_missing_bucket_says_what_to_do(s3_env):
    with pytest.raises(RuntimeError, match="make s3-seed"):
        ingest(IngestConfig(run_id="x", settings=s3_env))


def test_values_read_back_from_s3_are_checked_before_use(s3):
    from dkt_core.ingest.manifest import ManifestCorrupt

    client, settings = s3
    bucket = settings.bucket
    upload(s3, "interactions/a.csv", HEADER + rows("u1", 2))
    # a stray folder under curated/ is ignored (never parsed into a key), LATEST garbage is repaired
    client.put_object(Bucket=bucket, Key="curated/../../etc/x", Body=b"x")
    client.put_object(Bucket=bucket, Key=layout.LATEST_KEY, Body=b"v=000001/../../../etc")
    r = ingest(IngestConfig(run_id="r1", settings=settings))
    assert r.data_version == "v=000001"
    assert client.get_object(Bucket=bucket, Key=layout.LATEST_KEY)["Body"].read() == b"v=000001"
    client.put_object(Bucket=bucket, Key=layout.LATEST_KEY, Body=b"v=000001" * 10_000)  # not even read whole
    assert ingest(IngestConfig(run_id="r1b", settings=settings)).status == "nothing_new"
    assert client.get_object(Bucket=bucket, Key=layout.LATEST_KEY)["Body"].read() == b"v=000001"

    # a run record whose run id would become a path: a clear error naming the object, nothing derived
    bad_key = layout.MANIFEST_RUNS_PREFIX + "evil.json"
    client.put_object(Bucket=bucket, Key=bad_key, Body=json.dumps(
        {"run_id": "../../models/champion", "version": 1, "objects": []}).encode())
    upload(s3, "interactions/b.csv", HEADER + rows("u2", 2))
    with pytest.raises(ManifestCorrupt, match=f"s3://{bucket}/{bad_key}.*run id"):
        ingest(IngestConfig(run_id="r2", settings=settings))
    client.delete_object(Bucket=bucket, Key=bad_key)

    # a lock that is not a lease: named, with what to do
    client.put_object(Bucket=bucket, Key=layout.LOCK_KEY, Body=b"not json")
    with pytest.raises(ManifestCorrupt, match="ingest.lock is not an ingest lease"):
        ingest(IngestConfig(run_id="r2", settings=settings))
    client.delete_object(Bucket=bucket, Key=layout.LOCK_KEY)
    assert ingest(IngestConfig(run_id="r2", settings=settings)).rows_added == 2


def test_a_backlog_is_ingested_over_several_runs_within_the_byte_budget(s3):
    client, settings = s3
    texts = [HEADER + rows(f"b{i}", 20) for i in range(5)]
    for i, text in enumerate(texts):
        upload(s3, f"interactions/d{i}.csv", text)
    budget = 2 * len(texts[0].encode())  # two objects per run
    results = [ingest(IngestConfig(run_id=f"b{i}", settings=settings, max_run_bytes=budget)) for i in range(4)]
    assert [(r.objects, r.objects_pending) for r in results] == [(2, 3), (2, 1), (1, 0), (0, 0)]
    assert "left for the next run" in results[0].reason
    assert [r.status for r in results] == ["ingested", "ingested", "ingested", "nothing_new"]
    assert len(curated_df(s3, 3)) == 100
