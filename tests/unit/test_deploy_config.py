"""compose.yaml keeps the zero-downtime rules; the nginx config renders and passes `nginx -t`."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import MISSING, free_port

REPO = Path(__file__).resolve().parents[2]


def _seconds(v: str) -> float:
    m = re.fullmatch(r"(?:\$\{[A-Z_]+:-)?(\d+(?:\.\d+)?)s\}?", str(v))
    assert m, f"unparsable duration {v!r}"
    return float(m.group(1))


def test_inference_update_rules():
    spec = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["inference"]
    dep, hc = spec["deploy"], spec["healthcheck"]
    assert dep["endpoint_mode"] == "dnsrr"
    assert int(str(dep["replicas"]).split(":-")[-1].rstrip("}")) >= 2
    up = dep["update_config"]
    assert (up["order"], up["parallelism"], up["failure_action"]) == ("start-first", 1, "rollback")
    assert _seconds(up["monitor"]) >= _seconds(hc["start_period"]) + _seconds(hc["interval"]) * hc["retries"]
    assert dep["rollback_config"]["order"] == "start-first"
    assert "limits" in dep["resources"] and spec["stop_grace_period"]
    assert "/readyz" in " ".join(hc["test"]) and "curl" not in " ".join(hc["test"])


def test_public_ports_are_host_mode():
    services = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
    assert "ports" not in services["inference"]
    for name in ("proxy", "client"):
        assert all(p["mode"] == "host" for p in services[name]["ports"])


@pytest.mark.skipif(not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(),
                    reason=MISSING + "nginx is absent: apt-get install nginx")
def test_nginx_config_is_valid(tmp_path):
    conf = (REPO / "docker" / "nginx.conf.template").read_text()
    conf = conf.replace("${UPSTREAM}", "127.0.0.1:3000").replace("${LISTEN_PORT}", str(free_port()))
    conf = conf.replace("/etc/nginx/dkt-proxy-common.conf", str(REPO / "docker" / "proxy-common.conf"))
    conf = conf.replace("/tmp/nginx.pid", str(tmp_path / "nginx.pid"))
    (tmp_path / "nginx.conf").write_text(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.run([nginx, "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "err.log")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_client_env_names_the_bank_config_by_its_content(tmp_path):
    from dkt_core.deploy.stack import client_env

    bank = tmp_path / "bank.json"
    with pytest.raises(FileNotFoundError, match="make client-bank"):
        client_env("reg/dkt-client:abc", bank)
    bank.write_text('{"format": 1}')
    first = client_env("reg/dkt-client:abc", bank)
    assert first["DKT_CLIENT_IMAGE"] == "reg/dkt-client:abc" and first["DKT_CLIENT_BANK_FILE"] == str(bank.resolve())
    assert client_env("reg/dkt-client:abc", bank)["DKT_CLIENT_BANK_ID"] == first["DKT_CLIENT_BANK_ID"]
    bank.write_text('{"format": 2}')  # a new bank is a new (immutable) Docker config
    assert client_env("reg/dkt-client:abc", bank)["DKT_CLIENT_BANK_ID"] != first["DKT_CLIENT_BANK_ID"]
