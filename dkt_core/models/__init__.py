"""Model registry: the one place that maps a model name to its class.

Add a model by writing one file under dkt_core/models/ (config dataclass at the top, a ``DKTModel``
subclass) and one line here. Nothing else in the code base may branch on a model's name.
"""

from __future__ import annotations

from dkt_core.models.base import DKTModel, FitResult
from dkt_core.models.bert import BertModel
from dkt_core.models.lgbm import LGBMModel
from dkt_core.models.lstm import LSTMModel
from dkt_core.models.lstm_attn import LSTMAttnModel
from dkt_core.models.saint import SaintModel

MODELS: dict[str, type[DKTModel]] = {
    LGBMModel.name: LGBMModel,
    LSTMModel.name: LSTMModel,
    LSTMAttnModel.name: LSTMAttnModel,
    BertModel.name: BertModel,
    SaintModel.name: SaintModel,
}


def get_model_class(name: str) -> type[DKTModel]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


__all__ = ["MODELS", "DKTModel", "FitResult", "get_model_class"]
