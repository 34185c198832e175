"""The person detector's parts: bundled files, anchors, windows, light, and de-duplication."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vimss_cli.checkpoint import file_sha256
from vimss_cli.vision import people
from vimss_cli.vision.people import Person


def test_bundled_pose_models_are_the_recorded_files() -> None:
    folder = people.pose_models_dir()
    table = (folder / "README.md").read_text()
    recorded = dict(re.findall(r"\| `([\w.]+\.tflite)` \|[^|]*\| `([0-9a-f]{64})` \|", table))
    assert len(recorded) == 3
    for name, digest in recorded.items():
        assert file_sha256(folder / name) == digest, name
    assert "Apache License" in (folder / "LICENSE").read_text()


def test_anchors_match_the_detector_output() -> None:
    anchors = people.detector_anchors()
    assert anchors.shape == (2254, 2)
    assert anchors.min() > 0 and anchors.max() < 1
    # the first stride-8 cell holds two anchors at its centre
    assert np.allclose(anchors[:2], [[0.5 / 28, 0.5 / 28]] * 2)


def test_face_anchors_match_the_face_detector_output() -> None:
    anchors = people.face_anchors()
    raw, logits = people._run(
        "face_detection_full_range_sparse.tflite", np.zeros((1, 192, 192, 3), np.float32)
    )
    assert anchors.shape == (raw.shape[1], 2) == (logits.shape[1], 2) == (2304, 2)
    assert np.allclose(anchors[:2], [[0.5 / 48, 0.5 / 48], [1.5 / 48, 0.5 / 48]])  # row-major


def test_a_face_proposes_an_upright_person_below_it() -> None:
    person = people.person_from_face(0.8, (100.0, 50.0, 120.0, 70.0))
    assert person.score < people.STRONG_DETECTION and person.face_score == 0.8
    (hx, hy), (sx, sy) = person.hips, person.shoulders
    assert hx == sx == 110.0 and 70.0 < sy < hy
    assert person.body_radius > hy - 50.0  # the circle reaches above the head


@pytest.mark.parametrize("size", [(1280, 720), (720, 1280), (320, 180), (640, 640)])
def test_windows_are_square_inside_the_frame_and_cover_it(size: tuple[int, int]) -> None:
    width, height = size
    covered = np.zeros((height, width), bool)
    found = people.windows(width, height)
    assert found[0] == (0, 0, max(width, height))  # the whole frame first
    for x, y, side in found[1:]:
        assert side >= people.MIN_WINDOW
        assert min(x, y) >= 0 and x + side <= width and y + side <= height
        covered[y : y + side, x : x + side] = True
    assert covered.all()


def test_dark_frames_are_stretched_and_bright_ones_left_alone() -> None:
    rng = np.random.default_rng(0)
    bright = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert people.normalise_light(bright) is bright
    dark = (bright // 4).astype(np.uint8)
    stretched = people.normalise_light(dark)
    assert stretched.max() >= 250 and stretched.min() <= 5


def _person(face: tuple[float, float, float, float], score: float, shoulders_y: float = 0.0):
    keypoints = np.zeros((33, 3), np.float32)
    x0, _, x1, y1 = face
    size = x1 - x0
    keypoints[11] = (x0 - size, y1 + size, 1.0)  # left shoulder
    keypoints[12] = (x1 + size, y1 + size + shoulders_y, 1.0)  # right shoulder
    return Person(score, face, (0.0, 0.0), 1.0, (0.0, 0.0), keypoints, 1.0)


def test_same_person_by_face_overlap_pose_and_torso() -> None:
    a = _person((100, 100, 130, 130), 0.9)
    assert people.same_person(a, _person((102, 101, 131, 132), 0.6))  # the same face
    assert not people.same_person(a, _person((200, 100, 230, 130), 0.8))  # a neighbour
    # a weak "face" on the torso is the instrument held in front of the body
    assert people.same_person(a, _person((110, 170, 140, 200), 0.55, shoulders_y=60))
    # ... but a strong one is a person in front
    assert not people.same_person(a, _person((110, 170, 140, 200), 0.9, shoulders_y=60))


def _body(face: tuple[float, float, float, float], score: float, points: dict[int, tuple]):
    """A person with ``face`` and these visible keypoints (index -> (x, y))."""
    keypoints = np.zeros((33, 3), np.float32)
    for index, (x, y) in points.items():
        keypoints[index] = (x, y, 1.0)
    return Person(score, face, (0.0, 0.0), 1.0, (0.0, 0.0), keypoints, 1.0)


def test_a_weak_person_inside_a_stronger_ones_body_below_their_face_is_what_they_hold() -> None:
    # a seated player, one hand far out on the neck of the instrument at their lap
    player = _body(
        (100, 100, 130, 130),
        0.9,
        {11: (70, 160), 12: (160, 160), 23: (80, 300), 24: (150, 300), 15: (0, 260)},
    )
    # a "face" on the instrument's body, left of the torso, with a small body of its own
    held = {11: (30, 230), 12: (70, 235), 23: (35, 290), 24: (65, 292)}
    assert not people._on_torso((20, 200, 40, 220), player)  # not the torso rule's case
    assert people.same_person(player, _body((20, 200, 40, 220), 0.6, held))
    assert not people.same_person(player, _body((20, 200, 40, 220), 0.9, held))  # strong
    lower = {index: (x, y + 200) for index, (x, y) in held.items()}  # mostly outside
    assert not people.same_person(player, _body((20, 400, 40, 420), 0.6, lower))
