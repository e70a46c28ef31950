# dkt-platform — run `make help` for the targets.
# Feature areas add their own targets in mk/*.mk (included below) and may append to TEST_PREREQS.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DKT_HOME ?= $(CURDIR)/.dkt
export DKT_HOME

# Embedded defaults (override in the environment to use AWS S3 / MinIO, another registry, ...).
DKT_S3_ENDPOINT_URL ?= http://127.0.0.1:9000
DKT_S3_BUCKET ?= dkt-platform
AWS_DEFAULT_REGION ?= us-east-1
export DKT_S3_ENDPOINT_URL DKT_S3_BUCKET AWS_DEFAULT_REGION
# OpenMP busy-waiting collapses LightGBM/torch throughput on 2 shared cores.
export OMP_WAIT_POLICY ?= PASSIVE

PYTEST_ARGS ?=
TEST_PREREQS := setup

## help: list the targets (with the values of the variables they name, e.g. the ports in use)
# Variables named in the help lines, expanded when `make help` runs (after mk/*.mk defined them).
HELP_VARS = $(sort $(shell grep -hE '^## ' $(MAKEFILE_LIST) | grep -oE '\$$\([A-Za-z_][A-Za-z0-9_]*\)' | tr -d '$$()'))
help:
	@grep -hE '^## ' $(MAKEFILE_LIST) $(foreach v,$(HELP_VARS),| sed -e 's|\$$($(v))|$(subst |,\|,$($(v)))|g') \
	  | sed -E 's/^## ([^:]+): */\1\t/' | awk -F '\t' '{printf "  %-16s %s\n", $$1, $$2}'

## setup: create .venv and install dkt_core with every pinned dependency (idempotent)
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: install python3.11 (and python3.11-venv) first." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[ml,serve,client,deploy,airflow,dev]'
	touch $@

## lint: ruff over the whole tree
lint: setup
	$(BIN)/ruff check dkt_core tests bench dags plugins bento_service scripts

-include mk/*.mk

## test: everything CI runs (unit + integration: moto, bentoml, browser, Airflow, docker/swarm)
test: $(TEST_PREREQS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Markers of tests that start real services (pyproject.toml); targets select by marker, never by file lists.
SERVICE_MARKERS := integration or docker or airflow or browser or realdata or slow

## unit: the fast tests: no service marker (no root, dockerd, apt or network needed)
unit: setup
	$(BIN)/python -m pytest -m "not ($(SERVICE_MARKERS))" -q $(PYTEST_ARGS)

.PHONY: help setup lint test unit
