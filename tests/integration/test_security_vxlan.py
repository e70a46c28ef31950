"""The one listener the platform cannot put on loopback (docs/security.md, known limit): Swarm's overlay
data path, the kernel's VXLAN socket on 4789/udp, binds every address even with `docker swarm init
--data-path-addr 127.0.0.1` (`make docker-up`; moby/moby#47667). This test pins the limit down: that socket
has no process (the kernel's) and is the only pid-less UDP socket off loopback, and dockerd's own sockets
are on loopback. It fails when Docker changes this, so the documentation changes with it.

Marker: docker (needs `make docker-up`)."""

from __future__ import annotations

import pytest

from tests.docker.fixtures import require_swarm
from tests.listeners import listeners

pytestmark = [pytest.mark.docker]


def test_only_the_kernels_vxlan_socket_is_off_loopback():
    client = require_swarm()
    swarm = client.info()["Swarm"]
    assert swarm["NodeAddr"] == "127.0.0.1", swarm["NodeAddr"]  # make docker-up's --advertise/--data-path-addr
    port = client.info().get("Swarm", {}).get("Cluster", {}).get("DataPathPort") or 4789
    udp = listeners(udp=True)
    kernel_exposed = {(s.address, s.port) for s in udp if not s.pids and not s.loopback}
    assert kernel_exposed <= {("0.0.0.0", port), ("::", port)}, kernel_exposed
    exposed_daemon = [s for s in udp + listeners() if "dockerd" in s.processes and not s.loopback]
    assert not exposed_daemon, exposed_daemon
