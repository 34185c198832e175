"""The query-conditioned Wave-U-Net (Stoller et al. 2018; VIMSS conditioning).

Valid (unpadded) 1-D convolutions, decimation by 2 going down, linear interpolation going up,
crop-and-concatenate skips. An input window of ``T_in`` samples yields a shorter output
window; the model reports this arithmetic itself (:meth:`WaveUNet.output_span`,
:meth:`WaveUNet.input_length_for`).

Every tensor at every layer sits on a regular grid of input-sample positions
(``start + step * i``). Because all crops are fixed and decimation keeps the first sample of
each tensor, two windows whose starts differ by a multiple of ``2 ** levels`` compute
identical values at identical absolute positions: that is what makes chunked inference exact.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimss_cli.conditioning import FiLM, QueryBatch, QueryEncoder
from vimss_cli.config_checks import ConfigValueError, check_range, check_types

Conditioning = Literal["film-all", "film-bottleneck", "film-output", "concat"]
CONDITIONING_CHOICES: tuple[str, ...] = ("film-all", "film-bottleneck", "film-output", "concat")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the network's shape; stored inside every checkpoint.

    Attributes:
        sample_rate: audio rate the model runs at (Hz).
        levels: number of downsampling blocks (total decimation ``2 ** levels``).
        base_features: channels of the first block.
        feature_growth: ``"add"`` (block ``l`` has ``base * (l + 1)``) or ``"double"``.
        down_kernel / up_kernel / bottleneck_kernel: odd kernel sizes.
        conditioning: where the query enters: FiLM at every layer, at the bottleneck, at
            the output layer, or concatenated to the bottleneck features.
        query_dim: size of the static query embedding.
        appearance_dim: size of appearance vectors (0: the model takes none).
        motion_channels: channels of the motion sequence (0: the model takes none).
        motion_features: what the channels hold (``vision/motion.py``): ``"bands"``, the
            player's box cut into horizontal bands; ``"multiscale"``, the whole box averaged
            over centred windows of growing length (``MULTISCALE_SECONDS``), so the model sees
            seconds of motion through its short receptive field.
        mixture_consistency: project the K estimates so they sum to the mixture.
        silence_gate: output exactly zero where the mixture is digitally silent for the whole
            context around a sample (a function of absolute positions, so still exact).
        output_activation: ``"tanh"`` (Wave-U-Net) or ``"identity"``.
    """

    sample_rate: int = 22050
    levels: int = 8
    base_features: int = 24
    feature_growth: Literal["add", "double"] = "add"
    down_kernel: int = 15
    up_kernel: int = 5
    bottleneck_kernel: int = 15
    conditioning: Conditioning = "film-all"
    query_dim: int = 64
    appearance_dim: int = 0
    motion_channels: int = 0
    motion_features: Literal["bands", "multiscale"] = "bands"
    mixture_consistency: bool = False
    silence_gate: bool = True
    output_activation: Literal["tanh", "identity"] = "tanh"

    def __post_init__(self) -> None:
        check_types(self)  # before the ranges, so ``levels = "five"`` names its key
        for name in ("sample_rate", "levels", "base_features", "query_dim"):
            check_range(self, name, at_least=1)
        for name in ("appearance_dim", "motion_channels"):
            check_range(self, name, at_least=0)
        for name in ("down_kernel", "up_kernel", "bottleneck_kernel"):
            kernel = getattr(self, name)
            if kernel < 1 or kernel % 2 == 0:
                raise ConfigValueError(f"{name} must be a positive odd number, got {kernel}")

    def features(self, level: int) -> int:
        """Channels at ``level`` (0 .. levels; ``levels`` is the bottleneck)."""
        if self.feature_growth == "add":
            return self.base_features * (level + 1)
        return self.base_features * 2**level

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys with the list of valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; valid keys: {sorted(valid)}")
        return cls(**values)


@dataclass(frozen=True)
class Span:
    """A tensor's positions in input-sample coordinates: ``start + step * i`` for i < count."""

    start: int
    step: int
    count: int


def upsample_linear(features: Tensor) -> Tensor:
    """``(N, C, n) -> (N, C, 2n - 1)``: insert the mean between neighbours, no extrapolation."""
    middle = 0.5 * (features[..., :-1] + features[..., 1:])
    interleaved = torch.stack((features[..., :-1], middle), dim=-1).flatten(-2)
    return torch.cat((interleaved, features[..., -1:]), dim=-1)


def crop_to(tensor: Tensor, span: Span, target: Span) -> Tensor:
    """Crop ``tensor`` (positions ``span``) to the positions of ``target`` (same step)."""
    offset = (target.start - span.start) // span.step
    return tensor[..., offset : offset + target.count]


def take_positions(per_sample: Tensor, span: Span) -> Tensor:
    """Pick the positions of ``span`` from a per-input-sample tensor ``(N, M, T_in)``."""
    stop = span.start + span.step * (span.count - 1) + 1
    return per_sample[..., span.start : stop : span.step]


class WaveUNet(nn.Module):
    """Query-conditioned Wave-U-Net separating one source per query.

    ``forward(mixture (W, 1, T_in), queries) -> (W, K, T_out)``: W mixture windows, each
    separated for each of the K queries in ``queries`` (a :class:`QueryBatch`).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.down_convs = nn.ModuleList()
        channels_in = 1
        for level in range(c.levels):
            self.down_convs.append(nn.Conv1d(channels_in, c.features(level), c.down_kernel))
            channels_in = c.features(level)
        bottleneck_in = channels_in + (c.query_dim if c.conditioning == "concat" else 0)
        self.bottleneck = nn.Conv1d(bottleneck_in, c.features(c.levels), c.bottleneck_kernel)
        self.up_convs = nn.ModuleList()
        channels_in = c.features(c.levels)
        for level in reversed(range(c.levels)):
            self.up_convs.append(
                nn.Conv1d(channels_in + c.features(level), c.features(level), c.up_kernel)
            )
            channels_in = c.features(level)
        self.output_conv = nn.Conv1d(channels_in + 1, 1, kernel_size=1)
        self.query_encoder = QueryEncoder(c.query_dim, c.appearance_dim)
        self.motion_to_query = (
            nn.Conv1d(c.motion_channels, c.query_dim, 1)
            if c.motion_channels and c.conditioning == "concat"
            else None
        )
        film_channels: dict[str, int] = {}
        if c.conditioning == "film-all":
            for level in range(c.levels):
                film_channels[f"down{level}"] = c.features(level)
                film_channels[f"up{level}"] = c.features(level)
        if c.conditioning in ("film-all", "film-bottleneck"):
            film_channels["bottleneck"] = c.features(c.levels)
        if c.conditioning in ("film-all", "film-output"):
            film_channels["output"] = c.features(0)
        self.films = nn.ModuleDict(
            {
                name: FiLM(channels, c.query_dim, c.motion_channels)
                for name, channels in film_channels.items()
            }
        )

    # ----------------------------------------------------------------- length arithmetic
    @property
    def total_decimation(self) -> int:
        """Window starts must be multiples of this for chunked inference to be exact."""
        return 2**self.config.levels

    def trace(self, input_length: int) -> dict[str, Span] | None:
        """Spans of every layer's output for an input of ``input_length`` samples.

        Returns ``None`` if the input is too short for the network.
        """
        c = self.config
        spans: dict[str, Span] = {"input": Span(0, 1, input_length)}
        span = spans["input"]

        def conv(span: Span, kernel: int) -> Span:
            return Span(
                span.start + (kernel - 1) // 2 * span.step, span.step, span.count - kernel + 1
            )

        for level in range(c.levels):
            span = conv(span, c.down_kernel)
            if span.count < 1:
                return None
            spans[f"down{level}"] = span
            span = Span(span.start, span.step * 2, (span.count + 1) // 2)
        span = conv(span, c.bottleneck_kernel)
        if span.count < 1:
            return None
        spans["bottleneck"] = span
        for level in reversed(range(c.levels)):
            span = Span(span.start, span.step // 2, 2 * span.count - 1)
            span = conv(span, c.up_kernel)
            if span.count < 1:
                return None
            spans[f"up{level}"] = span
        spans["output"] = span
        return spans

    def output_span(self, input_length: int) -> Span | None:
        """Positions (in input samples) of the output for ``input_length``, or ``None``."""
        spans = self.trace(input_length)
        return None if spans is None else spans["output"]

    @property
    def context(self) -> int:
        """Input samples before the first output sample (the left context)."""
        span = self.output_span(self.input_length_for(1))
        assert span is not None
        return span.start

    def output_length(self, input_length: int) -> int:
        """Output samples produced from ``input_length`` input samples (0 if too short)."""
        span = self.output_span(input_length)
        return 0 if span is None else span.count

    def input_length_for(self, output_length: int) -> int:
        """Smallest input length whose output has at least ``output_length`` samples."""
        low, high = 1, max(2, output_length)
        while self.output_length(high) < output_length:
            high *= 2
        while low < high:
            middle = (low + high) // 2
            if self.output_length(middle) >= output_length:
                high = middle
            else:
                low = middle + 1
        return low

    # ----------------------------------------------------------------------- forward
    def _film(
        self, name: str, features: Tensor, query: Tensor, motion: Tensor | None, span: Span
    ) -> Tensor:
        if name not in self.films:
            return features
        layer_motion = None if motion is None else take_positions(motion, span)
        return self.films[name](features, query, layer_motion)

    def forward(self, mixture: Tensor, queries: QueryBatch) -> Tensor:
        """Separate ``mixture`` ``(W, 1, T_in)`` for K queries -> estimates ``(W, K, T_out)``.

        The queries are either shared by all windows (``labels (K,)``) or given per window
        (``labels (W, K)``, ``appearance (W, K, A)``), as training uses.
        """
        c = self.config
        windows, _, input_length = mixture.shape
        spans = self.trace(input_length)
        if spans is None:
            raise ValueError(
                f"input of {input_length} samples is shorter than the network's minimum "
                f"({self.input_length_for(1)})"
            )
        k = queries.size
        if queries.labels.ndim == 1:  # the same K queries for every window
            query = self.query_encoder(queries.labels, queries.appearance)  # (K, D)
            query = query.repeat(windows, 1)  # (W*K, D), window-major
        else:  # per-window queries (training): labels (W, K), appearance (W, K, A)
            appearance = queries.appearance
            if appearance is not None:
                appearance = appearance.reshape(windows * k, -1)
            query = self.query_encoder(queries.labels.reshape(-1), appearance)
        motion = None
        if queries.motion is not None and c.motion_channels:
            motion = queries.motion.reshape(windows * k, c.motion_channels, input_length)
        motion = None if motion is None else motion.to(mixture.dtype)

        def expand(tensor: Tensor) -> Tensor:  # (W, ...) -> (W*K, ...)
            return tensor.repeat_interleave(k, dim=0)

        encoder_conditioned = c.conditioning == "film-all"
        features = expand(mixture) if encoder_conditioned else mixture
        skips: list[Tensor] = []
        for level, conv in enumerate(self.down_convs):
            features = F.leaky_relu(conv(features), 0.2)
            name = f"down{level}"
            if encoder_conditioned:
                features = self._film(name, features, query, motion, spans[name])
            skips.append(features)
            features = features[..., ::2]
        if not encoder_conditioned:
            features = expand(features)
            skips = [expand(skip) for skip in skips]
        if c.conditioning == "concat":
            bottleneck_in = Span(
                spans["down" + str(c.levels - 1)].start,
                spans["bottleneck"].step,
                features.shape[-1],
            )
            extra = query.unsqueeze(-1).expand(-1, -1, features.shape[-1])
            if self.motion_to_query is not None and motion is not None:
                extra = extra + self.motion_to_query(take_positions(motion, bottleneck_in))
            features = torch.cat((features, extra.to(features.dtype)), dim=1)
        features = F.leaky_relu(self.bottleneck(features), 0.2)
        features = self._film("bottleneck", features, query, motion, spans["bottleneck"])
        span = spans["bottleneck"]
        for index, conv in enumerate(self.up_convs):
            level = c.levels - 1 - index
            features = upsample_linear(features)
            span = Span(span.start, span.step // 2, 2 * span.count - 1)
            skip = crop_to(skips[level], spans[f"down{level}"], span)
            features = F.leaky_relu(conv(torch.cat((features, skip), dim=1)), 0.2)
            span = spans[f"up{level}"]
            if c.conditioning == "film-all":
                features = self._film(f"up{level}", features, query, motion, span)
        features = self._film("output", features, query, motion, spans["output"])
        output_span = spans["output"]
        mixture_out = mixture[..., output_span.start : output_span.start + output_span.count]
        features = torch.cat((features, expand(mixture_out)), dim=1)
        estimates = self.output_conv(features)
        if c.output_activation == "tanh":
            estimates = torch.tanh(estimates)
        estimates = estimates.reshape(windows, k, output_span.count)
        if c.mixture_consistency:
            residual = mixture_out - estimates.sum(dim=1, keepdim=True)
            estimates = estimates + residual / k
        if c.silence_gate:
            estimates = estimates * self._activity_gate(mixture, output_span)
        return estimates

    @staticmethod
    def _activity_gate(mixture: Tensor, output_span: Span) -> Tensor:
        """``(W, 1, T_out)``: 1 where any input sample within ±context is non-zero, else 0."""
        radius = output_span.start
        nonzero = (mixture[:, 0] != 0).to(torch.int64)
        counts = F.pad(nonzero.cumsum(dim=-1), (1, 0))  # counts[i] = nonzero in [0, i)
        first = torch.arange(output_span.count, device=mixture.device)
        active = counts[:, first + 2 * radius + 1] - counts[:, first]
        return (active > 0).to(mixture.dtype).unsqueeze(1)
