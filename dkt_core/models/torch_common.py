"""What the torch sequence models share: the config fields, the input embedding and the DKTModel glue
(fit through the shared training loop, windowed prediction, weights on disk).

Two ways in, one loop: ``fit`` / ``predict_proba`` on feature frames in memory, ``fit_windows`` /
``predict_store`` on ``window_store.WindowStore`` (the out-of-core road: the same sequences read from chunk files
on disk, a batch at a time). Both go through the same windows, batches and seeded shuffles, so on the same
features they train the same weights.

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
from torch import nn

from dkt_core.evaluation.metrics import auc
from dkt_core.features.spec import FeatureSpec
from dkt_core.models.base import DKTModel, FitResult
from dkt_core.models.sequences import (
    SequenceData,
    SequenceLayout,
    Sequences,
    iterate_batches,
    predict_windows,
    train_windows,
)
from dkt_core.models.torch_loop import LoopConfig, default_threads, resolve_device, train_loop
from dkt_core.models.window_store import WindowStore


@dataclass
class SeqConfig(LoopConfig):
    """Options shared by every sequence model (training loop options come from ``LoopConfig``)."""

    max_seq_len: int = 100
    train_stride: int = 50  # stride between training windows of a long sequence
    predict_stride: int = 50  # each row predicted from >= max_seq_len - predict_stride rows of context
    random_windows: bool = True  # random window offsets each epoch
    loss_last_k: int = 0  # loss over the last K positions of each window only (0 = all positions)
    group_by: tuple[str, ...] = ()  # augmentation, e.g. ("head", "mid"): one sequence per user x head x mid
    split_every_tests: int = 0  # cut a user's sequence every K tests (0 = never)
    test_column: str = "test"
    batch_size: int = 64
    max_epochs: int = 12  # best epoch on assist2009_dev: 7-9 (lstm, 2 CPU cores: ~6 s an epoch)
    patience: int = 3
    emb_dim: int = 16  # per categorical column
    hidden: int = 64
    dropout: float = 0.1
    answer_column: str = "prev_answer"  # categorical column holding the previous row's answer (3 right, 2 wrong)
    code_dropout: float = 0.0  # training: replace a categorical code by "unknown" with this probability
    # Categorical columns the model does not embed. The item id (15.9k values on assist2009) overfits in a
    # few epochs and measured no better than without it (valid AUC 0.768 vs 0.773 for lstm); its
    # difficulty still arrives through the numeric out-of-fold item statistics.
    exclude_columns: tuple[str, ...] = ("item",)
    prev_interaction: bool = True  # feed (previous exercise x previous answer), see FeatureEmbedding


def causal_mask(t: int, device: torch.device) -> torch.Tensor:
    """Bool (T, T) mask, True where attention is forbidden (keys in the future)."""
    return torch.triu(torch.ones(t, t, dtype=torch.bool, device=device), diagonal=1)


class FeatureEmbedding(nn.Module):
    """Categorical embeddings concatenated + numerics through (masked) BatchNorm and a Linear,
    projected to ``hidden`` and layer-normalised.

    With ``prev_interaction`` it also adds the previous row's exercise embeddings split by the previous
    answer (one copy when it was correct, one when wrong): the interaction (exercise, answer) of t-1
    as one input of t. Without it a Transformer key j holds exercise j but answer j-1, and pairing them
    would cost a layer.
    """

    def __init__(self, spec: FeatureSpec, c: SeqConfig, columns: list[str] | None = None,
                 use_numeric: bool = True, prev_interaction: bool = False):
        super().__init__()
        names = list(spec.categorical)
        wanted = [n for n in (names if columns is None else columns) if n not in c.exclude_columns]
        self.columns = [names.index(n) for n in wanted]
        cards = list(spec.categorical.values())
        self.embs = nn.ModuleList(nn.Embedding(cards[i], c.emb_dim, padding_idx=0) for i in self.columns)
        self.answer = names.index(c.answer_column) if prev_interaction and c.answer_column in names else None
        self.use_numeric = use_numeric and len(spec.numeric) > 0
        width = c.emb_dim * len(self.columns)
        if self.answer is not None:
            self.exercise = [k for k, i in enumerate(self.columns) if i != self.answer]
            width += 2 * c.emb_dim * len(self.exercise)
        if self.use_numeric:
            self.bn = nn.BatchNorm1d(len(spec.numeric))
            self.num_proj = nn.Linear(len(spec.numeric), c.emb_dim * 2)
            width += c.emb_dim * 2
        self.drop = nn.Dropout(c.dropout)
        self.code_dropout = c.code_dropout
        self.proj = nn.Linear(width, c.hidden)
        self.norm = nn.LayerNorm(c.hidden)

    def forward(self, cat: torch.Tensor, num: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        embs = []
        for emb, i in zip(self.embs, self.columns, strict=True):
            codes = cat[..., i]
            # Codes beyond the trained cardinality cannot come from the pipeline; map a stray one to
            # "unknown" (1) rather than crash.
            codes = torch.where(codes < emb.num_embeddings, codes, torch.ones_like(codes))
            if self.training and self.code_dropout > 0:  # rare ids overfit: sometimes train on "unknown"
                codes = torch.where((torch.rand(codes.shape, device=codes.device) < self.code_dropout)
                                    & (codes > 1), torch.ones_like(codes), codes)
            embs.append(emb(codes))
        parts = list(embs)
        if self.answer is not None:
            ex = torch.cat([embs[k] for k in self.exercise], dim=-1)
            prev = torch.zeros_like(ex)
            prev[:, 1:] = ex[:, :-1]  # window start: previous row not in the window -> zeros
            ans = cat[..., self.answer].unsqueeze(-1)
            parts += [prev * (ans == 3), prev * (ans == 2)]
        if self.use_numeric:
            if self.training:  # batch statistics over real positions only, not padding
                normed = torch.zeros_like(num)
                normed[valid] = self.bn(num[valid])
            else:
                normed = self.bn(num.flatten(0, 1)).view_as(num)
            parts.append(self.num_proj(normed))
        return self.norm(self.proj(self.drop(torch.cat(parts, dim=-1))))


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
    def layout(self) -> SequenceLayout:
        """How this model cuts a feature frame into sequences (models with equal layouts share window stores)."""
        c = self.config
        return SequenceLayout(tuple(c.group_by), c.split_every_tests, c.test_column)

    def _sequences(self, frame: pd.DataFrame) -> SequenceData:
        return self.layout().build(frame, self.spec)

    def _predict_data(self, data: Sequences, device: torch.device, batch_size: int = 256,
                      rows: np.ndarray | None = None) -> np.ndarray:
        """P(correct) per row of ``data`` (frame order), every row from its own past only. With ``rows``, only
        the windows that write those rows run (other rows stay 0): one window instead of three for the
        target of a 200-row serving history (``SequenceData`` only: it maps rows to positions)."""
        c = self.config
        out = np.zeros(data.n_rows, dtype=np.float64)
        if data.n_rows == 0:
            return out
        start, end, first = predict_windows(data, c.max_seq_len, min(c.predict_stride, c.max_seq_len))
        if rows is not None:
            wanted = np.zeros(data.n_rows + 1, dtype=np.int64)  # by position in ``order``
            position = np.empty(data.n_rows, dtype=np.int64)
            position[data.order] = np.arange(data.n_rows)
            wanted[position[rows] + 1] = 1
            wanted = np.cumsum(wanted)  # wanted[p] = number of wanted positions before p
            keep = wanted[end] > wanted[first]  # the window writes positions [first, end)
            start, end, first = start[keep], end[keep], first[keep]
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
        self.spec = spec
        return self._fit(self._sequences(train), self._sequences(valid), spec, seed, progress)

    def fit_windows(self, train: WindowStore, valid: WindowStore, spec: FeatureSpec, *, seed: int = 0,
                    progress: bool = True) -> FitResult:
        """``fit`` on sequences read from disk (the out-of-core road): the same windows, batches and shuffles as
        ``fit`` on the frames the stores were written from, so the same weights; only a batch is in memory."""
        for store in (train, valid):
            if store.layout != self.layout():
                raise ValueError(f"window store cut with {store.layout}, but {self.name} reads {self.layout()}: "
                                 "write the windows with this model's layout")
            if (store.n_cat, store.n_num) != (len(spec.categorical), len(spec.numeric)):
                raise ValueError(f"window store holds {store.n_cat} categorical and {store.n_num} numeric columns, "
                                 f"the features {len(spec.categorical)} and {len(spec.numeric)}")
        self.spec = spec
        return self._fit(train, valid, spec, seed, progress)

    def predict_store(self, store: WindowStore) -> np.ndarray:
        """P(correct) of every row of a window store, in its frame order (the chunks' frames one after another)."""
        if self.module is None:
            raise RuntimeError(f"model {self.name!r} is not fitted; call fit() or load() first")
        return self._predict_data(store, next(self.module.parameters()).device)

    def _fit(self, tr: Sequences, va: Sequences, spec: FeatureSpec, seed: int, progress: bool) -> FitResult:
        c = self.config
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(default_threads(c.num_threads))
        try:
            torch.manual_seed(seed)  # module initialisation is part of the seeded run
            self.module = self.build_module(spec)
            device = resolve_device(c.device)
            self.module.to(device)
            stride = max(1, min(c.train_stride, c.max_seq_len))
            n_windows = len(train_windows(tr, c.max_seq_len, stride, None)[0])
            steps = -(-n_windows // c.batch_size)
            va_labels = va.labels()  # frame order, like the predictions (AUC does not depend on the order)
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
                probs = self._predict_data(va, device)
                return auc(va_labels[va_known], probs[va_known])

            result = train_loop(self.module, self.module.loss, epoch_batches, steps, validate, c, seed=seed,
                                progress=progress, desc=self.name)
        finally:
            torch.set_num_threads(prev_threads)
        self.module.to("cpu")
        return result

    def predict_proba(self, frame: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        if self.module is None or self.spec is None:
            raise RuntimeError(f"model {self.name!r} is not fitted; call fit() or load() first")
        device = next(self.module.parameters()).device
        rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        probs = self._predict_data(self._sequences(frame), device, rows=rows)
        return probs if rows is None else probs[rows]

    def _save_weights(self, directory: Path) -> None:
        torch.save(self.module.state_dict(), directory / "weights.pt")

    def _load_weights(self, directory: Path) -> None:
        self.module = self.build_module(self.spec)
        state = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        self.module.load_state_dict(state)
        self.module.eval()
