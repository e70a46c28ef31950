"""The run reports inside Airflow: a FastAPI app mounted in Airflow's API server at ``/dkt-reports``, behind
Airflow's own authentication, plus the UI entries that reach it.

* ``/dkt-reports/`` lists the runs that wrote a report (newest first): model version, run id, the gate's
  decision and reason, challenger and champion AUC, which version is the champion.
* ``/dkt-reports/models/<model_version>/report.html`` serves the report from S3, with its plots beside it
  (``roc.png``, ``calibration.png``, ``live_auc.png``; the report links them relatively) and ``report.json``.
* ``/dkt-reports/runs/<run_id>`` opens the report a ``dkt_retrain`` run wrote (found through its
  ``runs/<run>/challenger.json`` record); ``/dkt-reports/latest`` the newest one.

Nothing from the request becomes an S3 key unchecked: a model version must match the trainer's version rule
(``check_model_version``), a run id Airflow's run-id rule (``layout.check_run_id``), a file name one of the
report's fixed names; keys are then built by ``dkt_core.ingest.layout``. Version and run records read from
S3 are checked the same way before they name another key.

Authentication is Airflow's: every route depends on ``get_user`` (the UI's JWT cookie or a Bearer token)
and on read access to the ``dkt_retrain`` DAG's runs (``requires_access_dag``), exactly like Airflow's own
API routes; a browser without a session is redirected to the login page, any other client gets 401/403.

UI: a navigation entry "DKT run reports" (an external view embedded at ``/plugin/dkt-reports``), a "Run
report" tab on DAG runs and an operator extra link "Run report" on the ``report`` task.
"""

from __future__ import annotations

import html
import logging
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dkt_airflow.settings import REPORTS_URL_PREFIX as URL_PREFIX
from dkt_airflow.settings import RETRAIN_DAG_ID

log = logging.getLogger(__name__)

REPORT_TASK_ID = "report"
# The files a report consists of (dkt_core.retrain.report writes them) and the type each is served as;
# the type never comes from S3's metadata.
REPORT_FILES = {"report.html": "text/html; charset=utf-8", "report.json": "application/json",
                "roc.png": "image/png", "calibration.png": "image/png", "live_auc.png": "image/png"}
MAX_LISTED = 100  # newest reports on the list page
MAX_FILE_BYTES = 32 * 2**20  # a report file larger than this was not written by the platform
# The report's own HTML: inline styles, images from beside it, no scripts.
_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                                       "frame-ancestors 'self'",
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}


class LoginRequired(Exception):
    """A browser asked for a page without a valid session: it is sent to Airflow's login page."""


async def authorize(request: Request) -> Any:
    """Airflow's own checks (imported here: the plugin module also loads in workers, which never serve it):
    the user from the Bearer token or the UI's cookie, then read access to the dkt_retrain DAG's runs."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag

    try:
        user = await get_user(request, None, await bearer_scheme(request))
    except HTTPException as err:
        if err.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            raise LoginRequired from err
        raise
    requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=RETRAIN_DAG_ID)(request, user)
    return user


app = FastAPI(title="dkt run reports", description="Run reports of dkt_retrain, read from the platform bucket",
              dependencies=[Depends(authorize)], docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(LoginRequired)
async def _to_login(request: Request, exc: LoginRequired) -> Response:
    from airflow.api_fastapi.app import get_auth_manager

    # back to the page asked for after logging in (a path of this server only: no open redirect)
    return RedirectResponse(get_auth_manager().get_url_login(next_url=request.url.path), status_code=303)


def _workspace():
    from dkt_airflow.s3env import workspace

    return workspace()


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
           "<meta name=viewport content='width=device-width,initial-scale=1'><style>"
           "body{font-family:sans-serif;margin:16px}table{border-collapse:collapse}"
           "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px;vertical-align:top}"
           ".promote{color:#176c2b}.kept{color:#a33}</style></head>"
           f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(doc, status_code=status_code, headers=_HEADERS)


def _auc(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def list_reports(ws) -> list[dict[str, Any]]:
    """The newest ``MAX_LISTED`` reports (one row per model version that has a report.json), newest first."""
    from dkt_core.ingest.layout import MODELS_PREFIX, model_key
    from dkt_core.storage.objects import list_keys, read_json
    from dkt_core.training.versions import MODEL_VERSION_RE

    versions = []
    for key in list_keys(ws.client, ws.bucket, MODELS_PREFIX):
        version, _, name = key[len(MODELS_PREFIX):].partition("/")
        if name == "report.json" and MODEL_VERSION_RE.fullmatch(version):  # anything else is not a report
            versions.append(version)
    rows = []
    for version in sorted(versions, reverse=True)[:MAX_LISTED]:
        try:
            doc = read_json(ws.client, ws.bucket, model_key(version, "report.json")) or {}
        except ValueError as err:  # a damaged report is listed as such, the page still renders
            doc = {"error": str(err)}
        gate = doc.get("gate") or {}
        rows.append({"model_version": version, "run_id": doc.get("run_id"), "created_at": doc.get("created_at"),
                     "data_version": doc.get("data_version"), "promote": gate.get("promote"),
                     "reason": gate.get("reason") or doc.get("error"), "challenger": gate.get("challenger"),
                     "champion": gate.get("champion"), "champion_version": (doc.get("evaluation") or {}).get(
                         "champion_version")})
    return rows


def _champion_version(ws) -> str | None:
    from dkt_core.ingest.layout import CHAMPION_KEY
    from dkt_core.storage.objects import read_json

    try:
        return (read_json(ws.client, ws.bucket, CHAMPION_KEY) or {}).get("model_version")
    except ValueError:
        return None


@app.get("/", response_class=HTMLResponse, summary="The runs that wrote a report, with their gate decisions")
def index() -> HTMLResponse:
    ws = _workspace()
    rows, champion = list_reports(ws), _champion_version(ws)
    if not rows:
        return _page("DKT run reports", f"<p>No run has written a report to s3://{html.escape(ws.bucket)} yet. "
                                        f"Reports are written by the <code>report</code> task of "
                                        f"<code>{RETRAIN_DAG_ID}</code>.</p>")
    lines = []
    for r in rows:
        v = r["model_version"]
        decision = ("<span class=promote>PROMOTE</span>" if r["promote"] else
                    "<span class=kept>CHAMPION KEPT</span>" if r["promote"] is False else "?")
        lines.append(
            f"<tr><td><a href='models/{v}/report.html'>{v}</a>{' (champion)' if v == champion else ''}</td>"
            f"<td>{html.escape(str(r['run_id'] or ''))}</td><td>{html.escape(str(r['created_at'] or ''))}</td>"
            f"<td>{html.escape(str(r['data_version'] or ''))}</td><td>{decision}</td>"
            f"<td>{_auc(r['challenger'])}</td><td>{_auc(r['champion'])}</td>"
            f"<td>{html.escape(str(r['reason'] or ''))}</td></tr>")
    body = (f"<p>{len(rows)} report(s) in s3://{html.escape(ws.bucket)}, newest first"
            f"{f' (the newest {MAX_LISTED} shown)' if len(rows) == MAX_LISTED else ''}; "
            f"<a href='latest'>open the latest</a>.</p><table><tr><th>model version</th><th>run</th><th>created</th>"
            "<th>data</th><th>gate</th><th>challenger AUC</th><th>champion AUC</th><th>reason</th></tr>"
            + "".join(lines) + "</table>")
    return _page("DKT run reports", body)


@app.get("/latest", summary="Redirect to the newest report")
def latest() -> Response:
    rows = list_reports(_workspace())
    if not rows:
        return _page("No report yet", "<p>No run has written a report yet.</p>", status_code=404)
    # relative: right under any base URL the API server is mounted at
    return RedirectResponse(f"models/{rows[0]['model_version']}/report.html", status_code=303)


@app.get("/runs/{run_id}", summary="Redirect to the report a dkt_retrain run wrote")
def run_report(run_id: str, dag_id: str = RETRAIN_DAG_ID) -> Response:
    from dkt_core.ingest.layout import challenger_record_key, check_run_id
    from dkt_core.storage.objects import read_json
    from dkt_core.training.versions import check_model_version

    if dag_id != RETRAIN_DAG_ID:
        return _page("No run report", f"<p>Only {RETRAIN_DAG_ID} runs write a report.</p>", status_code=404)
    try:
        check_run_id(run_id)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    ws = _workspace()
    record = read_json(ws.client, ws.bucket, challenger_record_key(run_id))
    if not record:
        return _page("No run report", f"<p>Run {html.escape(run_id)} has not trained a model (it stopped before "
                                       "training, failed, or is still running), so it has no report.</p>",
                     status_code=404)
    version = check_model_version(record.get("model_version"), source=f"{challenger_record_key(run_id)} model_version")
    return RedirectResponse(f"../models/{version}/report.html", status_code=303)


@app.get("/models/{model_version}/{name}", summary="A report file of a model version, read from S3")
def report_file(model_version: str, name: str) -> Response:
    from dkt_core.ingest.layout import model_key
    from dkt_core.storage.objects import get_bytes
    from dkt_core.training.versions import check_model_version

    if name not in REPORT_FILES:
        raise HTTPException(404, f"{name!r} is not a report file; one of {', '.join(REPORT_FILES)}")
    try:
        key = model_key(check_model_version(model_version, source="the URL's model version"), name)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    ws = _workspace()
    got = get_bytes(ws.client, ws.bucket, key, max_bytes=MAX_FILE_BYTES)
    if got is None:
        raise HTTPException(404, f"s3://{ws.bucket}/{key} does not exist (no report for this version)")
    return Response(got[0], media_type=REPORT_FILES[name], headers=_HEADERS)


def report_path(run_id: str) -> str:
    """The report page of a run, relative to Airflow's base URL (``[api] base_url``'s path, if any)."""
    from airflow.configuration import conf

    base = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{base}{URL_PREFIX}/runs/{quote(run_id, safe='')}"


class RunReportLink(BaseOperatorLink):
    """Extra link "Run report" of the dkt_retrain ``report`` task (empty, so hidden, on any other task)."""

    name = "Run report"

    def get_link(self, operator, *, ti_key) -> str:
        if ti_key.dag_id != RETRAIN_DAG_ID or ti_key.task_id != REPORT_TASK_ID:
            return ""
        return report_path(ti_key.run_id)


class DktReportsPlugin(AirflowPlugin):
    name = "dkt_reports"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "dkt run reports"}]
    external_views = [
        {"name": "DKT run reports", "href": f"{URL_PREFIX}/", "destination": "nav", "category": "browse",
         "url_route": "dkt-reports"},
        {"name": "Run report", "href": f"{URL_PREFIX}/runs/{{RUN_ID}}?dag_id={{DAG_ID}}", "destination": "dag_run",
         "url_route": "dkt-run-report"},
    ]
    global_operator_extra_links = [RunReportLink()]
