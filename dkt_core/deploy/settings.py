"""The immutable image tag scheme `<model_version>-<data_version>-<gitsha>`; ``DeploySettings`` (registry,
stack, ports, timeouts; embedded defaults: loopback registry and proxy) is declared in dkt_core/settings.py,
the one settings surface, and re-exported here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from dkt_core.settings import DeploySettings as DeploySettings  # re-exported

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


def git_sha(repo: Path = REPO_ROOT, fallback: str = "nogit") -> str:
    """Short sha of HEAD, suffixed `.dirty` when tracked files differ (so a tag never lies about code);
    ``fallback`` (DeploySettings.git_sha, DKT_GIT_SHA) where git cannot tell."""
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
        return fallback
    return f"{sha}.dirty" if dirty else sha
