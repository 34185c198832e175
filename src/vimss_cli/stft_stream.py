"""A short-time Fourier transform on a stream: frames in, changed spectra out, exact in blocks.

Both stages after the network work frame by frame in the frequency domain:
:mod:`vimss_cli.soft_masks` splits the mixture's spectrum among the stems, and
:mod:`vimss_cli.pitch_voices` splits one stem's spectrum between two voices. This module
holds what they share: cutting the samples into windowed frames, and adding the changed
frames back into samples.

The frames lie on one grid from the first sample. Frame ``t`` covers samples
``[t * hop - lead, t * hop - lead + n_fft)`` with ``lead = n_fft - hop``: zeros before the
first sample, zeros after the last. Every sample is then covered by ``n_fft / hop`` frames, and
the periodic Hann window, applied on the way in and on the way out, overlap-adds to a
constant that :attr:`StreamingSTFT.gain` divides out. With a transform that returns its
spectra unchanged, the output is the input.

Pushing the samples in blocks of any length gives the same float32 output as one push of the
whole (the frames are the same, and each output sample adds its frames oldest first). The
output comes in whole hops, ``lead`` samples behind the input, and all of it after
:meth:`StreamingSTFT.finish`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

#: Spectra ``(T, C_in, bins)`` complex64 of T frames -> changed spectra ``(T, C_out, bins)``.
Transform = Callable[[np.ndarray], np.ndarray]

#: Frames transformed at a time: a block of an hour is worked through in batches of this many
#: frames, so memory stays bounded whatever the block length.
BATCH_FRAMES = 256


def periodic_hann(n_fft: int) -> np.ndarray:
    """The periodic Hann window ``(n_fft,)`` float64 (the DFT-even one that overlap-adds)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)


class StreamingSTFT:
    """Samples ``(C_in, n)`` in blocks -> ``transform`` of their spectra -> ``(C_out, m)``.

    Attributes:
        lead: output samples behind the input (``n_fft - hop``); what :meth:`push` returns
            ends between ``lead`` and ``n_fft - 1`` samples before what went in.
        window: the periodic Hann window ``(n_fft,)`` float32.
        gain: one over the sum of the squared window at each hop position.
    """

    def __init__(
        self, channels_in: int, channels_out: int, n_fft: int, hop: int, transform: Transform
    ) -> None:
        """``transform`` gets the spectra of every frame once, in order (it may keep state)."""
        if n_fft % hop:
            raise ValueError(f"the frame ({n_fft}) must be a whole number of hops ({hop})")
        hann = periodic_hann(n_fft)
        squares = np.sum(hann.reshape(n_fft // hop, hop) ** 2, axis=0)
        if not np.allclose(squares, squares[0]):
            raise ValueError(f"frames of {n_fft} every {hop} samples do not overlap-add evenly")
        self.channels_in, self.channels_out = channels_in, channels_out
        self.n_fft, self.hop, self.transform = n_fft, hop, transform
        # float32 throughout (scipy's transforms keep it): twice as fast as float64, and the
        # stems are float32 anyway
        self.window = hann.astype(np.float32)
        self.gain = np.float32(1.0 / float(squares[0]))
        self.lead = n_fft - hop
        #: input from the next frame's first sample on (the zeros before the first sample)
        self._input = np.zeros((channels_in, self.lead), np.float32)
        #: partial sums of the ``lead`` output samples after the last finished one
        self._tail = np.zeros((channels_out, self.lead), np.float32)
        self._to_drop = self.lead  # output samples that lie before the first sample
        self._frames = 0  # frames done so far
        self._pushed = 0
        self._given = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        """The next ``(C_in, n)`` samples -> ``(C_out, m)`` float32 of the output now complete
        (``m`` may be 0)."""
        if block.ndim != 2 or block.shape[0] != self.channels_in:
            raise ValueError(f"expected ({self.channels_in}, n) samples, got {block.shape}")
        self._input = np.concatenate([self._input, block.astype(np.float32)], axis=1)
        self._pushed += block.shape[1]
        count = (self._input.shape[1] - self.n_fft) // self.hop + 1
        return self._given_out(self._run(max(0, count)))

    def finish(self) -> np.ndarray:
        """The rest of the output ``(C_out, m)`` float32, up to the last sample pushed."""
        # frames until one starts at or past the last sample pushed
        count = -(-(self._pushed + self.lead) // self.hop) - self._frames
        if count > 0:
            missing = (count - 1) * self.hop + self.n_fft - self._input.shape[1]
            if missing > 0:  # the last frames reach past the end: zeros there
                zeros = np.zeros((self.channels_in, missing), np.float32)
                self._input = np.concatenate([self._input, zeros], axis=1)
        return self._given_out(self._run(max(0, count)), last=True)

    def _run(self, count: int) -> np.ndarray:
        """Transform the next ``count`` frames (from the start of the input kept) and
        overlap-add them; return the ``(C_out, count * hop)`` samples they finish."""
        done = []
        for first in range(0, count, BATCH_FRAMES):
            frames = min(BATCH_FRAMES, count - first)
            done.append(self._batch(frames))
        if not done:
            return np.zeros((self.channels_out, 0), np.float32)
        return done[0] if len(done) == 1 else np.concatenate(done, axis=1)

    def _batch(self, count: int) -> np.ndarray:
        """:meth:`_run` for at most :data:`BATCH_FRAMES` frames."""
        n, hop, overlap = self.n_fft, self.hop, self.n_fft // self.hop
        views = np.lib.stride_tricks.sliding_window_view(self._input, n, axis=1)
        frames = views[:, : (count - 1) * hop + 1 : hop].transpose(1, 0, 2)  # (T, C_in, n)
        spectra = scipy.fft.rfft(frames * self.window, axis=2)
        changed = self.transform(spectra)
        if changed.shape[:2] != (count, self.channels_out):
            raise ValueError(
                f"the transform gave {changed.shape[:2]}, not {(count, self.channels_out)}"
            )
        out = scipy.fft.irfft(changed, n, axis=2) * self.window  # (T, C_out, n) float32
        # overlap-add: frame t's i-th hop-long piece lands on output piece t + i; each piece
        # adds its frames oldest first, after those of earlier batches
        pieces = out.reshape(count, self.channels_out, overlap, hop)
        added = np.zeros((self.channels_out, count + overlap - 1, hop), np.float32)
        added[:, : overlap - 1] += self._tail.reshape(self.channels_out, overlap - 1, hop)
        for i in reversed(range(overlap)):
            added[:, i : i + count] += pieces[:, :, i].transpose(1, 0, 2)
        samples = added.reshape(self.channels_out, -1)
        finished = count * hop
        self._tail = samples[:, finished:]
        self._input = self._input[:, finished:]
        self._frames += count
        return samples[:, :finished] * self.gain

    def _given_out(self, out: np.ndarray, last: bool = False) -> np.ndarray:
        """The finished samples after those lying before the first one; with ``last``, none
        past the last sample pushed."""
        if self._to_drop:
            dropped = min(self._to_drop, out.shape[1])
            out, self._to_drop = out[:, dropped:], self._to_drop - dropped
        if last:
            out = out[:, : self._pushed - self._given]
        self._given += out.shape[1]
        return out.astype(np.float32, copy=False)
