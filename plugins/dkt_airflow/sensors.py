"""The data trigger's sensor: true when a raw object is not in the ingestion manifest and no retrain run is
already queued or running.

A ``BaseSensorOperator`` subclass rather than ``@task.sensor``: the decorator imports the standard
provider's ``PythonSensor`` module, which imports a deprecated Airflow alias, so every sensor task process
(one per poke in reschedule mode) logged a deprecation warning before doing anything.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue


class PendingObjectsSensor(BaseSensorOperator):
    """Done when ``prefix`` holds objects the manifest has not consumed (``dkt_core.ingest.pending_objects``);
    its XCom is ``{"pending": n, "keys": [first 10 keys]}``. Waits while ``retrain_dag_id`` has a queued or
    running run: that run will ingest what is pending."""

    template_fields = ("prefix",)

    def __init__(self, *, prefix: str, retrain_dag_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix
        self.retrain_dag_id = retrain_dag_id

    def poke(self, context: Any) -> PokeReturnValue:
        if context["ti"].get_dr_count(dag_id=self.retrain_dag_id, states=["queued", "running"]):
            return PokeReturnValue(is_done=False)
        from dkt_airflow.s3env import workspace
        from dkt_core.ingest import load_state, pending_objects

        ws = workspace()
        pending = pending_objects(ws.client, ws.bucket, self.prefix, load_state(ws.client, ws.bucket))
        return PokeReturnValue(is_done=bool(pending),
                               xcom_value={"pending": len(pending), "keys": [o["key"] for o in pending[:10]]})
