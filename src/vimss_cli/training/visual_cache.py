"""Each training piece's per-player visual features, computed once and cached.

Training never decodes video per step: before the first step every piece's ``Vid_*.mp4`` goes
through the video front end once (players found with the known player count as a hint), and
each player's appearance vector and motion sequence are stored in
``<cache dir>/<piece folder>.npz``. The cache key is the video's path, size and modification
time, and the motion channel count and layout (``model.motion_features``), so a changed video
or another motion layout is analysed again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimss_cli.atomic import atomic_path
from vimss_cli.urmp import Piece

CACHE_VERSION = 1


@dataclass
class PlayerVisuals:
    """Visual features of a piece's players, in track order.

    Attributes:
        appearance: ``(players, 1280)`` float32 L2-normalised embeddings.
        motion: ``(players, channels, frames)`` float32 on the audio clock.
        rate: frames per second of ``motion``.
    """

    appearance: np.ndarray
    motion: np.ndarray
    rate: float


def _key(video: Path, channels: int, features: str) -> str:
    stat = video.stat()
    return json.dumps(
        {
            "version": CACHE_VERSION,
            "video": str(video.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "channels": channels,
            "features": features,
        },
        sort_keys=True,
    )


def piece_visuals(
    piece: Piece, channels: int, cache_dir: Path, features: str = "bands"
) -> PlayerVisuals:
    """The cached features of ``piece``'s players, analysing its video on a cache miss.

    Raises :class:`vimss_cli.errors.VimssError` subclasses when the video is missing or its
    players cannot be matched to the folder's player count.
    """
    from vimss_cli.errors import InputError

    if features == "pose":
        return pose_visuals(piece, channels)
    video = piece.video_path
    if not video.is_file():
        raise InputError(f"{piece.folder.name} has no video {video.name}")
    key = _key(video, channels, features)
    cache_file = Path(cache_dir) / f"{piece.folder.name}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as stored:
            if str(stored["key"]) == key:
                return PlayerVisuals(stored["appearance"], stored["motion"], float(stored["rate"]))
    from vimss_cli.synth.video import generated_boxes
    from vimss_cli.vision.analysis import analyse_video

    boxes = generated_boxes(video, piece.players)
    analysis = analyse_video(video, players=piece.players, boxes=boxes)
    if len(analysis.players) != piece.players:
        raise InputError(
            f"{video.name}: found {len(analysis.players)} players, the folder names {piece.players}"
        )
    appearance = np.stack([p.appearance for p in analysis.players]).astype(np.float32)
    motion = np.stack([analysis.motion(p, channels, features) for p in analysis.players])
    motion = motion.astype(np.float32)
    visuals = PlayerVisuals(appearance, motion, float(analysis.rate))
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_file) as temporary:
        np.savez(temporary, key=key, appearance=appearance, motion=motion, rate=visuals.rate)
    return visuals


def pose_visuals(piece: Piece, channels: int) -> PlayerVisuals:
    """The players' pose motion from the true keypoints beside a generated piece's video
    (``Pose_*.npz``; cheap to compute, so not cached). No appearance: ``(players, 0)``."""
    from vimss_cli.errors import InputError
    from vimss_cli.vision.pose_motion import FEATURES, pose_motion, read_keypoints

    if channels != len(FEATURES):
        raise InputError(f"pose motion has {len(FEATURES)} channels, the model takes {channels}")
    if not piece.pose_path.is_file():
        raise InputError(
            f"{piece.folder.name} has no true keypoints {piece.pose_path.name} (pose motion is "
            "trained on pieces from vimss data synth)"
        )
    keypoints, rate = read_keypoints(piece.pose_path, piece.players)
    motion = pose_motion(keypoints, rate)
    return PlayerVisuals(np.zeros((piece.players, 0), np.float32), motion, rate)
