"""Each player's pose over time: BlazePose's landmark network on every decoded frame.

The players are those the front end found (:func:`vimss_cli.vision.analysis.analyse_video`).
A player's first region comes from the keypoints the person detector found for it, or from
its box; every later frame's region from the keypoints of the frame before, as mediapipe's
own pose tracking does, its size held within a third of the first region's (a pose guessed
badly in one frame would otherwise shrink the next frame's crop until the person is lost).
When the landmark network loses the person (presence below
:data:`~vimss_cli.vision.people.MIN_PRESENCE`) or the pose drifts out of the player's box,
the region starts again from the first one. Frames where the person was lost get zero visibility,
which :func:`vimss_cli.vision.pose_motion.pose_motion` fills in from the frames around them.

One landmark pass per player and frame: about 15 ms each here, so a quartet at 10 frames per
second costs about 0.6 s per second of video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vimss_cli.vision.analysis import Player
from vimss_cli.vision.frames import DEFAULT_MAX_SIDE, DEFAULT_RATE, FrameStream, probe_video
from vimss_cli.vision.people import MIN_PRESENCE, Person, add_pose

Box = tuple[float, float, float, float]


def person_from_box(box: Box) -> Person:
    """A region for the landmark network from a player's box ``(x, y, w, h)``: an upright
    person whose body circle fills the box's height."""
    x, y, w, h = box
    centre = x + w / 2
    return Person(
        score=1.0,
        face=(centre - 0.1 * h, y, centre + 0.1 * h, y + 0.2 * h),
        hips=(centre, y + 0.6 * h),
        body_radius=0.6 * h,
        shoulders=(centre, y + 0.25 * h),
    )


def person_from_keypoints(
    keypoints: np.ndarray, box: Box, radius_range: tuple[float, float] | None = None
) -> Person:
    """The region around a pose: hips and shoulders from its landmarks (seen or not: the
    network places them all), the body circle reaching its farthest upper-body point, held
    within ``radius_range`` when given."""
    points = keypoints[:, :2]
    hips = points[[23, 24]].mean(axis=0)
    shoulders = points[[11, 12]].mean(axis=0)
    reach = float(np.max(np.linalg.norm(points[:25] - hips, axis=1)))
    radius = max(1.05 * reach, 0.25 * box[3])
    if radius_range is not None:
        radius = float(np.clip(radius, *radius_range))
    return Person(
        score=1.0,
        face=person_from_box(box).face,
        hips=(float(hips[0]), float(hips[1])),
        body_radius=radius,
        shoulders=(float(shoulders[0]), float(shoulders[1])),
    )


#: The region follows the pose only when its centre moves by more than this share of its
#: radius, or its radius by more than this share: the same crop of a still player gives the
#: same keypoints, where a crop moving with the network's own jitter feeds that jitter back.
REGION_HYSTERESIS = 0.1


def _moved(region: Person, candidate: Person) -> Person:
    """``candidate`` if it moved or grew enough from ``region``, else ``region``."""
    shift = np.hypot(*np.subtract(candidate.hips, region.hips))
    growth = abs(candidate.body_radius / region.body_radius - 1)
    if shift > REGION_HYSTERESIS * region.body_radius or growth > REGION_HYSTERESIS:
        return candidate
    return region


def _inside(keypoints: np.ndarray, box: Box) -> bool:
    """The pose's shoulders lie within the box widened by half its width."""
    x, y, w, h = box
    shoulders = keypoints[[11, 12], :2].mean(axis=0)
    return bool(x - w / 2 <= shoulders[0] <= x + 1.5 * w and y - h / 2 <= shoulders[1] <= y + h)


def track_poses(
    path: Path, players: list[Player], rate: float = DEFAULT_RATE, max_side: int = DEFAULT_MAX_SIDE
) -> np.ndarray:
    """Every player's keypoints in every frame decoded at ``rate`` on the audio clock.

    Returns:
        ``(players, frames, 33, 3)`` float32 BlazePose ``(x, y, visibility)`` in the video's
        own pixels; visibility 0 where the person was lost.
    """
    info = probe_video(Path(path))
    tracks: list[list[np.ndarray]] = [[] for _ in players]
    with FrameStream(info, rate, max_side) as stream:
        to_decoded = np.array([stream.size[0] / info.width, stream.size[1] / info.height])
        boxes: list[Box] = [
            (
                p.box[0] * to_decoded[0],
                p.box[1] * to_decoded[1],
                p.box[2] * to_decoded[0],
                p.box[3] * to_decoded[1],
            )
            for p in players
        ]
        first = [
            person_from_keypoints(p.keypoints[:, :2] * to_decoded, box)
            if p.keypoints is not None
            else person_from_box(box)
            for p, box in zip(players, boxes, strict=True)
        ]
        sizes = [(0.75 * r.body_radius, 1.33 * r.body_radius) for r in first]
        regions = list(first)
        for _, frame in stream:
            for j, box in enumerate(boxes):
                posed = add_pose(frame, regions[j])
                keypoints = posed.keypoints
                found = (
                    keypoints is not None
                    and (posed.presence or 0.0) >= MIN_PRESENCE
                    and _inside(keypoints, box)
                )
                if found:
                    assert keypoints is not None
                    tracks[j].append(keypoints)
                    regions[j] = _moved(regions[j], person_from_keypoints(keypoints, box, sizes[j]))
                else:
                    tracks[j].append(np.zeros((33, 3), np.float32))
                    regions[j] = first[j]
    out = np.array(tracks, np.float32)  # (P, T, 33, 3) in decoded pixels
    out[..., 0] /= to_decoded[0]
    out[..., 1] /= to_decoded[1]
    return out
