"""gunicorn settings of the student web client (loopback by default; never Flask's debug server).

``DKT_CLIENT_HOST`` (127.0.0.1), ``DKT_CLIENT_PORT`` (8088), ``DKT_CLIENT_WORKERS`` (2),
``DKT_CLIENT_THREADS`` (4: a page may wait up to the inference timeout): ``ClientServerSettings`` of
dkt_core/settings.py.
"""

from dkt_core.settings import ClientServerSettings, load

_server = load(ClientServerSettings)  # the edge: a bad value stops gunicorn naming the variable
bind = f"{_server.host}:{_server.port}"
workers = _server.workers
threads = _server.threads
worker_class = "gthread"
timeout = 30
# No idle keep-alive: a browser that reuses a socket gunicorn is closing at that moment gets an error page
# for its POST (seen as a flaky answer submission); a new connection per page costs nothing here.
keepalive = 0
graceful_timeout = 20  # time for the exit flush of each worker's spool batch
accesslog = "-"
# gunicorn's default line plus the reason of an error reply (app.REASON_HEADER; "-" otherwise): a 4xx is
# one line with method, path, status and reason, never a traceback
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" reason="%({x-error-reason}o)s"'
preload_app = False  # each worker builds its own app: own spool file, own flush thread
# gunicorn >= 25 opens a control socket at one fixed per-user path; several gunicorns on one host (tests,
# other services) would fight over it, and nothing here uses it.
control_socket_disable = True
