"""Following people over the sampled frames of a video: who is seen consistently.

Detections of :mod:`.people` in each frame are joined into tracks by the distance between
their faces; tracks seen too rarely or too weakly are dropped (a detector's guess on a drawing
or an instrument rarely holds from frame to frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vimss_cli.vision.people import STRONG_DETECTION, Person, detect_people


@dataclass(frozen=True)
class TrackedPerson:
    """One person followed over the sampled frames.

    Attributes:
        detections: the person in each frame where they were seen (``None`` where not).
        score: mean detector score over all frames (0 where unseen), so a person seen in
            half the frames scores half.
    """

    detections: list[Person | None]

    @property
    def seen(self) -> list[Person]:
        return [d for d in self.detections if d is not None]

    @property
    def score(self) -> float:
        return sum(d.score for d in self.seen) / max(1, len(self.detections))

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)``: the median of the per-frame body boxes (robust to one bad frame)."""
        boxes = np.array([d.body_box(width, height) for d in self.seen], np.float64)
        corners = np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]
        x0, y0, x1, y1 = np.median(corners, axis=0)
        return (int(x0), int(y0), max(1, int(x1 - x0)), max(1, int(y1 - y0)))

    def centre_x(self) -> float:
        return float(np.median([(d.face[0] + d.face[2]) / 2 for d in self.seen]))

    def keypoints(self) -> np.ndarray | None:
        """``(33, 3)`` keypoints of the most confident detection that has a pose."""
        posed = [d for d in self.seen if d.keypoints is not None]
        return max(posed, key=lambda d: d.score).keypoints if posed else None


#: Faces narrower than this in the video's own pixels are too small to tell a person from a
#: drawing: such videos fall back to the picture's layout.
MIN_FACE_PIXELS = 20
#: A detection joins a track whose last face lies within this many face sizes of its own
#: (people sway and cameras drift between the sampled frames).
TRACK_REACH = 2.0
#: A person must be seen in at least this share of the sampled frames...
MIN_SEEN_SHARE = 0.5
#: ... with at least this mean score over all frames, to count...
MIN_TRACK_SCORE = 0.3
#: ... and, if no detection of it was strong, in at least this share of them.
WEAK_TRACK_SHARE = 0.8


def _face_centre(person: Person) -> np.ndarray:
    return np.array([(person.face[0] + person.face[2]) / 2, (person.face[1] + person.face[3]) / 2])


def _holds(track: TrackedPerson, frames: int) -> bool:
    """Whether a track is a person: seen often enough, confidently enough, and where no
    detection was strong, seen in nearly every frame."""
    share = len(track.seen) / max(1, frames)
    if share < MIN_SEEN_SHARE or track.score < MIN_TRACK_SCORE:
        return False
    strong = any(d.score >= STRONG_DETECTION for d in track.seen)
    return strong or share >= WEAK_TRACK_SHARE


def track_people(frames: list[np.ndarray], min_face: float = 0.0) -> list[TrackedPerson]:
    """People seen consistently over ``S`` frames ``(H, W, 3)`` uint8 RGB, left to right.

    Faces narrower than ``min_face`` pixels are not trusted (see :data:`MIN_FACE_PIXELS`).

    A detection joins the track whose last face lies within :data:`TRACK_REACH` face sizes (the
    nearest such, each track at most once per frame), else starts a new track. Tracks seen in
    too few frames or too weakly (:func:`_holds`) are dropped: a detector's guess on a drawing
    or an instrument rarely holds from frame to frame.
    """
    tracks: list[list[Person | None]] = []
    for index, frame in enumerate(frames):
        taken: set[int] = set()
        for person in detect_people(frame, min_face=min_face):
            size = max(person.face[2] - person.face[0], person.face[3] - person.face[1])
            best, best_distance = None, TRACK_REACH * size
            for number, track in enumerate(tracks):
                last = next((d for d in reversed(track) if d is not None), None)
                if number in taken or last is None:
                    continue
                distance = float(np.linalg.norm(_face_centre(last) - _face_centre(person)))
                if distance < best_distance:
                    best, best_distance = number, distance
            if best is None:
                tracks.append([None] * index + [person])
                taken.add(len(tracks) - 1)
            else:
                tracks[best].append(person)
                taken.add(best)
        for track in tracks:
            if len(track) < index + 1:
                track.append(None)
    found = [TrackedPerson(track) for track in tracks]
    found = [t for t in found if _holds(t, len(frames))]
    return sorted(found, key=TrackedPerson.centre_x)
