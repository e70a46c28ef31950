#!/usr/bin/env bash
# Idempotent: install docker.io/debootstrap/docker-registry/nginx-light if missing, start dockerd if it
# is not answering, initialise a single-node swarm, start the local registry, build the base image.
# Why a script and not only make recipes: CI (root, fresh machine, no systemd) must do all of this itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DKT_HOME="${DKT_HOME:-$PWD/.dkt}"
state="$DKT_HOME/docker"
# DKT_BIND_HOST (docs/security.md "Listeners"): the one address the platform's listeners bind. Swarm publishes
# host-mode ports through docker_gwbridge, whose host_binding_ipv4 is the address docker-proxy binds.
bind="${DKT_BIND_HOST:-127.0.0.1}"
mkdir -p "$state"

need=()
for pair in docker:docker.io debootstrap:debootstrap docker-registry:docker-registry nginx:nginx-light htpasswd:apache2-utils; do
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
  # --no-new-privileges: every container's processes run with no_new_privs (Swarm services cannot set it per
  # service: security_opt is not supported by `docker stack deploy`)
  nohup dockerd --no-new-privileges >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $state/dockerd.log" >&2; exit 1; }
fi

gw_bind() { docker network inspect docker_gwbridge --format '{{index .Options "com.docker.network.bridge.host_binding_ipv4"}}' 2>/dev/null; }
if [[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]]; then
  if docker network inspect docker_gwbridge >/dev/null 2>&1 && [[ "$(gw_bind)" != "$bind" ]]; then
    docker network rm docker_gwbridge >/dev/null   # made by an earlier swarm without our binding address
  fi
  if ! docker network inspect docker_gwbridge >/dev/null 2>&1; then
    echo "==> docker_gwbridge publishing on $bind"
    docker network create --opt com.docker.network.bridge.name=docker_gwbridge \
      --opt com.docker.network.bridge.enable_icc=false --opt com.docker.network.bridge.enable_ip_masquerade=true \
      --opt com.docker.network.bridge.host_binding_ipv4="$bind" docker_gwbridge >/dev/null
  fi
  echo "==> docker swarm init (control plane on $bind)"
  if [[ "$bind" == 0.0.0.0 ]]; then docker swarm init >/dev/null
  else docker swarm init --listen-addr "$bind:2377" --advertise-addr "$bind" --data-path-addr "$bind" >/dev/null; fi
elif [[ "$(gw_bind)" != "$bind" ]]; then
  echo "WARNING: this swarm publishes ports on '$(gw_bind)' (docker_gwbridge), not DKT_BIND_HOST=$bind." >&2
  echo "  Re-create it (removes its services): docker swarm leave --force && docker network rm docker_gwbridge" >&2
  echo "  && make docker-up" >&2
fi

"$here/registry-up.sh"
if ! docker image inspect "${DKT_BASE_IMAGE:-dkt-base:bookworm}" >/dev/null 2>&1; then
  "$here/base-image.sh"
fi
echo "==> docker ready: swarm active, registry ${DKT_REGISTRY:-127.0.0.1:5000}, base ${DKT_BASE_IMAGE:-dkt-base:bookworm}"
