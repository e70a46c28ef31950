"""The one settings surface (issue 14 item 3): one parser with errors naming the variable, one DKT_HOME default,
one BentoML-home rule, the README's table generated from dkt_core/settings.py and complete, and no module of
dkt_core other than settings.py reading the environment."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from dkt_core import settings
from dkt_core.settings import (
    AirflowSettings,
    ClientSettings,
    DeploySettings,
    ReadLimits,
    RetrainSettings,
    ServingSettings,
    load,
)

ROOT = Path(__file__).resolve().parents[2]

# The edges: the only modules of dkt_core that load settings (the `dkt` CLI and its commands, `python -m
# dkt_core.deploy`, the web client's app factory, its command line and gunicorn config). Every other module
# receives values from its caller (the DAG tasks, plugins and bento_service/service.py are edges outside dkt_core).
EDGES: tuple[str, ...] = ("dkt_core/settings.py", "dkt_core/cli.py", "dkt_core/commands/", "dkt_core/deploy/__main__.py",
                          "dkt_core/webclient/app.py", "dkt_core/webclient/__main__.py",
                          "dkt_core/webclient/gunicorn_conf.py")

# Modules below the edges that touch os.environ, and why: never to read a setting, only to hand the environment
# on to a child process.
ENV_ALLOWED: dict[str, str] = {
    "dkt_core/deploy/inference.py": "runs the image build with the environment plus SOURCE_DATE_EPOCH",
    "dkt_core/deploy/stack.py": "passes the environment plus the stack's values to `docker stack deploy`",
}

_LOADERS = ("load", "load_all", "home", "bentoml_home")


def is_edge(module: str) -> bool:
    return any(module == e or (e.endswith("/") and module.startswith(e)) for e in EDGES)


def env_uses(path: Path) -> list[int]:
    """Lines of ``path`` that use os.environ / os.getenv / putenv (imported names included)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr in ("environ", "getenv", "putenv", "environb"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" \
                and any(a.name in ("environ", "getenv", "putenv", "environb") for a in node.names):
            lines.append(node.lineno)
    return lines


def settings_loads(path: Path) -> list[int]:
    """Lines of ``path`` that load settings from the environment: ``X.from_env()`` (any settings class; docker's
    client factory aside), and ``load`` / ``load_all`` / ``home`` / ``bentoml_home`` of dkt_core.settings, called
    by an imported name or as ``settings.<name>``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
             and n.module == "dkt_core.settings" for a in n.names if a.name in _LOADERS}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "from_env" \
                and not (isinstance(f.value, ast.Name) and f.value.id == "docker"):
            lines.append(node.lineno)
        elif isinstance(f, ast.Name) and f.id in names:
            lines.append(node.lineno)
        elif isinstance(f, ast.Attribute) and f.attr in _LOADERS and isinstance(f.value, ast.Name) \
                and f.value.id == "settings":
            lines.append(node.lineno)
    return sorted(lines)


def _modules() -> dict[str, Path]:
    return {str(p.relative_to(ROOT)): p for p in sorted((ROOT / "dkt_core").rglob("*.py"))}


def test_only_edges_and_child_processes_touch_the_environment_in_dkt_core():
    found = {mod: env_uses(p) for mod, p in _modules().items()}
    offenders = {mod: lines for mod, lines in found.items() if lines and not is_edge(mod) and mod not in ENV_ALLOWED}
    assert not offenders, f"read settings from dkt_core.settings at an edge and pass values down: {offenders}"
    stale = [mod for mod in ENV_ALLOWED if not found.get(mod)]
    assert not stale, f"allow-list entries that no longer touch the environment: {stale}"


def test_settings_are_loaded_only_at_the_edges():
    """No module below the edges loads settings (no deep ``from_env()`` fallback): no allow-list."""
    offenders = {mod: lines for mod, p in _modules().items() if not is_edge(mod) and (lines := settings_loads(p))}
    assert not offenders, ("load settings at an edge (CLI command, DAG task, service, client app factory) and pass "
                           f"them down: {offenders}")
    assert any(settings_loads(p) for mod, p in _modules().items() if is_edge(mod))  # the checker sees the edges


def test_settings_load_checker_sees_every_spelling(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import docker\nfrom dkt_core import settings\nfrom dkt_core.settings import load as ld, home\n"
                   "a = S3Settings.from_env()\nb = ld(ReadLimits)\nc = home()\nd = settings.bentoml_home()\n"
                   "e = docker.from_env()\nf = load(X)\n")
    assert settings_loads(src) == [4, 5, 6, 7]  # docker's from_env and a `load` not from dkt_core.settings aside


def test_env_checker_sees_every_spelling(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\nfrom os import getenv\nx = os.environ.get('A')\ny = os.getenv('B')\n")
    assert sorted(env_uses(src)) == [2, 3, 4]


def test_readme_table_is_generated_from_settings():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", text, re.S)
    assert block, "README.md lost its settings-table markers"
    assert block.group(1) == settings.markdown_table(), "regenerate it: dkt settings --write README.md"


def test_every_dkt_variable_in_the_repository_is_declared():
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True).stdout
    seen: dict[str, str] = {}
    for name in files.split():
        path = ROOT / name
        if not path.is_file() or path.suffix in (".png", ".gz", ".parquet", ".lock"):
            continue
        for var in re.findall(r"DKT_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_*])", path.read_text(errors="replace")):
            seen.setdefault(var, name)
    missing = {var: where for var, where in seen.items() if var not in settings.VARS}
    assert not missing, f"declare these in dkt_core/settings.py (they reach the README table): {missing}"
    assert len([v for v in settings.VARS if v.startswith("DKT_")]) >= 54


def test_defaults_equal_a_direct_construction():
    env: dict[str, str] = {}
    assert load(RetrainSettings, env) == RetrainSettings(cache_dir=settings.home(env) / "cache" / "retrain")
    assert ReadLimits.from_env(env) == ReadLimits()
    assert load(ServingSettings, env) == ServingSettings()
    assert load(AirflowSettings, env).models == ("lgbm", "lstm")


def test_one_dkt_home_default_and_paths_follow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert settings.home({}) == tmp_path / ".dkt"
    assert settings.home({"DKT_HOME": ""}) == tmp_path / ".dkt"
    other = tmp_path / "elsewhere"
    env = {"DKT_HOME": str(other)}
    assert load(RetrainSettings, env).cache_dir == other / "cache" / "retrain"
    client = load(ClientSettings, env)
    assert (client.bank_path, client.spool_dir, client.state_db) == (
        other / "client" / "bank.json", other / "client" / "spool", other / "client" / "state.sqlite")
    assert client.secret_key_path == other / "client" / "session.secret"
    assert load(DeploySettings, env).home == other
    assert load(RetrainSettings, {**env, "DKT_RETRAIN_CACHE": "/c"}).cache_dir == Path("/c")


def test_one_bentoml_home_rule(tmp_path):
    assert settings.bentoml_home({}) == Path.home() / "bentoml"
    assert settings.bentoml_home({"BENTOML_HOME": str(tmp_path)}) == tmp_path


@pytest.mark.parametrize(("name", "value", "message"), [
    ("DKT_SERVE_WORKERS", "two", "DKT_SERVE_WORKERS must be a whole number >= 1, got 'two'"),
    ("DKT_SERVE_WORKERS", "0", "DKT_SERVE_WORKERS must be a whole number >= 1, got '0'"),
    ("DKT_HOLDOUT_FRACTION", "1.5", "DKT_HOLDOUT_FRACTION must be a number in (0, 1), got '1.5'"),
    ("DKT_DEPLOY", "k8s", "DKT_DEPLOY must be one of ('swarm', 'none'), got 'k8s'"),
    ("DKT_CLIENT_COOKIE_SECURE", "maybe", "DKT_CLIENT_COOKIE_SECURE must be one of"),
    ("DKT_API_TIMEOUT_S", "0.001", "DKT_API_TIMEOUT_S must be a number >= 0.05, got '0.001'"),
    ("DKT_SMOKE_TIMEOUT_S", "-3", "DKT_SMOKE_TIMEOUT_S must be a positive number of seconds, got '-3'"),
    ("DKT_CLIENT_LOGIN_LIMIT", "often", "DKT_CLIENT_LOGIN_LIMIT='often' is not a rate limit"),
])
def test_bad_values_are_refused_naming_the_variable(name, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        settings.load_all({name: value})


def test_values_are_typed_and_stripped():
    env = {"DKT_SERVE_WORKERS": " 3 ", "DKT_CLIENT_COOKIE_SECURE": "yes", "DKT_S3_CREATE_BUCKET": "0",
           "DKT_MODELS": "lgbm, saint,", "DKT_DEPLOY": "none", "DKT_API_URL": "http://x:1/"}
    assert load(ServingSettings, env).workers == 3
    client = load(ClientSettings, env)
    assert (client.cookie_secure, client.create_bucket, client.api_url) == (True, False, "http://x:1")
    assert load(AirflowSettings, env).models == ("lgbm", "saint")
    assert load(RetrainSettings, env).deploy == "none"


def test_direct_construction_uses_the_same_checks():
    with pytest.raises(ValueError, match=r"DKT_JUDGE_MIN_ROWS \(RetrainSettings.judge_min_rows\) must be"):
        RetrainSettings(judge_min_rows=-1)
    with pytest.raises(ValueError, match="DKT_API_PORT"):
        DeploySettings(api_port=0)


def test_batch_default_is_the_request_cap():
    from dkt_core.api import MAX_STUDENTS_PER_REQUEST

    assert settings.BATCH_MAX_STUDENTS.default == MAX_STUDENTS_PER_REQUEST


def test_dkt_settings_command(capsys):
    from dkt_core.cli import main

    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == settings.markdown_table()


def test_gunicorn_config_reads_client_server_settings(monkeypatch):
    import importlib

    monkeypatch.setenv("DKT_CLIENT_HOST", "127.0.0.2")
    monkeypatch.setenv("DKT_CLIENT_PORT", "18123")
    monkeypatch.setenv("DKT_CLIENT_WORKERS", "3")
    import dkt_core.webclient.gunicorn_conf as conf

    conf = importlib.reload(conf)
    assert (conf.bind, conf.workers, conf.threads) == ("127.0.0.2:18123", 3, 4)
    monkeypatch.setenv("DKT_CLIENT_WORKERS", "many")
    with pytest.raises(ValueError, match="DKT_CLIENT_WORKERS must be a whole number >= 1, got 'many'"):
        importlib.reload(conf)
