"""Packaging trained artifacts as BentoML models (``dkt-model:<model_version>``) and finding them again."""

from dkt_core.packaging.store import (
    MODEL_NAME,
    PackagedModel,
    PackagingError,
    artifact_models,
    latest_tag,
    list_packaged,
    load_packaged,
    model_store,
    package_artifact,
    resolve_tag,
)

__all__ = ["MODEL_NAME", "PackagedModel", "PackagingError", "artifact_models", "latest_tag", "list_packaged", "load_packaged",
           "model_store", "package_artifact", "resolve_tag"]
