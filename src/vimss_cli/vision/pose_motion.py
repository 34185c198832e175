"""How each player moves, from pose keypoints over time: bowing arm, fingers, breath, head.

Input is a keypoint track per player in BlazePose's 33-landmark layout ``(x, y, visibility)``
in pixels: the true keypoints ``vimss data synth`` writes beside its videos
(``Pose_*.npz``), or the pose estimator's. Output is one row per feature, on the video's
frame clock, in the same compressed scale as the frame-difference motion (``log1p``):

=============  ==============================================================================
bow_wrist      speed of the right wrist (the bowing hand) relative to the shoulders
bow_elbow      speed of the right elbow relative to the shoulders
bow_turn       change of the right wrist's velocity (bow changes, onsets)
fingers        speed of the index fingers relative to their wrists (note changes)
fret_hand      speed of the left wrist relative to the shoulders (shifts, wind hands)
breath         vertical speed of the shoulders, camera motion removed (breathing, phrasing)
head           speed of the nose relative to the shoulders (nods, onsets)
=============  ==============================================================================

Speeds are in shoulder widths per second, so a far player and a near one read alike.
Limb and head speeds are taken relative to the player's own shoulders, which removes sway
and camera motion. The shoulders' own motion is taken relative to the camera's, estimated as
the median motion of all players' shoulders (with one player there is no reference and
nothing is removed). Keypoints the estimator did not see (visibility below 0.5) are filled
in from the nearest frames that saw them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vimss_cli.errors import InputError

FEATURES = ("bow_wrist", "bow_elbow", "bow_turn", "fingers", "fret_hand", "breath", "head")
#: Speed (shoulder widths per second) that maps to ``log1p(1)``, per feature.
FEATURE_SCALES = np.array([0.5, 0.5, 5.0, 0.3, 0.3, 0.1, 0.3], np.float32)
#: Keypoints seen with less visibility than this are treated as missing.
MIN_VISIBILITY = 0.5

NOSE = 0
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST = range(11, 17)
LEFT_INDEX, RIGHT_INDEX = 19, 20


def read_keypoints(path: Path, players: int | None = None) -> tuple[np.ndarray, float]:
    """A ``Pose_*.npz`` file -> (``(players, frames, 33, 3)`` float32 keypoints, frames/s).

    With ``players``, a file holding another number of players is refused.
    """
    try:
        with np.load(path) as data:
            keypoints = np.asarray(data["keypoints"], np.float32)
            rate = float(data["fps"])
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f"cannot read keypoints from {path}: {error}") from error
    if keypoints.ndim != 4 or keypoints.shape[2:] != (33, 3) or rate <= 0:
        raise InputError(f"{path}: keypoints must be (players, frames, 33, 3) with a positive fps")
    if players is not None and keypoints.shape[0] != players:
        raise InputError(f"{path.name} holds {keypoints.shape[0]} players, not {players}")
    return keypoints, rate


def _filled(track: np.ndarray) -> np.ndarray:
    """``(T, 33, 3)`` -> ``(T, 33, 2)`` positions with unseen frames interpolated in time
    (a joint never seen stays at 0)."""
    frames = np.arange(track.shape[0])
    out = np.zeros((*track.shape[:2], 2), np.float64)
    for joint in range(track.shape[1]):
        seen = track[:, joint, 2] >= MIN_VISIBILITY
        if seen.any():
            for axis in range(2):
                out[:, joint, axis] = np.interp(frames, frames[seen], track[seen, joint, axis])
    return out


def _velocity(positions: np.ndarray, rate: float) -> np.ndarray:
    """``(T, ..., 2)`` positions -> velocities per second, central differences (same shape)."""
    if positions.shape[0] < 2:
        return np.zeros_like(positions)
    return np.gradient(positions, axis=0) * rate


def _speed(velocity: np.ndarray) -> np.ndarray:
    return np.linalg.norm(velocity, axis=-1)


def _smooth(values: np.ndarray) -> np.ndarray:
    """Mean over three frames along axis 0 (the ends keep their own values): estimator jitter."""
    if values.shape[0] < 3:
        return values
    out = values.copy()
    out[1:-1] = (values[:-2] + values[1:-1] + values[2:]) / 3
    return out


def pose_motion(keypoints: np.ndarray, rate: float) -> np.ndarray:
    """Motion features of every player.

    Args:
        keypoints: ``(players, frames, 33, 3)`` BlazePose ``(x, y, visibility)`` in pixels.
        rate: frames per second.

    Returns:
        ``(players, len(FEATURES), frames)`` float32, ``log1p(speed / FEATURE_SCALES)``.
    """
    if keypoints.ndim != 4 or keypoints.shape[2:] != (33, 3):
        raise ValueError(f"keypoints must be (players, frames, 33, 3), got {keypoints.shape}")
    players, frames = keypoints.shape[:2]
    positions = np.stack([_smooth(_filled(track)) for track in keypoints])  # (P, T, 33, 2)
    shoulders = positions[:, :, [LEFT_SHOULDER, RIGHT_SHOULDER]]
    anchor = shoulders.mean(axis=2)  # (P, T, 2)
    widths = np.linalg.norm(shoulders[:, :, 0] - shoulders[:, :, 1], axis=-1)  # (P, T)
    scale = np.maximum(np.median(widths, axis=1), 1e-3)  # (P,)
    relative = (positions - anchor[:, :, None]) / scale[:, None, None, None]
    limbs = _velocity(relative.transpose(1, 0, 2, 3), rate).transpose(1, 0, 2, 3)
    anchor_velocity = _velocity(anchor.transpose(1, 0, 2), rate).transpose(1, 0, 2)
    camera = np.median(anchor_velocity, axis=0) if players > 1 else np.zeros_like(anchor[0])
    own = (anchor_velocity - camera) / scale[:, None, None]  # (P, T, 2)
    wrist_velocity = limbs[:, :, RIGHT_WRIST]
    turn = (
        _speed(np.gradient(wrist_velocity, axis=1) * rate)
        if frames > 1
        else np.zeros((players, frames))
    )
    fingers = _speed(limbs[:, :, LEFT_INDEX] - limbs[:, :, LEFT_WRIST]) + _speed(
        limbs[:, :, RIGHT_INDEX] - limbs[:, :, RIGHT_WRIST]
    )
    features = np.stack(
        [
            _speed(wrist_velocity),
            _speed(limbs[:, :, RIGHT_ELBOW]),
            turn,
            fingers,
            _speed(limbs[:, :, LEFT_WRIST]),
            np.abs(own[:, :, 1]),
            _speed(limbs[:, :, NOSE]),
        ],
        axis=1,
    )  # (P, C, T)
    return np.log1p(features / FEATURE_SCALES[None, :, None]).astype(np.float32)
