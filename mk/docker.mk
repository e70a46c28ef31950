# Docker/Swarm targets (see docs/deploy.md). CI runs `docker-up` before the tests (TEST_PREREQS).
# The one address every listener of the platform binds (docs/security.md "Listeners"); 0.0.0.0 exposes them.
DKT_BIND_HOST ?= 127.0.0.1
DKT_REGISTRY ?= 127.0.0.1:5000
DKT_BASE_IMAGE ?= dkt-base:bookworm
DKT_STACK ?= dkt
DKT_API_PORT ?= 8000
DKT_CLIENT_PORT ?= 8088
# Optional CA bundle handed to builds that download packages (client image); harmless elsewhere.
DKT_BUILD_CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
export DKT_BIND_HOST DKT_REGISTRY DKT_BASE_IMAGE DKT_STACK DKT_API_PORT DKT_CLIENT_PORT DKT_BUILD_CA_BUNDLE

TEST_PREREQS += docker-up

## docker-up: install docker.io/debootstrap/registry/nginx if missing, start dockerd, swarm, registry, base image
docker-up:
	scripts/docker/up.sh

## base-image: (re)build the local Debian base image $(DKT_BASE_IMAGE) with debootstrap + docker import
base-image:
	scripts/docker/base-image.sh

## registry-up: start the local registry on $(DKT_REGISTRY) (login required: password in $(DKT_HOME)/registry/password, 0600)
registry-up:
	scripts/docker/registry-up.sh

## docker-down: remove the stack, stop the registry and the dockerd started by docker-up
docker-down:
	scripts/docker/down.sh

## deploy: exactly MODEL=artifact dir (its own version) or TAG=dkt-model:<v> (neither: newest packaged): package -> build -> push -> rolling update
deploy: setup docker-up
	$(BIN)/python -m dkt_core.deploy deploy $(if $(MODEL),--model $(MODEL),) $(if $(TAG),--tag $(TAG),)

## client-image: build and push the web client image (export the printed tag as DKT_CLIENT_IMAGE)
client-image: setup docker-up
	$(BIN)/python -m dkt_core.deploy client-image

## client-s3-credentials: make the web client's own S3 key (PutObject under the raw prefix only) with your credentials
client-s3-credentials: setup
	$(BIN)/python -m dkt_core.deploy client-s3-credentials

## undeploy: remove the Swarm stack $(DKT_STACK)
undeploy: setup
	$(BIN)/python -m dkt_core.deploy undeploy

## test-docker: only the docker/swarm tests
test-docker: setup docker-up
	$(BIN)/python -m pytest -m docker $(PYTEST_ARGS)

.PHONY: docker-up base-image registry-up docker-down deploy client-image client-s3-credentials undeploy test-docker
