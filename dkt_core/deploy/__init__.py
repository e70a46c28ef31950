"""Deployment: immutable inference images (build/push with the Docker SDK), the local registry, Swarm
rollouts with health-gated start-first updates, smoke test and rollback, and a bounded loopback load
generator used by the tests and the benchmark.

Everything here needs the `deploy` extra (the Docker SDK); nothing imports torch or BentoML.
"""

from dkt_core.deploy.settings import DeploySettings, image_tag

__all__ = ["DeploySettings", "image_tag"]
