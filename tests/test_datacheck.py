"""``vimss data check`` on hand-made URMP trees: a clean one passes, each damage is named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from conftest import ffmpeg
from test_cli import assert_clean_failure
from vimss_cli.cli import app
from vimss_cli.datacheck import check_dataset
from vimss_cli.urmp import PieceName

runner = CliRunner()
RATE = 8000
SECONDS = 2.0


def make_video(path: Path, seconds: float) -> None:
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=s=64x36:d={seconds}:r=30000/1001",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path),
    )  # fmt: skip


def make_piece(root: Path, name: PieceName, video: bool = True) -> Path:
    """A small, correct URMP piece folder: noise stems, their exact sum, notes, score, video."""
    folder = root / name.folder_name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(name.number)
    stems = (rng.standard_normal((len(name.instruments), int(SECONDS * RATE))) * 3000).astype(
        np.int16
    )
    for j, stem in enumerate(stems, start=1):
        soundfile.write(str(folder / name.stem_name(j)), stem, RATE, subtype="PCM_16")
        (folder / name.notes_name(j)).write_text("0.100\t440.000\t0.500\n1.000\t493.883\t0.400\n")
        (folder / name.f0_name(j)).write_text("0.000\t0.000\n0.010\t440.000\n")
    mix = stems.astype(np.int32).sum(axis=0).astype(np.int16)
    soundfile.write(str(folder / name.mix_name()), mix, RATE, subtype="PCM_16")
    midi = mido.MidiFile()
    track = mido.MidiTrack([mido.Message("note_on", note=60, time=0)])
    track.append(mido.Message("note_off", note=60, time=480))
    midi.tracks.append(track)
    midi.save(str(folder / name.score_name()))
    if video:
        make_video(folder / name.video_name(), SECONDS)
    return folder


NAME = PieceName(1, "Jupiter", ("vn", "vc"))


@pytest.fixture(scope="module")
def clean_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    make_video(path, SECONDS)
    return path.read_bytes()


@pytest.fixture()
def tree(tmp_path: Path, clean_video: bytes) -> Path:
    root = tmp_path / "urmp"
    folder = make_piece(root, NAME, video=False)
    (folder / NAME.video_name()).write_bytes(clean_video)
    (root / "Supplementary").mkdir()  # URMP keeps other folders at the top: ignored
    return root


def check(root: Path, *args: str):
    return runner.invoke(app, ["data", "check", "--dataset", "urmp", "--root", str(root), *args])


def test_clean_tree_passes(tree: Path) -> None:
    result = check(tree)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "1 piece(s), 0.0 min of audio, 0 problem(s)"
    report = json.loads(check(tree, "--json").stdout)
    assert report["ok"] and report["pieces"] == 1 and report["seconds"] == SECONDS


def _write(path: Path, data: np.ndarray, rate: int = RATE) -> None:
    soundfile.write(str(path), data, rate, subtype="PCM_16")


def _stem(folder: Path, j: int = 2) -> Path:
    return folder / NAME.stem_name(j)


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing stem": (lambda f: _stem(f).unlink(), f"missing {NAME.stem_name(2)}"),
    "extra stem": (
        lambda f: _stem(f).rename(f / "AuSep_3_fl_01_Jupiter.wav"),
        "unexpected AuSep_3_fl_01_Jupiter.wav (the folder name lists 2 players)",
    ),
    "mix is not the sum": (
        lambda f: _write(f / NAME.mix_name(), soundfile.read(str(_stem(f)), dtype="int16")[0]),
        "mixture is not the sum of the stems",
    ),
    "short stem": (
        lambda f: _write(_stem(f), soundfile.read(str(_stem(f)), dtype="int16")[0][:-100]),
        "WAV lengths differ",
    ),
    "other rate": (
        lambda f: _write(_stem(f), soundfile.read(str(_stem(f)), dtype="int16")[0], 16000),
        "WAV sample rates differ: [8000, 16000]",
    ),
    "stereo stem": (
        lambda f: _write(_stem(f), np.zeros((int(SECONDS * RATE), 2), dtype=np.int16)),
        "has 2 channels, expected 1",
    ),
    "notes not numbers": (
        lambda f: (f / NAME.notes_name(1)).write_text("onset freq dur\n"),
        "line 1 is not numbers",
    ),
    "notes columns": (
        lambda f: (f / NAME.notes_name(2)).write_text("0.1\t440\n"),
        "line 1 has 2 columns, expected 3",
    ),
    "f0 beyond the audio": (
        lambda f: (f / NAME.f0_name(1)).write_text("9.000\t440.0\n"),
        "time 9.0 s is outside the audio",
    ),
    "no video": (lambda f: (f / NAME.video_name()).unlink(), f"missing {NAME.video_name()}"),
    "short video": (
        lambda f: make_video((f / NAME.video_name()), 1.0),
        "lasts 1.00 s but the audio lasts 2.00 s",
    ),
    "video cut after its header": (
        lambda f: (f / NAME.video_name()).write_bytes(
            (f / NAME.video_name()).read_bytes()[: (f / NAME.video_name()).stat().st_size // 2]
        ),
        "is truncated or corrupt (its pictures stop at",
    ),
    "video is not a video": (
        lambda f: (f / NAME.video_name()).write_bytes(b"\x00" * 100),
        "cannot be read as video",
    ),
    "corrupt score": (
        lambda f: (f / NAME.score_name()).write_bytes(b"MThd\x00"),
        "is not a readable MIDI file",
    ),
    "wav cut after its header": (  # found by a review: reported only as "lengths differ"
        lambda f: (f / NAME.stem_name(1)).write_bytes((f / NAME.stem_name(1)).read_bytes()[:100]),
        f"{NAME.stem_name(1)} is truncated: its header declares",
    ),
    "unreadable wav": (
        lambda f: (f / NAME.mix_name()).write_bytes(b"RIFF...."),
        "is not a readable WAV",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_each_damage_is_reported_and_fails_the_check(tree: Path, damage: str) -> None:
    action, fragment = DAMAGES[damage]
    action(tree / NAME.folder_name)
    result = check(tree)
    assert result.exit_code == 1
    problems = [ln for ln in result.stdout.splitlines() if ln.startswith("problem: ")]
    assert problems and all(NAME.folder_name in ln for ln in problems)
    assert any(fragment in ln for ln in problems), problems
    assert_clean_failure(result, "does not pass the urmp check")


def test_folder_names_are_checked(tree: Path, clean_video: bytes) -> None:
    (tree / "02_Sonata_vn_xx").mkdir()
    second = make_piece(tree, PieceName(1, "Other", ("fl", "fl")), video=False)
    (second / PieceName(1, "Other", ("fl", "fl")).video_name()).write_bytes(clean_video)
    report = check_dataset("urmp", tree)
    messages = [str(p) for p in report.problems]
    assert any("02_Sonata_vn_xx" in m and "unknown instruments ['xx']" in m for m in messages)
    assert any("piece number 1 also used by 01_Jupiter_vn_vc" in m for m in messages)
    assert len(messages) == 2, messages


def test_a_broken_synth_manifest_fails_the_synth_check(tree: Path) -> None:
    """Found by a review: ``--dataset synth`` passed a split whose manifest was ``{broken``."""
    assert check(tree, "--dataset", "synth").exit_code == 0  # no manifest: a plain layout
    for text, fragment in (("{broken", "is not readable JSON"), ("[]", "is not a `vimss data")):
        (tree / "vimss_synth.json").write_text(text)
        result = check(tree, "--dataset", "synth")
        assert result.exit_code == 1 and f"vimss_synth.json {fragment}" in result.stdout


def test_empty_root_fails(tmp_path: Path) -> None:
    result = check(tmp_path)
    assert result.exit_code == 1
    assert "no piece folders" in result.stdout


def test_a_piece_folder_given_as_the_root_names_its_parent(tree: Path) -> None:
    piece = next(p for p in sorted(tree.iterdir()) if p.is_dir())
    result = check(piece)
    assert result.exit_code == 1
    assert f"{piece} looks like a piece folder itself: give its parent, {tree}" in (
        " ".join(result.stdout.split())
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--root", "/nonexistent/urmp"], "not a directory"),
        (["--dataset", "musdb", "--root", "."], "unknown --dataset"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["data", "check", *args])
    assert_clean_failure(result, fragment)
    assert result.exit_code == 2
