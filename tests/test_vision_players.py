"""Finding the players: counts and boxes on URMP-layout videos composed from real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import ffmpeg
from scenes import compose_scene, iou
from vimss_cli.errors import InputError
from vimss_cli.vision.analysis import analyse_video, unclaimed_motion
from vimss_cli.vision.players import find_players, parse_boxes

SCENES = {
    "duet-plain": (["vn", "vc"], "plain", 0.0),
    "trio-gradient-noisy": (["vn", "vc", "tpt"], "gradient", 3.0),
    "quintet-plain": (["vn", "vn", "vc", "bn", "tpt"], "plain", 0.0),
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list]]:
    folder = tmp_path_factory.mktemp("scenes")
    made = {}
    for seed, (name, (codes, background, noise)) in enumerate(SCENES.items()):
        path = folder / f"{name}.mp4"
        truth = compose_scene(path, codes, background=background, noise=noise, seed=seed)
        made[name] = (path, truth)
    return made


@pytest.mark.parametrize("name", list(SCENES))
def test_count_and_boxes(scenes, name: str) -> None:
    path, truth = scenes[name]
    analysis = analyse_video(path)
    boxes = [player.box for player in analysis.players]
    assert len(boxes) == len(truth), boxes
    assert analysis.source == "foreground"
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)  # numbered left to right
    overlaps = [iou(found, true) for found, true in zip(boxes, truth, strict=True)]
    assert min(overlaps) >= 0.5, overlaps


def test_players_hint_decides_the_count(scenes) -> None:
    path, _ = scenes["trio-gradient-noisy"]
    analysis = analyse_video(path, players=2)
    assert len(analysis.players) == 2 and analysis.source == "players"
    assert any(
        "cut from the picture's layout into --players 2 strips" in w for w in analysis.warnings
    )


def test_boxes_override(scenes) -> None:
    path, _ = scenes["duet-plain"]
    analysis = analyse_video(path, boxes="200,10,80,150; 10,10,100,150")
    assert [p.box for p in analysis.players] == [(10, 10, 100, 150), (200, 10, 80, 150)]
    assert analysis.source == "boxes"
    assert not any("share" in line for line in analysis.warnings)
    same = analyse_video(path, boxes="10,10,100,150;10,10,100,150;60,10,100,150;200,10,80,150")
    told = [line for line in same.warnings if "share" in line]
    assert told == [
        "duet-plain.mp4: boxes 1 and 2 share 100% of the smaller one: their players' pictures "
        "and motion will mix",
        # boxes 1 and 3 (and 2 and 3) share exactly half: not more than MAX_BOX_OVERLAP
    ]


def test_an_empty_stage_finds_nobody() -> None:
    still = [np.full((90, 160, 3), 80, np.uint8) for _ in range(4)]
    assert find_players(still).boxes == []


def test_empty_video_error_suggests_the_overrides(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=160x90:r=10:d=2", "-pix_fmt", "yuv420p", str(path))
    with pytest.raises(InputError, match=r"no players found.*--players N or --boxes"):
        analyse_video(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0,0,50,50;300,0,50,50", "box 2 (300,0,50,50) lies outside the 320x180 frame"),
        ("-1,0,10,10", "outside"),
        ("0,0,0,10", "has no area"),
        ("1,2,3", "expects 'x,y,w,h"),
        ("a,b,c,d", "expects 'x,y,w,h"),
        (";", "expects 'x,y,w,h"),
    ],
)
def test_bad_boxes(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_boxes(text, 320, 180)


def test_bad_players_hint() -> None:
    with pytest.raises(InputError, match="--players must be between 1 and 8"):
        find_players([np.zeros((90, 160, 3), np.uint8)], players=0)


def test_touching_players_on_a_floor_are_split_by_the_layout_prior() -> None:
    """Three figures whose instruments touch (no empty column between them) above a floor
    band that spans the frame: the foreground is one run, the panel prior finds three."""
    rng = np.random.default_rng(0)
    frame = np.full((120, 240, 3), 90, np.uint8)
    frame[100:] = (40, 30, 90)  # the floor
    for j in range(3):
        centre = 40 + 80 * j
        frame[20:100, centre - 22 : centre + 22] = rng.integers(150, 255, 3)  # the player
    frame[55:60, 50:190] = (250, 250, 250)  # bows and instruments joining them
    frames = [frame] * 3
    layout = find_players(frames)
    assert layout.source == "layout"
    centres = [b[0] + b[2] / 2 for b in layout.boxes]
    assert [int(c // 80) for c in centres] == [0, 1, 2]  # each box centred in its own panel


def test_people_found_by_a_detector_split_a_merged_strip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three people side by side in one continuous block of foreground: the face count wins
    and the strips are cut half-way between the faces."""
    from vimss_cli.vision import players

    frame = np.full((120, 240, 3), 90, np.uint8)
    frame[20:110, 20:220] = (200, 160, 120)  # one block, no valley between the people
    faces = [(40, 25, 20, 20), (100, 25, 20, 20), (170, 25, 20, 20)]
    monkeypatch.setattr(players, "_detect_faces", lambda grey: list(faces))
    layout = find_players([frame] * 4)
    assert layout.source == "faces"
    edges = [(b[0], b[0] + b[2]) for b in layout.boxes]
    # cut half-way between the face centres (50, 110, 180); outer edges padded by 2 %
    assert edges[0][1] == edges[1][0] == 80 and edges[1][1] == edges[2][0] == 145
    assert edges[0][0] == pytest.approx(20, abs=2) and edges[2][1] == pytest.approx(220, abs=3)


def test_unclaimed_motion_is_the_moving_columns_no_box_covers() -> None:
    grids = np.zeros((10, 4, 64), np.float32)
    grids[:, :, 4:12] = 1.0  # a player the boxes cover
    grids[:, :, 50:58] = 0.8  # something else moving
    width = 640  # decoded pixels: 10 per grid column
    assert unclaimed_motion(grids, [(30, 0, 100, 300)], width) == [540]
    assert unclaimed_motion(grids, [(30, 0, 100, 300), (480, 0, 120, 300)], width) == []
    # camera drift moves every column: the players cover most of that one run
    assert (
        unclaimed_motion(np.ones_like(grids), [(0, 0, 200, 300), (300, 0, 200, 300)], width) == []
    )
    assert unclaimed_motion(np.zeros_like(grids), [], width) == []  # a still picture


def test_boxes_unlikely_to_be_players_are_warned_about() -> None:
    """Found by a trial: a 6x8 px speck of background became a player, and at 1080p a
    cartoon violin was taken for a person (a box 501x213), without a word. The real test
    videos' boxes (heights 0.26-1.0 of the picture, widths up to 1.42 heights) pass."""
    from vimss_cli.vision.analysis import unlikely_box_warnings

    size = (1280, 720)
    real = [(0, 0, 398, 280), (0, 0, 146, 392), (0, 0, 248, 190)]
    assert unlikely_box_warnings(real, [True] * 3, size, "v.mp4") == []
    far = [(0, 0, 40, 60)]  # a person far away in a wide shot is still a player
    assert unlikely_box_warnings(far, [True], size, "v.mp4") == []
    speck = unlikely_box_warnings([(0, 0, 300, 400), (5, 5, 6, 8)], [False] * 2, size, "v.mp4")
    assert speck == [
        "v.mp4: player 2's box is too small to be a player; check with `vimss inspect`, and if "
        "the players are wrong, pass --players N or --boxes 'x,y,w,h;...'"
    ]
    strips = unlikely_box_warnings([(5, 5, 6, 8)], [False], size, "v.mp4", "players")
    assert "pass --boxes" in strips[0] and "--players" not in strips[0]  # given already
    (wide,) = unlikely_box_warnings([(84, 243, 501, 213)], [True], size, "v.mp4")
    assert "player 1's box is much wider than tall: perhaps an instrument" in wide
    # a strip of the layout is no person's box, however wide (a review found it warned)
    assert unlikely_box_warnings([(84, 243, 501, 213)], [False], size, "v.mp4") == []


def test_a_label_at_the_right_edge_stays_in_the_picture() -> None:
    """Found by a trial: the label of a player at the picture's right edge was cut off."""
    from vimss_cli.vision.analysis import Player, VideoAnalysis
    from vimss_cli.vision.drawing import draw_players
    from vimss_cli.vision.frames import VideoInfo
    from vimss_cli.vision.instrument_guess import InstrumentGuess

    info = VideoInfo(Path("v.mp4"), 640, 360, 1.0, False, 0.0)
    guess = InstrumentGuess("vn", 0.8, "violin")
    edge = Player(4, (630, 100, 10, 200), guess, np.zeros(1280, np.float32))
    picture = np.full((360, 640, 3), 255, np.uint8)
    drawn = draw_players(VideoAnalysis(info, 10.0, [edge], np.zeros((1, 1, 1)), picture, "boxes"))
    label_rows = drawn[100:110]  # the label's filled background, in the player's colour
    changed = np.flatnonzero((label_rows != 255).any(axis=(0, 2)))
    assert changed.min() < 600  # drawn leftwards from the edge, whole (before: from x = 630)
    low = Player(1, (100, 355, 10, 5), guess, np.zeros(1280, np.float32))  # at the bottom
    drawn = draw_players(VideoAnalysis(info, 10.0, [low], np.zeros((1, 1, 1)), picture, "boxes"))
    rows = np.flatnonzero((drawn[:, 100:130] != 255).any(axis=(1, 2)))
    assert rows.min() < 340  # the label is drawn upwards, whole
