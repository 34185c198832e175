"""One run's model and its optimisation: :class:`Trainer` holds the model, its EMA, AdamW,
the gradient scaler and the counters on this rank's device, and :meth:`Trainer.step` is one
optimiser step (learning rate, forward under autocast, loss, clipping, EMA).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from vimss_cli.conditioning import QueryBatch
from vimss_cli.devices import autocast
from vimss_cli.model import WaveUNet
from vimss_cli.networks import Network, build_network
from vimss_cli.training import distributed
from vimss_cli.training.config import TrainConfig
from vimss_cli.training.data import ExcerptDataset, ExcerptShape
from vimss_cli.training.distributed import Distributed
from vimss_cli.training.losses import activity_loss, sdr, training_loss
from vimss_cli.training.run_folder import (
    STATE_FILE,
    RunLog,
    RunState,
    diverged_error,
    load_state,
    save_state,
)
from vimss_cli.training.warm_start import warm_start


def learning_rate(config: TrainConfig, step: int, schedule_steps: int | None = None) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``schedule_steps``
    (default ``optim.max_steps``)."""
    optim = config.optim
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    end = optim.max_steps if schedule_steps is None else schedule_steps
    span = max(1, end - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    floor = optim.min_lr_ratio
    return optim.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def is_motion_path(name: str) -> bool:
    """A parameter of the motion path: the motion encoder, FiLM's motion convolutions, the
    motion projection of concat conditioning, the activity head."""
    prefixes = ("motion_encoder.", "motion_to_query.", "activity_head.")
    return name.startswith(prefixes) or ".dynamic." in name


def is_voice_path(name: str) -> bool:
    """A parameter of the voice embedding (``ModelConfig.voices``)."""
    return name.startswith("query_encoder.voice_embedding.")


def parameter_groups(
    model: Network,
    motion_lr_scale: float,
    network_lr_scale: float = 1.0,
    voice_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """AdamW's parameter groups: the network at ``network_lr_scale``, then (when the model has
    one) its motion path at ``motion_lr_scale``, then (when it has voices) its voice embedding
    at ``voice_lr_scale``. The order is fixed, so a resumed run's saved optimizer state fits.
    With ``network_lr_scale`` 0 the network is frozen: its parameters no longer require
    gradients, and only the motion path (and voices) learn."""
    named = list(model.named_parameters())
    network = [p for n, p in named if not is_motion_path(n) and not is_voice_path(n)]
    if network_lr_scale == 0:
        for parameter in network:
            parameter.requires_grad_(False)
    groups = [{"params": network, "lr_scale": network_lr_scale}]
    motion = [p for n, p in named if is_motion_path(n)]
    if motion:
        groups.append({"params": motion, "lr_scale": motion_lr_scale})
    voices = [p for n, p in named if is_voice_path(n)]
    if voices:
        groups.append({"params": voices, "lr_scale": voice_lr_scale})
    return groups


def batch_queries(batch: dict[str, torch.Tensor], device: torch.device) -> QueryBatch:
    """Per-window queries of a collated batch: labels ``(W, K)``, appearance ``(W, K, A)``
    and motion ``(W, K, M, T_in)`` when present."""

    def get(key: str) -> torch.Tensor | None:
        value = batch.get(key)
        return None if value is None else value.to(device, non_blocking=True)

    labels = batch["labels"].to(device, non_blocking=True)
    return QueryBatch(
        labels,
        get("appearance"),
        get("motion"),
        motion_frames=get("motion_frames"),
        motion_offset=get("motion_offset"),
        motion_present=get("motion_present"),
        ensemble=get("ensemble"),
        voices=get("voices"),
    )


def _validate(
    model: Network, dataset: ExcerptDataset, count: int, device: torch.device, batch: int
) -> dict[str, float]:
    """Median SDR of the model and of the mixture baseline over fixed validation excerpts."""
    model_scores, mixture_scores = [], []
    shape = dataset.shape
    with torch.inference_mode():
        for first in range(0, count, batch):
            items = default_collate([dataset[i] for i in range(first, min(count, first + batch))])
            mixture = items["mixture"].to(device)
            targets = items["targets"].to(device)
            estimates = model(mixture, batch_queries(items, device)).float()
            out = mixture[:, :, shape.context : shape.context + shape.output_length]
            active = targets.pow(2).sum(-1) > 1e-8
            model_scores.append(sdr(estimates, targets)[active])
            mixture_scores.append(sdr(out.expand_as(targets), targets)[active])
    model_all = torch.cat(model_scores)
    mixture_all = torch.cat(mixture_scores)
    return {
        "valid_sdr": float(model_all.median()) if model_all.numel() else float("nan"),
        "valid_sdr_mixture": float(mixture_all.median()) if mixture_all.numel() else float("nan"),
        "valid_targets": int(model_all.numel()),
    }


@dataclass
class StepResult:
    """One optimiser step: its learning rate, loss and gradient norm (tensors, read only
    when logged, so that a step does not wait for the GPU)."""

    lr: float
    loss: torch.Tensor
    grad_norm: torch.Tensor
    activity: tuple[torch.Tensor, torch.Tensor] | None = None  # (loss, accuracy)


class Trainer:
    """The model of one run with its EMA, AdamW, gradient scaler and counters, on this
    rank's device; :meth:`step` is one optimiser step on a collated batch.

    ``state`` holds the counters (:class:`~vimss_cli.training.run_folder.RunState`);
    ``saved_step`` the step ``state.safetensors`` holds (``None`` before the first save),
    which a divergence error names.
    """

    def __init__(
        self,
        config: TrainConfig,
        model: Network,
        ema: Network | None,
        optimizer: torch.optim.Optimizer,
        state: RunState,
        *,
        device: torch.device,
        dist_info: Distributed,
        run_dir: Path,
        saved_step: int | None,
    ) -> None:
        self.config = config
        self.model = model
        self.ema = ema
        self.optimizer = optimizer
        self.state = state
        self.device = device
        self.dist_info = dist_info
        self.run_dir = run_dir
        self.saved_step = saved_step
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=config.optim.precision == "fp16" and device.type == "cuda"
        )
        if state.grad_scale is not None and self.scaler.is_enabled():
            self.scaler.update(state.grad_scale)
        network: Callable[..., Any] = distributed.wrap(model, device, dist_info)
        if config.run.compile:  # the plain module is what gets saved (no ``_orig_mod.`` names)
            network = torch.compile(network)
        self.network = network
        input_length = model.input_length_for(config.data.output_samples)
        output_length = model.output_length(input_length)  # at least data.output_samples
        self.shape = ExcerptShape(input_length, output_length, model.context)

    @classmethod
    def build(
        cls,
        config: TrainConfig,
        *,
        device: torch.device,
        dist_info: Distributed,
        run_dir: Path,
        resume: bool,
        log: RunLog,
    ) -> Trainer:
        """A fresh model (seeded by ``run.seed``), warm-started from ``run.init_from``, or
        restored from the run folder's state when resuming."""
        torch.manual_seed(config.run.seed)
        if device.type == "cuda":  # fixed excerpt shapes: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        model = build_network(config.model).to(device)
        ema = copy.deepcopy(model).eval() if config.optim.ema_decay > 0 else None
        optimizer = torch.optim.AdamW(
            parameter_groups(
                model,
                config.optim.motion_lr_scale,
                config.optim.network_lr_scale,
                config.optim.voice_lr_scale,
            ),
            lr=config.optim.lr,
            weight_decay=config.optim.weight_decay,
        )
        state = RunState()
        if resume:
            state = load_state(run_dir / STATE_FILE, model, optimizer, ema)
        elif config.run.init_from:
            log.write({"initialised_from": warm_start(model, config.run.init_from)})
            if ema is not None:
                ema.load_state_dict(model.state_dict())
        saved_step = state.step if resume else None
        return cls(config, model, ema, optimizer, state, device=device, dist_info=dist_info,
                   run_dir=run_dir, saved_step=saved_step)  # fmt: skip

    @property
    def scored(self) -> Network:
        """The weights validation scores and exports write: the EMA when enabled."""
        return self.ema if self.ema is not None else self.model

    def step(self, batch: dict[str, torch.Tensor]) -> StepResult:
        """One optimiser step on ``batch`` (``mixture (B, 1, T_in)``, ``targets (B, K,
        T_out)`` and the queries); raises :class:`TrainingDivergedError` when the loss is
        not finite, before the weights change."""
        config, state, device = self.config, self.state, self.device
        lr = learning_rate(config, state.step, state.schedule_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # a state saved before groups: 1
        mixture = batch["mixture"].to(device, non_blocking=True)
        targets = batch["targets"].to(device, non_blocking=True)
        queries = batch_queries(batch, device)
        with autocast(device, config.optim.precision):
            estimates = self.network(mixture, queries)
        centre = mixture[:, :, self.shape.context : self.shape.context + self.shape.output_length]
        loss = training_loss(config.optim, estimates.float(), targets, centre)
        activity = None
        if config.optim.activity_weight > 0:
            activity = self._activity_loss(mixture, queries, targets, centre)
            loss = loss + config.optim.activity_weight * activity[0]
        if not torch.isfinite(loss):
            raise diverged_error(state.step, float(loss.item()), self.run_dir, self.saved_step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            with torch.no_grad():
                pairs = zip(self.ema.parameters(), self.model.parameters(), strict=True)
                for averaged, current in pairs:
                    averaged.lerp_(current, 1 - config.optim.ema_decay)
        state.step += 1
        state.examples_seen += self.examples_per_step
        return StepResult(lr, loss, grad_norm, activity)

    def _activity_loss(
        self,
        mixture: torch.Tensor,
        queries: QueryBatch,
        targets: torch.Tensor,
        centre: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The activity head's loss and accuracy on this batch (``optim.activity_weight``)."""
        model = self.model
        assert isinstance(model, WaveUNet)  # TrainConfig refuses the option for other networks
        levels, positions = model.motion_activity(mixture, queries)
        k = queries.size
        scored = queries.motion_present
        if scored is None:
            scored = torch.ones(targets.shape[:2], dtype=torch.bool, device=targets.device)
        config = model.config
        return activity_loss(
            levels,
            positions,
            targets.flatten(0, 1),
            centre.repeat_interleave(k, dim=0).squeeze(1),
            self.shape.context,
            config.sample_rate / config.motion_rate,
            scored.expand(targets.shape[:2]).reshape(-1),
        )

    @property
    def examples_per_step(self) -> int:
        """Excerpts one step reads over all ranks."""
        return self.config.data.batch_size * self.dist_info.world

    def validate(self, dataset: ExcerptDataset, count: int) -> dict[str, float]:
        """Median SDR of :attr:`scored` and of the mixture on ``dataset``'s first ``count``
        fixed excerpts."""
        self.scored.eval()
        scores = _validate(self.scored, dataset, count, self.device, self.config.data.batch_size)
        self.model.train()
        return scores

    def checkpoint(self, wall_seconds: float) -> None:
        """Save the resumable state (main process), then wait for every rank."""
        self.saved_step = self.state.step
        if self.dist_info.is_main:
            snapshot = RunState(**{**self.state.__dict__, "wall_seconds": wall_seconds})
            scaler = self.scaler
            snapshot.grad_scale = float(scaler.get_scale()) if scaler.is_enabled() else None
            save_state(self.run_dir / STATE_FILE, self.model, self.optimizer, self.ema, snapshot)
        distributed.barrier(self.dist_info)
