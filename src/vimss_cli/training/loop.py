"""The training loop: one process, or one of several under ``torchrun`` (DDP).

A run folder holds ``config.toml`` (the resolved configuration), ``state.safetensors``
(resumable state, rewritten atomically every ``run.checkpoint_every`` steps), ``best.safetensors``
(the release-format checkpoint with the best validation SDR), ``log.jsonl`` (one line per log
interval, validation and warning), and ``tensorboard/`` event files. Only rank 0 writes.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, default_collate

from vimss_cli import __version__
from vimss_cli.checkpoint import file_sha256, save_checkpoint, weights_sha256
from vimss_cli.conditioning import QueryBatch
from vimss_cli.devices import autocast, check_precision, resolve_device
from vimss_cli.errors import DeviceError, InputError, TrainingDivergedError
from vimss_cli.model import WaveUNet
from vimss_cli.training.config import TrainConfig
from vimss_cli.training.data import (
    ExcerptDataset,
    ExcerptShape,
    PieceAudio,
    StepSampler,
    check_dataset_kind,
    load_pieces,
    split_folders,
)
from vimss_cli.training.state import RunState, load_state, save_state
from vimss_cli.training.warm_start import warm_start
from vimss_cli.urmp import SYNTH_MANIFEST_NAME

ProgressCallback = Callable[[dict[str, Any]], None]
WarningCallback = Callable[[str], None]

STATE_FILE = "state.safetensors"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
#: steps timed (after the first few, which warm up kernels) to fit the schedule to a deadline
SCHEDULE_TIMING_STEPS = (10, 30)
#: share of the time left that the fitted schedule may use (the rest: validation, export)
SCHEDULE_TIME_SHARE = 0.95
#: the fitted end is timed again (mean step time since the first timed step) at every
#: checkpoint until this share of the schedule has passed, so that a machine that was busy
#: while the first steps were timed does not cut the run short; a resumed run keeps the end
#: its state records
SCHEDULE_REFIT_UNTIL = 0.5
CONFIG_FILE = "config.toml"
LOG_FILE = "log.jsonl"


@dataclass
class TrainReport:
    """Summary of a finished (or stopped) run."""

    run_dir: Path
    step: int
    wall_seconds: float
    examples_per_second: float
    audio_seconds_per_second: float
    best_valid_sdr: float | None
    skipped_files: list[str]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _distributed_from_env() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    return Distributed(
        rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", 0))
    )


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


def sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain signal-to-distortion ratio in dB over the last axis (no distortion filter)."""
    noise = (target - estimate).pow(2).sum(-1).clamp_min(1e-10)
    return 10 * torch.log10(target.pow(2).sum(-1).clamp_min(1e-10) / noise)


#: Thresholded SDR saturates here (dB): a stem already this good stops pulling on the weights.
SDR_LOSS_CAP_DB = 30.0


def thresholded_sdr_loss(
    estimates: torch.Tensor, targets: torch.Tensor, mixture: torch.Tensor
) -> torch.Tensor:
    """Mean negative thresholded SDR in dB (Wisdom et al. 2020, MixIT), lower is better.

    Args:
        estimates: ``(B, Q, T)`` separated stems.
        targets: ``(B, Q, T)`` true stems (all zero for a player who is absent or silent).
        mixture: ``(B, 1, T)`` the mixtures the stems came from.

    A stem with signal scores ``-10 log10(|t|^2 / (|t - e|^2 + tau |t|^2))``, which saturates
    at :data:`SDR_LOSS_CAP_DB`. A silent stem, for which SDR is undefined, scores the
    estimate's energy against the mixture's, ``10 log10((|e|^2 + tau |m|^2) / |m|^2)``: the
    same scale, best when the output is the cap below the mixture.
    """
    tau = 10 ** (-SDR_LOSS_CAP_DB / 10)
    eps = 1e-8
    target_energy = targets.pow(2).sum(-1)
    mixture_energy = mixture.pow(2).sum(-1).expand_as(target_energy)
    active = target_energy > 1e-6 * mixture_energy.clamp_min(eps)
    error = (targets - estimates).pow(2).sum(-1)
    with_signal = 10 * torch.log10(error + tau * target_energy + eps) - 10 * torch.log10(
        target_energy + eps
    )
    silent = 10 * torch.log10(
        estimates.pow(2).sum(-1) + tau * mixture_energy + eps
    ) - 10 * torch.log10(mixture_energy + eps)
    return torch.where(active, with_signal, silent).mean()


def multi_resolution_stft_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance of log-magnitude STFTs at three resolutions; inputs ``(N, T)``."""
    total = estimate.new_zeros(())
    for n_fft in (256, 1024, 2048):
        window = torch.hann_window(n_fft, device=estimate.device)
        spectra = [
            torch.stft(x.float(), n_fft, n_fft // 4, window=window, return_complex=True).abs()
            for x in (estimate, target)
        ]
        total = total + F.l1_loss(torch.log1p(spectra[0]), torch.log1p(spectra[1]))
    return total / 3


class _RunLog:
    """Appends JSON lines to ``log.jsonl`` and scalars to TensorBoard (rank 0 only)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.path = run_dir / LOG_FILE
        self.writer: Any = None  # opened at the first record, so a failed setup leaves none

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.writer is None:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        step = record.get("step")
        if self.writer is not None and step is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _check_run_dir(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    saved = run_dir / CONFIG_FILE
    if resume:
        if not (run_dir / STATE_FILE).is_file() or not saved.is_file():
            raise InputError(f"--resume: no run to resume in {run_dir}")
        previous = tomllib.loads(saved.read_text())
        if previous.get("model") != config.to_dict()["model"]:
            raise InputError(
                f"--resume: {run_dir} was made with another model config; "
                "start a new run folder or use the same [model] settings"
            )
    elif (run_dir / STATE_FILE).exists():
        raise InputError(f"{run_dir} already holds a run; pass --resume or choose a new --out")


def _device(spec: str, dist_info: Distributed, precision: str) -> torch.device:
    """This rank's device, with ``precision`` checked for it."""
    device = resolve_device(spec)
    if device.type == "cuda" and dist_info.world > 1:
        device = torch.device(f"cuda:{dist_info.local_rank}")
    try:
        check_precision(precision, device, setting="optim.precision =")
    except DeviceError as error:  # a setting of the run: exit code 2, as for any other
        raise InputError(str(error)) from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def batch_queries(batch: dict[str, torch.Tensor], device: torch.device) -> QueryBatch:
    """Per-window queries of a collated batch: labels ``(W, K)``, appearance ``(W, K, A)``
    and motion ``(W, K, M, T_in)`` when present."""

    def get(key: str) -> torch.Tensor | None:
        value = batch.get(key)
        return None if value is None else value.to(device, non_blocking=True)

    return QueryBatch(get("labels"), get("appearance"), get("motion"))


def _validate(
    model: WaveUNet, dataset: ExcerptDataset, count: int, device: torch.device, batch: int
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


def _dataset_manifest(splits: list[tuple[Path, list[PieceAudio]]]) -> dict[str, Any]:
    """What the run trains and validates on: per split folder, the pieces loaded, and for
    generated data the ``vimss_synth.json`` settings and that file's sha256."""
    manifest: dict[str, Any] = {}
    for folder, pieces in splits:
        entry: dict[str, Any] = {"pieces": [piece.name for piece in pieces]}
        synth = folder / SYNTH_MANIFEST_NAME
        if synth.is_file():
            entry["vimss_synth_json_sha256"] = file_sha256(synth)
            try:
                entry["synth_settings"] = json.loads(synth.read_text()).get("settings")
            except (ValueError, AttributeError):
                entry["synth_settings"] = None
        manifest[folder.name] = entry
    return manifest


def run_training(
    config: TrainConfig,
    root: Path,
    run_dir: Path,
    *,
    device: str = "auto",
    resume: bool = False,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    dataset: str | None = None,
    progress: ProgressCallback | None = None,
    warn: WarningCallback | None = None,
) -> TrainReport:
    """Train (or continue training) a model on the URMP-layout tree at ``root``.

    ``max_steps`` overrides ``optim.max_steps`` as the step to stop at (the schedule still
    uses ``optim.max_steps``); ``max_minutes`` stops after that much wall time in this call.
    ``dataset`` (``urmp``, ``synth`` or ``None``) says what the tree is, checked by
    :func:`~vimss_cli.training.data.check_dataset_kind` and recorded in the checkpoints.

    Arguments are checked before anything is written; when setting up fails after that (no
    readable pieces, weights to start from that do not fit), a run folder this call created
    is removed again. Raises :class:`TrainingDivergedError` when the loss stops being finite.

    ``progress`` hears each step of setting up as it starts (``{"stage": ...}``: ``reading``
    and ``visual features`` for each piece, with ``split``, ``piece``, ``done`` and ``total``;
    ``building the model``; ``starting``), then the training records (``loss``,
    ``valid_sdr``); all on the main process only.
    """
    if max_steps is not None and max_steps < 1:
        raise InputError(f"--max-steps must be at least 1, got {max_steps}")
    if max_minutes is not None and not max_minutes > 0:
        raise InputError(f"--max-minutes must be more than 0, got {max_minutes}")
    dist_info = _distributed_from_env()
    if dist_info.world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend)
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, config, resume)
    train_folder, valid_folder = split_folders(root)
    dataset_warnings: list[str] = []
    folders = [train_folder] + ([valid_folder] if valid_folder is not None else [])
    check_dataset_kind(dataset, folders, dataset_warnings.append)
    torch_device = _device(device, dist_info, config.optim.precision)
    created = dist_info.is_main and not run_dir.exists()
    log = _RunLog(run_dir, dist_info.is_main)
    messages: list[str] = []

    def on_warning(message: str) -> None:
        messages.append(message)
        log.write({"warning": message})
        if warn is not None and dist_info.is_main:
            warn(message)

    def stage(name: str, **details: Any) -> None:
        """Tell ``progress`` which step of setting up starts (main process only)."""
        if progress is not None and dist_info.is_main:
            progress({"stage": name, **details})

    try:  # setting up: a failure leaves no run folder behind that this call made
        if dist_info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / CONFIG_FILE).write_text(config.to_toml())
        for message in dataset_warnings:
            on_warning(message)
        rate = config.model.sample_rate
        visual = config.model.appearance_dim > 0 or config.model.motion_channels > 0
        channels = config.model.motion_channels

        def load(folder: Path) -> tuple[list[PieceAudio], list[str]]:
            cache = run_dir / "visual_cache" / folder.name if visual else None
            features = config.model.motion_features

            def tell(event: dict[str, Any]) -> None:
                stage(event.pop("stage"), split=folder.name, **event)

            return load_pieces(folder, rate, on_warning, channels, cache, features, tell)

        train_pieces, skipped = load(train_folder)
        valid_pieces = load(valid_folder)[0] if valid_folder else None
        if valid_folder is None:
            on_warning(
                f"no valid/ split under {root}: nothing is validated and no {BEST_FILE} is "
                f"written; the final weights are exported as {LAST_FILE}"
            )
        splits = [(train_folder, train_pieces)]
        if valid_folder is not None and valid_pieces is not None:
            splits.append((valid_folder, valid_pieces))
        run_provenance = _run_provenance(
            config, root, dataset, _dataset_manifest(splits), torch_device
        )

        stage("building the model")
        torch.manual_seed(config.run.seed)
        if torch_device.type == "cuda":  # fixed excerpt shapes: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        model = WaveUNet(config.model).to(torch_device)
        ema = copy.deepcopy(model).eval() if config.optim.ema_decay > 0 else None
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
        )
        state = RunState()
        if resume:
            state = load_state(run_dir / STATE_FILE, model, optimizer, ema)
        elif config.run.init_from:
            log.write({"initialised_from": warm_start(model, config.run.init_from)})
            if ema is not None:
                ema.load_state_dict(model.state_dict())
    except BaseException:
        log.close()
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    state.skipped_files = sorted(set(state.skipped_files) | set(skipped))
    scaler = torch.amp.GradScaler(
        "cuda", enabled=config.optim.precision == "fp16" and torch_device.type == "cuda"
    )
    if state.grad_scale is not None and scaler.is_enabled():
        scaler.update(state.grad_scale)
    network: torch.nn.Module = model
    if dist_info.world > 1:
        network = DistributedDataParallel(
            model, device_ids=[torch_device.index] if torch_device.type == "cuda" else None
        )
    if config.run.compile:  # the plain module is what gets saved (no ``_orig_mod.`` names)
        network = torch.compile(network)

    input_length = model.input_length_for(config.data.output_samples)
    output_length = model.output_length(input_length)  # at least data.output_samples
    shape = ExcerptShape(input_length, output_length, model.context)
    visual_dims = (config.model.appearance_dim, config.model.motion_channels, rate)
    train_set = ExcerptDataset(
        train_pieces, shape, config.data, config.run.seed, True, *visual_dims
    )
    valid_set = None
    if valid_pieces is not None:
        valid_set = ExcerptDataset(
            valid_pieces, shape, config.data, config.run.seed + 1, False, *visual_dims
        )
    stop_step = max_steps if max_steps is not None else config.optim.max_steps
    schedule_over = state.schedule_steps is not None and state.step >= state.schedule_steps
    if state.step >= stop_step or schedule_over:
        log.close()
        return _report(run_dir, state, 0.0, 0, shape, rate)
    sampler = StepSampler(
        state.step, config.data.batch_size, dist_info.rank, dist_info.world, stop_step - state.step
    )
    loader = DataLoader(
        train_set,
        batch_size=config.data.batch_size,
        sampler=sampler,
        num_workers=config.data.workers,
        persistent_workers=config.data.workers > 0,
        pin_memory=torch_device.type == "cuda",
    )
    saved_step = state.step if resume else None  # the step state.safetensors holds
    stage("starting")
    started = time.perf_counter()
    examples_this_call = 0
    interval_start, interval_examples = started, 0
    deadline = None if max_minutes is None else started + 60 * max_minutes
    fit_schedule = (
        config.run.schedule_to_deadline and deadline is not None and state.schedule_steps is None
    )
    first_step = state.step
    timing_start = started
    model.train()
    try:
        for batch in loader:
            lr = learning_rate(config, state.step, state.schedule_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            mixture = batch["mixture"].to(torch_device, non_blocking=True)
            targets = batch["targets"].to(torch_device, non_blocking=True)
            with autocast(torch_device, config.optim.precision):
                estimates = network(mixture, batch_queries(batch, torch_device))
            estimates = estimates.float()
            if config.optim.loss == "sdr":
                centre = mixture[:, :, shape.context : shape.context + shape.output_length]
                loss = thresholded_sdr_loss(estimates, targets, centre)
            else:
                loss = F.l1_loss(estimates, targets)
            if config.optim.spectral_weight > 0:
                loss = loss + config.optim.spectral_weight * multi_resolution_stft_loss(
                    estimates.flatten(0, 1), targets.flatten(0, 1)
                )
            if not torch.isfinite(loss):
                error = _diverged(state.step, float(loss.item()), run_dir, saved_step)
                log.write({"step": state.step, "error": str(error)})
                raise error
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                with torch.no_grad():
                    for averaged, current in zip(ema.parameters(), model.parameters(), strict=True):
                        averaged.lerp_(current, 1 - config.optim.ema_decay)
            state.step += 1
            examples = config.data.batch_size * dist_info.world
            state.examples_seen += examples
            examples_this_call += examples
            interval_examples += examples
            now = time.perf_counter()
            if fit_schedule and deadline is not None:
                done = state.step - first_step
                refit = (
                    done > SCHEDULE_TIMING_STEPS[1]
                    and state.step % config.run.checkpoint_every == 0
                    and state.schedule_steps is not None
                    and state.step < SCHEDULE_REFIT_UNTIL * state.schedule_steps
                )
                if done == SCHEDULE_TIMING_STEPS[0]:
                    timing_start = now
                elif done == SCHEDULE_TIMING_STEPS[1] or refit:
                    seconds_per_step = (now - timing_start) / (done - SCHEDULE_TIMING_STEPS[0])
                    affordable = int(SCHEDULE_TIME_SHARE * (deadline - now) / seconds_per_step)
                    state.schedule_steps = min(stop_step, state.step + max(0, affordable))
                    log.write(
                        {
                            "step": state.step,
                            "schedule_steps": state.schedule_steps,
                            "seconds_per_step": seconds_per_step,
                        }
                    )
            if state.step % config.run.log_every == 0 or state.step == stop_step:
                rate_now = interval_examples / max(now - interval_start, 1e-9)
                record = {
                    "step": state.step,
                    "loss": float(loss.item()),
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "examples_per_second": rate_now,
                    "audio_seconds_per_second": rate_now * output_length / config.model.sample_rate,
                }
                log.write(record)
                if progress is not None and dist_info.is_main:
                    progress({**record, "max_steps": stop_step})
                interval_start, interval_examples = now, 0
            finished = state.step >= stop_step or (deadline is not None and now >= deadline)
            if state.schedule_steps is not None and state.step >= state.schedule_steps:
                finished = True  # the fitted schedule has ended: stop before the deadline
            validate_now = valid_set is not None and (
                state.step % config.run.validate_every == 0 or finished
            )
            if validate_now and dist_info.is_main:
                scored = ema if ema is not None else model
                scored.eval()
                scores = _validate(
                    scored,
                    valid_set,
                    config.data.validation_excerpts,
                    torch_device,
                    config.data.batch_size,
                )
                model.train()
                log.write({"step": state.step, **scores})
                if progress is not None:
                    progress({"step": state.step, "max_steps": stop_step, **scores})
                best = state.best_valid_sdr
                if math.isfinite(scores["valid_sdr"]) and (
                    best is None or scores["valid_sdr"] > best
                ):
                    state.best_valid_sdr = scores["valid_sdr"]
                    _export(
                        run_dir / BEST_FILE,
                        scored,
                        state,
                        run_provenance,
                        scores,
                        state.wall_seconds + now - started,
                    )
            if state.step % config.run.checkpoint_every == 0 or finished:
                saved_step = state.step
                _checkpoint(
                    run_dir,
                    model,
                    optimizer,
                    ema,
                    state,
                    scaler,
                    state.wall_seconds + now - started,
                    dist_info,
                )
            if finished:
                if dist_info.is_main:
                    _export(
                        run_dir / LAST_FILE,
                        ema if ema is not None else model,
                        state,
                        run_provenance,
                        None,
                        state.wall_seconds + time.perf_counter() - started,
                    )
                break
        log.write(
            {"step": state.step, "replica_weights_sha256": _replica_digests(model, dist_info)}
        )
    finally:
        log.close()
    elapsed = time.perf_counter() - started
    state.wall_seconds += elapsed
    return _report(run_dir, state, elapsed, examples_this_call, shape, rate)


def _diverged(
    step: int, loss: float, run_dir: Path, saved_step: int | None
) -> TrainingDivergedError:
    """The error of a run whose loss stopped being finite, with what the user can do next."""
    if saved_step is None:
        advice = "nothing was saved yet: lower optim.lr (or optim.grad_clip) and start again"
    else:
        advice = (
            f"{run_dir / STATE_FILE} holds step {saved_step}: lower optim.lr (or "
            "optim.grad_clip) and continue with --resume"
        )
    return TrainingDivergedError(f"training diverged at step {step} (loss {loss}); {advice}")


def _checkpoint(
    run_dir: Path,
    model: WaveUNet,
    optimizer: torch.optim.Optimizer,
    ema: torch.nn.Module | None,
    state: RunState,
    scaler: torch.amp.GradScaler,
    wall_seconds: float,
    dist_info: Distributed,
) -> None:
    if dist_info.is_main:
        snapshot = RunState(**{**state.__dict__, "wall_seconds": wall_seconds})
        snapshot.grad_scale = float(scaler.get_scale()) if scaler.is_enabled() else None
        save_state(run_dir / STATE_FILE, model, optimizer, ema, snapshot)
    if dist_info.world > 1:
        dist.barrier()


def _run_provenance(
    config: TrainConfig,
    root: Path,
    dataset: str | None,
    data_manifest: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """The provenance every export of this run shares (built once per run)."""
    return {
        "trained": True,
        "code_version": __version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dataset": dataset,
        "dataset_root": str(root),
        "data_manifest": data_manifest,
        "train_config": config.to_dict(),
    }


def _export(
    path: Path,
    model: WaveUNet,
    state: RunState,
    run_provenance: dict[str, Any],
    scores: dict[str, float] | None,
    wall_seconds: float,
) -> None:
    """Write a release-format checkpoint of ``model`` with the run's provenance."""
    provenance = {
        **run_provenance,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "steps": state.step,
        "examples_seen": state.examples_seen,
        "wall_seconds": round(wall_seconds, 1),
        "validation": scores,
    }
    save_checkpoint(path, model, provenance)


def _report(
    run_dir: Path, state: RunState, elapsed: float, examples: int, shape: ExcerptShape, rate: int
) -> TrainReport:
    per_second = examples / elapsed if elapsed > 0 else 0.0
    return TrainReport(
        run_dir=run_dir,
        step=state.step,
        wall_seconds=elapsed,
        examples_per_second=per_second,
        audio_seconds_per_second=per_second * shape.output_length / rate,
        best_valid_sdr=state.best_valid_sdr,
        skipped_files=state.skipped_files,
    )


def _replica_digests(model: WaveUNet, dist_info: Distributed) -> list[str]:
    """sha256 of every rank's weights (one entry per rank; all equal when DDP is in sync)."""
    digest = weights_sha256(model.state_dict())
    if dist_info.world == 1:
        return [digest]
    gathered: list[Any] = [None] * dist_info.world
    dist.all_gather_object(gathered, digest)
    return [str(d) for d in gathered]
