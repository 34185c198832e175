"""People in a frame: MediaPipe BlazePose's person detector and 33-point pose, run offline.

The two networks are the ``.tflite`` files of the ``mediapipe`` 0.10.21 wheel (Apache-2.0,
bundled in ``models/pose/`` with their licence). They run on the LiteRT interpreter
(``ai-edge-litert``), which works beside numpy 2 and opencv-headless, where the ``mediapipe``
package itself does not; OpenCV's DNN importer cannot read the detector's sparse weights.

Detector (``pose_detection.tflite``): a 224 x 224 letterboxed RGB picture scaled to [-1, 1] in,
2254 SSD anchors out, each with a score and 12 numbers: a face box (centre, size) and four
alignment points: the hips' midpoint, a point on the circle around the whole body, the
shoulders' midpoint and a point on the circle around the upper body. The anchors and the
decoding follow mediapipe's ``pose_detection_cpu.pbtxt``. A wide frame holds small people, so
the detector also runs on overlapping square windows and the detections are merged.

Face detector (``face_detection_full_range_sparse.tflite``, BlazeFace full range): 192 x 192 in,
2304 anchors (a 48 x 48 grid) out, each with a score and a face box. It checks that a weak
detection has a face, and each face it finds proposes a person the pose detector missed.

Landmarks (``pose_landmark_full.tflite``): a 256 x 256 crop of the body circle, rotated
upright, scaled to [0, 1] in; 33 keypoints (x, y, z, visibility, presence) out.

All coordinates returned are in the frame's pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vimss_cli.errors import InputError

Box = tuple[float, float, float, float]

#: Detections below this score are dropped (mediapipe's own threshold is 0.5).
MIN_DETECTION_SCORE = 0.5
#: The landmark network must see a person with at least this confidence.
MIN_PRESENCE = 0.5
#: A detection this confident is a person; a weaker one needs BlazeFace to see a face...
STRONG_DETECTION = 0.75
#: ... with at least this confidence (drawings and instruments rarely pass both).
MIN_FACE_SCORE = 0.45
FACE_SIZE = 192
#: Face boxes overlapping more than this (intersection over union) are the same person.
SAME_PERSON_IOU = 0.3
#: Poses whose shoulders lie closer than this many face widths are one person.
SAME_SHOULDERS = 1.0
#: A weak detection whose body lies at least this much inside a stronger one's, with its
#: "face" below the stronger one's face, is something that person holds (a guitar's body
#: at the lap, seen as a face in a compressed stream). Players side by side, overlapping or
#: in panels share at most 0.41 on the real-footage test videos.
HELD_SHARE = 0.8
#: Frames darker or flatter than this (spread of the luminance's 1st-99th percentiles) are
#: stretched before detection.
MIN_LIGHT_SPREAD = 160
#: Scale of the body circle for the landmark crop (mediapipe's RectTransformation).
ROI_SCALE = 1.25
#: Windows smaller than this (pixels) are not searched: blown up more than twice, a drawing
#: or an instrument starts to look like a face.
MIN_WINDOW = 112
#: Square windows per frame side are this fraction of the shorter side apart.
WINDOW_STEP = 0.5

#: A face BlazeFace (full range) finds at least this confidently (mediapipe's own threshold
#: for that model) proposes a person, in case the pose detector missed them: it misses
#: players whose cut-outs are blown up and soft, where BlazeFace still sees the faces.
MIN_FACE_PROPOSAL = 0.6

#: The windows also run over the frame padded with black by this share of its longer side.
EDGE_PAD = 0.125
DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
#: BlazePose keypoint names, in the network's order.
KEYPOINTS = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip


def pose_models_dir() -> Path:
    """Folder of the bundled ``.tflite`` files (the wheel's copy, else the source tree's)."""
    package_copy = Path(__file__).resolve().parents[1] / "bundled_models" / "pose"
    if package_copy.is_dir():
        return package_copy
    return Path(__file__).resolve().parents[3] / "models" / "pose"


@functools.cache
def _interpreter(name: str):  # the LiteRT interpreter (its type is not our API)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise InputError(
            f"finding people needs the ai-edge-litert package ({error}); reinstall vimss"
        ) from None
    path = pose_models_dir() / name
    if not path.is_file():
        raise InputError(f"the bundled pose model {path} is missing; reinstall vimss")
    with _quiet_stderr():  # LiteRT announces its CPU delegate on the process's stderr
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment (C++ logging bypasses Python's)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _run(name: str, picture: np.ndarray) -> list[np.ndarray]:
    """Run a bundled network on one ``(1, S, S, 3)`` float32 input; outputs by index."""
    interpreter = _interpreter(name)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], picture)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


@functools.cache
def detector_anchors() -> np.ndarray:
    """``(2254, 2)`` anchor centres ``(x, y)`` in [0, 1] of the 224 x 224 detector input.

    Strides 8 and 16 give two anchors per cell, the three stride-32 layers six.
    """
    centres = []
    for stride, per_cell in ((8, 2), (16, 2), (32, 6)):
        cells = DETECTOR_SIZE // stride
        for row in range(cells):
            for col in range(cells):
                centres.extend([((col + 0.5) / cells, (row + 0.5) / cells)] * per_cell)
    return np.asarray(centres, np.float32)


@dataclass(frozen=True)
class Person:
    """One person in one frame, in the frame's pixels.

    Attributes:
        score: the detector's confidence in [0, 1].
        face: ``(x0, y0, x1, y1)`` face box.
        hips: ``(x, y)`` midpoint of the hips (may lie outside the frame).
        body_radius: radius of the circle around the whole body, centred on ``hips``.
        shoulders: ``(x, y)`` midpoint of the shoulders.
        keypoints: ``(33, 3)`` pose ``(x, y, visibility)`` (see :data:`KEYPOINTS`), or ``None``
            until :func:`add_pose` has run.
        presence: the landmark network's confidence that a person fills its crop (``None``
            until :func:`add_pose` has run).
        face_score: BlazeFace's confidence in a face around :attr:`face` (``None`` until
            :func:`confirm_face` has run).
    """

    score: float
    face: tuple[float, float, float, float]
    hips: tuple[float, float]
    body_radius: float
    shoulders: tuple[float, float]
    keypoints: np.ndarray | None = None
    presence: float | None = None
    face_score: float | None = None

    def body_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of the person clipped to a ``width`` x ``height`` frame.

        From the pose when known (visible keypoints and the face, padded), else the body
        circle around the hips.
        """
        if self.keypoints is not None:
            seen = self.keypoints[self.keypoints[:, 2] > 0.5, :2]
            points = np.concatenate([seen, np.reshape(self.face, (2, 2))])
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            pad_x, pad_y = 0.25 * (x1 - x0), 0.1 * (y1 - y0)
            x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y
        else:
            (cx, cy), r = self.hips, self.body_radius
            x0, x1, y0, y1 = cx - 0.6 * r, cx + 0.6 * r, min(cy - r, self.face[1]), cy + r
        x0, y0 = max(0, int(x0)), max(0, int(y0))
        x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
        return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """The networks' raw scores as probabilities (clipped: no overflow warnings)."""
    return 1 / (1 + np.exp(-np.clip(logits, -50, 50)))


def _letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Fit ``frame`` into a ``size`` square, centred on black: ``(square, scale, dx, dy)``."""
    height, width = frame.shape[:2]
    scale = size / max(height, width)
    resized = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))))
    square = np.zeros((size, size, 3), np.uint8)
    dy, dx = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    square[dy : dy + resized.shape[0], dx : dx + resized.shape[1]] = resized
    return square, scale, dx, dy


def _detect_window(frame: np.ndarray, x0: int, y0: int) -> list[Person]:
    """Detections in one window ``frame`` whose top-left is ``(x0, y0)`` in the whole frame."""
    square, scale, dx, dy = _letterbox(frame, DETECTOR_SIZE)
    raw, logits = _run("pose_detection.tflite", _to_signed(square))
    scores = _sigmoid(logits[0, :, 0])
    people = []
    anchors = detector_anchors() * DETECTOR_SIZE
    for index in np.flatnonzero(scores >= MIN_DETECTION_SCORE):
        values = raw[0, index].reshape(6, 2)
        values = values + np.vstack([anchors[index], [0, 0], np.tile(anchors[index], (4, 1))])

        def to_frame(point: np.ndarray) -> tuple[float, float]:
            return ((point[0] - dx) / scale + x0, (point[1] - dy) / scale + y0)

        (cx, cy), (w, h) = to_frame(values[0]), values[1] / scale
        hips, circle, shoulders = to_frame(values[2]), to_frame(values[3]), to_frame(values[4])
        radius = float(np.hypot(circle[0] - hips[0], circle[1] - hips[1]))
        face = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        people.append(Person(float(scores[index]), face, hips, radius, shoulders))
    return people


@functools.cache
def face_anchors() -> np.ndarray:
    """``(2304, 2)`` anchor centres ``(x, y)`` in [0, 1] of BlazeFace full range's 192 x 192
    input: one anchor per cell of a 48 x 48 grid (stride 4, fixed anchor size)."""
    cells = FACE_SIZE // 4
    grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    xs, ys = np.meshgrid(grid, grid)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _faces_in_window(frame: np.ndarray, x0: int, y0: int) -> list[tuple[float, Box]]:
    """BlazeFace (full range) in one window ``frame`` whose top-left is ``(x0, y0)`` in the
    whole frame: ``(score, (x0, y0, x1, y1))`` of each face scoring at least
    :data:`MIN_FACE_PROPOSAL`, in the whole frame's pixels."""
    square, scale, dx, dy = _letterbox(frame, FACE_SIZE)
    raw, logits = _run("face_detection_full_range_sparse.tflite", _to_signed(square))
    scores = _sigmoid(logits[0, :, 0])
    anchors = face_anchors() * FACE_SIZE
    faces = []
    for index in np.flatnonzero(scores >= MIN_FACE_PROPOSAL):
        cx, cy = (raw[0, index, :2] + anchors[index] - (dx, dy)) / scale + (x0, y0)
        w, h = raw[0, index, 2:4] / scale
        box = (float(cx - w / 2), float(cy - h / 2), float(cx + w / 2), float(cy + h / 2))
        faces.append((float(scores[index]), box))
    return faces


def person_from_face(face_score: float, face: Box) -> Person:
    """A person proposed by a face ``(x0, y0, x1, y1)``: upright below it, the body circle
    around the hips reaching a little above the head, for the landmark network to find.

    Its :attr:`Person.score` is half the face's score: ranked below every detection of the
    pose detector (at least :data:`MIN_DETECTION_SCORE`), and weak (below
    :data:`STRONG_DETECTION`), so that a face on a player's torso is taken for their
    instrument, as a weak detection there is (:func:`same_person`).
    """
    x0, y0, x1, y1 = face
    size = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return Person(
        score=0.5 * face_score,
        face=face,
        hips=(cx, cy + 3.5 * size),
        body_radius=4.5 * size,
        shoulders=(cx, cy + 1.2 * size),
        face_score=face_score,
    )


def _area(box: tuple[float, ...]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Area shared by boxes ``a`` and ``b`` (``x0, y0, x1, y1``)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = _intersection(a, b)
    return inter / (_area(a) + _area(b) - inter) if inter else 0.0


def windows(width: int, height: int) -> list[tuple[int, int, int]]:
    """Square windows ``(x, y, side)`` over a frame: the whole frame, then squares of the
    shorter side (and of half of it, if at least :data:`MIN_WINDOW`) stepped by
    :data:`WINDOW_STEP` of their side."""
    found = [(0, 0, max(width, height))]
    for side in (min(width, height), min(width, height) // 2):
        if side < MIN_WINDOW:
            continue
        step = max(1, int(side * WINDOW_STEP))
        xs = list(range(0, max(1, width - side + 1), step))
        ys = list(range(0, max(1, height - side + 1), step))
        if xs[-1] != width - side and width > side:
            xs.append(width - side)
        if ys[-1] != height - side and height > side:
            ys.append(height - side)
        found.extend((x, y, side) for y in ys for x in xs)
    return found


def contained_share(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Share of the smaller of boxes ``a`` and ``b`` (``x0, y0, x1, y1``) inside the other."""
    return _intersection(a, b) / max(min(_area(a), _area(b)), 1e-6)


def _upper_body(person: Person) -> np.ndarray:
    """``(2,)`` where the pose puts the middle of the shoulders (the detector's guess if none)."""
    if person.keypoints is None:
        return np.asarray(person.shoulders)
    return person.keypoints[[11, 12], :2].mean(axis=0)


def _on_torso(face: tuple[float, ...], person: Person) -> bool:
    """Whether the centre of ``face`` lies on ``person``'s torso: below their own face,
    between their shoulders (widened by a quarter on each side) and above their hips (or, where
    the hips are hidden, one and a half shoulder widths below the shoulders). A weak face
    detection there is the instrument held in front of the body, not another player."""
    assert person.keypoints is not None
    shoulders = person.keypoints[[11, 12]]
    if (shoulders[:, 2] <= 0.5).any():
        return False
    (x0, top), (x1, _) = shoulders[:, :2].min(axis=0), shoulders[:, :2].max(axis=0)
    span = max(x1 - x0, 1.0)
    hips = person.keypoints[[23, 24]]
    bottom = float(hips[:, 1].max()) if (hips[:, 2] > 0.5).all() else float(top + 1.5 * span)
    x, y = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    return x0 - span / 4 <= x <= x1 + span / 4 and person.face[3] <= y <= bottom


def _held_by(weaker: Person, stronger: Person) -> bool:
    """Whether ``weaker`` is something ``stronger`` holds: its body box lies at least
    :data:`HELD_SHARE` inside ``stronger``'s and the centre of its face lies below the
    bottom of ``stronger``'s face."""
    unbounded = 1 << 30
    x, y, w, h = weaker.body_box(unbounded, unbounded)
    inner = (x, y, x + w, y + h)
    x, y, w, h = stronger.body_box(unbounded, unbounded)
    share = _intersection(inner, (x, y, x + w, y + h)) / max(_area(inner), 1e-6)
    return share >= HELD_SHARE and (weaker.face[1] + weaker.face[3]) / 2 > stronger.face[3]


def _seen_already(candidate: Person, kept: Person) -> bool:
    """What :func:`same_person` can tell before the candidate's pose is known."""
    if _iou(candidate.face, kept.face) > SAME_PERSON_IOU:
        return True
    weaker = candidate.score < STRONG_DETECTION
    return weaker and kept.keypoints is not None and _on_torso(candidate.face, kept)


def same_person(a: Person, b: Person) -> bool:
    """Whether two detections are one person.

    Their face boxes overlap (:data:`SAME_PERSON_IOU`) or one lies mostly inside the other,
    their poses put the shoulders within :data:`SAME_SHOULDERS` faces of each other, or the
    weaker one's face lies on the other's torso or its body is held by the other
    (:func:`_held_by`).
    """
    if _iou(a.face, b.face) > SAME_PERSON_IOU or contained_share(a.face, b.face) > 0.5:
        return True
    if a.keypoints is None or b.keypoints is None:
        return False
    weaker, stronger = sorted((a, b), key=lambda p: p.score)
    if weaker.score < STRONG_DETECTION and (
        _on_torso(weaker.face, stronger) or _held_by(weaker, stronger)
    ):
        return True
    face = max(a.face[2] - a.face[0], b.face[2] - b.face[0])
    return float(np.linalg.norm(_upper_body(a) - _upper_body(b))) < SAME_SHOULDERS * face


def confirm_face(frame: np.ndarray, person: Person) -> Person:
    """``person`` with :attr:`Person.face_score`: BlazeFace (full range) on a square twice the
    size of its face box; the score of its most confident face anywhere in that square."""
    x0, y0, x1, y1 = person.face
    side = max(2.0 * max(x1 - x0, y1 - y0), 4.0)
    zoom = FACE_SIZE / side
    corner = ((x0 + x1 - side) / 2, (y0 + y1 - side) / 2)
    to_crop = np.array([[zoom, 0, -corner[0] * zoom], [0, zoom, -corner[1] * zoom]])
    crop = cv2.warpAffine(frame, to_crop, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR)
    _, logits = _run("face_detection_full_range_sparse.tflite", _to_signed(crop))
    score = float(_sigmoid(logits[0, :, 0]).max())
    return dataclasses.replace(person, face_score=score)


def _to_signed(square: np.ndarray) -> np.ndarray:
    """``(S, S, 3)`` uint8 -> ``(1, S, S, 3)`` float32 in [-1, 1], as the detectors take."""
    return (square.astype(np.float32) / 127.5 - 1.0)[None]


def normalise_light(frame: np.ndarray) -> np.ndarray:
    """Stretch a dark or low-contrast ``(H, W, 3)`` uint8 frame's levels to the full range.

    The 1st and 99th percentiles of the luminance go to 0 and 255 when they span less than
    :data:`MIN_LIGHT_SPREAD` levels; other frames are returned as they are.
    """
    luminance = frame.mean(axis=2)
    low, high = np.percentile(luminance, [1, 99])
    if high - low >= MIN_LIGHT_SPREAD or high - low < 8:
        return frame
    stretched = (frame.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(stretched, 0, 255).astype(np.uint8)


def detect_people(frame: np.ndarray, pose: bool = True, min_face: float = 0.0) -> list[Person]:
    """People in one ``(H, W, 3)`` uint8 RGB frame, most confident first, without duplicates.

    A dark or flat frame is stretched first (:func:`normalise_light`). Every window's
    detections are pooled, over the frame and over the frame padded by :data:`EDGE_PAD`.
    Weak ones, and all those of the padded frame, need a face (:func:`confirm_face`). Each
    face BlazeFace finds in the frame's windows proposes one more person below it
    (:func:`person_from_face`), ranked after the detector's. With
    ``pose``, each gets its keypoints, and those the landmark network finds no person in
    (presence below :data:`MIN_PRESENCE`) are dropped, as are faces narrower than
    ``min_face`` pixels. A detection that is the same person as a more confident one
    (:func:`same_person`) is dropped.
    """
    frame = normalise_light(frame)
    height, width = frame.shape[:2]
    # (person, whether a face must confirm it whatever its score)
    pooled: list[tuple[Person, bool]] = []
    for x, y, side in windows(width, height):
        found = _detect_window(frame[y : y + side, x : x + side], x, y)
        pooled.extend((person, person.score < STRONG_DETECTION) for person in found)
    # the windows again over the frame framed in black (other sizes, other offsets: a person
    # at the edge or between two windows above may stand inside one here); what they see
    # must show BlazeFace a face, however confident the detector is
    pad = round(EDGE_PAD * max(width, height))
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    for x, y, side in windows(width + 2 * pad, height + 2 * pad):
        found = _detect_window(padded[y : y + side, x : x + side], x - pad, y - pad)
        pooled.extend((person, True) for person in found)
    # the faces BlazeFace finds in the same windows, as people below them (already faces)
    for x, y, side in windows(width, height):
        found_faces = _faces_in_window(frame[y : y + side, x : x + side], x, y)
        pooled.extend((person_from_face(score, face), False) for score, face in found_faces)
    kept: list[Person] = []
    for person, needs_face in sorted(pooled, key=lambda pair: -pair[0].score):
        if any(_seen_already(person, other) for other in kept):
            continue  # cheap checks first: the same face found in another window
        if needs_face:
            person = confirm_face(frame, person)
            if (person.face_score or 0.0) < MIN_FACE_SCORE:
                continue
        if pose:
            person = add_pose(frame, person)
            if person.presence is not None and person.presence < MIN_PRESENCE:
                continue
        if person.face[2] - person.face[0] < min_face:
            continue
        if all(not same_person(person, other) for other in kept):
            kept.append(person)
    return kept


def add_pose(frame: np.ndarray, person: Person) -> Person:
    """``person`` with its 33 keypoints, from the landmark network on its body circle."""
    (hx, hy), (sx, sy) = person.hips, person.shoulders
    angle = np.pi / 2 - np.arctan2(-(sy - hy), sx - hx)  # upright: shoulders above the hips
    side = 2 * person.body_radius * ROI_SCALE
    if side < 4:
        return person
    cos, sin = np.cos(angle), np.sin(angle)
    # affine map from the crop's pixels to the frame's: scale, rotate by `angle`, centre on hips
    scale, centre = side / LANDMARK_SIZE, LANDMARK_SIZE / 2
    to_frame = np.array(
        [
            [cos * scale, -sin * scale, hx - (cos - sin) * centre * scale],
            [sin * scale, cos * scale, hy - (sin + cos) * centre * scale],
        ]
    )
    crop = cv2.warpAffine(
        frame,
        cv2.invertAffineTransform(to_frame),
        (LANDMARK_SIZE, LANDMARK_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    outputs = _run("pose_landmark_full.tflite", (crop.astype(np.float32) / 255.0)[None])
    values = outputs[0].reshape(39, 5)[:33]
    points = np.c_[values[:, :2], np.ones(33)] @ to_frame.T
    visibility = _sigmoid(values[:, 3])
    keypoints = np.c_[points, visibility].astype(np.float32)
    presence = float(np.clip(outputs[1].item(), 0.0, 1.0))
    face = _face_from_pose(keypoints) or person.face
    return dataclasses.replace(person, keypoints=keypoints, presence=presence, face=face)


def _face_from_pose(keypoints: np.ndarray) -> tuple[float, float, float, float] | None:
    """A square face box ``(x0, y0, x1, y1)`` around the pose's visible face points (nose,
    eyes, ears, mouth), or ``None`` with fewer than three of them. The detector's own box is
    coarse, and its size varies with the window it was found in."""
    points = keypoints[:11]
    seen = points[points[:, 2] > 0.5, :2]
    if len(seen) < 3:
        return None
    (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
    side = max(1.5 * max(x1 - x0, y1 - y0), 4.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
