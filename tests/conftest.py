"""Shared fixtures: a tiny model bundled in a temporary models folder, audio files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from vimss_cli.checkpoint import file_sha256, save_checkpoint
from vimss_cli.ffmpeg_io import ffmpeg_executable
from vimss_cli.model import ModelConfig, WaveUNet

RATE = 8000
TINY_CONFIG = ModelConfig(sample_rate=RATE, levels=3, base_features=4, query_dim=8)
#: Environment under which rich takes Typer's runner for an interactive terminal (spinners).
TERMINAL_ENV = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "TERM": "xterm"}
#: What starts a rich spinner on a terminal: the cursor hidden.
SPINNER_START = "\x1b[?25l"


def missing_fixture(reason: str) -> None:
    """Skip a test whose fixture files are absent, except under CI (``CI=true``), where the
    fixtures are part of the environment and their absence fails the test."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the fixtures must be present)", pytrace=False)
    pytest.skip(reason)


def make_tiny_model(config: ModelConfig = TINY_CONFIG, seed: int = 0) -> WaveUNet:
    torch.manual_seed(seed)
    return WaveUNet(config).eval()


@pytest.fixture()
def tiny_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder holding a tiny untrained model as the default, used via VIMSS_MODELS_DIR."""
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "tiny.safetensors"
    save_checkpoint(path, make_tiny_model(), provenance={"trained": False})
    index = {
        "models": {
            "tiny": {
                "file": path.name,
                "sha256": file_sha256(path),
                "trained": False,
                "description": "test model",
            }
        },
        "default": "tiny",
    }
    (folder / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv("VIMSS_MODELS_DIR", str(folder))
    return folder


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE, subtype: str = "FLOAT") -> Path:
    soundfile.write(str(path), audio, rate, subtype=subtype)
    return path


def noise(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly (for making test media)."""
    subprocess.run(
        [ffmpeg_executable(), "-hide_banner", "-v", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )
