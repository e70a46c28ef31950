#!/usr/bin/env bash
# Start Debian's docker-registry on DKT_REGISTRY (default 127.0.0.1:5000) with storage under DKT_HOME.
# A loopback registry needs neither TLS nor daemon configuration ("localhost" is always insecure-allowed).
set -euo pipefail
DKT_HOME="${DKT_HOME:-$PWD/.dkt}"
addr="${DKT_REGISTRY:-127.0.0.1:5000}"
state="$DKT_HOME/registry"
mkdir -p "$state/data"
if curl -fsS "http://$addr/v2/" >/dev/null 2>&1; then exit 0; fi
case "$addr" in 127.0.0.1:*|localhost:*) ;; *) echo "DKT_REGISTRY=$addr is remote: not starting a local registry"; exit 0;; esac
bin="$(command -v docker-registry || echo /usr/bin/docker-registry)"
cat >"$state/config.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $state/data}
  delete: {enabled: true}
http:
  addr: $addr
YML
echo "==> starting registry on $addr (storage $state/data)"
nohup "$bin" serve "$state/config.yml" >"$state/registry.log" 2>&1 &
echo $! >"$state/registry.pid"
for _ in $(seq 1 40); do curl -fsS "http://$addr/v2/" >/dev/null 2>&1 && exit 0; sleep 0.25; done
echo "registry did not answer on $addr; see $state/registry.log" >&2; exit 1
