"""What the torch sequence models share: the config fields, the input embedding and the DKTModel glue
(fit through the shared training loop, windowed prediction, weights on disk).

A concrete model only defines its ``Config`` (subclass of ``SeqConfig``) and ``build_module``; its module
maps (cat (B,T,C) int64, num (B,T,F) float32, valid (B,T) bool) to logits (B,T), where position t may only
depend on positions <= t (causal). A row's own answer is never an input: the pipeline's ``prev_answer``
column carries the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from dkt_core.models.base import DKTModel, FeatureSpec, FitResult
from dkt_core.training.sequences import (
    SequenceData,
    build_sequences,
    iterate_batches,
    predict_windows,
    train_windows,
)
from dkt_core.training.torch_loop import LoopConfig, default_threads, resolve_device, train_loop


@dataclass
class SeqConfig(LoopConfig):
    """Options shared by every sequence model (training loop options come from ``LoopConfig``)."""

    max_seq_len: int = 100
    train_stride: int = 50  # stride between training windows of a long sequence
    predict_stride: int = 25  # each row predicted from >= max_seq_len - predict_stride rows of context
    random_windows: bool = True  # random window offsets each epoch
    loss_last_k: int = 0  # loss over the last K positions of each window only (0 = all positions)
    group_by: tuple[str, ...] = ()  # augmentation, e.g. ("head", "mid"): one sequence per user x head x mid
    split_every_tests: int = 0  # cut a user's sequence every K tests (0 = never)
    test_column: str = "test"
    batch_size: int = 64
    emb_dim: int = 16  # per categorical column
    hidden: int = 64
    dropout: float = 0.1


def causal_mask(t: int, device: torch.device) -> torch.Tensor:
    """Bool (T, T) mask, True where attention is forbidden (keys in the future)."""
    return torch.triu(torch.ones(t, t, dtype=torch.bool, device=device), diagonal=1)


class FeatureEmbedding(nn.Module):
    """Categorical embeddings concatenated + numerics through (masked) BatchNorm and a Linear,
    projected to ``hidden`` and layer-normalised."""

    def __init__(self, cardinalities: list[int], n_numeric: int, emb_dim: int, hidden: int,
                 columns: list[int] | None = None, use_numeric: bool = True):
        super().__init__()
        self.columns = list(range(len(cardinalities))) if columns is None else list(columns)
        self.embs = nn.ModuleList(nn.Embedding(cardinalities[c], emb_dim, padding_idx=0) for c in self.columns)
        self.use_numeric = use_numeric and n_numeric > 0
        width = emb_dim * len(self.columns)
        if self.use_numeric:
            self.bn = nn.BatchNorm1d(n_numeric)
            self.num_proj = nn.Linear(n_numeric, emb_dim * 2)
            width += emb_dim * 2
        self.proj = nn.Linear(width, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, cat: torch.Tensor, num: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # Codes beyond the trained cardinality cannot come from the pipeline, but clamp to "unknown" (1)
        # rather than crash on a stray value.
        parts = []
        for emb, c in zip(self.embs, self.columns, strict=True):
            codes = cat[..., c]
            parts.append(emb(torch.where(codes < emb.num_embeddings, codes, torch.ones_like(codes))))
        if self.use_numeric:
            normed = torch.zeros_like(num)
            normed[valid] = self.bn(num[valid])  # statistics over real positions only, not padding
            parts.append(self.num_proj(normed))
        return self.norm(self.proj(torch.cat(parts, dim=-1)))


class SeqModule(nn.Module):
    """Base of the models' modules; owns the loss (BCE over labelled positions in ``mask``)."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits[mask], labels[mask])


class TorchSequenceModel(DKTModel):
    """DKTModel glue shared by lstm, lstm_attn, bert and saint."""

    Config = SeqConfig

    def __init__(self, config=None, spec: FeatureSpec | None = None):
        super().__init__(config, spec)
        self.module: SeqModule | None = None
        if spec is not None:
            self.module = self.build_module(spec)

    def build_module(self, spec: FeatureSpec) -> SeqModule:
        raise NotImplementedError

    def n_parameters(self) -> int:
        return 0 if self.module is None else sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    # -- data -------------------------------------------------------------------------------------------
    def _sequences(self, frame: pd.DataFrame) -> SequenceData:
        c = self.config
        return build_sequences(frame, self.spec, group_by=c.group_by, split_every_tests=c.split_every_tests,
                               test_column=c.test_column)

    def _predict_data(self, data: SequenceData, device: torch.device, batch_size: int = 256) -> np.ndarray:
        """P(correct) per row of ``data`` (frame order), every row from its own past only."""
        c = self.config
        out = np.zeros(data.n_rows, dtype=np.float64)
        if data.n_rows == 0:
            return out
        start, end, first = predict_windows(data, c.max_seq_len, min(c.predict_stride, c.max_seq_len))
        self.module.eval()
        with torch.inference_mode():
            for batch, sel in iterate_batches(data, start, end, batch_size, c.max_seq_len):
                probs = torch.sigmoid(self.module(*self._tensors(batch, device))).cpu().numpy()
                write = batch.valid & (batch.pos >= first[sel][:, None])
                out[batch.rows[write]] = probs[write]
        return out

    @staticmethod
    def _tensors(batch, device: torch.device) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(batch.cat).to(device), torch.from_numpy(batch.num).to(device),
                torch.from_numpy(batch.valid).to(device))

    # -- DKTModel ---------------------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, spec: FeatureSpec, *, seed: int = 0,
            progress: bool = True) -> FitResult:
        c = self.config
        self.spec = spec
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(default_threads(c.num_threads))
        try:
            torch.manual_seed(seed)  # module initialisation is part of the seeded run
            self.module = self.build_module(spec)
            device = resolve_device(c.device)
            self.module.to(device)
            tr, va = self._sequences(train), self._sequences(valid)
            stride = max(1, min(c.train_stride, c.max_seq_len))
            n_windows = len(train_windows(tr, c.max_seq_len, stride, None)[0])
            steps = -(-n_windows // c.batch_size)
            va_labels = va.label[va.order]
            va_known = va_labels >= 0
            rng = np.random.default_rng(seed)

            def epoch_batches(epoch: int):
                start, end = train_windows(tr, c.max_seq_len, stride, rng if c.random_windows else None)
                for batch, _ in iterate_batches(tr, start, end, c.batch_size, c.max_seq_len, rng):
                    mask = batch.valid & (batch.label >= 0)
                    if c.loss_last_k > 0:
                        mask &= batch.pos >= (batch.pos.max(axis=1, keepdims=True) - c.loss_last_k + 1)
                    yield (self._tensors(batch, device), torch.from_numpy(batch.label).to(device),
                           torch.from_numpy(mask).to(device))

            def validate() -> float:
                probs = self._predict_data(va, device)[va.order]
                y = va_labels[va_known]
                return roc_auc_score(y, probs[va_known]) if len(np.unique(y)) == 2 else float("nan")

            result = train_loop(self.module, self.module.loss, epoch_batches, steps, validate, c, seed=seed,
                                progress=progress, desc=self.name)
        finally:
            torch.set_num_threads(prev_threads)
        self.module.to("cpu")
        return result

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if self.module is None or self.spec is None:
            raise RuntimeError(f"model {self.name!r} is not fitted; call fit() or load() first")
        device = next(self.module.parameters()).device
        return self._predict_data(self._sequences(frame), device)

    def _save_weights(self, directory: Path) -> None:
        torch.save(self.module.state_dict(), directory / "weights.pt")

    def _load_weights(self, directory: Path) -> None:
        self.module = self.build_module(self.spec)
        state = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        self.module.load_state_dict(state)
        self.module.eval()
