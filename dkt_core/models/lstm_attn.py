"""``lstm_attn``: the ``lstm`` input embedding and LSTM, followed by causal self-attention layers (each
position attends to itself and its past only), then a per-position head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dkt_core.features.spec import FeatureSpec
from dkt_core.models.torch_common import (
    FeatureEmbedding,
    SeqConfig,
    SeqModule,
    TorchSequenceModel,
    causal_mask,
)


@dataclass
class LSTMAttnConfig(SeqConfig):
    n_layers: int = 1  # LSTM layers
    n_attn_layers: int = 1
    n_heads: int = 2
    lr: float = 3e-3


class LSTMAttnModule(SeqModule):
    def __init__(self, spec: FeatureSpec, c: LSTMAttnConfig):
        super().__init__()
        self.embed = FeatureEmbedding(spec, c, prev_interaction=c.prev_interaction)
        self.lstm = nn.LSTM(c.hidden, c.hidden, num_layers=c.n_layers, batch_first=True,
                            dropout=c.dropout if c.n_layers > 1 else 0.0)
        layer = nn.TransformerEncoderLayer(c.hidden, c.n_heads, dim_feedforward=2 * c.hidden, dropout=c.dropout,
                                           batch_first=True, norm_first=True)
        self.attn = nn.TransformerEncoder(layer, c.n_attn_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(c.hidden), nn.Linear(c.hidden, 1))

    def forward(self, cat: torch.Tensor, num: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(cat, num, valid))
        out = self.attn(out, mask=causal_mask(out.shape[1], out.device), is_causal=True)
        return self.head(out).squeeze(-1)


class LSTMAttnModel(TorchSequenceModel):
    name = "lstm_attn"
    Config = LSTMAttnConfig

    def build_module(self, spec: FeatureSpec) -> SeqModule:
        return LSTMAttnModule(spec, self.config)
