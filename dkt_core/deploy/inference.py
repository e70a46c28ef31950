"""Assemble the inference image's build context ("a service + one model version") and build it.

The context holds only: the project wheel (optional), the service source folder and the one model copied
from a BentoML model store. Switching from the test fixture to the real service is the `service_dir` /
`service` arguments (default: bento_service/ and `service:DKTService`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dkt_core.deploy.images import (
    DOCKER_DIR,
    BuildResult,
    ImageError,
    build_image,
    build_wheelhouse,
    ensure_deps_image,
)
from dkt_core.deploy.settings import REPO_ROOT, DeploySettings, git_sha, image_tag


@dataclass
class ServiceSpec:
    """What goes into an inference image besides the model."""

    service_dir: Path = REPO_ROOT / "bento_service"
    service: str = "service:DKTService"
    requirements: list[str] = field(default_factory=lambda: [".[serve]"])  # pip wheel arguments
    include_project: bool = True  # install dkt_core itself (the real service imports it)
    # single-file, stdlib-only modules copied next to the service, for a service that does not install the
    # project (the test fixture takes dkt_core/serving/one_write.py this way)
    modules: tuple[Path, ...] = ()


@dataclass
class InferenceImage:
    image: str  # registry/repo:immutable-tag
    tag: str
    deps_image: str
    deps_build: BuildResult | None
    build: BuildResult


def model_dir(bentoml_home: Path, model_tag: str) -> tuple[Path, str, str]:
    """Locate exactly ``name:version`` in a BentoML model store.

    No "latest" here: which model an unnamed deploy means is decided once, by
    ``dkt_core.packaging.resolve_tag`` (the one rule), before anything is built.
    """
    name, _, version = model_tag.lower().partition(":")
    if not version or version == "latest":
        raise ImageError(f"model tag {model_tag!r} names no version: give dkt-model:<version> "
                         "(dkt_core.packaging.resolve_tag resolves 'latest' once, before the build)")
    path = bentoml_home / "models" / name / version
    if not (path / "model.yaml").is_file():
        raise ImageError(f"model {name}:{version} not found in the store {bentoml_home}/models "
                         f"(set BENTOML_HOME or run `dkt package --model DIR`)")
    return path, name, version


def wheelhouse_for(spec: ServiceSpec, home: Path) -> Path:
    """Cached wheelhouse keyed by the requirements and the lock file's content."""
    lock = (REPO_ROOT / "requirements.lock").read_bytes()
    key = hashlib.sha256(lock + "\n".join(spec.requirements).encode()).hexdigest()[:12]
    dest = home / "wheels" / key
    if not (dest / ".complete").exists():
        shutil.rmtree(dest, ignore_errors=True)
        build_wheelhouse(spec.requirements, dest)
        for own in dest.glob("dkt_platform-*.whl"):  # the project goes in the code layer, not deps
            own.unlink()
        (dest / ".complete").touch()
    return dest


def build_inference_image(spec: ServiceSpec, bentoml_home: Path, model_tag: str, model_version: str,
                          data_version: str, settings: DeploySettings,
                          sha: str | None = None, repo: str | None = None) -> InferenceImage:
    src, name, version = model_dir(bentoml_home, model_tag)
    if not (spec.service_dir / spec.service.partition(":")[0].replace(".", "/")).with_suffix(".py").is_file():
        raise ImageError(f"service {spec.service} not found in {spec.service_dir}")
    wheels = wheelhouse_for(spec, settings.home)
    deps_image, deps_build = ensure_deps_image(wheels, settings.base_image)

    tag = image_tag(model_version, data_version, sha or git_sha(fallback=settings.git_sha))
    image = settings.image(repo or settings.inference_repo, tag)
    ctx = settings.home / "build" / "inference"
    shutil.rmtree(ctx, ignore_errors=True)
    (ctx / "app").mkdir(parents=True)
    if spec.include_project:
        # A fixed SOURCE_DATE_EPOCH makes the wheel byte-identical for identical code, so the code layer
        # stays cached when only the model changes.
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(ctx / "app"),
                               str(REPO_ROOT)], capture_output=True, text=True,
                              env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
        if proc.returncode != 0:
            raise ImageError(f"building the project wheel failed:\n{proc.stderr[-2000:]}")
    shutil.copytree(spec.service_dir, ctx / "service", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for module in spec.modules:
        shutil.copy2(module, ctx / "service" / Path(module).name)
    shutil.copytree(src, ctx / "models" / name / version)
    (ctx / "models" / name / "latest").write_text(version)
    build = build_image(ctx, DOCKER_DIR / "inference.Dockerfile", image, {
        "DEPS_IMAGE": deps_image, "SERVICE": spec.service, "MODEL_TAG": f"{name}:{version}",
        "MODEL_VERSION": model_version, "DATA_VERSION": data_version, "GIT_SHA": tag.rsplit("-", 1)[-1],
    })
    return InferenceImage(image, tag, deps_image, deps_build, build)
