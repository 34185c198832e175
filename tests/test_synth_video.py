"""The picture: motion follows each player's own notes, players left to right in track order."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from vimss_cli.errors import MediaError
from vimss_cli.ffmpeg_io import ffmpeg_executable
from vimss_cli.synth import kinematics
from vimss_cli.synth.images import TRAIN_IMAGES, load_rgba
from vimss_cli.synth.kinematics import motion_signals, player_keypoints
from vimss_cli.synth.performance import PlayedNote
from vimss_cli.synth.video import FPS, PlayerLook, render_video
from vimss_cli.vision.pose_motion import read_keypoints


def notes_between(start: float, stop: float, length: float = 0.5) -> tuple[PlayedNote, ...]:
    onsets = np.arange(start, stop - length + 1e-9, length)
    return tuple(PlayedNote(float(t), length - 0.02, 60 + i % 5, 90) for i, t in enumerate(onsets))


def test_motion_is_still_in_rests_and_moves_with_notes() -> None:
    times = np.arange(0, 4.0, 1 / FPS)
    notes = (PlayedNote(0.5, 1.0, 69, 100), PlayedNote(2.5, 1.0, 72, 100))
    motion = motion_signals(notes, times, np.random.default_rng(0))
    playing = ((times >= 0.5) & (times < 1.5)) | ((times >= 2.5) & (times < 3.5))
    assert np.array_equal(motion.active, playing.astype(float))
    bow_steps = np.abs(np.diff(motion.bow))
    assert bow_steps[playing[1:] & playing[:-1]].min() > 0  # the bow travels during notes
    rest = ~playing[1:] & ~playing[:-1]
    assert bow_steps[rest].max() == 0  # and stays put in rests
    # the second note's bow stroke goes the other way
    assert np.sign(motion.bow[int(1.4 * FPS)] - motion.bow[int(0.6 * FPS)]) == -np.sign(
        motion.bow[int(3.4 * FPS)] - motion.bow[int(2.6 * FPS)]
    )
    chest_steps = np.diff(motion.chest)
    assert (chest_steps[playing[1:] & playing[:-1]] < 0).all()  # breath is spent on notes
    before_phrase = (times[1:] >= 2.5 - kinematics.INHALE + 0.05) & (times[1:] < 2.5)
    assert (chest_steps[before_phrase] > 0).all()  # and taken just before the next phrase
    assert motion.jolt[int(0.55 * FPS)] > 0.5 > motion.jolt[int(2.4 * FPS)]
    assert set(np.unique(motion.pitch)) == {0, 69, 72}
    # the fingers change at the second note and hold their place in the rest before it
    assert motion.fingers[int(2.0 * FPS)] == motion.fingers[int(1.0 * FPS)] == 69 % 16
    assert motion.fingers[int(3.0 * FPS)] == 72 % 16


def test_short_notes_may_share_a_bow_but_a_rest_always_ends_it() -> None:
    times = np.arange(0, 6.0, 1 / FPS)
    run = tuple(PlayedNote(0.2 * i, 0.18, 60 + i, 90) for i in range(12))  # 2.4 s of 0.2 s notes
    motion = motion_signals((*run, PlayedNote(4.0, 1.0, 70, 90)), times, np.random.default_rng(3))
    direction = np.sign(np.diff(motion.bow))
    within_run = direction[: int(2.3 * FPS)]
    turns = int(np.sum(within_run[1:] * within_run[:-1] < 0))
    assert 4 <= turns < 11  # slurs: fewer bow changes than the 11 note changes
    assert np.all(np.diff(motion.bow)[int(2.5 * FPS) : int(3.9 * FPS)] == 0)  # still in the rest


def test_keypoints_put_the_bow_hand_on_the_bow_and_follow_the_player() -> None:
    times = np.arange(0, 2.0, 1 / FPS)
    motion = motion_signals((PlayedNote(0.2, 1.5, 64, 100),), times, np.random.default_rng(1))
    figure = player_keypoints("vn", motion, 20, centre_x=100.0, region_width=200, height=360)
    points = figure.keypoints
    assert points.shape == (33, 3)
    assert figure.bow is not None
    (x0, y0), (x1, y1) = figure.bow
    wrist = points[kinematics.RIGHT_WRIST, :2]
    dx, dy = wrist - (x0, y0)
    along = ((x1 - x0) * dy - (y1 - y0) * dx) / np.hypot(x1 - x0, y1 - y0)
    assert abs(along) < 1.0  # the bowing wrist lies on the bow
    # the player faces the camera: its right shoulder is on the picture's left
    assert points[kinematics.RIGHT_SHOULDER, 0] < points[kinematics.LEFT_SHOULDER, 0]
    moved = player_keypoints("vn", motion, 20, centre_x=150.0, region_width=200, height=360)
    assert np.allclose(moved.keypoints[:, 0] - points[:, 0], 50.0 * points[:, 2])


def decode(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        [ffmpeg_executable(), "-v", "error", "-i", str(path), "-f", "rawvideo",
         "-pix_fmt", "gray", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width).astype(np.float32)


def test_each_region_moves_when_its_own_player_plays(tmp_path: Path) -> None:
    width, height, seconds = 192, 108, 4.0
    looks = [
        PlayerLook("vn", load_rgba(TRAIN_IMAGES["vn"][0]), (200, 40, 40), (230, 190, 160)),
        PlayerLook("vc", load_rgba(TRAIN_IMAGES["vc"][0]), (40, 40, 200), (200, 160, 130)),
    ]
    first_half, second_half = notes_between(0.0, 2.0), notes_between(2.0, 3.8)
    path = tmp_path / "v.mp4"
    frames = render_video(
        str(path),
        looks,
        (first_half, second_half),
        seconds,
        (width, height),
        np.random.default_rng(0),
        ffmpeg_executable(),
        keypoints_path=str(tmp_path / "pose.npz"),
    )
    video = decode(path, width, height)
    assert video.shape[0] == frames == int(np.ceil(seconds * FPS))
    # share of pixels that change by more than sensor noise does, frame to frame
    moving = np.abs(np.diff(video, axis=0)) > 12
    half = int(2.0 * FPS)
    left, right = moving[:, :, : width // 2], moving[:, :, width // 2 :]
    # the left player (track 1) moves more in the first half, the right one (track 2) in the
    # second; sway, camera shake and light change move both halves alike
    assert left[: half - 1].mean() > 1.25 * left[half + 1 :].mean()
    assert right[half + 1 :].mean() > 1.25 * right[: half - 1].mean()
    # the true keypoints: each player's bowing wrist travels while its own notes sound
    keypoints, rate = read_keypoints(tmp_path / "pose.npz")
    assert keypoints.shape == (2, frames, 33, 3) and rate == FPS
    assert (keypoints[0, :, :, 0].max() < width / 2) and (keypoints[1, :, 11, 0].min() > width / 2)
    shoulders = keypoints[:, :, [kinematics.LEFT_SHOULDER, kinematics.RIGHT_SHOULDER], :2]
    arm = keypoints[:, :, kinematics.RIGHT_WRIST, :2] - shoulders.mean(axis=2)  # no sway, shake
    wrist = np.linalg.norm(np.diff(arm, axis=1), axis=-1)
    # (a page turn in a rest moves a hand too: nuisance the keypoints must carry)
    assert wrist[0, : half - 1].mean() > 1.5 * wrist[0, half + 1 :].mean()
    assert wrist[1, half + 1 :].mean() > 1.5 * wrist[1, : half - 1].mean()


def test_camera_shake_moves_the_picture_and_repeats_the_uncovered_edge() -> None:
    from vimss_cli.synth.video import _shift

    frame = np.repeat(np.arange(12, dtype=np.uint8).reshape(3, 4)[..., None], 3, axis=2)
    moved = _shift(frame, 1, -1)[..., 0]  # one pixel down, one left
    assert moved.tolist() == [[1, 2, 3, 3], [1, 2, 3, 3], [5, 6, 7, 7]]


def test_an_encoder_that_fails_says_why_in_one_line(tmp_path: Path) -> None:
    looks = [PlayerLook("vn", load_rgba(TRAIN_IMAGES["vn"][0]), (200, 40, 40), (230, 190, 160))]
    target = tmp_path / "missing folder" / "v.mp4"  # ffmpeg cannot open it: it stops reading
    with pytest.raises(MediaError, match=r"ffmpeg could not encode .*v\.mp4 \(ffmpeg: .+\)"):
        render_video(
            str(target),
            looks,
            (notes_between(0.0, 1.0),),
            1.0,
            (64, 36),
            np.random.default_rng(0),
            ffmpeg_executable(),
        )
    assert not target.parent.exists()
