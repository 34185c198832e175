"""Exact chunked inference over audio of any length, in bounded memory.

The output is cut into tiles of ``step`` samples (a multiple of the network's total
decimation). Tile ``j`` covers output samples ``[j*step, (j+1)*step)``; its window reads input
samples ``[j*step - context, j*step - context + input_length)``: the true neighbouring audio,
with zeros only before the start and after the end of the signal. Every window start is then
congruent to ``-context`` modulo ``2 ** levels``, the same grid one pass over the whole
(zero-padded) signal uses, so the stitched tiles equal that single pass.

Audio arrives as an iterable of blocks and leaves through a callback, so memory holds one
batch of windows, never the track.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from vimss_cli.conditioning import Query, QueryBatch, motion_at_samples, query_batch_from_queries
from vimss_cli.model import WaveUNet

#: Default output samples per window (rounded up to the total decimation).
DEFAULT_TILE = 65536

#: ``callback(done_samples)`` reports progress in input samples consumed and written.
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class WindowPlan:
    """How a signal is cut into windows.

    Attributes:
        step: output samples kept from each window (a multiple of ``2 ** levels``).
        input_length: input samples per window.
        context: input samples before a window's first output sample.
    """

    step: int
    input_length: int
    context: int

    def window_start(self, index: int) -> int:
        """Absolute input position of window ``index``'s first sample (may be negative)."""
        return index * self.step - self.context


def plan_windows(model: WaveUNet, tile: int = DEFAULT_TILE) -> WindowPlan:
    """Plan windows of about ``tile`` output samples for ``model``."""
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    decimation = model.total_decimation
    step = -(-tile // decimation) * decimation
    return WindowPlan(step=step, input_length=model.input_length_for(step), context=model.context)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


class _WindowRunner:
    """Runs batches of windows through the model for a fixed set of queries."""

    def __init__(
        self, model: WaveUNet, queries: list[Query], plan: WindowPlan, precision: str
    ) -> None:
        self.model = model
        self.queries = queries
        self.plan = plan
        self.precision = precision
        self.device = next(model.parameters()).device
        config = model.config
        self.static = query_batch_from_queries(queries, config.appearance_dim, self.device)
        self.motion_channels = config.motion_channels
        self.sample_rate = config.sample_rate

    def run(self, windows: np.ndarray, starts: list[int]) -> np.ndarray:
        """``windows (W, T_in)`` starting at absolute ``starts`` -> ``(W, K, step)`` float32."""
        motion = None
        if self.motion_channels:
            per_window = [
                np.stack(
                    [
                        motion_at_samples(
                            q, start, self.plan.input_length, self.sample_rate, self.motion_channels
                        )
                        for q in self.queries
                    ]
                )
                for start in starts
            ]
            motion = torch.as_tensor(np.stack(per_window), device=self.device)
        batch = QueryBatch(self.static.labels, self.static.appearance, motion)
        mixture = torch.as_tensor(windows, device=self.device).unsqueeze(1)
        with torch.inference_mode(), _autocast(self.device, self.precision):
            estimates = self.model(mixture, batch)
        return estimates[..., : self.plan.step].float().cpu().numpy()


def _stitch(batch_output: np.ndarray) -> np.ndarray:
    """``(W, K, step) -> (K, W * step)``: tiles side by side per query."""
    windows, queries, step = batch_output.shape
    return batch_output.transpose(1, 0, 2).reshape(queries, windows * step)


def separate_blocks(
    model: WaveUNet,
    blocks: Iterable[np.ndarray],
    queries: list[Query],
    on_output: Callable[[np.ndarray], None],
    *,
    tile: int = DEFAULT_TILE,
    batch_size: int = 2,
    precision: str = "fp32",
    progress: ProgressCallback | None = None,
) -> int:
    """Separate a stream of mono blocks for K queries, emitting ``(K, n)`` output blocks.

    Args:
        model: the network, already on its device and in eval mode.
        blocks: 1-D float32 arrays; their concatenation is the mixture.
        queries: the K players to separate.
        on_output: receives consecutive ``(K, n)`` float32 blocks whose concatenation is the
            K stems, exactly as long as the input.
        tile: output samples per window (rounded up to the total decimation).
        batch_size: windows per forward pass (each with all K queries).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast).
        progress: called with the number of samples done after each batch.

    Returns:
        The number of samples in the input (and in each stem).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    plan = plan_windows(model, tile)
    runner = _WindowRunner(model, queries, plan, precision)
    # buffer holds input samples from absolute position buffer_start on
    buffer = np.zeros(plan.context, dtype=np.float32)
    buffer_start = -plan.context
    total = 0
    next_window = 0

    def take_windows(count: int) -> tuple[np.ndarray, list[int]]:
        starts = [plan.window_start(next_window + i) for i in range(count)]
        needed = starts[-1] + plan.input_length - buffer_start
        padded = buffer
        if needed > buffer.size:
            padded = np.concatenate([buffer, np.zeros(needed - buffer.size, np.float32)])
        offsets = [s - buffer_start for s in starts]
        windows = np.stack([padded[o : o + plan.input_length] for o in offsets])
        return windows, starts

    def emit(count: int, signal_end: int | None) -> None:
        nonlocal buffer, buffer_start, next_window
        windows, starts = take_windows(count)
        output = _stitch(runner.run(windows, starts))
        first_output = next_window * plan.step
        if signal_end is not None:
            output = output[:, : max(0, signal_end - first_output)]
        on_output(output)
        next_window += count
        drop = plan.window_start(next_window) - buffer_start
        buffer = buffer[drop:]
        buffer_start += drop
        if progress is not None:
            done = next_window * plan.step
            progress(done if signal_end is None else min(done, signal_end))

    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        buffer = np.concatenate([buffer, block])
        total += block.size
        while True:
            last_window_end = plan.window_start(next_window + batch_size - 1) + plan.input_length
            if buffer_start + buffer.size < last_window_end:
                break
            emit(batch_size, None)
    remaining = -(-total // plan.step) - next_window
    while remaining > 0:
        count = min(batch_size, remaining)
        emit(count, total)
        remaining -= count
    return total


def separate_array(
    model: WaveUNet,
    audio: np.ndarray,
    queries: list[Query],
    *,
    tile: int | None = DEFAULT_TILE,
    batch_size: int = 2,
    precision: str = "fp32",
) -> np.ndarray:
    """Separate a whole mono signal ``(N,)`` held in memory -> stems ``(K, N)``.

    ``tile=None`` runs one window over the whole signal (the reference the chunked result
    must equal).
    """
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if tile is None:
        tile = max(1, audio.size)
    pieces: list[np.ndarray] = []
    separate_blocks(
        model,
        iter_blocks(audio),
        queries,
        pieces.append,
        tile=tile,
        batch_size=batch_size,
        precision=precision,
    )
    if not pieces:
        return np.zeros((len(queries), 0), dtype=np.float32)
    return np.concatenate(pieces, axis=1)


def iter_blocks(audio: np.ndarray, block: int = 65536) -> Iterator[np.ndarray]:
    """Cut a 1-D array into consecutive blocks."""
    for start in range(0, audio.size, block):
        yield audio[start : start + block]
