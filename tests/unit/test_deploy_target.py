"""Deploy exactly what was asked (issue 11 item 9): the model is resolved once, from the artifact's own
version or the named tag; 'latest' only when nothing is named, by packaging's one rule. Also the
"already running" rule, image pinning and the rollout settings. The Swarm side is in
tests/integration/test_swarm_*.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dkt_core.deploy.pipeline import resolve_target
from dkt_core.deploy.rollout import already_running, pinned
from dkt_core.deploy.settings import DeploySettings
from dkt_core.packaging import PackagingError, package_artifact, resolve_tag
from tests.unit.test_packaging import _artifact

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("order", [("older", "newer"), ("newer", "older")])
def test_a_model_dir_deploys_its_own_version_whatever_the_store_holds(tmp_path, order):
    """Both artifacts packaged, in either order: each MODEL= resolves to itself, never to the newest."""
    home = tmp_path / "bentoml"
    arts = {"older": _artifact(tmp_path, "20250101-000000-old"), "newer": _artifact(tmp_path, "20250201-000000-new")}
    for name in order:
        package_artifact(arts[name], home)
    newest = resolve_tag(None, home)  # the store's newest = the last packaged
    assert newest == f"dkt-model:{arts[order[-1]].name}"
    for name, art in arts.items():
        target = resolve_target(model=art, home=home)
        assert (target.tag, target.model_version) == (f"dkt-model:{art.name}", art.name), name
        assert target.path == home / "models" / "dkt-model" / art.name and target.data_version == "d1"


def test_packaging_again_keeps_the_artifacts_version(tmp_path):
    """The issue's case: an earlier run's artifact (already packaged: packaging is idempotent) deployed
    after a newer model entered the store."""
    home = tmp_path / "bentoml"
    old, new = _artifact(tmp_path, "v1"), _artifact(tmp_path, "v2")
    package_artifact(old, home)
    package_artifact(new, home)
    assert resolve_target(model=old, home=home).model_version == "v1"
    assert resolve_target(tag="dkt-model:v1", home=home).tag == "dkt-model:v1"
    # nothing named: the newest, by the same rule `dkt serve` uses
    assert resolve_target(home=home).tag == resolve_tag("latest", home) == "dkt-model:v2"


def test_target_errors_say_what_to_fix(tmp_path):
    home = tmp_path / "bentoml"
    art = _artifact(tmp_path, "v1")
    with pytest.raises(ValueError, match="not both"):
        resolve_target(tag="dkt-model:v1", model=art, home=home)
    with pytest.raises(PackagingError, match="dkt package"):
        resolve_target(home=home)  # empty store
    with pytest.raises(PackagingError, match="not in the BentoML store"):
        resolve_target(tag="dkt-model:nope", home=home)
    with pytest.raises(PackagingError, match="dkt train"):
        resolve_target(model=tmp_path / "missing", home=home)


def test_cli_usage_errors_exit_2(tmp_path):
    env_home = {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True", "PATH": "/usr/bin:/bin"}
    both = subprocess.run([sys.executable, "-m", "dkt_core.deploy", "deploy", "--model", str(tmp_path), "--tag", "x"],
                          capture_output=True, text=True, env=env_home)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    missing = subprocess.run([sys.executable, "-m", "dkt_core.deploy", "deploy", "--model", str(tmp_path / "nope")],
                             capture_output=True, text=True, env=env_home)
    assert missing.returncode == 2 and "dkt train" in missing.stderr, missing.stderr


def test_already_running_compares_name_and_digest():
    image = "127.0.0.1:5000/dkt-inference:v1-d-abc"
    assert pinned(image, DIGEST) == f"{image}@{DIGEST}" and pinned(image, None) == image
    assert pinned(f"{image}@sha256:old", DIGEST) == f"{image}@{DIGEST}"
    assert already_running(f"{image}@{DIGEST}", image, DIGEST)
    assert already_running(image, image)  # an identical spec: Swarm would start no update
    assert already_running(f"{image}@{DIGEST}", image)  # tags are immutable
    assert not already_running(f"{image}@sha256:{'b' * 64}", image, DIGEST)  # same tag, other content
    assert not already_running(image, image, DIGEST)  # unknown running content: update to the pinned one
    assert not already_running(f"{image.replace('v1', 'v2')}@{DIGEST}", image, DIGEST)


def test_rollout_timeouts_from_env(monkeypatch):
    assert (DeploySettings.from_env().rollout_timeout_s, DeploySettings.from_env().smoke_timeout_s) == (300.0, 30.0)
    monkeypatch.setenv("DKT_ROLLOUT_TIMEOUT_S", "45")
    monkeypatch.setenv("DKT_SMOKE_TIMEOUT_S", "5.5")
    assert (DeploySettings.from_env().rollout_timeout_s, DeploySettings.from_env().smoke_timeout_s) == (45.0, 5.5)
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("DKT_ROLLOUT_TIMEOUT_S", bad)
        with pytest.raises(ValueError, match="DKT_ROLLOUT_TIMEOUT_S must be a positive"):
            DeploySettings.from_env()
