#!/usr/bin/env bash
# Idempotent: install docker.io/debootstrap/docker-registry/nginx-light if missing, start dockerd if it
# is not answering, initialise a single-node swarm, start the local registry, build the base image.
# Why a script and not only make recipes: CI (root, fresh machine, no systemd) must do all of this itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DKT_HOME="${DKT_HOME:-$PWD/.dkt}"
state="$DKT_HOME/docker"
mkdir -p "$state"

need=()
for pair in docker:docker.io debootstrap:debootstrap docker-registry:docker-registry nginx:nginx-light; do
  # /usr/bin/docker (docker.io) is wanted even when another client is on PATH: it has BuildKit.
  bin="${pair%%:*}"; pkg="${pair##*:}"
  if [[ "$bin" == docker ]]; then [[ -x /usr/bin/docker && -x /usr/sbin/dockerd || -x /usr/bin/dockerd ]] || need+=("$pkg")
  else command -v "$bin" >/dev/null || [[ -x /usr/sbin/$bin || -x /usr/bin/$bin ]] || need+=("$pkg"); fi
done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then echo "missing packages ${need[*]}: run as root or install them" >&2; exit 1; fi
  echo "==> apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian packages try to start services through init scripts; nothing runs without systemd here.
fi

if ! docker info >/dev/null 2>&1; then
  echo "==> starting dockerd (log: $state/dockerd.log)"
  nohup dockerd >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $state/dockerd.log" >&2; exit 1; }
fi

if [[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]]; then
  echo "==> docker swarm init"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi

"$here/registry-up.sh"
if ! docker image inspect "${DKT_BASE_IMAGE:-dkt-base:bookworm}" >/dev/null 2>&1; then
  "$here/base-image.sh"
fi
echo "==> docker ready: swarm active, registry ${DKT_REGISTRY:-127.0.0.1:5000}, base ${DKT_BASE_IMAGE:-dkt-base:bookworm}"
