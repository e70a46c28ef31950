"""The self-contained artifact directory written by training and read by evaluation and serving.

    ARTIFACT/manifest.json   model_version, data_version, trained_at, members, git sha, fingerprint
    ARTIFACT/config.json     the TrainConfig used
    ARTIFACT/features/       FeaturePipeline state (encoders, statistics, scaler)
    ARTIFACT/models/<name>/  each member, written by its own save()
    ARTIFACT/ensemble.json   soft-vote weights fit on validation predictions
    ARTIFACT/metrics.json    validation metrics per member and for the ensemble
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dkt_core.features.pipeline import FeaturePipeline
from dkt_core.models import DKTModel, get_model_class
from dkt_core.training.ensemble import SoftVoteEnsemble
from dkt_core.training.versions import check_model_version

MANIFEST = "manifest.json"


@dataclass
class Artifact:
    path: Path
    manifest: dict
    pipeline: FeaturePipeline
    models: dict[str, DKTModel]
    ensemble: SoftVoteEnsemble

    @property
    def model_version(self) -> str:
        return self.manifest["model_version"]

    @property
    def data_version(self) -> str:
        return self.manifest["data_version"]

    @property
    def metrics(self) -> dict:
        return json.loads((self.path / "metrics.json").read_text())


def write_artifact(directory: Path, *, manifest: dict, config_dict: dict, pipeline: FeaturePipeline,
                   models: dict[str, DKTModel], ensemble: SoftVoteEnsemble, metrics: dict) -> Path:
    check_model_version(manifest.get("model_version"), source="manifest model_version")  # minting matches the rule
    directory.mkdir(parents=True, exist_ok=True)
    pipeline.save(directory / "features")
    for name, model in models.items():
        model.save(directory / "models" / name)
    ensemble.save(directory / "ensemble.json")
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2))
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2))
    # the manifest last: its presence marks a complete artifact
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return directory


def load_artifact(directory: str | Path) -> Artifact:
    directory = Path(directory)
    if not (directory / MANIFEST).exists():
        raise FileNotFoundError(f"{directory} is not a trained model artifact (no {MANIFEST}); run `dkt train` first")
    manifest = json.loads((directory / MANIFEST).read_text())
    ensemble = SoftVoteEnsemble.load(directory / "ensemble.json")
    models = {name: get_model_class(name).load(directory / "models" / name) for name in ensemble.members}
    return Artifact(directory, manifest, FeaturePipeline.load(directory / "features"), models, ensemble)


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
