"""Web client settings: ``ClientSettings`` (bank, spool, state, inference URL and timeout, flush cadence, secret
files, session length, rate limits) is declared in dkt_core/settings.py, the one settings surface, with every
variable, its default and its check (README's configuration table lists them). No secret is ever in the
environment: the session key, the answer-key secret and the API key live in files (created 0600 when
absent); S3 credentials come from boto3's chain. The app factory (``create_app``) and ``python -m
dkt_core.webclient`` load it; gunicorn's bind/workers/threads are ``ClientServerSettings``.
"""

from __future__ import annotations

from dkt_core.settings import ClientSettings as ClientSettings  # re-exported
from dkt_core.settings import home as dkt_home  # noqa: F401  (the one DKT_HOME rule)
