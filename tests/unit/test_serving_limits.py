"""The API trusts no date and no size: every limit of ``dkt_core.api`` as each route's own input model
(the BentoML service's ``input_spec``, the exact validation its HTTP layer runs) answers it, in-process;
and BentoML's 4xx logging reduced to one line without a traceback.

The same cases run through a real ``bentoml serve`` in tests/integration/test_service_http.py.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from dkt_core.api import (
    MAX_HISTORY_PER_STUDENT,
    MAX_STUDENTS_PER_REQUEST,
    MAX_TARGETS_PER_STUDENT,
    KnowledgeStateRequest,
    PredictRequest,
    StudentRequest,
    checked_timestamps,
)
from dkt_core.data.schema import TIMESTAMP_FORMAT, TIMESTAMP_OUT_OF_RANGE, timestamp_max
from dkt_core.serving import build_frame, patches

REPO = Path(__file__).resolve().parents[2]
ROW = {"assessmentItemID": "A1", "testId": "T", "KnowledgeTag": "1", "Timestamp": "2021-05-01 10:00:00"}


def _student(history_ts=(), target_ts=("2021-05-01 10:00:00",), **extra) -> dict:
    return {"userID": "u", "history": [{**ROW, "Timestamp": t, "answerCode": 1} for t in history_ts],
            "targets": [{**ROW, "Timestamp": t} for t in target_ts], **extra}


def _tomorrow_plus(hours: int) -> str:
    return (timestamp_max() + timedelta(hours=hours)).strftime(TIMESTAMP_FORMAT)


# (body, the text the 400 must carry); the body is what a client posts to /predict and /predict_batched
OUT_OF_RANGE = {
    "year 2300 target": (_student(target_ts=["2300-01-01 00:00:00"]), "'2300-01-01 00:00:00' (targets[0])"),
    "pandas' last day": (_student(target_ts=["2262-04-11 00:00:00"]), "'2262-04-11 00:00:00'"),
    "year 0000 history": (_student(["2021-01-01 00:00:00", "0000-01-01 00:00:00"]), "'0000-01-01 00:00:00' (history[1])"),
    "1969": (_student(["1969-12-31 23:59:59"]), "'1969-12-31 23:59:59' (history[0])"),
    "beyond now + 1 day": (_student(target_ts=[_tomorrow_plus(2)]), TIMESTAMP_OUT_OF_RANGE),
}


@pytest.fixture(scope="module")
def service_module(tmp_path_factory):
    """bento_service/service.py imported (no model needed to read its routes' input models)."""
    import os

    os.environ.setdefault("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml")))
    sys.path.insert(0, str(REPO / "bento_service"))
    sys.modules.pop("service", None)
    try:
        import service

        yield service
    finally:
        sys.path.remove(str(REPO / "bento_service"))
        sys.modules.pop("service", None)


def _reject(service_module, route: str, body: dict) -> str:
    """The route's own input model refuses ``body``; returns the error text the HTTP reply carries."""
    spec = service_module.DKTService.apis[route].input_spec
    with pytest.raises(ValidationError) as info:
        spec.model_validate_json(json.dumps(body))
    return json.dumps(info.value.errors(include_context=False, include_input=False))


@pytest.mark.parametrize("route", ["predict", "predict_batched"])
@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_timestamps_out_of_range_are_refused_naming_the_value(service_module, route, case):
    student, reason = OUT_OF_RANGE[case]
    text = _reject(service_module, route, {"students": [_student(), student]})
    assert TIMESTAMP_OUT_OF_RANGE in text and reason in text
    assert '"loc": ["students", 1]' in text


def test_knowledge_state_history_out_of_range(service_module):
    history = [{**ROW, "answerCode": 0}, {**ROW, "Timestamp": "2300-01-01 00:00:00", "answerCode": 1}]
    text = _reject(service_module, "knowledge_state", {"userID": "u", "history": history})
    assert TIMESTAMP_OUT_OF_RANGE in text and "'2300-01-01 00:00:00' (row 1)" in text
    with pytest.raises(ValidationError, match="2262-04-11 00:00:00"):
        KnowledgeStateRequest(userID="u", history=[{**ROW, "Timestamp": "2262-04-11 00:00:00", "answerCode": 1}])


def test_the_boundaries_themselves_are_accepted():
    now = datetime.now(UTC).replace(tzinfo=None)
    StudentRequest(**_student(["1970-01-01 00:00:00"], [(now + timedelta(hours=23)).strftime(TIMESTAMP_FORMAT)]))
    parsed = checked_timestamps(["1970-01-01 00:00:00", "2021-05-01 10:00:00"])
    assert parsed.dtype == np.dtype("datetime64[s]") and len(checked_timestamps([])) == 0


@pytest.mark.parametrize("route", ["predict", "predict_batched"])
def test_a_target_before_its_history_is_refused(service_module, route):
    late = _student(["2021-05-01 09:00:00", "2021-06-01 00:00:00"], ["2021-06-01 00:00:00", "2021-05-20 00:00:00"])
    text = _reject(service_module, route, {"students": [late]})
    assert "target Timestamp '2021-05-20 00:00:00' is earlier than the history's last row ('2021-06-01 00:00:00')" \
        in text
    # equal to the last row is fine (knowledge-state probes and same-second answers do this)
    StudentRequest(**_student(["2021-06-01 00:00:00"], ["2021-06-01 00:00:00"]))


@pytest.mark.parametrize("route", ["predict", "predict_batched"])
def test_student_count_limits_on_every_predict_route(service_module, route):
    assert "at least 1 item" in _reject(service_module, route, {"students": []})
    too_many = {"students": [_student()] * (MAX_STUDENTS_PER_REQUEST + 1)}
    assert f"at most {MAX_STUDENTS_PER_REQUEST} items" in _reject(service_module, route, too_many)
    spec = service_module.DKTService.apis[route].input_spec
    assert len(spec.model_validate({"students": [_student()] * MAX_STUDENTS_PER_REQUEST}).students) == 256


@pytest.mark.parametrize("route", ["predict", "predict_batched"])
def test_target_and_history_length_limits(service_module, route):
    targets = _student(target_ts=["2021-05-01 10:00:00"] * (MAX_TARGETS_PER_STUDENT + 1))
    assert f"at most {MAX_TARGETS_PER_STUDENT} items" in _reject(service_module, route, {"students": [targets]})
    history = _student(["2021-05-01 09:00:00"] * (MAX_HISTORY_PER_STUDENT + 1))
    assert f"at most {MAX_HISTORY_PER_STUDENT} items" in _reject(service_module, route, {"students": [history]})
    long_ks = {"userID": "u", "history": history["history"]}
    assert f"at most {MAX_HISTORY_PER_STUDENT} items" in _reject(service_module, "knowledge_state", long_ks)
    # exactly at the limit is accepted and truncated to the serving window like any long history
    ok = StudentRequest(**_student(["2021-05-01 09:00:00"] * MAX_HISTORY_PER_STUDENT))
    assert build_frame([ok], window=400).truncated == MAX_HISTORY_PER_STUDENT - 400


def test_truncation_keeps_the_most_recent_rows_by_time():
    stamps = [f"2021-05-01 10:{m:02d}:00" for m in range(10)]
    shuffled = [stamps[i] for i in (3, 9, 0, 7, 1, 8, 2, 6, 4, 5)]
    student = StudentRequest(**_student(shuffled, ["2021-05-01 11:00:00"]))
    rf = build_frame([student], window=4)
    history = rf.frame[rf.frame["answerCode"] >= 0]
    assert rf.truncated == 6
    assert list(history["Timestamp"].dt.strftime(TIMESTAMP_FORMAT)) == stamps[6:]


def test_predict_request_model_enforces_the_same_limits():
    with pytest.raises(ValidationError, match="2300-01-01"):
        PredictRequest(students=[_student(target_ts=["2300-01-01 00:00:00"])])
    with pytest.raises(ValidationError, match="at least 1"):
        PredictRequest(students=[])


# --- quiet 4xx logs ----------------------------------------------------------------------------------
class _Req:
    method = "POST"

    class url:  # noqa: N801 - the shape of starlette's request.url
        path = "/predict"


def test_client_errors_log_one_line_without_traceback(caplog):
    from _bentoml_impl.server import app as server_app

    assert patches.quiet_client_errors() and patches.quiet_client_errors()  # idempotent
    with caplog.at_level(logging.INFO):
        try:
            StudentRequest(**_student(target_ts=["2300-01-01 00:00:00\nforged line"]))
        except ValidationError:
            server_app.log_exception(_Req())
    (record,) = caplog.records
    line = record.getMessage()
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert line.startswith("POST /predict 400: targets.0.Timestamp: String should match pattern")
    assert "\n" not in line and "Traceback" not in caplog.text


def test_long_reasons_are_cut_and_invalid_argument_keeps_its_status(caplog):
    from bentoml.exceptions import InvalidArgument, NotFound

    assert patches.client_error(InvalidArgument("x" * 1000)) == (400, "x" * patches.REASON_MAX_CHARS + "...")
    assert patches.client_error(NotFound("no such thing"))[0] == 404
    assert patches.client_error(RuntimeError("boom")) is None


def test_server_errors_keep_their_traceback(caplog):
    from _bentoml_impl.server import app as server_app

    patches.quiet_client_errors()
    with caplog.at_level(logging.INFO):
        try:
            raise RuntimeError("a real bug")
        except RuntimeError:
            server_app.log_exception(_Req())
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "Traceback" in caplog.text and "a real bug" in caplog.text


UNKNOWN_FIELD = {  # issue 13 item 6: a field a route does not take is refused, naming it, at every level
    "predict": {"students": [_student()], "studnets": []},
    "predict_batched": {"students": [_student()], "extra_flag": True},
    "knowledge_state": {"userID": "u", "history": [{**ROW, "answerCode": 1}], "histroy": []},
    "version": {"verbose": 1},
}


@pytest.mark.parametrize("route", list(UNKNOWN_FIELD))
def test_unknown_top_level_fields_are_refused_on_every_route(service_module, route):
    body = UNKNOWN_FIELD[route]
    (field,) = [k for k in body if k not in ("students", "userID", "history")]
    text = _reject(service_module, route, body)
    assert "extra_forbidden" in text and f'"loc": ["{field}"]' in text, text


@pytest.mark.parametrize(("route", "body", "loc"), [
    ("predict", {"students": [_student(nickname="x")]}, '["students", 0, "nickname"]'),
    ("predict", {"students": [{**_student(), "targets": [{**ROW, "difficulty": 3}]}]},
     '["students", 0, "targets", 0, "difficulty"]'),
    ("knowledge_state", {"userID": "u", "history": [{**ROW, "answerCode": 1, "seconds": 4}]},
     '["history", 0, "seconds"]'),
])
def test_unknown_nested_fields_are_refused(service_module, route, body, loc):
    text = _reject(service_module, route, body)
    assert "extra_forbidden" in text and f'"loc": {loc}' in text, text


def test_openapi_document_has_the_project_info_every_route_and_the_key_scheme(service_module):
    from dkt_core import __version__
    from dkt_core.serving.openapi import TITLE, document

    doc = document(service_module.DKTService.openapi_spec.asdict(), "v123")
    assert doc["info"]["title"] == TITLE and doc["info"]["version"] == __version__
    assert "`v123`" in doc["info"]["description"] and "Authorize" in doc["info"]["description"]
    ops = {(path, method): op for path, item in doc["paths"].items() for method, op in item.items()}
    for route in ("/predict", "/predict_batched", "/knowledge_state", "/version"):
        assert ops[(route, "post")]["description"].strip(), route
    assert ops[("/version", "get")]["description"] and "VersionResponse" in json.dumps(ops[("/version", "get")])
    assert "VersionResponse" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["apiKey"] == {**doc["components"]["securitySchemes"]["apiKey"],
                                                              "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"apiKey": []}] and ops[("/livez", "get")]["security"] == []
