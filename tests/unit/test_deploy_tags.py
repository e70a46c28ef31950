"""Immutable image tags and deploy settings."""

import pytest

from dkt_core.deploy.settings import DeploySettings, image_tag


def test_tag_says_model_data_and_code():
    assert image_tag("20250101-abc", "d41d8cd98f00b204e980", "1234567890abcdef") == "20250101-abc-d41d8cd98f00b204-1234567890ab"


def test_dirty_code_stays_visible_in_the_tag():
    assert image_tag("m", "d", "1234567890abcdef.dirty") == "m-d-1234567890ab.dirty"


def test_tag_sanitizes_characters_docker_refuses():
    tag = image_tag("v1:final/2", "data+x", "sha")
    assert ":" not in tag and "/" not in tag and tag.startswith("v1_final_2-data_x-")


def test_empty_part_is_an_error():
    with pytest.raises(ValueError, match="model_version"):
        image_tag("::", "d", "s")


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("DKT_REGISTRY", "registry.example.com:443/")
    monkeypatch.setenv("DKT_API_PORT", "9001")
    s = DeploySettings.from_env()
    assert s.image("dkt-inference", "t") == "registry.example.com:443/dkt-inference:t"
    assert s.proxy_url == "http://127.0.0.1:9001"
    assert s.service == "dkt_inference"
