"""Picture: film the ensemble, one player per region, left to right in track order.

Each player is a simple figure holding its instrument's picture on a background shared by
the whole frame. Motion that carries information follows the player's own notes: a jolt
at each onset, the bow travelling during a string note (turning at each new note), the
chest emptying during a wind note and filling in rests, fingers changing with pitch; in
rests the player is still. Motion that carries none is added on top: a slow sway of each
player, camera shake, changing light and sensor noise. Frames go to ffmpeg (libx264).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import numpy as np

from vimss_cli.errors import MediaError
from vimss_cli.synth.performance import PlayedNote

STRINGS = {"vn", "va", "vc", "db"}
#: Instruments held upright in front of the body (the rest are held out sideways).
UPRIGHT = {"vc", "db", "ob", "cl", "bn", "sax", "tba"}
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


@dataclass
class _Motion:
    """Per-frame motion signals of one player, precomputed for the whole clip."""

    active: np.ndarray  # 1 while a note sounds
    jolt: np.ndarray  # decaying pulse after each onset
    bow: np.ndarray  # bow position in [-1, 1] (strings)
    chest: np.ndarray  # breath in [0, 1] (winds and brass)
    pitch: np.ndarray  # sounding pitch, 0 in rests
    sway: np.ndarray  # nuisance: horizontal sway in [-1, 1]
    nod: np.ndarray  # nuisance: head movement in [-1, 1]


def _smooth(rng: np.random.Generator, times: np.ndarray, slow: float, fast: float) -> np.ndarray:
    out = np.zeros_like(times)
    for _ in range(3):
        out += np.sin(2 * np.pi * rng.uniform(slow, fast) * times + rng.uniform(0, 2 * np.pi))
    return out / 3


def motion_signals(
    notes: tuple[PlayedNote, ...], times: np.ndarray, rng: np.random.Generator
) -> _Motion:
    """The motion of one player at ``times`` (seconds) from its notes, plus nuisance motion."""
    active = np.zeros_like(times)
    jolt = np.zeros_like(times)
    bow = np.zeros_like(times)
    pitch = np.zeros_like(times)
    position = -1.0
    for index, note in enumerate(notes):
        inside = (times >= note.onset) & (times < note.onset + note.duration)
        active[inside] = 1.0
        pitch[inside] = note.pitch
        after = times >= note.onset
        jolt[after] += np.exp(-(times[after] - note.onset) / 0.12) * (note.velocity / 127)
        direction = 1.0 if index % 2 == 0 else -1.0
        travel = np.clip((times[inside] - note.onset) / max(note.duration, 1e-3), 0, 1)
        start = position
        bow[inside] = start + direction * 2.0 * travel * (0.5 + note.velocity / 254)
        position = float(np.clip(start + direction * 2.0 * (0.5 + note.velocity / 254), -1, 1))
        rest = times >= note.onset + note.duration
        bow[rest] = position
    bow = np.clip(bow, -1.0, 1.0)
    chest = np.zeros_like(times)
    level = 0.5
    step = times[1] - times[0] if times.size > 1 else 1 / FPS
    for i in range(times.size):
        level = level - 0.2 * step if active[i] else level + 3.0 * (1.0 - level) * step
        chest[i] = level = float(np.clip(level, 0.0, 1.0))
    return _Motion(
        active=active,
        jolt=np.clip(jolt, 0, 1),
        bow=bow,
        chest=chest,
        pitch=pitch,
        sway=_smooth(rng, times, 0.05, 0.3),
        nod=_smooth(rng, times, 0.1, 0.5),
    )


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


def _draw_player(
    frame: np.ndarray,
    look: PlayerLook,
    image: np.ndarray,
    motion: _Motion,
    index: int,
    centre_x: float,
    region_width: int,
) -> None:
    import cv2

    height = frame.shape[0]
    sway = 0.04 * region_width * motion.sway[index]
    jolt = motion.jolt[index]
    chest = motion.chest[index] if look.instrument not in STRINGS else 0.3
    x = centre_x + sway
    head = (x + 0.01 * height * motion.nod[index], 0.28 * height + 0.03 * height * jolt)
    body_w = min(0.32 * region_width, 0.16 * height) * (1 + 0.12 * chest)
    body_h = 0.22 * height * (1 + 0.04 * chest)
    cv2.ellipse(
        frame, (int(x), int(0.56 * height)), (int(body_w), int(body_h)), 0, 0, 360, look.shirt, -1
    )
    cv2.circle(frame, (int(head[0]), int(head[1])), int(0.07 * height), look.skin, -1)
    tilt = 8.0 * jolt
    if look.instrument in UPRIGHT:
        low = look.instrument in ("vc", "db", "tba")
        centre = (x, (0.62 if low else 0.5) * height + 0.025 * height * jolt)
        _paste(frame, image, centre, tilt)
    else:
        centre = (x - 0.15 * region_width, 0.33 * height + 0.025 * height * jolt)
        angle = (20.0 if look.instrument in ("vn", "va") else 5.0) + tilt
        _paste(frame, image, centre, angle)
    if look.instrument in STRINGS:
        # the bow: a line across the strings that travels with each note
        if look.instrument in ("vc", "db"):
            mid = np.array([x + 0.18 * region_width * motion.bow[index], 0.66 * height])
            direction = np.array([1.0, 0.08])
        else:
            mid = np.array([centre[0] + 0.12 * region_width * motion.bow[index], 0.36 * height])
            direction = np.array([0.6, 0.8])
        half = 0.22 * height * direction
        start, end = (mid - half).astype(int), (mid + half).astype(int)
        cv2.line(frame, tuple(start), tuple(end), (235, 220, 180), max(1, height // 120))
        # the bowing arm: from the right shoulder to the hand holding the bow's frog
        shoulder = (int(x + 0.8 * body_w), int(0.42 * height))
        hand = tuple(int(v) for v in (mid + 0.6 * half))
        cv2.line(frame, shoulder, hand, look.shirt, max(2, height // 28))
        cv2.circle(frame, hand, max(2, height // 45), look.skin, -1)
    # fingers: hands on the instrument whose places follow the pitch while a note sounds
    pitch = int(motion.pitch[index])
    if pitch:
        for bit in range(3):
            if (pitch >> bit) & 1:
                dot = (int(centre[0] + (bit - 1) * 0.05 * height), int(centre[1] - 0.05 * height))
                cv2.circle(frame, dot, max(2, height // 50), look.skin, -1)


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
) -> int:
    """Render and encode the clip (H.264, yuv420p, no audio); returns the frame count."""
    width, height = size
    frames = int(np.ceil(seconds * FPS))
    times = np.arange(frames) / FPS
    motions = [motion_signals(notes, times, rng) for notes in players]
    background = _background(rng, width, height)
    region_width = width // len(looks)
    images = [_prepare_image(look, region_width, height) for look in looks]
    light = 1.0 + 0.08 * _smooth(rng, times, 0.05, 0.4)
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
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stdin is not None
    try:
        for i in range(frames):
            frame = background.copy()
            for j, look in enumerate(looks):
                centre_x = (j + 0.5) * region_width
                _draw_player(frame, look, images[j], motions[j], i, centre_x, region_width)
            frame = _shift(frame, int(shake[i][0]), int(shake[i][1]))
            lit = frame.astype(np.float32) * np.float32(light[i]) + noise_bank[i % len(noise_bank)]
            process.stdin.write(np.clip(lit, 0, 255, out=lit).astype(np.uint8).tobytes())
        process.stdin.close()
    except BrokenPipeError:
        pass
    finally:
        if process.poll() is None and not process.stdin.closed:
            process.stdin.close()
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        returncode = process.wait()
    if returncode != 0:
        raise MediaError(f"ffmpeg could not encode {path}", stderr.strip()[-300:] or None)
    return frames
