# `make demo`: one full retrain-and-deploy cycle on embedded defaults (see scripts/demo.py).

DEMO_USERS ?= 300
DEMO_NEW_USERS ?= 300
# written by scripts/demo.py when it starts the web client in its own session
CLIENT_PIDFILE := $(DKT_HOME)/run/client.pid

## demo: set up everything (S3, registry, swarm, Airflow), train + deploy, upload new data, retrain + roll out; AIRFLOW_MODE=cluster: on the Celery cluster
# AIRFLOW_MODE=cluster (mk/airflow.mk): `make airflow` is `make airflow-cluster`, AIRFLOW_ENV the cluster's, and
# `make demo-stop AIRFLOW_MODE=cluster` stops the cluster.
# The demo script uploads with `dkt seed` (an edge: it reads DKT_S3_*), so it gets the embedded S3 settings back
# that AIRFLOW_ENV removes for the Airflow processes (their S3 comes from the connection).
demo: setup docker-up s3-up
	DKT_RETRAIN_SCHEDULE=none $(MAKE) --no-print-directory airflow
	$(AIRFLOW_ENV) DKT_S3_ENDPOINT_URL=$(DKT_S3_ENDPOINT_URL) DKT_S3_BUCKET=$(DKT_S3_BUCKET) \
	  AWS_DEFAULT_REGION=$(AWS_DEFAULT_REGION) $(S3_LOCAL_CREDS) $(BIN)/python scripts/demo.py --users $(DEMO_USERS) --new-users $(DEMO_NEW_USERS)

## demo-stop: stop the demo's client, Airflow, the stack and the embedded S3 (dockerd and the registry stay)
demo-stop:
	-@if [ -f $(CLIENT_PIDFILE) ]; then pid=$$(cat $(CLIENT_PIDFILE)); \
	  kill -TERM -- -$$pid 2>/dev/null || kill -TERM $$pid 2>/dev/null || true; rm -f $(CLIENT_PIDFILE); \
	  echo "client: stopped the demo's web client (process group $$pid)"; else echo "client: no demo client pid file"; fi
	-$(MAKE) --no-print-directory airflow-stop undeploy s3-down

.PHONY: demo demo-stop
