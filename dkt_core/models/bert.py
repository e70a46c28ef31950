"""``bert``: a BERT-style Transformer encoder (torch.nn only, nothing downloaded) over the shared input
embedding plus learned positions. To predict each position from its past it attends with a causal mask
(and a padding mask), so it serves all-item and last-item prediction alike.
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
class BertConfig(SeqConfig):
    n_layers: int = 2
    n_heads: int = 2
    lr: float = 2e-3


class BertModule(SeqModule):
    def __init__(self, spec: FeatureSpec, c: BertConfig):
        super().__init__()
        self.embed = FeatureEmbedding(spec, c, prev_interaction=c.prev_interaction)
        self.pos = nn.Embedding(c.max_seq_len, c.hidden)
        layer = nn.TransformerEncoderLayer(c.hidden, c.n_heads, dim_feedforward=2 * c.hidden, dropout=c.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(c.hidden), nn.Linear(c.hidden, 1))

    def forward(self, cat: torch.Tensor, num: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        t = cat.shape[1]
        x = self.embed(cat, num, valid) + self.pos(torch.arange(t, device=cat.device))[None]
        x = self.encoder(x, mask=causal_mask(t, x.device), src_key_padding_mask=~valid, is_causal=True)
        return self.head(x).squeeze(-1)


class BertModel(TorchSequenceModel):
    name = "bert"
    Config = BertConfig

    def build_module(self, spec: FeatureSpec) -> SeqModule:
        return BertModule(spec, self.config)
