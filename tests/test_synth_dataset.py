"""``vimss data synth`` end to end: URMP layout, exact mix, determinism, resume, bad inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from test_cli import assert_clean_failure
from vimss_cli.cli import app
from vimss_cli.ffmpeg_io import ffmpeg_executable
from vimss_cli.media import probe
from vimss_cli.synth import dataset, images, resources, scores
from vimss_cli.urmp import SYNTH_MANIFEST_NAME, list_pieces

runner = CliRunner()
SMALL = ["--seconds", "3", "--sample-rate", "16000", "--video-size", "96x54"]
#: The smallest soundfont loads in 0.1 s (the training ones take seconds): used to keep
#: these tests fast; the default pools are covered by the test-split run below.
FAST_FONT = ["--soundfonts", str(resources.TEST_SOUNDFONTS[0].path)]


def synth(out: Path, *args: str):
    return runner.invoke(app, ["data", "synth", "-o", str(out), *SMALL, *args])


def audio_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob("*/*.wav"))
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "train"
    result = synth(out, "-n", "2", "--seed", "7", "--json", *FAST_FONT)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["generated"]) == 2
    return out


def test_urmp_layout_exact_mix_and_h264_video(generated: Path) -> None:
    pieces = list_pieces(generated)
    assert [p.name.number for p in pieces] == [1, 2]
    for piece in pieces:
        assert 2 <= piece.players <= 5
        expected = {piece.mix_path, piece.score_path, piece.video_path, *piece.stem_paths}
        expected.add(piece.pose_path)
        expected |= {piece.notes_path(j) for j in range(1, piece.players + 1)}
        expected |= {piece.f0_path(j) for j in range(1, piece.players + 1)}
        assert set(piece.folder.iterdir()) == expected
        mix, rate = soundfile.read(str(piece.mix_path), dtype="int16")
        assert rate == 16000 and mix.shape == (3 * 16000,)
        assert soundfile.info(str(piece.mix_path)).subtype == "PCM_16"
        stems = [
            soundfile.read(str(p), dtype="int16")[0].astype(np.int32) for p in piece.stem_paths
        ]
        assert np.array_equal(mix.astype(np.int32), np.sum(stems, axis=0))
        for j, stem in enumerate(stems, start=1):
            assert np.abs(stem).max() > 100, f"player {j} is silent"
            rows = [line.split("\t") for line in piece.notes_path(j).read_text().splitlines()]
            assert rows and all(len(row) == 3 for row in rows)
        info = probe(piece.video_path)
        assert info.has_video and not info.has_audio
        assert info.duration == pytest.approx(3.0, abs=0.1)
        text = subprocess.run(
            [ffmpeg_executable(), "-hide_banner", "-i", str(piece.video_path)],
            capture_output=True,
            text=True,
            check=False,
        ).stderr
        assert "Video: h264" in text and "96x54" in text


def test_manifest_records_works_instruments_soundfonts_and_version(generated: Path) -> None:
    manifest = json.loads((generated / SYNTH_MANIFEST_NAME).read_text())
    settings = manifest["settings"]
    assert settings["seed"] == 7 and settings["split"] == "train"
    assert settings["generator_version"] == dataset.GENERATOR_VERSION
    assert manifest["software"]["fluidsynth"].startswith("FluidSynth")
    assert settings["soundfonts"] == [str(resources.TEST_SOUNDFONTS[0].path)]
    for entry in manifest["pieces"].values():
        assert entry["folder"].startswith(f"{entry['number']:02d}_")
        assert scores.split_of(entry["work_id"]) == "train"
        assert set(entry["soundfonts"]) == {"TimGM6mb"}
        assert len(entry["instruments"]) == len(entry["soundfonts"]) == len(entry["images"])
    assert manifest["works"] == sorted({e["work"] for e in manifest["pieces"].values()})


def test_check_passes_on_a_generated_tree(generated: Path) -> None:
    result = runner.invoke(app, ["data", "check", "--dataset", "urmp", "--root", str(generated)])
    assert result.exit_code == 0, result.output
    assert "2 piece(s)" in result.stdout and "0 problem(s)" in result.stdout


def test_same_seed_same_audio_bytes_with_any_workers(generated: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    result = synth(again, "-n", "2", "--seed", "7", "--workers", "2", "--json", *FAST_FONT)
    assert result.exit_code == 0, result.output
    assert audio_digests(again) == audio_digests(generated)


def test_resume_keeps_finished_pieces_and_redoes_broken_ones(
    generated: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(generated, out)
    before = audio_digests(out)
    first, second = list_pieces(out)
    # a killed run's partial folder, a damaged stem, a piece published but never recorded
    (out / ".partial-03").mkdir()
    (out / ".partial-03" / "AuMix_junk.wav").write_bytes(b"RIFF")
    stem = first.stem_paths[0]
    stem.write_bytes(stem.read_bytes()[:1000])
    manifest = json.loads((out / SYNTH_MANIFEST_NAME).read_text())
    del manifest["pieces"]["2"]
    (out / SYNTH_MANIFEST_NAME).write_text(json.dumps(manifest))
    result = synth(out, "-n", "2", "--seed", "7", "--json", *FAST_FONT)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["generated"]) == sorted([first.folder.name, second.folder.name])
    assert ".partial-03" in report["redone"] and first.folder.name in report["redone"]
    assert not list(out.glob(".partial-*"))
    assert audio_digests(out) == before
    # a run with nothing left to do keeps everything
    result = synth(out, "-n", "2", "--seed", "7", "--json", *FAST_FONT)
    assert json.loads(result.stdout)["kept"] == [first.folder.name, second.folder.name]
    assert json.loads(result.stdout)["generated"] == []


def test_test_split_holds_out_the_soundfont_and_the_images(tmp_path: Path) -> None:
    out = tmp_path / "test"
    result = synth(out, "-n", "1", "--split", "test", "--json")
    assert result.exit_code == 0, result.output
    entry = json.loads((out / SYNTH_MANIFEST_NAME).read_text())["pieces"]["1"]
    assert set(entry["soundfonts"]) == {f.name for f in resources.TEST_SOUNDFONTS}
    assert scores.split_of(entry["work_id"]) == "test"
    train_labels = {s.label for specs in images.TRAIN_IMAGES.values() for s in specs}
    assert not set(entry["images"]) & train_labels
    check = runner.invoke(app, ["data", "check", "--root", str(out)])
    assert check.exit_code == 0, check.output


def test_image_and_soundfont_pools_are_disjoint_between_test_and_training() -> None:
    assert not {f.path for f in resources.TRAIN_SOUNDFONTS} & {
        f.path for f in resources.TEST_SOUNDFONTS
    }
    for code in images.TRAIN_IMAGES:
        train = {s.label for s in images.TRAIN_IMAGES[code]}
        test = {s.label for s in images.TEST_IMAGES[code]}
        assert train and test and not train & test, code


# ---- bad inputs: one line, non-zero exit, nothing written ----


def test_output_directory_with_other_files_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = synth(out, "-n", "1")
    assert_clean_failure(result, "not empty", "not a previous")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_previous_run_of_another_split_is_refused(generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "other"
    shutil.copytree(generated, out)
    before = audio_digests(out)
    result = synth(out, "-n", "2", "--seed", "7", "--split", "valid", *FAST_FONT)
    assert_clean_failure(result, "other settings", "split 'train' there, 'valid' now")
    assert audio_digests(out) == before
    # a review found the refusal naming split, seed and seconds whatever differed
    resized = synth(out, "-n", "2", "--seed", "7", "--video-size", "64x36", *FAST_FONT)
    assert_clean_failure(resized, "other settings (video_size")
    assert "split" not in resized.stderr and "seed" not in resized.stderr
    (out / "vimss_synth.json").write_text("[]")  # not ours: one line, not a traceback
    assert_clean_failure(synth(out, "-n", "2"), "is not a `vimss data synth` manifest")


def test_a_run_that_made_no_piece_is_started_anew_with_other_settings(
    generated: Path, tmp_path: Path
) -> None:
    """Found by a new user's trial: a run that failed on its first piece left a manifest of
    its settings, and the folder refused every other setting until deleted by hand."""
    out = tmp_path / "failed"
    out.mkdir()
    manifest = json.loads((generated / "vimss_synth.json").read_text())
    manifest["settings"]["video_size"] = [3840, 2160]
    manifest["pieces"] = {}
    (out / "vimss_synth.json").write_text(json.dumps(manifest))
    (out / ".partial-01").mkdir()  # a run still at work on its first piece: not taken over
    busy = synth(out, "-n", "1", "--seed", "7", *FAST_FONT)
    assert_clean_failure(busy, "other settings (video_size")
    (out / ".partial-01").rmdir()
    result = synth(out, "-n", "1", "--seed", "7", *FAST_FONT)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "vimss_synth.json").read_text())["settings"]["video_size"] == [96, 54]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--soundfonts", "/nonexistent/font.sf2"], "soundfont not found"),
        (["--pieces", "0"], "--pieces"),
        (["--seconds", "2"], "--seconds must be between 3 and 600, got 2 (every player"),
        (["--split", "dev"], "--split"),
        (["--video-size", "95x54"], "--video-size"),
        (["--video-size", "big"], "WIDTHxHEIGHT"),
        (["--video-size", "100000x100000"], "at most 3840x2160"),  # was: out of memory, later
        (["--video-size", "7680x1080"], "at most 3840x2160"),
        (["--ensemble", "vn,violin"], "unknown instrument 'violin'"),
        (["--ensemble", "vn"], "2 to 5 players"),
        (["--register-shuffle", "1.5"], "--register-shuffle"),
    ],
)
def test_bad_values_fail_before_writing(tmp_path: Path, args: list[str], fragment: str) -> None:
    out = tmp_path / "never"
    result = runner.invoke(app, ["data", "synth", "-o", str(out), "-n", "1", *args])
    assert_clean_failure(result, fragment)
    assert not out.exists()


def test_chosen_ensembles_are_cycled_through(tmp_path: Path) -> None:
    out = tmp_path / "duets"
    result = synth(out, "-n", "3", "--ensemble", "vn,vn", "--ensemble", "tpt, tbn", *FAST_FONT)
    assert result.exit_code == 0, result.output
    players = [piece.name.instruments for piece in list_pieces(out)]
    assert players == [("vn", "vn"), ("tpt", "tbn"), ("vn", "vn")]
    settings = json.loads((out / "vimss_synth.json").read_text())["settings"]
    assert settings["ensembles"] == [["vn", "vn"], ["tpt", "tbn"]]
    assert "register_shuffle" not in settings  # off: the settings of older runs


def test_register_shuffle_is_recorded_per_run_and_per_piece(tmp_path: Path) -> None:
    out = tmp_path / "shuffled"
    result = synth(out, "-n", "2", "--register-shuffle", "1", *FAST_FONT)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "vimss_synth.json").read_text())
    assert manifest["settings"]["register_shuffle"] == 1.0
    assert [p["parts_by_register"] for p in manifest["pieces"].values()] == [False, False]
    again = synth(out, "-n", "2", *FAST_FONT)  # without the option: other settings
    assert_clean_failure(again, "other settings")


def test_a_file_that_is_not_a_soundfont_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    result = synth(tmp_path / "never", "-n", "1", "--soundfonts", str(fake))
    assert_clean_failure(result, "not a SoundFont", str(fake))
    assert not (tmp_path / "never").exists()


def test_missing_fluidsynth_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = synth(tmp_path / "never", "-n", "1")
    assert_clean_failure(result, "fluidsynth is not installed", "apt-get install fluidsynth")
    assert not (tmp_path / "never").exists()


def test_missing_soundfont_package_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = resources.Soundfont("FluidR3_GM", tmp_path / "gone.sf2", "fluid-soundfont-gm")
    monkeypatch.setattr(resources, "TRAIN_SOUNDFONTS", (gone,))
    result = synth(tmp_path / "never", "-n", "1")
    assert_clean_failure(result, "apt-get install fluid-soundfont-gm")
    assert not (tmp_path / "never").exists()


def test_missing_image_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = dict(images.TRAIN_IMAGES)
    pool["vn"] = (images.ImageSpec(tmp_path / "violin.png", "openclipart-png"),)
    monkeypatch.setattr(images, "TRAIN_IMAGES", pool)
    result = synth(tmp_path / "never", "-n", "1")
    assert_clean_failure(result, "apt-get install openclipart-png")
    assert not (tmp_path / "never").exists()


def test_interrupt_leaves_no_half_written_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "render_video", interrupted)
    out = tmp_path / "cut"
    result = synth(out, "-n", "1", *FAST_FONT)
    assert result.exit_code == 130
    assert [p.name for p in out.iterdir()] == [SYNTH_MANIFEST_NAME]
    assert json.loads((out / SYNTH_MANIFEST_NAME).read_text())["pieces"] == {}


def test_library_reports_progress_through_a_callback(tmp_path: Path) -> None:
    events: list[dict] = []
    config = dataset.SynthConfig(
        tmp_path / "api",
        pieces=1,
        seconds=3.0,
        sample_rate=16000,
        video_size=(96, 54),
        soundfonts=(resources.TEST_SOUNDFONTS[0].path,),
    )
    report = dataset.synthesize(config, events.append)
    assert [(e["done"], e["total"]) for e in events] == [(0, 1), (1, 1)]
    assert events[-1]["piece"] == report.generated[0]
    assert report.seconds_generated == 3.0 and report.wall_seconds > 0


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_bytes(generated: Path, tmp_path: Path) -> None:
    """Kill a real `vimss data synth` process mid-run, then finish the job."""
    import os
    import signal
    import sys
    import time

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "vimss_cli", "data", "synth", "-o", str(out), "-n", "2"]
    command += ["--seed", "7", *SMALL, *FAST_FONT]
    process = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(out.glob(".partial-*/*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until a piece is half-written: its folder holds a first file
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL  # killed, not finished
    half_written = sorted(p.name for p in out.glob(".partial-*") if any(p.iterdir()))
    assert half_written, "the run was not killed while writing a piece"
    result = synth(out, "-n", "2", "--seed", "7", "--json", *FAST_FONT)
    assert result.exit_code == 0, result.output
    assert set(half_written) <= set(json.loads(result.stdout)["redone"])
    assert not list(out.glob(".partial-*"))
    assert audio_digests(out) == audio_digests(generated)


@pytest.mark.parametrize("module", ["music21", "mido"])
def test_without_the_data_extra_synth_names_the_pip_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # imports as if it were not installed
    result = synth(tmp_path / "never", "-n", "1")
    assert_clean_failure(result, f"needs {module}", "pip install 'vimss-cli[data]'")
    assert not (tmp_path / "never").exists()


def test_without_mido_the_score_check_names_the_pip_install(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mido", None)
    result = runner.invoke(app, ["data", "check", "--root", str(generated)])
    assert_clean_failure(result, "Sco_*.mid", "pip install 'vimss-cli[data]'")


def test_generated_pieces_give_pose_motion_for_training(generated: Path, tmp_path: Path) -> None:
    """The true keypoints beside each video become the pose model's motion; a folder without
    them is refused with the reason."""
    import shutil

    from vimss_cli.errors import InputError
    from vimss_cli.training.visual_cache import pose_visuals
    from vimss_cli.vision.pose_motion import FEATURES

    piece = list_pieces(generated)[0]
    visuals = pose_visuals(piece, len(FEATURES))
    assert visuals.motion.shape[:2] == (piece.players, len(FEATURES))
    assert visuals.motion.shape[2] == int(np.ceil(3.0 * 30000 / 1001))  # every video frame
    assert visuals.appearance.shape == (piece.players, 0)
    with pytest.raises(InputError, match="pose motion has 7 channels"):
        pose_visuals(piece, 2)
    bare = tmp_path / piece.folder.name
    shutil.copytree(piece.folder, bare)
    (bare / piece.pose_path.name).unlink()
    with pytest.raises(InputError, match="has no true keypoints"):
        pose_visuals(list_pieces(tmp_path)[0], len(FEATURES))


def test_a_low_saxophone_part_is_rendered_by_a_tenor(monkeypatch: pytest.MonkeyPatch) -> None:
    from vimss_cli.synth import audio, performance

    programs: list[int] = []

    def fake_render(fluidsynth, font, parts, seconds, rate):
        programs.extend(part.program for part in parts)
        return [np.zeros(int(seconds * rate), np.float32) for _ in parts]

    monkeypatch.setattr(audio, "render_players", fake_render)
    low = tuple(performance.PlayedNote(0.5 * i, 0.4, 50 + i % 3, 80) for i in range(8))
    high = tuple(performance.PlayedNote(0.5 * i, 0.4, 64 + i % 3, 80) for i in range(8))
    played = performance.Performance(
        5.0, 90.0, (low, high), (np.full(50, 100.0), np.full(50, 100.0)), (None, None)
    )
    font = resources.TEST_SOUNDFONTS[0]
    dataset._sound(played, ("sax", "sax"), [font, font], 8000, np.random.default_rng(0))
    assert programs == [66, 65]  # tenor for the low part, alto for the other
