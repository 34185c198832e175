"""scripts/average_checkpoints.py: the weighted mean of one network's checkpoints."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

from conftest import TINY_CONFIG, make_tiny_model
from vimss_cli.checkpoint import load_checkpoint, save_checkpoint
from vimss_cli.model import ModelConfig

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_checkpoints.py"


def run(*args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


def test_the_average_is_the_weighted_mean_and_loads(tmp_path: Path) -> None:
    first, second = make_tiny_model(seed=0), make_tiny_model(seed=1)
    save_checkpoint(tmp_path / "a.safetensors", first, {"trained": True})
    save_checkpoint(tmp_path / "b.safetensors", second, {"trained": True})
    done = run(
        tmp_path / "mean.safetensors",
        tmp_path / "a.safetensors",
        tmp_path / "b.safetensors",
        "--weights",
        "3,1",
    )
    assert done.returncode == 0, done.stderr
    mean = load_checkpoint(tmp_path / "mean.safetensors")
    assert mean.trained and mean.provenance["weights"] == [3.0, 1.0]
    for name, value in mean.model.state_dict().items():
        expected = 0.75 * first.state_dict()[name] + 0.25 * second.state_dict()[name]
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)

    again = run(
        tmp_path / "mean.safetensors", tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    )
    assert again.returncode != 0 and "exists (use --force" in again.stderr


def test_two_networks_are_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.safetensors", make_tiny_model())
    other = ModelConfig(**{**TINY_CONFIG.__dict__, "levels": TINY_CONFIG.levels + 1})
    save_checkpoint(tmp_path / "b.safetensors", make_tiny_model(other))
    done = run(tmp_path / "out.safetensors", tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert done.returncode != 0 and "another network" in done.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_the_script_imports_without_running() -> None:
    spec = importlib.util.spec_from_file_location("average_checkpoints", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    states = [{"w": torch.ones(2)}, {"w": torch.zeros(2)}]
    assert module.average_states(states, [1.0, 1.0])["w"].tolist() == [0.5, 0.5]
