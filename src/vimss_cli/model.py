"""The query-conditioned Wave-U-Net (Stoller et al. 2018; VIMSS conditioning).

Valid (unpadded) 1-D convolutions, decimation by 2 going down, linear interpolation going up,
crop-and-concatenate skips. An input window of ``T_in`` samples yields a shorter output
window; the model reports this arithmetic itself (:meth:`WaveUNet.output_span`,
:meth:`WaveUNet.input_length_for`).

Every tensor at every layer sits on a regular grid of input-sample positions
(``start + step * i``). Because all crops are fixed and decimation keeps the first sample of
each tensor, two windows whose starts differ by a multiple of ``2 ** levels`` compute
identical values at identical absolute positions: that is what makes chunked inference exact.

The file reads top to bottom: the config, the grid arithmetic, the layers the engine streams
(time-major convolution, joins, the decoder's upsampling folded into polyphase weights), the
query conditioning (``QueryEncoder``, ``FiLM``), then the network, whose forward can carry a
:class:`StreamState` from one window to the next.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vimss_cli.conditioning import MAX_VOICES, QueryBatch, ensemble_counts
from vimss_cli.config_checks import ConfigValueError, check_range, check_types
from vimss_cli.instruments import NUM_INSTRUMENTS

#: The most levels a Wave-U-Net may have: each halves the time resolution (the shipped
#: models have 9, the GPU run's 11), and 100 levels once failed deep inside numpy.
MAX_LEVELS = 16

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
        motion_features: what the channels hold: ``"bands"``, the frame-difference energy of
            the player's box cut into horizontal bands (``vision/motion.py``);
            ``"multiscale"``, the whole box averaged over centred windows of growing length
            (``MULTISCALE_SECONDS``); ``"pose"``, the speeds of the bowing arm, fingers,
            shoulders and head from the player's keypoints (``vision/pose_motion.py``).
        motion_encoder_channels: with a positive value, the motion first goes through a
            :class:`MotionEncoder` (dilated convolutions over ``motion_rate`` frames per
            second, ``motion_encoder_layers`` of them) with this many output channels, which
            then feed FiLM: the model integrates seconds of motion. 0: FiLM reads the motion
            at each sample as it is.
        motion_bypass: with a motion encoder, a query without motion (a label query, or a
            player whose motion is unknown) bypasses the motion path: every FiLM layer gives it
            its static parameters alone, whatever the encoder and FiLM's motion convolutions
            (their biases included) learn. Without it, such a query is encoded as zero frames,
            and training the motion path moves the label queries' output too.
        motion_activity_head: with a motion encoder, a 1x1 convolution on its output frames
            that says how loud the player is (:meth:`WaveUNet.motion_activity`). Separation
            never uses it; training can (``optim.activity_weight``), to give the encoder a
            dense "who plays" signal where the separation loss gives a weak one.
        mixture_consistency: project the K estimates so they sum to the mixture.
        ensemble_context: each query's embedding also hears how many players of each
            instrument play (:attr:`QueryBatch.ensemble`), so the model can use where its
            instrument sits among the others (the alto of a quartet, the bass of a trio), as
            players of an ensemble part their registers.
        voices: with ``n > 0`` a query may also name which voice of its instrument it wants
            (:attr:`QueryBatch.voices`): 1 the highest-sounding player of that instrument in
            the mixture, 2 the next, up to ``n``, so that two violins give two stems by
            register, and the video then says which stem is whose
            (``vimss_cli.voices``). Voice 0, every query's default, means all the
            players of the instrument summed, as a label query always has; its embedding is
            fixed at zero, so label queries separate exactly as they do without voices.
        silence_gate: output exactly zero where the mixture is digitally silent for the whole
            context around a sample (a function of absolute positions, so still exact).
        output_activation: ``"tanh"`` (Wave-U-Net) or ``"identity"``.
        architecture: ``"waveunet"`` (this module's :class:`WaveUNet`; the fields above) or
            ``"spectral"`` (:class:`vimss_cli.spectral.SpectralMaskNet`: a fixed STFT, dilated
            valid convolutions over its frames, a mask per query; the ``spectral_*`` fields,
            ``query_dim``, ``appearance_dim``, ``silence_gate``).
        spectral_fft / spectral_hop: the STFT's window and hop (samples; the hop divides the
            window by 4).
        spectral_channels: channels of the frame-rate convolutions.
        spectral_blocks: residual blocks; block ``b`` has dilation ``2 ** (b % spectral_cycle)``.
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
    motion_features: Literal["bands", "multiscale", "pose"] = "bands"
    motion_encoder_channels: int = 0
    motion_encoder_layers: int = 5
    motion_rate: float = 15.0
    motion_bypass: bool = False
    motion_activity_head: bool = False
    mixture_consistency: bool = False
    ensemble_context: bool = False
    voices: int = 0
    silence_gate: bool = True
    output_activation: Literal["tanh", "identity"] = "tanh"
    architecture: Literal["waveunet", "spectral"] = "waveunet"
    spectral_fft: int = 1024
    spectral_hop: int = 256
    spectral_channels: int = 192
    spectral_blocks: int = 10
    spectral_cycle: int = 7

    def __post_init__(self) -> None:
        check_types(self)  # before the ranges, so ``levels = "five"`` names its key
        for name in ("levels", "base_features", "query_dim"):
            check_range(self, name, at_least=1)
        check_range(self, "levels", at_most=MAX_LEVELS)  # 2 ** levels-fold decimation
        check_range(self, "sample_rate", at_least=1000, at_most=192000)
        for name in ("appearance_dim", "motion_channels", "motion_encoder_channels"):
            check_range(self, name, at_least=0)
        check_range(self, "motion_encoder_layers", at_least=1, at_most=10)
        check_range(self, "voices", at_least=0, at_most=MAX_VOICES)
        check_range(self, "motion_rate", at_least=1.0, at_most=120.0)
        for name in ("spectral_hop", "spectral_channels", "spectral_blocks"):
            check_range(self, name, at_least=1)
        check_range(self, "spectral_cycle", at_least=1, at_most=12)
        if self.spectral_fft != 4 * self.spectral_hop:
            raise ConfigValueError(
                f"spectral_fft must be 4 * spectral_hop ({4 * self.spectral_hop}), "
                f"got {self.spectral_fft}"
            )
        if self.architecture == "spectral" and self.motion_channels:
            raise ConfigValueError("the spectral architecture takes no motion (motion_channels 0)")
        if self.motion_encoder_channels and not self.motion_channels:
            raise ConfigValueError("motion_encoder_channels needs motion_channels")
        for name in ("motion_bypass", "motion_activity_head"):
            if getattr(self, name) and not self.motion_encoder_channels:
                raise ConfigValueError(f"{name} needs a motion encoder (motion_encoder_channels)")
        for name in ("down_kernel", "up_kernel", "bottleneck_kernel"):
            kernel = getattr(self, name)
            if kernel < 1 or kernel % 2 == 0:
                raise ConfigValueError(f"{name} must be a positive odd number, got {kernel}")

    @property
    def label_only(self) -> bool:
        """Whether queries carry nothing but the instrument label: no voices, appearance or
        motion (two players of one instrument then get one stem, which
        :mod:`vimss_cli.pitch_voices` may split)."""
        return not (self.voices or self.appearance_dim or self.motion_channels)

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


@dataclass
class StreamState:
    """What one stream of consecutive windows carries from each window to the next.

    The windows of a stream start ``step`` input samples apart, ``step`` a multiple of the
    total decimation, so every layer's window moves on by ``step / stride`` of its positions.
    After the first window each layer computes only those new positions, reading what came
    before them (a convolution's ``kernel - 1`` inputs, the encoder features the decoder has
    not reached yet and the ``up_kernel - 1`` before them that its skip convolution reads
    again) from ``tails``. The context that
    independent windows recompute is computed once, and the values are the same.

    Attributes:
        step: input samples between consecutive windows.
        tails: per layer, what the next window needs of this one.
        parities: per decimation, the parity of the positions seen so far (which of the new
            ones to keep).
        started: whether the first window has run.
        weights: per convolution, its weight laid out for :func:`time_major_conv` (made once:
            the weights do not change while a stream runs).
    """

    step: int
    tails: dict[str, Tensor] = field(default_factory=dict)
    parities: dict[str, int] = field(default_factory=dict)
    started: bool = False
    weights: dict[str, Tensor] = field(default_factory=dict)


def time_major_empty(like: Tensor, channels: int, length: int) -> Tensor:
    """An uninitialised ``(N, channels, length)`` tensor laid out time-major in memory.

    Every activation is kept so: oneDNN's convolutions read and write this layout (channels
    last) without reordering, about 1.3x faster on the small-channel layers of our models.
    """
    return like.new_empty(like.shape[0], length, channels).transpose(1, 2)


def conv_weight(weight: Tensor) -> Tensor:
    """A 1-D convolution's ``weight (C', C, k)`` laid out for :func:`time_major_conv`."""
    return weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def time_major_conv(weight: Tensor, bias: Tensor | None, inputs: Tensor) -> Tensor:
    """A valid convolution ``(N, C, T) -> (N, C', T - k + 1)`` by ``weight``
    (:func:`conv_weight` of ``(C', C, k)``) as a channels-last 2-D convolution, the result laid
    out time-major (:func:`time_major_empty`)."""
    return F.conv2d(inputs.unsqueeze(2), weight, bias).squeeze(2)


def repeat_per_query(features: Tensor, queries: int) -> Tensor:
    """``(W, C, T) -> (W * K, C, T)``: each window's features once per query, window-major,
    time-major (``repeat_interleave`` would lay them out channels first, and every layer after
    would then read them across the grain)."""
    windows, channels, length = features.shape
    out = features.new_empty(windows, queries, length, channels).transpose(2, 3)
    out.copy_(features.unsqueeze(1))  # (W, K, C, T), time-major
    return out.reshape(windows * queries, channels, length)


def join_time(before: Tensor, after: Tensor) -> Tensor:
    """``before (N, C, H)`` then ``after (N, C, T)`` along time, time-major: ``(N, C, H + T)``."""
    joined = time_major_empty(after, after.shape[1], before.shape[-1] + after.shape[-1])
    joined[..., : before.shape[-1]] = before
    joined[..., before.shape[-1] :] = after
    return joined


def polyphase_taps(kernel: int) -> Tensor:
    """``(kernel, 2, kernel // 2 + 2)``: where tap ``i`` of a convolution over linearly upsampled
    features falls on the low-rate features, for its even (0) and odd (1) outputs.

    Upsampled position ``2j`` is low sample ``j``; ``2j + 1`` is the mean of samples ``j`` and
    ``j + 1``. So output ``2j + p`` reads upsampled ``2j + p + i`` for each tap ``i``: low sample
    ``j + (p + i) / 2`` with weight 1 when ``p + i`` is even, else half of each neighbour.
    (A new tensor each call: one kept from an ``inference_mode`` call could not be saved for
    a later backward pass.)
    """
    taps = torch.zeros(kernel, 2, kernel // 2 + 2)
    for tap in range(kernel):
        for parity in (0, 1):
            position = parity + tap  # upsampled positions past 2j
            if position % 2 == 0:
                taps[tap, parity, position // 2] = 1.0
            else:
                taps[tap, parity, position // 2] = 0.5
                taps[tap, parity, position // 2 + 1] = 0.5
    return taps


def polyphase_weights(weight: Tensor) -> Tensor:
    """A convolution over linearly upsampled features, moved to the features' own rate:
    ``weight (C', C, k)`` (k odd) -> ``(2 C', C, k // 2 + 2)`` whose first ``C'`` outputs are
    the even outputs and the last ``C'`` the odd ones (:func:`polyphase_taps`)."""
    taps = polyphase_taps(weight.shape[-1]).to(weight.device, weight.dtype)
    moved = torch.einsum("oci,ipj->pocj", weight, taps)  # (2, C', C, k // 2 + 2)
    return moved.reshape(2 * weight.shape[0], weight.shape[1], -1)


def polyphase_conv_weight(weight: Tensor) -> Tensor:
    """:func:`polyphase_weights` laid out for :func:`time_major_conv`."""
    return conv_weight(polyphase_weights(weight))


def interleave_pairs(pairs: Tensor) -> Tensor:
    """``(N, 2C, m)`` even outputs then odd outputs (channels) -> ``(N, C, 2m)`` in time order.

    Time-major, the ``2C`` values of step ``j`` already lie as ``C`` values of step ``2j`` then
    ``C`` of ``2j + 1``: this is a view, no copy."""
    windows, channels, count = pairs.shape
    rows = pairs.transpose(1, 2).reshape(windows, 2 * count, channels // 2)
    return rows.transpose(1, 2)


def crop_to(tensor: Tensor, span: Span, target: Span) -> Tensor:
    """Crop ``tensor`` (positions ``span``) to the positions of ``target`` (same step)."""
    offset = (target.start - span.start) // span.step
    return tensor[..., offset : offset + target.count]


def take_positions(per_sample: Tensor, span: Span) -> Tensor:
    """Pick the positions of ``span`` from a per-input-sample tensor ``(N, M, T_in)``."""
    stop = span.start + span.step * (span.count - 1) + 1
    return per_sample[..., span.start : stop : span.step]


# ------------------------------------------------------------------ query conditioning
class QueryEncoder(nn.Module):
    """Embed the static part of K queries: label embedding plus projected appearance, plus
    (with ``ensemble``) the projected instrument counts of the whole ensemble, plus (with
    ``voices``) the embedding of the voice asked for (voice 0, all players of the instrument,
    adds nothing).

    ``forward(labels (K,), appearance (K, A) | None, ensemble (K, I) | None, voices (K,) |
    None) -> (K, query_dim)``; the networks call :meth:`per_window`, which supplies the counts.
    """

    def __init__(
        self, query_dim: int, appearance_dim: int, ensemble: bool = False, voices: int = 0
    ) -> None:
        super().__init__()
        self.label_embedding = nn.Embedding(NUM_INSTRUMENTS + 1, query_dim)
        self.appearance_projection = (
            nn.Linear(appearance_dim, query_dim) if appearance_dim > 0 else None
        )
        self.ensemble_projection = nn.Linear(NUM_INSTRUMENTS, query_dim) if ensemble else None
        self.voice_embedding = (
            nn.Embedding(voices + 1, query_dim, padding_idx=0) if voices > 0 else None
        )
        if self.voice_embedding is not None:  # a fresh model starts as its label model
            nn.init.zeros_(self.voice_embedding.weight)

    def forward(
        self,
        labels: Tensor,
        appearance: Tensor | None = None,
        ensemble: Tensor | None = None,
        voices: Tensor | None = None,
    ) -> Tensor:
        embedding = self.label_embedding(labels)
        if self.appearance_projection is not None and appearance is not None:
            embedding = embedding + self.appearance_projection(appearance)
        if self.ensemble_projection is not None and ensemble is not None:
            embedding = embedding + self.ensemble_projection(ensemble)
        if self.voice_embedding is not None and voices is not None:
            embedding = embedding + self.voice_embedding(voices)
        return embedding

    def per_window(self, queries: QueryBatch, windows: int) -> Tensor:
        """The embeddings of ``queries`` for each of ``windows`` windows: ``(W*K, D)``,
        window-major. The queries are shared by all windows (``labels (K,)``) or given per
        window (``labels (W, K)``, ``appearance (W, K, A)``, ``ensemble (W, I)``, ``voices
        (W, K)``), as training gives them."""
        k = queries.size
        ensemble = queries.ensemble
        if ensemble is None and self.ensemble_projection is not None:
            ensemble = ensemble_counts(queries.labels)  # (I,) or (W, I)
        voices = queries.voices  # checked against the model once, by the engine
        if queries.labels.ndim == 1:
            shared = None if ensemble is None else ensemble.expand(k, -1)
            return self(queries.labels, queries.appearance, shared, voices).repeat(windows, 1)
        appearance = queries.appearance
        if appearance is not None:
            appearance = appearance.reshape(windows * k, -1)
        if ensemble is not None:
            ensemble = ensemble.unsqueeze(1).expand(windows, k, -1).reshape(windows * k, -1)
        if voices is not None:
            voices = voices.reshape(-1)
        return self(queries.labels.reshape(-1), appearance, ensemble, voices)


class FiLM(nn.Module):
    """Feature-wise linear modulation by a query: ``h * (1 + gamma) + beta``.

    ``gamma`` and ``beta`` are ``(N, C, 1)`` from the static query embedding plus, when the
    model has motion channels, ``(N, C, T)`` from the motion at this layer's time positions.
    With ``bypass``, a query without motion gets no motion term at all (not even the motion
    convolution's bias): its FiLM parameters are the static ones alone.
    """

    def __init__(
        self, channels: int, query_dim: int, motion_channels: int, bypass: bool = False
    ) -> None:
        super().__init__()
        self.bypass = bypass
        self.static = nn.Linear(query_dim, 2 * channels)
        self.dynamic = (
            nn.Conv1d(motion_channels, 2 * channels, kernel_size=1) if motion_channels else None
        )
        nn.init.normal_(self.static.weight, std=0.02)
        nn.init.zeros_(self.static.bias)

    def forward(
        self,
        features: Tensor,
        query: Tensor,
        motion: Tensor | None,
        present: Tensor | None = None,
    ) -> Tensor:
        """features ``(N, C, T)``, query ``(N, D)``, motion ``(N, M, T)`` or None;
        ``present`` ``(N, 1, 1)`` bool says which queries' motion counts (the network passes
        it with ``motion_bypass``; ``None``: all of them).

        ``motion=None`` on a model with motion channels means no motion: the motion
        convolution of zeros, which is its bias, without computing it (with ``bypass``,
        nothing).
        """
        params = self.static(query).unsqueeze(-1)
        if self.dynamic is not None:
            if motion is None:
                bias = self.dynamic.bias
                assert bias is not None  # nn.Conv1d's default bias=True
                if not self.bypass:
                    params = params + bias.view(1, -1, 1)
            else:
                moved = self.dynamic(motion)
                if present is not None:
                    moved = torch.where(present, moved, moved.new_zeros(()))
                params = params + moved
        gamma, beta = params.chunk(2, dim=1)
        return torch.addcmul(beta, features, 1 + gamma)


def motion_encoder_context(config: ModelConfig) -> int:
    """Frames a :class:`MotionEncoder` output frame sees on each side: ``2 ** layers - 1``."""
    return 2**config.motion_encoder_layers - 1


def motion_window_frames(config: ModelConfig, input_length: int) -> int:
    """Motion frames a window of ``input_length`` samples needs with a motion encoder: the
    two frames around every sample, plus the encoder's context on either side."""
    covered = int(np.ceil((input_length - 1) * config.motion_rate / config.sample_rate)) + 2
    return covered + 2 * motion_encoder_context(config)


class MotionEncoder(nn.Module):
    """Integrates seconds of a player's motion: dilated valid convolutions over its frames.

    ``forward(frames (N, M, F)) -> (N, E, F - 2 * context)``: a 1x1 projection to ``E``
    channels, then ``layers`` residual convolutions of kernel 3 with dilations 1, 2, 4, ...
    Output frame ``f`` sees input frames ``f .. f + 2 * context`` (centred on
    ``f + context``), ``context = 2 ** layers - 1`` frames each side: at 15 frames per second
    and 5 layers, 31 frames, about 2 s either way. The convolutions are valid, so an output
    frame depends on its input frames only, wherever the window around it starts: the engine
    cuts the motion into windows exactly as it cuts the audio.
    """

    def __init__(self, channels_in: int, channels: int, layers: int) -> None:
        super().__init__()
        self.project = nn.Conv1d(channels_in, channels, kernel_size=1)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size=3, dilation=2**layer)
            for layer in range(layers)
        )

    @property
    def context(self) -> int:
        """Input frames on each side of an output frame."""
        return 2 ** len(self.convs) - 1

    def forward(self, frames: Tensor) -> Tensor:
        features = self.project(frames)
        for layer, conv in enumerate(self.convs):
            dilation = 2**layer
            features = features[..., dilation:-dilation] + F.gelu(conv(features))
        return features


def activity_gate(mixture: Tensor, span: Span, radius: int) -> Tensor:
    """``(W, 1, span.count)``: 1 where any input sample within ±radius is non-zero, else 0.

    ``mixture`` is ``(W, 1, T_in)``; ``span`` holds window positions of output samples
    (``span.start >= radius``). A function of absolute positions, so chunking stays exact.
    """
    nonzero = (mixture[:, 0] != 0).to(torch.int64)
    counts = F.pad(nonzero.cumsum(dim=-1), (1, 0))  # counts[i] = nonzero in [0, i)
    first = torch.arange(span.count, device=mixture.device) + span.start - radius
    active = counts[:, first + 2 * radius + 1] - counts[:, first]
    return (active > 0).to(mixture.dtype).unsqueeze(1)


# ------------------------------------------------------------------------- the network
class WaveUNet(nn.Module):
    """Query-conditioned Wave-U-Net separating one source per query.

    ``forward(mixture (W, 1, T_in), queries) -> (W, K, T_out)``: W mixture windows, each
    separated for each of the K queries in ``queries`` (a :class:`QueryBatch`).
    """

    #: The engine may carry a :class:`StreamState` from one window to the next.
    streams = True

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
        self.query_encoder = QueryEncoder(
            c.query_dim, c.appearance_dim, c.ensemble_context, c.voices
        )
        self.motion_encoder = (
            MotionEncoder(c.motion_channels, c.motion_encoder_channels, c.motion_encoder_layers)
            if c.motion_encoder_channels
            else None
        )
        self.activity_head = (
            nn.Conv1d(c.motion_encoder_channels, 1, kernel_size=1)
            if c.motion_activity_head
            else None
        )
        film_motion = c.motion_encoder_channels or c.motion_channels  # what FiLM reads
        self.motion_to_query = (
            nn.Conv1d(film_motion, c.query_dim, 1)
            if film_motion and c.conditioning == "concat"
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
                name: FiLM(channels, c.query_dim, film_motion, c.motion_bypass)
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
        reach = c.up_kernel // 2
        for level in reversed(range(c.levels)):
            # the convolution over the upsampled features (2n - 1 positions) in pairs of
            # outputs (WaveUNet._up_conv): 2 (n - reach - 1), its last (even) output dropped
            half = span.step // 2
            span = Span(span.start + reach * half, half, 2 * (span.count - reach - 1))
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

    def motion_frames_for(self, input_length: int) -> int:
        """Motion frames a window of ``input_length`` samples needs (see
        :func:`motion_window_frames`)."""
        return motion_window_frames(self.config, input_length)

    def working_set_bytes_per_output_sample(self, bytes_per_value: int = 4) -> int:
        """Bytes one query's busiest level touches per output sample when streaming.

        At each level, at the level's time resolution: the encoder convolution's output, the
        skip the decoder reads (a copy), the decoder's output, and its input from the level
        below at half the resolution; the largest over the levels (the first, at full rate).
        The engine's tile planner fits this into the cache.
        """
        c = self.config
        values = 0.0
        for level in range(c.levels):
            decoder_in = c.features(level + 1) / 2
            values = max(values, (3 * c.features(level) + decoder_in) / 2**level)
        return int(values * bytes_per_value) + 1

    # ----------------------------------------------------------------------- forward
    def forward(
        self, mixture: Tensor, queries: QueryBatch, stream: StreamState | None = None
    ) -> Tensor:
        """Separate ``mixture`` ``(W, 1, T_in)`` for K queries -> estimates ``(W, K, T_out)``.

        The queries are either shared by all windows (``labels (K,)``) or given per window
        (``labels (W, K)``, ``appearance (W, K, A)``), as training uses.

        With ``stream`` (see :class:`StreamState`), the W windows are W streams: the first
        call computes the whole windows and keeps each layer's tail; every later call gets the
        windows moved on by ``stream.step`` samples and computes only the new positions of
        every layer, returning ``(W, K, stream.step)``: the outputs that follow the previous
        call's.
        """
        c = self.config
        windows, _, input_length = mixture.shape
        spans = self.trace(input_length)
        if spans is None:
            raise ValueError(
                f"input of {input_length} samples is shorter than the network's minimum "
                f"({self.input_length_for(1)})"
            )
        continuing = stream is not None and stream.started
        if stream is not None and stream.step % self.total_decimation:
            raise ValueError(
                f"a stream's step must be a multiple of {self.total_decimation}, got {stream.step}"
            )

        def new_positions(span: Span) -> Span:
            """The positions this call computes of a layer whose window positions are ``span``."""
            if not continuing:
                return span
            assert stream is not None
            count = stream.step // span.step
            return Span(span.start + span.step * (span.count - count), span.step, count)

        k = queries.size
        query = self.query_encoder.per_window(queries, windows)  # (W*K, D), window-major
        motion = None
        if self.motion_encoder is not None and not self._bypasses_all(queries):
            motion = self._encoded_motion(queries, windows, input_length, mixture)
        elif queries.motion is not None and c.motion_channels:
            motion = queries.motion.reshape(windows * k, c.motion_channels, input_length)
        motion = None if motion is None else motion.to(mixture.dtype)
        present = None  # (W*K, 1, 1): which queries' motion FiLM reads, with motion_bypass
        if c.motion_bypass and motion is not None and queries.motion_present is not None:
            present = queries.motion_present.to(torch.bool).expand(windows, k).reshape(-1, 1, 1)

        def expand(tensor: Tensor) -> Tensor:  # (W, C, T) -> (W*K, C, T)
            return repeat_per_query(tensor, k)

        def film(name: str, features: Tensor, span: Span) -> Tensor:  # at positions ``span``
            return self._film(name, features, query, motion, new_positions(span), present)

        encoder_conditioned = c.conditioning == "film-all"
        features = mixture
        if continuing:
            assert stream is not None and input_length > stream.step
            features = mixture[..., input_length - stream.step :]
        skips: list[Tensor] = []
        for level, conv in enumerate(self.down_convs):
            name = f"down{level}"
            conv = cast(nn.Conv1d, conv)  # a ModuleList yields nn.Module; these are Conv1d
            weight = self._weight(name, stream, conv.weight)
            convolved = self._conv(name, weight, conv.bias, stream, features)
            features = F.leaky_relu(convolved, 0.2, inplace=True)
            if encoder_conditioned:
                if level == 0:  # the first convolution sees only the mixture: shared by K
                    features = expand(features)
                features = film(name, features, spans[name])
            skips.append(features)
            features = self._decimate(name, features, stream)
        if not encoder_conditioned:
            features = expand(features)
            skips = [expand(skip) for skip in skips]
        if c.conditioning == "concat":
            last_down = spans[f"down{c.levels - 1}"]
            bottleneck_in = Span(last_down.start, last_down.step * 2, (last_down.count + 1) // 2)
            extra = query.unsqueeze(-1).expand(-1, -1, features.shape[-1])
            if self.motion_to_query is not None and motion is not None:
                positions = new_positions(bottleneck_in)
                moved = self.motion_to_query(take_positions(motion, positions))
                if present is not None:
                    moved = torch.where(present, moved, moved.new_zeros(()))
                extra = extra + moved
            features = torch.cat((features, extra.to(features.dtype)), dim=1)
        bottleneck = self.bottleneck
        weight = self._weight("bottleneck", stream, bottleneck.weight)
        features = self._conv("bottleneck", weight, bottleneck.bias, stream, features)
        features = F.leaky_relu(features, 0.2, inplace=True)
        span = spans["bottleneck"]
        features = film("bottleneck", features, span)
        for index, conv in enumerate(self.up_convs):
            level = c.levels - 1 - index
            reads = Span(span.start, span.step // 2, 2 * span.count - 2)  # of the skip
            conv = cast(nn.Conv1d, conv)  # a ModuleList yields nn.Module; these are Conv1d
            skip = self._skip(
                f"skip{level}", skips[level], spans[f"down{level}"], reads, stream, c.up_kernel - 1
            )
            features = self._up_conv(level, conv, features, skip, stream)
            features = F.leaky_relu(features, 0.2, inplace=True)
            span = spans[f"up{level}"]
            if c.conditioning == "film-all":
                features = film(f"up{level}", features, span)
        output_span = new_positions(spans["output"])
        features = film("output", features, spans["output"])
        mixture_out = mixture[..., output_span.start : output_span.start + output_span.count]
        estimates = self._output_conv(features, mixture_out, k)
        if c.output_activation == "tanh":
            estimates = torch.tanh(estimates)
        estimates = estimates.reshape(windows, k, output_span.count)
        if c.mixture_consistency:
            residual = mixture_out - estimates.sum(dim=1, keepdim=True)
            estimates = estimates + residual / k
        if c.silence_gate:
            radius = spans["output"].start
            estimates = estimates * activity_gate(mixture, output_span, radius)
        if stream is not None:
            stream.started = True
        return estimates

    def _output_conv(self, features: Tensor, mixture: Tensor, queries: int) -> Tensor:
        """The 1x1 output convolution of ``[features, mixture]`` (channels): ``features
        (W*K, C, T)`` and each window's ``mixture (W, 1, T)`` -> ``(W*K, 1, T)``, without
        joining them: a product over the channels of each time step (contiguous, time-major)
        plus the mixture's weight times the mixture, shared by the window's K queries."""
        weight = self.output_conv.weight[0, :, 0]  # (C + 1,)
        bias = self.output_conv.bias
        assert bias is not None  # nn.Conv1d's default bias=True
        windows, _, length = mixture.shape
        per_step = torch.matmul(features.transpose(1, 2), weight[:-1])  # (W*K, T)
        mixed = per_step.view(windows, queries, length) + (weight[-1] * mixture + bias)
        return mixed.view(windows * queries, 1, length)

    def _bypasses_all(self, queries: QueryBatch) -> bool:
        """With :attr:`ModelConfig.motion_bypass`, whether no query has motion: the encoder
        then need not run, and FiLM adds no motion term (``motion=None``)."""
        if not self.config.motion_bypass:
            return False
        if queries.motion_frames is None:
            return True
        return queries.motion_present is not None and not bool(queries.motion_present.any())

    def _encoded_motion(
        self, queries: QueryBatch, windows: int, input_length: int, mixture: Tensor
    ) -> Tensor:
        """The motion encoder's output at every input sample: ``(W*K, E, T_in)``.

        ``queries.motion_frames`` ``(W, K, M, F)`` is encoded, then interpolated linearly to
        the samples (sample ``i`` of a window is ``offset + i * motion_rate / sample_rate``
        frames past the window's first output frame). Queries without motion (``None``) are
        zero frames, as training gives label-only queries (with ``motion_bypass``, FiLM then
        ignores what the encoder makes of them: ``queries.motion_present``).
        """
        c = self.config
        encoded, offset = self._encoder_frames(queries, windows, input_length, mixture)
        step = c.motion_rate / c.sample_rate
        sample = torch.arange(input_length, device=mixture.device, dtype=torch.float64)
        positions = offset.to(torch.float64).reshape(-1, 1) + sample * step  # (W*K, T_in)
        index = positions.floor().long().clamp(max=encoded.shape[-1] - 2)  # (W*K, T_in)
        weight = (positions - index).to(encoded.dtype).unsqueeze(1)
        gather = index.unsqueeze(1).expand(-1, encoded.shape[1], -1)
        before = encoded.gather(2, gather)
        after = encoded.gather(2, gather + 1)
        return torch.lerp(before, after, weight)

    def _encoder_frames(
        self, queries: QueryBatch, windows: int, input_length: int, mixture: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The motion encoder's output frames ``(W*K, E, F')`` and each window's first sample
        in frames past its first output frame ``(W, K)`` float64 (zero frames and offsets for
        queries given no motion at all)."""
        assert self.motion_encoder is not None
        c = self.config
        k = queries.size
        frames = queries.motion_frames
        offset = queries.motion_offset
        if frames is None or offset is None:
            count = self.motion_frames_for(input_length)
            frames = mixture.new_zeros((windows, k, c.motion_channels, count))
            offset = mixture.new_zeros((windows, k), dtype=torch.float64)
        frames = frames.reshape(windows * k, c.motion_channels, -1).to(mixture.dtype)
        return self.motion_encoder(frames), offset

    def motion_activity(self, mixture: Tensor, queries: QueryBatch) -> tuple[Tensor, Tensor]:
        """How loud each query's player is, from its motion alone (the activity head).

        Returns the head's output ``(W*K, F')`` at the motion encoder's output frames (the
        player's level against the mixture in bels, once trained), and where each frame lies
        in the window: ``(W*K, F')`` float64 input-sample positions (frame ``f`` of a window
        whose first sample is ``offset`` frames past its first output frame lies at
        ``(f - offset) * sample_rate / motion_rate``).
        """
        if self.activity_head is None:
            raise ValueError("this model has no activity head (model.motion_activity_head)")
        windows, _, input_length = mixture.shape
        encoded, offset = self._encoder_frames(queries, windows, input_length, mixture)
        levels = self.activity_head(encoded).squeeze(1)  # (W*K, F')
        frame = torch.arange(levels.shape[-1], device=mixture.device, dtype=torch.float64)
        samples = self.config.sample_rate / self.config.motion_rate
        positions = (frame - offset.to(torch.float64).reshape(-1, 1)) * samples
        return levels, positions

    # ------------------------------------------------- layers that keep a stream's tail
    def _film(
        self,
        name: str,
        features: Tensor,
        query: Tensor,
        motion: Tensor | None,
        span: Span,
        present: Tensor | None = None,
    ) -> Tensor:
        if name not in self.films:
            return features
        layer_motion = None if motion is None else take_positions(motion, span)
        return self.films[name](features, query, layer_motion, present)

    @staticmethod
    def _weight(
        name: str,
        stream: StreamState | None,
        weight: Tensor,
        make: Callable[[Tensor], Tensor] = conv_weight,
    ) -> Tensor:
        """``make(weight)``: a convolution's weight laid out for :func:`time_major_conv`. A
        stream makes it once."""
        if stream is None:
            return make(weight)
        if name not in stream.weights:
            stream.weights[name] = make(weight)
        return stream.weights[name]

    @staticmethod
    def _conv(
        name: str, weight: Tensor, bias: Tensor | None, stream: StreamState | None, new: Tensor
    ) -> Tensor:
        """A valid convolution (``weight`` from :func:`conv_weight`); on a stream, of the
        ``kernel - 1`` inputs kept from the last window followed by the new ones."""
        history = weight.shape[-1] - 1
        if stream is None or not history:
            return time_major_conv(weight, bias, new)
        inputs = join_time(stream.tails[name], new) if stream.started else new
        stream.tails[name] = inputs[..., inputs.shape[-1] - history :]
        return time_major_conv(weight, bias, inputs)

    @staticmethod
    def _up_conv(
        level: int, conv: nn.Conv1d, low: Tensor, skip: Tensor, stream: StreamState | None
    ) -> Tensor:
        """A decoder block's convolution of ``[upsample(low), skip]`` (channels), the linear
        upsampling of ``low (N, C_low, n)`` and the encoder's ``skip (N, C_skip, 2n - 2)``:
        ``(N, C_out, 2 (n - r - 1))``, ``r = kernel // 2``. On a stream, ``skip`` holds the
        ``kernel - 1`` positions before the new ones too (:meth:`_skip`).

        The upsampled features are never formed. Their convolution is one over ``low`` at its
        own rate (:func:`polyphase_weights`) giving each even and odd output side by side,
        which the time-major layout interleaves for free (:func:`interleave_pairs`); the
        skip's convolution, at the full rate, is added to it. No upsampled copy or joined
        input is written, and the upsampled half costs ``r + 2`` multiply-adds per output and
        channel pair instead of ``kernel``: a fifth fewer for kernel 5 (every bundled model),
        2/7 fewer for 7, the same for 3, twice as many for 1. On a stream the low convolution
        keeps its ``r + 1`` last low samples.
        """
        low_channels = low.shape[1]
        name = f"up{level}"
        up_weight = WaveUNet._weight(
            f"{name}.low", stream, conv.weight[:, :low_channels], polyphase_conv_weight
        )
        skip_weight = WaveUNet._weight(f"{name}.skip", stream, conv.weight[:, low_channels:])
        upsampled = interleave_pairs(WaveUNet._conv(f"{name}.low", up_weight, None, stream, low))
        return upsampled.add_(time_major_conv(skip_weight, conv.bias, skip))

    @staticmethod
    def _decimate(name: str, new: Tensor, stream: StreamState | None) -> Tensor:
        """Keep every second position, counting positions from the stream's first window."""
        if stream is None:
            return new[..., ::2]
        parity = stream.parities.get(name, 0)
        stream.parities[name] = (parity + new.shape[-1]) % 2
        return new[..., parity::2]

    @staticmethod
    def _skip(
        name: str,
        new: Tensor,
        span: Span,
        target: Span,
        stream: StreamState | None,
        history: int = 0,
    ) -> Tensor:
        """The encoder's features (positions ``span``) at the decoder's (``target``).

        On a stream the decoder lags the encoder: the encoder's newest positions are kept
        until the decoder reaches them. After the first window the result is the decoder's
        new positions preceded by the ``history`` before them (what its convolution reads
        again), in one new buffer.
        """
        if stream is None:
            return crop_to(new, span, target)
        ahead = (span.start + span.step * (span.count - 1) - target.start) // span.step
        ahead -= target.count - 1  # encoder positions after the decoder window's last one
        keep, count = ahead + history, new.shape[-1]
        if not stream.started:
            result = crop_to(new, span, target)
        else:  # the kept positions, then the new: the result is their first count + history
            tail = stream.tails[name]
            if count >= ahead:
                result = join_time(tail, new[..., : count - ahead])
            else:
                result = tail[..., : count + history]
            if count < keep:
                new = join_time(tail[..., count:], new)
        stream.tails[name] = new[..., new.shape[-1] - keep :]
        return result
