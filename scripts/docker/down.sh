#!/usr/bin/env bash
# Stop what up.sh started: the stack, the registry and (only if we started it) dockerd. Images stay.
set -uo pipefail
DKT_HOME="${DKT_HOME:-$PWD/.dkt}"
stack="${DKT_STACK:-dkt}"
if docker info >/dev/null 2>&1; then docker stack rm "$stack" >/dev/null 2>&1 || true; fi
for p in "$DKT_HOME/registry/registry.pid" "$DKT_HOME/docker/dockerd.pid"; do
  [[ -f "$p" ]] || continue
  pid="$(cat "$p")"
  if kill -0 "$pid" 2>/dev/null; then kill "$pid"; echo "stopped pid $pid ($p)"; fi
  rm -f "$p"
done
