"""The run folder: what a training run writes, and reading it back to resume.

| file | what |
|---|---|
| ``config.toml`` | the resolved configuration (:data:`CONFIG_FILE`) |
| ``state.safetensors`` | the resumable state (:func:`save_state`, :func:`load_state`) |
| ``best.safetensors`` | release-format checkpoint of the best validation SDR (:func:`export`) |
| ``last.safetensors`` | the final weights, in the same format |
| ``log.jsonl`` | one JSON line per log interval, validation and warning (:class:`RunLog`) |
| ``tensorboard/`` | the same scalars as TensorBoard event files |

Only rank 0 writes. The state is one safetensors file (nothing pickled). Tensors:
``model.*`` (weights), ``ema.*`` (averaged weights, when enabled) and
``optim.<param index>.<name>`` (AdamW moments and step counts). Metadata: JSON of the
optimiser's parameter groups and of the run's counters. Written to a temporary file and
renamed, so a crash or a full disk leaves the previous state intact.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from vimss_cli import __version__
from vimss_cli.checkpoint import (
    describe_state_mismatch,
    file_sha256,
    save_checkpoint,
    save_file_atomically,
)
from vimss_cli.errors import CheckpointError, InputError, TrainingDivergedError
from vimss_cli.networks import Network
from vimss_cli.training.config import TrainConfig
from vimss_cli.training.data import PieceAudio
from vimss_cli.urmp import SYNTH_MANIFEST_NAME

CONFIG_FILE = "config.toml"
STATE_FILE = "state.safetensors"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
LOG_FILE = "log.jsonl"


@dataclass
class RunState:
    """What the loop needs besides tensors to continue exactly."""

    step: int = 0
    best_valid_sdr: float | None = None
    wall_seconds: float = 0.0
    examples_seen: int = 0
    skipped_files: list[str] = field(default_factory=list)
    grad_scale: float | None = None
    #: the step the learning-rate schedule ends at, when fitted to a wall-clock budget
    #: (``run.schedule_to_deadline``); ``None``: ``optim.max_steps``
    schedule_steps: int | None = None
    #: what ``best_valid_sdr`` was scored on: ``"valid"`` (the valid split) or
    #: ``"real_valid FOLDER"`` (``run.real_valid``, resolved); a resume onto another set
    #: starts the best afresh
    best_scored_on: str = "valid"


def save_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: torch.nn.Module | None,
    state: RunState,
) -> None:
    """Write the run state atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        tensors[f"model.{name}"] = tensor.detach().cpu().contiguous()
    if ema is not None:
        for name, tensor in ema.state_dict().items():
            tensors[f"ema.{name}"] = tensor.detach().cpu().contiguous()
    optimizer_state = optimizer.state_dict()
    for index, entries in optimizer_state["state"].items():
        for key, value in entries.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    metadata = {
        "param_groups": json.dumps(optimizer_state["param_groups"]),
        "run_state": json.dumps(state.__dict__),
    }
    save_file_atomically(tensors, Path(path), metadata)


def load_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: torch.nn.Module | None,
) -> RunState:
    """Restore weights, EMA and optimiser from ``path``; return the counters.

    A file that is not a training state of this model (a release checkpoint, another run's
    state, one written by another vimss version) raises :class:`CheckpointError` naming what
    does not fit, before anything is restored.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"cannot read training state {path}: {error}") from None

    def foreign(reason: str) -> CheckpointError:
        return CheckpointError(
            f"{path} is not a training state of this model ({reason}); "
            "start a new run folder, or put back the state.safetensors this run wrote"
        )

    if "param_groups" not in metadata or "run_state" not in metadata:
        raise CheckpointError(
            f"{path} is not a training state (no optimiser state or run counters: "
            "a release checkpoint?); start a new run, with --init-from to use its weights"
        )
    parts = {"model": _part(tensors, "model."), "ema": _part(tensors, "ema.")}
    if ema is not None and not parts["ema"]:
        raise CheckpointError(
            f"{path} holds no averaged weights: it was saved with optim.ema_decay = 0; "
            "resume with that setting"
        )
    targets = {"model": model, "ema": ema}
    for label, module in targets.items():
        if module is None:
            continue
        problem = describe_state_mismatch(module.state_dict(), parts[label])
        if problem:
            raise foreign(f"{label} weights: {problem}")
    entries: dict[int, dict[str, torch.Tensor]] = {}
    try:
        for name, tensor in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                entries.setdefault(int(index), {})[key] = tensor
        param_groups = json.loads(metadata["param_groups"])
        values: dict[str, Any] = json.loads(metadata["run_state"])
        run_state = RunState(**values)
    except (ValueError, TypeError) as error:
        raise foreign(f"unreadable counters: {error}") from None
    model.load_state_dict(parts["model"])
    if ema is not None:
        ema.load_state_dict(parts["ema"])
    try:
        optimizer.load_state_dict({"state": entries, "param_groups": param_groups})
    except (ValueError, KeyError, RuntimeError) as error:
        raise foreign(f"optimiser state: {' '.join(str(error).split())}") from None
    return run_state


def _part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def check_run_dir(
    run_dir: Path, config: TrainConfig, resume: bool, is_main: bool = True
) -> list[str]:
    """Refuse to resume a folder without a run, or one made with another ``[model]``; and
    to start a fresh run in a folder that already holds one, or anything else (the run
    writes ``config.toml``, ``log.jsonl`` and checkpoints there: a user's own files of those
    names were replaced). Only the main process (``is_main``) looks for other files: the
    others may start after it has begun writing.

    Returns, on a resume, one line per setting outside ``[model]`` that differs from the
    run's saved config (which is then rewritten with the new values: the lines are the trace
    of what the earlier steps used)."""
    saved = run_dir / CONFIG_FILE
    if os.path.lexists(run_dir) and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is not a folder: give a folder for the run")
    if resume:
        missing = [name for name in (STATE_FILE, CONFIG_FILE) if not (run_dir / name).is_file()]
        if len(missing) == 2:
            raise InputError(f"--resume: no run to resume in {run_dir}")
        if missing:  # e.g. a returned GPU run copied back without its config
            raise InputError(
                f"--resume: {run_dir} has no {missing[0]}; a run is resumed from its "
                f"{STATE_FILE} and {CONFIG_FILE} together"
            )
        previous = tomllib.loads(saved.read_text())
        if previous.get("model") != config.to_dict()["model"]:
            raise InputError(
                f"--resume: {run_dir} was made with another model config; "
                "start a new run folder or use the same [model] settings"
            )
        return config_changes(previous, config.to_dict())
    elif (run_dir / STATE_FILE).exists():
        raise InputError(f"{run_dir} already holds a run; pass --resume or choose a new --out")
    elif is_main and run_dir.is_dir() and any(run_dir.iterdir()):
        if stopped_before_first_state(run_dir):
            return [
                f"starting afresh in {run_dir}: the run there stopped before its first "
                f"checkpoint (nothing to resume); its {LOG_FILE} is appended to"
            ]
        raise InputError(
            f"{run_dir} is not empty and holds no run to resume; train into a new or empty "
            "folder (a run writes config.toml, log.jsonl and checkpoints there)"
        )
    return []


#: What a run writes before its first state: a folder holding only these (and a log of
#: ours) is a run that stopped before there was anything to resume.
BEFORE_FIRST_STATE = {CONFIG_FILE, LOG_FILE, "tensorboard", "visual_cache"}


def stopped_before_first_state(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what a vimss run writes before its first state (a
    config, a log whose every line is a JSON object, TensorBoard files, a visual cache), so
    that a fresh run may start there: a loss that diverged at once, or Ctrl-C in the first
    steps, left such a folder, and the same command was then refused. Exports
    (``best.safetensors``) or any other file make it no such folder."""
    names = {entry.name for entry in run_dir.iterdir()}
    if not names <= BEFORE_FIRST_STATE or LOG_FILE not in names:
        return False
    try:
        lines = (run_dir / LOG_FILE).read_text().splitlines()
        return all(isinstance(json.loads(line), dict) for line in lines if line.strip())
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``"--resume: optim.lr was 0.0003, now 0.001 ..."`` for each setting that differs."""
    changes = []
    for section in sorted(set(before) | set(after)):
        old, new = before.get(section, {}), after.get(section, {})
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.append(
                    f"--resume: {section}.{key} was {old.get(key)!r}, now {new.get(key)!r} "
                    "(from this step on; config.toml now says the new value)"
                )
    return changes


class RunLog:
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


def logged_dataset_root(run_dir: Path) -> str | None:
    """The data folder the run's last call trained on (its last ``dataset_root`` record in
    ``log.jsonl``), or ``None`` when none was logged (a run from before such records)."""
    root = None
    try:
        lines = (run_dir / LOG_FILE).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("dataset_root"), str):
            root = record["dataset_root"]
    return root


def dataset_manifest(splits: list[tuple[Path, list[PieceAudio]]]) -> dict[str, Any]:
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


def run_provenance(
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


def export(
    path: Path,
    model: Network,
    state: RunState,
    provenance: dict[str, Any],
    scores: dict[str, float] | None,
    wall_seconds: float,
) -> None:
    """Write a release-format checkpoint of ``model`` with the run's ``provenance``."""
    full = {
        **provenance,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "steps": state.step,
        "examples_seen": state.examples_seen,
        "wall_seconds": round(wall_seconds, 1),
        "validation": scores,
    }
    save_checkpoint(path, model, full)


def diverged_error(
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
