"""The workspace a retraining step runs in, when its caller did not hand one over.

The DAG builds one ``Workspace`` per task from the Airflow connection and passes it to the step; a direct
call (CLI, tests, a script) may instead give S3 settings or nothing, and gets one built from them or from
the environment here, once per call.
"""

from __future__ import annotations

from dkt_core.retrain.settings import RetrainSettings
from dkt_core.storage.s3 import S3Settings, s3_client
from dkt_core.storage.workspace import Workspace


def task_workspace(ws: Workspace | None = None, *, s3: S3Settings | None = None,
                   settings: RetrainSettings | None = None) -> Workspace:
    """``ws`` itself, else a workspace from ``s3`` (default: the environment) and ``settings.cache_dir``."""
    if ws is not None:
        return ws
    s3 = s3 or S3Settings.from_env()
    return Workspace(s3_client(s3), s3.bucket, (settings or RetrainSettings.from_env()).cache_dir)
