"""``saint``: encoder-decoder Transformer (SAINT). Exercise features (item, test, tag, ... — every
categorical column except the response ones) go into the encoder; response features (the previous
answer, the numeric history features) plus the exercise features go into the decoder. Encoder
self-attention, decoder self-attention and cross-attention are all causal.
"""

from __future__ import annotations

import warnings
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
class SaintConfig(SeqConfig):
    n_layers: int = 1  # encoder layers = decoder layers
    n_heads: int = 2
    response_columns: tuple[str, ...] = ("prev_answer",)  # categorical columns that describe past answers
    lr: float = 2e-3


class SaintModule(SeqModule):
    def __init__(self, spec: FeatureSpec, c: SaintConfig):
        super().__init__()
        exercise = [n for n in spec.categorical if n not in c.response_columns]
        self.enc_embed = FeatureEmbedding(spec, c, columns=exercise, use_numeric=False)
        # The decoder sees everything: responses, numeric history features, the exercise itself and
        # (with prev_interaction) the previous exercise x answer.
        self.dec_embed = FeatureEmbedding(spec, c, prev_interaction=c.prev_interaction)
        self.enc_pos = nn.Embedding(c.max_seq_len, c.hidden)
        self.dec_pos = nn.Embedding(c.max_seq_len, c.hidden)
        with warnings.catch_warnings():  # "nested tensors unused with norm_first": expected, harmless
            warnings.simplefilter("ignore", UserWarning)
            self.transformer = nn.Transformer(c.hidden, c.n_heads, c.n_layers, c.n_layers, dim_feedforward=2 * c.hidden,
                                              dropout=c.dropout, activation="gelu", batch_first=True,
                                              norm_first=True)
        self.head = nn.Linear(c.hidden, 1)

    def forward(self, cat: torch.Tensor, num: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        t = cat.shape[1]
        pos = torch.arange(t, device=cat.device)
        src = self.enc_embed(cat, num, valid) + self.enc_pos(pos)[None]
        tgt = self.dec_embed(cat, num, valid) + self.dec_pos(pos)[None]
        mask = causal_mask(t, cat.device)
        pad = ~valid
        out = self.transformer(src, tgt, src_mask=mask, tgt_mask=mask, memory_mask=mask,
                               src_key_padding_mask=pad, tgt_key_padding_mask=pad, memory_key_padding_mask=pad,
                               src_is_causal=True, tgt_is_causal=True, memory_is_causal=True)
        return self.head(out).squeeze(-1)


class SaintModel(TorchSequenceModel):
    name = "saint"
    Config = SaintConfig

    def build_module(self, spec: FeatureSpec) -> SeqModule:
        return SaintModule(spec, self.config)
