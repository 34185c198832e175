"""Equal panels side by side: the URMP layout, told by its seams.

URMP's videos (and many made like them) put each player's own recording in a panel of
equal width, the panels abutting. Where two panels meet, the picture changes abruptly down
the whole height of the frame: a *seam*, one column wide, whichever way the content runs.
A natural picture rarely has such a line, and never several at equal spacing.

:func:`panel_count` finds how many equal panels a picture is made of, so that a video whose
players were not all found (a player blown up to fill its panel can be missed by the person
detector) gets one player per panel (:func:`fit_to_panels`): a panel nobody was seen in is
taken whole, with a warning, and ``--players N`` or ``--boxes`` remain the way to overrule it.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

from vimss_cli.instruments import MAX_PLAYERS

#: A row "jumps" at a column when its grey level changes by more than this between the two
#: neighbouring pixels.
JUMP_LEVEL = 20.0
#: A seam: the share of rows that jump there, above the share at the columns around it. The
#: real-footage panel videos' seams measure 0.28 to 0.65, re-encoded at 480 lines included
#: (scaling smears them); 0.15 found false panels in one of 60 videos without any, 0.2 none.
MIN_SEAM_CONTRAST = 0.2
#: ... and it runs down the picture: in at least :data:`MIN_SEAM_THIRDS` of the picture's
#: three horizontal thirds, the share there is this much above the columns around it (an
#: object's edge down a quarter of the picture is in one third; the panel videos' seams are
#: in two or three, 0.11 the weakest).
MIN_THIRD_CONTRAST = 0.1
MIN_SEAM_THIRDS = 2
#: Columns on either side compared with a seam candidate (decoded pixels): x264 smears an
#: edge over a pixel or two, so the two nearest columns are left out.
_RING_NEAR, _RING_FAR = 2, 6
#: Where a seam may lie from its place in an equal split, as a share of the width.
SEAM_TOLERANCE = 0.006
#: A panel's grey levels spread by more than this (standard deviation): a flat one, as the
#: black bars beside a portrait video are, is no panel.
MIN_PANEL_SPREAD = 8.0


def seam_strength(frames: list[np.ndarray], bands: int = 1) -> np.ndarray:
    """How strongly each column boundary is a seam, over the whole picture and in each of
    ``bands`` horizontal bands of it (one pass over the frames).

    Args:
        frames: ``(H, W, 3)`` uint8 RGB pictures of one video (a seam stays put).

    Returns:
        ``(1 + bands, W - 1)`` float (``(W - 1,)`` when ``bands`` is 1): row 0 for the whole
        picture, then one per band, top to bottom. Entry ``x`` is for the boundary between
        columns ``x`` and ``x + 1``: the share of rows that jump there (its lower quartile
        over ``frames``: a seam stays put), less the 90th percentile of that share at the
        columns 2 to 6 away (0 at the edges).
    """
    height = frames[0].shape[0]
    rows = [slice(0, height)]
    if bands > 1:
        rows += [slice(height * k // bands, height * (k + 1) // bands) for k in range(bands)]
    shares = []  # per frame: (len(rows), W - 1)
    for frame in frames:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        grey = np.asarray(cv2.GaussianBlur(grey, (1, 5), 0))  # along the columns only
        jumps = np.abs(np.diff(grey, axis=1)) > JUMP_LEVEL
        shares.append([jumps[part].mean(axis=0) for part in rows])
    share = np.quantile(shares, 0.25, axis=0)  # a seam in three frames of four
    strengths = np.stack([_against_ring(part) for part in share])
    return strengths if bands > 1 else strengths[0]


def _against_ring(share: np.ndarray) -> np.ndarray:
    """``(W - 1,)`` shares of rows jumping -> each less the 90th percentile of the columns 2
    to 6 away (0 at the edges)."""
    strength = np.zeros(share.shape, np.float64)
    for x in range(_RING_FAR, share.size - _RING_FAR):
        ring = np.concatenate(
            [share[x - _RING_FAR : x - _RING_NEAR + 1], share[x + _RING_NEAR : x + _RING_FAR + 1]]
        )
        strength[x] = share[x] - np.percentile(ring, 90)
    return strength


def panel_edges(count: int, width: int) -> list[int]:
    """The ``count + 1`` column edges of ``count`` equal panels across ``width`` pixels."""
    return [round(width * k / count) for k in range(count + 1)]


def panel_count(frames: list[np.ndarray], most: int = MAX_PLAYERS) -> int | None:
    """The number of equal panels side by side the pictures are made of (2 to ``most``),
    or ``None`` when they show no such layout.

    Every boundary of an equal split into ``n`` panels must be a seam (within
    :data:`SEAM_TOLERANCE` of the width; down the picture: in two of its thirds at least)
    and every panel must show something (not one flat
    colour in any frame: colour bars are no panels); the largest such ``n`` is returned, so
    four panels are not taken for two.
    """
    if not frames:
        return None
    strength, *thirds = seam_strength(frames, bands=3)
    width = strength.size + 1
    reach = max(2, round(SEAM_TOLERANCE * width))
    down = np.sum([third > MIN_THIRD_CONTRAST for third in thirds], axis=0)
    seams = (strength > MIN_SEAM_CONTRAST) & (down >= MIN_SEAM_THIRDS)

    def is_seam(x: float) -> bool:
        left, right = max(0, round(x) - reach - 1), min(seams.size, round(x) + reach)
        return bool(seams[left:right].any())

    def all_show_something(count: int) -> bool:  # black bars beside a picture: no panels
        edges = panel_edges(count, width)
        return all(
            min(float(frame[:, a:b].std()) for frame in frames) > MIN_PANEL_SPREAD
            for a, b in pairwise(edges)
        )

    found = None
    for count in range(2, most + 1):
        if all(is_seam(width * k / count) for k in range(1, count)) and all_show_something(count):
            found = count
    return found


@dataclass(frozen=True)
class PanelFit:
    """Players fitted to equal panels, one per panel (URMP's layout), left to right.

    Attributes:
        people: per panel, the index (into the people given) of its player, or ``None`` when
            nobody was seen in it (the whole panel is then the player's box).
        boxes: per panel, ``(x, y, w, h)`` in the frame's pixels: the player's box kept
            within its panel, or the whole panel.
        empty: the panels (0-based) nobody was seen in.
        crowded: ``(panel, people seen there)`` for panels where more than one was seen (the
            one who most clearly holds an instrument is kept).
    """

    people: list[int | None]
    boxes: list[tuple[int, int, int, int]]
    empty: list[int]
    crowded: list[tuple[int, int]]

    @property
    def changed(self) -> bool:
        """Whether the panels changed anything: a panel was empty or crowded."""
        return bool(self.empty or self.crowded)


def fit_to_panels(
    centres: list[float],
    boxes: list[tuple[int, int, int, int]],
    strength: list[float],
    count: int,
    size: tuple[int, int],
) -> PanelFit:
    """One player per panel: each person goes to the panel their face's centre lies in; a
    panel seen with several keeps the strongest, one seen with nobody is taken whole.

    Args:
        centres: each person's face centre, x in pixels of a frame of ``size``.
        boxes: each person's ``(x, y, w, h)`` box in the same pixels.
        strength: how clearly each person holds an instrument (higher is kept).
        count: the number of equal panels.
        size: the frame's ``(width, height)``.
    """
    width, height = size
    edges = panel_edges(count, width)
    members: list[list[int]] = [[] for _ in range(count)]
    for j, x in enumerate(centres):
        panel = min(count - 1, max(0, bisect_right(edges, x) - 1))
        members[panel].append(j)
    people: list[int | None] = []
    fitted, empty, crowded = [], [], []
    for panel, (left, right) in enumerate(pairwise(edges)):
        if not members[panel]:
            people.append(None)
            fitted.append((left, 0, right - left, height))
            empty.append(panel)
            continue
        if len(members[panel]) > 1:
            crowded.append((panel, len(members[panel])))
        j = max(members[panel], key=lambda i: strength[i])
        x, y, w, h = boxes[j]
        x0, x1 = max(left, x), min(right, x + w)
        people.append(j)
        fitted.append((x0, y, max(1, x1 - x0), h) if x1 > x0 else (left, y, right - left, h))
    return PanelFit(people, fitted, empty, crowded)
