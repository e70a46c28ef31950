"""gunicorn entry point: ``gunicorn -c python:dkt_core.webclient.gunicorn_conf dkt_core.webclient.wsgi:app``.

Settings come from the environment (see ``settings``); the app is built in each worker after the fork,
so each worker has its own spool writer and flush thread.
"""

from dkt_core.webclient.app import create_app

app = create_app()
