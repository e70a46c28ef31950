"""Build and push the inference image with the Docker SDK.

Two images, so that each build redoes only what changed:
1. deps image `dkt-deps:<hash of the wheel set + base>` from docker/deps.Dockerfile, installed offline
   from a host wheelhouse (`pip wheel -c requirements.lock`, torch from the pinned CPU wheel). Built
   once per lock change; `--network none`, so no CA bundle or pip settings are needed inside builds.
2. inference image FROM it: project wheel, service source, then the one model (last layer).

Errors in the SDK's build and push streams are detected and raised (`images.push` never raises).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dkt_core.deploy.settings import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
TORCH_WHEEL_DIR = Path("/opt/wheels")


class ImageError(RuntimeError):
    """A build or push failed; the message carries the daemon's error and the last log lines."""


@dataclass
class BuildResult:
    image: str
    image_id: str
    seconds: float
    size_bytes: int
    cached_steps: int
    total_steps: int
    log: list[str] = field(default_factory=list)


def _client():
    import docker  # the `deploy` extra; imported lazily so settings stay importable without it

    return docker.from_env(timeout=600)


def build_wheelhouse(requirements: list[str], dest: Path, constraints: Path = REPO_ROOT / "requirements.lock",
                     find_links: Iterable[Path] = (TORCH_WHEEL_DIR,)) -> list[Path]:
    """`pip wheel` the requirements (and all their dependencies) into dest, pinned by the lock."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(dest),
           "-c", str(constraints)]
    for link in find_links:
        if Path(link).is_dir():
            cmd += ["--find-links", str(link)]
    proc = subprocess.run(cmd + requirements, capture_output=True, text=True, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise ImageError(f"pip wheel {' '.join(requirements)} failed:\n{proc.stderr[-3000:]}")
    return sorted(dest.glob("*.whl"))


def wheelset_hash(wheels: Iterable[Path], base_image: str) -> str:
    """Content key of the deps image: wheel names (name+version+platform), base image, Dockerfile."""
    h = hashlib.sha256(base_image.encode() + (DOCKER_DIR / "deps.Dockerfile").read_bytes())
    for w in sorted(Path(w).name for w in wheels):
        h.update(w.encode())
    return h.hexdigest()[:16]


def _stream(chunks: Iterator[dict], log: list[str]) -> tuple[str | None, int, int]:
    """Consume a build stream; return (image id, cached steps, steps) or raise ImageError."""
    image_id, cached, steps = None, 0, 0
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
            raise ImageError(f"docker build failed: {detail}\n" + "".join(log[-20:]))
        text = chunk.get("stream", "")
        if text:
            log.append(text)
            if text.startswith("Step "):
                steps += 1
            elif "Using cache" in text:
                cached += 1
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    return image_id, cached, steps


def build_image(context: Path, dockerfile: Path, tag: str, buildargs: dict[str, str] | None = None,
                network_mode: str = "none", labels: dict[str, str] | None = None) -> BuildResult:
    """Build with the daemon's builder from a prepared context dir; raise ImageError with the log."""
    client = _client()
    # The Dockerfile travels inside the context so the context stays self-contained.
    shutil.copyfile(dockerfile, context / "Dockerfile")
    log: list[str] = []
    t0 = time.monotonic()
    chunks = client.api.build(path=str(context), dockerfile="Dockerfile", tag=tag, buildargs=buildargs or {},
                              network_mode=network_mode, rm=True, forcerm=True, decode=True, labels=labels)
    image_id, cached, steps = _stream(chunks, log)
    seconds = time.monotonic() - t0
    image = client.images.get(tag)
    if image_id and image.id != image_id:
        raise ImageError(f"built {image_id} but {tag} points to {image.id}")
    return BuildResult(tag, image.id, seconds, int(image.attrs["Size"]), cached, steps, log)


def ensure_deps_image(wheels_dir: Path, base_image: str, repo: str = "dkt-deps") -> tuple[str, BuildResult | None]:
    """The deps image for this wheel set, built only when its content key is new."""
    import docker.errors

    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        raise ImageError(f"no wheels in {wheels_dir}: build the wheelhouse first")
    tag = f"{repo}:{wheelset_hash(wheels, base_image)}"
    client = _client()
    try:
        client.images.get(tag)
        return tag, None
    except docker.errors.ImageNotFound:
        pass
    ctx = wheels_dir.parent / f"{wheels_dir.name}.ctx"
    shutil.rmtree(ctx, ignore_errors=True)
    (ctx / "wheels").mkdir(parents=True)
    for w in wheels:  # hard links: no copy of ~500 MB of wheels
        _link(w, ctx / "wheels" / w.name)
    try:
        result = build_image(ctx, DOCKER_DIR / "deps.Dockerfile", tag, {"BASE_IMAGE": base_image})
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return tag, result


def _link(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def push_image(image: str) -> str:
    """Push and return the registry digest. The SDK reports failures only inside the stream."""
    client = _client()
    repo, _, tag = image.rpartition(":")
    digest = None
    last: list[str] = []
    for chunk in client.api.push(repo, tag=tag, stream=True, decode=True):
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
            raise ImageError(f"docker push {image} failed: {detail}. Is the registry up (make registry-up) "
                             f"and are you logged in (docker login) for a remote one?")
        status = chunk.get("status", "")
        last = (last + [json.dumps(chunk)])[-5:]
        if "aux" in chunk and "Digest" in chunk["aux"]:
            digest = chunk["aux"]["Digest"]
        elif status.startswith(f"{tag}: digest: "):
            digest = status.split()[2]
    if not digest:
        raise ImageError(f"docker push {image} ended without a digest; last messages: {last}")
    return digest
