"""Equal panels side by side (URMP's layout), told by their seams."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vimss_cli.vision.panels import fit_to_panels, panel_count, panel_edges


def _texture(height: int, width: int, level: float, seed: int) -> np.ndarray:
    """A busy picture around grey ``level``: smooth blobs and fine noise, like a photo."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 40, (height // 20 + 1, width // 20 + 1)).astype(np.float32)
    blobs = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    picture = level + blobs + rng.normal(0, 6, (height, width))
    return np.repeat(np.clip(picture, 0, 255)[..., None], 3, axis=2).astype(np.uint8)


def _panels(widths: list[int], height: int = 180, seed: int = 0) -> list[np.ndarray]:
    """Three frames of pictures of ``widths`` side by side, a little noise between frames."""
    levels = [70, 150, 110, 190, 90, 130, 60, 170]
    picture = np.concatenate(
        [_texture(height, w, levels[i % 8], seed + i) for i, w in enumerate(widths)], axis=1
    )
    rng = np.random.default_rng(seed)
    return [
        np.clip(picture + rng.normal(0, 2, picture.shape), 0, 255).astype(np.uint8)
        for _ in range(3)
    ]


@pytest.mark.parametrize("count", [2, 3, 4, 5, 8])
def test_equal_panels_are_counted(count: int) -> None:
    assert panel_count(_panels([640 // count] * count)) == count


def test_pictures_side_by_side_at_unequal_widths_are_no_panels() -> None:
    assert panel_count(_panels([250, 390])) is None
    assert panel_count(_panels([200, 140, 300])) is None


def test_one_picture_is_no_panels() -> None:
    assert panel_count(_panels([640])) is None


def test_black_bars_beside_a_portrait_picture_are_no_panels() -> None:
    # a portrait video pillarboxed in a wide frame, its bars at a third and two thirds
    frames = _panels([640])
    for frame in frames:
        frame[:, :213] = 0
        frame[:, 427:] = 0
    assert panel_count(frames) is None


def test_panels_need_seams_down_the_picture_not_a_short_edge() -> None:
    # a vertical edge at the middle over a quarter of the height: an object, not a seam
    frames = _panels([640])
    for frame in frames:
        frame[:45, 320:] = np.clip(frame[:45, 320:].astype(int) + 90, 0, 255)
    assert panel_count(frames) is None


def test_colour_bars_are_no_panels() -> None:
    # seven flat bars of equal width (a test card): seams everywhere, nothing in the panels
    levels = [235, 210, 180, 150, 110, 80, 40]
    bars = np.concatenate([np.full((180, 91, 3), level, np.uint8) for level in levels], axis=1)
    assert panel_count([bars.copy() for _ in range(3)]) is None


def test_seams_in_a_few_frames_only_are_no_panels() -> None:
    # a shot of panels in half the frames (a cut to them half way): not the layout
    frames = _panels([160] * 4)[:2] + [_texture(180, 640, 120, seed) for seed in range(2)]
    assert panel_count(frames) is None


def test_each_panel_gets_one_player() -> None:
    """Three panels of 100 pixels: the person in panel 1 is kept (cut to the panel), panel 2
    holds two (the stronger is kept), panel 3 nobody (taken whole)."""
    centres = [50.0, 140.0, 170.0]
    boxes = [(20, 10, 110, 80), (120, 5, 40, 90), (150, 0, 45, 95)]
    fit = fit_to_panels(centres, boxes, [0.5, 0.2, 0.9], 3, (300, 100))
    assert fit.people == [0, 2, None]
    assert fit.boxes == [(20, 10, 80, 80), (150, 0, 45, 95), (200, 0, 100, 100)]
    assert fit.empty == [2] and fit.crowded == [(1, 2)] and fit.changed


def test_panels_each_with_one_person_change_nothing() -> None:
    fit = fit_to_panels([40.0, 160.0], [(0, 0, 90, 50), (110, 0, 95, 50)], [0.1, 0.1], 2, (200, 50))
    assert fit.people == [0, 1] and not fit.changed
    assert panel_edges(3, 100) == [0, 33, 67, 100]
