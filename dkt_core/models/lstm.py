"""``lstm``: embeddings of every categorical feature (item, test, tag, head, mid, tail, elapsed bin,
previous answer, ...) concatenated with the numeric features (BatchNorm + Linear), LayerNorm, an LSTM and
a per-position head. An LSTM is causal by construction: position t sees positions <= t only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dkt_core.features.spec import FeatureSpec
from dkt_core.models.torch_common import FeatureEmbedding, SeqConfig, SeqModule, TorchSequenceModel


@dataclass
class LSTMConfig(SeqConfig):
    n_layers: int = 1
    lr: float = 3e-3


class LSTMModule(SeqModule):
    def __init__(self, spec: FeatureSpec, c: LSTMConfig):
        super().__init__()
        self.embed = FeatureEmbedding(spec, c, prev_interaction=c.prev_interaction)
        self.lstm = nn.LSTM(c.hidden, c.hidden, num_layers=c.n_layers, batch_first=True,
                            dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.hidden, c.hidden), nn.GELU(),
                                  nn.Linear(c.hidden, 1))

    def forward(self, cat: torch.Tensor, num: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # Right padding: the padded tail never influences the real positions before it, so no packing.
        out, _ = self.lstm(self.embed(cat, num, valid))
        return self.head(out).squeeze(-1)


class LSTMModel(TorchSequenceModel):
    name = "lstm"
    Config = LSTMConfig

    def build_module(self, spec: FeatureSpec) -> SeqModule:
        return LSTMModule(spec, self.config)
