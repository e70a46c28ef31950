"""gunicorn entry point: ``gunicorn -c python:dkt_core.webclient.gunicorn_conf dkt_core.webclient.wsgi:app``.

Settings come from the environment (see ``settings``); the app is built in each worker after the fork,
so each worker has its own spool writer and flush thread. The client's own log lines (refused answers,
spool cut-backs, flush failures) go to gunicorn's error log, formatted like gunicorn's lines.
"""

import logging

from dkt_core.webclient.app import create_app

_gunicorn = logging.getLogger("gunicorn.error")
if _gunicorn.handlers:
    _ours = logging.getLogger("dkt_core")
    _ours.handlers = list(_gunicorn.handlers)
    _ours.setLevel(logging.INFO)
    _ours.propagate = False

app = create_app()
