"""A trained artifact directory -> the BentoML model ``dkt-model:<model_version>`` and back.

The whole artifact (encoders, feature statistics, member weights, ensemble weights, config, metrics) is
copied into the model's folder under ``artifact/``, so a Bento or image that carries the model carries
everything serving needs; nothing is read from the source tree or the training output afterwards.
Labels (strings, for ``bentoml models list``) and metadata (for ``/version``, the deploy tooling and the
rollout checks) record model version, data version, training time, models and validation metrics.

The member list has one name, ``models`` (manifest, labels, metadata). Artifacts written before that rename
call it ``members``: ``artifact_models`` reads ``members`` when ``models`` is absent; nothing writes ``members``.

Every function takes an optional ``home`` (a BENTOML_HOME): BentoML binds its default store at import
time, so tests and tools that need a private store pass it explicitly instead of changing the env.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODEL_NAME", "PackagedModel", "PackagingError", "artifact_models", "latest_tag", "list_packaged",
           "load_packaged", "model_store", "package_artifact", "resolve_tag"]

MODEL_NAME = "dkt-model"
ARTIFACT_SUBDIR = "artifact"


class PackagingError(ValueError):
    """A problem the user can fix (no artifact, unknown tag, empty store)."""


@dataclass(frozen=True)
class PackagedModel:
    tag: str  # dkt-model:<version>
    path: Path  # the model's folder in the store
    metadata: dict

    @property
    def artifact_dir(self) -> Path:
        return self.path / ARTIFACT_SUBDIR


def model_store(home: str | Path | None = None):
    """The BentoML model store under ``home`` (default: the process's BENTOML_HOME)."""
    if home is None:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return BentoMLContainer.model_store.get()
    from bentoml._internal.models.model import ModelStore

    path = Path(home) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(path))


def artifact_models(manifest: Mapping) -> list[str]:
    """The models an artifact holds (its manifest's or packaged metadata's ``models``).

    The one rule for artifacts written before the rename: their list is ``members``, read when ``models`` is
    absent. A mapping with neither is not an artifact's manifest: KeyError naming both keys."""
    if "models" in manifest:
        return list(manifest["models"])
    if "members" in manifest:  # written before issue 14 renamed the key
        return list(manifest["members"])
    raise KeyError("the manifest lists no models (neither 'models' nor, before the rename, 'members')")


def _metadata(artifact_dir: Path) -> dict:
    manifest_path = artifact_dir / "manifest.json"
    if not manifest_path.is_file():
        raise PackagingError(f"{artifact_dir} is not a trained model artifact (no manifest.json); "
                             "run `dkt train --out DIR` first")
    manifest = json.loads(manifest_path.read_text())
    missing = [k for k in ("model_version", "data_version", "trained_at") if k not in manifest]
    if "models" not in manifest and "members" not in manifest:
        missing.append("models")
    if missing:
        raise PackagingError(f"{manifest_path} lacks {missing}: re-train the artifact with this dkt version")
    metrics_path = artifact_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return {
        "model_version": str(manifest["model_version"]),
        "data_version": str(manifest["data_version"]),
        "trained_at": str(manifest["trained_at"]),
        "models": artifact_models(manifest),  # the key /version, the deploy tooling and `dkt package --list` read
        "git_sha": str(manifest.get("git_sha", "unknown")),
        "metrics": _without_none(metrics.get("validation", metrics)),
    }


def _without_none(value):
    """BentoML metadata refuses None (e.g. a metric undefined on a tiny validation set): drop those keys."""
    if isinstance(value, dict):
        return {str(k): _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def package_artifact(artifact_dir: str | Path, home: str | Path | None = None) -> PackagedModel:
    """Copy ``artifact_dir`` into the store as ``dkt-model:<model_version>``; idempotent per version."""
    import bentoml

    artifact_dir = Path(artifact_dir)
    meta = _metadata(artifact_dir)
    store = model_store(home)
    tag = f"{MODEL_NAME}:{meta['model_version']}"
    try:
        existing = store.get(tag)
    except bentoml.exceptions.NotFound:
        existing = None
    if existing is not None:
        if dict(existing.info.metadata).get("data_version") != meta["data_version"]:
            raise PackagingError(f"{tag} already exists with another data version; versions are immutable")
        return _packaged(existing)
    labels = {"model_version": meta["model_version"], "data_version": meta["data_version"],
              "models": ",".join(meta["models"]), "framework": "dkt_core"}
    with bentoml.models.create(tag, labels=labels, metadata=meta, module="dkt_core.packaging",
                               _model_store=store) as model:
        shutil.copytree(artifact_dir, model.path_of(ARTIFACT_SUBDIR),
                        ignore=shutil.ignore_patterns("__pycache__", "*.tmp"))
    return _packaged(store.get(tag))


def _packaged(model) -> PackagedModel:
    return PackagedModel(str(model.tag), Path(model.path), dict(model.info.metadata))


def list_packaged(home: str | Path | None = None) -> list[PackagedModel]:
    """All packaged dkt models, newest (by creation time) first."""
    import bentoml

    try:
        models = model_store(home).list(MODEL_NAME)
    except bentoml.exceptions.NotFound:  # raised when the name was never stored
        models = []
    return [_packaged(m) for m in sorted(models, key=lambda m: m.info.creation_time, reverse=True)]


def latest_tag(home: str | Path | None = None) -> str:
    """The most recently packaged ``dkt-model`` tag."""
    models = list_packaged(home)
    if not models:
        raise PackagingError("no packaged dkt-model in the BentoML store: run `dkt package --model DIR` first")
    return models[0].tag


def resolve_tag(tag: str | None, home: str | Path | None = None) -> str:
    """``None``/""/"latest"/"dkt-model"/"dkt-model:latest" -> the newest tag; anything else must exist."""
    if not tag or tag in ("latest", MODEL_NAME, f"{MODEL_NAME}:latest"):
        return latest_tag(home)
    return load_packaged(tag, home).tag


def load_packaged(tag: str, home: str | Path | None = None) -> PackagedModel:
    import bentoml

    try:
        return _packaged(model_store(home).get(tag))
    except bentoml.exceptions.NotFound:
        raise PackagingError(f"model {tag} is not in the BentoML store; `dkt package --list` shows what is") from None
