#!/usr/bin/env bash
# `make swarm-nodes-stop`: remove the simulated nodes, their registry (with their volumes) and their network,
# by container and network id, found by the label dkt.swarm-nodes=$DKT_NODES. Idempotent (nothing left: no-op);
# never touches the host's own swarm, registry or stack. The registry password file is kept.
set -uo pipefail
DKT_HOME="${DKT_HOME:-$PWD/.dkt}"
name="${DKT_NODES:-dkt-nodes}"
state="$DKT_HOME/swarm-nodes/$name"
label="dkt.swarm-nodes=$name"
ids="$(docker ps -aq --filter "label=$label")"
if [[ -n "$ids" ]]; then
  # shellcheck disable=SC2086
  docker rm -f -v $ids >/dev/null && echo "==> removed $(wc -w <<<"$ids") containers of $name: $(tr '\n' ' ' <<<"$ids")"
fi
for net in $(docker network ls -q --filter "label=$label"); do
  docker network rm "$net" >/dev/null && echo "==> removed network $net ($name)"
done
if [[ -f "$state/cluster.env" ]]; then
  reg="$(sed -n 's/^DKT_REGISTRY=//p' "$state/cluster.env")"
  [[ -n "$reg" ]] && docker logout "$reg" >/dev/null 2>&1
  rm -f "$state/cluster.env"
fi
rm -rf "$state"/manager "$state"/worker* 2>/dev/null
exit 0
