"""The host's listening sockets, read with ``ss`` (issue 12: every platform listener is on loopback).

``listeners()`` lists TCP sockets in LISTEN state (``udp=True``: bound UDP sockets, e.g. the kernel's VXLAN
socket of a Swarm overlay, which has no process). ``of_session(pid)``: the sockets of every process in the
session led by ``pid`` (what a make target started under ``setsid`` and recorded in its pid file)."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    processes: tuple[str, ...]
    pids: tuple[int, ...] = ()
    proto: str = "tcp"

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def listeners(udp: bool = False) -> list[Listener]:
    """Every listening TCP socket (``udp``: every bound UDP socket) of this network namespace, with the names
    and pids of the processes holding it (none for a kernel socket)."""
    out = subprocess.run(["ss", "-Hlunp" if udp else "-Hltnp"], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        local = cols[3]
        host, _, port = local.rpartition(":")
        host = host.strip("[]").split("%")[0]
        host = {"*": "0.0.0.0", "": "0.0.0.0"}.get(host, host)
        found.append(Listener(host, int(port), tuple(re.findall(r'\("([^"]+)"', line)),
                              tuple(int(p) for p in re.findall(r"pid=(\d+)", line)), "udp" if udp else "tcp"))
    return found


def on_port(port: int) -> list[Listener]:
    return [sock for sock in listeners() if sock.port == port]


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:  # the process ended between ss and here
        return None


def of_session(leader: int, udp: bool = False) -> list[Listener]:
    """The sockets held by processes of the session whose leader is ``leader`` (TCP listening, or UDP)."""
    return [sock for sock in listeners(udp) if any(_session(p) == leader for p in sock.pids)]
