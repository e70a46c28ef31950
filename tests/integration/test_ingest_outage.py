"""S3 down during ingestion: the run fails with an infrastructure error (so Airflow retries it), no object
is quarantined for S3's fault, and once S3 answers again a rerun ingests normally.

Each test runs its own moto server on its own port and really stops it mid-run (moto keeps nothing
across a restart, so the "S3 is back" half re-creates the bucket and uploads as a restored store would).
"""

from __future__ import annotations

import pytest

from dkt_core.ingest import IngestConfig, ingest, layout
from dkt_core.ingest.errors import S3Unavailable
from dkt_core.storage.s3 import S3Settings, ensure_bucket, s3_client
from tests.conftest import MotoServer, free_port
from tests.integration import _ingest_helpers as h

pytestmark = pytest.mark.integration


@pytest.fixture
def own_s3(s3_env):  # s3_env: test credentials in the environment
    server = MotoServer(free_port())
    server.start()
    settings = S3Settings(endpoint_url=server.endpoint_url, bucket="dkt-outage")
    yield server, settings
    server.stop()


def prepare(settings: S3Settings) -> tuple[object, list[tuple]]:
    client = s3_client(settings)
    ensure_bucket(client, settings.bucket)
    a, b = h.HEADER + h.rows("o1", 4), h.HEADER + h.rows("o2", 3)
    h.upload(client, settings.bucket, "interactions/a.csv", a)
    h.upload(client, settings.bucket, "interactions/b.csv", b)
    return client, h.row_keys(a) + h.row_keys(b)


@pytest.mark.parametrize("stop_at", ["read:interactions/b.csv", "merge", "claiming", "commit"])
def test_s3_down_mid_run_fails_the_task_then_a_rerun_ingests(own_s3, stop_at):
    server, settings = own_s3
    prepare(settings)

    def outage(step: str) -> None:
        if step.startswith(stop_at) and server.proc is not None:
            server.stop()

    with pytest.raises(S3Unavailable, match="unreachable or throttling"):
        ingest(IngestConfig(run_id="r1", settings=settings, hooks=outage))

    server.start()  # S3 is back (empty: moto keeps nothing across restarts)
    client, expected = prepare(settings)
    r = ingest(IngestConfig(run_id="r1", settings=settings))  # Airflow's retry of the same run
    assert (r.status, r.objects_ingested, r.objects_quarantined, r.rows_added) == ("ingested", 2, 0, 7)
    assert h.keys(client, settings.bucket, layout.QUARANTINE_PREFIX) == []
    h.assert_exactly_once(h.latest_df(client, settings.bucket), expected)


def test_s3_unreachable_from_the_start_is_an_infrastructure_error(s3_env):
    dead = S3Settings(endpoint_url=f"http://127.0.0.1:{free_port()}", bucket="dkt-outage")
    with pytest.raises(S3Unavailable, match="retry the run"):
        ingest(IngestConfig(run_id="r", settings=dead))
