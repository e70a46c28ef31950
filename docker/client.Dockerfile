# Student web client (Flask under gunicorn, port 8088). Only the `client` extra: no torch.
# Context: the repository root (`docker build -f docker/client.Dockerfile .`); .dockerignore keeps data out.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
COPY requirements.lock pyproject.toml README.md /src/
COPY dkt_core/ /src/dkt_core/
# Optional host CA bundle (docker/ca/host-ca.crt) for package indexes behind a TLS-intercepting proxy;
# it stays in this builder stage only.
COPY docker/ca/ /tmp/ca/
RUN python3 -m venv /opt/venv \
 && if [ -f /tmp/ca/host-ca.crt ]; then export PIP_CERT=/tmp/ca/host-ca.crt; fi \
 && /opt/venv/bin/pip install --no-cache-dir -c /src/requirements.lock "/src[client]"

FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10003 --shell /usr/sbin/nologin client
COPY --from=build /opt/venv /opt/venv
# DKT_HOME holds the spool and the per-student state; the stack mounts a volume there (created here so the
# volume starts owned by the client user)
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 DKT_CLIENT_PORT=8088 DKT_HOME=/home/client/dkt
USER client
RUN mkdir -p /home/client/dkt/client
EXPOSE 8088
HEALTHCHECK --interval=5s --timeout=2s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"DKT_CLIENT_PORT\"]}/', timeout=2)"]
CMD ["sh", "-c", "exec gunicorn --bind 0.0.0.0:$DKT_CLIENT_PORT --workers 2 --graceful-timeout 10 dkt_core.webclient.wsgi:app"]
