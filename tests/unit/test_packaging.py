"""Packaging: artifact dir -> BentoML model dkt-model:<version> in a private store (never the user's)."""

from __future__ import annotations

import json

import pytest

from dkt_core.packaging import (
    PackagingError,
    artifact_models,
    latest_tag,
    list_packaged,
    load_packaged,
    model_store,
    package_artifact,
    resolve_tag,
)


def _artifact(root, version: str, data_version: str = "d1", models_key: str = "models"):
    """The files packaging reads (manifest, metrics) plus a member folder; trained models are packaged
    and served end to end in test_serving.py and the integration tests. ``models_key="members"``: an
    artifact written before the member list was renamed ``models``."""
    d = root / version
    (d / "models" / "lgbm").mkdir(parents=True)
    (d / "models" / "lgbm" / "model.txt").write_text("weights")
    (d / "metrics.json").write_text(json.dumps({"validation": {"ensemble": {"auc_all": 0.7, "auc_last": None}}}))
    (d / "manifest.json").write_text(json.dumps({"model_version": version, "data_version": data_version,
                                                  "trained_at": "2025-01-01T00:00:00Z", models_key: ["lgbm"]}))
    return d


def test_package_copies_artifact_and_records_metadata(tmp_path):
    home = tmp_path / "bentoml"
    art = _artifact(tmp_path, "20250101-000000-abc")
    m = package_artifact(art, home)
    assert m.tag == "dkt-model:20250101-000000-abc"
    assert m.path.is_relative_to(home)
    assert (m.artifact_dir / "models" / "lgbm" / "model.txt").read_text() == "weights"
    assert m.metadata["data_version"] == "d1"
    assert m.metadata["models"] == ["lgbm"] and "members" not in m.metadata  # one name for the list
    assert m.metadata["metrics"] == {"ensemble": {"auc_all": 0.7}}
    assert load_packaged(m.tag, home).metadata == m.metadata
    # the source artifact can disappear: the store holds its own copy
    (art / "models" / "lgbm" / "model.txt").unlink()
    assert (load_packaged(m.tag, home).artifact_dir / "models" / "lgbm" / "model.txt").exists()


def test_package_is_idempotent_and_versions_are_immutable(tmp_path):
    home = tmp_path / "bentoml"
    art = _artifact(tmp_path, "v1")
    assert package_artifact(art, home).tag == package_artifact(art, home).tag
    assert len(list_packaged(home)) == 1
    other = _artifact(tmp_path / "other", "v1", data_version="d2")
    with pytest.raises(PackagingError, match="immutable"):
        package_artifact(other, home)


def test_latest_and_resolve(tmp_path):
    home = tmp_path / "bentoml"
    with pytest.raises(PackagingError, match="dkt package"):
        latest_tag(home)
    package_artifact(_artifact(tmp_path, "v1"), home)
    package_artifact(_artifact(tmp_path, "v2"), home)
    assert [m.tag for m in list_packaged(home)] == ["dkt-model:v2", "dkt-model:v1"]
    for alias in (None, "", "latest", "dkt-model", "dkt-model:latest"):
        assert resolve_tag(alias, home) == "dkt-model:v2"
    assert resolve_tag("dkt-model:v1", home) == "dkt-model:v1"
    with pytest.raises(PackagingError, match="not in the BentoML store"):
        resolve_tag("dkt-model:nope", home)


def test_not_an_artifact(tmp_path):
    with pytest.raises(PackagingError, match="dkt train"):
        package_artifact(tmp_path, tmp_path / "bentoml")


def test_an_artifact_from_before_the_rename_packages_under_models(tmp_path):
    """Artifacts written before issue 14 list their models as ``members``: read when ``models`` is absent,
    written back only as ``models`` (metadata and labels)."""
    import bentoml

    home = tmp_path / "bentoml"
    m = package_artifact(_artifact(tmp_path, "old", models_key="members"), home)
    assert m.metadata["models"] == ["lgbm"] and "members" not in m.metadata
    labels = bentoml.models.get(m.tag, _model_store=model_store(home)).info.labels
    assert labels["models"] == "lgbm" and "members" not in labels


def test_the_models_rule():
    assert artifact_models({"models": ["lgbm", "lstm"]}) == ["lgbm", "lstm"]
    assert artifact_models({"members": ["saint"]}) == ["saint"]  # before the rename
    assert artifact_models({"models": ["lgbm"], "members": ["stale"]}) == ["lgbm"]  # models wins
    with pytest.raises(KeyError, match="neither 'models' nor"):
        artifact_models({"model_version": "v"})


def test_a_manifest_without_a_model_list_is_refused(tmp_path):
    art = _artifact(tmp_path, "v1")
    manifest = json.loads((art / "manifest.json").read_text())
    del manifest["models"]
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackagingError, match=r"lacks \['models'\]"):
        package_artifact(art, tmp_path / "bentoml")
