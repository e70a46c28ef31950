"""One storage road: the one compare-and-set loop, the one listing, the raw-key builder, `dkt seed`, and a
workspace whose client carries its own credentials (against a real moto server)."""

from __future__ import annotations

import json

import pytest

from dkt_core.cli import main
from dkt_core.data.validate import validate_bytes
from dkt_core.ingest import layout
from dkt_core.storage.objects import (
    ConflictExhausted,
    compare_and_set,
    get_json,
    list_keys,
    list_objects,
    put_json,
    update_json,
)
from dkt_core.storage.s3 import S3Settings, ensure_bucket, s3_client
from dkt_core.storage.workspace import Workspace


@pytest.fixture
def bucket(s3_env):
    client = s3_client(s3_env)
    ensure_bucket(client, s3_env.bucket)
    return client, s3_env.bucket


def test_compare_and_set_merges_a_concurrent_writer(bucket):
    client, name = bucket
    put_json(client, name, "doc.json", {"n": [1]})
    raced = []

    def add_two(current):
        if not raced:  # another writer slips in between our read and our write
            raced.append(True)
            put_json(client, name, "doc.json", {"n": [*current["n"], 9]})
        return {"n": [*current["n"], 2]}

    assert update_json(client, name, "doc.json", add_two, wait_s=0) == {"n": [1, 9, 2]}
    assert get_json(client, name, "doc.json")[0] == {"n": [1, 9, 2]}  # the racer's value was re-read, not lost
    assert update_json(client, name, "doc.json", lambda current: None) == {"n": [1, 9, 2]}  # nothing to write
    assert update_json(client, name, "new.json", lambda current: {"created": current is None}) == {"created": True}


def test_compare_and_set_gives_up_naming_the_object(bucket):
    client, name = bucket
    put_json(client, name, "busy.json", {"v": 0})

    def always_raced(current):
        put_json(client, name, "busy.json", {"v": current["v"] + 1})
        return {"v": -1}

    with pytest.raises(ConflictExhausted, match="busy.json kept changing"):
        compare_and_set(lambda: get_json(client, name, "busy.json"),
                        lambda doc, **cond: put_json(client, name, "busy.json", doc, **cond),
                        always_raced, what="s3://x/busy.json", attempts=3, wait_s=0)
    assert get_json(client, name, "busy.json")[0] == {"v": 3}  # our value never overwrote another's


def test_one_listing_past_a_page(bucket):
    client, name = bucket
    for i in range(1003):
        client.put_object(Bucket=name, Key=f"p/{i:05d}", Body=b"x")
    objects = list_objects(client, name, "p/")
    assert len(objects) == 1003 and objects[0]["size"] == 1 and len(objects[0]["etag"]) == 32
    assert list_keys(client, name, "p/") == [o["key"] for o in objects] == sorted(o["key"] for o in objects)


def test_raw_keys_are_built_in_one_place():
    assert layout.raw_key("a.csv", day="2020-01-02") == "interactions/date=2020-01-02/a.csv"
    assert layout.raw_key("initial-u5-s1.csv", day="seed") == "interactions/date=seed/initial-u5-s1.csv"
    assert layout.raw_key("a.csv").startswith("interactions/date=20")
    for bad in ("../x.csv", "a b.csv", ".hidden"):
        with pytest.raises(ValueError):
            layout.raw_key(bad, day="seed")
    with pytest.raises(ValueError, match="overlaps"):
        layout.raw_key("a.csv", prefix="curated/")
    from pathlib import Path

    from dkt_core.webclient.spool import s3_key_for

    assert s3_key_for(Path("2024-05-06_0f1e.csv")) == "interactions/date=2024-05-06/0f1e.csv"


def test_dkt_seed_uploads_a_valid_log_under_the_raw_prefix(bucket, tmp_path, capsys):
    client, name = bucket
    assert main(["seed", "--users", "6", "--seed", "4", "--out", str(tmp_path / "copy.csv"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["key"] == "interactions/date=seed/initial-u6-s4.csv" and out["bucket"] == name and out["users"] == 6
    body = client.get_object(Bucket=name, Key=out["key"])["Body"].read()
    assert body == (tmp_path / "copy.csv").read_bytes()
    result = validate_bytes(body, out["key"])
    assert len(result.valid) == out["rows"] and len(result.rejected) == 0
    assert main(["seed", "--users", "6", "--seed", "4", "--json"]) == 0  # a rerun writes the same key
    assert list_keys(client, name, "interactions/") == [out["key"]]


def test_a_workspace_client_carries_its_own_credentials(bucket, monkeypatch, tmp_path):
    """Credentials handed to s3_client (what the DAG does with the connection's) reach S3 without any
    AWS_* variable in the environment, and nothing is written into it."""
    client, name = bucket
    settings = S3Settings.from_env()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import os

    before = dict(os.environ)
    ws = Workspace(s3_client(settings, access_key="k", secret_key="s"), name, cache_dir=tmp_path)
    put_json(ws.client, ws.bucket, "w.json", {"ok": 1})
    assert get_json(client, name, "w.json")[0] == {"ok": 1}
    assert ws.uri("w.json") == f"s3://{name}/w.json" and ws.endpoint == settings.endpoint_url
    assert dict(os.environ) == before
