# Dependency image of the inference service: a venv installed OFFLINE from a wheelhouse built on the
# host (`pip wheel -c requirements.lock`, torch from the pinned CPU wheel). It changes only when the
# wheel set changes, so code and model rebuilds never reinstall torch. Build with --network none.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY wheels/ /wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl

FROM ${BASE_IMAGE}
# Non-root runtime user; fixed uid so volume ownership is predictable.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dkt \
 && mkdir -p /home/dkt/bentoml && chown dkt:dkt /home/dkt/bentoml
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 BENTOML_DO_NOT_TRACK=True
