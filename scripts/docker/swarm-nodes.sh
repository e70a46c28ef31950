#!/usr/bin/env bash
# `make swarm-nodes`: a Swarm of 1 manager + DKT_NODES_WORKERS workers simulated on this machine (docs/deploy.md
# "Several nodes"). Each node is a Docker-in-Docker container built FROM the project's base image
# (docker/node.Dockerfile) with its own dockerd, on a dedicated bridge network; next to them a registry
# container (login required) that every node reaches and the host pushes to through 127.0.0.1.
#
# Idempotent and safe to rerun: running pieces are kept, stopped ones started, missing ones created, a worker
# that is not in the manager's swarm rejoins. Touches nothing of the host's own swarm, registry or stack: only
# containers and the network labelled dkt.swarm-nodes=$DKT_NODES. `make swarm-nodes-stop` removes them.
#
# Listeners on the host: the manager's proxy port (DKT_NODES_API_PORT) and the node registry
# (DKT_NODES_REGISTRY_PORT), both published on DKT_BIND_HOST (127.0.0.1) only. Everything else (the nodes'
# Swarm ports 2377/7946/4789, the registry's plain HTTP) lives on the node network, a bridge of this host.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
DKT_HOME="${DKT_HOME:-$PWD/.dkt}"
name="${DKT_NODES:-dkt-nodes}"
workers="${DKT_NODES_WORKERS:-2}"
api_port="${DKT_NODES_API_PORT:-8100}"
reg_port="${DKT_NODES_REGISTRY_PORT:-5001}"
bind="${DKT_BIND_HOST:-127.0.0.1}"
base="${DKT_BASE_IMAGE:-dkt-base:bookworm}"
user="${DKT_REGISTRY_USER:-dkt}"
state="$DKT_HOME/swarm-nodes/$name"
label="dkt.swarm-nodes=$name"
[[ "$name" =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || { echo "DKT_NODES=$name: use 1-31 of [a-z0-9-]" >&2; exit 2; }
[[ "$workers" =~ ^[0-9]+$ ]] || { echo "DKT_NODES_WORKERS=$workers is not a number" >&2; exit 2; }
for p in "$api_port" "$reg_port"; do [[ "$p" =~ ^[0-9]+$ ]] || { echo "port $p is not a number" >&2; exit 2; }; done
docker info >/dev/null 2>&1 || { echo "dockerd is not reachable: run make docker-up" >&2; exit 1; }
docker image inspect "$base" >/dev/null 2>&1 || "$here/base-image.sh"
mkdir -p "$state"

# --- the node image: tagged by its content (Dockerfile, entrypoint, base image id) ---------------------------
key="$( (cat "$repo/docker/node.Dockerfile" "$repo/docker/node-entrypoint.sh"; docker image inspect -f '{{.Id}}' "$base") \
        | sha256sum | cut -c1-12)"
image="dkt-node:$key"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "==> building $image from $base (docker.io from Debian packages)"
  ctx="$(mktemp -d /tmp/dkt-node.XXXXXX)"
  cp "$repo/docker/node.Dockerfile" "$ctx/Dockerfile"
  cp "$repo/docker/node-entrypoint.sh" "$ctx/node-entrypoint.sh"
  docker build -q --build-arg "BASE_IMAGE=$base" -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# --- the node network ---------------------------------------------------------------------------------------
if ! docker network inspect "$name" >/dev/null 2>&1; then
  echo "==> network $name (publishes on $bind)"
  docker network create --label "$label" --opt com.docker.network.bridge.host_binding_ipv4="$bind" "$name" >/dev/null
fi

# --- the registry the nodes pull from (htpasswd login, password generated once, 0600, never printed) ---------
pwfile="$state/registry/password"
mkdir -p "$state/registry"
if [[ ! -s "$pwfile" ]]; then (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$pwfile"); fi
chmod 600 "$pwfile"
if [[ ! -s "$state/registry/htpasswd" || "$pwfile" -nt "$state/registry/htpasswd" ]]; then
  (umask 077; htpasswd -iBn "$user" <"$pwfile" >"$state/registry/htpasswd.tmp")
  mv "$state/registry/htpasswd.tmp" "$state/registry/htpasswd"
fi
# read by the registry's own user inside its container; the password itself is not in this folder's files
chmod 644 "$state/registry/htpasswd"
cat >"$state/registry/config.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: /var/lib/registry}
  delete: {enabled: true}
auth:
  htpasswd: {realm: dkt-node-registry, path: /etc/dkt-registry/htpasswd}
http:
  addr: 0.0.0.0:5000
YML

# ensure NAME ROLE ARGS...: keep a running container of this cluster and image, start a stopped one, else create
ensure() {
  local cname="$1" role="$2"; shift 2
  local cid
  cid="$(docker ps -aq --filter "label=$label" --filter "label=dkt.swarm-nodes.role=$role")"
  if [[ -n "$cid" && "$(docker inspect -f '{{.Config.Image}}' "$cid")" != "$image" ]]; then
    echo "==> $cname runs an older node image: recreating it"
    docker rm -f -v "$cid" >/dev/null; cid=""
  fi
  if [[ -z "$cid" ]]; then
    docker run -d --init --name "$cname" --hostname "$cname" --network "$name" \
      --label "$label" --label "dkt.swarm-nodes.role=$role" "$@" >/dev/null
    echo "==> started $cname"
  elif [[ "$(docker inspect -f '{{.State.Running}}' "$cid")" != true ]]; then
    docker start "$cid" >/dev/null
    echo "==> restarted $cname"
  fi
}

ensure "$name-registry" registry --cap-drop ALL --read-only --tmpfs /tmp \
  -v "$state/registry/config.yml:/etc/dkt-registry/config.yml:ro" \
  -v "$state/registry/htpasswd:/etc/dkt-registry/htpasswd:ro" -v /var/lib/registry \
  -p "$bind:$reg_port:5000" --entrypoint docker-registry "$image" serve /etc/dkt-registry/config.yml

# Every capability but CAP_SYS_RESOURCE (absent from this host's bounding set, so --privileged fails here).
node_opts=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined --security-opt apparmor=unconfined
           --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm'
           -e "DKT_NODE_REGISTRY=$name-registry:5000" -e "DKT_NODE_REGISTRY_PORT=$reg_port")
roles=(manager)
for i in $(seq 1 "$workers"); do roles+=("worker$i"); done
for role in "${roles[@]}"; do
  mkdir -p "$state/$role"
  extra=()
  [[ "$role" == manager ]] && extra=(-p "$bind:$api_port:$api_port")
  ensure "$name-$role" "$role" "${node_opts[@]}" "${extra[@]}" -v "$state/$role:/run/dkt-node" "$image"
done

cid_of() { docker ps -q --filter "label=$label" --filter "label=dkt.swarm-nodes.role=$1"; }
on() { local c; c="$(cid_of "$1")"; shift; docker exec "$c" "$@"; }
ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$name\").IPAddress}}" "$(cid_of "$1")"; }
for role in "${roles[@]}"; do
  for _ in $(seq 1 120); do on "$role" docker info >/dev/null 2>&1 && break; sleep 0.5; done
  on "$role" docker info >/dev/null 2>&1 || { echo "dockerd of $name-$role did not start: docker logs $name-$role" >&2; exit 1; }
done

# --- the swarm ----------------------------------------------------------------------------------------------
mip="$(ip_of manager)"
if [[ "$(on manager docker info -f '{{.Swarm.LocalNodeState}}')" != active ]]; then
  echo "==> swarm init on $name-manager ($mip, node network only)"
  on manager docker swarm init --advertise-addr "$mip" --listen-addr "$mip:2377" --data-path-addr "$mip" >/dev/null
fi
token="$(on manager docker swarm join-token -q worker)"
members="$(on manager docker node ls -q)"
for role in "${roles[@]:1}"; do
  nid="$(on "$role" docker info -f '{{.Swarm.NodeID}}')"
  if [[ "$(on "$role" docker info -f '{{.Swarm.LocalNodeState}}')" == active ]] && grep -qx "$nid" <<<"$members"; then
    continue
  fi
  on "$role" docker swarm leave --force >/dev/null 2>&1 || true
  wip="$(ip_of "$role")"
  echo "==> $name-$role joins as a worker ($wip)"
  on "$role" docker swarm join --token "$token" --advertise-addr "$wip" --listen-addr "$wip:2377" "$mip:2377" >/dev/null
done
# nodes left behind by removed or recreated workers (not one of the current node containers) are removed: every
# node of this swarm is one of ours
current="$(for role in "${roles[@]}"; do on "$role" docker info -f '{{.Swarm.NodeID}}'; done)"
for nid in $(on manager docker node ls -q); do
  grep -qx "$nid" <<<"$current" || { on manager docker node rm --force "$nid" >/dev/null; echo "==> removed stale node $nid"; }
done
for _ in $(seq 1 60); do
  ready="$(on manager docker node ls --format '{{.Status}}' | grep -c '^Ready$' || true)"
  [[ "$ready" -ge "${#roles[@]}" ]] && break; sleep 0.5
done

# --- every node reaches the registry, which asks for a login (HTTP 401 without one) --------------------------
for role in "${roles[@]}"; do
  code="$(on "$role" python3 -c "import urllib.request, urllib.error
try: urllib.request.urlopen('http://127.0.0.1:$reg_port/v2/', timeout=5); print(200)
except urllib.error.HTTPError as e: print(e.code)
except OSError as e: print('unreachable', e)")"
  [[ "$code" == 401 ]] || { echo "$name-$role: registry 127.0.0.1:$reg_port answered '$code', expected 401" >&2; exit 1; }
done
for _ in $(seq 1 40); do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$reg_port/v2/" || true)" == 401 ]] && break; sleep 0.25
done
docker login -u "$user" --password-stdin "127.0.0.1:$reg_port" <"$pwfile" >/dev/null 2>&1 \
  || { echo "docker login 127.0.0.1:$reg_port failed" >&2; exit 1; }

# the deploy settings that point dkt_core.deploy at this cluster (make swarm-nodes-deploy sources them)
cat >"$state/cluster.env" <<ENV
DKT_SWARM_HOST=unix://$state/manager/docker.sock
DKT_API_PORT=$api_port
DKT_REGISTRY=127.0.0.1:$reg_port
DKT_REGISTRY_PASSWORD_FILE=$pwfile
ENV
on manager docker node ls
echo "==> $name ready: ${#roles[@]} nodes; registry 127.0.0.1:$reg_port (user $user, password file $pwfile);"
echo "    manager API: DOCKER_HOST=unix://$state/manager/docker.sock; stack proxy port $bind:$api_port ($state/cluster.env)"
