"""Where the players are: boxes, left to right, from a few frames and the motion over time.

URMP-style videos show the players side by side, left to right in track order, on a common
background. The layout is found from what ships offline:

* foreground: pixels that differ from the background colour (the median of the frame's
  border), averaged over sampled frames, summed per column;
* motion energy per column over the whole video (players move, the backdrop does not);
* people: OpenCV's Haar frontal-face cascade and its HOG people detector, counted per frame;
* the layout prior: players stand side by side, so the picture splits into vertical strips.

The number of players is ``--players N`` when given, else the number of separate
foreground/motion strips, or the number of people the detectors agree on when that is larger
(players close together merge into one strip). The strips are then cut at the
emptiest columns near equal divisions and each player's box is the foreground inside its strip.
``--boxes`` overrides all of it. Boxes are ``(x, y, w, h)`` in source pixels, numbered left to
right.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import cv2
import cv2.data
import numpy as np

from vimss_cli.errors import InputError
from vimss_cli.instruments import MAX_PLAYERS

Box = tuple[int, int, int, int]

#: A pixel is foreground when a channel differs from the background colour by more than this.
FOREGROUND_THRESHOLD = 40
#: A column is occupied when this share of its pixels is foreground (and ``MIN_PIXELS``)...
OCCUPIED_SHARE = 0.03
MIN_PIXELS = 2
#: ... or when its motion is at least this share of the most moving column's.
MOVING_SHARE = 0.2
#: Mean motion energy below which a video counts as still.
MIN_MOTION = 1e-3
#: Rows foreground over more than this share of the width are a floor or a band: ignored.
FULL_WIDTH_ROW = 0.9
#: Least contrast between panel centres and edges (share of the profile's peak) for a layout.
LAYOUT_CONTRAST = 0.2
#: HOG people detections weaker than this are ignored (instrument photos alone reach 0.9).
HOG_MIN_WEIGHT = 1.0


@dataclass(frozen=True)
class Layout:
    """Players found in a video.

    Attributes:
        boxes: ``(x, y, w, h)`` per player in the pixels of the analysed frames, left to right.
        source: what decided the number of players: ``"boxes"``, ``"players"`` (the hint),
            ``"faces"``, ``"people"`` (HOG), ``"layout"`` (equal panels) or ``"foreground"``.
    """

    boxes: list[Box]
    source: str


def parse_boxes(text: str, width: int, height: int) -> list[Box]:
    """``"x,y,w,h;x,y,w,h"`` -> boxes sorted left to right, each checked to lie in the frame."""
    boxes: list[Box] = []
    for number, part in enumerate(p for p in text.split(";") if p.strip()):
        fields = [f.strip() for f in part.split(",")]
        try:
            x, y, w, h = (int(f) for f in fields)
        except ValueError:
            raise InputError(
                f"--boxes expects 'x,y,w,h;x,y,w,h' in whole pixels, got {part.strip()!r}"
            ) from None
        if w <= 0 or h <= 0:
            raise InputError(f"box {number + 1} ({part.strip()}) has no area")
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise InputError(
                f"box {number + 1} ({part.strip()}) lies outside the {width}x{height} frame"
            )
        boxes.append((x, y, w, h))
    if not boxes:
        raise InputError(f"--boxes expects 'x,y,w,h;x,y,w,h', got {text!r}")
    return sorted(boxes, key=lambda b: b[0] + b[2] / 2)


def background_colour(frame: np.ndarray, border: float = 0.04) -> np.ndarray:
    """Median RGB of the frame's top, left and right border strips: ``(3,)`` float32."""
    height, width = frame.shape[:2]
    band_x = max(1, int(width * border))
    band_y = max(1, int(height * border))
    pixels = np.concatenate(
        [
            frame[:band_y].reshape(-1, 3),
            frame[:, :band_x].reshape(-1, 3),
            frame[:, -band_x:].reshape(-1, 3),
        ]
    )
    return np.median(pixels, axis=0).astype(np.float32)


def background_model(frame: np.ndarray, border: float = 0.04) -> np.ndarray:
    """A smooth background ``(H, W, 3)`` float32 fitted to the frame's border strips.

    Per channel, a quadratic surface in ``(x, y)`` is fitted by least squares to the pixels of
    the four border strips, then refitted without the pixels it explains worst (players that
    reach the border), so a plain or a graded backdrop is modelled and the players are not.
    """
    height, width = frame.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    band_x, band_y = max(1, int(width * border)), max(1, int(height * border))
    on_border = (xs < band_x) | (xs >= width - band_x) | (ys < band_y) | (ys >= height - band_y)
    u, v = xs / width - 0.5, ys / height - 0.5

    def design(mask: np.ndarray | slice) -> np.ndarray:
        uu, vv = u[mask], v[mask]
        return np.stack([np.ones_like(uu), uu, vv, uu * uu, vv * vv, uu * vv], axis=-1)

    a = design(on_border)
    values = frame[on_border].astype(np.float64)
    keep = np.ones(len(values), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(a[keep], values[keep], rcond=None)
        residual = np.abs(a @ coef - values).max(axis=1)
        keep = residual <= max(np.percentile(residual, 75), 8.0)
    return (design(slice(None)) @ coef).reshape(height, width, 3).astype(np.float32)


def foreground_fraction(frames: list[np.ndarray]) -> np.ndarray:
    """``(H, W)`` fraction of the sampled frames in which each pixel is foreground."""
    kernel = np.ones((2, 2), np.uint8)
    total = np.zeros(frames[0].shape[:2], np.float32)
    for frame in frames:
        distance = np.abs(frame.astype(np.float32) - background_model(frame)).max(axis=2)
        mask = (distance > FOREGROUND_THRESHOLD).astype(np.uint8)
        total += cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    return total / len(frames)


def _smooth(profile: np.ndarray, width: int) -> np.ndarray:
    width = max(1, width)
    return np.convolve(profile, np.ones(width) / width, mode="same")


def column_runs(occupied: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of occupied columns ``(W,)`` bool.

    Runs closer than 2 % of the width are merged; runs narrower than 2 % are dropped.
    """
    width = occupied.size
    runs: list[list[int]] = []
    for x in np.flatnonzero(occupied):
        if runs and x - runs[-1][1] <= max(1, int(0.02 * width)):
            runs[-1][1] = int(x) + 1
        else:
            runs.append([int(x), int(x) + 1])
    return [(a, b) for a, b in runs if b - a >= max(2, int(0.02 * width))]


def _detect_faces(grey: np.ndarray) -> list[Box]:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    side = max(12, grey.shape[0] // 20)
    found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=6, minSize=(side, side))
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]


def _detect_people(frame: np.ndarray) -> list[Box]:
    hog = cv2.HOGDescriptor()
    window_width, window_height = hog.winSize
    if frame.shape[0] < window_height or frame.shape[1] < window_width:
        return []  # smaller than one detection window (OpenCV 4.14 crashes on these)
    # an array already (cv2's stubs say a Sequence, which setSVMDetector's stubs refuse)
    hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector()))
    found, weights = hog.detectMultiScale(frame, winStride=(8, 8), padding=(8, 8), scale=1.05)
    return [
        (int(x), int(y), int(w), int(h))
        for (x, y, w, h), weight in zip(found, np.ravel(weights), strict=True)
        if weight > HOG_MIN_WEIGHT
    ]


def _distinct_by_column(boxes: list[Box]) -> list[Box]:
    """Drop boxes whose centre lies inside an already kept (larger) box's columns."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -b[2] * b[3]):
        centre = box[0] + box[2] / 2
        if all(not (k[0] <= centre < k[0] + k[2]) for k in kept):
            kept.append(box)
    return sorted(kept, key=lambda b: b[0])


def count_people(frames: list[np.ndarray]) -> tuple[int, str, list[float]]:
    """People the detectors agree on across frames: ``(count, detector, centre columns)``.

    For each detector, the count is the median per-frame count of column-distinct detections in
    every other frame, used only when at least half of those frames have one; else
    ``(0, "", [])``.
    """
    frames = frames[::2]  # detectors are the costly part: every other sampled frame
    for name, detect in (
        ("faces", lambda f: _detect_faces(cv2.equalizeHist(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)))),
        ("people", _detect_people),
    ):
        per_frame = [_distinct_by_column(detect(frame)) for frame in frames]
        counts = [len(boxes) for boxes in per_frame]
        if sum(c > 0 for c in counts) * 2 < len(frames):
            continue
        count = int(np.median(counts))
        if count == 0:
            continue
        typical = [boxes for boxes in per_frame if len(boxes) == count]
        centres = np.median([[b[0] + b[2] / 2 for b in boxes] for boxes in typical], axis=0)
        return count, name, [float(c) for c in centres]
    return 0, "", []


def _cuts(
    profile: np.ndarray, start: int, stop: int, count: int, centres: list[float]
) -> list[int]:
    """``count + 1`` strip edges over ``[start, stop)``.

    At the midpoints between people's centres when there is one centre per player, else at the
    emptiest column near each equal division.
    """
    if len(centres) == count:
        middle = [round((a + b) / 2) for a, b in pairwise(centres)]
        return [start, *middle, stop]
    span = (stop - start) / count
    smooth = _smooth(profile, int(0.01 * profile.size))
    edges = [start]
    for j in range(1, count):
        nominal = start + j * span
        low = int(max(edges[-1] + 1, nominal - span / 3))
        high = int(min(stop - 1, nominal + span / 3)) + 1
        if high <= low:
            edges.append(round(nominal))
            continue
        window = smooth[low:high]
        flat = np.flatnonzero(window <= window.min() + 1e-3 * max(float(smooth.max()), 1e-6))
        edges.append(low + int(np.median(flat)))  # the middle of the emptiest stretch
    return [*edges, stop]


def _tight_box(present: np.ndarray, occupied: np.ndarray, left: int, right: int, pad: float) -> Box:
    """Bounding box of what is present inside columns ``[left, right)``, padded, clipped."""
    height = present.shape[0]
    columns = np.flatnonzero(occupied[left:right])
    x0, x1 = left, right
    if columns.size:
        x0, x1 = left + int(columns[0]), left + int(columns[-1]) + 1
    rows = np.flatnonzero(present[:, x0:x1].sum(axis=1) >= MIN_PIXELS)
    y0, y1 = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, height)
    pad_x, pad_y = int(pad * (x1 - x0)), int(pad * (y1 - y0))
    x0, x1 = max(left, x0 - pad_x), min(right, x1 + pad_x)
    y0, y1 = max(0, y0 - pad_y), min(height, y1 + pad_y)
    return (x0, y0, x1 - x0, y1 - y0)


def layout_count(profile: np.ndarray, most: int = MAX_PLAYERS) -> int:
    """Players implied by the side-by-side prior: the K >= 2 equal panels that fit best.

    For each K, the contrast is the mean profile around the panel centres minus the mean
    profile around the edges between panels (each averaged over a third of a panel). The K
    with the highest contrast wins if that contrast is at least :data:`LAYOUT_CONTRAST` of
    the profile's peak; else 0 (no evidence of more than one player).
    """
    width = profile.size
    peak = float(profile.max()) if width else 0.0
    best, best_score = 0, LAYOUT_CONTRAST * peak
    for count in range(2, most + 1):
        panel = width / count
        reach = max(1, int(panel / 6))

        def around(x: float, reach: int = reach) -> float:
            return float(profile[max(0, int(x) - reach) : int(x) + reach + 1].mean())

        centres = float(np.mean([around((j + 0.5) * panel) for j in range(count)]))
        edges = float(np.mean([around(j * panel) for j in range(1, count)]))
        if centres - edges > best_score:
            best, best_score = count, centres - edges
    return best


def find_players(
    frames: list[np.ndarray],
    motion_profile: np.ndarray | None = None,
    players: int | None = None,
    pad: float = 0.02,
) -> Layout:
    """Find the players in sampled frames of one video.

    Args:
        frames: ``(H, W, 3)`` uint8 RGB frames spread over the video.
        motion_profile: ``(W,)`` mean motion energy per column, or ``None``.
        players: the number of players when the user knows it.
        pad: margin added around each foreground box, as a fraction of its size.

    Returns:
        The boxes, left to right, in the frames' pixels (empty when nothing is found).
    """
    if players is not None and not 1 <= players <= MAX_PLAYERS:
        raise InputError(f"--players must be between 1 and {MAX_PLAYERS}, got {players}")
    height, width = frames[0].shape[:2]
    present = foreground_fraction(frames) > 0
    present[present.mean(axis=1) > FULL_WIDTH_ROW] = False  # a floor or a band, not a player
    column_share = present.sum(axis=0) / height
    occupied = (column_share >= OCCUPIED_SHARE) & (present.sum(axis=0) >= MIN_PIXELS)
    profile = column_share
    if motion_profile is not None and motion_profile.max() > MIN_MOTION:
        # motion marks players on a backdrop that the colour test cannot separate
        moving = motion_profile / motion_profile.max()
        occupied |= moving >= MOVING_SHARE
        profile = np.maximum(profile / max(profile.max(), 1e-6), moving)
    runs = column_runs(occupied)
    count, source = len(runs), "foreground"
    panels = layout_count(profile)
    if panels > count:  # players whose instruments touch merge into one run
        count, source = panels, "layout"
    people, detector, centres = (0, "", []) if players else count_people(frames)
    if people > count:  # people standing close together merge into one strip
        count, source = people, detector
    else:
        centres = []
    if players:
        source = "players"
    count = min(players or count, MAX_PLAYERS)
    if count == 0:
        return Layout([], source)
    if len(runs) == count:
        # one strip per run, reaching to the middle of the gaps on either side
        middles = [(a[1] + b[0]) // 2 for a, b in pairwise(runs)]
        edges = [0, *middles, width]
    else:
        whole = centres or source == "layout" or not runs
        start, stop = (0, width) if whole else (runs[0][0], runs[-1][1])
        edges = _cuts(profile, start, stop, count, centres)
    boxes = [_tight_box(present, occupied, edges[j], edges[j + 1], pad) for j in range(count)]
    return Layout(boxes, source)
