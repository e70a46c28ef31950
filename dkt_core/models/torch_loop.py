"""The one torch training loop every torch model's ``fit`` uses.

AdamW, a learning-rate schedule (cosine with warm-up, reduce-on-plateau or constant), gradient clipping,
early stopping on validation AUC with the best checkpoint restored, deterministic for a given seed on a
given device, a tqdm progress bar, CPU or CUDA. It knows nothing about the model: the caller hands it
the module, a function yielding the epoch's batches and a function scoring the validation set.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dkt_core.models.base import FitResult

log = logging.getLogger("dkt.train")

# A training step input: tensors passed to module(...), the labels and the mask of positions in the loss.
Step = tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]


@dataclass
class LoopConfig:
    max_epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.01
    scheduler: str = "cosine"  # cosine | plateau | none
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    patience: int = 3  # epochs without validation AUC improvement before stopping
    time_budget_s: float | None = None  # stop after the epoch that crosses it (None = no limit)
    num_threads: int = 0  # torch intra-op threads; 0 = all cores up to 8
    device: str = "auto"  # auto | cpu | cuda


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here; use device='cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed every RNG a training run touches; cuDNN in deterministic mode."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def default_threads(requested: int) -> int:
    return requested if requested > 0 else max(1, min(os.cpu_count() or 1, 8))


def _scheduler(opt: torch.optim.Optimizer, cfg: LoopConfig, total_steps: int):
    if cfg.scheduler == "cosine":
        warm = max(1, int(cfg.warmup_frac * total_steps))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm))))
        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=1)
    if cfg.scheduler == "none":
        return None
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}; choose cosine, plateau or none")


def train_loop(module: torch.nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
               epoch_batches: Callable[[int], Iterable[Step]], steps_per_epoch: int,
               validate: Callable[[], float], cfg: LoopConfig, *, seed: int, progress: bool = True,
               desc: str = "train") -> FitResult:
    """Train ``module`` in place; on return it holds the weights of the best validation epoch.

    ``epoch_batches(epoch)`` yields (inputs, labels, loss mask) already on the module's device;
    ``validate()`` returns the validation AUC of the module in its current state.
    """
    t0 = time.perf_counter()
    seed_everything(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(opt, cfg, max(1, cfg.max_epochs * steps_per_epoch))
    best_auc, best_epoch, best_state, bad = -math.inf, -1, None, 0
    history: list[dict[str, float]] = []
    bar = tqdm(total=cfg.max_epochs * steps_per_epoch, desc=desc, disable=not progress, leave=False)
    for epoch in range(cfg.max_epochs):
        module.train()
        total, count = 0.0, 0
        for inputs, labels, mask in epoch_batches(epoch):
            logits = module(*inputs)
            loss = loss_fn(logits, labels, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            opt.step()
            if sched is not None and cfg.scheduler != "plateau":
                sched.step()
            total += float(loss.detach()) * int(mask.sum())
            count += int(mask.sum())
            bar.update(1)
        module.eval()
        with torch.no_grad():
            auc = float(validate())
        if cfg.scheduler == "plateau" and sched is not None:
            sched.step(auc)
        history.append({"epoch": epoch + 1, "train_loss": total / max(1, count), "valid_auc": auc,
                        "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{total / max(1, count):.4f}", auc=f"{auc:.4f}")
        # one line per epoch that outlives the bar (leave=False): written above the bar while it is shown
        with logging_redirect_tqdm(loggers=[logging.getLogger()]) if progress else contextlib.nullcontext():
            log.info("%s epoch %d/%d: train loss %.4f, valid AUC %.4f (%.0fs)", desc, epoch + 1, cfg.max_epochs,
                     history[-1]["train_loss"], auc, history[-1]["seconds"])
        if auc > best_auc:
            best_auc, best_epoch, bad = auc, epoch + 1, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            bad += 1
        if bad >= cfg.patience:
            break
        if cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s:
            break
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return FitResult(seconds=time.perf_counter() - t0, best_iteration=best_epoch, valid_auc=best_auc,
                     history=history)
