# Airflow 3 standalone (scheduler, API server/UI, DAG processor, triggerer) from the project venv,
# with this repo's dags/ and plugins/. State lives under $(DKT_HOME)/airflow.

AIRFLOW_HOME ?= $(DKT_HOME)/airflow
AIRFLOW_PORT ?= 8080
AIRFLOW_PIDFILE := $(AIRFLOW_HOME)/standalone.pid
AIRFLOW_LOG := $(DKT_HOME)/logs/airflow-standalone.log
AIRFLOW_PASSWORDS := $(AIRFLOW_HOME)/passwords.json

# The S3 connection tasks use (see plugins/dkt_airflow/s3env.py); moto accepts any key pair.
# For AWS S3/MinIO, set AIRFLOW_CONN_AWS_DEFAULT (or a secrets backend) yourself before `make airflow`.
AIRFLOW_CONN_AWS_DEFAULT ?= {"conn_type":"aws","login":"testing","password":"testing","extra":{"region_name":"$(AWS_DEFAULT_REGION)","endpoint_url":"$(DKT_S3_ENDPOINT_URL)"}}

AIRFLOW_ENV := AIRFLOW_HOME=$(AIRFLOW_HOME) \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__PARALLELISM=4 \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(AIRFLOW_PASSWORDS) \
	AIRFLOW_CONN_AWS_DEFAULT='$(AIRFLOW_CONN_AWS_DEFAULT)' \
	PATH=$(CURDIR)/$(BIN):$$PATH

## airflow: start Airflow standalone on :$(AIRFLOW_PORT) (+ embedded S3), print the admin credentials
airflow: setup s3-up
	@mkdir -p $(AIRFLOW_HOME) $(DKT_HOME)/logs
	@test -s $(AIRFLOW_PASSWORDS) || { umask 077; $(BIN)/python -c "import json,secrets; \
	  print(json.dumps({'admin': secrets.token_urlsafe(12)}))" > $(AIRFLOW_PASSWORDS); }
	@if [ -f $(AIRFLOW_PIDFILE) ] && kill -0 $$(cat $(AIRFLOW_PIDFILE)) 2>/dev/null; then \
	  echo "Airflow already running (pid $$(cat $(AIRFLOW_PIDFILE)))"; \
	else $(AIRFLOW_ENV) setsid $(BIN)/airflow standalone >>$(AIRFLOW_LOG) 2>&1 < /dev/null & echo $$! > $(AIRFLOW_PIDFILE); \
	  echo "Airflow starting (pid $$(cat $(AIRFLOW_PIDFILE)), log $(AIRFLOW_LOG)) ..."; fi
	@for i in $$(seq 1 120); do \
	  curl -fsS http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health >/dev/null 2>&1 && break; sleep 1; done; \
	curl -fsS http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health >/dev/null || { \
	  echo "Airflow did not become healthy in 120 s; see $(AIRFLOW_LOG)" >&2; exit 1; }
	@echo "Airflow UI:  http://127.0.0.1:$(AIRFLOW_PORT)"
	@echo "  user: admin   password: $$($(BIN)/python -c "import json; print(json.load(open('$(AIRFLOW_PASSWORDS)'))['admin'])")   (file $(AIRFLOW_PASSWORDS))"
	@echo "  DAGs: dkt_retrain, dkt_ingest_sensor (new DAGs start paused: unpause them in the UI or with make airflow-unpause)"

## airflow-unpause: unpause the dkt DAGs
airflow-unpause: setup
	@$(AIRFLOW_ENV) $(BIN)/airflow dags unpause dkt_retrain >/dev/null && \
	 $(AIRFLOW_ENV) $(BIN)/airflow dags unpause dkt_ingest_sensor >/dev/null && echo "unpaused dkt_retrain, dkt_ingest_sensor"

## airflow-stop: stop Airflow standalone (its whole process group)
airflow-stop:
	@if [ -f $(AIRFLOW_PIDFILE) ]; then pid=$$(cat $(AIRFLOW_PIDFILE)); \
	  kill -TERM -- -$$pid 2>/dev/null || true; \
	  for i in $$(seq 1 30); do kill -0 -- -$$pid 2>/dev/null || break; sleep 1; done; \
	  kill -KILL -- -$$pid 2>/dev/null || true; rm -f $(AIRFLOW_PIDFILE); echo "Airflow stopped (group $$pid)"; \
	else echo "Airflow: not started by make airflow"; fi

.PHONY: airflow airflow-unpause airflow-stop

## airflow-test: the Airflow DAG tests without Docker (DAG integrity/policies + dag.test() runs on moto)
airflow-test: setup
	$(BIN)/python -m pytest tests/airflow tests/unit/test_retrain_gate.py tests/unit/test_retrain_holdout.py \
	  tests/unit/test_retrain_live_eval.py tests/unit/test_retrain_report.py -m "not docker" -q $(PYTEST_ARGS)

## airflow-trigger: trigger dkt_retrain now (CONF='{"models": ["lgbm"], "skip_deploy": true}' optional)
airflow-trigger: setup
	@$(AIRFLOW_ENV) $(BIN)/airflow dags trigger dkt_retrain $(if $(CONF),--conf '$(CONF)')

.PHONY: airflow-test airflow-trigger
