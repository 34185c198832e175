"""`vimss inspect` and `vimss separate VIDEO` without --instruments, through Typer's runner."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from conftest import RATE, TINY_CONFIG, ffmpeg, make_tiny_model
from scenes import compose_scene
from test_cli import assert_clean_failure, files_under
from vimss_cli.checkpoint import save_checkpoint
from vimss_cli.cli import app

runner = CliRunner()
SIZE = (256, 120)


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def duet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "duet.mp4"
    compose_scene(path, ["vc", "tpt"], size=SIZE, seconds=2.0, audio_rate=RATE, seed=5)
    return path


@pytest.fixture()
def visual_model(tmp_path: Path) -> Path:
    path = tmp_path / "visual.safetensors"
    config = dataclasses.replace(TINY_CONFIG, appearance_dim=1280, motion_channels=1)
    save_checkpoint(path, make_tiny_model(config), provenance={"trained": False})
    return path


def test_inspect_json_and_frame(duet: Path, tmp_path: Path) -> None:
    frame = tmp_path / "frame.png"
    result = run("inspect", duet, "--out", frame, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    players = document["players"]
    assert [p["player"] for p in players] == [1, 2]
    for player in players:
        x, y, w, h = player["box"]
        assert x >= 0 and y >= 0 and x + w <= SIZE[0] and y + h <= SIZE[1] and w > 0 and h > 0
    assert players[0]["box"][0] < players[1]["box"][0]
    # the scene shows a cellist left of a trumpeter: both recognised, and not by a hair
    assert [p["instrument"] for p in players] == ["vc", "tpt"]
    assert players[0]["confidence"] > 0.5 and players[1]["confidence"] > 0.25
    # the table's "other" and ImageNet class are in the JSON too
    assert [p["other"] for p in players] == [False, False]
    assert players[0]["imagenet_class"].startswith("cello")
    image = cv2.imread(str(frame))
    assert image is not None and image.shape == (SIZE[1], SIZE[0], 3)


def test_inspect_table_and_default_frame_path(
    duet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("inspect", duet, "--boxes", "10,10,100,100;140,20,100,90")
    assert result.exit_code == 0, result.stderr
    assert "2 players (boxes)" in result.stdout and "140, 20, 100, 90" in result.stdout
    assert (tmp_path / "duet_players.png").is_file()


@pytest.mark.parametrize("explicit", [False, True], ids=["default-path", "out"])
def test_inspect_refuses_to_overwrite_a_file_without_force(
    duet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, explicit: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    frame = tmp_path / "duet_players.png"
    frame.write_bytes(b"the user's own picture")
    args = ["--out", frame] if explicit else []
    result = run("inspect", duet, *args, "--boxes", "10,10,100,100;140,20,100,90")
    assert_clean_failure(result, "already exist", "duet_players.png", "--force")
    assert frame.read_bytes() == b"the user's own picture"
    forced = run("inspect", duet, *args, "--boxes", "10,10,100,100;140,20,100,90", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert cv2.imread(str(frame)) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["duet_players.png"]  # no temporaries


def test_inspect_makes_the_folder_its_picture_goes_into(duet: Path, tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "players.png"
    result = run("inspect", duet, "--out", target, "--boxes", "10,10,100,100;140,20,100,90")
    assert result.exit_code == 0, result.stderr
    assert cv2.imread(str(target)) is not None
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    refused = run("inspect", duet, "--out", blocker / "p.png", "--boxes", "10,10,100,100")
    assert_clean_failure(refused, f"cannot write into {blocker}: it is not a folder")
    # a wrong name is a bad argument: exit 2, as `vimss report -o r.txt` (a trial found 1)
    jpeg = run("inspect", duet, "--out", tmp_path / "p.jpg", "--boxes", "10,10,100,100")
    assert_clean_failure(jpeg, "--out must name a .png file")
    assert jpeg.exit_code == 2


def test_separate_video_without_instruments(
    tiny_models_dir: Path, duet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stems"
    result = run("separate", duet, "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["inputs"]
    assert [s["player"] for s in entry["stems"]] == [1, 2]
    assert len(files_under(out)) == 2
    assert "2 players (foreground)" in result.stderr
    assert "appearance and motion were measured but are not used" in result.stderr
    for stem in entry["stems"]:
        assert soundfile.info(stem["path"]).frames == entry["samples"]
    # finding the players is timed apart from the separation (found by a new user's trial:
    # the separation's time alone was printed as the run's)
    assert entry["players_seconds"] > 0 and entry["wall_seconds"] > 0
    # `vimss report --mixture VIDEO` makes the page `separate --report` makes: the players'
    # picture too (found by a new user's trial: it had none)
    folder = out / "duet"
    page = run("report", folder, "--mixture", duet)
    assert page.exit_code == 0, page.stderr
    text = (folder / "report.html").read_text()
    assert text.count("<audio") == 3 and text.count('<img alt="the players found"') == 1
    sound = tmp_path / "duet.wav"
    soundfile.write(sound, soundfile.read(entry["stems"][0]["path"])[0], RATE)
    again = run("report", folder, "--mixture", sound, "--force")
    assert again.exit_code == 0 and "<img" not in (folder / "report.html").read_text()


def test_separate_video_with_a_visual_model(
    tiny_models_dir: Path, duet: Path, tmp_path: Path, visual_model: Path
) -> None:
    out = tmp_path / "stems"
    result = run("separate", duet, "-o", out, "-i", "vc,tpt", "--model", visual_model)
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in files_under(out)] == ["01_vc.wav", "02_tpt.wav"]
    assert "not used" not in result.stderr


def _audio_only_mp4(tmp: Path) -> Path:
    path = tmp / "sound.mp4"
    ffmpeg("-f", "lavfi", "-i", f"anoisesrc=d=1:r={RATE}", "-c:a", "aac", str(path))
    return path


def _empty_stage(tmp: Path) -> Path:
    path = tmp / "stage.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "color=c=gray:s=256x120:r=10:d=2"),
        *("-f", "lavfi", "-i", f"anoisesrc=d=2:r={RATE}", "-pix_fmt", "yuv420p", str(path)),
    )
    return path


def _corrupt(tmp: Path) -> Path:
    path = tmp / "broken.mp4"
    compose_scene(path, ["vn", "vc"], size=SIZE, seconds=4.0, audio_rate=RATE)
    data = bytearray(path.read_bytes())
    start = len(data) // 3  # inside the media data, well before the index at the end
    data[start : start + 1500] = bytes((b * 7 + 13) % 256 for b in data[start : start + 1500])
    path.write_bytes(bytes(data))
    return path


def _lengths(video: float, audio: float):
    def make(tmp: Path) -> Path:
        path = tmp / "mismatch.mp4"
        compose_scene(path, ["vn", "vc"], size=SIZE, seconds=video, audio_seconds=audio)
        return path

    return make


def _late_picture(tmp: Path) -> Path:
    """A picture of 2 s that starts 2 s into 4 s of sound: it ends with the sound."""
    source, path = _lengths(video=2.0, audio=4.0)(tmp), tmp / "late.mp4"
    ffmpeg("-itsoffset", "2", "-i", str(source), "-i", str(source), "-map", "0:v", "-map", "1:a",
           "-c", "copy", str(path))  # fmt: skip
    return path


@pytest.mark.parametrize(
    "make_input, args, fragments",
    [
        (_audio_only_mp4, [], ["audio-only input", "--instruments"]),
        (_empty_stage, [], ["no players found", "--players N or --boxes"]),
        (lambda tmp: None, ["--boxes", "0,0,50,50;230,0,50,50"], ["outside the 256x120 frame"]),
        (lambda tmp: None, ["-i", "vn,vc,fl", "--players", "2"], ["--players 2", "names 3"]),
        (lambda tmp: None, ["-i", "vn", "--boxes", "0,0,9,9;20,0,9,9"], ["2 boxes", "names 1"]),
        (_corrupt, [], ["cannot decode the pictures"]),
        (_lengths(video=4.0, audio=1.0), [], ["the picture lasts 4.0 s but the sound 1.0 s"]),
        (_lengths(video=1.0, audio=5.0), [], ["picture lasts 1.0 s", "sound 5.0 s"]),
        (_late_picture, [], ["the picture lasts 2.0 s but the sound 4.0 s"]),
    ],
    ids=[
        "no-picture",
        "zero-players",
        "box-outside",
        "count-vs-players",
        "count-vs-boxes",
        "corrupt-frames",
        "video-longer",
        "video-shorter",
        "video-starts-late",
    ],
)
def test_bad_video_inputs(
    tiny_models_dir: Path, duet: Path, tmp_path: Path, make_input, args, fragments
) -> None:
    source = make_input(tmp_path) or duet
    out = tmp_path / "out"
    result = run("separate", source, "-o", out, *args)
    assert_clean_failure(result, *fragments)
    assert files_under(out) == []


def test_length_mismatch_advice_can_be_followed(
    tiny_models_dir: Path, tmp_path: Path, visual_model: Path
) -> None:
    source = _lengths(video=4.0, audio=1.0)(tmp_path)
    out = tmp_path / "out"
    for args in ([], ["-i", "vn,vc", "--model", visual_model]):  # with --instruments too
        result = run("separate", source, "-o", out, *args)
        assert_clean_failure(
            result, "to separate by sound alone, name the players with --instruments (the "
            "model must take labels"
        )  # fmt: skip
        assert "pass --instruments to separate by labels only" not in result.stderr
        assert files_under(out) == []
    followed = run("separate", source, "-o", out, "-i", "vn,vc")  # the default takes labels
    assert followed.exit_code == 0, followed.stderr
    # the sound ends before the file does (a file cut short reads the same): told
    assert "mismatch.mp4: its sound ends at 1.0 s but the file lasts 4.0 s" in followed.stderr
    # a sound that starts 3 s late and ends with the picture is not cut short
    late = tmp_path / "late_sound.mp4"
    ffmpeg("-i", str(source), "-itsoffset", "3", "-i", str(source), "-map", "0:v", "-map",
           "1:a", "-c", "copy", str(late))  # fmt: skip
    in_time = run("separate", late, "-o", tmp_path / "late", "-i", "vn,vc")
    assert in_time.exit_code == 0, in_time.stderr
    assert "cut short" not in in_time.stderr
    assert [p.name for p in files_under(out)] == ["01_vn.wav", "02_vc.wav"]
    shown = run("inspect", source, "--out", tmp_path / "players.png")  # it uses no sound
    assert shown.exit_code == 0, shown.stderr
    assert "2 players" in shown.stdout


def test_a_still_picture_beside_longer_sound_is_separated_with_a_warning(
    tiny_models_dir: Path, duet: Path, tmp_path: Path
) -> None:
    picture, still = tmp_path / "picture.mp4", tmp_path / "still.mp4"
    ffmpeg("-i", str(duet), "-frames:v", "1", "-an", str(picture))  # the duet's first picture
    ffmpeg("-i", str(picture), "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={RATE}:d=3",
           "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(still))  # fmt: skip
    out = tmp_path / "out"
    result = run("separate", still, "-o", out, "--players", "2")
    assert result.exit_code == 0, result.stderr
    assert "the picture is a still" in result.stderr
    assert "nobody can be seen playing" in result.stderr
    assert len(files_under(out)) == 2


def test_a_still_picture_with_its_sound_given_apart_is_warned_about_as_a_still(
    tiny_models_dir: Path, duet: Path, tmp_path: Path
) -> None:
    """Found by a trial: a PNG with --audio was told "the picture lasts 0.0 s but --audio
    ... 4.7 s; is it this video's sound?" instead of the still's warning."""
    still = tmp_path / "still.png"
    ffmpeg("-i", str(duet), "-frames:v", "1", str(still))
    sound = tmp_path / "sound.wav"
    soundfile.write(sound, np.zeros(3 * RATE, np.float32) + 0.01, RATE)
    result = run("separate", still, "--audio", sound, "-o", tmp_path / "out", "-i", "vn,vc")
    assert result.exit_code == 0, result.stderr
    assert "the picture is a still" in result.stderr and "is it this video's sound" not in (
        result.stderr
    )


def test_urmp_names_that_disagree_are_told(
    tiny_models_dir: Path, duet: Path, tmp_path: Path
) -> None:
    """Found by a trial: instruments read from --audio's name were said to come from the
    video's; a video and an --audio named for other players were not told apart; and
    --players against a name blamed --instruments, which was not given."""
    silent = tmp_path / "Vid_01_Duet_vn_vc.mp4"
    ffmpeg("-i", str(duet), "-an", "-c:v", "copy", str(silent))
    plain = tmp_path / "duet_silent.mp4"
    ffmpeg("-i", str(duet), "-an", "-c:v", "copy", str(plain))
    sound = tmp_path / "AuMix_01_Duet_vn_cl.wav"
    soundfile.write(sound, soundfile.read(duet_sound(duet, tmp_path))[0], RATE)
    named_by_sound = run("separate", plain, "--audio", sound, "-o", tmp_path / "a")
    assert named_by_sound.exit_code == 0, named_by_sound.stderr
    assert f"read from the URMP-style name of {sound.name}" in named_by_sound.stderr
    both = run("separate", silent, "--audio", sound, "-o", tmp_path / "b")
    assert both.exit_code == 0, both.stderr
    assert f"the names of {silent.name} (vn,vc) and {sound.name} (vn,cl) name other players" in (
        " ".join(both.stderr.split())
    )
    count = run("separate", silent, "--audio", sound, "-o", tmp_path / "c", "--players", "3")
    assert_clean_failure(count, f"--players 3 but the URMP-style name of {silent.name} names 2")
    boxes = run("separate", silent, "--audio", sound, "-o", tmp_path / "c", "--boxes",
                "0,0,10,10;20,0,10,10;40,0,10,10")  # fmt: skip
    assert_clean_failure(boxes, f"--boxes gives 3 but the URMP-style name of {silent.name}")
    folder = tmp_path / "02_Piece_vn_vc"  # a piece's folder names its files' players
    folder.mkdir()
    clip = folder / "clip.mp4"
    ffmpeg("-i", str(duet), "-c", "copy", str(clip))
    in_folder = run("separate", clip, "-o", tmp_path / "d")
    assert in_folder.exit_code == 0, in_folder.stderr
    assert "read from the URMP-style name of the folder 02_Piece_vn_vc" in in_folder.stderr


def duet_sound(video: Path, tmp_path: Path) -> Path:
    """The duet's own sound as a WAV at the tests' rate."""
    path = tmp_path / "duet_sound.wav"
    ffmpeg("-i", str(video), "-vn", "-ac", "1", "-ar", str(RATE), str(path))
    return path


def test_a_label_model_given_the_players_says_it_does_not_look(
    tiny_models_dir: Path, duet: Path, tmp_path: Path
) -> None:
    """Found by a trial: ``-i vn,vc,fl`` on a duet's video wrote 3 stems without a word that
    the picture (2 players) was not looked at; a video model refuses the same."""
    for extra in ([], ["--pitch-voices"]):  # no pair to give by motion: still not looked at
        result = run("separate", duet, "-o", tmp_path / "out", "-i", "vn,vc,fl", "--force", *extra)
        assert result.exit_code == 0, result.stderr
        assert "the players are the 3 named; the picture is not looked at" in result.stderr
    found = run("separate", duet, "-o", tmp_path / "found")  # looked at: no such note
    assert found.exit_code == 0 and "not looked at" not in found.stderr


def test_count_mismatch_with_a_visual_model(
    tiny_models_dir: Path, duet: Path, tmp_path: Path, visual_model: Path
) -> None:
    out = tmp_path / "out"
    result = run("separate", duet, "-o", out, "-i", "vn,vc,fl", "--model", visual_model)
    assert_clean_failure(result, "--instruments names 3 players but 2 were found")
    assert files_under(out) == []


def test_inspect_bad_inputs(tmp_path: Path) -> None:
    sound = _audio_only_mp4(tmp_path)
    assert_clean_failure(run("inspect", sound), "no picture stream")
    as_json = run("inspect", sound, "--json")  # one object on stdout, as separate's
    assert as_json.exit_code != 0 and "no picture stream" in json.loads(as_json.stdout)["error"]
    assert_clean_failure(run("inspect", tmp_path / "nope.mp4"), "not found")
    stage = _empty_stage(tmp_path)
    assert_clean_failure(run("inspect", stage, "--out", tmp_path / "x.png"), "no players found")
