"""The spectral mask network: exact chunking, perfect reconstruction, its length arithmetic,
checkpoints and a training run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from test_engine import ChunkingCase, assert_chunked_equals_whole, chunking_cases
from vimss_cli.checkpoint import load_checkpoint, save_checkpoint
from vimss_cli.cli import app
from vimss_cli.conditioning import QueryBatch
from vimss_cli.config_checks import ConfigValueError
from vimss_cli.engine import (
    MAX_RECOMPUTE_TILE,
    RECOMPUTE_TILE_FACTOR,
    plan_tile,
    plan_windows,
)
from vimss_cli.model import ModelConfig
from vimss_cli.networks import build_network
from vimss_cli.spectral import SpectralMaskNet

SMALL = ModelConfig(
    sample_rate=8000,
    architecture="spectral",
    spectral_fft=64,
    spectral_hop=16,
    spectral_channels=6,
    spectral_blocks=3,
    spectral_cycle=2,
    query_dim=4,
)


def small_network(config: ModelConfig = SMALL, seed: int = 0) -> SpectralMaskNet:
    torch.manual_seed(seed)
    network = build_network(config)
    assert isinstance(network, SpectralMaskNet)
    return network.eval()


@st.composite
def configs(draw: st.DrawFn) -> ModelConfig:
    hop = draw(st.sampled_from([4, 16, 32]))
    return ModelConfig(
        sample_rate=8000,
        architecture="spectral",
        spectral_fft=4 * hop,
        spectral_hop=hop,
        # from 3: a layer norm over 2 channels is a sign function, (a - b) / |a - b|, that
        # any rounding flips where a and b meet (chunked and whole differed by 1e-4 there)
        spectral_channels=draw(st.integers(3, 6)),
        spectral_blocks=draw(st.integers(1, 4)),
        spectral_cycle=draw(st.integers(1, 3)),
        query_dim=4,
        appearance_dim=draw(st.sampled_from([0, 3])),
        ensemble_context=draw(st.booleans()),
        silence_gate=draw(st.booleans()),
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), case=chunking_cases(5000, 2000, 4, 4000, 3))
def test_chunked_equals_whole(config: ModelConfig, case: ChunkingCase) -> None:
    """Stitched windows == one pass over the whole signal, whatever the tile, batch, block and
    query groups."""
    assert_chunked_equals_whole(small_network(config, case.seed), case)


def test_a_mask_of_one_returns_the_mixture_exactly() -> None:
    """The STFT, inverse FFT and overlap-add reconstruct their input: what the network
    returns is the mask's doing alone."""
    network = small_network()
    with torch.no_grad():
        network.output.weight.zero_()
        network.output.bias.fill_(60.0)  # sigmoid(60) == 1 in float32
    length = network.input_length_for(500)
    mixture = torch.randn(2, 1, length)
    with torch.no_grad():
        estimates = network(mixture, QueryBatch(torch.tensor([1, 4])))
    count = network.output_length(length)
    expected = mixture[:, :, network.context : network.context + count].expand(-1, 2, -1)
    torch.testing.assert_close(estimates, expected, rtol=0, atol=1e-5)


def test_length_arithmetic_is_tight_and_aligned() -> None:
    network = small_network()
    assert network.total_decimation == 16
    # context: the blocks' dilations (1 + 2 + 1 frames) plus the three frames before full overlap
    assert network.context == 4 * 16 + 64 - 16
    for wanted in (1, 15, 16, 17, 300):
        length = network.input_length_for(wanted)
        assert network.output_length(length) >= wanted > network.output_length(length - 1)
    assert network.output_length(network.input_length_for(1) - 1) == 0
    plan = plan_windows(network, 100)
    assert plan.step % 16 == 0 and (plan.window_start(3) + plan.context) % 16 == 0
    with pytest.raises(ValueError, match="shorter than the network's minimum"):
        network(torch.zeros(1, 1, 10), QueryBatch(torch.tensor([1])))


def test_the_tile_plan_keeps_the_recomputed_context_a_small_share() -> None:
    """Windows that do not stream recompute their context: the planned tile grows to a few
    times it (a power of two), and no further than the bound."""
    cpu = torch.device("cpu")
    network = small_network(
        ModelConfig(**{**SMALL.__dict__, "spectral_fft": 1024, "spectral_hop": 256})
    )
    wanted = RECOMPUTE_TILE_FACTOR * 2 * network.context  # 14336 samples
    tile = plan_tile(network, 4, cpu, cache_bytes=1)  # the cache alone would give MIN_CPU_TILE
    assert tile == 16384 and tile >= wanted > tile // 2
    wide = ModelConfig(**{**SMALL.__dict__, "spectral_blocks": 12, "spectral_cycle": 12})
    assert plan_tile(small_network(wide), 4, cpu, cache_bytes=1) == MAX_RECOMPUTE_TILE


def test_config_checks_name_the_key() -> None:
    with pytest.raises(ConfigValueError, match="spectral_fft must be 4 \\* spectral_hop"):
        ModelConfig(architecture="spectral", spectral_fft=1000, spectral_hop=256)
    with pytest.raises(ConfigValueError, match="takes no motion"):
        ModelConfig(architecture="spectral", motion_channels=3)
    with pytest.raises(ConfigValueError, match="architecture must be one of"):
        ModelConfig.from_dict({"architecture": "transformer"})


def test_checkpoint_round_trip_rebuilds_the_spectral_network(tmp_path: Path) -> None:
    network = small_network()
    path = tmp_path / "spectral.safetensors"
    save_checkpoint(path, network, provenance={"trained": False})
    loaded = load_checkpoint(path).model
    assert isinstance(loaded, SpectralMaskNet) and loaded.config == SMALL
    mixture = torch.randn(1, 1, network.input_length_for(200))
    queries = QueryBatch(torch.tensor([2, 5]))
    with torch.no_grad():
        torch.testing.assert_close(loaded(mixture, queries), network(mixture, queries))


def test_train_a_spectral_network_through_the_cli(tmp_path: Path) -> None:
    from test_training import make_piece

    root = tmp_path / "data"
    make_piece(root / "train", 1, ("vn", "vc"), seed=1)
    make_piece(root / "train", 2, ("fl", "cl", "bn"), seed=2)
    make_piece(root / "valid", 3, ("tpt", "tbn"), seed=3)
    settings = [
        "model.sample_rate=8000", "model.architecture=spectral", "model.spectral_fft=64",
        "model.spectral_hop=16", "model.spectral_channels=8", "model.spectral_blocks=2",
        "model.query_dim=8", "data.output_samples=512", "data.batch_size=2", "data.workers=0",
        "data.validation_excerpts=4", "optim.loss=sdr", "optim.warmup_steps=1",
        "optim.max_steps=4", "run.validate_every=4", "run.log_every=1",
    ]  # fmt: skip
    arguments = ["train", "--root", str(root), "--out", str(tmp_path / "run"), "--device", "cpu"]
    for setting in settings:
        arguments += ["--set", setting]
    result = CliRunner().invoke(app, [*arguments, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["step"] == 4
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert isinstance(best.model, SpectralMaskNet) and best.trained
