"""The DAG run's note says why a dkt run ended as it did (e.g. "not retraining: 9 new rows ...").

Airflow 3 gives tasks no way to write their run's note: the Task SDK's execution API has no note
endpoint and tasks have no database access. So a task that wants to explain the run pushes the text as
the XCom ``run_note`` and this listener, which runs where the DagRun's state is decided (scheduler, or
the ``dag.test()`` process) with the DagRun's database session, copies the newest ``run_note`` of the
run into ``dag_run.note`` when the run finishes (success or failure). An operator's own note is kept:
the listener only writes when the run has no note or still holds one it wrote itself.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from dkt_airflow.settings import REPORTS_URL_PREFIX as URL_PREFIX

log = logging.getLogger(__name__)

NOTE_KEY = "run_note"  # XCom key a task pushes its explanation under
DAG_PREFIX = "dkt_"  # only dkt DAGs are touched
_MARK = "[dkt] "  # prefix of notes this listener wrote (an operator's note has none: kept)
MAX_NOTE = 1000  # the note column holds 1000 characters


def newest_note(dag_run, session) -> str | None:
    """The newest ``run_note`` XCom value of ``dag_run`` (None when no task pushed one)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = (select(XComModel).where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
                                     XComModel.key == NOTE_KEY).order_by(XComModel.timestamp.desc()).limit(1))
    row = session.scalars(query).first()
    value = None if row is None else XComModel.deserialize_value(row)
    return None if value is None else str(value)


def apply_note(dag_run) -> str | None:
    """Copy the run's newest ``run_note`` into its note; returns the note written (None: nothing to do)."""
    from airflow.utils.session import create_session
    from sqlalchemy.orm import Session

    if not str(dag_run.dag_id).startswith(DAG_PREFIX):
        return None
    own = Session.object_session(dag_run)
    if own is None:
        with create_session() as session:
            return _apply(session.merge(dag_run), session)
    return _apply(dag_run, own)


def _apply(dag_run, session) -> str | None:
    text = newest_note(dag_run, session)
    current = dag_run.note
    if text is None or (current and not current.startswith(_MARK)):
        return None
    note = (_MARK + text)[:MAX_NOTE]
    dag_run.note = note
    session.flush()
    return note


def gate_note(decision: dict[str, Any], reported: dict[str, Any]) -> str:
    """The run's note after the gate: decision, reason, the AUCs compared, the drift verdict with its n and
    where the report is (Airflow renders notes as Markdown)."""
    version = reported.get("report_uri", "").rstrip("/").split("/")[-2:-1] or ["?"]
    drift_n = reported.get("drift_n") or {}
    # the reason last: the note column holds 1000 characters, a long reason is what gets cut
    return (f"{'PROMOTE' if decision.get('promote') else 'CHAMPION KEPT'}: challenger AUC "
            f"{_num(decision.get('challenger'))}, champion AUC {_num(decision.get('champion'))} (tolerance "
            f"{decision.get('tolerance')}); drift {reported.get('drift_verdict')} (n={drift_n.get('rows')} rows, "
            f"{drift_n.get('users')} users); report [{version[0]}]({URL_PREFIX}/models/{version[0]}/report.html). "
            f"{decision.get('reason')}")


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


@hookimpl
def on_dag_run_success(dag_run, msg: str) -> None:
    _safely(dag_run)


@hookimpl
def on_dag_run_failed(dag_run, msg: str) -> None:
    _safely(dag_run)


def _safely(dag_run) -> None:
    try:
        note = apply_note(dag_run)
        if note:
            log.info("run %s note: %s", dag_run.run_id, note)
    except Exception:  # a note must never break the scheduler's state handling
        log.exception("could not set the note of %s %s", dag_run.dag_id, dag_run.run_id)


class DktRunNotesPlugin(AirflowPlugin):
    name = "dkt_run_notes"
    listeners = [sys.modules[__name__]]  # this module's hookimpls
