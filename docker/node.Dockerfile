# A simulated Swarm node (make swarm-nodes, scripts/docker/swarm-nodes.sh): Docker-in-Docker built FROM the
# project's base image, docker.io and friends from Debian packages (nothing is pulled from a registry). Runs
# with its own dockerd (docker/node-entrypoint.sh); /var/lib/docker is a volume (overlay2 cannot sit on the
# container's own overlayfs). The same image runs the node network's registry (Debian's docker-registry),
# so only one image is built.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      docker.io iptables socat docker-registry ca-certificates procps \
 && rm -rf /var/lib/apt/lists/*
COPY node-entrypoint.sh /usr/local/bin/node-entrypoint
VOLUME /var/lib/docker
ENTRYPOINT ["/usr/local/bin/node-entrypoint"]
