"""Look for secret values where none may be (issue 12: no secret in an env, XCom or log).

A test names each secret in play by its kind ("S3 secret key", "registry password", "API key 'smoke'", ...)
and collects the places a run left text in (task logs, Airflow's files and database, XCom values, service
logs and specs); ``leaks`` says which kind appeared in which place, and never the value itself, so a failing
test does not print the secret it found.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

MIN_SECRET_LEN = 12  # shorter values (moto's "testing") would match innocent text: a test must use real ones


@dataclass(frozen=True)
class Secret:
    kind: str  # what it is, for the failure message
    value: str
    user: str | None = None  # for a password: also look for HTTP basic auth's base64("user:password")

    def forms(self) -> tuple[bytes, ...]:
        """The value as written to a log or a JSON document, and base64 forms a header or config would hold."""
        raw = self.value.encode()
        forms = {raw, json.dumps(self.value)[1:-1].encode(), base64.b64encode(raw).rstrip(b"=")}
        if self.user:
            forms.add(base64.b64encode(f"{self.user}:{self.value}".encode()).rstrip(b"="))
        return tuple(forms)


def secret(kind: str, value: str, user: str | None = None) -> Secret:
    value = value.strip()
    if len(value) < MIN_SECRET_LEN:
        raise ValueError(f"the {kind} in play is {len(value)} characters: a test must use a random secret of at "
                         f"least {MIN_SECRET_LEN} so that finding it means a leak")
    return Secret(kind, value, user)


def leaks(secrets: Iterable[Secret], places: Mapping[str, str | bytes]) -> list[str]:
    """'<kind> in <place>' for every secret found in a place (text or bytes)."""
    found = []
    for where, text in places.items():
        data = text.encode(errors="replace") if isinstance(text, str) else text
        for s in secrets:
            if any(form in data for form in s.forms()):
                found.append(f"{s.kind} in {where}")
    return found


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (logs, configuration, SQLite databases), by path.

    Read by another process (tar), never opened here: this process may hold the same SQLite database open
    (Airflow's metadata DB, in WAL mode), and closing any descriptor of a file drops every POSIX lock the
    process holds on it, SQLite's included; its later queries then fail with "disk I/O error"."""
    root = Path(root)
    proc = subprocess.run(["tar", "-C", str(root), "--warning=no-file-changed", "-cf", "-", "."],
                          capture_output=True, timeout=300)
    # 1: a file changed while it was read (a live log); its bytes are still in the archive
    assert proc.returncode in (0, 1), f"tar of {root} failed: {proc.stderr.decode(errors='replace')[-500:]}"
    files = {}
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        for member in tar:
            if member.isfile():
                files[str(root / member.name)] = tar.extractfile(member).read()
    return files


def stack_places(stack: str) -> dict[str, str]:
    """Of every service of Swarm stack ``stack``: its logs (``docker service logs``) and its full spec
    (``docker service inspect``: Env, labels, args, mounts), and the config of each of its containers."""
    def run(*args: str) -> str:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"docker {' '.join(args[:2])} failed: {proc.stderr[-500:]}"
        return proc.stdout + proc.stderr

    services = run("service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").split()
    assert services, f"stack {stack} has no services"
    places = {}
    for sid in services:
        name = run("service", "inspect", "--format", "{{.Spec.Name}}", sid).strip()
        places[f"docker service logs {name}"] = run("service", "logs", "--raw", "--timestamps", sid)
        places[f"docker service inspect {name}"] = run("service", "inspect", sid)
    for cid in run("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").split():
        places[f"docker inspect container {cid[:12]}"] = run("inspect", cid)
    return places


def xcom_places(runs: Iterable) -> dict[str, str]:
    """Every XCom of every task instance of these dag runs, by run and task."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    places = {}
    with create_session() as session:
        for run in runs:
            rows = session.query(XComModel).filter(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id)
            for x in rows:
                places[f"XCom {run.run_id} {x.task_id}[{x.map_index}] {x.key}"] = json.dumps(x.value, default=str)
    return places
