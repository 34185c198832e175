"""The resumable state of a training run, in one safetensors file (nothing pickled).

Tensors: ``model.*`` (weights), ``ema.*`` (averaged weights, when enabled) and
``optim.<param index>.<name>`` (AdamW moments and step counts). Metadata: JSON of the
optimiser's parameter groups and of the run's counters. Written to a temporary file and
renamed, so a crash or a full disk leaves the previous state intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from vimss_cli.checkpoint import describe_state_mismatch, save_file_atomically
from vimss_cli.errors import CheckpointError


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
