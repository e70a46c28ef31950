#!/usr/bin/env bash
# Start Debian's docker-registry on DKT_REGISTRY (default 127.0.0.1:5000) with storage under DKT_HOME.
# A loopback registry needs neither TLS nor daemon configuration ("localhost" is always insecure-allowed).
# It listens on DKT_BIND_HOST (default 127.0.0.1) and requires a login (htpasswd, bcrypt) for every push and
# pull: user DKT_REGISTRY_USER (dkt), password generated once into DKT_REGISTRY_PASSWORD_FILE (0600). This
# script logs the local docker in (password on stdin only); the deployer does the same (dkt_core/deploy).
set -euo pipefail
DKT_HOME="${DKT_HOME:-$PWD/.dkt}"
addr="${DKT_REGISTRY:-127.0.0.1:5000}"
bind="${DKT_BIND_HOST:-127.0.0.1}"
user="${DKT_REGISTRY_USER:-dkt}"
state="$DKT_HOME/registry"
pwfile="${DKT_REGISTRY_PASSWORD_FILE:-$state/password}"
mkdir -p "$state/data"
case "$addr" in 127.0.0.1:*|localhost:*) ;; *) echo "DKT_REGISTRY=$addr is remote: not starting a local registry"; exit 0;; esac

status() { curl -s -o /dev/null -w '%{http_code}' "http://$addr/v2/" 2>/dev/null || true; }
login() { docker login -u "$user" --password-stdin "$addr" <"$pwfile" >/dev/null; }

# The secret: generated once, 0600, never printed.
if [[ ! -s "$pwfile" ]]; then
  (umask 077; mkdir -p "$(dirname "$pwfile")"; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$pwfile")
fi
chmod 600 "$pwfile"
htpasswd_file="$state/htpasswd"
if [[ ! -s "$htpasswd_file" || "$pwfile" -nt "$htpasswd_file" ]]; then
  (umask 077; htpasswd -iBn "$user" <"$pwfile" >"$htpasswd_file.tmp" && mv "$htpasswd_file.tmp" "$htpasswd_file")
fi

code="$(status)"
if [[ "$code" == 401 ]]; then login; exit 0; fi
if [[ "$code" == 200 ]]; then
  # an open registry (started before logins were required): restart it with auth if it is ours
  pid="$(cat "$state/registry.pid" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    echo "==> restarting the registry (pid $pid) with a login required"
    kill "$pid"; for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  else
    echo "a registry on $addr accepts anonymous pushes and was not started here: stop it and run make registry-up" >&2
    exit 1
  fi
fi
bin="$(command -v docker-registry || echo /usr/bin/docker-registry)"
(umask 077; cat >"$state/config.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $state/data}
  delete: {enabled: true}
auth:
  htpasswd: {realm: dkt-registry, path: $htpasswd_file}
http:
  addr: $bind:${addr##*:}
YML
)
echo "==> starting registry on $bind:${addr##*:} (storage $state/data, login required: user $user, password file $pwfile)"
nohup "$bin" serve "$state/config.yml" >"$state/registry.log" 2>&1 &
echo $! >"$state/registry.pid"
for _ in $(seq 1 40); do
  if [[ "$(status)" == 401 ]]; then login; exit 0; fi
  sleep 0.25
done
echo "registry did not answer on $addr; see $state/registry.log" >&2; exit 1
