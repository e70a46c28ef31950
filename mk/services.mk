# Embedded S3 (moto_server) on DKT_BIND_HOST (loopback) for development, tests and the demo.
# moto keeps objects in memory: `make s3-down` (or a reboot) forgets them; `make s3-seed` recreates the
# bucket and the simulated initial log. Pid and log live under $(DKT_HOME).

DKT_S3_PORT ?= $(or $(lastword $(subst :, ,$(DKT_S3_ENDPOINT_URL))),9000)
SEED_USERS ?= 200
SEED_SEED ?= 7
S3_PIDFILE := $(DKT_HOME)/run/moto.pid
S3_LOG := $(DKT_HOME)/logs/moto.log
# moto accepts any key pair; real endpoints take credentials from the usual AWS chain instead.
S3_LOCAL_CREDS := AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-testing} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-testing}

port_open = $(BIN)/python -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $(1))))"

## s3-up: start the embedded S3 (moto_server) on $(DKT_BIND_HOST):$(DKT_S3_PORT) unless something listens
s3-up: setup
	@mkdir -p $(DKT_HOME)/run $(DKT_HOME)/logs
	@if $(call port_open,$(DKT_S3_PORT)); then echo "S3: something already listens on 127.0.0.1:$(DKT_S3_PORT)"; \
	else setsid $(BIN)/moto_server -H $(DKT_BIND_HOST) -p $(DKT_S3_PORT) >>$(S3_LOG) 2>&1 < /dev/null & echo $$! > $(S3_PIDFILE); \
	  for i in $$(seq 1 100); do $(call port_open,$(DKT_S3_PORT)) && break; sleep 0.1; done; \
	  $(call port_open,$(DKT_S3_PORT)) || { echo "moto_server did not start; see $(S3_LOG)" >&2; exit 1; }; \
	  echo "S3: moto_server on http://127.0.0.1:$(DKT_S3_PORT) (pid $$(cat $(S3_PIDFILE)), log $(S3_LOG))"; fi

## s3-down: stop the embedded S3 started by s3-up (its objects are lost)
s3-down:
	@if [ -f $(S3_PIDFILE) ]; then pid=$$(cat $(S3_PIDFILE)); \
	  kill -KILL -- -$$pid 2>/dev/null || kill -KILL $$pid 2>/dev/null || true; rm -f $(S3_PIDFILE); \
	  echo "S3: stopped moto_server (pid $$pid)"; else echo "S3: no moto_server started by s3-up"; fi

## s3-seed: create the bucket and upload a simulated initial interaction log (SEED_USERS, SEED_SEED) (dkt seed)
s3-seed: s3-up
	@$(S3_LOCAL_CREDS) $(BIN)/dkt seed --users $(SEED_USERS) --seed $(SEED_SEED) \
	  --out $(DKT_HOME)/seed/initial-u$(SEED_USERS)-s$(SEED_SEED).csv

.PHONY: s3-up s3-down s3-seed
