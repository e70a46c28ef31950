"""The host's listening TCP sockets, read with ``ss`` (issue 12: every platform listener is on loopback)."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    processes: tuple[str, ...]

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def listeners() -> list[Listener]:
    """Every listening TCP socket of this network namespace (``ss -Hltnp``), with its process names."""
    out = subprocess.run(["ss", "-Hltnp"], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        local = cols[3]
        host, _, port = local.rpartition(":")
        host = host.strip("[]").split("%")[0]
        host = {"*": "0.0.0.0", "": "0.0.0.0"}.get(host, host)
        found.append(Listener(host, int(port), tuple(re.findall(r'\("([^"]+)"', line))))
    return found


def on_port(port: int) -> list[Listener]:
    return [sock for sock in listeners() if sock.port == port]
