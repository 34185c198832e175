"""The chunked engine equals one pass over the whole signal, and streams."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_tiny_model
from vimss_cli.conditioning import Query
from vimss_cli.engine import (
    CUDA_TILE,
    MAX_CPU_TILE,
    MIN_CPU_TILE,
    WINDOWS_AHEAD,
    even_tile,
    iter_blocks,
    plan_tile,
    plan_windows,
    separate_array,
    separate_blocks,
)
from vimss_cli.model import CONDITIONING_CHOICES, ModelConfig
from vimss_cli.networks import Network


@st.composite
def configs(draw: st.DrawFn) -> ModelConfig:
    motion_channels = draw(st.sampled_from([0, 2]))
    encoder_channels = draw(st.sampled_from([0, 3])) if motion_channels else 0
    return ModelConfig(
        sample_rate=8000,
        levels=draw(st.integers(1, 4)),
        base_features=draw(st.integers(2, 5)),
        feature_growth=draw(st.sampled_from(["add", "double"])),
        down_kernel=draw(st.sampled_from([1, 3, 5, 9])),
        up_kernel=draw(st.sampled_from([1, 3, 5])),
        bottleneck_kernel=draw(st.sampled_from([1, 3, 7])),
        conditioning=draw(st.sampled_from(CONDITIONING_CHOICES)),
        query_dim=4,
        appearance_dim=draw(st.sampled_from([0, 3])),
        motion_channels=motion_channels,
        motion_encoder_channels=encoder_channels,
        motion_bypass=draw(st.booleans()) if encoder_channels else False,
        motion_encoder_layers=draw(st.integers(1, 3)),
        motion_rate=draw(st.sampled_from([5.0, 15.0, 29.97])),
        mixture_consistency=draw(st.booleans()),
        ensemble_context=draw(st.booleans()),
        silence_gate=draw(st.booleans()),
        output_activation=draw(st.sampled_from(["tanh", "identity"])),
    )


def random_queries(config: ModelConfig, count: int, rng: np.random.Generator) -> list[Query]:
    codes = ["vn", "vc", "fl", "tpt", None]
    queries = []
    for k in range(count):
        appearance = rng.standard_normal(config.appearance_dim).astype(np.float32)
        motion = None
        if config.motion_channels:
            frames = int(rng.integers(1, 40))
            motion = rng.standard_normal((config.motion_channels, frames))
        queries.append(
            Query(
                codes[k % len(codes)],
                appearance if config.appearance_dim else None,
                motion,
                motion_rate=25.0 if motion is not None else None,
            )
        )
    return queries


@dataclass(frozen=True)
class ChunkingCase:
    """One draw of the chunked-equals-whole property: a signal of ``length`` random samples
    (seeded by ``seed``), ``queries`` random queries run in ``groups``, and windows of
    ``tile`` output samples, ``batch_size`` per pass, over input blocks of ``block``."""

    length: int
    tile: int
    batch_size: int
    block: int
    queries: int
    groups: int
    seed: int


@st.composite
def chunking_cases(
    draw: st.DrawFn,
    length: int = 6000,
    tile: int = 3000,
    batch_size: int = 5,
    block: int = 5000,
    queries: int = 4,
) -> ChunkingCase:
    """Cases with each setting drawn from 1 to the given most (groups up to ``queries``)."""
    return ChunkingCase(
        length=draw(st.integers(1, length)),
        tile=draw(st.integers(1, tile)),
        batch_size=draw(st.integers(1, batch_size)),
        block=draw(st.integers(1, block)),
        queries=draw(st.integers(1, queries)),
        groups=draw(st.integers(1, queries)),
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), case=chunking_cases())
def test_chunked_equals_whole(config: ModelConfig, case: ChunkingCase) -> None:
    """The property of the engine: stitched windows == one pass, to float32 precision, with
    the queries run together or in groups side by side."""
    torch.manual_seed(case.seed)
    assert_chunked_equals_whole(make_tiny_model(config, case.seed), case)


def assert_chunked_equals_whole(model: Network, case: ChunkingCase) -> None:
    """Separate random audio (half silent at times) for ``case.queries`` random queries, once
    in one window and once in windows of ``case.tile`` over blocks of ``case.block`` samples:
    the same stems."""
    rng = np.random.default_rng(case.seed)
    audio = (0.5 * rng.standard_normal(case.length)).astype(np.float32)
    if rng.random() < 0.3:  # stretches of digital silence exercise the silence gate
        audio[: case.length // 2] = 0
    query_list = random_queries(model.config, case.queries, rng)
    whole = separate_array(model, audio, query_list, tile=None, groups=1)
    pieces: list[np.ndarray] = []
    separate_blocks(
        model,
        iter_blocks(audio, case.block),
        query_list,
        pieces.append,
        tile=case.tile,
        batch_size=case.batch_size,
        groups=min(case.groups, case.queries),
    )
    chunked = np.concatenate(pieces, axis=1)
    assert whole.shape == chunked.shape == (case.queries, case.length)
    assert np.abs(whole - chunked).max() <= 1e-5


def test_window_plan_is_aligned_to_the_total_decimation() -> None:
    model = make_tiny_model(ModelConfig(levels=4, base_features=2))
    plan = plan_windows(model, 1000)
    assert plan.step % 16 == 0 and plan.step >= 1000
    assert model.output_length(plan.input_length) >= plan.step
    assert all((plan.window_start(j) + plan.context) % 16 == 0 for j in range(5))


@pytest.mark.parametrize("groups", [1, 2])
def test_output_streams_before_the_input_ends(groups: int) -> None:
    """Memory is bounded: output leaves while input is still arriving, at most the batches
    the network may be ahead behind it (none with one group on the CPU)."""
    model = make_tiny_model()
    plan = plan_windows(model, 256)
    consumed = 0
    produced_when: list[tuple[int, int]] = []

    def blocks():
        nonlocal consumed
        for _ in range(200):
            consumed += 100
            yield np.ones(100, np.float32) * 0.1

    def sink(block: np.ndarray) -> None:
        produced_when.append((consumed, block.shape[1]))

    queries = [Query("vn"), Query("vc")]
    total = separate_blocks(model, blocks(), queries, sink, tile=256, batch_size=2, groups=groups)
    assert total == 20000 == sum(n for _, n in produced_when)
    ahead = WINDOWS_AHEAD if groups > 1 else 0
    produced, most_behind = 0, 0
    for consumed_then, size in produced_when:
        produced += size
        most_behind = max(most_behind, consumed_then - produced)
    assert most_behind <= (ahead + 1) * 2 * plan.step + plan.input_length
    # and ahead means ahead: with groups, the input ran past one batch's needs
    assert (most_behind > 2 * plan.step + plan.input_length) == (ahead > 0)


@pytest.mark.parametrize("groups", [1, 2])
def test_a_stream_ends_without_an_extra_window(groups: int) -> None:
    """Found by a review: a stream's first window gives more than a step (its whole output
    span), so counting the last windows from those handed in ran one window too many when
    the input ended just past a tile, and passed on an empty block."""
    model = make_tiny_model()
    assert model.streams
    for length in (1281, 1285, 1536, 1537):
        pieces: list[np.ndarray] = []
        total = separate_blocks(
            model, iter_blocks(np.ones(length, np.float32) * 0.1, 1000),
            [Query("vn"), Query("vc")], pieces.append, tile=256, groups=groups,
        )  # fmt: skip
        assert total == length == sum(p.shape[1] for p in pieces)
        assert all(p.shape[1] > 0 for p in pieces), [p.shape[1] for p in pieces]


def test_an_error_in_the_output_callback_stops_the_run_and_its_threads() -> None:
    """What ``on_output`` raises comes out of separate_blocks at once (the network's windows
    ahead are dropped), and no group thread is left behind."""
    model = make_tiny_model()
    calls = 0

    def sink(block: np.ndarray) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full")

    before = threading.active_count()
    with pytest.raises(OSError, match="disk full"):
        separate_blocks(
            model, iter_blocks(np.ones(20000, np.float32) * 0.1, 100), [Query("vn"), Query("vc")],
            sink, tile=256, groups=2,
        )  # fmt: skip
    assert calls == 2
    assert threading.active_count() == before


def test_silence_in_silence_out() -> None:
    model = make_tiny_model()
    stems = separate_array(model, np.zeros(5000, np.float32), [Query("vn"), Query("vc")], tile=300)
    assert stems.shape == (2, 5000) and not stems.any()


def test_tile_plan_fits_the_cache_within_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_tiny_model(ModelConfig(levels=4, base_features=8))
    cpu = torch.device("cpu")
    per_sample = model.working_set_bytes_per_output_sample()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # one group: all queries together
    planned = plan_tile(model, 4, cpu, cache_bytes=4 * per_sample * 20000)
    assert planned == 16384  # the largest power of two that fits in the cache
    fewer = plan_tile(model, 2, cpu, cache_bytes=4 * per_sample * 20000)
    assert fewer == 32768  # fewer players, longer tiles
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # two groups of two
    assert plan_tile(model, 4, cpu, cache_bytes=4 * per_sample * 20000) == 32768
    assert plan_tile(model, 4, cpu, cache_bytes=1) == MIN_CPU_TILE
    assert plan_tile(model, 1, cpu, cache_bytes=2**40) == MAX_CPU_TILE
    assert plan_tile(model, 4, torch.device("cuda")) == CUDA_TILE
    odd = make_tiny_model(ModelConfig(levels=13, base_features=2))  # decimation 8192
    assert plan_tile(odd, 4, cpu, cache_bytes=1) % 8192 == 0


@given(
    tile=st.integers(1, 70000),
    length=st.integers(1, 3_000_000),
    decimation=st.sampled_from([1, 8, 2048]),
)
def test_an_even_tile_cuts_the_input_into_as_many_windows_with_little_left_over(
    tile: int, length: int, decimation: int
) -> None:
    rounded = -(-tile // decimation) * decimation
    even = even_tile(tile, length, decimation)
    assert even % decimation == 0 and 0 < even <= rounded
    windows = -(-length // rounded)
    assert -(-length // even) == windows  # no more windows than the planned tile makes
    assert windows * even - length < windows * decimation  # the last one is nearly full


def test_the_separator_plans_even_tiles_and_keeps_a_tile_it_is_given() -> None:
    from vimss_cli.api import Separator

    separator = Separator(model="vimss-synth-cpu-v0", device="cpu")
    decimation = separator.model.total_decimation
    minute = 60 * separator.sample_rate
    planned = separator.tile_for(4)
    even = separator.tile_for(4, minute)
    assert even == even_tile(planned, minute, decimation) < planned  # a minute is no multiple
    assert -(-minute // even) == -(-minute // planned)
    given = Separator(model="vimss-synth-cpu-v0", device="cpu", tile=65536)
    assert given.tile_for(4, minute) == 65536  # a tile asked for is kept


def test_a_stream_computes_each_layer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first window, a streamed window returns exactly the step that follows, and
    its first convolution reads only the new input and the kernel's history."""
    from vimss_cli import model as vimss_model
    from vimss_cli.conditioning import query_batch_from_queries
    from vimss_cli.model import StreamState

    model = make_tiny_model(ModelConfig(levels=3, base_features=4, query_dim=8))
    plan = plan_windows(model, 64)
    rng = np.random.default_rng(0)
    audio = torch.as_tensor(
        rng.standard_normal(plan.input_length + 3 * plan.step), dtype=torch.float32
    )
    queries = query_batch_from_queries([Query("vn"), Query("vc")], 0)
    seen: list[int] = []
    convolve = vimss_model.time_major_conv

    def watched(
        weight: torch.Tensor, bias: torch.Tensor | None, inputs: torch.Tensor
    ) -> torch.Tensor:
        if bias is model.down_convs[0].bias:
            seen.append(inputs.shape[-1])
        return convolve(weight, bias, inputs)

    monkeypatch.setattr(vimss_model, "time_major_conv", watched)
    stream = StreamState(plan.step)
    outputs = []
    with torch.inference_mode():
        for j in range(4):
            window = audio[j * plan.step : j * plan.step + plan.input_length].view(1, 1, -1)
            outputs.append(model(window, queries, stream)[0])
    first = model.output_length(plan.input_length)
    assert [o.shape[-1] for o in outputs] == [first] + [plan.step] * 3
    assert seen == [plan.input_length] + [plan.step + model.config.down_kernel - 1] * 3


def test_queries_without_motion_bypass_the_motion_path() -> None:
    """With ``motion_bypass``, a query without motion separates exactly as the same network
    without any motion path does, whatever the encoder and FiLM's motion convolutions (biases
    included) hold; the query with motion follows them, and chunked still equals whole."""
    config = ModelConfig(
        sample_rate=8000, levels=3, base_features=4, query_dim=4, motion_channels=2,
        motion_encoder_channels=3, motion_encoder_layers=2, motion_rate=10.0,
        motion_bypass=True, silence_gate=False, output_activation="identity",
    )  # fmt: skip
    model = make_tiny_model(config, 1)
    with torch.no_grad():  # FiLM's motion convolutions start at zero: make them count
        for name, parameter in model.named_parameters():
            if ".dynamic." in name or name.startswith("motion_encoder."):
                parameter.normal_(std=0.2)
    label_config = dataclasses.replace(
        config, motion_channels=0, motion_encoder_channels=0, motion_bypass=False
    )
    label_model = make_tiny_model(label_config, 2)
    label_model.load_state_dict(model.state_dict(), strict=False)
    rng = np.random.default_rng(3)
    audio = (0.5 * rng.standard_normal(24000)).astype(np.float32)
    queries = [Query("vn", motion=rng.standard_normal((2, 40)), motion_rate=12.0), Query("vc")]
    together = separate_array(model, audio, queries, tile=None, groups=1)
    plain = separate_array(label_model, audio, [Query("vn"), Query("vc")], tile=None, groups=1)
    np.testing.assert_allclose(together[1], plain[1], atol=1e-6)
    alone = separate_array(model, audio, [Query("vc")], tile=None, groups=1)  # no encoder runs
    np.testing.assert_allclose(alone[0], plain[1], atol=1e-6)
    assert np.abs(together[0] - plain[0]).max() > 1e-3  # the motion moves the other
    pieces: list[np.ndarray] = []
    separate_blocks(model, iter_blocks(audio, 2001), queries, pieces.append, tile=700)
    assert np.abs(together - np.concatenate(pieces, axis=1)).max() <= 1e-5
    unbypassed = make_tiny_model(dataclasses.replace(config, motion_bypass=False), 1)
    unbypassed.load_state_dict(model.state_dict())
    zero_frames = separate_array(unbypassed, audio, queries, tile=None, groups=1)
    assert np.abs(zero_frames[1] - plain[1]).max() > 1e-3  # zero frames do move it


def test_the_motion_encoder_is_exact_in_chunks_and_sees_only_its_context() -> None:
    """A model that integrates seconds of motion: chunked equals whole, the motion changes
    the output, and a change of motion reaches no further than the encoder's context."""
    config = ModelConfig(
        sample_rate=8000, levels=3, base_features=4, query_dim=4, motion_channels=2,
        motion_encoder_channels=3, motion_encoder_layers=3, motion_rate=10.0,
        silence_gate=False, output_activation="identity",
    )  # fmt: skip
    model = make_tiny_model(config, 1)
    assert model.motion_encoder is not None and model.motion_encoder.context == 7
    rng = np.random.default_rng(1)
    audio = (0.5 * rng.standard_normal(40000)).astype(np.float32)  # 5 s
    motion = rng.standard_normal((2, 60))  # 6 s at 12 frames/s
    queries = [Query("vn", motion=motion, motion_rate=12.0), Query("vn")]
    whole = separate_array(model, audio, queries, tile=None, groups=1)
    pieces: list[np.ndarray] = []
    separate_blocks(model, iter_blocks(audio, 3001), queries, pieces.append, tile=1000)
    assert np.abs(whole - np.concatenate(pieces, axis=1)).max() <= 1e-5
    assert np.abs(whole[0] - whole[1]).max() > 1e-3  # the motion makes the players differ
    changed = motion.copy()
    changed[:, 40:] += 5.0  # from 40 / 12 = 3.33 s on
    moved = separate_array(
        model, audio, [Query("vn", motion=changed, motion_rate=12.0), Query("vn")], tile=None,
        groups=1,
    )  # fmt: skip
    # the change reaches back: one 10/s frame (resampling the 12/s motion), the encoder's 7
    # frames, one frame of interpolation to samples, and the Wave-U-Net's own context
    reach = int((40 / 12 - 0.9) * 8000) - model.context
    assert np.abs(moved[0, :reach] - whole[0, :reach]).max() <= 1e-6
    assert np.abs(moved[0, reach + 8000 :] - whole[0, reach + 8000 :]).max() > 1e-3


def test_fp32_inference_on_cuda_turns_tf32_off_and_back() -> None:
    """Only flags: runs without a GPU. TF32 convolutions broke chunked == whole on the H200."""
    from vimss_cli.devices import inference_precision

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with pytest.raises(RuntimeError), inference_precision(torch.device("cuda"), "fp32"):
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
            raise RuntimeError("the settings come back after an error too")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        first = inference_precision(torch.device("cuda"), "fp32")
        second = inference_precision(torch.device("cuda"), "fp32")
        first.__enter__()
        second.__enter__()  # overlapping passes (threads): the first to end leaves TF32 off
        first.__exit__(None, None, None)
        assert not torch.backends.cudnn.allow_tf32
        second.__exit__(None, None, None)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with inference_precision(torch.device("cpu"), "fp32"):
            assert torch.backends.cudnn.allow_tf32  # nothing changes on the CPU
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_bf16_on_the_cpu_stays_close_to_fp32_on_the_shipped_default() -> None:
    from vimss_cli.api import Separator

    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(3 * 22050)).astype(np.float32)
    queries = [Query("vn"), Query("vc")]
    reference = Separator("default", device="cpu", refine=False).separate_array(audio, queries)
    half = Separator("default", device="cpu", precision="bf16", refine=False).separate_array(
        audio, queries
    )
    assert half.dtype == np.float32 and half.shape == reference.shape
    error = np.sqrt(np.mean((half - reference) ** 2)) / np.sqrt(np.mean(reference**2))
    assert 0 < error < 0.05  # 0.8 % measured; 0 would mean bf16 was not used
