"""Soft time-frequency masks on the mixture: exact reconstruction, streaming equal to one
pass, and each stem keeping what its spectrum claims."""

from __future__ import annotations

import numpy as np
import pytest

from vimss_cli.soft_masks import HOP, N_FFT, SoftMaskFilter, refine

RATE = 22050


def _tone(frequency: float, samples: int) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * frequency * np.arange(samples) / RATE)


@pytest.mark.parametrize("samples", [1, 500, N_FFT, 3 * HOP + 17, 20000])
def test_one_stem_that_is_the_mixture_comes_back_whole(samples: int) -> None:
    mixture = np.random.default_rng(0).standard_normal(samples)
    refined = refine(mixture[None], mixture)
    assert refined.shape == (1, samples) and refined.dtype == np.float32
    assert np.abs(refined[0] - mixture).max() < 1e-6


def test_stems_in_blocks_equal_one_pass() -> None:
    rng = np.random.default_rng(1)
    samples = 30000
    mixture = rng.standard_normal(samples)
    stems = rng.standard_normal((3, samples))
    whole = refine(stems, mixture)
    for sizes in ([7, 1000, 5, 4096, 1], [HOP], [29999, 1], [samples]):
        masks, parts, start = SoftMaskFilter(3), [], 0
        while start < samples:
            size = sizes[len(parts) % len(sizes)]
            parts.append(masks.push(stems[:, start : start + size], mixture[start : start + size]))
            start += size
        parts.append(masks.finish())
        assert np.array_equal(np.concatenate(parts, axis=1), whole), sizes


def test_each_stem_keeps_the_partials_it_claims() -> None:
    # two tones mixed; the network's stems hold 80 % of their own tone and 20 % of the
    # other's: the masks (0.89 and 0.11 of each bin with power 1.5) bring each stem closer
    low, high = _tone(220, 20000), _tone(1760, 20000)
    stems = np.stack([0.8 * low + 0.2 * high, 0.8 * high + 0.2 * low])
    refined = refine(stems, low + high)
    for got, want, raw in zip(refined, (low, high), stems, strict=True):
        inner = slice(N_FFT, -N_FFT)  # away from the ends, where frames are zero-padded
        error = np.sqrt(np.mean((got[inner] - want[inner]) ** 2))
        assert error < 0.6 * np.sqrt(np.mean((raw[inner] - want[inner]) ** 2))


def test_what_no_stem_claims_stays_out_of_the_stems() -> None:
    # a mixture of a tone and noise no stem holds: the tone's stem does not take the noise
    tone = _tone(440, 20000)
    noise = 0.3 * np.random.default_rng(2).standard_normal(20000)
    refined = refine(tone[None], tone + noise)[0]
    inner = slice(N_FFT, -N_FFT)
    assert np.sqrt(np.mean((refined[inner] - tone[inner]) ** 2)) < 0.3 * np.sqrt(
        np.mean(noise[inner] ** 2)
    )


def test_silence_stays_silence() -> None:
    assert not refine(np.zeros((2, 5000)), np.zeros(5000)).any()


def test_without_the_rest_share_the_stems_add_up_to_the_mixture() -> None:
    rng = np.random.default_rng(3)
    mixture, stems = rng.standard_normal(12000), rng.standard_normal((3, 12000))
    refined = refine(stems, mixture, rest_share=False, power=2.0)
    assert np.abs(refined.sum(axis=0) - mixture).max() < 1e-4
    kept = refine(stems, mixture)  # the default keeps what no stem claims out of them
    assert np.abs(kept.sum(axis=0) - mixture).max() > 0.1
