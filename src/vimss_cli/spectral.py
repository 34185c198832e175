"""A query-conditioned mask network over a fixed STFT: seconds of context at frame rate.

The Wave-U-Net learns its own filterbank from the waveform and, on the 2-core CPU this
project trains on, never heard more than about 0.7 s nor told a clarinet from a saxophone
(docs/training.md). This network keeps what the engine and the tests rely on (valid
convolutions, FiLM conditioning by the query, exact chunking) and moves the work to where it
is cheap:

1. a fixed STFT (periodic Hann window of ``spectral_fft`` samples, hop ``spectral_hop`` =
   window / 4, no padding): frame ``f`` of a window starting at ``s`` covers input samples
   ``[s + f * hop, s + f * hop + fft)``;
2. ``log(1 + |X|)`` projected to ``C`` channels by a 1x1 convolution (shared by the K
   queries);
3. ``spectral_blocks`` residual blocks, each a layer norm over the channels of each frame, a
   valid kernel-3 convolution over frames with dilation ``2 ** (b % spectral_cycle)``, FiLM by
   the query, GELU and a 1x1 convolution; each shrinks the frames by ``2 * dilation``;
4. a sigmoid mask per query on the mixture's complex STFT at the remaining frames;
5. inverse FFT, the same window, overlap-add, kept only where all four overlapping frames
   are present (the sum of squared windows is then exactly 1.5).

Every frame sits on the grid ``window start + f * hop``, so windows whose starts differ by a
multiple of the hop compute identical frames; the engine's windows do (``total_decimation``
is the hop), and chunked output equals one pass over the whole signal.

``forward(mixture (W, 1, T_in), queries) -> (W, K, T_out)``, as :class:`WaveUNet`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimss_cli.conditioning import QueryBatch
from vimss_cli.model import FiLM, ModelConfig, QueryEncoder, Span, StreamState, activity_gate

#: Sum over the frames of the squared periodic Hann window at a hop of a quarter window.
_WINDOW_SQUARE_SUM = 1.5


class _FrameNorm(nn.Module):
    """Layer normalisation over the channels of each frame: ``(N, C, F) -> (N, C, F)``.

    Each frame on its own, so it is as exact under chunking as a 1x1 convolution.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, features: Tensor) -> Tensor:
        return self.norm(features.transpose(1, 2)).transpose(1, 2)


class _Block(nn.Module):
    """``h -> crop(h) + mix(gelu(FiLM(dilated(norm(h)))))``: ``(N, C, F) -> (N, C, F - 2d)``.

    Pre-normalised, so ten of them stacked keep their activations in range.
    """

    def __init__(self, channels: int, dilation: int, query_dim: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.norm = _FrameNorm(channels)
        self.dilated = nn.Conv1d(channels, channels, kernel_size=3, dilation=dilation)
        self.film = FiLM(channels, query_dim, 0)
        self.mix = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, features: Tensor, query: Tensor) -> Tensor:
        update = F.gelu(self.film(self.dilated(self.norm(features)), query, None))
        d = self.dilation
        return features[..., d:-d] + self.mix(update)


class SpectralMaskNet(nn.Module):
    """Separates one source per query by masking the mixture's STFT (see the module text).

    Has the length arithmetic and forward signature of :class:`~vimss_cli.model.WaveUNet`,
    without streaming: the engine runs its windows independently (:attr:`streams`).
    """

    #: The engine may not carry a :class:`StreamState` through this network.
    streams = False
    #: No motion path (the engine and trainer read this attribute of every network).
    motion_encoder = None
    window: Tensor  # (spectral_fft,) periodic Hann, a buffer not saved with the weights

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.architecture != "spectral":
            raise ValueError(f"SpectralMaskNet needs architecture 'spectral', got {config}")
        self.config = config
        c = config
        bins = c.spectral_fft // 2 + 1
        channels = c.spectral_channels
        self.register_buffer(
            "window", torch.hann_window(c.spectral_fft, periodic=True), persistent=False
        )
        self.input = nn.Conv1d(bins, channels, kernel_size=1)
        self.blocks = nn.ModuleList(
            _Block(channels, dilation, c.query_dim) for dilation in self.dilations
        )
        self.output_norm = _FrameNorm(channels)
        self.output = nn.Conv1d(channels, bins, kernel_size=1)
        self.query_encoder = QueryEncoder(
            c.query_dim, c.appearance_dim, c.ensemble_context, c.voices
        )

    # ----------------------------------------------------------------- length arithmetic
    @property
    def total_decimation(self) -> int:
        """Window starts must differ by multiples of this (the hop) for exact chunking."""
        return self.config.spectral_hop

    @property
    def dilations(self) -> list[int]:
        """Each block's dilation: ``2 ** (b % spectral_cycle)`` for block ``b``."""
        c = self.config
        return [2 ** (block % c.spectral_cycle) for block in range(c.spectral_blocks)]

    @property
    def context_frames(self) -> int:
        """Frames the blocks remove on each side: the sum of their dilations."""
        return sum(self.dilations)

    def frame_count(self, input_length: int) -> int:
        """STFT frames of an input of ``input_length`` samples (no padding; 0 if shorter
        than one window)."""
        c = self.config
        if input_length < c.spectral_fft:
            return 0
        return (input_length - c.spectral_fft) // c.spectral_hop + 1

    @property
    def context(self) -> int:
        """Input samples before the first output sample (the left context)."""
        c = self.config
        return self.context_frames * c.spectral_hop + c.spectral_fft - c.spectral_hop

    def output_length(self, input_length: int) -> int:
        """Output samples produced from ``input_length`` input samples (0 if too short)."""
        c = self.config
        kept = self.frame_count(input_length) - 2 * self.context_frames
        return max(0, kept * c.spectral_hop - (c.spectral_fft - c.spectral_hop))

    def output_span(self, input_length: int) -> Span | None:
        """Positions (in input samples) of the output for ``input_length``, or ``None``."""
        count = self.output_length(input_length)
        return Span(self.context, 1, count) if count else None

    def input_length_for(self, output_length: int) -> int:
        """Smallest input length whose output has at least ``output_length`` samples."""
        c = self.config
        hop = c.spectral_hop
        kept = -(-max(1, output_length) // hop) + c.spectral_fft // hop - 1
        frames = kept + 2 * self.context_frames
        return (frames - 1) * hop + c.spectral_fft

    def motion_frames_for(self, input_length: int) -> int:
        """No motion path: no motion frames."""
        return 0

    def working_set_bytes_per_output_sample(self, bytes_per_value: int = 4) -> int:
        """Bytes one query touches per output sample: the complex spectrum, its mask and
        three feature maps per frame, over ``hop`` samples."""
        c = self.config
        values = (c.spectral_fft // 2 + 1) * 4 + 3 * c.spectral_channels
        return int(values * bytes_per_value / c.spectral_hop) + 1

    def macs_per_second_per_query(self) -> float:
        """Multiply-adds one query costs per second of audio (the STFT, shared, excluded)."""
        c = self.config
        bins, channels = c.spectral_fft // 2 + 1, c.spectral_channels
        per_frame = 2 * bins * channels + c.spectral_blocks * 4 * channels * channels
        return per_frame * c.sample_rate / c.spectral_hop

    # ----------------------------------------------------------------------- forward
    def forward(
        self, mixture: Tensor, queries: QueryBatch, stream: StreamState | None = None
    ) -> Tensor:
        """Separate ``mixture`` ``(W, 1, T_in)`` for K queries -> estimates ``(W, K, T_out)``.

        Queries are shared by all windows (``labels (K,)``) or per window (``labels (W, K)``,
        ``appearance (W, K, A)``); motion is not read.
        """
        if stream is not None:
            raise ValueError("the spectral network does not stream; run windows independently")
        c = self.config
        windows, _, input_length = mixture.shape
        output_length = self.output_length(input_length)
        if output_length < 1:
            raise ValueError(
                f"input of {input_length} samples is shorter than the network's minimum "
                f"({self.input_length_for(1)})"
            )
        k = queries.size
        query = self.query_encoder.per_window(queries, windows)  # (W*K, D), window-major
        with torch.autocast(mixture.device.type, enabled=False):  # the STFT stays fp32
            spectrum = torch.stft(
                mixture[:, 0].float(), c.spectral_fft, c.spectral_hop, window=self.window,
                center=False, return_complex=True,
            )  # (W, bins, frames)  # fmt: skip
        features = F.gelu(self.input(torch.log1p(spectrum.abs()).to(mixture.dtype)))
        features = features.repeat_interleave(k, dim=0)  # (W*K, C, frames), window-major
        query = query.to(features.dtype)
        for block in self.blocks:
            features = block(features, query)
        logits = self.output(self.output_norm(features))  # (W*K, bins, kept frames)
        mask = torch.sigmoid(logits.float())
        kept = mask.shape[-1]
        first = self.context_frames
        masked = spectrum[..., first : first + kept].repeat_interleave(k, dim=0) * mask
        with torch.autocast(mixture.device.type, enabled=False):
            frames = torch.fft.irfft(masked, n=c.spectral_fft, dim=1) * self.window[:, None]
            overlap_added = F.fold(
                frames,
                output_size=(1, (kept - 1) * c.spectral_hop + c.spectral_fft),
                kernel_size=(1, c.spectral_fft),
                stride=(1, c.spectral_hop),
            )  # (W*K, 1, 1, samples)
        start = c.spectral_fft - c.spectral_hop  # from here on all four frames overlap
        estimates = overlap_added[:, 0, 0, start : start + output_length] / _WINDOW_SQUARE_SUM
        estimates = estimates.reshape(windows, k, output_length).to(mixture.dtype)
        if c.silence_gate:
            span = Span(self.context, 1, output_length)
            estimates = estimates * activity_gate(mixture, span, self.context)
        return estimates
