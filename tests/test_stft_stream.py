"""The streaming STFT both post-network stages share: identity in, identity out; blocks of
any length (and batches of frames) give the same float32 samples as one push."""

from __future__ import annotations

import numpy as np
import pytest

from vimss_cli import stft_stream
from vimss_cli.stft_stream import StreamingSTFT


def _identity(spectra: np.ndarray) -> np.ndarray:
    return spectra


def _pushed(stft: StreamingSTFT, samples: np.ndarray, sizes: list[int]) -> np.ndarray:
    parts, start = [], 0
    while start < samples.shape[1]:
        size = sizes[len(parts) % len(sizes)]
        parts.append(stft.push(samples[:, start : start + size]))
        start += size
    parts.append(stft.finish())
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize(("n_fft", "hop"), [(4096, 1024), (4096, 256), (64, 16)])
@pytest.mark.parametrize("samples", [0, 1, 63, 64, 4095, 4096, 9000])
def test_an_unchanged_spectrum_gives_the_input_back(n_fft: int, hop: int, samples: int) -> None:
    signal = np.random.default_rng(samples).standard_normal((2, samples)).astype(np.float32)
    out = _pushed(StreamingSTFT(2, 2, n_fft, hop, _identity), signal, [samples or 1])
    assert out.shape == (2, samples) and out.dtype == np.float32
    assert samples == 0 or np.abs(out - signal).max() < 1e-5


def test_blocks_and_batches_of_any_size_give_one_push(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transform that keeps state (here: each frame scaled by its running count) sees every
    frame once, in order, whatever the blocks; the output is bit for bit the same."""
    signal = np.random.default_rng(1).standard_normal((1, 30000)).astype(np.float32)

    def run(sizes: list[int]) -> np.ndarray:
        seen = [0]

        def numbered(spectra: np.ndarray) -> np.ndarray:
            index = seen[0] + np.arange(spectra.shape[0], dtype=np.float32)
            seen[0] += spectra.shape[0]
            doubled = np.concatenate([spectra, spectra], axis=1)  # 1 channel in, 2 out
            return doubled * (1 + index % 3)[:, None, None]

        return _pushed(StreamingSTFT(1, 2, 1024, 256, numbered), signal, sizes)

    whole = run([30000])
    assert not np.array_equal(whole[0], signal[0])  # the transform did change it
    for sizes in ([7, 1000, 5, 4096, 1], [256], [29999, 1]):
        assert np.array_equal(run(sizes), whole), sizes
    monkeypatch.setattr(stft_stream, "BATCH_FRAMES", 5)  # many batches per push
    assert np.array_equal(run([30000]), whole)
    assert np.array_equal(run([333]), whole)


def test_output_lags_by_less_than_a_frame() -> None:
    stft = StreamingSTFT(1, 1, 4096, 1024, _identity)
    assert stft.lead == 3072
    assert stft.push(np.zeros((1, 3071), np.float32)).shape == (1, 0)
    out = stft.push(np.zeros((1, 5000), np.float32))  # 8071 in: frames up to 8071 - 3072
    assert out.shape[1] % 1024 == 0 and 8071 - 4096 < out.shape[1] <= 8071 - 3072


def test_bad_settings_and_transforms_are_refused() -> None:
    with pytest.raises(ValueError, match="whole number of hops"):
        StreamingSTFT(1, 1, 4096, 1000, _identity)
    with pytest.raises(ValueError, match="overlap-add evenly"):
        StreamingSTFT(1, 1, 4096, 4096, _identity)
    with pytest.raises(ValueError, match=r"expected \(2, n\)"):
        StreamingSTFT(2, 1, 64, 16, _identity).push(np.zeros((1, 100), np.float32))
    with pytest.raises(ValueError, match="the transform gave"):
        StreamingSTFT(2, 1, 64, 16, _identity).push(np.zeros((2, 100), np.float32))
