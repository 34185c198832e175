"""URMP-layout test videos composed from the real instrument photos in tests/data/instruments.

K players side by side, left to right, each photo in its own strip of a common background,
moving (a small sway) while "playing". The ground-truth box of each player is the union of its
photo's opaque pixels over the whole clip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from vimss_cli.ffmpeg_io import ffmpeg_executable

PHOTOS = Path(__file__).parent / "data" / "instruments"
PHOTO_OF = {"vn": "violin", "vc": "cello", "tpt": "trumpet", "bn": "bassoon"}


def load_photo(name: str) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA photo from tests/data/instruments."""
    image = cv2.imread(str(PHOTOS / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


def _background(kind: str, width: int, height: int) -> np.ndarray:
    if kind == "plain":
        return np.full((height, width, 3), (92, 96, 104), np.uint8)
    ramp = np.linspace(60, 130, width, dtype=np.float32)[None, :, None]
    shade = np.linspace(-15, 15, height, dtype=np.float32)[:, None, None]
    return np.clip(ramp + shade + np.array([0, 6, 14], np.float32), 0, 255).astype(np.uint8)


def _paste(canvas: np.ndarray, photo: np.ndarray, x: int, y: int) -> None:
    h, w = photo.shape[:2]
    alpha = photo[..., 3:4].astype(np.float32) / 255.0
    region = canvas[y : y + h, x : x + w].astype(np.float32)
    canvas[y : y + h, x : x + w] = (photo[..., :3] * alpha + region * (1 - alpha)).astype(np.uint8)


def compose_scene(
    path: Path,
    instruments: list[str],
    *,
    size: tuple[int, int] = (320, 180),
    seconds: float = 3.0,
    fps: float = 10.0,
    background: str = "plain",
    active: list[list[tuple[float, float]]] | None = None,
    noise: float = 0.0,
    seed: int = 0,
    audio_seconds: float | None = None,
    audio_rate: int = 8000,
) -> list[tuple[int, int, int, int]]:
    """Write an mp4 (H.264 + AAC noise) and return the true boxes ``(x, y, w, h)``.

    Args:
        active: per player, the ``(start, stop)`` seconds in which it sways ("plays");
            default: every player sways all the time.
        noise: standard deviation of per-frame pixel noise (sensor noise), in grey levels.
        audio_seconds: length of the audio track (default: ``seconds``; 0 for none).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    count = len(instruments)
    strip = width / count
    active = active or [[(0.0, seconds)] for _ in instruments]
    placed = []
    for j, code in enumerate(instruments):
        photo = load_photo(PHOTO_OF[code])
        h, w = photo.shape[:2]
        scale = min(0.8 * height / h, 0.75 * strip / w) * rng.uniform(0.85, 1.0)
        photo = cv2.resize(photo, (max(1, round(w * scale)), max(1, round(h * scale))))
        h, w = photo.shape[:2]
        jitter = rng.uniform(-0.05, 0.05) * strip
        x = int(j * strip + (strip - w) / 2 + jitter)
        y = int((height - h) / 2 + rng.uniform(-0.05, 0.05) * height)
        placed.append((photo, x, y))
    sway = max(1, round(0.01 * width))
    frames = round(seconds * fps)
    union = [[np.inf, np.inf, -np.inf, -np.inf] for _ in instruments]
    base = _background(background, width, height)
    command = [
        ffmpeg_executable(),
        *("-hide_banner", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"),
        *("-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0"),
    ]
    audio_seconds = seconds if audio_seconds is None else audio_seconds
    if audio_seconds > 0:
        command += ["-f", "lavfi", "-i", f"anoisesrc=d={audio_seconds}:r={audio_rate}:a=0.1"]
    command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", str(path)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert process.stdin is not None
    for n in range(frames):
        t = n / fps
        canvas = base.copy()
        for j, (photo, x, y) in enumerate(placed):
            playing = any(a <= t < b for a, b in active[j])
            dx = round(sway * np.sin(2 * np.pi * 2.0 * t + j)) if playing else 0
            dy = round(sway * np.cos(2 * np.pi * 1.5 * t + j)) if playing else 0
            px, py = (
                min(max(0, x + dx), width - photo.shape[1]),
                min(max(0, y + dy), height - photo.shape[0]),
            )
            _paste(canvas, photo, px, py)
            ys, xs = np.nonzero(photo[..., 3] > 32)
            box = union[j]
            box[0], box[1] = min(box[0], px + xs.min()), min(box[1], py + ys.min())
            box[2], box[3] = max(box[2], px + xs.max() + 1), max(box[3], py + ys.max() + 1)
        if noise:
            canvas = np.clip(canvas + rng.normal(0, noise, canvas.shape), 0, 255).astype(np.uint8)
        process.stdin.write(canvas.tobytes())
    process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}")
    return [(int(a), int(b), int(c - a), int(d - b)) for a, b, c, d in union]


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)
