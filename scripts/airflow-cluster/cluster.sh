#!/usr/bin/env bash
# Airflow on Celery workers, all on this machine (docs/airflow.md "Celery cluster"); called by
# mk/airflow-cluster.mk with Airflow's environment (AIRFLOW_ENV in cluster mode) already set.
#
#   cluster.sh services   PostgreSQL (metadata DB) + Redis (broker, result backend): the project's own
#                         instances under $AIRFLOW_CLUSTER_HOME, 127.0.0.1 only, passwords in 0600 files
#   cluster.sh airflow    API server, scheduler, DAG processor, triggerer, $AIRFLOW_CLUSTER_WORKERS workers
#   cluster.sh stop       everything, by pid file (each component is its own process group)
#   cluster.sh status     one line per component
#
# Idempotent: a component whose pid file names a live process is left alone, so running `services` and
# `airflow` again restarts only what died (e.g. a killed worker). No secret is on a command line or in an
# environment variable: Airflow reads its connection strings with the *_CMD options (`cat <0600 file>`),
# Redis its password from its 0600 config file, PostgreSQL's roles get theirs through psql's stdin.
set -euo pipefail

: "${AIRFLOW_CLUSTER_HOME:?set by mk/airflow-cluster.mk}" "${BIN:?the bin directory of the venv}"
CH="$AIRFLOW_CLUSTER_HOME"
RUN="$CH/run"            # pid files
LOGS="$CH/logs"          # component logs (task logs: $AIRFLOW_HOME/logs, shared by every worker)
SECRETS="$CH/secrets"    # 0700: passwords and connection strings, 0600 each
PG="$CH/postgres"        # owned by the OS user PostgreSQL runs as
WORKERS="${AIRFLOW_CLUSTER_WORKERS:-2}"
CONCURRENCY="${AIRFLOW_CLUSTER_CONCURRENCY:-2}"
GPU_QUEUE="${AIRFLOW_CLUSTER_GPU_QUEUE:-gpu}"
HOST_FQDN="$(hostname -f 2>/dev/null || hostname)"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
free_port() { "$BIN/python" -c "from devtools.ports import free_port; print(free_port())"; }
port_open() { "$BIN/python" -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $1)))"; }
wait_port() {  # $1 port, $2 what, $3 log
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.2; done
  echo "$2 did not listen on 127.0.0.1:$1 within 20 s; see $3" >&2; exit 1
}
new_secret() { [[ -s "$1" ]] || "$BIN/python" -c "import secrets; print(secrets.token_hex(24))" > "$1"; }

# PostgreSQL refuses to run as root: then it runs as the Debian package's `postgres` user.
pg_bin() { local d; d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"; echo "${d:-/nonexistent}"; }
as_pg() { if [[ "$(id -u)" == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }

# A port setting, or the one chosen at this start (kept in ports.env for the other commands and tests).
choose_ports() {
  local pg_port="${AIRFLOW_CLUSTER_PG_PORT:-}" redis_port="${AIRFLOW_CLUSTER_REDIS_PORT:-}"
  if [[ -f "$RUN/ports.env" ]] && { alive "$RUN/postgres.pid" || alive "$RUN/redis.pid"; }; then
    # running services keep their ports
    # shellcheck disable=SC1091
    source "$RUN/ports.env"; pg_port="$PG_PORT"; redis_port="$REDIS_PORT"
  fi
  [[ -n "$pg_port" ]] || pg_port="$(free_port)"
  [[ -n "$redis_port" ]] || redis_port="$(free_port)"
  printf 'PG_PORT=%s\nREDIS_PORT=%s\n' "$pg_port" "$redis_port" > "$RUN/ports.env"
  PG_PORT="$pg_port"; REDIS_PORT="$redis_port"
}

start_postgres() {
  local bin; bin="$(pg_bin)"
  [[ -x "$bin/postgres" ]] || { echo "PostgreSQL is missing: make airflow-cluster-deps (apt-get install -y postgresql)" >&2; exit 1; }
  if [[ ! -f "$PG/data/PG_VERSION" ]]; then
    rm -rf "$PG"; mkdir -p "$PG"; chmod 700 "$PG"
    cp "$SECRETS/pg-admin.password" "$PG/pwfile"
    if [[ "$(id -u)" == 0 ]]; then
      chown -R postgres:postgres "$PG"
      as_pg test -x "$PG" || { echo "the postgres user cannot reach $PG: every parent directory needs o+x" \
        "(or choose DKT_HOME / AIRFLOW_CLUSTER_HOME elsewhere)" >&2; exit 1; }
    fi
    as_pg "$bin/initdb" -D "$PG/data" -U dkt_admin --pwfile="$PG/pwfile" --auth=scram-sha-256 -E UTF8 \
      >>"$LOGS/postgres.log" 2>&1 || { echo "initdb failed; see $LOGS/postgres.log" >&2; exit 1; }
    rm -f "$PG/pwfile"
    # TCP on loopback with SCRAM passwords only: no Unix socket, no other address, no trust/peer line.
    as_pg tee "$PG/data/pg_hba.conf" >/dev/null <<'EOF'
# dkt airflow-cluster: password (SCRAM) logins over 127.0.0.1 only
host  all  all  127.0.0.1/32  scram-sha-256
EOF
    as_pg tee -a "$PG/data/postgresql.conf" >/dev/null <<'EOF'
# dkt airflow-cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
log_min_error_statement = panic   # a failing statement (e.g. CREATE ROLE ... PASSWORD) is never logged
synchronous_commit = off          # metadata only; a crash loses at most the last moments of scheduler state
max_connections = 200
EOF
  fi
  if alive "$RUN/postgres.pid"; then echo "postgres: running (pid $(cat "$RUN/postgres.pid"), 127.0.0.1:$PG_PORT)"; return; fi
  local as=(); [[ "$(id -u)" == 0 ]] && as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  setsid "${as[@]}" "$bin/postgres" -D "$PG/data" -p "$PG_PORT" -k '' >>"$LOGS/postgres.log" 2>&1 </dev/null &
  echo $! > "$RUN/postgres.pid"
  wait_port "$PG_PORT" postgres "$LOGS/postgres.log"
  # The Airflow role and database (once; the password re-applied at every start, from its file, via stdin).
  local pgpass="$SECRETS/pgpass"
  printf '127.0.0.1:%s:*:dkt_admin:%s\n' "$PG_PORT" "$(cat "$SECRETS/pg-admin.password")" > "$pgpass"
  local psql=(env PGPASSFILE="$pgpass" "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U dkt_admin)
  for _ in $(seq 1 50); do "${psql[@]}" -d postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
  { echo "SELECT 'CREATE ROLE airflow LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airflow') \gexec"
    echo "ALTER ROLE airflow WITH LOGIN NOSUPERUSER PASSWORD '$(cat "$SECRETS/pg-airflow.password")';"
    echo "SELECT 'CREATE DATABASE airflow OWNER airflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'airflow') \gexec"
  } | "${psql[@]}" -d postgres >>"$LOGS/postgres.log" 2>&1 || { echo "creating the airflow role failed; see $LOGS/postgres.log" >&2; exit 1; }
  echo "postgres: started (pid $(cat "$RUN/postgres.pid"), 127.0.0.1:$PG_PORT, data $PG/data)"
}

start_redis() {
  command -v redis-server >/dev/null || { echo "Redis is missing: make airflow-cluster-deps (apt-get install -y redis-server)" >&2; exit 1; }
  mkdir -p "$CH/redis"
  # The config carries the password, so it is 0600 (umask 077) and rewritten from the password file.
  cat > "$CH/redis/redis.conf" <<EOF
bind 127.0.0.1
protected-mode yes
port $REDIS_PORT
requirepass $(cat "$SECRETS/redis.password")
dir $CH/redis
daemonize no
save ""
appendonly no
EOF
  if alive "$RUN/redis.pid"; then echo "redis: running (pid $(cat "$RUN/redis.pid"), 127.0.0.1:$REDIS_PORT)"; return; fi
  setsid redis-server "$CH/redis/redis.conf" >>"$LOGS/redis.log" 2>&1 </dev/null &
  echo $! > "$RUN/redis.pid"
  wait_port "$REDIS_PORT" redis "$LOGS/redis.log"
  echo "redis: started (pid $(cat "$RUN/redis.pid"), 127.0.0.1:$REDIS_PORT)"
}

# Connection strings Airflow reads through AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD and
# AIRFLOW__CELERY__{BROKER_URL,RESULT_BACKEND}_CMD (`cat` of these files; mk/airflow-cluster.mk).
# No trailing newline: Airflow uses a _CMD output as is.
write_conns() {
  local pgpw redispw; pgpw="$(cat "$SECRETS/pg-airflow.password")"; redispw="$(cat "$SECRETS/redis.password")"
  printf 'postgresql+psycopg2://airflow:%s@127.0.0.1:%s/airflow' "$pgpw" "$PG_PORT" > "$SECRETS/sql_alchemy_conn"
  printf 'redis://:%s@127.0.0.1:%s/0' "$redispw" "$REDIS_PORT" > "$SECRETS/broker_url"
  printf 'redis://:%s@127.0.0.1:%s/1' "$redispw" "$REDIS_PORT" > "$SECRETS/result_backend"
}

services() {
  umask 077
  mkdir -p "$RUN" "$LOGS" "$SECRETS"
  chmod 700 "$RUN" "$LOGS" "$SECRETS"
  # PostgreSQL's own user must be able to pass through (never read) this directory.
  [[ "$(id -u)" == 0 ]] && chmod 711 "$CH"
  new_secret "$SECRETS/pg-admin.password"; new_secret "$SECRETS/pg-airflow.password"; new_secret "$SECRETS/redis.password"
  choose_ports
  start_postgres
  start_redis
  write_conns
}

# $1 name, rest: the airflow command. Its own session (process group), its pid file, its log.
start_component() {
  local name="$1"; shift
  if alive "$RUN/$name.pid"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; return; fi
  setsid "$BIN/airflow" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! > "$RUN/$name.pid"
  echo "$name: started (pid $!, log $LOGS/$name.log)"
}

airflow_up() {
  umask 077
  # The schedulers' and workers' log servers bind every interface and have no host setting: not started
  # (--skip-serve-logs). All components share $AIRFLOW_HOME/logs on this machine, so the API server reads
  # every task's log file directly, whichever worker wrote it.
  start_component api-server api-server
  start_component scheduler scheduler --skip-serve-logs
  start_component dag-processor dag-processor
  start_component triggerer triggerer --skip-serve-logs
  local i queues
  for i in $(seq 1 "$WORKERS"); do
    queues=default; [[ "$i" == 1 ]] && queues="default,$GPU_QUEUE"   # worker 1 also takes the GPU queue
    # DKT_WORKER_NAME: the hostname its tasks record (TaskInstance.hostname; dkt_airflow.worker.hostname)
    DKT_WORKER_NAME="w$i@$HOST_FQDN" start_component "worker-$i" celery worker \
      --celery-hostname "w$i@$HOST_FQDN" --queues "$queues" --concurrency "$CONCURRENCY" --skip-serve-logs
  done
}

stop_many() {  # $1 signal, rest: pid files. Signal every process group at once, wait up to 30 s, then KILL.
  local sig="$1" f pid left; shift
  local files=() pids=()
  for f in "$@"; do [[ -f "$f" ]] || continue; files+=("$f"); pids+=("$(cat "$f")"); done
  [[ ${#files[@]} -gt 0 ]] || return 0
  for pid in "${pids[@]}"; do kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 60); do
    left=0; for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && left=1; done
    [[ "$left" == 0 ]] && break; sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for f in "${files[@]}"; do echo "$(basename "$f" .pid): stopped (group $(cat "$f"))"; rm -f "$f"; done
}

stop_all() {
  [[ -d "$RUN" ]] || { echo "airflow-cluster: nothing started under $CH"; return 0; }
  # Airflow first (a worker's SIGTERM is Celery's warm shutdown: running tasks finish, up to 30 s), then the
  # broker and the database they use.
  stop_many TERM "$RUN"/worker-*.pid "$RUN"/api-server.pid "$RUN"/scheduler.pid "$RUN"/dag-processor.pid \
    "$RUN"/triggerer.pid
  stop_many TERM "$RUN/redis.pid"
  stop_many INT "$RUN/postgres.pid"   # SIGINT: PostgreSQL's "fast" shutdown (clean, no waiting for clients)
}

status() {
  local f
  for f in "$RUN"/*.pid; do
    [[ -f "$f" ]] || continue
    if alive "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"
    else echo "$(basename "$f" .pid): not running (stale pid file)"; fi
  done
  [[ -f "$RUN/ports.env" ]] && cat "$RUN/ports.env"
  return 0
}

case "${1:-}" in
  services) services ;;
  airflow) airflow_up ;;
  stop) stop_all ;;
  status) status ;;
  *) echo "usage: $0 services|airflow|stop|status" >&2; exit 2 ;;
esac
