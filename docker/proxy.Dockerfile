# nginx proxy for the inference replicas (context: docker/). Runs as a non-root user.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* && useradd --uid 10002 --no-create-home --shell /usr/sbin/nologin dktproxy
COPY nginx.conf.template /etc/nginx/dkt.conf.template
COPY proxy-common.conf /etc/nginx/dkt-proxy-common.conf
COPY proxy-entrypoint.sh /usr/local/bin/proxy-entrypoint
USER dktproxy
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=2s --retries=3 \
  CMD ["sh", "-c", "python3 -c \"import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/proxy-health' % os.environ.get('LISTEN_PORT', '8000'), timeout=2)\""]
ENTRYPOINT ["/usr/local/bin/proxy-entrypoint"]
