#!/bin/sh
# Entrypoint of a simulated Swarm node (docker/node.Dockerfile, scripts/docker/swarm-nodes.sh): make the
# cgroup mounts writable, forward the node network's registry to this node's loopback, run dockerd.
#
# Not --privileged: this host's capability bounding set lacks CAP_SYS_RESOURCE, so Docker's "all
# capabilities" fails ("unable to apply caps"). The node runs with every other capability, unconfined
# seccomp/AppArmor/system paths and all devices, and remounts what --privileged would have left writable.
#
# Why a registry forwarder: every node then pulls from 127.0.0.1:$DKT_NODE_REGISTRY_PORT, the very name the
# host pushes to (the registry's port published on the host's loopback), and Docker trusts a loopback
# registry over plain HTTP without an insecure-registries entry or TLS. The plain-HTTP hop stays on the node
# network (a bridge on this host); the registry still requires a login for every pull and push.
set -eu
mount -o remount,rw /sys 2>/dev/null || true
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  # cgroup v2 (as moby's dind does): writable, this shell's processes out of the root group, controllers enabled
  mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control || true
else
  # cgroup v1 (this machine): one read-only bind mount per controller
  for d in /sys/fs/cgroup/*; do [ -L "$d" ] || mount -o remount,bind,rw "$d" 2>/dev/null || true; done
fi
if [ -n "${DKT_NODE_REGISTRY:-}" ]; then
  socat "TCP-LISTEN:${DKT_NODE_REGISTRY_PORT:?},bind=127.0.0.1,fork,reuseaddr" "TCP:${DKT_NODE_REGISTRY}" &
fi
# a killed node (docker kill, then docker start) leaves its pid files in the container's layer: dockerd would refuse
rm -rf /var/run/docker.pid /var/run/docker /run/dkt-node/docker.sock
mkdir -p /run/dkt-node
# A second socket in a folder the host bind-mounts: the host's CLI/SDK reach this node's dockerd through it
# (no TCP API anywhere). --no-new-privileges as on the host (docs/security.md).
exec dockerd --no-new-privileges -H unix:///var/run/docker.sock -H unix:///run/dkt-node/docker.sock "$@"
