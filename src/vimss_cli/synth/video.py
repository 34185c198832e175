"""Picture: film the ensemble, one player per region, left to right in track order.

Each player is a simple figure (body, head, two jointed arms with hands and fingers) holding
its instrument's picture, on a background shared by the whole frame. How the figure moves
comes from :mod:`vimss_cli.synth.kinematics`: bow strokes, fingers and breath follow the
player's own notes; sway, nods, page turns and hand adjustments in rests follow none. Camera
shake, changing light and sensor noise are added on top. Frames go to ffmpeg (libx264)
through :func:`vimss_cli.ffmpeg_io.feed`; the figures' true keypoints can be written beside
the video.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimss_cli.errors import MediaError
from vimss_cli.ffmpeg_io import feed, ffmpeg_message
from vimss_cli.synth import kinematics
from vimss_cli.synth.kinematics import (
    UPRIGHT,
    Figure,
    motion_signals,
    player_keypoints,
    smooth_noise,
)
from vimss_cli.synth.performance import PlayedNote
from vimss_cli.urmp import SYNTH_MANIFEST_NAME, pose_file_for

#: URMP films at 29.97 frames per second.
FPS = 30000 / 1001


@dataclass(frozen=True)
class PlayerLook:
    """How one player looks: the instrument picture and the player's colours."""

    instrument: str
    image: np.ndarray  # RGBA uint8
    shirt: tuple[int, int, int]
    skin: tuple[int, int, int]
    scale: float = 1.0  # size relative to the instrument's usual size (viola vs violin)


def player_boxes(width: int, height: int, players: int) -> str:
    """The players' regions of a generated video as ``--boxes`` text, ``"x,y,w,h;..."``:
    equal columns, left to right, the full height. Each figure stays inside its own."""
    region = width // players
    return ";".join(f"{j * region},0,{region},{height}" for j in range(players))


def generated_boxes(video: Path, players: int) -> str | None:
    """``--boxes`` for a video ``vimss data synth`` made (its true keypoints lie beside it,
    or its split's manifest one folder up): the known regions of :func:`player_boxes`.
    ``None`` for any other video.

    The front end gets them because the drawn figures have arms: the person detector may
    take one for a person without an instrument and refuse the video.
    """
    manifest = video.parent.parent / SYNTH_MANIFEST_NAME
    if not pose_file_for(video).is_file() and not manifest.is_file():
        return None
    from vimss_cli.vision.frames import probe_video

    info = probe_video(video)
    return player_boxes(info.width, info.height, players)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A stage: a wall with a vertical gradient and soft blobs, and a floor."""
    wall_top = rng.uniform(40, 200, size=3)
    wall_bottom = wall_top * rng.uniform(0.5, 0.9)
    y = np.linspace(0, 1, height)[:, None, None]
    frame = wall_top * (1 - y) + wall_bottom * y
    frame = np.broadcast_to(frame, (height, width, 3)).copy()
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    for _ in range(4):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height * 0.7)
        radius = rng.uniform(0.1, 0.4) * width
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))
        frame += blob[..., None] * rng.uniform(-40, 40, size=3)
    floor = int(height * rng.uniform(0.78, 0.88))
    frame[floor:] = rng.uniform(30, 120, size=3)
    return np.clip(frame, 0, 255).astype(np.uint8)


def _prepare_image(look: PlayerLook, region_width: int, height: int) -> np.ndarray:
    """Scale (and turn) the instrument picture to its size in the frame."""
    import cv2

    image = look.image
    tall = image.shape[0] >= image.shape[1]
    want_tall = look.instrument in UPRIGHT
    if tall != want_tall:
        image = np.ascontiguousarray(np.rot90(image))
    long_side = {"vc": 0.6, "db": 0.75, "tba": 0.35, "hn": 0.3}.get(look.instrument, 0.42) * height
    long_side *= look.scale
    long_side = min(long_side, 1.1 * region_width if not want_tall else 0.8 * height)
    scale = long_side / max(image.shape[:2])
    size = (max(2, int(image.shape[1] * scale)), max(2, int(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _paste(frame: np.ndarray, rgba: np.ndarray, centre: tuple[float, float], angle: float) -> None:
    """Alpha-blend ``rgba`` rotated by ``angle`` degrees, centred at ``centre``, into frame."""
    import cv2

    h, w = rgba.shape[:2]
    side = int(np.ceil(np.hypot(h, w))) + 2
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += (side / 2 - w / 2, side / 2 - h / 2)
    patch = cv2.warpAffine(rgba, matrix, (side, side), flags=cv2.INTER_LINEAR)
    x0, y0 = int(centre[0] - side / 2), int(centre[1] - side / 2)
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(frame.shape[1], x0 + side), min(frame.shape[0], y0 + side)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    part = patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0].astype(np.float32)
    alpha = part[..., 3:] / 255.0
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    frame[fy0:fy1, fx0:fx1] = (region * (1 - alpha) + part[..., :3] * alpha).astype(np.uint8)


def _draw_player(frame: np.ndarray, look: PlayerLook, image: np.ndarray, figure: Figure) -> None:
    """Draw one player's figure: body, head, instrument, bow, arms, hands and fingers."""
    import cv2

    height = frame.shape[0]
    points = figure.keypoints[:, :2]
    x, y, half_w, half_h = figure.body
    cv2.ellipse(frame, (int(x), int(y)), (int(half_w), int(half_h)), 0, 0, 360, look.shirt, -1)
    nose = points[kinematics.NOSE]
    cv2.circle(frame, (int(nose[0]), int(nose[1])), int(figure.head_radius), look.skin, -1)
    _paste(frame, image, figure.instrument_centre, figure.instrument_angle)
    if figure.bow is not None:
        start, end = (tuple(int(v) for v in end) for end in figure.bow)
        cv2.line(frame, start, end, (235, 220, 180), max(1, height // 120))
    arm = max(2, height // 28)
    sleeve = tuple(int(0.65 * c) for c in look.shirt)  # darker, to show against the body
    for shoulder, elbow, wrist, index in (
        (kinematics.RIGHT_SHOULDER, kinematics.RIGHT_ELBOW, kinematics.RIGHT_WRIST,
         kinematics.RIGHT_INDEX),
        (kinematics.LEFT_SHOULDER, kinematics.LEFT_ELBOW, kinematics.LEFT_WRIST,
         kinematics.LEFT_INDEX),
    ):  # fmt: skip
        joints = [tuple(int(v) for v in points[i]) for i in (shoulder, elbow, wrist)]
        cv2.line(frame, joints[0], joints[1], sleeve, arm)
        cv2.line(frame, joints[1], joints[2], sleeve, arm)
        cv2.circle(frame, joints[2], max(2, height // 45), look.skin, -1)
        finger = tuple(int(v) for v in points[index])
        cv2.line(frame, joints[2], finger, look.skin, max(1, height // 90))


def _shift(frame: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move the picture by whole pixels (camera shake), repeating the edge it uncovers."""
    import cv2

    if dy == 0 and dx == 0:
        return frame
    height, width = frame.shape[:2]
    matrix = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    return cv2.warpAffine(
        frame, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
    )


def render_video(
    path: str,
    looks: list[PlayerLook],
    players: tuple[tuple[PlayedNote, ...], ...],
    seconds: float,
    size: tuple[int, int],
    rng: np.random.Generator,
    ffmpeg: str,
    keypoints_path: str | None = None,
) -> int:
    """Render and encode the clip (H.264, yuv420p, no audio); returns the frame count.

    With ``keypoints_path``, the figures' true keypoints go there too (see
    :func:`write_keypoints`), camera shake included.
    """
    width, height = size
    frames = int(np.ceil(seconds * FPS))
    times = np.arange(frames) / FPS
    motions = [motion_signals(notes, times, rng) for notes in players]
    background = _background(rng, width, height)
    region_width = width // len(looks)
    images = [_prepare_image(look, region_width, height) for look in looks]
    light = 1.0 + 0.08 * smooth_noise(rng, times, 0.05, 0.4)
    limit = max(1, width // 200)
    shake = np.cumsum(rng.normal(0, 0.3, size=(frames, 2)), axis=0)
    shake = np.clip(shake - np.linspace(0, 1, frames)[:, None] * shake[-1], -limit, limit)
    shake = np.round(shake).astype(int)
    noise_bank = np.round(rng.normal(0, 2.0, size=(4, height, width, 3))).astype(np.float32)
    command = [
        ffmpeg, "-hide_banner", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{width}x{height}", "-r", "30000/1001", "-i", "pipe:0",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-threads", "1", "-movflags", "+faststart", path,
    ]  # fmt: skip
    keypoints = np.zeros((len(looks), frames, kinematics.LANDMARKS, 3), np.float32)

    def pictures() -> Iterator[bytes]:
        for i in range(frames):
            frame = background.copy()
            for j, look in enumerate(looks):
                centre_x = (j + 0.5) * region_width
                figure = player_keypoints(
                    look.instrument, motions[j], i, centre_x, region_width, height
                )
                _draw_player(frame, look, images[j], figure)
                keypoints[j, i] = figure.keypoints
                keypoints[j, i, :, :2] += (shake[i][1], shake[i][0])
            frame = _shift(frame, int(shake[i][0]), int(shake[i][1]))
            lit = frame.astype(np.float32) * np.float32(light[i]) + noise_bank[i % len(noise_bank)]
            yield np.clip(lit, 0, 255, out=lit).astype(np.uint8).tobytes()

    result = feed(command, pictures())
    if result.returncode != 0:
        raise MediaError(f"ffmpeg could not encode {path}", ffmpeg_message(result.stderr))
    if keypoints_path is not None:
        write_keypoints(keypoints_path, keypoints, FPS, [look.instrument for look in looks])
    return frames


def write_keypoints(path: str, keypoints: np.ndarray, rate: float, instruments: list[str]) -> None:
    """Save a clip's true keypoints as ``.npz``: ``keypoints`` ``(players, frames, 33, 3)``
    float32 BlazePose ``(x, y, visibility)`` in pixels of the video, ``fps``, ``instruments``.
    Read them back with :func:`vimss_cli.vision.pose_motion.read_keypoints`."""
    np.savez_compressed(
        path, keypoints=keypoints, fps=np.float64(rate), instruments=np.array(instruments)
    )
