# A Swarm of several nodes simulated on this machine (docs/deploy.md "Several nodes"): Docker-in-Docker node
# containers built from $(DKT_BASE_IMAGE), one manager + $(DKT_NODES_WORKERS) workers, and a registry they all
# pull from. Separate from the host's own swarm, registry and stack (make docker-up), which it never touches.
DKT_NODES ?= dkt-nodes
DKT_NODES_WORKERS ?= 2
DKT_NODES_API_PORT ?= 8100
DKT_NODES_REGISTRY_PORT ?= 5001
export DKT_NODES DKT_NODES_WORKERS DKT_NODES_API_PORT DKT_NODES_REGISTRY_PORT

## swarm-nodes: start/repair the simulated multi-node Swarm $(DKT_NODES) (manager + $(DKT_NODES_WORKERS) workers; proxy port $(DKT_NODES_API_PORT), registry $(DKT_NODES_REGISTRY_PORT), both on 127.0.0.1)
swarm-nodes: docker-up
	scripts/docker/swarm-nodes.sh

## swarm-nodes-stop: remove the simulated nodes, their registry and network (by container id; idempotent)
swarm-nodes-stop:
	scripts/docker/swarm-nodes-stop.sh


# the cluster's registry, manager and proxy port as dkt_core.deploy settings (swarm-nodes.sh writes the file)
NODES_ENV = set -a && . "$(DKT_HOME)/swarm-nodes/$(DKT_NODES)/cluster.env" && set +a

## swarm-nodes-deploy: `make deploy` onto the simulated nodes (MODEL=/TAG= as there; built here, pushed to their registry, 3 replicas)
swarm-nodes-deploy: setup swarm-nodes
	$(NODES_ENV) && export DKT_INFERENCE_REPLICAS=$${DKT_INFERENCE_REPLICAS:-3} && \
	$(BIN)/python -m dkt_core.deploy deploy $(if $(MODEL),--model $(MODEL),) $(if $(TAG),--tag $(TAG),)

## swarm-nodes-undeploy: remove the stack from the simulated nodes (they keep running)
swarm-nodes-undeploy: setup
	$(NODES_ENV) && $(BIN)/python -m dkt_core.deploy undeploy

.PHONY: swarm-nodes swarm-nodes-stop swarm-nodes-deploy swarm-nodes-undeploy
