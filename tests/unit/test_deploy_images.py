"""Build/push stream parsing (errors must raise: the SDK does not), deps key, model store lookup."""

from pathlib import Path

import pytest

from dkt_core.deploy.images import ImageError, _stream, wheelset_hash
from dkt_core.deploy.inference import model_dir


def test_build_stream_counts_cache_and_returns_id():
    log: list[str] = []
    chunks = [{"stream": "Step 1/3 : FROM x\n"}, {"stream": "Step 2/3 : COPY a b\n"}, {"stream": " ---> Using cache\n"},
              {"stream": "Step 3/3 : CMD y\n"}, {"aux": {"ID": "sha256:abc"}}]
    assert _stream(iter(chunks), log) == ("sha256:abc", 1, 3)


def test_build_stream_error_raises_with_daemon_message():
    chunks = [{"stream": "Step 1/2 : RUN false\n"}, {"errorDetail": {"message": "returned a non-zero code: 1"},
                                                      "error": "returned a non-zero code: 1"}]
    with pytest.raises(ImageError, match="non-zero code"):
        _stream(iter(chunks), [])


def test_wheelset_hash_depends_on_wheels_and_base():
    a = wheelset_hash([Path("x-1.0-py3-none-any.whl")], "base:1")
    assert a == wheelset_hash([Path("/other/x-1.0-py3-none-any.whl")], "base:1")
    assert a != wheelset_hash([Path("x-1.1-py3-none-any.whl")], "base:1")
    assert a != wheelset_hash([Path("x-1.0-py3-none-any.whl")], "base:2")


def test_model_dir_takes_exact_versions_only(tmp_path):
    """'latest' is resolved once by dkt_core.packaging.resolve_tag before a build, never here."""
    store = tmp_path / "models" / "dkt-model"
    (store / "v7").mkdir(parents=True)
    (store / "v7" / "model.yaml").write_text("name: dkt-model\n")
    (store / "latest").write_text("v7")
    assert model_dir(tmp_path, "dkt-model:V7") == (store / "v7", "dkt-model", "v7")
    for unnamed in ("dkt-model:latest", "dkt-model"):
        with pytest.raises(ImageError, match="names no version"):
            model_dir(tmp_path, unnamed)
    with pytest.raises(ImageError, match="dkt package"):
        model_dir(tmp_path, "dkt-model:v8")
