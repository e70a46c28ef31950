"""Values that come from S3 listings and manifest objects are checked before anything derives a key from
them; S3 errors are split into "S3 is unwell" (retry the run) and the rest."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from dkt_core.ingest import layout
from dkt_core.ingest.manifest import ManifestCorrupt, _checked_record
from dkt_core.ingest.pipeline import IngestResult
from dkt_core.storage.objects import is_infrastructure_error


@pytest.mark.parametrize("key", [
    "interactions/date=2026-01-02/0b7c1a.csv", "interactions/x.csv.gz", "interactions/a_b-c+d=e.parquet",
])
def test_ordinary_upload_keys_are_safe(key):
    assert layout.raw_key_problem(key) is None
    assert layout.archive_key("run", key) == f"archive/run/{key}"
    assert layout.quarantine_key("run", key) == f"quarantine/run/{key}"


@pytest.mark.parametrize("key, why", [
    ("interactions/../curated/v=000001/interactions.parquet", ".."),
    ("interactions/a..b.csv", ".."),
    ("interactions/./x.csv", "characters"),
    ("interactions//x.csv", "empty name"),
    ("interactions/.hidden", "starting with '.'"),
    ("interactions/a b.csv", "characters"),
    ("interactions/$(reboot).csv", "characters"),
    ("interactions/\u00fcber.csv", "characters"),
    ("/interactions/x.csv", "characters"),
    ("interactions/" + "x" * 600, "longer than"),
    ("", "empty"),
])
def test_unsafe_keys_get_a_hashed_quarantine_name_and_never_an_archive_key(key, why):
    assert why in layout.raw_key_problem(key)
    q = layout.quarantine_key("run", key)
    assert q.startswith("quarantine/run/unsafe-keys/") and layout.raw_key_problem(q) is None
    assert q == layout.quarantine_key("run", key)  # stable across retries
    with pytest.raises(ValueError, match="unsafe key"):
        layout.archive_key("run", key)


@pytest.mark.parametrize("prefix", ["curated/", "manifest/runs/", "archive/", "a", "../interactions/", "x//", ""])
def test_prefixes_that_would_ingest_our_own_areas_or_escape_are_refused(prefix):
    with pytest.raises(ValueError, match="prefix"):
        layout.check_prefix(prefix)


def test_run_ids_and_versions_are_checked():
    for ok in ("manual__2026-01-02T03:04:05.123456+00:00", "scheduled__2026-01-02T00:00:00+00:00", "run-1"):
        assert layout.check_run_id(ok) == ok
    for bad in ("", "../../etc", "a/b", "x" * 300, None, 7):
        with pytest.raises(ValueError, match="run id"):
            layout.check_run_id(bad)
    for bad in ("v=000000", "v=1", "v=0000000001", "v=000001/../x", None):
        with pytest.raises(ValueError, match="version name"):
            layout.parse_version(bad)


@pytest.mark.parametrize("record, problem", [
    ([], "not a JSON object"),
    ({"run_id": "../x", "objects": []}, "run id"),
    ({"run_id": "r", "version": "v=000001/../../", "objects": []}, "positive integer"),
    ({"run_id": "r", "version": True, "objects": []}, "positive integer"),
    ({"run_id": "r", "version": 1, "objects": {}}, "not a list"),
    ({"run_id": "r", "version": 1, "objects": [{"key": 3, "etag": "abc"}]}, "key"),
    ({"run_id": "r", "version": 1, "objects": [{"key": "k", "etag": "a/b"}]}, "ETag"),
])
def test_a_bad_manifest_record_names_the_object(record, problem):
    with pytest.raises(ManifestCorrupt, match=problem) as err:
        _checked_record(record, "s3://b/manifest/runs/r.json")
    assert "s3://b/manifest/runs/r.json" in str(err.value)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


def test_infrastructure_errors_are_told_apart_from_request_errors():
    for err in (EndpointConnectionError(endpoint_url="http://x"), ConnectTimeoutError(endpoint_url="http://x"),
                ReadTimeoutError(endpoint_url="http://x"), _client_error("SlowDown", 503),
                _client_error("InternalError", 500), _client_error("TooManyRequests", 429)):
        assert is_infrastructure_error(err), err
    for err in (_client_error("AccessDenied", 403), _client_error("NoSuchKey", 404), ValueError("x")):
        assert not is_infrastructure_error(err), err


def test_results_of_runs_committed_before_the_rename_replay_with_the_new_names():
    old = {"status": "skipped", "run_id": "r", "dataset_uri": "s3://b/k", "objects": 2, "gone": 1}
    r = IngestResult.from_record(old)
    assert (r.status, r.data_uri, r.objects) == ("nothing_new", "s3://b/k", 2)
