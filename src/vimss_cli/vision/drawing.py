"""A frame with the players' boxes drawn on it, for checking a layout before a long run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vimss_cli.atomic import atomic_path
from vimss_cli.errors import OutputError
from vimss_cli.vision.analysis import VideoAnalysis

COLOURS = [(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255)]


def draw_players(analysis: VideoAnalysis) -> np.ndarray:
    """The analysis snapshot ``(H, W, 3)`` uint8 RGB with numbered, labelled boxes drawn."""
    image = analysis.snapshot.copy()
    scale_x = image.shape[1] / analysis.info.width
    scale_y = image.shape[0] / analysis.info.height
    thickness = max(1, round(image.shape[1] / 320))
    for player in analysis.players:
        x, y, w, h = player.box
        colour = COLOURS[(player.number - 1) % len(COLOURS)]
        top_left = (round(x * scale_x), round(y * scale_y))
        bottom_right = (round((x + w) * scale_x) - 1, round((y + h) * scale_y) - 1)
        cv2.rectangle(image, top_left, bottom_right, colour, thickness)
        label = f"{player.number} {player.guess.instrument or '?'} {player.guess.confidence:.2f}"
        origin = (top_left[0] + 2, max(12, top_left[1] + 12))
        cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return image


def check_png_target(path: Path, force: bool = False) -> Path:
    """Refuse a target that is not a ``.png`` in an existing folder, or an existing file
    unless ``force``; checked before a long analysis, and again when writing."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise OutputError(f"--out must name a .png file, got {path}")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: {path.parent} is not a directory")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if path.exists() and not force:
        raise OutputError(f"{path} already exists (use --force to overwrite it)")
    return path


def write_png(path: Path, image: np.ndarray, force: bool = False) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB to ``path`` as PNG, whole or not at all (a temporary
    file, then a rename); :class:`OutputError` when it cannot, or when ``path`` exists and
    not ``force``."""
    path = check_png_target(path, force)
    with atomic_path(path) as temporary:
        try:
            ok = cv2.imwrite(str(temporary), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        except cv2.error:
            ok = False
        if not ok:
            raise OutputError(f"cannot write {path}")
    return path
