"""Motion: frame-difference energy per player box, on the frame times of the audio clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scenes import compose_scene
from vimss_cli.vision.analysis import analyse_video
from vimss_cli.vision.motion import (
    GRID_COLS,
    GRID_ROWS,
    MotionAccumulator,
    box_motion,
    centred_mean,
    compress,
    multiscale,
)


def test_a_change_between_two_frames_is_centred_on_them() -> None:
    accumulator = MotionAccumulator()
    for n in range(10):
        accumulator.push(np.full((36, 64, 3), 200 if n >= 5 else 20, np.uint8))
    energy = box_motion(accumulator.grids(), (0.0, 0.0, 1.0, 1.0))[0]
    assert energy.shape == (10,)
    assert np.flatnonzero(energy > 0).tolist() == [4, 5]  # the step lies between frames 4 and 5
    assert energy[4] == pytest.approx(energy[5]) and energy[4] > 0.3


def test_boxes_and_bands_see_only_their_cells() -> None:
    grids = np.zeros((3, GRID_ROWS, GRID_COLS), np.float32)
    grids[:, : GRID_ROWS // 2, : GRID_COLS // 2] = 1.0  # top-left quarter moves
    left = box_motion(grids, (0.0, 0.0, 0.5, 1.0), channels=2)
    right = box_motion(grids, (0.5, 0.0, 0.5, 1.0), channels=2)
    assert left.shape == (2, 3)
    np.testing.assert_allclose(left[0], 1.0)  # top band of the left box
    np.testing.assert_allclose(left[1], 0.0)
    np.testing.assert_allclose(right, 0.0)
    # a box straddling a cell edge takes the overlapped share
    half = box_motion(grids, (0.25, 0.0, 0.5, 0.5))[0]
    np.testing.assert_allclose(half, 0.5, atol=1e-6)


def test_compress_is_monotonic_and_zero_at_rest() -> None:
    values = compress(np.array([0.0, 0.001, 0.01, 0.1]))
    assert values[0] == 0.0 and np.all(np.diff(values) > 0)


def test_centred_mean_keeps_levels_at_the_ends_and_spreads_an_impulse() -> None:
    np.testing.assert_allclose(centred_mean(np.full(7, 3.0), 5), 3.0)  # no edge bias
    impulse = np.zeros(11)
    impulse[5] = 1.0
    np.testing.assert_allclose(centred_mean(impulse, 5)[3:8], 0.2)
    assert centred_mean(impulse, 5)[[0, 1, 2, 8, 9, 10]].sum() == 0


def test_multiscale_channels_widen_with_the_window_schedule() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(200).astype(np.float32)
    channels = multiscale(values, rate=10.0, channels=4)  # 0, 0.5, 1, 2 s -> 1, 5, 11, 21 frames
    assert channels.shape == (4, 200)
    np.testing.assert_allclose(channels[0], values)
    np.testing.assert_allclose(channels[2], centred_mean(values, 11), rtol=1e-6)
    assert np.all(np.diff(channels.std(axis=1)) < 0)  # longer windows, smoother
    with pytest.raises(ValueError, match="1 to 6 channels"):
        multiscale(values, 10.0, 7)


def test_each_player_moves_when_it_plays(tmp_path: Path) -> None:
    """Two violins: the left one plays the first half, the right one the second."""
    path = tmp_path / "duet.mp4"
    active = [[(0.0, 1.5)], [(1.5, 3.0)]]
    compose_scene(path, ["vn", "vn"], active=active, seconds=3.0, fps=10.0)
    analysis = analyse_video(path, players=2)
    first, second = (analysis.motion(p, 1)[0] for p in analysis.players)
    assert first.shape == second.shape == (30,)
    half = 15
    assert first[2 : half - 1].mean() > 5 * first[half + 1 :].mean()
    assert second[half + 1 :].mean() > 5 * second[2 : half - 1].mean()
    # multiscale features: the first channel is the whole box, the others its running means
    scales = analysis.motion(analysis.players[0], 3, "multiscale")
    assert scales.shape == (3, 30)
    np.testing.assert_allclose(scales[0], first, rtol=1e-6)
    np.testing.assert_allclose(scales[2], centred_mean(first, 11), rtol=1e-5)
