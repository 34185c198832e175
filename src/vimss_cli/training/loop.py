"""The training loop: one process, or one of several under ``torchrun`` (DDP).

:func:`run_training` checks the request, reads the data, builds a :class:`Trainer` and runs
its steps with the schedule, logging, validation, checkpoints and exports around them. What
the run folder holds is in :mod:`~vimss_cli.training.run_folder`; ranks and the process group
in :mod:`~vimss_cli.training.distributed`; the losses in :mod:`~vimss_cli.training.losses`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vimss_cli.checkpoint import resolve_checkpoint
from vimss_cli.devices import check_precision, resolve_device
from vimss_cli.errors import DeviceError, InputError, TrainingDivergedError
from vimss_cli.progress import ProgressCallback
from vimss_cli.training import distributed
from vimss_cli.training.config import TrainConfig
from vimss_cli.training.data import (
    ExcerptDataset,
    PieceAudio,
    StepSampler,
    check_dataset_kind,
    load_pieces,
    split_folders,
)
from vimss_cli.training.distributed import Distributed
from vimss_cli.training.run_folder import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    RunLog,
    RunState,
    check_run_dir,
    dataset_manifest,
    export,
    logged_dataset_root,
    run_provenance,
)
from vimss_cli.training.trainer import StepResult, Trainer
from vimss_cli.urmp import list_pieces

WarningCallback = Callable[[str], None]

#: steps timed (after the first few, which warm up kernels) to fit the schedule to a deadline
SCHEDULE_TIMING_STEPS = (10, 30)
#: share of the time left that the fitted schedule may use (the rest: validation, export)
SCHEDULE_TIME_SHARE = 0.95
#: the fitted end is timed again (mean step time since the first timed step) at every
#: checkpoint until this share of the schedule has passed, so that a machine that was busy
#: while the first steps were timed does not cut the run short; a resumed run keeps the end
#: its state records
SCHEDULE_REFIT_UNTIL = 0.5


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
    #: the cosine schedule fitted to a deadline (``run.schedule_to_deadline``) has ended
    schedule_over: bool = False
    #: the validation set ``best_valid_sdr`` is scored on: ``"valid"`` (the valid split) or
    #: ``"real_valid"`` (``run.real_valid``)
    best_on: str = "valid"

    def to_json(self) -> dict[str, Any]:
        """What ``vimss train --json`` prints."""
        return {
            "run_dir": str(self.run_dir),
            "step": self.step,
            "wall_seconds": round(self.wall_seconds, 2),
            "examples_per_second": round(self.examples_per_second, 3),
            "audio_seconds_per_second": round(self.audio_seconds_per_second, 3),
            "best_valid_sdr": self.best_valid_sdr,
            "best_on": self.best_on,
            "skipped_files": self.skipped_files,
        }


class DeadlineSchedule:
    """Ends the cosine schedule at the step a wall-clock deadline allows
    (``run.schedule_to_deadline`` with ``--max-minutes``).

    Steps :data:`SCHEDULE_TIMING_STEPS` of this call are timed, and the schedule's end set to
    what :data:`SCHEDULE_TIME_SHARE` of the time left affords; it is timed again at every
    checkpoint until :data:`SCHEDULE_REFIT_UNTIL` of the schedule has passed. A state that
    already records an end keeps it.
    """

    def __init__(
        self, config: TrainConfig, state: RunState, deadline: float | None, stop_step: int
    ) -> None:
        self.enabled = (
            config.run.schedule_to_deadline
            and deadline is not None
            and state.schedule_steps is None
        )
        self.deadline = deadline
        self.stop_step = stop_step
        self.checkpoint_every = config.run.checkpoint_every
        self.first_step = state.step
        self.timing_start = 0.0

    def after_step(self, state: RunState, now: float) -> dict[str, Any] | None:
        """Time the step that ended at ``now``; when the end is (re)fitted, set
        ``state.schedule_steps`` and return the record to log."""
        if not self.enabled or self.deadline is None:
            return None
        done = state.step - self.first_step
        first, last = SCHEDULE_TIMING_STEPS
        refit = (
            done > last
            and state.step % self.checkpoint_every == 0
            and state.schedule_steps is not None
            and state.step < SCHEDULE_REFIT_UNTIL * state.schedule_steps
        )
        if done == first:
            self.timing_start = now
        elif done == last or refit:
            seconds_per_step = (now - self.timing_start) / (done - first)
            affordable = int(SCHEDULE_TIME_SHARE * (self.deadline - now) / seconds_per_step)
            state.schedule_steps = min(self.stop_step, state.step + max(0, affordable))
            return {
                "step": state.step,
                "schedule_steps": state.schedule_steps,
                "seconds_per_step": seconds_per_step,
            }
        return None


@dataclass
class _Run:
    """What the step loop needs besides the trainer: the validation sets, the log, where to
    tell progress, the provenance of exports, when to stop, and the clock."""

    #: log name (``valid``, ``real_valid``) -> fixed validation excerpts and how many of
    #: them are scored; may be empty
    valid_sets: dict[str, tuple[ExcerptDataset, int]]
    log: RunLog
    progress: ProgressCallback | None
    provenance: dict[str, Any]
    stop_step: int
    deadline: float | None
    started: float

    def tell(self, record: dict[str, Any]) -> None:
        self.log.write(record)
        if self.progress is not None:
            self.progress({**record, "max_steps": self.stop_step})


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
    is removed again. A run that stops before its first state (a loss that diverges at once,
    Ctrl-C) keeps its folder, log and exports; a fresh start may reuse it
    (:func:`~vimss_cli.training.run_folder.check_run_dir`). Raises
    :class:`TrainingDivergedError` when the loss stops being finite.

    ``progress`` hears each step of setting up as it starts (``{"stage": ...}``: ``reading``
    and ``visual features`` for each piece, with ``split``, ``piece``, ``done`` and ``total``;
    ``building the model``; ``starting``), then the training records (``loss``,
    ``valid_sdr``); all on the main process only.
    """
    if max_steps is not None and max_steps < 1:
        raise InputError(f"--max-steps must be at least 1, got {max_steps}")
    if max_minutes is not None and not max_minutes > 0:
        raise InputError(f"--max-minutes must be more than 0, got {max_minutes}")
    if config.run.init_from and not resume:  # a wrong name fails before the data is read
        resolve_checkpoint(config.run.init_from)
    config = _with_real_valid_checked(config)
    dist_info = distributed.set_up(device)
    run_dir = Path(run_dir)
    changed = check_run_dir(run_dir, config, resume, dist_info.is_main)
    folders = split_folders(root)
    dataset_warnings: list[str] = list(changed)  # told and logged with the data's
    check_dataset_kind(dataset, [f for f in folders if f is not None], dataset_warnings.append)
    torch_device = _device(device, dist_info, config.optim.precision)
    if not dist_info.is_main:
        progress = warn = None  # only the main process tells
    log = RunLog(run_dir, dist_info.is_main)
    trainer, train_set, valid_sets, provenance = _set_up(
        config,
        root,
        folders,
        dataset,
        dataset_warnings,
        device=torch_device,
        dist_info=dist_info,
        run_dir=run_dir,
        resume=resume,
        log=log,
        progress=progress,
        warn=warn,
    )
    state = trainer.state
    scored_on = "real_valid " + config.run.real_valid if config.run.real_valid else "valid"
    if state.best_valid_sdr is not None and state.best_scored_on != scored_on:

        def named(on: str) -> str:
            return "the valid split" if on == "valid" else on.removeprefix("real_valid ")

        message = (
            f"--resume: best.safetensors now follows the SDR on {named(scored_on)} (the "
            f"earlier best, {state.best_valid_sdr:.2f} dB, was scored on "
            f"{named(state.best_scored_on)}) and starts afresh"
        )
        if dist_info.is_main:
            log.write({"warning": message})
            if warn is not None:
                warn(message)
        state.best_valid_sdr = None
    state.best_scored_on = scored_on
    stop_step = max_steps if max_steps is not None else config.optim.max_steps
    schedule_over = state.schedule_steps is not None and state.step >= state.schedule_steps
    if state.step >= stop_step or schedule_over:
        log.close()
        return _report(trainer, 0.0, 0)
    if progress is not None:
        progress({"stage": "starting"})
    started = time.perf_counter()
    deadline = None if max_minutes is None else started + 60 * max_minutes
    run = _Run(valid_sets, log, progress, provenance, stop_step, deadline, started)
    loader = _loader(train_set, config, state.step, stop_step, dist_info, torch_device)
    try:
        examples = _run_steps(trainer, loader, run)
    finally:
        log.close()
    elapsed = time.perf_counter() - started
    state.wall_seconds += elapsed
    return _report(trainer, elapsed, examples)


def _with_real_valid_checked(config: TrainConfig) -> TrainConfig:
    """``config`` with ``run.real_valid`` resolved to an absolute folder (``~`` expanded), so
    that the run folder's config and state name it wherever the run is resumed from; a
    folder that is missing or holds no pieces is one line before anything is written."""
    if not config.run.real_valid:
        return config
    folder = Path(config.run.real_valid).expanduser().resolve()
    try:
        list_pieces(folder)
    except InputError as error:
        raise InputError(
            f"run.real_valid: {error} (give a URMP-layout folder of real recordings with "
            "--real-valid DIR, or drop it with --set run.real_valid=)"
        ) from None
    return dataclasses.replace(config, run=dataclasses.replace(config.run, real_valid=str(folder)))


def _loader(
    train_set: ExcerptDataset,
    config: TrainConfig,
    first_step: int,
    stop_step: int,
    dist_info: Distributed,
    device: torch.device,
) -> DataLoader:
    """Batches of this rank for steps ``first_step`` to ``stop_step`` (:class:`StepSampler`)."""
    batch_size = config.data.batch_size
    sampler = StepSampler(
        first_step, batch_size, dist_info.rank, dist_info.world, stop_step - first_step
    )
    return DataLoader(
        train_set,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.data.workers,
        persistent_workers=config.data.workers > 0,
        pin_memory=device.type == "cuda",
    )


def _device(spec: str, dist_info: Distributed, precision: str) -> torch.device:
    """This rank's device, with ``precision`` checked for it."""
    device = distributed.rank_device(resolve_device(spec), dist_info)
    try:
        check_precision(precision, device, setting="optim.precision =")
    except DeviceError as error:  # a setting of the run: exit code 2, as for any other
        raise InputError(str(error)) from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _set_up(
    config: TrainConfig,
    root: Path,
    folders: tuple[Path, Path | None],
    dataset: str | None,
    dataset_warnings: list[str],
    *,
    device: torch.device,
    dist_info: Distributed,
    run_dir: Path,
    resume: bool,
    log: RunLog,
    progress: ProgressCallback | None,
    warn: WarningCallback | None,
) -> tuple[Trainer, ExcerptDataset, dict[str, tuple[ExcerptDataset, int]], dict[str, Any]]:
    """Write the config, read the splits, build (or restore) the model: the trainer, the
    training excerpts, the validation excerpts by log name (``valid``, ``real_valid``) and
    the provenance of the run's exports. A failure leaves no run folder behind that this
    call made."""
    created = dist_info.is_main and not run_dir.exists()

    def on_warning(message: str) -> None:
        log.write({"warning": message})
        if warn is not None:
            warn(message)

    try:
        if dist_info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / CONFIG_FILE).write_text(config.to_toml())
        here = str(Path(root).resolve())
        before = logged_dataset_root(run_dir) if resume else None
        if before is not None and before != here:
            dataset_warnings = [
                *dataset_warnings,
                f"--resume: the run trained on {before}, now on {here} (from this step on)",
            ]
        for message in dataset_warnings:
            on_warning(message)
        train_pieces, valid_pieces, skipped = _read_splits(
            config, root, folders, run_dir, on_warning, progress
        )
        real_pieces = None  # scored on the main process only
        if dist_info.is_main:
            real_pieces = _read_real_valid(config, on_warning, progress)
        train_folder, valid_folder = folders
        splits = [(train_folder, train_pieces)]
        if valid_folder is not None and valid_pieces is not None:
            splits.append((valid_folder, valid_pieces))
        provenance = run_provenance(config, root, dataset, dataset_manifest(splits), device)
        if progress is not None:
            progress({"stage": "building the model"})
        trainer = Trainer.build(config, device=device, dist_info=dist_info, run_dir=run_dir,
                                resume=resume, log=log)  # fmt: skip
        log.write({"dataset_root": here})  # once the data was read and the run is set up
    except BaseException:
        log.close()
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    state = trainer.state
    state.skipped_files = sorted(set(state.skipped_files) | set(skipped))
    longest = max(piece.stems.shape[1] for piece in train_pieces)
    if trainer.shape.input_length > longest:
        rate = config.model.sample_rate
        on_warning(
            f"an excerpt spans {trainer.shape.input_length / rate:.2f} s (data.output_samples "
            f"and the model's context), longer than every training piece (at most "
            f"{longest / rate:.2f} s): most of each excerpt is silence"
        )
    train_set = ExcerptDataset.from_config(train_pieces, trainer.shape, config)
    valid_sets = {}
    for name, pieces, count in (
        ("valid", valid_pieces, config.data.validation_excerpts),
        ("real_valid", real_pieces, config.run.real_valid_excerpts),
    ):
        if pieces is not None:
            excerpts = ExcerptDataset.from_config(pieces, trainer.shape, config, validation=True)
            valid_sets[name] = (excerpts, count)
    return trainer, train_set, valid_sets, provenance


def _read_splits(
    config: TrainConfig,
    root: Path,
    folders: tuple[Path, Path | None],
    run_dir: Path,
    on_warning: WarningCallback,
    progress: ProgressCallback | None,
) -> tuple[list[PieceAudio], list[PieceAudio] | None, list[str]]:
    """The pieces of the training and validation splits (``None`` for a missing validation
    split), and the files skipped in the training split; for a video model, with each
    player's visual features (cached in the run folder)."""
    model = config.model
    visual = model.appearance_dim > 0 or model.motion_channels > 0

    def load(folder: Path) -> tuple[list[PieceAudio], list[str]]:
        cache = run_dir / "visual_cache" / folder.name if visual else None

        def tell(event: dict[str, Any]) -> None:
            if progress is not None:
                progress({"stage": event.pop("stage"), "split": folder.name, **event})

        return load_pieces(folder, model.sample_rate, on_warning, model.motion_channels, cache,
                           model.motion_features, tell)  # fmt: skip

    train_folder, valid_folder = folders
    train_pieces, skipped = load(train_folder)
    valid_pieces = load(valid_folder)[0] if valid_folder else None
    if valid_folder is None and not config.run.real_valid:
        on_warning(
            f"no valid/ split under {root}: nothing is validated and no {BEST_FILE} is "
            f"written; the final weights are exported as {LAST_FILE}"
        )
    elif valid_folder is None:
        on_warning(f"no valid/ split under {root}: only run.real_valid is validated")
    return train_pieces, valid_pieces, skipped


def _read_real_valid(
    config: TrainConfig, on_warning: WarningCallback, progress: ProgressCallback | None
) -> list[PieceAudio] | None:
    """The pieces of ``run.real_valid`` (audio only: queried by label, whatever the model
    takes), or ``None`` when it is not set."""
    if not config.run.real_valid:
        return None

    def tell(event: dict[str, Any]) -> None:
        if progress is not None:
            progress({"stage": event.pop("stage"), "split": "real validation", **event})

    folder = Path(config.run.real_valid)
    return load_pieces(folder, config.model.sample_rate, on_warning, progress=tell)[0]


def best_on(config: TrainConfig) -> str:
    """The validation set whose SDR chooses ``best.safetensors``: ``real_valid`` when the
    run has real recordings (``run.real_valid``), else ``valid``."""
    return "real_valid" if config.run.real_valid else "valid"


def _run_steps(trainer: Trainer, loader: DataLoader, run: _Run) -> int:
    """Train until the stop step, the deadline or the fitted schedule's end; validate,
    checkpoint and export on the way. Returns the excerpts read in this call (all ranks)."""
    config, state, main = trainer.config, trainer.state, trainer.dist_info.is_main
    schedule = DeadlineSchedule(config, state, run.deadline, run.stop_step)
    examples = interval_examples = 0
    interval_start = run.started
    trainer.model.train()
    for batch in loader:
        try:
            result = trainer.step(batch)
        except TrainingDivergedError as error:
            run.log.write({"step": state.step, "error": str(error)})
            raise
        examples += trainer.examples_per_step
        interval_examples += trainer.examples_per_step
        now = time.perf_counter()
        fitted = schedule.after_step(state, now)
        if fitted is not None:
            run.log.write(fitted)
        if state.step % config.run.log_every == 0 or state.step == run.stop_step:
            rate = interval_examples / max(now - interval_start, 1e-9)
            run.tell(_step_record(trainer, result, rate))
            interval_start, interval_examples = now, 0
        finished = state.step >= run.stop_step or (run.deadline is not None and now >= run.deadline)
        if state.schedule_steps is not None and state.step >= state.schedule_steps:
            finished = True  # the fitted schedule has ended: stop before the deadline
        validate_now = state.step % config.run.validate_every == 0 or finished
        if run.valid_sets and validate_now and main:
            _validate_and_keep_best(trainer, run, now)
        if state.step % config.run.checkpoint_every == 0 or finished:
            trainer.checkpoint(state.wall_seconds + now - run.started)
        if finished:
            if main:
                wall = state.wall_seconds + time.perf_counter() - run.started
                export(
                    trainer.run_dir / LAST_FILE, trainer.scored, state, run.provenance, None, wall
                )
            break
    digests = distributed.replica_digests(trainer.model, trainer.dist_info)
    run.log.write({"step": state.step, "replica_weights_sha256": digests})
    return examples


def _step_record(trainer: Trainer, result: StepResult, examples_per_second: float) -> dict:
    """The ``log.jsonl`` line of a logged step."""
    output_length, rate = trainer.shape.output_length, trainer.config.model.sample_rate
    record = {
        "step": trainer.state.step,
        "loss": float(result.loss.item()),
        "lr": result.lr,
        "grad_norm": float(result.grad_norm),
        "examples_per_second": examples_per_second,
        "audio_seconds_per_second": examples_per_second * output_length / rate,
    }
    if result.activity is not None:
        record["activity_loss"] = float(result.activity[0].item())
        record["activity_accuracy"] = float(result.activity[1].item())
    return record


def _validate_and_keep_best(trainer: Trainer, run: _Run, now: float) -> None:
    """Score each validation set's excerpts (``valid_sdr``, ``real_valid_sdr``, ...); export
    ``best.safetensors`` when the SDR of :func:`best_on`'s set is the highest so far (the
    first of equal ones is kept)."""
    state = trainer.state
    scores: dict[str, float] = {}
    for name, (dataset, count) in run.valid_sets.items():
        for key, value in trainer.validate(dataset, count).items():  # -> real_valid_sdr
            scores[name + key.removeprefix("valid")] = value
    run.tell({"step": state.step, **scores})
    chosen, best = scores[f"{best_on(trainer.config)}_sdr"], state.best_valid_sdr
    if math.isfinite(chosen) and (best is None or chosen > best):
        state.best_valid_sdr = chosen
        wall = state.wall_seconds + now - run.started
        export(trainer.run_dir / BEST_FILE, trainer.scored, state, run.provenance, scores, wall)


def _report(trainer: Trainer, elapsed: float, examples: int) -> TrainReport:
    state = trainer.state
    per_second = examples / elapsed if elapsed > 0 else 0.0
    return TrainReport(
        run_dir=trainer.run_dir,
        step=state.step,
        wall_seconds=elapsed,
        examples_per_second=per_second,
        audio_seconds_per_second=(
            per_second * trainer.shape.output_length / trainer.config.model.sample_rate
        ),
        best_valid_sdr=state.best_valid_sdr,
        skipped_files=state.skipped_files,
        schedule_over=state.schedule_steps is not None and state.step >= state.schedule_steps,
        best_on=best_on(trainer.config),
    )
