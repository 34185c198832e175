"""Players in videos made from real photographs (tests/real_footage.py), and what the CLI says
when it is unsure: warnings, --strict, no musicians, --audio for silent videos, URMP names.

The full set and its accuracy are measured by benchmarks/bench_players.py; these tests run a
subset that covers each kind of shot and each warning.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import real_footage
from conftest import RATE, ffmpeg, missing_fixture, write_wav
from vimss_cli.cli import app
from vimss_cli.errors import InputError
from vimss_cli.vision import analysis as analysis_module
from vimss_cli.vision import people, queries
from vimss_cli.vision.analysis import VideoAnalysis, analyse_video
from vimss_cli.vision.queries import urmp_instruments

runner = CliRunner()

#: Kinds of shot the finder must get right (the benchmark runs every video).
CHECKED = ["stage_dark", "panels_two_fiddles", "overlap_trio", "mariachi_duet", "orchestra_cellos"]
#: What each must name (player index -> URMP code, or None: unknown, not a URMP instrument):
#: the fiddles, the trumpet, the mandola and the guitar. Not the mariachi violinist, half
#: hidden by a guitar's neck: the guitar outweighs the violin in that crop and the player is
#: reported unknown (docs/video.md). The cellists cut from the orchestra photo are soft: the
#: pose detector misses one of them, whose face BlazeFace finds.
NAMED = {
    "stage_dark": {0: None, 1: None, 3: "vn"},
    "panels_two_fiddles": {0: "vn", 1: "vn"},
    "overlap_trio": {2: "vn"},
    "mariachi_duet": {1: "tpt"},
    "orchestra_cellos": {0: "vc", 1: "vc", 2: "vc"},
}
#: Also built, for the tests of hints and warnings.
SUBSET = [*CHECKED, "stage", "plain_duet", "didgeridoo_solo", "orchestra_panels", "panels_quintet"]
NOBODY = ["opera_no_musicians", "drums_no_people"]


@pytest.fixture(scope="module", autouse=True)
def each_video_analysed_once() -> Iterator[None]:
    """``analyse_video`` runs once per video and arguments in this module: it is deterministic,
    its users do not change its result, and the 720p analyses are most of this module's time.
    The CLI commands find it through the modules patched here."""
    cache: dict[tuple[str, tuple[tuple[str, object], ...]], VideoAnalysis] = {}
    original = analysis_module.analyse_video

    def analysed_once(path: str | Path, **options: object) -> VideoAnalysis:
        key = (str(path), tuple(sorted((k, v) for k, v in options.items() if v is not None)))
        if key not in cache:
            cache[key] = original(path, **options)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        for module in (analysis_module, queries, sys.modules[__name__]):
            patch.setattr(module, "analyse_video", analysed_once)
        yield


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    if not real_footage.RCC.is_file():
        missing_fixture(f"{real_footage.RCC} is missing (Debian package gcompris-qt-data)")
    folder = tmp_path_factory.mktemp("footage")
    return {
        truth.name: (path, truth) for path, truth in real_footage.build(folder, SUBSET + NOBODY)
    }


@pytest.mark.parametrize("name", CHECKED)
def test_every_player_is_found_and_urmp_instruments_named(footage, name: str) -> None:
    path, truth = footage[name]
    analysis = analyse_video(path)
    assert analysis.source == "people"
    assert len(analysis.players) == truth.count, [p.box for p in analysis.players]
    assert [p.box[0] for p in analysis.players] == sorted(p.box[0] for p in analysis.players)
    for player in analysis.players:
        assert player.keypoints is not None and player.keypoints.shape == (33, 3)
    for index, instrument in NAMED[name].items():
        assert analysis.players[index].guess.instrument == instrument, analysis.players[index]
    assert not [w for w in analysis.warnings if "equal panels" in w]


@pytest.mark.parametrize("name", ["orchestra_panels", "panels_quintet"])
def test_panels_give_one_player_each_where_players_were_missed(footage, name: str) -> None:
    """URMP-style panels, each player blown up to fill one: the detector sees one of the
    three orchestra players (it scores the others under its threshold) and four of the five
    Irish ones. The seams say how many panels there are; each panel gets one player, the
    person seen there (kept within the panel) or else the whole panel, with a warning."""
    path, truth = footage[name]
    analysis = analyse_video(path)
    assert len(analysis.players) == truth.count
    assert analysis.source == "people and panels"
    (warned,) = [w for w in analysis.warnings if "equal panels" in w]
    assert f"looks like {truth.count} equal panels side by side" in warned
    assert "is taken whole as its player's box" in warned
    width = analysis.info.width
    for k, player in enumerate(analysis.players):  # each box within its own panel
        x, _, w, _ = player.box
        assert width * k / truth.count - 2 <= x and x + w <= width * (k + 1) / truth.count + 2
    whole = [p for p in analysis.players if p.keypoints is None]
    assert 0 < len(whole) < truth.count  # the panels nobody was seen in, and only those
    hinted = analyse_video(path, players=truth.count)  # --players: equal strips, as before
    assert len(hinted.players) == truth.count
    assert not [w for w in hinted.warnings if "equal panels" in w]


@pytest.mark.parametrize("name", ["orchestra_panels", "panels_quintet"])
def test_panels_are_found_at_480_lines_too(footage, name: str, tmp_path: Path) -> None:
    """Found re-encoding the real-footage set at 480 lines: scaling smears the seams (0.28
    and 0.29 where 0.3 was needed), and the panel warning was lost where the players of
    both videos were miscounted."""
    from vimss_cli.vision.analysis import DEFAULT_SAMPLES, _sample_indices
    from vimss_cli.vision.frames import DEFAULT_MAX_SIDE, DEFAULT_RATE, FrameStream, probe_video
    from vimss_cli.vision.panels import panel_count

    source, truth = footage[name]
    smaller = tmp_path / f"{name}_480.mp4"
    ffmpeg("-i", str(source), "-vf", "scale=-2:480", "-c:v", "libx264", "-crf", "23",
           "-c:a", "copy", str(smaller))  # fmt: skip
    info = probe_video(smaller)
    wanted = _sample_indices(info.duration, DEFAULT_RATE, DEFAULT_SAMPLES)
    with FrameStream(info, DEFAULT_RATE, DEFAULT_MAX_SIDE) as stream:
        frames = [frame for index, frame in stream if index in wanted]
    assert panel_count(frames) == truth.count


def test_the_mandolas_body_is_not_a_fifth_player_on_the_stage_photo() -> None:
    """On the Irish stage photo as it is (1024 x 416), BlazeFace sees a small "face" on the
    mandola's body, left of its player's torso; the person it proposes lies inside the
    player's own body, below their face (``people.HELD_SHARE``). In the crf 30 re-encoding of
    ``busy_trio`` the same "face" survived tracking as a fourth player, with no warning."""
    if not real_footage.RCC.is_file():
        missing_fixture(f"{real_footage.RCC} is missing (Debian package gcompris-qt-data)")
    photo = real_footage.load_photos()["ireland"]
    found = people.detect_people(photo)
    centres = sorted((p.face[0] + p.face[2]) / 2 for p in found)
    assert len(found) == 4, centres
    for (x0, _, x1, _), _ in real_footage.IRISH:  # one face over each player's crop
        assert sum(x0 <= centre <= x1 for centre in centres) == 1, centres


def test_blazeface_finds_a_face_where_it_is() -> None:
    """The face proposer's decoding: a cellist cut from the orchestra photo, blown up three
    times on a grey window placed at (100, 50) in a frame: the face is found in the top of
    the cut-out, the size of a face."""
    if not real_footage.RCC.is_file():
        missing_fixture(f"{real_footage.RCC} is missing (Debian package gcompris-qt-data)")
    (x0, y0, x1, y1), _ = real_footage.ORCHESTRA["cello_back"]
    crop = real_footage.load_photos()["orchestra"][y0:y1, x0:x1]
    big = np.repeat(np.repeat(crop, 3, axis=0), 3, axis=1)
    window = np.full((600, 600, 3), 120, np.uint8)
    window[: big.shape[0], : big.shape[1]] = big
    faces = people._faces_in_window(window, 100, 50)
    assert faces
    _, (fx0, fy0, fx1, fy1) = max(faces)
    assert 100 <= fx0 < fx1 <= 100 + big.shape[1]
    assert 50 <= fy0 < fy1 <= 50 + 0.4 * big.shape[0]
    assert 0.1 < (fx1 - fx0) / big.shape[1] < 0.35


def test_people_without_instruments_are_not_players(footage) -> None:
    path, _ = footage["opera_no_musicians"]
    with pytest.raises(InputError, match="none holds an instrument"):
        analyse_video(path)


def test_a_still_picture_without_people_has_no_players(footage) -> None:
    path, _ = footage["drums_no_people"]
    with pytest.raises(InputError, match="no players found"):
        analyse_video(path)


def test_players_hint_picks_among_the_people_and_warns_when_short(footage) -> None:
    path, _ = footage["stage"]
    two = analyse_video(path, players=2)
    assert len(two.players) == 2 and two.source == "people"
    four = analyse_video(path)
    # the two kept are whole people of the four, not equal strips of the frame
    assert all(p.box in [q.box for q in four.players] for p in two.players)
    held = "the 2 of the 4 players seen who most clearly hold an instrument are kept"
    assert any(held in w for w in two.warnings)
    duet, _ = footage["plain_duet"]
    short = analyse_video(duet, players=4)
    assert len(short.players) == 4 and short.source != "people"
    assert any("--players 4 but only 2 players were seen" in w for w in short.warnings)
    assert not any("no people seen" in w for w in short.warnings)  # they were seen


def _separate(*args: str):
    return runner.invoke(app, ["separate", *args])


def test_unknown_instruments_warn_and_strict_refuses(
    footage, tiny_models_dir: Path, tmp_path: Path
) -> None:
    path, _ = footage["didgeridoo_solo"]
    result = _separate(str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "player 1's instrument is unknown" in result.output
    strict = _separate(str(path), "-o", str(tmp_path / "strict"), "--strict")
    assert strict.exit_code != 0
    assert "--strict" in strict.output and "player 1's instrument is unknown" in strict.output
    assert not (tmp_path / "strict").exists()  # refused before anything was written


def test_no_musicians_is_a_clear_error(footage, tiny_models_dir: Path, tmp_path: Path) -> None:
    path, _ = footage["opera_no_musicians"]
    result = _separate(str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "people seen in" in result.output and "none holds an instrument" in result.output
    assert "--boxes" in result.output


def test_layout_fallback_and_count_mismatch_warn_and_strict_refuses(
    footage, tiny_models_dir: Path, tmp_path: Path
) -> None:
    path, _ = footage["plain_duet"]
    args = [str(path), "--players", "4", "-o", str(tmp_path / "out")]
    result = _separate(*args)
    assert result.exit_code == 0, result.output
    assert "--players 4 but only 2 players were seen" in result.output
    strict = _separate(*args[:-1], str(tmp_path / "strict"), "--strict")
    assert strict.exit_code == 2 and "--strict" in strict.output


def test_inspect_warns_of_cuts_no_people_and_a_whole_frame_box(tmp_path: Path) -> None:
    # a moving picture with no people and no gaps, cutting to another shot half way
    path = tmp_path / "cut.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=10:duration=2",
        "-f", "lavfi", "-i", "smptebars=size=320x180:rate=10:duration=2",
        "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
        "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    result = runner.invoke(app, ["inspect", str(path), "-o", str(tmp_path / "cut.png")])
    assert result.exit_code == 0, result.output
    assert "cuts to another shot at 1.9 s" in result.output
    assert "no people seen in cut.mp4" in result.output
    assert "one player box spans the whole width of the frame" in result.output
    assert (tmp_path / "cut.png").is_file()


def test_inspect_warns_of_unsure_instruments(
    footage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = footage["stage"]
    result = runner.invoke(app, ["inspect", str(path), "-o", str(tmp_path / "stage.png")])
    assert result.exit_code == 0, result.output
    assert "4 players (people)" in result.output
    # the mandola and the guitar: instruments URMP does not have
    assert result.output.count("not a URMP instrument") == 2
    assert "only with confidence" not in result.output
    # the fiddle: named, with a note that a viola would look the same
    assert "note: pictures cannot tell these apart here (vn may be va)" in result.output
    # the pipes (named sax) and the fiddle are guessed at 0.4 to 0.6 here: below a stricter bar
    # they are unsure, and said to be
    monkeypatch.setattr(queries, "UNSURE_CONFIDENCE", 0.7)
    strict = runner.invoke(app, ["inspect", str(path), "-o", str(tmp_path / "strict.png")])
    assert strict.exit_code == 0, strict.output
    assert "player 3 looks like sax but only with confidence" in strict.output
    # inspect's own advice points at the picture it drew, not at itself; --json has it too
    assert "vimss inspect" not in strict.output
    assert f"check in {tmp_path / 'strict.png'}" in strict.output
    as_json = runner.invoke(app, ["inspect", str(path), "-o", str(tmp_path / "j.png"), "--json"])
    document = json.loads(as_json.stdout)
    assert any("looks like sax but only" in line for line in document["warnings"])
    assert document["note"].startswith("pictures cannot tell these apart here")


def test_silent_video_needs_audio_and_urmp_names_give_the_instruments(
    footage, tiny_models_dir: Path, tmp_path: Path
) -> None:
    source, _ = footage["plain_duet"]
    folder = tmp_path / "01_Duet_vn_vn"
    folder.mkdir()
    video = folder / "Vid_01_Duet_vn_vn.mp4"
    ffmpeg("-i", str(source), "-an", "-c:v", "copy", str(video))
    mix = write_wav(folder / "AuMix_01_Duet_vn_vn.wav", np.zeros(2 * RATE, np.float32) + 0.01)
    refused = _separate(str(video), "-o", str(tmp_path / "out"))
    assert refused.exit_code != 0
    assert "--audio" in refused.output and "AuMix" in refused.output
    result = _separate(str(video), "--audio", str(mix), "-o", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    stems = [Path(s["path"]).name for s in document["inputs"][0]["stems"]]
    assert stems == ["01_vn.wav", "02_vn.wav"]
    assert "read from the URMP-style name" in result.output


def test_urmp_names() -> None:
    assert urmp_instruments(Path("Vid_03_Dance_fl_cl.mp4")) == ["fl", "cl"]
    assert urmp_instruments(Path("01_Jupiter_vn_vc/anything.mp4")) == ["vn", "vc"]
    assert urmp_instruments(Path("concert.mp4")) is None
    assert urmp_instruments(Path("Vid_03_Dance_fl_xx.mp4")) is None


def test_footage_builder_writes_truth(footage) -> None:
    path, truth = footage["stage"]
    truths = json.loads((path.parent / "truth.json").read_text())
    assert truths["stage"]["instruments"] == truth.instruments == ["other"] * 3 + ["vn"]


def test_rotation_metadata_is_applied(footage, tmp_path: Path) -> None:
    # a phone video: pixels stored turned a quarter clockwise, metadata turning them back
    source, _ = footage["plain_duet"]
    turned, phone = tmp_path / "turned.mp4", tmp_path / "phone.mp4"
    ffmpeg("-i", str(source), "-vf", "transpose=1", "-c:a", "copy", str(turned))
    ffmpeg("-display_rotation", "90", "-i", str(turned), "-c", "copy", str(phone))
    analysis = analyse_video(phone)
    assert (analysis.info.width, analysis.info.height) == (1280, 720)
    assert analysis.source == "people" and len(analysis.players) == 2


def test_identical_label_queries_and_too_many_players_warn(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    mix = write_wav(tmp_path / "mix.wav", np.zeros(RATE, np.float32) + 0.01)
    result = _separate(
        str(mix), "-i", "vn,vn,vc,fl,ob,cl", "-o", str(tmp_path / "out"), "--no-pitch-voices"
    )
    assert result.exit_code == 0, result.output
    assert "queried as vn with nothing else to tell them apart" in result.output
    assert "6 players, but the models were trained on ensembles of at most 5" in result.output
    strict = _separate(
        str(mix), "-i", "vn,vn", "-o", str(tmp_path / "strict"), "--strict", "--no-pitch-voices"
    )
    assert strict.exit_code == 2 and "identical" in strict.output


def test_existing_stems_are_refused_before_the_video_is_analysed(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vimss_cli.vision.queries as queries

    video = tmp_path / "concert.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=5:duration=1",
        "-f", "lavfi", "-i", f"sine=sample_rate={RATE}:duration=1", "-shortest", str(video),
    )  # fmt: skip
    (tmp_path / "out" / "concert").mkdir(parents=True)
    write_wav(tmp_path / "out" / "concert" / "01_vn.wav", np.zeros(RATE, np.float32))

    def analysed(*args: object, **kwargs: object) -> None:
        raise AssertionError("the video was analysed before the outputs were checked")

    monkeypatch.setattr(queries, "analyse_video", analysed)
    result = _separate(str(video), "-o", str(tmp_path / "out"))
    assert result.exit_code != 0 and "already exist" in result.output


def test_urmp_named_audio_needs_no_instruments(tiny_models_dir: Path, tmp_path: Path) -> None:
    mix = write_wav(tmp_path / "AuMix_07_Song_vn_vc.wav", np.zeros(RATE, np.float32) + 0.01)
    result = _separate(str(mix), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / mix.stem
    assert sorted(p.name for p in folder.iterdir()) == ["01_vn.wav", "02_vc.wav"]


def test_motion_where_no_player_was_found_is_warned_of(footage, tmp_path: Path) -> None:
    """A thing that moves beside the two players the detector sees (a bow, a player it
    missed): the players are kept and the user is told where to look."""
    picture = real_footage.compose(real_footage.load_photos())["plain_duet"][0]
    rng = np.random.default_rng(0)

    def shaking_patch(frame: np.ndarray, t: float) -> np.ndarray:
        y = 300 + int(60 * np.sin(6 * t))
        frame[y : y + 200, 1180:1260] = rng.integers(0, 255, (200, 80, 3), dtype=np.uint8)
        return frame

    path = tmp_path / "duet_and_motion.mp4"
    real_footage.write_video(path, picture, drift=False, overlay=shaking_patch)
    analysis = analyse_video(path)
    assert len(analysis.players) == 2 and analysis.source == "people"
    warned = [w for w in analysis.warnings if "something moves where no player was found" in w]
    assert len(warned) == 1 and "x = 12" in warned[0], analysis.warnings  # x = 1200-1240 px
    still, _ = footage["plain_duet"]  # the same players, nothing else moving: no warning
    assert not [w for w in analyse_video(still).warnings if "something moves" in w]


def test_a_cut_is_told_and_not_taken_for_motion_beside_the_players(tmp_path: Path) -> None:
    """Found by a review: a cut from the players to another picture also gave 'something moves
    where no player was found', as a cut moves every column."""
    photos = real_footage.load_photos()
    orchestra = real_footage._letterbox(photos["orchestra"], 1280, 720)
    opera = real_footage._letterbox(photos["italy"], 1280, 720)

    def cut(frame: np.ndarray, t: float) -> np.ndarray:
        return opera.copy() if t > 0.5 else frame

    path = tmp_path / "cut_orchestra.mp4"
    real_footage.write_video(path, orchestra, drift=False, seconds=4.0, overlay=cut)
    warnings = analyse_video(path).warnings
    assert any("cuts to another shot" in w for w in warnings), warnings
    assert not any("something moves" in w for w in warnings), warnings


def test_a_blank_or_tiny_picture_is_told(tmp_path: Path) -> None:
    """Found by a review: with --players 2, a black video got two players named 'acoustic
    guitar', and a 64x64 one 'marimba' and 'organ', without a word."""
    black, tiny = tmp_path / "black.mp4", tmp_path / "tiny.mp4"
    for path, source in ((black, "color=black:s=640x360"), (tiny, "testsrc2=size=64x64")):
        ffmpeg(
            "-f", "lavfi", "-i", f"{source}:rate=5:duration=2",
            "-f", "lavfi", "-i", f"sine=sample_rate={RATE}:duration=2", "-shortest",
            "-pix_fmt", "yuv420p", str(path),
        )  # fmt: skip
    blank = analyse_video(black, players=2).warnings
    assert any("the picture is blank" in w for w in blank), blank
    small = analyse_video(tiny, players=2).warnings
    assert any("only 64x64 pixels, too small" in w for w in small), small
    assert not any("blank" in w for w in small)


def test_poses_are_tracked_on_each_player_through_the_video(footage) -> None:
    """The pose estimator follows each real player in every frame; on still photographs the
    tracked keypoints barely move, so the pose motion stays near zero."""
    from vimss_cli.vision.pose_motion import pose_motion
    from vimss_cli.vision.pose_track import track_poses

    path, truth = footage["plain_duet"]
    analysis = analyse_video(path)
    keypoints = track_poses(path, analysis.players, analysis.rate)
    assert keypoints.shape[0] == truth.count == 2 and keypoints.shape[2:] == (33, 3)
    seen = keypoints[:, :, 11, 2] > 0
    assert seen.mean(axis=1).min() >= 0.9
    for player, track in zip(analysis.players, keypoints, strict=True):
        x, _, w, _ = player.box
        shoulders = track[track[:, 11, 2] > 0][:, [11, 12], 0].mean(axis=1)
        assert ((shoulders > x) & (shoulders < x + w)).all()
    motion = pose_motion(keypoints, analysis.rate)
    assert np.median(motion) < 0.3


def test_a_pose_model_gets_each_players_tracked_motion(footage) -> None:
    """A model that reads pose motion, given a real video with no true keypoints beside it,
    gets each player's motion from the tracked keypoints, and is told so."""
    from vimss_cli.model import ModelConfig
    from vimss_cli.vision.pose_motion import FEATURES

    path, _ = footage["plain_duet"]
    config = ModelConfig(
        sample_rate=8000, levels=2, base_features=4, query_dim=4, motion_channels=len(FEATURES),
        motion_features="pose", motion_encoder_channels=3,
    )  # fmt: skip
    plan = queries.PlayerPlan(path, ["vn", "vn"], has_video=True)
    made = plan.queries(config)
    assert [q.motion.shape[0] for q in made if q.motion is not None] == [len(FEATURES)] * 2
    assert plan.analysis is not None and made[0].motion_rate == plan.analysis.rate
    assert "motion from the players' keypoints, tracked in the video" in plan.notes
    assert not any("pose was lost" in w for w in plan.warnings)
