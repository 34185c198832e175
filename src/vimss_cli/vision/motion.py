"""When each player moves: frame-difference energy on a coarse grid, per player box.

While frames stream by, each one is reduced to a grey ``GRID_ROWS x GRID_COLS`` grid of mean
absolute differences from the previous frame (so an hour at 10 frames/s holds ~40 MB). Once
the boxes are known, a player's motion is the energy of the grid cells under its box (weighted
by overlap), in ``channels`` horizontal bands from top to bottom (one band: the whole box).

Frame differences rather than optical flow: on the composed test scenes both follow the
players' activity, and differences cost a fraction of Farneback flow per frame (see
``docs/video.md`` for the measurement, ``benchmarks/bench_video.py`` for the script).
"""

from __future__ import annotations

import cv2
import numpy as np

GRID_ROWS = 18
GRID_COLS = 32
#: Energy (mean absolute grey difference, 0..1) that maps to ``log1p(1)`` in :func:`compress`.
MOTION_SCALE = 0.01


def grey_small(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(GRID_ROWS * 4, GRID_COLS * 4)`` float32 grey in 0..1."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (GRID_COLS * 4, GRID_ROWS * 4), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def difference_grid(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Two :func:`grey_small` images -> ``(GRID_ROWS, GRID_COLS)`` mean absolute difference."""
    diff = np.abs(current - previous)
    return diff.reshape(GRID_ROWS, 4, GRID_COLS, 4).mean(axis=(1, 3))


class MotionAccumulator:
    """Collects one difference grid per frame; :meth:`grids` puts them on the frame times.

    The difference between frames ``n-1`` and ``n`` belongs to time ``n - 0.5``; the value at
    frame time ``n`` is the mean of the two differences around it (one at either end).
    """

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._diffs: list[np.ndarray] = []
        self.frames = 0

    def push(self, frame: np.ndarray) -> None:
        """Add the next ``(H, W, 3)`` uint8 frame."""
        grey = grey_small(frame)
        if self._previous is not None:
            self._diffs.append(difference_grid(self._previous, grey).astype(np.float16))
        self._previous = grey
        self.frames += 1

    def grids(self) -> np.ndarray:
        """``(frames, GRID_ROWS, GRID_COLS)`` float32 motion energy at each frame time."""
        if self.frames == 0:
            return np.zeros((0, GRID_ROWS, GRID_COLS), np.float32)
        if not self._diffs:
            return np.zeros((1, GRID_ROWS, GRID_COLS), np.float32)
        diffs = np.stack(self._diffs).astype(np.float32)  # (frames - 1, R, C)
        before = np.concatenate([diffs[:1], diffs])
        after = np.concatenate([diffs, diffs[-1:]])
        return 0.5 * (before + after)


#: A frame where more than this share of the grid changed ...
CUT_SHARE = 0.7
#: ... by more than this (mean absolute grey difference, 0..1) starts a new shot.
CUT_CHANGE = 0.04


def scene_cuts(grids: np.ndarray, rate: float) -> list[float]:
    """Times (seconds) where the picture cuts to another shot.

    ``grids``: ``(T, GRID_ROWS, GRID_COLS)`` from :meth:`MotionAccumulator.grids`. A cut
    changes nearly the whole picture at once (:data:`CUT_SHARE` of the cells by more than
    :data:`CUT_CHANGE`); players moving or a camera drifting change far less. Neighbouring
    frames of one cut count once.
    """
    if len(grids) == 0:
        return []
    changed = (grids > CUT_CHANGE).mean(axis=(1, 2)) > CUT_SHARE
    cuts: list[float] = []
    for index in np.flatnonzero(changed):
        if not cuts or index / rate - cuts[-1] > 1.5 / rate:
            cuts.append(index / rate)
    return cuts


def _overlap_weights(start: float, stop: float, cells: int) -> np.ndarray:
    """Fraction of each of ``cells`` unit cells covered by ``[start, stop)`` (cell units)."""
    edges = np.arange(cells + 1, dtype=np.float64)
    return np.clip(np.minimum(edges[1:], stop) - np.maximum(edges[:-1], start), 0.0, 1.0)


def box_motion(
    grids: np.ndarray, box: tuple[float, float, float, float], channels: int = 1
) -> np.ndarray:
    """Motion energy of one player.

    Args:
        grids: ``(T, GRID_ROWS, GRID_COLS)`` from :meth:`MotionAccumulator.grids`.
        box: ``(x, y, w, h)`` as fractions of the frame width and height.
        channels: horizontal bands the box is split into, top to bottom.

    Returns:
        ``(channels, T)`` float32 mean energy per band (0..1 grey units).
    """
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    x, y, w, h = box
    columns = _overlap_weights(x * GRID_COLS, (x + w) * GRID_COLS, GRID_COLS)
    bands = []
    for band in range(channels):
        top = (y + h * band / channels) * GRID_ROWS
        bottom = (y + h * (band + 1) / channels) * GRID_ROWS
        rows = _overlap_weights(top, bottom, GRID_ROWS)
        weights = np.outer(rows, columns)
        total = weights.sum()
        if total <= 0:  # a band thinner than a cell: use the cells it touches
            weights = np.outer(rows > 0, columns > 0).astype(np.float64) + 1e-12
            total = weights.sum()
        bands.append(np.tensordot(grids, weights, axes=([1, 2], [0, 1])) / total)
    return np.stack(bands).astype(np.float32)


#: Window lengths (seconds) of the ``"multiscale"`` motion channels, in channel order.
MULTISCALE_SECONDS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def centred_mean(values: np.ndarray, frames: int) -> np.ndarray:
    """Mean of ``values (T,)`` over a centred window of ``frames`` (odd) frames, ``(T,)``.

    Near the ends the window holds only the frames that exist (no zero padding bias).
    """
    if frames <= 1 or values.size == 0:
        return values.astype(np.float32)
    kernel = np.ones(frames)
    total = np.convolve(values.astype(np.float64), kernel, mode="same")
    count = np.convolve(np.ones(values.size), kernel, mode="same")
    return (total / count).astype(np.float32)


def multiscale(values: np.ndarray, rate: float, channels: int) -> np.ndarray:
    """``(channels, T)``: ``values (T,)`` averaged over each of the first ``channels`` windows
    of :data:`MULTISCALE_SECONDS` at ``rate`` frames per second."""
    if not 1 <= channels <= len(MULTISCALE_SECONDS):
        raise ValueError(
            f"multiscale motion has 1 to {len(MULTISCALE_SECONDS)} channels, got {channels}"
        )
    rows = []
    for seconds in MULTISCALE_SECONDS[:channels]:
        frames = 2 * round(seconds * rate / 2) + 1
        rows.append(centred_mean(values, frames))
    return np.stack(rows)


def compress(energy: np.ndarray) -> np.ndarray:
    """Motion energy -> the model's scale: ``log1p(energy / MOTION_SCALE)`` (same shape)."""
    return np.log1p(np.maximum(energy, 0.0) / MOTION_SCALE).astype(np.float32)


def column_profile(grids: np.ndarray, width: int) -> np.ndarray:
    """Mean motion energy per column over all frames and rows, stretched to ``width``: ``(W,)``."""
    if grids.shape[0] == 0:
        return np.zeros(width, np.float32)
    per_column = grids.mean(axis=(0, 1)).astype(np.float32)[None, :]
    return cv2.resize(per_column, (width, 1), interpolation=cv2.INTER_LINEAR)[0]
