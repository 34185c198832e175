"""Queries: what the network is told about the player whose stem it should separate.

A :class:`Query` describes one player: the instrument label (one of the 13 URMP classes, or
unknown), an optional appearance vector (from the video front end) and an optional motion
sequence over time (activity of the player's crop, sampled at ``motion_rate`` Hz).

The static part (label, appearance) is embedded once per query. The motion part varies with
time: the engine resamples it to one value per audio sample of each window, as a function of
the *absolute* sample index, so a window sees exactly what one pass over the whole track sees.
Inside the network, :class:`FiLM` turns both into a per-channel scale and shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from vimss_cli.instruments import NUM_INSTRUMENTS, instrument_index

#: Label index used when the instrument is not known.
UNKNOWN_LABEL = NUM_INSTRUMENTS


@dataclass
class Query:
    """One player to separate.

    Attributes:
        instrument: URMP code (``"vn"``...) or ``None`` when unknown.
        appearance: ``(appearance_dim,)`` float vector, or ``None``.
        motion: ``(motion_channels, frames)`` float array on the audio clock, or ``None``.
        motion_rate: frames per second of ``motion`` (required when ``motion`` is given).
    """

    instrument: str | None
    appearance: np.ndarray | None = None
    motion: np.ndarray | None = None
    motion_rate: float | None = None

    def label_index(self) -> int:
        """Index into the label embedding (``UNKNOWN_LABEL`` when the instrument is unknown)."""
        return UNKNOWN_LABEL if self.instrument is None else instrument_index(self.instrument)


@dataclass
class QueryBatch:
    """K queries as tensors, ready for the network.

    Attributes:
        labels: ``(K,)`` int64 label indices shared by all windows, or ``(W, K)`` per window.
        appearance: ``(K, appearance_dim)`` (or ``(W, K, appearance_dim)``) or ``None``.
        motion: ``(W, K, motion_channels, T_in)`` per-sample motion for each of W windows,
            aligned with the mixture window, or ``None``.
    """

    labels: Tensor
    appearance: Tensor | None = None
    motion: Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.labels.shape[-1])


def motion_at_samples(
    query: Query, first_sample: int, length: int, sample_rate: int, channels: int
) -> np.ndarray:
    """The query's motion resampled to audio samples ``first_sample .. first_sample+length-1``.

    Linear interpolation between motion frames, evaluated at each absolute sample time, so the
    value at a given sample never depends on the window it is computed for. Zero before the
    first frame's time span and after the last (the same zero padding the audio gets).

    Returns:
        ``(channels, length)`` float32 array.
    """
    result = np.zeros((channels, length), dtype=np.float32)
    if query.motion is None:
        return result
    if query.motion_rate is None or query.motion_rate <= 0:
        raise ValueError("a query with motion needs a positive motion_rate")
    frames = np.asarray(query.motion, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] != channels:
        raise ValueError(f"motion must have shape ({channels}, frames), got {frames.shape}")
    sample_index = np.arange(first_sample, first_sample + length, dtype=np.float64)
    position = sample_index * (query.motion_rate / sample_rate)
    inside = (position >= 0) & (position <= frames.shape[1] - 1)
    frame_positions = np.arange(frames.shape[1], dtype=np.float64)
    for channel in range(channels):
        result[channel, inside] = np.interp(position[inside], frame_positions, frames[channel])
    return result


class QueryEncoder(nn.Module):
    """Embed the static part of K queries: label embedding plus projected appearance.

    ``forward(labels (K,), appearance (K, A) | None) -> (K, query_dim)``.
    """

    def __init__(self, query_dim: int, appearance_dim: int) -> None:
        super().__init__()
        self.label_embedding = nn.Embedding(NUM_INSTRUMENTS + 1, query_dim)
        self.appearance_projection = (
            nn.Linear(appearance_dim, query_dim) if appearance_dim > 0 else None
        )

    def forward(self, labels: Tensor, appearance: Tensor | None = None) -> Tensor:
        embedding = self.label_embedding(labels)
        if self.appearance_projection is not None and appearance is not None:
            embedding = embedding + self.appearance_projection(appearance)
        return embedding


class FiLM(nn.Module):
    """Feature-wise linear modulation by a query: ``h * (1 + gamma) + beta``.

    ``gamma`` and ``beta`` are ``(N, C, 1)`` from the static query embedding plus, when the
    model has motion channels, ``(N, C, T)`` from the motion at this layer's time positions.
    """

    def __init__(self, channels: int, query_dim: int, motion_channels: int) -> None:
        super().__init__()
        self.static = nn.Linear(query_dim, 2 * channels)
        self.dynamic = (
            nn.Conv1d(motion_channels, 2 * channels, kernel_size=1) if motion_channels else None
        )
        nn.init.normal_(self.static.weight, std=0.02)
        nn.init.zeros_(self.static.bias)

    def forward(self, features: Tensor, query: Tensor, motion: Tensor | None) -> Tensor:
        """features ``(N, C, T)``, query ``(N, D)``, motion ``(N, M, T)`` or None.

        ``motion=None`` on a model with motion channels means no motion: the motion
        convolution of zeros, which is its bias, without computing it.
        """
        params = self.static(query).unsqueeze(-1)
        if self.dynamic is not None:
            if motion is None:
                params = params + self.dynamic.bias.view(1, -1, 1)
            else:
                params = params + self.dynamic(motion)
        gamma, beta = params.chunk(2, dim=1)
        return torch.addcmul(beta, features, 1 + gamma)


def query_batch_from_queries(
    queries: list[Query], appearance_dim: int, device: torch.device | str = "cpu"
) -> QueryBatch:
    """Static tensors of a list of queries (motion is added per window by the engine)."""
    labels = torch.tensor([q.label_index() for q in queries], dtype=torch.long, device=device)
    appearance = None
    if appearance_dim > 0:
        rows = [
            np.zeros(appearance_dim, np.float32) if q.appearance is None else q.appearance
            for q in queries
        ]
        appearance = torch.as_tensor(np.stack(rows).astype(np.float32), device=device)
    return QueryBatch(labels=labels, appearance=appearance)
