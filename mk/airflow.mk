# Airflow 3 (scheduler, API server/UI, DAG processor, triggerer: what `airflow standalone` runs) from the project
# venv, with this repo's dags/ and plugins/. State lives under $(DKT_HOME)/airflow, created with umask 077
# (airflow.db, logs, passwords: 0600/0700).
# Listeners (docs/security.md): the API server binds AIRFLOW_HOST (= DKT_BIND_HOST, 127.0.0.1). The scheduler's
# and triggerer's log servers (8793/8794) have no host setting in Airflow 3 (they bind every interface), so they
# are not started (--skip-serve-logs): every component runs on this machine and the UI reads the task log files.
# That is why the components are started here and not by `airflow standalone` (which also forces the
# SimpleAuthManager; here AIRFLOW_AUTH_MANAGER chooses, README "Airflow auth").

# AIRFLOW_MODE=cluster: every Airflow target (airflow-connection, -unpause, -trigger, demo) acts on the Celery
# cluster of mk/airflow-cluster.mk (own AIRFLOW_HOME, PostgreSQL, Redis) instead of this LocalExecutor one.
AIRFLOW_MODE ?= local
AIRFLOW_HOME ?= $(if $(filter cluster,$(AIRFLOW_MODE)),$(AIRFLOW_CLUSTER_HOME)/airflow,$(DKT_HOME)/airflow)
AIRFLOW_PORT ?= 8080
# The API server/UI listens on DKT_BIND_HOST (loopback); AIRFLOW_HOST overrides it for Airflow alone.
AIRFLOW_HOST ?= $(or $(DKT_BIND_HOST),127.0.0.1)
AIRFLOW_AUTH_MANAGER ?= airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
AIRFLOW_PIDFILE = $(AIRFLOW_HOME)/standalone.pid
AIRFLOW_LOG = $(if $(filter cluster,$(AIRFLOW_MODE)),$(AIRFLOW_CLUSTER_HOME)/logs/airflow-setup.log,$(DKT_HOME)/logs/airflow-standalone.log)
AIRFLOW_PASSWORDS = $(AIRFLOW_HOME)/passwords.json

# The S3 connection the tasks read (plugins/dkt_airflow/s3env.py) is the one place to change S3 for the
# DAGs: `make airflow` creates it in the metadata DB once, from the embedded S3 settings below (moto accepts
# any key pair), and never overwrites it, so edits in the UI (Admin > Connections) survive restarts. The
# Airflow processes get no DKT_S3_*/AWS_* variables: in a task those would override the connection.
# An AIRFLOW_CONN_<ID> variable in your environment (or a secrets backend) takes precedence over the DB.
DKT_AWS_CONN_ID ?= aws_default
AIRFLOW_S3_CONN ?= {"conn_type":"aws","login":"testing","password":"testing","extra":{"region_name":"$(AWS_DEFAULT_REGION)","endpoint_url":"$(DKT_S3_ENDPOINT_URL)","bucket":"$(DKT_S3_BUCKET)"}}
AIRFLOW_S3_UNSET := -u DKT_S3_ENDPOINT_URL -u DKT_S3_BUCKET -u AWS_DEFAULT_REGION -u AWS_REGION \
	-u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3

# One environment for both modes; the executor and what it needs come from AIRFLOW_EXECUTOR_ENV (the cluster's:
# AIRFLOW_CLUSTER_ENV, mk/airflow-cluster.mk).
AIRFLOW_EXECUTOR_ENV = $(if $(filter cluster,$(AIRFLOW_MODE)),$(AIRFLOW_CLUSTER_ENV),AIRFLOW__CORE__EXECUTOR=LocalExecutor)
AIRFLOW_ENV = env $(AIRFLOW_S3_UNSET) AIRFLOW_HOME=$(AIRFLOW_HOME) \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__PARALLELISM=4 \
	AIRFLOW__API__HOST=$(AIRFLOW_HOST) \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(AIRFLOW_PASSWORDS) \
	AIRFLOW__CORE__AUTH_MANAGER=$(AIRFLOW_AUTH_MANAGER) \
	$(AIRFLOW_EXECUTOR_ENV) \
	DKT_AWS_CONN_ID=$(DKT_AWS_CONN_ID) \
	PATH=$(CURDIR)/$(BIN):$$PATH

# Shared by `make airflow` and `make airflow-cluster`: the UI user's password file (generated once, 0600) and
# the wait for the API server's health endpoint followed by the login it prints ($(1): the log to read on failure).
AIRFLOW_MAKE_PASSWORDS = test -s $(AIRFLOW_PASSWORDS) || { umask 077; $(BIN)/python -c "import json,secrets; \
	  print(json.dumps({'admin': secrets.token_urlsafe(12)}))" > $(AIRFLOW_PASSWORDS); }
define airflow_wait_healthy
for i in $$(seq 1 180); do \
	  curl -fsS http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health >/dev/null 2>&1 && break; sleep 1; done; \
	curl -fsS http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health >/dev/null || { \
	  echo "Airflow did not become healthy in 180 s; see $(1)" >&2; exit 1; }; \
	echo "Airflow UI:  http://127.0.0.1:$(AIRFLOW_PORT)"; \
	echo "  user: admin   password: $$($(BIN)/python -c "import json; print(json.load(open('$(AIRFLOW_PASSWORDS)'))['admin'])")   (file $(AIRFLOW_PASSWORDS))"; \
	echo "  DAGs: dkt_retrain, dkt_ingest_sensor (new DAGs start paused: unpause them in the UI or with make airflow-unpause$(if $(filter cluster,$(AIRFLOW_MODE)), AIRFLOW_MODE=cluster))"
endef

## airflow: start Airflow (scheduler, triggerer, DAG processor, API server) on $(AIRFLOW_HOST):$(AIRFLOW_PORT) (+ embedded S3), print the admin credentials; AIRFLOW_MODE=cluster: make airflow-cluster
ifeq ($(AIRFLOW_MODE),cluster)
airflow: airflow-cluster
else
airflow: setup s3-up
	@mkdir -p $(AIRFLOW_HOME) $(DKT_HOME)/logs
	@$(AIRFLOW_MAKE_PASSWORDS)
	@if [ -f $(AIRFLOW_PIDFILE) ] && kill -0 $$(cat $(AIRFLOW_PIDFILE)) 2>/dev/null; then \
	  echo "Airflow already running (pid $$(cat $(AIRFLOW_PIDFILE)))"; \
	else $(MAKE) --no-print-directory airflow-connection || exit 1; \
	  chmod -R go-rwx $(AIRFLOW_HOME); umask 077; \
	  $(AIRFLOW_ENV) setsid bash -c '$(BIN)/airflow scheduler --skip-serve-logs & $(BIN)/airflow triggerer --skip-serve-logs & \
	    $(BIN)/airflow dag-processor & $(BIN)/airflow api-server & wait' >>$(AIRFLOW_LOG) 2>&1 < /dev/null & \
	  echo $$! > $(AIRFLOW_PIDFILE); \
	  echo "Airflow starting (pid $$(cat $(AIRFLOW_PIDFILE)), log $(AIRFLOW_LOG)) ..."; fi
	@$(call airflow_wait_healthy,$(AIRFLOW_LOG))

endif

## airflow-connection: create the DAGs' S3 connection from DKT_S3_* unless stored (AIRFLOW_CONN_RESET=1: re-create)
airflow-connection: setup
	@mkdir -p $(AIRFLOW_HOME) $(DKT_HOME)/logs $(dir $(AIRFLOW_LOG))
	@umask 077; $(AIRFLOW_ENV) $(BIN)/airflow db migrate >>$(AIRFLOW_LOG) 2>&1 || { \
	  echo "airflow db migrate failed; see $(AIRFLOW_LOG)" >&2; exit 1; }
	@var=AIRFLOW_CONN_$$(echo '$(DKT_AWS_CONN_ID)' | tr 'a-z-' 'A-Z_'); conn='$(DKT_AWS_CONN_ID)'; \
	if [ -n "$${!var:-}" ]; then echo "S3 connection $$conn: from $$var in your environment"; exit 0; fi; \
	if $(AIRFLOW_ENV) $(BIN)/airflow connections get "$$conn" >/dev/null 2>&1; then \
	  if [ -z "$(AIRFLOW_CONN_RESET)" ]; then \
	    echo "S3 connection $$conn: kept as stored (edit it in the UI: Admin > Connections; or re-create it from"; \
	    echo "  DKT_S3_ENDPOINT_URL/DKT_S3_BUCKET/AWS_DEFAULT_REGION: make airflow-connection AIRFLOW_CONN_RESET=1)"; \
	    exit 0; fi; \
	  $(AIRFLOW_ENV) $(BIN)/airflow connections delete "$$conn" >/dev/null || exit 1; fi; \
	$(AIRFLOW_ENV) $(BIN)/airflow connections add "$$conn" --conn-json '$(AIRFLOW_S3_CONN)' >/dev/null && \
	echo "S3 connection $$conn: created -> $(DKT_S3_ENDPOINT_URL) (bucket $(DKT_S3_BUCKET))"

## airflow-unpause: unpause the dkt DAGs
airflow-unpause: setup
	@$(AIRFLOW_ENV) $(BIN)/airflow dags unpause dkt_retrain >/dev/null && \
	 $(AIRFLOW_ENV) $(BIN)/airflow dags unpause dkt_ingest_sensor >/dev/null && echo "unpaused dkt_retrain, dkt_ingest_sensor"

## airflow-stop: stop Airflow (its whole process group); AIRFLOW_MODE=cluster: make airflow-cluster-stop
ifeq ($(AIRFLOW_MODE),cluster)
airflow-stop: airflow-cluster-stop
else
airflow-stop:
	@if [ -f $(AIRFLOW_PIDFILE) ]; then pid=$$(cat $(AIRFLOW_PIDFILE)); \
	  kill -TERM -- -$$pid 2>/dev/null || true; \
	  for i in $$(seq 1 30); do kill -0 -- -$$pid 2>/dev/null || break; sleep 1; done; \
	  kill -KILL -- -$$pid 2>/dev/null || true; rm -f $(AIRFLOW_PIDFILE); echo "Airflow stopped (group $$pid)"; \
	else echo "Airflow: not started by make airflow"; fi

endif

.PHONY: airflow airflow-connection airflow-unpause airflow-stop

## airflow-test: the Airflow DAG tests without Docker (DAG integrity/policies + dag.test() runs on moto)
airflow-test: setup
	$(BIN)/python -m pytest tests/airflow tests/unit/test_retrain_gate.py tests/unit/test_retrain_holdout.py \
	  tests/unit/test_retrain_live_eval.py tests/unit/test_retrain_report.py -m "not docker" -q $(PYTEST_ARGS)

## airflow-trigger: trigger dkt_retrain now (CONF='{"models": ["lgbm"], "skip_deploy": true}' optional)
airflow-trigger: setup
	@$(AIRFLOW_ENV) $(BIN)/airflow dags trigger dkt_retrain $(if $(CONF),--conf '$(CONF)')

.PHONY: airflow-test airflow-trigger
