"""The training term on the soft-masked stems (``optim.masked_weight``): the masks are the
ones ``vimss separate`` applies, and gradients flow through them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vimss_cli.soft_masks import N_FFT, refine
from vimss_cli.training.config import OptimConfig
from vimss_cli.training.losses import soft_masked, training_loss


def test_soft_masked_equals_the_shipped_soft_masks_away_from_the_edges() -> None:
    rng = np.random.default_rng(0)
    length = 4 * N_FFT
    mixture = rng.standard_normal(length).astype(np.float32)
    stems = (0.5 * rng.standard_normal((3, length))).astype(np.float32)
    torch_out = soft_masked(torch.from_numpy(stems)[None], torch.from_numpy(mixture)[None, None])
    inner = slice(N_FFT, -N_FFT)  # the streaming grid and torch's centred frames differ there
    difference = torch_out[0, :, inner].numpy() - refine(stems, mixture)[:, inner]
    assert np.abs(difference).max() < 1e-5


def test_gradients_flow_through_the_masks_even_for_a_silent_stem() -> None:
    rng = np.random.default_rng(1)
    length = 2 * N_FFT
    stems = torch.from_numpy(rng.standard_normal((2, 3, length)).astype(np.float32))
    stems[0, 1] = 0.0  # a silent stem: |S| has no gradient at 0 without care
    stems.requires_grad_()
    mixture = torch.from_numpy(rng.standard_normal((2, 1, length)).astype(np.float32))
    soft_masked(stems, mixture).abs().mean().backward()
    assert stems.grad is not None and torch.isfinite(stems.grad).all()
    assert stems.grad.abs().sum() > 0


def test_the_masked_term_is_added_with_its_weight() -> None:
    rng = np.random.default_rng(2)
    length = 2 * N_FFT
    estimates, targets = (torch.from_numpy(rng.standard_normal((2, 2, length)).astype(np.float32))
                          for _ in range(2))  # fmt: skip
    mixture = targets.sum(dim=1, keepdim=True)
    plain = training_loss(OptimConfig(), estimates, targets, mixture)
    masked = training_loss(OptimConfig(masked_weight=0.5), estimates, targets, mixture)
    term = (soft_masked(estimates, mixture) - targets).abs().mean()
    assert torch.isclose(masked, plain + 0.5 * term)
    with pytest.raises(ValueError, match="masked_weight"):
        OptimConfig(masked_weight=-1.0)


@pytest.mark.parametrize("length", [1, 1024, 2048, N_FFT + 1])
def test_soft_masked_takes_excerpts_shorter_than_a_frame(length: int) -> None:
    rng = np.random.default_rng(3)
    stems = torch.from_numpy(rng.standard_normal((1, 2, length)).astype(np.float32))
    mixture = stems.sum(dim=1, keepdim=True)
    assert soft_masked(stems, mixture).shape == (1, 2, length)
