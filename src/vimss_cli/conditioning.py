"""Queries: what the network is told about the player whose stem it should separate.

A :class:`Query` describes one player: the instrument label (one of the 13 URMP classes, or
unknown), an optional appearance vector (from the video front end) and an optional motion
sequence over time (activity of the player's crop, sampled at ``motion_rate`` Hz).

The static part (label, appearance) is embedded once per query. The motion part varies with
time: the engine resamples it to one value per audio sample of each window, as a function of
the *absolute* sample index, so a window sees exactly what one pass over the whole track sees.
Inside the network (``model.py``), ``QueryEncoder`` embeds the static part and ``FiLM`` turns
both into a per-channel scale and shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vimss_cli.instruments import NUM_INSTRUMENTS, instrument_index

#: Label index used when the instrument is not known.
UNKNOWN_LABEL = NUM_INSTRUMENTS

#: The most voices of one instrument a model may tell apart (``ModelConfig.voices``).
MAX_VOICES = 4


@dataclass
class Query:
    """One player to separate.

    Attributes:
        instrument: URMP code (``"vn"``...) or ``None`` when unknown.
        appearance: ``(appearance_dim,)`` float vector, or ``None``.
        motion: ``(motion_channels, frames)`` float array on the audio clock, or ``None``.
        motion_rate: frames per second of ``motion`` (required when ``motion`` is given).
        voice: for a model with ``voices``: 1 the highest-sounding player of this
            instrument, 2 the next, ...; 0 all of them (a plain label query). A label-only
            model takes voices 1 and 2 of one instrument as a pair whose one stem is split
            by pitch (:mod:`vimss_cli.pitch_voices`).
    """

    instrument: str | None
    appearance: np.ndarray | None = None
    motion: np.ndarray | None = None
    motion_rate: float | None = None
    voice: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.instrument, str):  # as --instruments reads them: "VN " is vn
            self.instrument = self.instrument.strip().lower()

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
        motion_frames: for a model with a motion encoder, the motion on its own frame clock
            instead: ``(W, K, motion_channels, F)`` from :func:`motion_frames_window`, with
            ``motion_offset`` ``(W, K)`` float64, each window's first sample in frames past
            its first output frame (in ``[0, 1)``; per query, as training mixes excerpts of
            different pieces).
        motion_present: ``(K,)`` or ``(W, K)`` bool: which queries have motion (the others
            have zero frames). Read by a model with ``motion_bypass``; ``None``: all of them.
        ensemble: for a model with ``ensemble_context``, how many players of each instrument
            play in the mixture, all of them and not only these queries: ``(I,)`` float32
            counts (``I = NUM_INSTRUMENTS``) or ``(W, I)`` per window. ``None``: the counts of
            the queries' own labels (right when the queries name every player).
        voices: for a model with ``voices``, ``(K,)`` or ``(W, K)`` int64: which voice of its
            instrument each query wants (:attr:`Query.voice`); ``None``: voice 0 for all.
    """

    labels: Tensor
    appearance: Tensor | None = None
    motion: Tensor | None = None
    motion_frames: Tensor | None = None
    motion_offset: Tensor | None = None
    motion_present: Tensor | None = None
    ensemble: Tensor | None = None
    voices: Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.labels.shape[-1])


def _motion_of(query: Query, channels: int) -> tuple[np.ndarray, float] | None:
    """The query's motion ``(channels, frames)`` as float64 and its rate, checked; ``None``
    for a query without motion."""
    if query.motion is None:
        return None
    if query.motion_rate is None or query.motion_rate <= 0:
        raise ValueError("a query with motion needs a positive motion_rate")
    values = np.asarray(query.motion, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != channels:
        raise ValueError(f"motion must have shape ({channels}, frames), got {values.shape}")
    return values, float(query.motion_rate)


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
    motion = _motion_of(query, channels)
    if motion is None:
        return result
    frames, motion_rate = motion
    sample_index = np.arange(first_sample, first_sample + length, dtype=np.float64)
    position = sample_index * (motion_rate / sample_rate)
    inside = (position >= 0) & (position <= frames.shape[1] - 1)
    frame_positions = np.arange(frames.shape[1], dtype=np.float64)
    for channel in range(channels):
        result[channel, inside] = np.interp(position[inside], frame_positions, frames[channel])
    return result


def motion_frames_window(
    query: Query,
    first_sample: int,
    frames: int,
    sample_rate: int,
    rate: float,
    context: int,
    channels: int,
) -> tuple[np.ndarray, float]:
    """The query's motion on a motion encoder's frame clock, for a window from ``first_sample``.

    Frame ``f`` of the clock is the query's motion at ``f / rate`` seconds (linear
    interpolation; before the first frame and after the last, the nearest frame's value). The
    window holds frames ``first - context .. first - context + frames - 1``, ``first`` the
    frame at or before ``first_sample``: a function of absolute frame numbers only, so every
    window sees the same values at the same frames, and the encoder's valid convolutions give
    the same outputs wherever a window starts. A query without motion gives zeros.

    Returns:
        ``(channels, frames)`` float32 and the window's first sample in frames past ``first``.
    """
    position = first_sample * rate / sample_rate
    first = int(np.floor(position))
    result = np.zeros((channels, frames), dtype=np.float32)
    motion = _motion_of(query, channels)
    if motion is None:
        return result, position - first
    values, motion_rate = motion
    times = (first - context + np.arange(frames)) / rate
    source = times * motion_rate
    frame_positions = np.arange(values.shape[1], dtype=np.float64)
    for channel in range(channels):
        result[channel] = np.interp(source, frame_positions, values[channel])
    return result, position - first


def ensemble_counts(labels: Tensor) -> Tensor:
    """``labels (..., K)`` -> ``(..., NUM_INSTRUMENTS)`` float32: players per instrument among
    them (unknown instruments are not counted)."""
    known = labels.clamp(max=NUM_INSTRUMENTS - 1)
    weights = (labels < NUM_INSTRUMENTS).to(torch.float32)
    counts = torch.zeros((*labels.shape[:-1], NUM_INSTRUMENTS), device=labels.device)
    return counts.scatter_add_(-1, known, weights)


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
    voices = None
    if any(q.voice for q in queries):
        if any(q.voice < 0 or q.voice > MAX_VOICES for q in queries):
            raise ValueError(f"a query's voice must be 0 to {MAX_VOICES}")
        voices = torch.tensor([q.voice for q in queries], dtype=torch.long, device=device)
    return QueryBatch(labels=labels, appearance=appearance, voices=voices)
