# Inference service (bento_service/): `make package MODEL=DIR` stores a trained artifact as the BentoML model
# dkt-model:<version>; `make serve` serves the most recently packaged one (or DKT_MODEL_TAG) with
# `bentoml serve` on 127.0.0.1:$(DKT_SERVE_PORT). The model store is BENTOML_HOME (default ~/bentoml).

DKT_SERVE_PORT ?= 3000
DKT_SERVE_HOST ?= $(DKT_BIND_HOST)
# one worker per core: on 2 cores, 2 workers give ~1.6x the throughput of one (docs/serving.md)
DKT_SERVE_WORKERS ?= 2
DKT_MODEL_TAG ?=

## package: store a trained artifact as a BentoML model (MODEL=artifact dir from `dkt train`)
package: setup
	@test -n "$(MODEL)" || { echo "usage: make package MODEL=path/to/artifact (from dkt train --out)" >&2; exit 2; }
	$(BIN)/dkt package --model "$(MODEL)"

## serve: serve the newest packaged model (or DKT_MODEL_TAG) on DKT_SERVE_HOST:DKT_SERVE_PORT
serve: setup
	$(BIN)/dkt serve --host $(DKT_SERVE_HOST) --port $(DKT_SERVE_PORT) --workers $(DKT_SERVE_WORKERS) \
	  $(if $(DKT_MODEL_TAG),--tag $(DKT_MODEL_TAG))

## bench-serving: load benchmark of the served model vs. no batching (writes bench/results/serving.json)
bench-serving: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python bench/bench_serving.py

.PHONY: package serve bench-serving
