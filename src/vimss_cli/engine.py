"""Exact chunked inference over audio of any length, in bounded memory.

The output is cut into tiles of ``step`` samples (a multiple of the network's total
decimation). Tile ``j`` covers output samples ``[j*step, (j+1)*step)``; its window reads input
samples ``[j*step - context, j*step - context + input_length)``: the true neighbouring audio,
with zeros only before the start and after the end of the signal. Every window start is then
congruent to ``-context`` modulo ``2 ** levels``, the same grid one pass over the whole
(zero-padded) signal uses, so the stitched tiles equal that single pass.

Audio arrives as an iterable of blocks and leaves through a callback, so memory holds a few
batches of windows (the network may be :data:`WINDOWS_AHEAD` batches ahead of the callback),
never the track.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vimss_cli.conditioning import (
    Query,
    QueryBatch,
    ensemble_counts,
    motion_at_samples,
    motion_frames_window,
    query_batch_from_queries,
)
from vimss_cli.devices import inference_precision
from vimss_cli.errors import InputError, NonFiniteOutputError
from vimss_cli.model import StreamState
from vimss_cli.networks import Network

#: Output samples per window when nothing else is said (rounded up to the total decimation).
DEFAULT_TILE = 65536
#: Output samples per window on CUDA, where each layer's launch costs more than its data.
CUDA_TILE = 2**18
#: The planner's bounds on the CPU: below, per-layer call overhead dominates; above, nothing
#: more was gained (2 players: 40.6x realtime at 65536, 39.2x at 131072) and memory grows.
MIN_CPU_TILE, MAX_CPU_TILE = 4096, 2**16
#: A network that does not stream recomputes its context in every window: its tile is at least
#: this many times the context on both sides, so that recomputation stays a small share.
RECOMPUTE_TILE_FACTOR = 4
#: ...and at most this (output samples per window), which bounds its memory.
MAX_RECOMPUTE_TILE = 2**19
#: Batches of windows the network may be ahead of the caller: while ``on_output`` works on
#: one batch's stems (the soft masks, the writing), the network computes the next ones. On
#: the 2-core machine that work left a core idle for about a fifth of a quartet's run. Only
#: with query groups (each a thread of its own): when one group's operations are shared
#: among torch's threads, a core taken by ``on_output`` stalls them all at each operation's
#: end (a 3-player run, one group on 2 threads, ran 1.08x slower ahead).
WINDOWS_AHEAD = 2
#: Cache assumed when the machine does not say (bytes).
FALLBACK_CACHE_BYTES = 8 * 2**20

#: ``callback(done_samples)`` reports progress in input samples consumed and written.
WindowProgress = Callable[[int], None]


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


def plan_windows(model: Network, tile: int = DEFAULT_TILE) -> WindowPlan:
    """Plan windows of about ``tile`` output samples for ``model``."""
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    decimation = model.total_decimation
    step = -(-tile // decimation) * decimation
    return WindowPlan(step=step, input_length=model.input_length_for(step), context=model.context)


def last_level_cache_bytes() -> int:
    """The largest CPU cache Linux reports for CPU 0 (bytes), or :data:`FALLBACK_CACHE_BYTES`."""
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = entry.read_text().strip().upper()
        try:
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KMG")) * scale)
        except (ValueError, OSError):
            continue
    return max(sizes, default=FALLBACK_CACHE_BYTES)


def plan_tile(
    model: Network, queries: int, device: torch.device, cache_bytes: int | None = None
) -> int:
    """Output samples per window for streaming ``queries`` players on ``device``.

    On the CPU, the largest power of two whose busiest level for the queries of one thread
    (``model.working_set_bytes_per_output_sample`` times the queries of one query group,
    :func:`query_groups`) is at most
    the last-level cache, within ``[MIN_CPU_TILE, MAX_CPU_TILE]``. The budget is empirical:
    with two groups the threads share the cache, so together they overrun it, and still the
    longer tile is faster. On the 2-core development machine (32 MiB L3, two groups for 2 or 4
    players) that gives 65536 for 2 and 4 players and 32768 for 3 and 5; the fastest measured
    on 1 minute, alternating (v4, 2 threads) were 65536 for 2 to 4 players (4 players: 21.8x
    realtime, against 21.1x at 32768, 20.5x at 131072 and 17.5x at 16384) and 32768 for 5.
    Longer tiles pay the per-layer call overhead less often; much longer ones find each
    layer's output gone cold when the next reads it. On CUDA, :data:`CUDA_TILE`.
    A network that does not stream then doubles its tile until it is
    :data:`RECOMPUTE_TILE_FACTOR` times its two-sided context, at most
    :data:`MAX_RECOMPUTE_TILE`.
    """
    if device.type == "cuda":
        tile = CUDA_TILE
    else:
        budget = last_level_cache_bytes() if cache_bytes is None else cache_bytes
        players = max(1, queries)
        per_thread = -(-players // query_groups(model, players, device))
        per_sample = model.working_set_bytes_per_output_sample() * per_thread
        tile = MIN_CPU_TILE
        while tile * 2 <= MAX_CPU_TILE and tile * 2 * per_sample <= budget:
            tile *= 2
    if not model.streams:
        while tile < RECOMPUTE_TILE_FACTOR * 2 * model.context and tile * 2 <= MAX_RECOMPUTE_TILE:
            tile *= 2
    decimation = model.total_decimation
    return -(-tile // decimation) * decimation


def even_tile(tile: int, length: int, decimation: int) -> int:
    """The tile that cuts ``length`` samples into as many windows as ``tile`` does, of equal
    size (a multiple of ``decimation``, never above ``tile`` rounded up to it).

    The last window of a stream computes a whole tile however little of it the input fills:
    a 60 s input at 22050 Hz in tiles of 65536 samples is 20.2 tiles, so 21 windows compute
    21 tiles of output, 4 % more than needed. Tiles of 63488 fill their 21 windows to within
    0.8 %. Every tile gives the same stems (the stitched windows equal one pass).
    """
    tile = -(-tile // decimation) * decimation
    if length <= 0:
        return tile
    windows = -(-length // tile)
    per_window = -(-length // windows)
    return min(tile, -(-per_window // decimation) * decimation)


class _WindowRunner:
    """Runs windows through the model for a fixed set of queries.

    With ``stream`` the windows are consecutive and each is one call of the model carrying a
    :class:`StreamState`: the first returns all its output positions, every later one only the
    ``plan.step`` that follow. Without, each batch of windows is computed independently and
    each window keeps its first ``plan.step`` outputs.
    """

    def __init__(
        self,
        model: Network,
        queries: list[Query],
        plan: WindowPlan,
        precision: str,
        stream: bool,
        ensemble: torch.Tensor | None = None,
    ) -> None:
        self.model = model
        self.queries = queries
        self.plan = plan
        self.precision = precision
        self.stream = StreamState(plan.step) if stream else None
        self.device = next(model.parameters()).device
        config = model.config
        self.static = query_batch_from_queries(queries, config.appearance_dim, self.device)
        #: who plays, for a model with ``ensemble_context``: the counts of all K queries, not
        #: only this runner's group (``None``: this runner's own queries)
        self.static.ensemble = ensemble
        #: which queries have motion (a model with ``motion_bypass`` reads it)
        self.motion_present = torch.tensor(
            [q.motion is not None for q in queries], dtype=torch.bool, device=self.device
        )
        self.motion_channels = config.motion_channels
        self.sample_rate = config.sample_rate

    def run(self, windows: np.ndarray, starts: list[int]) -> np.ndarray:
        """``windows (W, T_in)`` starting at absolute ``starts`` -> ``(K, n)`` float32.

        The result holds the output positions that follow the previous call's.
        """
        batch = self._queries(starts)
        mixture = torch.as_tensor(windows, device=self.device).unsqueeze(1)
        with torch.inference_mode(), inference_precision(self.device, self.precision):
            estimates = self.model(mixture, batch, self.stream)
        if self.stream is not None:
            return estimates[0].float().cpu().numpy()
        return _stitch(estimates[..., : self.plan.step].float().cpu().numpy())

    def _queries(self, starts: list[int]) -> QueryBatch:
        """The queries of windows starting at ``starts``, with their motion: per sample, or on
        the motion encoder's frame clock for a model that has one. Without any query's
        motion, none (the model takes that as no motion)."""
        batch = QueryBatch(
            self.static.labels,
            self.static.appearance,
            ensemble=self.static.ensemble,
            voices=self.static.voices,
        )
        if not self.motion_channels or all(q.motion is None for q in self.queries):
            return batch
        encoder = self.model.motion_encoder
        if encoder is None:
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
            batch.motion = torch.as_tensor(np.stack(per_window), device=self.device)
            return batch
        config = self.model.config
        count = self.model.motion_frames_for(self.plan.input_length)
        frames, offsets = [], []
        for start in starts:
            rows = [
                motion_frames_window(
                    q, start, count, self.sample_rate, config.motion_rate, encoder.context,
                    self.motion_channels,
                )
                for q in self.queries
            ]  # fmt: skip
            frames.append(np.stack([row for row, _ in rows]))
            offsets.append([offset for _, offset in rows])
        batch.motion_frames = torch.as_tensor(np.stack(frames), device=self.device)
        batch.motion_offset = torch.tensor(offsets, dtype=torch.float64, device=self.device)
        batch.motion_present = self.motion_present
        return batch


class _QueryGroups:
    """The K queries split into groups, each run by a thread of its own when there are several.

    Each group is a :class:`_WindowRunner` of its own (its own stream) over the same windows;
    query ``k`` goes to group ``k % groups``. On two cores two groups keep both busy with large
    single-threaded operations instead of splitting every small operation over two threads,
    whose barriers stall whenever another process takes a core. One group runs in the
    caller's thread, with torch's own threads.

    Windows are handed in with :meth:`submit` and their stems taken with :meth:`collect`, in
    the same order. With several groups each group's thread works through its queue of
    windows on its own, so the caller can hand in the next windows before it collects (and
    works on) the last ones' stems, and a group that finishes a window first goes on to the
    next instead of waiting for the others. One group computes its windows in :meth:`submit`.
    """

    def __init__(
        self, make_runner: Callable[[list[Query]], _WindowRunner], queries: list[Query], groups: int
    ) -> None:
        self.members = [list(range(first, len(queries), groups)) for first in range(groups)]
        self.runners = [make_runner([queries[k] for k in member]) for member in self.members]
        self.queries = len(queries)
        # one thread per group keeps each group's windows in order (its stream needs them so)
        self.pools = [
            ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,))
            for _ in self.runners
            if groups > 1
        ]
        #: batches of windows the network may be ahead of the caller (none in its thread)
        self.ahead = WINDOWS_AHEAD if self.pools else 0

    def submit(self, windows: np.ndarray, starts: list[int]) -> list[Future[np.ndarray]]:
        """Queue ``windows (W, T_in)`` starting at absolute ``starts`` on every group."""
        if not self.pools:
            done: Future[np.ndarray] = Future()
            done.set_result(self.runners[0].run(windows, starts))
            return [done]
        return [
            pool.submit(runner.run, windows, starts)
            for pool, runner in zip(self.pools, self.runners, strict=True)
        ]

    def collect(self, futures: list[Future[np.ndarray]]) -> np.ndarray:
        """The stems ``(K, n)`` float32 of one :meth:`submit`, all K queries in their order
        (like :meth:`_WindowRunner.run`); raises what a group raised."""
        outputs = [future.result() for future in futures]
        if len(outputs) == 1:
            return outputs[0]
        stems = np.empty((self.queries, outputs[0].shape[1]), np.float32)
        for member, output in zip(self.members, outputs, strict=True):
            stems[member] = output
        return stems

    def close(self) -> None:
        """Drop the windows not started, in every group first, then wait for those running."""
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for pool in self.pools:
            pool.shutdown()


def default_groups(queries: int, device: torch.device) -> int:
    """Query groups to run side by side on the CPU: one per torch thread when the queries
    split evenly among them, else one group (torch's threads share each operation); one on
    CUDA (the GPU runs the queries together).

    On the idle development machine (2 threads) both ways ran at the same speed for 4
    players, and an uneven split (2 + 1 for 3 players) ran 1.2x slower than one group.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2 or queries < threads or queries % threads:
        return 1
    return threads


def query_groups(
    model: Network, queries: int, device: torch.device, asked: int | None = None
) -> int:
    """The query groups a run of ``queries`` players uses: ``asked``, else
    :func:`default_groups`; always one for a model with ``mixture_consistency`` (the
    projection onto the mixture needs all K estimates together).

    Raises:
        ValueError: ``asked`` outside 1 .. ``queries``.
    """
    if asked is not None and not 1 <= asked <= max(1, queries):
        raise ValueError(f"groups must be between 1 and the number of queries, got {asked}")
    if model.config.mixture_consistency:
        return 1
    return default_groups(queries, device) if asked is None else asked


def _stitch(batch_output: np.ndarray) -> np.ndarray:
    """``(W, K, step) -> (K, W * step)``: tiles side by side per query."""
    windows, queries, step = batch_output.shape
    return batch_output.transpose(1, 0, 2).reshape(queries, windows * step)


def separate_blocks(
    model: Network,
    blocks: Iterable[np.ndarray],
    queries: list[Query],
    on_output: Callable[[np.ndarray], None],
    *,
    tile: int = DEFAULT_TILE,
    batch_size: int = 1,
    precision: str = "fp32",
    progress: WindowProgress | None = None,
    groups: int | None = None,
) -> int:
    """Separate a stream of mono blocks for K queries, emitting ``(K, n)`` output blocks.

    Args:
        model: the network, already on its device and in eval mode.
        blocks: 1-D float32 arrays; their concatenation is the mixture.
        queries: the K players to separate.
        on_output: receives consecutive ``(K, n)`` float32 blocks whose concatenation is the
            K stems, exactly as long as the input, in the caller's thread. The network may
            be :data:`WINDOWS_AHEAD` batches of windows ahead of it (with query groups),
            and so may the reading of ``blocks``.
        tile: output samples per window (rounded up to the total decimation).
        batch_size: 1 streams the windows (each layer computes only its new positions, see
            :class:`~vimss_cli.model.StreamState`); more runs that many independent windows
            per forward pass, each recomputing its context. Both give the same output.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast).
        progress: called with the number of samples done each time a batch's stems are
            passed on.
        groups: query groups run side by side, one CPU thread each (:class:`_QueryGroups`);
            ``None``: :func:`default_groups`. The output is the same for any value. A model
            with ``mixture_consistency`` runs its queries together (its output couples them).
            With more than one group, torch's thread count is 1 while this runs (restored
            after), so that each group's thread works alone.

    Returns:
        The number of samples in the input (and in each stem).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    asked = max((q.voice for q in queries), default=0)
    if asked > model.config.voices:
        raise InputError(
            f"a query asks for voice {asked} of its instrument, but this model tells "
            f"{model.config.voices} voices apart"
        )
    plan = plan_windows(model, tile)
    device = next(model.parameters()).device
    groups = query_groups(model, len(queries), device, groups)
    threads = torch.get_num_threads()
    if groups > 1:
        torch.set_num_threads(1)  # each group's thread runs its operations alone
    labels = torch.tensor([q.label_index() for q in queries], dtype=torch.long, device=device)
    ensemble = ensemble_counts(labels)  # every group's queries hear the whole ensemble
    try:
        runner = _QueryGroups(
            lambda group: _WindowRunner(
                model,
                group,
                plan,
                precision,
                stream=batch_size == 1 and model.streams,
                ensemble=ensemble,
            ),
            queries,
            groups,
        )
        try:
            return _run_windows(runner, plan, blocks, on_output, batch_size, progress)
        finally:
            runner.close()
    finally:
        torch.set_num_threads(threads)


def _run_windows(
    runner: _QueryGroups,
    plan: WindowPlan,
    blocks: Iterable[np.ndarray],
    on_output: Callable[[np.ndarray], None],
    batch_size: int,
    progress: WindowProgress | None,
) -> int:
    """Cut the block stream into windows as the input arrives; see :func:`separate_blocks`.
    The network may be ``runner.ahead`` batches of windows ahead of ``on_output``."""
    # buffer holds input samples from absolute position buffer_start on
    buffer = np.zeros(plan.context, dtype=np.float32)
    buffer_start = -plan.context
    total = 0
    next_window = 0  # the next window to hand to the network
    produced = 0  # output samples passed on so far

    def take_windows(count: int) -> tuple[np.ndarray, list[int]]:
        starts = [plan.window_start(next_window + i) for i in range(count)]
        needed = starts[-1] + plan.input_length - buffer_start
        padded = buffer
        if needed > buffer.size:
            padded = np.concatenate([buffer, np.zeros(needed - buffer.size, np.float32)])
        offsets = [s - buffer_start for s in starts]
        windows = np.stack([padded[o : o + plan.input_length] for o in offsets])
        return windows, starts

    #: windows handed to the network whose stems are not yet passed on, oldest first, each
    #: with where the signal ends (None: past these windows)
    pending: collections.deque[tuple[list[Future[np.ndarray]], int | None]] = collections.deque()

    def submit(count: int, signal_end: int | None) -> None:
        nonlocal buffer, buffer_start, next_window
        windows, starts = take_windows(count)
        pending.append((runner.submit(windows, starts), signal_end))
        next_window += count
        drop = plan.window_start(next_window) - buffer_start
        buffer = buffer[drop:]
        buffer_start += drop
        if len(pending) > runner.ahead:
            emit()

    def emit() -> None:
        nonlocal produced
        futures, signal_end = pending.popleft()
        output = runner.collect(futures)
        if not np.isfinite(output).all():  # NaN would be written as full-scale stems
            raise NonFiniteOutputError(
                f"the network's output holds NaN or infinite values (from sample {produced} "
                f"on); with --precision fp16 or bf16, try fp32, else the model is broken"
            )
        if signal_end is not None:
            output = output[:, : max(0, signal_end - produced)]
        on_output(output)
        produced += output.shape[1]
        if progress is not None:
            progress(produced)

    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        buffer = np.concatenate([buffer, block])
        total += block.size
        while True:
            last_window_end = plan.window_start(next_window + batch_size - 1) + plan.input_length
            if buffer_start + buffer.size < last_window_end:
                break
            submit(batch_size, None)
    # the last windows are counted from the samples passed on: a stream's first window gives
    # more than a step (its whole output span), so the windows handed in do not tell it
    while pending:
        emit()
    while produced < total:
        submit(min(batch_size, -(-(total - produced) // plan.step)), total)
        while pending:
            emit()
    return total


def separate_array(
    model: Network,
    audio: np.ndarray,
    queries: list[Query],
    *,
    tile: int | None = DEFAULT_TILE,
    batch_size: int = 1,
    precision: str = "fp32",
    groups: int | None = None,
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
        groups=groups,
    )
    if not pieces:
        return np.zeros((len(queries), 0), dtype=np.float32)
    return np.concatenate(pieces, axis=1)


def iter_blocks(audio: np.ndarray, block: int = 65536) -> Iterator[np.ndarray]:
    """Cut a 1-D array into consecutive blocks."""
    for start in range(0, audio.size, block):
        yield audio[start : start + block]
