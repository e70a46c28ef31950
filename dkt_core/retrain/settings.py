"""Settings of the retraining steps: ``RetrainSettings`` is declared in dkt_core/settings.py (the one settings
surface); the edges (DAG tasks, CLI) load it and pass it down."""

from __future__ import annotations

from dkt_core.settings import DEPLOY_MODE, RetrainSettings

DEPLOY_MODES = DEPLOY_MODE.choices

__all__ = ["DEPLOY_MODES", "RetrainSettings"]
