"""TrainConfig: resolved once at the edge (CLI / DAG params), saved next to every artifact."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dkt_core.features.pipeline import FeatureConfig
from dkt_core.models import MODELS
from dkt_core.models.base import config_from_dict


@dataclass
class TrainConfig:
    models: list[str] = field(default_factory=lambda: ["lgbm"])
    seed: int = 0
    valid_frac: float = 0.2  # users held out for early stopping and ensemble weights
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> Config overrides
    features: FeatureConfig = field(default_factory=FeatureConfig)
    data_version: str | None = None  # e.g. the curated dataset version; default: the file's hash

    def __post_init__(self) -> None:
        if isinstance(self.features, dict):
            self.features = FeatureConfig(**self.features)
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise ValueError(f"unknown model(s) {unknown or self.models}; choose from {', '.join(MODELS)}")
        for name, opts in self.model_options.items():
            config_from_dict(MODELS[name].Config, opts)  # fail early on a typo in an option

    def model_config(self, name: str) -> Any:
        return config_from_dict(MODELS[name].Config, self.model_options.get(name, {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls(**json.loads(Path(path).read_text()))
