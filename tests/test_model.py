"""The conditioned Wave-U-Net: length arithmetic, shapes, conditioning, exact properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_tiny_model
from vimss_cli.conditioning import Query, QueryBatch, motion_at_samples
from vimss_cli.model import (
    CONDITIONING_CHOICES,
    ModelConfig,
    StreamState,
    WaveUNet,
    time_major_empty,
)


def upsample_linear(features: torch.Tensor) -> torch.Tensor:
    """The decoder's upsampling by definition: ``(N, C, n) -> (N, C, 2n - 1)``, a sample then
    the mean of it and the next, no extrapolation."""
    out = features.new_empty(*features.shape[:-1], 2 * features.shape[-1] - 1)
    out[..., 0::2] = features
    out[..., 1::2] = (features[..., :-1] + features[..., 1:]) / 2
    return out


def test_upsample_linear_inserts_means_without_extrapolation() -> None:
    x = torch.tensor([[[0.0, 2.0, 4.0, 10.0]]])
    assert upsample_linear(x).tolist() == [[[0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 10.0]]]


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_the_decoder_convolves_the_upsampled_features_and_the_skip(kernel: int) -> None:
    """The decoder block, computed at the low rate in pairs of outputs, equals the plain
    convolution of the upsampled features joined to the skip (its last output dropped), both
    in one call and on a stream of windows."""
    torch.manual_seed(0)
    low_channels, skip_channels, out_channels, n = 6, 4, 5, 40
    conv = torch.nn.Conv1d(low_channels + skip_channels, out_channels, kernel)
    low = torch.randn(2, low_channels, n)
    skip = torch.randn(2, skip_channels, 2 * n - 2)
    joined = torch.cat((upsample_linear(low)[..., : 2 * n - 2], skip), dim=1)
    expected = F.conv1d(joined, conv.weight, conv.bias)  # (2, C_out, 2 (n - r - 1))

    def time_major(tensor: torch.Tensor) -> torch.Tensor:
        out = time_major_empty(tensor, tensor.shape[1], tensor.shape[-1])
        out.copy_(tensor)
        return out

    with torch.no_grad():
        whole = WaveUNet._up_conv(0, conv, time_major(low), time_major(skip), None)
        torch.testing.assert_close(whole, expected, atol=1e-5, rtol=1e-5)
        # a stream: the first window, then 4 low samples (8 outputs) at a time; the skip
        # after the first window comes with the kernel - 1 positions before the new ones
        stream = StreamState(step=8)
        first_low = 20
        first_skip = 2 * first_low - 2
        first = (time_major(low[..., :first_low]), time_major(skip[..., :first_skip]))
        pieces = [WaveUNet._up_conv(0, conv, *first, stream)]
        stream.started = True
        for start in range(first_low, n, 4):
            reads = skip[..., 2 * start - kernel + 1 - 2 : 2 * start + 8 - 2]
            pieces.append(
                WaveUNet._up_conv(
                    0, conv, time_major(low[..., start : start + 4]), time_major(reads), stream
                )
            )
        torch.testing.assert_close(torch.cat(pieces, dim=-1), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("levels", [1, 3, 5])
@pytest.mark.parametrize("kernels", [(15, 5, 15), (5, 3, 7), (3, 1, 1)])
def test_length_arithmetic_is_consistent(levels: int, kernels: tuple[int, int, int]) -> None:
    down, up, bottleneck = kernels
    model = WaveUNet(
        ModelConfig(
            levels=levels,
            base_features=2,
            down_kernel=down,
            up_kernel=up,
            bottleneck_kernel=bottleneck,
        )
    )
    context = model.context
    for wanted in [1, 2, 7, 100, 1023, 4096]:
        length = model.input_length_for(wanted)
        span = model.output_span(length)
        assert span is not None and span.count >= wanted
        assert span.start == context  # the left context never depends on the length
        assert model.output_length(length - 1) < wanted  # the smallest such input
        # right context is at least the left one (the silence gate relies on it)
        assert length - span.start - span.count >= context
    assert model.output_span(model.input_length_for(1) - 1) is None


def test_a_model_trains_after_separating_in_inference_mode() -> None:
    """Nothing the forward pass keeps between calls may be made in inference mode: training
    (the CLI's validation, or a test before it) must still backpropagate afterwards."""
    model = make_tiny_model(ModelConfig(levels=3, base_features=4, query_dim=8))
    mixture = torch.randn(2, 1, model.input_length_for(100))
    queries = QueryBatch(torch.tensor([0, 2]))
    with torch.inference_mode():
        model(mixture, queries)
    model(mixture, queries).square().mean().backward()
    assert all(p.grad is not None for p in model.up_convs.parameters())


@pytest.mark.parametrize("conditioning", CONDITIONING_CHOICES)
def test_forward_shapes_and_queries_run_batched(conditioning: str) -> None:
    config = ModelConfig(
        levels=3,
        base_features=4,
        query_dim=8,
        conditioning=conditioning,
        appearance_dim=5,
        motion_channels=2,
        silence_gate=False,
    )
    model = make_tiny_model(config)
    length = model.input_length_for(200)
    mixture = torch.randn(3, 1, length)
    labels = torch.tensor([0, 2, 9])
    appearance = torch.randn(3, 5)
    motion = torch.randn(3, 3, 2, length)
    with torch.no_grad():
        batched = model(mixture, QueryBatch(labels, appearance, motion))
        assert batched.shape == (3, 3, model.output_length(length))
        for k in range(3):
            single = model(
                mixture, QueryBatch(labels[k : k + 1], appearance[k : k + 1], motion[:, k : k + 1])
            )
            torch.testing.assert_close(single[:, 0], batched[:, k], atol=1e-5, rtol=1e-5)
    # every part of the query changes the output
    with torch.no_grad():
        other_label = model(mixture, QueryBatch(torch.tensor([1, 2, 9]), appearance, motion))
        other_look = model(mixture, QueryBatch(labels, appearance + 1, motion))
        other_motion = model(mixture, QueryBatch(labels, appearance, motion + 1))
    for changed in (other_label, other_look, other_motion):
        assert not torch.allclose(changed[:, 0], batched[:, 0])


def test_mixture_consistency_sums_to_the_mixture() -> None:
    model = make_tiny_model(
        ModelConfig(
            levels=2, base_features=3, query_dim=4, mixture_consistency=True, silence_gate=False
        )
    )
    length = model.input_length_for(300)
    mixture = 0.3 * torch.randn(2, 1, length)
    with torch.no_grad():
        estimates = model(mixture, QueryBatch(torch.tensor([0, 1, 4])))
    span = model.output_span(length)
    target = mixture[:, 0, span.start : span.start + span.count]
    torch.testing.assert_close(estimates.sum(dim=1), target, atol=1e-5, rtol=0)


def test_silence_gate_outputs_exact_zeros_on_silence_only() -> None:
    model = make_tiny_model()
    length = model.input_length_for(500)
    mixture = torch.zeros(1, 1, length)
    with torch.no_grad():
        silent = model(mixture, QueryBatch(torch.tensor([0, 1])))
        mixture[0, 0, length // 2] = 0.5
        active = model(mixture, QueryBatch(torch.tensor([0, 1])))
    assert torch.count_nonzero(silent) == 0
    # outputs within the context of the impulse are live, those further away stay zero
    centre = length // 2 - model.context
    assert torch.count_nonzero(active[0, 0, centre - 5 : centre + 5]) == 10
    assert torch.count_nonzero(active[0, 0, : centre - 2 * model.context - 1]) == 0


def test_input_too_short_is_a_clear_error() -> None:
    model = make_tiny_model()
    with pytest.raises(ValueError, match="shorter than the network's minimum"):
        model(torch.zeros(1, 1, 10), QueryBatch(torch.tensor([0])))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"down_kernel": 4}, "odd"),
        ({"levels": 0}, "levels"),
        ({"conditioning": "film-somewhere"}, "conditioning"),
    ],
)
def test_invalid_configs_are_rejected(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**changes)


def test_config_from_dict_lists_valid_keys() -> None:
    with pytest.raises(ValueError, match="valid keys"):
        ModelConfig.from_dict({"levls": 3})


def test_motion_is_a_function_of_absolute_time() -> None:
    query = Query("vn", motion=np.array([[0.0, 1.0, 2.0, 3.0]]), motion_rate=2.0)
    whole = motion_at_samples(query, -4, 24, sample_rate=4, channels=1)
    part = motion_at_samples(query, 3, 10, sample_rate=4, channels=1)
    np.testing.assert_array_equal(whole[:, 7:17], part)
    assert whole[0, 4] == 0.0 and whole[0, 6] == 1.0  # sample 2 = 0.5 s = frame 1
    assert whole[0, 4 + 6] == 3.0 and whole[0, 4 + 7] == 0.0  # zero after the last frame


def test_per_window_queries_equal_shared_queries_window_by_window() -> None:
    config = ModelConfig(
        levels=2, base_features=3, query_dim=4, appearance_dim=2, silence_gate=False
    )
    model = make_tiny_model(config)
    length = model.input_length_for(50)
    mixture = torch.randn(2, 1, length)
    labels = torch.tensor([[0, 5], [7, 1]])
    appearance = torch.randn(2, 2, 2)
    with torch.no_grad():
        per_window = model(mixture, QueryBatch(labels, appearance))
        for w in range(2):
            shared = model(mixture[w : w + 1], QueryBatch(labels[w], appearance[w]))
            torch.testing.assert_close(per_window[w], shared[0], atol=1e-6, rtol=1e-6)


def test_ensemble_context_hears_every_player_not_only_the_queried_ones() -> None:
    from vimss_cli.conditioning import ensemble_counts

    config = ModelConfig(levels=2, base_features=3, query_dim=4, ensemble_context=True)
    model = make_tiny_model(config)
    length = model.input_length_for(50)
    mixture = torch.randn(2, 1, length)
    labels = torch.tensor([0, 0, 5, 13])  # two violins, a clarinet and an unknown player
    counts = ensemble_counts(labels)
    assert counts.shape == (13,) and counts[0] == 2 and counts[5] == 1 and counts.sum() == 3
    with torch.no_grad():
        own = model(mixture, QueryBatch(labels))  # no ensemble given: the queries' own counts
        given = model(mixture, QueryBatch(labels, ensemble=counts))
        torch.testing.assert_close(own, given, atol=0, rtol=0)
        # two of the four queried, told who else plays: what the four-query pass gives them
        pair = model(mixture, QueryBatch(labels[1:3], ensemble=counts))
        torch.testing.assert_close(pair, own[:, 1:3], atol=1e-6, rtol=1e-6)
        alone = model(mixture, QueryBatch(labels[1:3]))
        assert not torch.allclose(alone, own[:, 1:3])  # who else plays matters
        per_window = model(mixture, QueryBatch(labels.expand(2, 4), ensemble=counts.expand(2, 13)))
        torch.testing.assert_close(per_window, own, atol=1e-6, rtol=1e-6)


def test_no_motion_is_the_motion_convolution_of_zeros() -> None:
    """Queries without motion skip the motion branch; the result is that of all-zero motion."""
    from vimss_cli.model import FiLM

    torch.manual_seed(0)
    film = FiLM(channels=6, query_dim=4, motion_channels=3)
    torch.nn.init.normal_(film.dynamic.bias)  # a non-zero bias, so skipping it would show
    features, query = torch.randn(2, 6, 50), torch.randn(2, 4)
    skipped = film(features, query, None)
    zeros = film(features, query, torch.zeros(2, 3, 50))
    assert torch.allclose(skipped, zeros, atol=1e-6)
    assert not torch.allclose(skipped, film(features, query, torch.ones(2, 3, 50)))


def test_a_query_reads_instrument_codes_as_the_command_line_does() -> None:
    """Found by a new user's trial: ``Query("VN")`` failed where ``-i VN`` worked."""
    from vimss_cli.conditioning import Query

    assert (
        Query(" VN ").instrument == "vn" and Query("Vc").label_index() == Query("vc").label_index()
    )
    assert Query(None).instrument is None
