"""Fenced writes: racing ingestions (same run id, different run ids), a stale attempt resuming after
a retry committed, a crash between the curated write and the commit — every valid row ends in the latest
version exactly once and nothing committed is ever overwritten. Real moto S3 server; delays and crashes
are injected through IngestConfig.hooks, between the pipeline's real steps."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from dkt_core.ingest import IngestBusy, IngestConfig, curated, ingest, layout
from dkt_core.ingest.manifest import LeaseLost, commit_run
from dkt_core.storage.objects import PreconditionFailed, put_bytes
from tests.integration import _ingest_helpers as h

pytestmark = pytest.mark.integration


class PauseAt:
    """A hook that parks the run at the first step whose name starts with ``prefix`` until released."""

    def __init__(self, prefix: str):
        self.prefix, self.reached, self.go = prefix, threading.Event(), threading.Event()

    def __call__(self, step: str) -> None:
        if step.startswith(self.prefix) and not self.reached.is_set():
            self.reached.set()
            assert self.go.wait(60), "test never released the paused run"


def run_in_thread(config: IngestConfig) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target():
        try:
            out["result"] = ingest(config)
        except Exception as err:  # noqa: BLE001 — the test inspects what the attempt raised
            out["error"] = err

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def seed(s3) -> list[tuple]:
    """v=000001 from one upload, then two new uploads pending; returns every row uploaded."""
    client, settings = s3
    base, b, c = h.HEADER + h.rows("u1", 4), h.HEADER + h.rows("u2", 5), h.HEADER + h.rows("u3", 6)
    h.upload(client, settings.bucket, "interactions/d1/a.csv", base)
    assert ingest(IngestConfig(run_id="base", settings=settings)).data_version == "v=000001"
    h.upload(client, settings.bucket, "interactions/d2/b.csv", b)
    h.upload(client, settings.bucket, "interactions/d2/c.csv", c)
    return h.row_keys(base) + h.row_keys(b) + h.row_keys(c)


def committed_fingerprint(s3) -> dict[str, str]:
    """ETag of every object under curated/ that a run record commits (must never change)."""
    client, settings = s3
    out = {}
    for k in h.keys(client, settings.bucket, layout.MANIFEST_RUNS_PREFIX):
        version = h.get_json(client, settings.bucket, k)["version"]
        if version:
            for key in (layout.dataset_key(version), layout.metadata_key(version)):
                out[key] = client.head_object(Bucket=settings.bucket, Key=key)["ETag"]
    return out


@pytest.mark.parametrize("pause_at", ["merge", "claiming", "writing curated", "commit"])
def test_stale_attempt_of_the_same_run_id_stops_after_the_retry_committed(s3, pause_at):
    """Airflow retries a run id while its first attempt still runs (a zombie): the zombie wakes up after
    the retry committed and must not write anything, wherever it was parked."""
    client, settings = s3
    expected = seed(s3)
    pause = PauseAt(pause_at)
    zombie, zout = run_in_thread(IngestConfig(run_id="r", settings=settings, hooks=pause, lease_ttl_s=2))
    assert pause.reached.wait(60)
    h.upload(client, settings.bucket, "interactions/d3/late.csv", late := h.HEADER + h.rows("u4", 2))
    retry = ingest(IngestConfig(run_id="r", settings=settings))
    assert (retry.status, retry.rows_added) == ("ingested", 5 + 6 + 2)
    before = committed_fingerprint(s3)
    pause.go.set()
    zombie.join(60)
    assert isinstance(zout.get("error"), LeaseLost), zout
    assert committed_fingerprint(s3) == before  # nothing committed was touched
    h.assert_exactly_once(h.latest_df(client, settings.bucket), expected + h.row_keys(late))
    assert len(h.keys(client, settings.bucket, layout.MANIFEST_RUNS_PREFIX)) == 2  # base + r, once
    assert ingest(IngestConfig(run_id="r", settings=settings)).replayed


def test_a_slow_run_keeps_its_lease_beyond_the_ttl_and_a_different_run_waits(s3):
    """The heartbeat renews the lease: a run parked for several TTLs still holds it, another run id is
    told to retry (IngestBusy) instead of claiming the same version."""
    client, settings = s3
    expected = seed(s3)
    pause = PauseAt("merge")
    slow, sout = run_in_thread(IngestConfig(run_id="slow", settings=settings, hooks=pause, lease_ttl_s=1))
    assert pause.reached.wait(60)
    h.upload(client, settings.bucket, "interactions/d3/late.csv", late := h.HEADER + h.rows("u5", 3))
    time.sleep(3.5)  # > 3 TTLs: without renewal the lease would have expired
    with pytest.raises(IngestBusy, match="slow"):
        ingest(IngestConfig(run_id="other", settings=settings))
    pause.go.set()
    slow.join(60)
    assert sout["result"].rows_added == 11
    r = ingest(IngestConfig(run_id="other", settings=settings))  # Airflow's retry of the other run
    assert (r.status, r.rows_added, r.parent_version) == ("ingested", 3, sout["result"].data_version)
    h.assert_exactly_once(h.latest_df(client, settings.bucket), expected + h.row_keys(late))


@pytest.mark.parametrize("pause_at", ["claiming", "writing curated", "commit"])
def test_a_run_whose_lease_expired_stops_when_another_run_took_it_over(s3, pause_at):
    """A lease that expired (worker stalled past the TTL) is taken over by another run id; the stalled
    run wakes up and stops: two runs never both commit a successor of the same version."""
    client, settings = s3
    expected = seed(s3)
    pause = PauseAt(pause_at)
    stalled, out = run_in_thread(IngestConfig(run_id="stalled", settings=settings, hooks=pause))
    assert pause.reached.wait(60)
    lock = h.get_json(client, settings.bucket, layout.LOCK_KEY)
    lock["expires_at"] = 0  # what a lease looks like once its worker stopped renewing it
    put_bytes(client, settings.bucket, layout.LOCK_KEY, json.dumps(lock).encode())
    h.upload(client, settings.bucket, "interactions/d3/late.csv", late := h.HEADER + h.rows("u6", 2))
    other = ingest(IngestConfig(run_id="other", settings=settings))
    assert other.status == "ingested"
    before = committed_fingerprint(s3)
    pause.go.set()
    stalled.join(60)
    assert isinstance(out.get("error"), LeaseLost), out
    assert committed_fingerprint(s3) == before
    h.assert_exactly_once(h.latest_df(client, settings.bucket), expected + h.row_keys(late))
    # the stalled run's retry: its objects are consumed already
    assert ingest(IngestConfig(run_id="stalled", settings=settings)).status == "nothing_new"


@pytest.mark.parametrize("same_run_id", [True, False])
def test_two_ingestions_at_once_with_random_delays_end_with_every_row_once(s3, same_run_id):
    """Two workers ingest at the same time with delays between every step, each retrying (as Airflow
    does) until its run completes; uploads keep arriving meanwhile."""
    client, settings = s3
    expected = seed(s3)
    rng_lock = threading.Lock()
    rng = random.Random(11 if same_run_id else 12)

    def jitter(step: str) -> None:
        with rng_lock:
            delay = rng.uniform(0, 0.15)
        time.sleep(delay)

    def worker(name: str, run_id: str, results: list):
        for _attempt in range(100):
            try:
                results.append(ingest(IngestConfig(run_id=run_id, settings=settings, hooks=jitter)))
                return
            except IngestBusy:  # another run id holds the lease: Airflow retries later
                time.sleep(0.1)
            except LeaseLost as err:  # a newer attempt of this run id took over: this one is the zombie
                results.append(err)
                return
        results.append(RuntimeError(f"{name} never completed"))

    results: list = []
    threads = [threading.Thread(target=worker, args=(n, "same" if same_run_id else n, results))
               for n in ("w1", "w2")]
    for t in threads:
        t.start()
    late = h.HEADER + h.rows("u7", 3)
    h.upload(client, settings.bucket, "interactions/d4/late.csv", late)
    for t in threads:
        t.join(120)
    completed = [r for r in results if not isinstance(r, Exception)]
    fenced = [r for r in results if isinstance(r, LeaseLost)]
    assert len(results) == 2 and len(completed) + len(fenced) == 2, results
    if same_run_id:
        assert completed  # the newest attempt always finishes
    else:
        assert len(completed) == 2  # a live lease never expires: different runs wait, none is fenced
    # whatever the interleaving, a final run picks up anything a run listed too early, then all is there
    ingest(IngestConfig(run_id="final", settings=settings))
    h.assert_exactly_once(h.latest_df(client, settings.bucket), expected + h.row_keys(late))
    runs = h.keys(client, settings.bucket, layout.MANIFEST_RUNS_PREFIX)
    assert len(runs) == len(set(runs)) <= 4


@pytest.mark.parametrize("rerun_id", ["crashed", "someone-else"])
def test_crash_between_the_curated_write_and_the_commit_then_a_rerun(s3, rerun_id):
    client, settings = s3
    expected = seed(s3)

    def crash(step: str) -> None:
        if step == "commit":
            raise ConnectionError("injected: worker killed between the curated write and the commit")

    with pytest.raises(ConnectionError):
        ingest(IngestConfig(run_id="crashed", settings=settings, hooks=crash))
    assert h.keys(client, settings.bucket, "curated/v=000002/") == [  # written, never committed
        layout.claim_key(2), layout.dataset_key(2), layout.metadata_key(2)]
    assert client.get_object(Bucket=settings.bucket, Key=layout.LATEST_KEY)["Body"].read() == b"v=000001"
    crashed_etag = client.head_object(Bucket=settings.bucket, Key=layout.dataset_key(2))["ETag"]
    r = ingest(IngestConfig(run_id=rerun_id, settings=settings))
    # the retry of the same run finds byte-identical content under its own earlier claim and adopts it;
    # another run id never shares a claimed number, so it takes the next one
    version = "v=000002" if rerun_id == "crashed" else "v=000003"
    assert (r.status, r.data_version, r.parent_version, r.rows_added) == ("ingested", version, "v=000001", 11)
    assert client.head_object(Bucket=settings.bucket, Key=layout.dataset_key(2))["ETag"] == crashed_etag
    h.assert_exactly_once(h.latest_df(client, settings.bucket), expected)
    assert ingest(IngestConfig(run_id="later", settings=settings)).status == "nothing_new"


def test_conditional_creates_are_honoured_so_no_version_is_ever_overwritten(s3):
    """moto (like AWS S3 and MinIO) honours If-None-Match / If-Match: the primitives the fencing rests on."""
    client, settings = s3
    bucket = settings.bucket
    put_bytes(client, bucket, "probe", b"1", if_absent=True)
    with pytest.raises(PreconditionFailed):
        put_bytes(client, bucket, "probe", b"2", if_absent=True)
    with pytest.raises(PreconditionFailed):
        put_bytes(client, bucket, "probe", b"3", if_match="0" * 32)
    assert client.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"1"

    import pandas as pd

    df = pd.DataFrame({"userID": ["u"], "assessmentItemID": ["A"], "testId": ["T"], "answerCode": [1],
                       "Timestamp": [pd.Timestamp("2020-01-01")], "KnowledgeTag": ["7"]})
    n1, _ = curated.claim_version(client, bucket, parent=None, run_id="a", token="t1")
    n2, _ = curated.claim_version(client, bucket, parent=None, run_id="b", token="t2")
    assert (n1, n2) == (1, 2)  # a claimed number is never handed out twice to different runs
    assert curated.claim_version(client, bucket, parent=None, run_id="a", token="t3") == (1, True)
    curated.write_version(client, bucket, n1, df, parent=None, run_id="a", sources=[])
    etag = client.head_object(Bucket=bucket, Key=layout.dataset_key(n1))["ETag"]
    with pytest.raises(curated.VersionTaken):
        curated.write_version(client, bucket, n1, pd.concat([df, df]), parent=None, run_id="b", sources=[])
    with pytest.raises(curated.VersionTaken):  # adopting needs identical content
        curated.write_version(client, bucket, n1, pd.concat([df, df]), parent=None, run_id="a", sources=[],
                              adopt=True)
    meta = curated.write_version(client, bucket, n1, df, parent=None, run_id="a", sources=[], adopt=True)
    assert meta["rows"] == 1
    assert client.head_object(Bucket=bucket, Key=layout.dataset_key(n1))["ETag"] == etag
    record = {"run_id": "a", "version": n1, "objects": []}
    assert commit_run(client, bucket, record) is True
    assert commit_run(client, bucket, {**record, "version": n2}) is False  # a run id commits once
    assert h.get_json(client, bucket, layout.manifest_run_key("a"))["version"] == n1
