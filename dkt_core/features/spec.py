"""``FeatureSpec``: which columns of a feature frame a model may use.

The feature pipeline writes it (next to the encoders it fitted) and every model reads it, so it lives
with the features, below the models (issue 14: models import features, never the other way round).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns of a feature frame a model may use."""

    categorical: dict[str, int]  # column -> cardinality (including padding 0 and unknown 1)
    numeric: list[str]
    tabular: list[str] = field(default_factory=list)  # columns for tree models (numeric + raw codes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(categorical=dict(d["categorical"]), numeric=list(d["numeric"]), tabular=list(d["tabular"]))
