"""The surface every model offers (scikit-learn-like), so the trainer knows nothing model-specific.

Input of every model is a *feature frame*: the output of ``FeaturePipeline.transform`` — one row per
interaction, rows sorted by user then time, with
- ``userID`` and the label column ``answerCode`` (1/0; -1 = unknown, a row to predict),
- encoded categorical columns (int64; 0 = padding, 1 = unknown value, 2.. = known values),
- scaled numeric columns (float32),
all computed from each row's past only. ``FeatureSpec`` (``dkt_core.features.spec``) names those columns.

``predict_proba`` returns P(correct) for *every* row, each predicted from its own past only (all-item
evaluation); the last row of a user gives the competition's last-item prediction. With ``rows`` it returns
only those rows' values (serving needs the targets, not the whole history), computing no more than it must.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from dkt_core.features.spec import FeatureSpec


@dataclass
class FitResult:
    """What ``fit`` reports back to the trainer (saved in metrics.json)."""

    seconds: float
    best_iteration: int | None = None
    valid_auc: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)


class DKTModel(ABC):
    """Base class of every registered model. Subclasses set ``name`` and ``Config`` (a dataclass)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    def __init__(self, config: Any | None = None, spec: FeatureSpec | None = None):
        self.config = config if config is not None else self.Config()
        self.spec = spec

    @abstractmethod
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, spec: FeatureSpec, *, seed: int = 0,
            progress: bool = True) -> FitResult:
        """Train on ``train`` (early stopping / model selection on ``valid``; both feature frames)."""

    @abstractmethod
    def predict_proba(self, frame: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        """P(correct) for every row of ``frame`` (float64, len(frame)), each from its own past only; with
        ``rows`` (integer positions) only for those rows, in that order, equal to ``predict_proba(frame)[rows]``."""

    @abstractmethod
    def _save_weights(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_weights(self, directory: Path) -> None: ...

    def n_parameters(self) -> int:
        """Number of trainable parameters (trees: number of leaves)."""
        return 0

    # -- persistence shared by all models: config + spec as JSON, weights by the subclass ---------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.spec is None:
            raise RuntimeError(f"model {self.name!r} must be fit before it is saved")
        meta = {"name": self.name, "config": config_to_dict(self.config), "spec": self.spec.to_dict()}
        (directory / "model.json").write_text(json.dumps(meta, indent=2))
        self._save_weights(directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> DKTModel:
        directory = Path(directory)
        meta = json.loads((directory / "model.json").read_text())
        if meta["name"] != cls.name:
            raise ValueError(f"{directory} holds a {meta['name']!r} model, not {cls.name!r}")
        model = cls(config_from_dict(cls.Config, meta["config"]), FeatureSpec.from_dict(meta["spec"]))
        model._load_weights(directory)
        return model


def config_to_dict(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) else dict(config)


def config_from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    """Build ``config_cls`` from ``values``, refusing unknown keys with a clear message."""
    known = {f.name for f in fields(config_cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {config_cls.__name__}; known: {sorted(known)}")
    return config_cls(**values)
