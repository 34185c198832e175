"""How a generated player moves: per-frame motion signals from its notes, and its skeleton.

:func:`motion_signals` turns a player's notes into per-frame signals:

* **bow** (strings): a stroke turns at each bow change. Short notes close together share
  one bow (a slur of up to three notes), so not every note turns it. The bow travels
  faster on louder notes and stays still in rests.
* **fingers**: the fingering hand slides along the neck and its fingers change pattern
  at each new pitch; they hold their place through rests.
* **breath** (winds and brass): the chest empties while a phrase sounds and fills in the
  0.4 s before each phrase (a note after a rest of at least 0.25 s).
* **jolt**: a small nod of head and instrument at each onset, decaying in about 0.1 s.

Motion tied to no note is added on top: a slow sway and nod of every player, and in long
rests page turns and hand adjustments of the free hand.

:func:`player_keypoints` places the figure's skeleton in the frame as BlazePose's 33
landmarks ``(x, y, visibility)``, so the renders carry their true keypoints in the same
layout the pose estimator returns. The player faces the camera: its right side (odd/even as
in BlazePose: 12, 14, 16 are the right shoulder, elbow and wrist) is on the picture's left.
The bow is in the right hand; the left hand fingers the strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vimss_cli.synth.performance import PlayedNote

STRINGS = {"vn", "va", "vc", "db"}
#: Instruments held upright in front of the body (the rest are held out sideways).
UPRIGHT = {"vc", "db", "ob", "cl", "bn", "sax", "tba"}
#: Upright instruments that stand low, on the floor or on the lap.
LOW = {"vc", "db", "tba"}

#: BlazePose landmark indices used by the generated figures.
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR, MOUTH_LEFT, MOUTH_RIGHT = 0, 2, 5, 7, 8, 9, 10
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW = 11, 12, 13, 14
LEFT_WRIST, RIGHT_WRIST, LEFT_PINKY, RIGHT_PINKY = 15, 16, 17, 18
LEFT_INDEX, RIGHT_INDEX, LEFT_THUMB, RIGHT_THUMB = 19, 20, 21, 22
LEFT_HIP, RIGHT_HIP = 23, 24
LANDMARKS = 33

#: A rest at least this long (seconds) ends a phrase: the next note starts a new one.
PHRASE_REST = 0.25
#: Seconds of in-breath before a phrase.
INHALE = 0.4
#: Notes shorter than this, with at most :data:`SLUR_GAP` between them, may share a bow.
SLUR_NOTE = 0.4
SLUR_GAP = 0.15
#: Rests at least this long (seconds) may hold a page turn or a hand adjustment.
FIDGET_REST = 1.2


@dataclass
class Motion:
    """Per-frame motion signals of one player, for the whole clip (``T`` frames)."""

    active: np.ndarray  # (T,) 1 while a note sounds
    jolt: np.ndarray  # (T,) decaying pulse after each onset, in [0, 1]
    bow: np.ndarray  # (T,) bow position in [-1, 1] (strings)
    chest: np.ndarray  # (T,) breath in [0, 1] (winds and brass)
    pitch: np.ndarray  # (T,) sounding pitch, 0 in rests
    shift: np.ndarray  # (T,) fingering hand's place along the neck in [0, 1], held in rests
    fingers: np.ndarray  # (T,) int finger pattern (bits), held in rests
    free_hand: np.ndarray  # (T, 2) nuisance offset of the free hand, in frame heights
    sway: np.ndarray  # (T,) nuisance: horizontal sway in [-1, 1]
    nod: np.ndarray  # (T,) nuisance: head movement in [-1, 1]


def smooth_noise(
    rng: np.random.Generator, times: np.ndarray, slow: float, fast: float
) -> np.ndarray:
    """A slow random wave in [-1, 1] at ``times``: three sines of ``slow``..``fast`` Hz."""
    out = np.zeros_like(times)
    for _ in range(3):
        out += np.sin(2 * np.pi * rng.uniform(slow, fast) * times + rng.uniform(0, 2 * np.pi))
    return out / 3


def _bow_groups(notes: tuple[PlayedNote, ...], rng: np.random.Generator) -> list[list[int]]:
    """Indices of ``notes`` grouped into bows: short notes close together may share one."""
    groups: list[list[int]] = []
    for index, note in enumerate(notes):
        if groups and len(groups[-1]) < 3:
            previous = notes[groups[-1][-1]]
            gap = note.onset - (previous.onset + previous.duration)
            short = note.duration < SLUR_NOTE and previous.duration < SLUR_NOTE
            if short and gap < SLUR_GAP and rng.random() < 0.6:
                groups[-1].append(index)
                continue
        groups.append([index])
    return groups


def _bow(notes: tuple[PlayedNote, ...], times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(T,)`` bow position: each bow travels one way, farther when louder; still in rests."""
    bow = np.full_like(times, -1.0)
    position = -1.0
    for number, group in enumerate(_bow_groups(notes, rng)):
        first, last = notes[group[0]], notes[group[-1]]
        start_time, end_time = first.onset, last.onset + last.duration
        loudness = float(np.mean([notes[i].velocity for i in group])) / 127
        direction = 1.0 if number % 2 == 0 else -1.0
        span = 2.0 * (0.5 + loudness / 2)
        during = (times >= start_time) & (times < end_time)
        travel = np.clip((times[during] - start_time) / max(end_time - start_time, 1e-3), 0, 1)
        bow[during] = position + direction * span * travel
        position = float(np.clip(position + direction * span, -1, 1))
        bow[times >= end_time] = position
    return np.clip(bow, -1.0, 1.0)


def _chest(notes: tuple[PlayedNote, ...], times: np.ndarray, active: np.ndarray) -> np.ndarray:
    """``(T,)`` breath: spent while notes sound, taken in :data:`INHALE` s before a phrase."""
    inhaling = np.zeros(times.shape, bool)
    end = -np.inf
    for note in notes:
        if note.onset - end >= PHRASE_REST:
            inhaling |= (times >= note.onset - INHALE) & (times < note.onset)
        end = max(end, note.onset + note.duration)
    chest = np.zeros_like(times)
    level = 0.6
    step = times[1] - times[0] if times.size > 1 else 1 / 30
    for i in range(times.size):
        if inhaling[i]:
            level += 4.0 * (1.0 - level) * step
        elif active[i]:
            level -= 0.2 * step
        else:  # quiet breathing in long rests
            level += 0.5 * (0.6 - level) * step
        chest[i] = level = float(np.clip(level, 0.0, 1.0))
    return chest


def _free_hand(
    notes: tuple[PlayedNote, ...], times: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``(T, 2)`` nuisance moves of the free hand in long rests: page turns, adjustments."""
    offset = np.zeros((times.size, 2))
    rest_starts = [0.0] + [n.onset + n.duration for n in notes]
    rest_ends = [n.onset for n in notes] + [float(times[-1]) if times.size else 0.0]
    for start, end in zip(rest_starts, rest_ends, strict=True):
        if end - start < FIDGET_REST or rng.random() > 0.45:
            continue
        length = min(1.2, end - start - 0.2)
        begin = start + rng.uniform(0.1, end - start - length)
        inside = (times >= begin) & (times < begin + length)
        bump = np.sin(np.pi * (times[inside] - begin) / length)
        if rng.random() < 0.5:  # a page turn: the hand goes out to the stand and back
            target = np.array([rng.uniform(0.12, 0.2), rng.uniform(0.05, 0.12)])
        else:  # an adjustment: a small move
            target = rng.uniform(-0.04, 0.04, size=2)
        offset[inside] = bump[:, None] * target
    return offset


def motion_signals(
    notes: tuple[PlayedNote, ...], times: np.ndarray, rng: np.random.Generator
) -> Motion:
    """The motion of one player at ``times`` (seconds) from its notes, plus nuisance motion."""
    active = np.zeros_like(times)
    jolt = np.zeros_like(times)
    pitch = np.zeros_like(times)
    shift = np.full_like(times, 0.3)
    fingers = np.zeros(times.shape, np.int64)
    for note in notes:
        inside = (times >= note.onset) & (times < note.onset + note.duration)
        active[inside] = 1.0
        pitch[inside] = note.pitch
        after = times >= note.onset
        jolt[after] += np.exp(-(times[after] - note.onset) / 0.12) * (note.velocity / 127)
        shift[after] = (note.pitch % 19) / 18  # the hand holds its place until the next note
        fingers[after] = note.pitch % 16
    return Motion(
        active=active,
        jolt=np.clip(jolt, 0, 1),
        bow=_bow(notes, times, rng),
        chest=_chest(notes, times, active),
        pitch=pitch,
        shift=shift,
        fingers=fingers,
        free_hand=_free_hand(notes, times, rng),
        sway=smooth_noise(rng, times, 0.05, 0.3),
        nod=smooth_noise(rng, times, 0.1, 0.5),
    )


@dataclass(frozen=True)
class Figure:
    """Where one player's parts are in one frame (pixels)."""

    keypoints: np.ndarray  # (33, 3) BlazePose (x, y, visibility); visibility 0 = not drawn
    body: tuple[float, float, float, float]  # ellipse centre x, y and half axes
    head_radius: float
    instrument_centre: tuple[float, float]
    instrument_angle: float  # degrees, counter-clockwise
    bow: tuple[tuple[float, float], tuple[float, float]] | None  # the bow's two ends


def _elbow(shoulder: np.ndarray, wrist: np.ndarray, outward: float, height: int) -> np.ndarray:
    """An elbow bent down and ``outward`` (``-1`` picture left, ``+1`` right) of the arm."""
    return (shoulder + wrist) / 2 + np.array([0.045 * outward, 0.06]) * height


def _hand(points: np.ndarray, side: str, wrist: np.ndarray, spread: float, height: int) -> None:
    """Wrist, pinky, index and thumb of one hand; ``spread`` moves the index finger."""
    wrist_i, pinky_i, index_i, thumb_i = (
        (LEFT_WRIST, LEFT_PINKY, LEFT_INDEX, LEFT_THUMB)
        if side == "left"
        else (RIGHT_WRIST, RIGHT_PINKY, RIGHT_INDEX, RIGHT_THUMB)
    )
    points[wrist_i] = wrist
    points[index_i] = wrist + np.array([0.02 * spread, -0.022]) * height
    points[pinky_i] = wrist + np.array([-0.012 * spread, -0.016]) * height
    points[thumb_i] = wrist + np.array([0.0, 0.014]) * height


def player_keypoints(
    instrument: str, motion: Motion, frame: int, centre_x: float, region_width: int, height: int
) -> Figure:
    """The figure of a player of ``instrument`` at ``frame``, in the player's region."""
    sway = 0.04 * region_width * motion.sway[frame]
    jolt = float(motion.jolt[frame])
    breathing = instrument not in STRINGS
    chest = float(motion.chest[frame]) if breathing else 0.3
    x = centre_x + sway
    body_w = min(0.32 * region_width, 0.16 * height) * (1 + 0.12 * chest)
    body_h = 0.22 * height * (1 + 0.04 * chest)
    points = np.zeros((LANDMARKS, 2))
    nose = np.array([x + 0.01 * height * motion.nod[frame], 0.28 * height + 0.03 * height * jolt])
    points[NOSE] = nose
    for index, dx, dy in (
        (RIGHT_EYE, -0.025, -0.02), (LEFT_EYE, 0.025, -0.02), (RIGHT_EAR, -0.065, -0.005),
        (LEFT_EAR, 0.065, -0.005), (MOUTH_RIGHT, -0.015, 0.028), (MOUTH_LEFT, 0.015, 0.028),
    ):  # fmt: skip
        points[index] = nose + np.array([dx, dy]) * height
    rise = 0.02 * height * (chest - 0.5) if breathing else 0.0
    shoulder_y = 0.42 * height - rise
    right_shoulder = np.array([x - 0.8 * body_w, shoulder_y])
    left_shoulder = np.array([x + 0.8 * body_w, shoulder_y])
    points[RIGHT_SHOULDER], points[LEFT_SHOULDER] = right_shoulder, left_shoulder
    points[RIGHT_HIP] = (x - 0.5 * body_w, 0.56 * height + 0.8 * body_h)
    points[LEFT_HIP] = (x + 0.5 * body_w, 0.56 * height + 0.8 * body_h)

    bump = 0.025 * height * jolt
    free = motion.free_hand[frame] * height
    spread = float(int(motion.fingers[frame]) % 4) / 3
    shift = float(motion.shift[frame])
    if instrument in UPRIGHT:
        centre = (x, (0.62 if instrument in LOW else 0.5) * height + bump)
        angle = 8.0 * jolt
    else:
        centre = (x + 0.15 * region_width, 0.33 * height + bump)
        angle = -(20.0 if instrument in ("vn", "va") else 5.0) - 8.0 * jolt
    bow = None
    if instrument in STRINGS:
        if instrument in ("vc", "db"):
            mid = np.array([x + 0.18 * region_width * motion.bow[frame], 0.66 * height])
            direction = np.array([1.0, -0.08])
            left_wrist = np.array([x + 0.05 * region_width, (0.36 + 0.14 * shift) * height])
        else:
            mid = np.array([centre[0] - 0.05 * region_width, 0.36 * height])
            mid[0] += 0.12 * region_width * motion.bow[frame]
            direction = np.array([0.6, -0.8])
            left_wrist = np.array(
                [centre[0] + (0.08 + 0.06 * shift) * height, (0.30 - 0.03 * shift) * height]
            )
        half = 0.22 * height * direction
        bow = (tuple(mid - half), tuple(mid + half))
        right_wrist = mid - 0.6 * half + free
    elif instrument in UPRIGHT:
        left_wrist = np.array([centre[0] + 0.01 * height, centre[1] - 0.07 * height])
        right_wrist = np.array([centre[0] - 0.01 * height, centre[1] + 0.06 * height]) + free
    else:
        slide = 0.1 * shift if instrument == "tbn" else 0.0  # the trombone's slide
        left_wrist = np.array([centre[0] + 0.07 * height, centre[1]])
        right_wrist = np.array([centre[0] - (0.09 + slide) * height, centre[1] + 0.01 * height])
        right_wrist = right_wrist + free
    points[RIGHT_ELBOW] = _elbow(right_shoulder, right_wrist, -1, height)
    points[LEFT_ELBOW] = _elbow(left_shoulder, left_wrist, 1, height)
    _hand(points, "right", right_wrist, spread if instrument not in STRINGS else 0.5, height)
    _hand(points, "left", left_wrist, spread, height)
    visible = np.zeros(LANDMARKS)
    visible[:25] = 1.0
    for unused in (1, 3, 4, 6):  # the eyes' inner and outer corners
        visible[unused] = 0.0
    return Figure(
        keypoints=np.column_stack([points, visible]),
        body=(x, 0.56 * height, body_w, body_h),
        head_radius=0.07 * height,
        instrument_centre=centre,
        instrument_angle=angle,
        bow=bow,
    )
