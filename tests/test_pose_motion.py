"""Motion features from pose keypoints: what moves, scaled to the player, camera removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vimss_cli.errors import InputError
from vimss_cli.synth.video import write_keypoints
from vimss_cli.vision.pose_motion import FEATURES, pose_motion, read_keypoints

RATE = 30.0
BOW, BREATH, FINGERS = FEATURES.index("bow_wrist"), FEATURES.index("breath"), 3


def still_players(players: int = 2, frames: int = 90, width: float = 40.0) -> np.ndarray:
    """``(players, frames, 33, 3)``: players standing still, shoulders ``width`` px apart."""
    points = np.zeros((players, frames, 33, 3), np.float32)
    for p in range(players):
        x = 100.0 + 200.0 * p
        points[p, :, :, 0] = x
        points[p, :, :, 1] = 100.0
        points[p, :, 11, 0] = x + width / 2  # left shoulder
        points[p, :, 12, 0] = x - width / 2  # right shoulder
        points[p, :, 16] = (x - width, 150.0, 0)  # right wrist
        points[p, :, 15] = (x + width, 120.0, 0)  # left wrist
        points[p, :, 19] = (x + width + 5, 110.0, 0)  # left index
        points[p, :, 20] = (x - width + 5, 140.0, 0)  # right index
        points[p, :, :, 2] = 1.0
    return points


def bowing(points: np.ndarray, player: int, pixels_per_frame: float) -> np.ndarray:
    out = points.copy()
    travel = pixels_per_frame * np.abs((np.arange(points.shape[1]) % 30) - 15.0)
    out[player, :, 16, 0] += travel  # the bow goes out and back every second
    out[player, :, 20, 0] += travel  # the fingers holding it go along
    return out


def test_the_bowing_player_moves_and_the_still_one_does_not() -> None:
    features = pose_motion(bowing(still_players(), 0, 2.0), RATE)
    assert features.shape == (2, len(FEATURES), 90)
    assert features[0, BOW].mean() > 1.0
    assert features[1].max() == pytest.approx(0.0, abs=1e-6)
    assert features[0, FINGERS].max() == pytest.approx(0.0, abs=1e-5)  # hand moved, not fingers


def test_sway_and_camera_shake_leave_the_features_alone() -> None:
    base = pose_motion(bowing(still_players(), 0, 2.0), RATE)
    rng = np.random.default_rng(0)
    shaken = bowing(still_players(), 0, 2.0)
    shake = np.cumsum(rng.normal(0, 2.0, size=(90, 2)), axis=0)
    shaken[:, :, :, :2] += shake[None, :, None, :]  # the camera moves every player alike
    sway = 10 * np.sin(np.arange(90) / 9.0)
    shaken[1, :, :, 0] += sway[:, None]  # and player 2 sways
    moved = pose_motion(shaken, RATE)
    limbs = [i for i, name in enumerate(FEATURES) if name != "breath"]
    assert np.allclose(moved[:, limbs], base[:, limbs], atol=1e-4)
    # the camera is removed from the shoulders' own motion; with two players the reference
    # is their median, so half of a sway shows (three or more players remove it)
    assert moved[0, BREATH].max() < 0.5


def test_a_player_twice_as_near_reads_the_same() -> None:
    near = bowing(still_players(width=40.0), 0, 2.0)
    near[:, :, :, :2] *= 2.0
    assert np.allclose(
        pose_motion(near, RATE), pose_motion(bowing(still_players(), 0, 2.0), RATE), atol=1e-4
    )


def test_unseen_keypoints_are_filled_in_from_the_frames_around_them() -> None:
    seen = bowing(still_players(), 0, 2.0)
    holes = seen.copy()
    holes[0, 40:44, 16] = (0.0, 0.0, 0.1)  # the estimator lost the wrist for four frames
    features = pose_motion(holes, RATE)
    assert np.isfinite(features).all()
    assert features[0, BOW, 38:46].max() < 2 * pose_motion(seen, RATE)[0, BOW].max()


def test_keypoint_files_round_trip_and_bad_ones_are_refused(tmp_path: Path) -> None:
    points = still_players()
    write_keypoints(str(tmp_path / "pose.npz"), points, RATE, ["vn", "vn"])
    back, rate = read_keypoints(tmp_path / "pose.npz")
    assert rate == RATE and np.array_equal(back, points)
    np.savez(tmp_path / "bad.npz", keypoints=np.zeros((2, 5, 17, 3)), fps=30.0)
    with pytest.raises(InputError, match="33, 3"):
        read_keypoints(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(InputError, match="cannot read keypoints"):
        read_keypoints(tmp_path / "junk.npz")
