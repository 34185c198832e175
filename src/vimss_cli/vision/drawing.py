"""A frame with the players' boxes drawn on it, for checking a layout before a long run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vimss_cli.atomic import atomic_path
from vimss_cli.errors import InputError, OutputError
from vimss_cli.stem_writer import check_output_folder, ensure_writable_directory
from vimss_cli.vision.analysis import VideoAnalysis

COLOURS = [(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255)]


#: Keypoint pairs drawn as the pose's skeleton: shoulders, arms, hips, sides.
SKELETON = [(11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24)]


def draw_players(analysis: VideoAnalysis) -> np.ndarray:
    """The analysis snapshot ``(H, W, 3)`` uint8 RGB with the players drawn: box, pose (when
    found as a person) and a label ``"2 vn 0.93"`` on a filled background, all sized to the
    picture."""
    image = analysis.snapshot.copy()
    scale = np.array([image.shape[1] / analysis.info.width, image.shape[0] / analysis.info.height])
    thickness = max(1, round(image.shape[1] / 320))
    font_scale = max(0.35, image.shape[1] / 1000)
    for player in analysis.players:
        x, y, w, h = player.box
        colour = COLOURS[(player.number - 1) % len(COLOURS)]
        top_left = (round(x * scale[0]), round(y * scale[1]))
        bottom_right = (round((x + w) * scale[0]) - 1, round((y + h) * scale[1]) - 1)
        cv2.rectangle(image, top_left, bottom_right, colour, thickness)
        if player.keypoints is not None:
            points = player.keypoints[:, :2] * scale
            seen = player.keypoints[:, 2] > 0.5
            for a, b in SKELETON:
                if seen[a] and seen[b]:
                    start, stop = points[a].round().astype(int), points[b].round().astype(int)
                    cv2.line(image, tuple(start), tuple(stop), colour, thickness, cv2.LINE_AA)
        guess = player.guess
        label = f"{player.number} {guess.instrument or '?'} {guess.confidence:.2f}"
        font = cv2.FONT_HERSHEY_SIMPLEX
        (text_w, text_h), base = cv2.getTextSize(label, font, font_scale, thickness)
        # inside the picture, also for a box at its right edge (a trial found labels cut off)
        x0 = max(0, min(top_left[0], image.shape[1] - text_w - 5))
        y0 = max(0, min(top_left[1], image.shape[0] - text_h - base - 5))
        cv2.rectangle(image, (x0, y0), (x0 + text_w + 4, y0 + text_h + base + 4), colour, -1)
        cv2.putText(
            image, label, (x0 + 2, y0 + text_h + 2), font, font_scale, (0, 0, 0), thickness,
            cv2.LINE_AA,
        )  # fmt: skip
    return image


def players_png(analysis: VideoAnalysis) -> bytes:
    """:func:`draw_players` encoded as PNG bytes (for a page that embeds it)."""
    frame = cv2.cvtColor(draw_players(analysis), cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", frame)[1].tobytes()


def check_png_target(path: Path, force: bool = False) -> Path:
    """Refuse a target that is not a ``.png``, lies under a file, or exists (unless
    ``force``); checked before a long analysis, and again when writing. Missing folders are
    made when writing, as ``separate`` makes its output folder."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"--out must name a .png file, got {path}")
    check_output_folder(path.parent)
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
    ensure_writable_directory(path.parent)
    with atomic_path(path) as temporary:
        try:
            ok = cv2.imwrite(str(temporary), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        except cv2.error:
            ok = False
        if not ok:
            raise OutputError(f"cannot write {path}")
    return path
