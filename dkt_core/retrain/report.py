"""The run report stored with the artifact: models/<model_version>/report.html (+ report.json, PNGs).

Contents: hold-out metrics of challenger and champion with their n and intervals, the paired
difference and the gate's decision, ROC and calibration plots, the data-quality summary of the ingests
since the last training, drift of the rows since the version last trained on (n, intervals, "too few
to judge" below the judge thresholds), and the trend of the serving model's live AUC (n, intervals).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from dkt_core.data.columns import LABEL
from dkt_core.ingest import layout as ingest_layout
from dkt_core.ingest.curated import read_version
from dkt_core.ingest.layout import model_key
from dkt_core.retrain import plots
from dkt_core.retrain.drift import drift_summary, quality_summary
from dkt_core.retrain.gate import METRIC, decide
from dkt_core.retrain.live_eval import live_history, new_rows_mask
from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.objects import get_json, put_bytes, read_parquet, write_json
from dkt_core.storage.workspace import Workspace


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict | list):
        return json.dumps(v, default=str)
    return "" if v is None else str(v)


def _paired(paired: dict[str, Any] | None) -> str:
    if not paired:
        return "<p>No paired comparison (no champion scored on this hold-out).</p>"
    return ("<h3>Paired difference challenger &minus; champion (same hold-out users)</h3>" + _table({
        "difference (auc_all)": paired.get("diff"), "95 % interval": paired.get("ci95"),
        "users": paired.get("n_users"), "rows": paired.get("n_rows"), "bootstrap resamples": paired.get("n_boot")}))


def _live_row(e: dict[str, Any]) -> str:
    judgement = e.get("judgement") or ("too few to judge" if e.get("judged") is False else "")
    cells = [e.get("data_version"), e.get("auc"), e.get("auc_ci95"), e.get("n_scored"), e.get("n_users"), judgement]
    return "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>"


def render_html(doc: dict[str, Any]) -> str:
    ev, gate = doc["evaluation"], doc["gate"]
    metrics = ["auc_all", "auc_all_ci95", "auc_last", "acc_all", "logloss_all", "n_users", "n_rows"]
    rows = "".join(
        f"<tr><th>{m}</th><td>{html.escape(_fmt((ev['challenger'] or {}).get(m)))}</td>"
        f"<td>{html.escape(_fmt((ev['champion'] or {}).get(m)))}</td></tr>" for m in metrics)
    drift = doc["drift"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>dkt run {html.escape(doc['run_id'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse;margin:.5em 0}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}}img{{max-width:48%}}</style></head><body>
<h1>Retraining run {html.escape(doc['run_id'])}</h1>
<p>challenger <b>{html.escape(doc['model_version'])}</b> on data {html.escape(doc['data_version'])}
(parent {html.escape(str(doc['parent_version']))}); created {html.escape(doc['created_at'])}</p>
<h2>Gate: {"PROMOTE" if gate['promote'] else "KEEP CHAMPION"}</h2><p>{html.escape(gate['reason'])}</p>
<p>Rule: promote if challenger {html.escape(str(gate.get('metric')))} &ge; champion &minus; tolerance
({html.escape(_fmt(gate.get('tolerance')))}) on the same hold-out users.</p>
<h2>Hold-out metrics (same users for both)</h2>
<table><tr><th></th><th>challenger {html.escape(doc['model_version'])}</th>
<th>champion {html.escape(str(ev['champion_version']))}</th></tr>{rows}</table>
{_paired(ev.get('paired'))}
<img src="roc.png" alt="ROC"> <img src="calibration.png" alt="calibration">
<h2>Live AUC of the serving model on the rows since the last training</h2>
<table><tr><th>data version</th><th>AUC</th><th>95 % interval</th><th>rows</th><th>users</th><th>judgement</th></tr>
{"".join(_live_row(e) for e in doc['live_trend'])}</table>
<img src="live_auc.png" alt="live AUC trend">
<h2>Data quality of the ingests since the last training</h2>{_table({k: v for k, v in doc['quality'].items() if k != 'sources'})}
{_table({s['key']: s for s in doc['quality']['sources']})}
<h2>Drift: new rows vs the version last trained on ({html.escape(str(drift.get('verdict', drift.get('note', ''))))})</h2>
<p>n = {drift.get('n_rows')} new rows from {drift.get('n_users')} users; {html.escape(str(drift.get('judgement', '')))};
intervals: user bootstrap, {drift.get('n_boot')} resamples</p>
<table><tr><th></th><th>value</th><th>95 % interval (PSI: range of chance alone, same number of users)</th></tr>{"".join(
        f"<tr><th>PSI {html.escape(k)}</th><td>{_fmt(v)}</td><td>{_fmt((drift.get('psi_noise95') or {}).get(k))}</td></tr>"
        for k, v in drift.get('psi', {}).items())}
<tr><th>accuracy shift</th><td>{_fmt(drift.get('accuracy_shift'))}</td><td>{_fmt(drift.get('accuracy_shift_ci95'))}</td></tr>
<tr><th>new users</th><td>{_fmt(drift.get('new_users'))}</td><td></td></tr></table>
<table><tr><th></th><th>previous version</th><th>new rows</th></tr>{"".join(
        f"<tr><th>{k}</th><td>{_fmt((drift['parent'] or {}).get(k))}</td><td>{_fmt(drift['new_rows'].get(k))}</td></tr>"
        for k in drift['new_rows'])}</table>
</body></html>"""


def ingest_sources(client, bucket: str, data_version: str, since: str | None) -> list[dict[str, Any]]:
    """Sources of every ingest after ``since`` up to ``data_version`` (several small ones may make up one
    batch), following the committed lineage (metadata parent_version links), not the version numbers:
    a number claimed by an attempt that never committed is not part of it."""
    sources: list[dict[str, Any]] = []
    link: str | None = data_version
    while link and link != since:
        meta = get_json(client, bucket, ingest_layout.metadata_key(ingest_layout.parse_version(link)))
        if meta is None:
            break
        sources = (meta[0].get("sources") or []) + sources
        up = meta[0].get("parent_version")
        # strictly decreasing: a malformed link cannot loop
        link = up if up and ingest_layout.parse_version(up) < ingest_layout.parse_version(link) else None
    return sources


def build_report(run_id: str, data_version: str, parent_version: str | None, evaluation: dict[str, Any],
                 *, tolerance: float, force: bool = False, new_rows_uri: str | None = None,
                 settings: RetrainSettings, ws: Workspace) -> dict[str, Any]:
    """Write the report files next to the artifact; returns their URIs and the gate's decision (the run's
    one decision: the gate task follows it). ``new_rows_uri``: the minimum batch's new-rows mask."""
    client, bucket = ws.client, ws.bucket
    version = evaluation["model_version"]
    current = read_version(client, bucket, ingest_layout.parse_version(data_version))
    parent = read_version(client, bucket, ingest_layout.parse_version(parent_version)) if parent_version else None
    if new_rows_uri:
        from dkt_core.retrain.batch import read_new_rows

        new_rows = current[read_new_rows(client, new_rows_uri, current)]
    else:
        new_rows = current[new_rows_mask(current, parent)]
    sources = ingest_sources(client, bucket, data_version, parent_version)

    preds = read_parquet(client, evaluation["predictions_uri"])
    preds = preds[preds[LABEL] >= 0]
    y = preds[LABEL].to_numpy().astype(float)
    curves = {f"challenger {version}": preds["challenger"].to_numpy()}
    if "champion" in preds:
        curves[f"champion {evaluation['champion_version']}"] = preds["champion"].to_numpy()
    ch, cp = evaluation["challenger"] or {}, evaluation["champion"] or {}
    gate = decide(ch.get(METRIC), cp.get(METRIC), tolerance=tolerance, force=force,
                  champion_version=evaluation["champion_version"], paired=evaluation.get("paired")).to_dict()
    doc = {
        "run_id": run_id, "model_version": version, "data_version": data_version,
        "parent_version": parent_version, "created_at": datetime.now(UTC).isoformat(),
        "evaluation": evaluation, "gate": gate,
        "quality": quality_summary({"sources": sources}),
        "drift": drift_summary(parent, new_rows, n_boot=settings.bootstrap, seed=settings.bootstrap_seed,
                               settings=settings),
        "live_trend": live_history(client, bucket),
    }
    files = {
        "roc.png": (plots.roc_png(y, curves), "image/png"),
        "calibration.png": (plots.calibration_png(y, curves), "image/png"),
        "live_auc.png": (plots.live_auc_png(doc["live_trend"]), "image/png"),
        "report.html": (render_html(doc).encode(), "text/html"),
    }
    for name, (body, ctype) in files.items():
        put_bytes(client, bucket, model_key(version, name), body, content_type=ctype)
    json_uri = write_json(client, bucket, model_key(version, "report.json"), doc)
    return {"report_uri": f"s3://{bucket}/{model_key(version, 'report.html')}", "report_json_uri": json_uri,
            "gate": gate, "drift_verdict": doc["drift"].get("verdict"),
            "drift_n": {"rows": doc["drift"].get("n_rows"), "users": doc["drift"].get("n_users")}, "quality": {
                k: v for k, v in doc["quality"].items() if k != "sources"}}
