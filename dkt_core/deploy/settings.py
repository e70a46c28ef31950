"""Deployment settings from the environment (embedded defaults: loopback registry and proxy) and the
immutable image tag scheme `<model_version>-<data_version>-<gitsha>`."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Docker tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _sanitize(part: str, what: str) -> str:
    clean = _UNSAFE.sub("_", part.strip()).strip("._-")
    if not clean:
        raise ValueError(f"{what} {part!r} is empty after removing characters a Docker tag cannot hold")
    return clean


def image_tag(model_version: str, data_version: str, git_sha: str) -> str:
    """The immutable tag: what is inside (model, data, code). `latest` is never used for updates."""
    sha, dot, suffix = git_sha.partition(".")  # keep a ".dirty" suffix when shortening the sha
    tag = "-".join(
        [
            _sanitize(model_version, "model_version"),
            _sanitize(data_version, "data_version")[:16],
            _sanitize(sha, "git sha")[:12] + (dot + _sanitize(suffix, "git sha suffix") if suffix else ""),
        ]
    )
    if not _TAG_RE.match(tag):
        raise ValueError(f"tag {tag!r} is not a valid Docker tag (max 128 chars of [A-Za-z0-9_.-])")
    return tag


def git_sha(repo: Path = REPO_ROOT) -> str:
    """Short sha of HEAD, suffixed `.dirty` when tracked files differ (so a tag never lies about code)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "diff", "--quiet", "HEAD", "--", "dkt_core", "bento_service", "docker"],
            capture_output=True,
        ).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("DKT_GIT_SHA", "nogit")
    return f"{sha}.dirty" if dirty else sha


def _positive(env, name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


@dataclass(frozen=True)
class DeploySettings:
    registry: str = "127.0.0.1:5000"
    stack: str = "dkt"
    inference_repo: str = "dkt-inference"
    proxy_repo: str = "dkt-proxy"
    client_repo: str = "dkt-client"
    api_port: int = 8000
    client_port: int = 8088
    base_image: str = "python:3.11-slim"
    home: Path = REPO_ROOT / ".dkt"
    # How long a rolling update may take to settle before it counts as failed (and is rolled back), and
    # how long the smoke test through the proxy may wait for the new version.
    rollout_timeout_s: float = 300.0
    smoke_timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> DeploySettings:
        env = os.environ
        return cls(
            registry=env.get("DKT_REGISTRY", cls.registry).rstrip("/"),
            stack=env.get("DKT_STACK", cls.stack),
            api_port=int(env.get("DKT_API_PORT", cls.api_port)),
            client_port=int(env.get("DKT_CLIENT_PORT", cls.client_port)),
            base_image=env.get("DKT_BASE_IMAGE", cls.base_image),
            home=Path(env.get("DKT_HOME", str(cls.home))),
            rollout_timeout_s=_positive(env, "DKT_ROLLOUT_TIMEOUT_S", cls.rollout_timeout_s),
            smoke_timeout_s=_positive(env, "DKT_SMOKE_TIMEOUT_S", cls.smoke_timeout_s),
        )

    def image(self, repo: str, tag: str) -> str:
        """Fully qualified reference in the configured registry (empty registry = Docker Hub names)."""
        return f"{self.registry}/{repo}:{tag}" if self.registry else f"{repo}:{tag}"

    @property
    def service(self) -> str:
        """Swarm name of the inference service (stack deploy prefixes the stack name)."""
        return f"{self.stack}_inference"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"
