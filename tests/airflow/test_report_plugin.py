"""The run report inside Airflow (issue 13 item 5): one dag.test() run of dkt_retrain against a real moto S3,
then Airflow's own API server app (``create_app``: the plugin mounted as Airflow mounts it, Airflow's auth
manager, its JWTs) in a TestClient: the report list and pages need Airflow's login, the extra link of the
``report`` task leads to the run's report and its ROC plot, nothing from the URL becomes an unchecked key;
the run's note carries the gate's decision and numbers; the Assets got their events; unknown model names
fail in ``plan`` before anything is ingested."""

from __future__ import annotations

import json
import os

import pytest
from dagutil import TINY, keys, states, upload

pytestmark = pytest.mark.airflow

PASSWORD = "report-test-password"


@pytest.fixture
def api(env, tmp_path, monkeypatch):
    """Airflow's API server app in-process: users admin (admin) and nobody (viewer) from a passwords file."""
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD, "nobody": PASSWORD}))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,nobody:viewer")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", os.urandom(16).hex())  # the API server's signing key
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    purge_cached_app()
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        yield client
    purge_cached_app()


def token(api, user: str = "admin") -> dict[str, str]:
    r = api.post("/auth/token", json={"username": user, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_model_names_are_the_registry(dagbag):
    from dkt_airflow.settings import MODEL_NAMES

    from dkt_core.models import MODELS

    assert list(MODEL_NAMES) == list(MODELS)
    schema = dagbag.dags["dkt_retrain"].params.get_param("models").schema
    assert schema["type"] == "array" and schema["examples"] == list(MODELS)  # the form's multi-select
    assert schema["items"]["enum"] == list(MODELS)


def test_unknown_model_is_refused_before_anything_is_ingested(dagbag, env, s3_env, logs):
    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", logs[0])
    with pytest.raises(Exception, match="gbdt"):  # the form's schema (items enum) refuses it at trigger time
        dag.test(run_conf={"models": ["lgbm", "gbdt"], "model_options": TINY})
    assert keys(client, bucket, "curated/") == [] and keys(client, bucket, "manifest/") == []
    # plan repeats the check with the registry itself (get_model_class) for a run whose conf skipped the
    # form's schema; dag.test() always applies the schema, so that branch is not reached from here


def test_report_served_under_airflow_auth_with_note_assets_and_extra_link(dagbag, env, s3_env, logs, api):
    client, bucket, dag = env, s3_env.bucket, dagbag.dags["dkt_retrain"]
    upload(client, bucket, "interactions/date=2020-01-01/initial.csv", logs[0])
    run = dag.test(run_conf={"models": ["lgbm"], "model_options": TINY})
    assert str(run.state) == "success", states(run)
    version = json.loads(client.get_object(Bucket=bucket, Key="models/champion.json")["Body"].read())["model_version"]

    # the run's note: the gate's decision, the AUCs it compared, the drift n and the report
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        note = session.get(DagRun, run.id).note
    assert note.startswith("[dkt] PROMOTE: challenger AUC 0.") and "champion AUC n/a" in note, note
    assert f"/dkt-reports/models/{version}/report.html" in note and "rows," in note

    # Assets: curated version and champion, each with this run's event
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    with create_session() as session:
        events = {(e.asset.uri, json.dumps(e.extra, sort_keys=True)) for e in session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.name.in_(["dkt_curated", "dkt_champion"])))}
    assert any(uri.endswith("/curated") and '"data_version": "v=000001"' in extra for uri, extra in events), events
    assert any(uri.endswith("/models/champion.json") and version in extra for uri, extra in events), events

    # no login: 401 for an API client, a redirect to Airflow's login page for a browser; a forged token: 403
    for path in ("/dkt-reports/", f"/dkt-reports/models/{version}/report.html", f"/dkt-reports/models/{version}/roc.png",
                 "/dkt-reports/latest", f"/dkt-reports/runs/{run.run_id}"):
        assert api.get(path, follow_redirects=False).status_code == 401, path
        r = api.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/auth/login"), path
        assert api.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403, path

    auth = token(api)
    page = api.get("/dkt-reports/", headers=auth)
    assert page.status_code == 200 and version in page.text and "PROMOTE" in page.text and "(champion)" in page.text
    assert run.run_id in page.text
    assert api.get("/dkt-reports/", headers=token(api, "nobody")).status_code == 200  # a viewer may read runs

    # the report task's extra link, as the UI asks for it, leads to the run's report and its ROC plot
    links = api.get(f"/api/v2/dags/dkt_retrain/dagRuns/{run.run_id}/taskInstances/report/links", headers=auth)
    assert links.status_code == 200, links.text
    link = links.json()["extra_links"]["Run report"]
    assert link.startswith("/dkt-reports/runs/")
    assert api.get(f"/api/v2/dags/dkt_retrain/dagRuns/{run.run_id}/taskInstances/ensemble/links",
                   headers=auth).json()["extra_links"].get("Run report") is None
    report = api.get(link, headers=auth)
    assert report.status_code == 200 and str(report.url).endswith(f"/dkt-reports/models/{version}/report.html")
    assert '<img src="roc.png"' in report.text and report.headers["content-type"].startswith("text/html")
    roc = api.get(f"/dkt-reports/models/{version}/roc.png", headers=auth)
    assert roc.status_code == 200 and roc.headers["content-type"] == "image/png" and roc.content[:4] == b"\x89PNG"
    assert api.get("/dkt-reports/latest", headers=auth).url.path.endswith(f"/{version}/report.html")

    # nothing from the URL names a key unchecked
    for path, code in ((f"/dkt-reports/models/{version}/artifact.tar.gz", 404),
                       ("/dkt-reports/models/..%2F..%2Fmanifest/report.json", 404),  # no route matches
                       ("/dkt-reports/models/..%20champion.json/report.html", 400),
                       ("/dkt-reports/models/20250101-120000-0123abc/report.html", 400),
                       ("/dkt-reports/models/20250101-120000-0123abcd/report.html", 404),
                       ("/dkt-reports/runs/..%2Fmodels", 404), ("/dkt-reports/runs/..x%20y", 400), ("/dkt-reports/runs/never-ran", 404),
                       ("/dkt-reports/runs/x?dag_id=other", 404)):
        assert api.get(path, headers=auth).status_code == code, path
