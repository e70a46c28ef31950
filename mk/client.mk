# Student web client (dkt_core/webclient): gunicorn on 127.0.0.1:$(DKT_CLIENT_PORT), spool -> S3.
# `make client` starts the embedded S3 if needed, builds the question bank once, then runs gunicorn in the
# foreground (Ctrl-C stops it; each worker seals and flushes its open batch on the way out).

DKT_CLIENT_PORT ?= 8088
CLIENT_BANK ?= $(DKT_HOME)/client/bank.json
# Items come from seed-format data; the default is the simulated initial log made by `make s3-seed`.
CLIENT_DATA ?= $(DKT_HOME)/seed/initial-u$(SEED_USERS)-s$(SEED_SEED).csv
CLIENT_ITEMS_PER_TEST ?= 10
# A real bank file (CSV or JSON, docs/client.md "Importing a bank"); empty: generated questions
CLIENT_IMPORT ?=
CLIENT_ENV = DKT_CLIENT_PORT=$(DKT_CLIENT_PORT) DKT_CLIENT_BANK=$(CLIENT_BANK) \
	$(if $(findstring 127.0.0.1,$(DKT_S3_ENDPOINT_URL)),AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-testing} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-testing})
CHROMIUM_PKGS := chromium chromium-driver

TEST_PREREQS += browser-deps

## client: serve the student web client with gunicorn on 127.0.0.1 port DKT_CLIENT_PORT (starts S3 via s3-up)
client: setup s3-up client-bank
	@echo "client: http://127.0.0.1:$(DKT_CLIENT_PORT)  (inference: $${DKT_API_URL:-http://127.0.0.1:3000})"
	$(CLIENT_ENV) exec $(BIN)/gunicorn -c python:dkt_core.webclient.gunicorn_conf dkt_core.webclient.wsgi:app

## client-bank: build the question bank $(CLIENT_BANK) from CLIENT_DATA with generated questions (once; rm it to rebuild; CLIENT_IMPORT=FILE imports a real bank instead)
client-bank: setup
	@if [ -f "$(CLIENT_BANK)" ]; then echo "client: bank $(CLIENT_BANK) exists"; \
	elif [ -n "$(CLIENT_IMPORT)" ]; then \
	  $(BIN)/python -m dkt_core.webclient build-bank --import "$(CLIENT_IMPORT)" --out "$(CLIENT_BANK)"; else \
	  [ -f "$(CLIENT_DATA)" ] || $(MAKE) --no-print-directory s3-seed; \
	  [ -f "$(CLIENT_DATA)" ] || { echo "no seed data at $(CLIENT_DATA): set CLIENT_DATA=PATH (seed-format CSV/Parquet)" >&2; exit 1; }; \
	  $(BIN)/python -m dkt_core.webclient build-bank --data "$(CLIENT_DATA)" --out "$(CLIENT_BANK)" \
	    --max-items-per-test $(CLIENT_ITEMS_PER_TEST) --generate; fi

## client-flush: put every sealed spool batch to S3 now (the workers also do it every few seconds)
client-flush: setup
	$(CLIENT_ENV) $(BIN)/python -m dkt_core.webclient flush

## client-test: the web client's tests (marker `client`: unit, gunicorn, full disk, headless browser)
client-test: setup browser-deps
	$(BIN)/python -m pytest -q -m client $(PYTEST_ARGS)

## client-screenshots: run the browser tests (client and Airflow report) saving their page PNGs to docs/screenshots
client-screenshots: setup browser-deps
	DKT_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q -m browser $(PYTEST_ARGS)

## browser-deps: install Debian's chromium + chromium-driver when missing (root; CI on a fresh machine)
browser-deps:
	@if command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; then echo "browser: chromium present"; \
	elif [ "$$(id -u)" != 0 ]; then echo "chromium is missing: run as root 'apt-get install -y $(CHROMIUM_PKGS)'" >&2; exit 1; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PKGS); fi

.PHONY: client client-bank client-flush client-test client-screenshots browser-deps
