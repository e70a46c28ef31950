# `make demo`: one full retrain-and-deploy cycle on embedded defaults (see scripts/demo.py).

DEMO_USERS ?= 300
DEMO_NEW_USERS ?= 300

## demo: set up everything (S3, registry, swarm, Airflow), train + deploy, upload new data, retrain + roll out
demo: setup docker-up s3-up
	DKT_RETRAIN_SCHEDULE=none $(MAKE) --no-print-directory airflow
	$(AIRFLOW_ENV) $(S3_LOCAL_CREDS) $(BIN)/python scripts/demo.py --users $(DEMO_USERS) --new-users $(DEMO_NEW_USERS)

## demo-stop: stop the demo's client, Airflow, the stack and the embedded S3 (dockerd and the registry stay)
demo-stop:
	-pkill -f "gunicorn.*dkt_core.webclient" || true
	-$(MAKE) --no-print-directory airflow-stop undeploy s3-down

.PHONY: demo demo-stop
