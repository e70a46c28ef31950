"""The inference service as a real `bentoml serve` HTTP server on loopback: predictions, parity with
`dkt predict`, 4xx on bad input (never 500; out-of-range dates, targets before their history, every size limit
on every route) logged as one line without a traceback, /version, /livez, /readyz, /metrics, and readiness of a
server whose model cannot load; API keys (401 without, with an unknown or a revoked key, 200 with a valid one,
open health checks, per-key counts in /metrics, no start without a key file)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import requests

from devtools.services import package_model, start_bentoml, stop
from dkt_core.api import MAX_HISTORY_PER_STUDENT, MAX_STUDENTS_PER_REQUEST, MAX_TARGETS_PER_STUDENT
from dkt_core.data.validate import load_interactions, to_seed_csv

pytestmark = pytest.mark.integration
FMT = "%Y-%m-%d %H:%M:%S"


def _row(r) -> dict:
    return {"assessmentItemID": r.assessmentItemID, "testId": r.testId, "KnowledgeTag": r.KnowledgeTag,
            "Timestamp": r.Timestamp.strftime(FMT)}


def _students(data, n_users: int = 3, n_hist: int = 40, n_targets: int = 2):
    log = load_interactions(data)
    counts = log["userID"].value_counts()
    users = counts[counts >= n_hist + n_targets].index[:n_users]
    body, rows = [], []
    for u in users:
        g = log[log["userID"] == u].head(n_hist + n_targets)
        hist, tg = g.iloc[:n_hist], g.iloc[n_hist:]
        body.append({"userID": u, "history": [{**_row(r), "answerCode": int(r.answerCode)} for r in hist.itertuples()],
                     "targets": [_row(r) for r in tg.itertuples()]})
        rows.append(pd.concat([hist, tg.assign(answerCode=-1)]))
    return body, pd.concat(rows)


def test_predict_equals_dkt_predict(inference_server, tmp_path):
    students, frame = _students(inference_server.data)
    r = inference_server.api.post(inference_server.url + "/predict", json={"students": students}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == inference_server.tag.split(":")[1]
    served = [p for s in body["results"] for p in s["probabilities"]]
    assert [s["userID"] for s in body["results"]] == [s["userID"] for s in students]

    to_seed_csv(frame.assign(answerCode=frame["answerCode"].astype(int)), tmp_path / "rows.csv")
    dkt = shutil.which("dkt", path=str(sys.executable.rsplit("/", 1)[0])) or "dkt"
    subprocess.run([dkt, "predict", "--model", str(inference_server.artifact), "--data", str(tmp_path / "rows.csv"),
                    "--out", str(tmp_path / "pred.csv")], check=True, capture_output=True)
    expected = pd.read_csv(tmp_path / "pred.csv")["prediction"].to_numpy()
    np.testing.assert_allclose(served, expected, atol=1e-6)
    # deterministic, and the batched endpoint gives the same numbers
    again = inference_server.api.post(inference_server.url + "/predict", json={"students": students}, timeout=30).json()
    assert again == body
    batched = inference_server.api.post(inference_server.url + "/predict_batched", json={"students": students}, timeout=30)
    assert batched.status_code == 200, batched.text
    assert [p for s in batched.json() for p in s["probabilities"]] == served


def test_knowledge_state_and_version(inference_server):
    students, _ = _students(inference_server.data, n_users=1)
    r = inference_server.api.post(inference_server.url + "/knowledge_state",
                      json={"userID": "u1", "history": students[0]["history"]}, timeout=30)
    assert r.status_code == 200, r.text
    tags = r.json()["tags"]
    assert set(tags) == {h["KnowledgeTag"] for h in students[0]["history"]}
    # issue 13 item 6: attempts per tag, and a tag the tiny model never saw is flagged
    history = students[0]["history"]
    unseen = {**history[-1], "KnowledgeTag": "tag-the-model-never-saw", "answerCode": 0}
    r = inference_server.api.post(inference_server.url + "/knowledge_state",
                                  json={"userID": "u1", "history": [*history, unseen, unseen]}, timeout=30)
    assert r.status_code == 200, r.text
    states = {t["tag"]: t for t in r.json()["tag_states"]}
    assert set(states) == set(r.json()["tags"])
    for tag in {h["KnowledgeTag"] for h in history}:
        rows = [h for h in history if h["KnowledgeTag"] == tag]
        assert states[tag]["attempts"] == len(rows) and states[tag]["correct"] == sum(h["answerCode"] for h in rows)
        assert states[tag]["seen_in_training"] is True and states[tag]["mastery"] == r.json()["tags"][tag]
    assert states["tag-the-model-never-saw"] == {**states["tag-the-model-never-saw"], "attempts": 2, "correct": 0,
                                                 "seen_in_training": False}
    assert r.json()["unseen_tags"] == ["tag-the-model-never-saw"]
    v = inference_server.api.get(inference_server.url + "/version", timeout=5)
    assert v.status_code == 200
    assert v.json()["model_version"] == inference_server.tag.split(":")[1]
    assert v.json()["models"] == ["lgbm"] and v.json()["data_version"] and v.json()["trained_at"]
    assert inference_server.api.post(inference_server.url + "/version", timeout=5).json() == v.json()
    assert inference_server.api.get(inference_server.url + "/livez", timeout=5).status_code == 200
    assert inference_server.api.get(inference_server.url + "/readyz", timeout=5).status_code == 200
    metrics = inference_server.api.get(inference_server.url + "/metrics", timeout=5)
    assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text


def test_keepalive_connections_are_recycled(inference_server):
    """Every 25th request of a connection is answered with Connection: close, so connections spread over
    the workers that share the listening socket (requests' Session reconnects by itself)."""
    body = {"students": [{"userID": "u", "history": [], "targets": [
        {"assessmentItemID": "A1", "testId": "T", "KnowledgeTag": "1", "Timestamp": "2021-05-01 10:00:00"}]}]}
    with inference_server.api as session:
        closes = [session.post(inference_server.url + "/predict", json=body, timeout=10).headers.get("connection")
                  for _ in range(50)]
    assert [i + 1 for i, c in enumerate(closes) if c == "close"] == [25, 50]


def test_unknown_ids_are_not_errors(inference_server):
    row = {"assessmentItemID": "never-seen-item", "testId": "no-test", "KnowledgeTag": "no-tag",
           "Timestamp": "2021-05-01 10:00:00"}
    r = inference_server.api.post(inference_server.url + "/predict", timeout=10, json={"students": [
        {"userID": "new", "history": [{**row, "answerCode": 0}], "targets": [row]}]})
    assert r.status_code == 200, r.text
    assert 0 < r.json()["results"][0]["probabilities"][0] < 1


def _bad_requests():
    ok_row = {"assessmentItemID": "A1", "testId": "T", "KnowledgeTag": "1", "Timestamp": "2021-05-01 10:00:00"}
    student = {"userID": "u", "history": [], "targets": [ok_row]}
    return {
        "not json": ("/predict", b"{nope", "json_invalid"),
        "missing students": ("/predict", {}, "students"),
        "empty batch": ("/predict", {"students": []}, "at least 1"),
        "too many students": ("/predict", {"students": [student] * (MAX_STUDENTS_PER_REQUEST + 1)}, "at most"),
        "missing targets": ("/predict", {"students": [{"userID": "u"}]}, "targets"),
        "bad timestamp": ("/predict", {"students": [{**student, "targets": [{**ok_row, "Timestamp": "yesterday"}]}]},
                          "should match pattern"),
        "impossible date": ("/predict", {"students": [{**student, "history": [
            {**ok_row, "answerCode": 1}, {**ok_row, "Timestamp": "2021-02-30 10:00:00", "answerCode": 0}]}]},
                            "2021-02-30 10:00:00"),
        "impossible date, batched": ("/predict_batched", {"students": [{**student, "targets": [
            {**ok_row, "Timestamp": "2021-04-31 10:00:00"}]}]}, "real date"),
        "answerCode 2": ("/predict", {"students": [{**student, "history": [{**ok_row, "answerCode": 2}]}]},
                         "less than or equal"),
        "wrong type": ("/predict", {"students": [{**student, "history": "abc"}]}, "list"),
        "empty history": ("/knowledge_state", {"userID": "u", "history": []}, "at least 1"),
        # issue 11: no date and no size is trusted, on every route
        "year 2300 (was a 500 or a wrap)": ("/predict", {"students": [{**student, "targets": [
            {**ok_row, "Timestamp": "2300-01-01 00:00:00"}]}]}, "Timestamp out of range: '2300-01-01 00:00:00'"),
        "2262-04-11, batched": ("/predict_batched", {"students": [{**student, "targets": [
            {**ok_row, "Timestamp": "2262-04-11 00:00:00"}]}]}, "Timestamp out of range: '2262-04-11 00:00:00'"),
        "year 0000 history": ("/predict", {"students": [{**student, "history": [
            {**ok_row, "Timestamp": "0000-01-01 00:00:00", "answerCode": 1}]}]},
                              "Timestamp out of range: '0000-01-01 00:00:00' (history[0])"),
        "1969 history": ("/knowledge_state", {"userID": "u", "history": [
            {**ok_row, "Timestamp": "1969-12-31 23:59:59", "answerCode": 1}]}, "Timestamp out of range: '1969-12-31"),
        "target before history": ("/predict", {"students": [{**student, "history": [
            {**ok_row, "Timestamp": "2021-06-01 00:00:00", "answerCode": 1}]}]},
                                  "target Timestamp '2021-05-01 10:00:00' is earlier than the history's last row"),
        "target before history, batched": ("/predict_batched", {"students": [{**student, "history": [
            {**ok_row, "Timestamp": "2021-06-01 00:00:00", "answerCode": 1}]}]}, "is earlier than the history"),
        "empty batch, batched": ("/predict_batched", {"students": []}, "at least 1"),
        "too many students, batched": ("/predict_batched", {"students": [student] * (MAX_STUDENTS_PER_REQUEST + 1)},
                                       f"at most {MAX_STUDENTS_PER_REQUEST} items"),
        "too many targets": ("/predict", {"students": [{**student, "targets": [ok_row] * (MAX_TARGETS_PER_STUDENT + 1)}]},
                             f"at most {MAX_TARGETS_PER_STUDENT} items"),
        "history too long": ("/predict_batched", {"students": [{**student, "history": [
            {**ok_row, "Timestamp": "2021-05-01 09:00:00", "answerCode": 1}] * (MAX_HISTORY_PER_STUDENT + 1)}]},
                             f"at most {MAX_HISTORY_PER_STUDENT} items"),
        "history too long, knowledge state": ("/knowledge_state", {"userID": "u", "history": [
            {**ok_row, "answerCode": 1}] * (MAX_HISTORY_PER_STUDENT + 1)}, f"at most {MAX_HISTORY_PER_STUDENT} items"),
        # issue 13 item 6: a field a route does not take is refused, naming it, on every route and level
        "unknown field, predict": ("/predict", {"students": [student], "studnets": []}, "studnets"),
        "unknown field, batched": ("/predict_batched", {"students": [student], "extra_flag": 1}, "extra_flag"),
        "unknown field, knowledge state": ("/knowledge_state", {"userID": "u", "history": [
            {**ok_row, "answerCode": 1}], "histroy": []}, "histroy"),
        "unknown field, version": ("/version", {"verbose": 1}, "verbose"),
        "unknown student field": ("/predict", {"students": [{**student, "nickname": "x"}]}, "nickname"),
        "unknown target field": ("/predict_batched", {"students": [{**student, "targets": [
            {**ok_row, "difficulty": 3}]}]}, "difficulty"),
        "unknown history field": ("/knowledge_state", {"userID": "u", "history": [
            {**ok_row, "answerCode": 1, "seconds": 4}]}, "seconds"),
    }


@pytest.mark.parametrize("case", list(_bad_requests()))
def test_bad_input_is_4xx_with_a_reason(inference_server, case):
    path, payload, reason = _bad_requests()[case]
    kwargs = {"data": payload, "headers": {"Content-Type": "application/json"}} if isinstance(payload, bytes) \
        else {"json": payload}
    r = inference_server.api.post(inference_server.url + path, timeout=10, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert reason in r.text
    if case.startswith("unknown"):
        assert r.status_code == 400 and "Extra inputs are not permitted" in r.text, r.text


def test_get_version_refuses_unknown_query_parameters(inference_server):
    r = inference_server.api.get(inference_server.url + "/version", params={"verbose": "1"}, timeout=5)
    assert r.status_code == 400 and "verbose" in r.json()["error"], r.text


def test_openapi_document_and_swagger_ui(inference_server):
    """issue 13 item 6: Swagger UI at / and its document at /docs.json load without a key; the document has
    the project's title and version, a description of every route (GET /version included) and the Bearer
    scheme Swagger UI's Authorize button uses."""
    from dkt_core import __version__

    ui = requests.get(inference_server.url + "/", timeout=10)
    assert ui.status_code == 200 and "swagger" in ui.text.lower()
    r = requests.get(inference_server.url + "/docs.json", timeout=10)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["info"]["title"] == "DKT inference API (dkt-platform)" and doc["info"]["version"] == __version__
    assert inference_server.tag.split(":")[1] in doc["info"]["description"]
    for path, method in [("/predict", "post"), ("/predict_batched", "post"), ("/knowledge_state", "post"),
                         ("/version", "post"), ("/version", "get")]:
        assert doc["paths"][path][method]["description"].strip(), (path, method)
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["security"] == [{"apiKey": []}]
    # the document is open, the API it describes is not
    assert requests.post(inference_server.url + "/predict", json=BODY, timeout=10).status_code == 401


def test_a_400_is_one_log_line_without_traceback(inference_server):
    """BentoML logged every 4xx at ERROR with a traceback; now one WARNING line with method, path, status
    and reason (next to the access line every request gets)."""
    marker = "2299-12-31 23:59:58"  # a value no other test sends, to find this request's lines
    before = inference_server.log.stat().st_size
    r = inference_server.api.post(inference_server.url + "/predict", timeout=10, json={"students": [{"userID": "u", "targets": [
        {"assessmentItemID": "A1", "testId": "T", "KnowledgeTag": "1", "Timestamp": marker}]}]})
    assert r.status_code == 400 and marker in r.text
    ok = inference_server.api.post(inference_server.url + "/predict", timeout=10, json={"students": [{"userID": "u", "targets": [
        {"assessmentItemID": "A1", "testId": "T", "KnowledgeTag": "1", "Timestamp": "2021-05-01 10:00:00"}]}]})
    assert ok.status_code == 200  # its access line comes after the 400's lines: they are written by now
    deadline = time.monotonic() + 10
    while "status=200" not in (text := inference_server.log.read_bytes()[before:].decode()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Traceback" not in text and "ValidationError" not in text
    (line,) = [ln for ln in text.splitlines() if marker in ln]
    assert "[WARNING]" in line and "POST /predict 400: students.0: Value error, Timestamp out of range" in line


def test_not_ready_while_the_model_cannot_load(trained_tiny, tmp_path):
    """A model whose weights are missing: the server lives, /readyz stays 503, predictions say why."""
    artifact, _ = trained_tiny
    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    for f in (broken / "models" / "lgbm").glob("model.txt"):
        f.unlink()
    home = tmp_path / "bentoml"
    tag = package_model(broken, home)
    served = start_bentoml(home, tag, tmp_path / "serve.log", wait_ready=False)
    proc, url, api = served.proc, served.url, requests.Session()
    api.headers.update(served.headers)
    try:
        assert requests.get(url + "/livez", timeout=5).status_code == 200
        assert requests.get(url + "/readyz", timeout=5).status_code == 503
        body = {"students": [{"userID": "u", "targets": [
            {"assessmentItemID": "A1", "testId": "T", "KnowledgeTag": "1", "Timestamp": "2021-05-01 10:00:00"}]}]}
        # the loader runs in the background: ask until it has given up (every answer is a 503 meanwhile)
        for _ in range(600):
            r = api.post(url + "/predict", timeout=10, json=body)
            assert r.status_code == 503
            if "failed to load" in r.text:
                break
            time.sleep(0.1)
        # the reply says why: the load failed (not "still loading"), naming the missing LightGBM weights
        assert "model failed to load" in r.text and "model.txt" in r.text, r.text
        v = api.get(url + "/version", timeout=5)
        assert v.status_code == 503 and "model failed to load" in v.text, v.text
        assert requests.get(url + "/readyz", timeout=5).status_code == 503
    finally:
        stop(proc)


def test_the_web_clients_inference_client_works_against_the_service(inference_server_url, inference_server):
    """Contract with dkt_core/webclient: its InferenceClient's requests and reply parsing."""
    from dkt_core.webclient.inference import InferenceClient

    students, _ = _students(inference_server.data, n_users=1)
    history = [{"userID": "u", **h} for h in students[0]["history"]]
    client = InferenceClient(inference_server_url, timeout_s=10, api_key=inference_server.key)
    nxt = client.predict_next("u", history, students[0]["targets"][0])
    assert nxt.error is None and 0 < nxt.value < 1 and nxt.model_version == inference_server.tag.split(":")[1]
    ks = client.knowledge_state("u", history)
    assert ks.error is None and set(ks.value) == {h["KnowledgeTag"] for h in history}


BODY = {"students": [{"userID": "u", "history": [], "targets": [
    {"assessmentItemID": "A1", "testId": "T", "KnowledgeTag": "1", "Timestamp": "2021-05-01 10:00:00"}]}]}


@pytest.mark.parametrize("path", ["/predict", "/predict_batched", "/knowledge_state", "/version", "/metrics"])
def test_api_routes_need_a_valid_key(inference_server, path):
    """issue 12: without a key, with an unknown key and with a revoked key 401 (JSON reason, WWW-Authenticate);
    with a valid key 200."""
    url = inference_server.url + path

    def call(headers: dict) -> requests.Response:
        if path in ("/version", "/metrics"):
            return requests.get(url, headers=headers, timeout=10)
        body = {"userID": "u", "history": [{**BODY["students"][0]["targets"][0], "answerCode": 1}]} \
            if path == "/knowledge_state" else BODY
        return requests.post(url, json=body, headers=headers, timeout=10)

    cases = {"missing API key": {}, "unknown API key": {"Authorization": "Bearer dkt_" + "x" * 43},
             "API key revoked at": {"Authorization": f"Bearer {inference_server.revoked_key}"},
             "malformed Authorization header": {"Authorization": f"Token {inference_server.key}"}}
    for reason, headers in cases.items():
        r = call(headers)
        assert r.status_code == 401, (reason, r.status_code, r.text)
        assert r.json()["error"].startswith(reason), r.text
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    ok = call({"Authorization": f"Bearer {inference_server.key}"})
    assert ok.status_code == 200, ok.text


def test_health_checks_stay_open_and_metrics_count_per_key_name(inference_server):
    assert requests.get(inference_server.url + "/livez", timeout=5).status_code == 200
    assert requests.get(inference_server.url + "/readyz", timeout=5).status_code == 200
    for _ in range(3):
        assert inference_server.api.post(inference_server.url + "/predict", json=BODY, timeout=10).status_code == 200
    requests.post(inference_server.url + "/predict", json=BODY, timeout=10,
                  headers={"Authorization": f"Bearer {inference_server.revoked_key}"})
    text = inference_server.api.get(inference_server.url + "/metrics", timeout=5).text
    counts = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^dkt_api_requests_total\{(.*)\} (\S+)$', text, re.M)}
    ours = [v for labels, v in counts.items()
            if 'key_name="devtools"' in labels and 'route="/predict"' in labels and 'status="200"' in labels]
    assert ours and ours[0] >= 3, text[-3000:]
    # issue 13 item 6: every count carries the served model's version
    version = inference_server.tag.split(":")[1]
    assert counts and all(f'model_version="{version}"' in labels for labels in counts), counts
    assert any('key_name="revoked"' in labels and 'status="401"' in labels for labels in counts), counts
    assert inference_server.key not in text and inference_server.revoked_key not in text


def test_no_key_file_no_start(trained_tiny, tmp_path):
    """Auth on (the default) and no key-hash file: the service refuses to start and says what to do."""
    home = tmp_path / "bentoml"
    tag = package_model(trained_tiny[0], home)
    with pytest.raises(RuntimeError, match="does not exist: create a key with `make api-key NAME=...`"):
        start_bentoml(home, tag, tmp_path / "serve.log", ready_timeout=60,
                      env={"DKT_API_KEYS_FILE": str(tmp_path / "absent.json")})
