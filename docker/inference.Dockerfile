# Inference image: deps image (docker/deps.Dockerfile) + project code + service source + ONE model.
# Layer order is deliberate: code, then service, then model last, so a model-only change rebuilds only
# the final layers. The build context is assembled by dkt_core.deploy.images (no source tree, no data,
# no credentials enter it): app/*.whl, service/, models/<name>/<version>/.
ARG DEPS_IMAGE
FROM ${DEPS_IMAGE}

COPY app/ /tmp/app/
RUN if ls /tmp/app/*.whl >/dev/null 2>&1; then pip install --no-cache-dir --no-index --no-deps /tmp/app/*.whl; fi \
 && rm -rf /tmp/app
COPY service/ /srv/service/

# Everything below depends on the model; nothing above does.
ARG SERVICE=service:DKTService
ARG MODEL_TAG
ARG MODEL_VERSION=unknown
ARG DATA_VERSION=unknown
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.revision=${GIT_SHA} \
      dkt.model_version=${MODEL_VERSION} dkt.data_version=${DATA_VERSION} dkt.model_tag=${MODEL_TAG}
ENV BENTOML_HOME=/home/dkt/bentoml DKT_MODEL_TAG=${MODEL_TAG} DKT_SERVICE=${SERVICE} \
    DKT_MODEL_VERSION=${MODEL_VERSION} DKT_DATA_VERSION=${DATA_VERSION}
COPY --chown=10001:10001 models/ /home/dkt/bentoml/models/

USER dkt
WORKDIR /srv/service
EXPOSE 3000
# Images have no curl: python's urllib probes /readyz (ready = model loaded).
HEALTHCHECK --interval=2s --timeout=2s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=2)"]
# exec: bentoml replaces the shell as PID 1, so Swarm's SIGTERM reaches it and it drains.
CMD ["sh", "-c", "exec bentoml serve \"$DKT_SERVICE\" --host 0.0.0.0 --port 3000"]
