# Airflow on Celery workers, on this machine (docs/airflow.md "Celery cluster"): the same DAGs as `make airflow`
# on CeleryExecutor, with the project's own PostgreSQL (metadata DB) and Redis (broker + result backend), an API
# server, a scheduler, a DAG processor, a triggerer and AIRFLOW_CLUSTER_WORKERS Celery workers (w1@host, w2@host,
# ...; w1 also takes the $(AIRFLOW_CLUSTER_GPU_QUEUE) queue the DAG's training tasks go to: DKT_TRAIN_QUEUE).
# Airflow's variables and environment are mk/airflow.mk's (AIRFLOW_ENV with AIRFLOW_MODE=cluster); the process
# management is scripts/airflow-cluster/cluster.sh. State under $(AIRFLOW_CLUSTER_HOME), made with umask 077.
# Every listener binds 127.0.0.1: API server (AIRFLOW_PORT), PostgreSQL and Redis (ports chosen at start unless
# set); no log server is started (all workers write the one $(AIRFLOW_CLUSTER_HOME)/airflow/logs the UI reads).

AIRFLOW_CLUSTER_HOME ?= $(DKT_HOME)/airflow-cluster
AIRFLOW_CLUSTER_WORKERS ?= 2
AIRFLOW_CLUSTER_CONCURRENCY ?= 2
AIRFLOW_CLUSTER_GPU_QUEUE ?= gpu
# Empty: a free port chosen when the service starts (kept in $(AIRFLOW_CLUSTER_HOME)/run/ports.env while it runs).
AIRFLOW_CLUSTER_PG_PORT ?=
AIRFLOW_CLUSTER_REDIS_PORT ?=
# A task whose worker died (no heartbeat for this long) is failed by the scheduler and retried elsewhere.
AIRFLOW_CLUSTER_HEARTBEAT_TIMEOUT_S ?= 30
# The queue of the DAG's training tasks (dkt_core/settings.py); empty: Airflow's default queue.
DKT_TRAIN_QUEUE ?= $(AIRFLOW_CLUSTER_GPU_QUEUE)
AIRFLOW_CLUSTER_PKGS := postgresql redis-server
TEST_PREREQS += airflow-cluster-deps

# The executor part of AIRFLOW_ENV in cluster mode (mk/airflow.mk). Secrets stay in 0600 files that Airflow
# reads through its *_CMD options: no password on a command line or in an environment variable.
AIRFLOW_CLUSTER_SECRETS = $(AIRFLOW_CLUSTER_HOME)/secrets
AIRFLOW_CLUSTER_ENV = AIRFLOW__CORE__EXECUTOR=CeleryExecutor \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD="cat $(AIRFLOW_CLUSTER_SECRETS)/sql_alchemy_conn" \
	AIRFLOW__CELERY__BROKER_URL_CMD="cat $(AIRFLOW_CLUSTER_SECRETS)/broker_url" \
	AIRFLOW__CELERY__RESULT_BACKEND_CMD="cat $(AIRFLOW_CLUSTER_SECRETS)/result_backend" \
	AIRFLOW__CORE__HOSTNAME_CALLABLE=dkt_airflow.worker.hostname \
	AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=$(AIRFLOW_CLUSTER_HEARTBEAT_TIMEOUT_S) \
	AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL=5 \
	AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC=5 \
	DKT_TRAIN_QUEUE=$(DKT_TRAIN_QUEUE)
AIRFLOW_CLUSTER_SH = $(AIRFLOW_ENV) AIRFLOW_CLUSTER_HOME=$(AIRFLOW_CLUSTER_HOME) BIN=$(CURDIR)/$(BIN) \
	AIRFLOW_CLUSTER_WORKERS=$(AIRFLOW_CLUSTER_WORKERS) AIRFLOW_CLUSTER_CONCURRENCY=$(AIRFLOW_CLUSTER_CONCURRENCY) \
	AIRFLOW_CLUSTER_GPU_QUEUE=$(AIRFLOW_CLUSTER_GPU_QUEUE) AIRFLOW_CLUSTER_PG_PORT=$(AIRFLOW_CLUSTER_PG_PORT) \
	AIRFLOW_CLUSTER_REDIS_PORT=$(AIRFLOW_CLUSTER_REDIS_PORT) bash scripts/airflow-cluster/cluster.sh

# These targets always act on the cluster (sub-makes get AIRFLOW_MODE=cluster explicitly).
airflow-cluster airflow-cluster-stop airflow-cluster-status: AIRFLOW_MODE := cluster

## airflow-cluster: Airflow on CeleryExecutor (PostgreSQL, Redis, API server on $(AIRFLOW_HOST):$(AIRFLOW_PORT), scheduler, DAG processor, triggerer, AIRFLOW_CLUSTER_WORKERS workers) + embedded S3; idempotent: restarts what died
airflow-cluster: setup s3-up airflow-cluster-deps
	@umask 077; mkdir -p $(AIRFLOW_HOME)
	@$(AIRFLOW_CLUSTER_SH) services
	@$(AIRFLOW_MAKE_PASSWORDS)
	@$(MAKE) --no-print-directory airflow-connection AIRFLOW_MODE=cluster
	@chmod -R go-rwx $(AIRFLOW_HOME)
	@$(AIRFLOW_CLUSTER_SH) airflow
	@$(call airflow_wait_healthy,$(AIRFLOW_CLUSTER_HOME)/logs/api-server.log)
	@echo "  Celery workers: $(AIRFLOW_CLUSTER_WORKERS) (w1 also takes queue $(AIRFLOW_CLUSTER_GPU_QUEUE)); DKT_TRAIN_QUEUE=$(DKT_TRAIN_QUEUE)"
	@echo "  other targets on this cluster: make airflow-unpause|airflow-trigger|airflow-connection AIRFLOW_MODE=cluster"

## airflow-cluster-stop: stop every component of the Celery cluster by its pid file (PostgreSQL and Redis too; their data stays)
airflow-cluster-stop:
	@AIRFLOW_CLUSTER_HOME=$(AIRFLOW_CLUSTER_HOME) BIN=$(CURDIR)/$(BIN) bash scripts/airflow-cluster/cluster.sh stop

## airflow-cluster-status: the cluster's components (running or not) and PostgreSQL's and Redis's ports
airflow-cluster-status:
	@AIRFLOW_CLUSTER_HOME=$(AIRFLOW_CLUSTER_HOME) BIN=$(CURDIR)/$(BIN) bash scripts/airflow-cluster/cluster.sh status

## airflow-cluster-deps: install PostgreSQL and Redis (Debian packages) when missing (root; CI on a fresh machine)
airflow-cluster-deps:
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && command -v redis-server >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then echo "PostgreSQL/Redis missing: run as root 'apt-get install -y $(AIRFLOW_CLUSTER_PKGS)'" >&2; exit 1; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(AIRFLOW_CLUSTER_PKGS); fi

.PHONY: airflow-cluster airflow-cluster-stop airflow-cluster-status airflow-cluster-deps
