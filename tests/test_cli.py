"""The ``vimss`` command through Typer's runner: outputs, JSON, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

from conftest import RATE, ffmpeg, noise, write_wav
from vimss_cli import __version__, ffmpeg_io
from vimss_cli.cli import app
from vimss_cli.engine import _WindowRunner
from vimss_cli.errors import InputError
from vimss_cli.media import read_audio
from vimss_cli.soft_masks import refine as refine_on_mixture

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_failure(result, *fragments: str) -> None:
    """Non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("warning: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output + result.stderr


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture()
def mix(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "duet.wav", noise(2.5), subtype="PCM_16")


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"vimss {__version__}"


def test_separate_writes_one_stem_per_player_with_exact_duration(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stems"
    result = run("separate", mix, "-o", out, "--instruments", "vn,VC,fl", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    (entry,) = document["inputs"]
    assert entry["input"] == str(mix) and entry["audio_seconds"] == pytest.approx(2.5)
    assert entry["wall_seconds"] > 0 and entry["players_seconds"] == 0  # named, not found
    assert [(s["player"], s["instrument"]) for s in entry["stems"]] == [
        (1, "vn"),
        (2, "vc"),
        (3, "fl"),
    ]
    expected = [out / "duet" / name for name in ("01_vn.wav", "02_vc.wav", "03_fl.wav")]
    assert [Path(s["path"]) for s in entry["stems"]] == expected
    assert files_under(out) == expected
    for path in expected:
        info = soundfile.info(str(path))
        assert info.frames == soundfile.info(str(mix)).frames and info.samplerate == RATE
        assert info.subtype == "PCM_16"
    assert "untrained" in result.stderr  # the placeholder model is called what it is


@pytest.mark.parametrize(
    "fmt, subtype", [("wav16", "PCM_16"), ("wav24", "PCM_24"), ("float32", "FLOAT")]
)
def test_formats(tiny_models_dir: Path, mix: Path, tmp_path: Path, fmt: str, subtype: str) -> None:
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert soundfile.info(str(tmp_path / "o" / "duet" / "01_vn.wav")).subtype == subtype


def test_flac_and_mp3_stems(tiny_models_dir: Path, mix: Path, tmp_path: Path) -> None:
    # flac is flac16
    result = run("separate", mix, "-o", tmp_path / "f", "-i", "vn,vc", "--format", "flac")
    assert result.exit_code == 0, result.output
    info = soundfile.info(str(tmp_path / "f" / "duet" / "01_vn.flac"))
    assert (info.format, info.subtype) == ("FLAC", "PCM_16")
    # MP3 at an MP3 rate (the tiny model's 8 kHz, here also the input's), the input's length,
    # close to the lossless stems (lossy, so not equal)
    # (the untrained network's own stems: refined, they are white noise, which MP3 codes
    # with 20 % error at 8 kHz)
    reference = run(
        "separate", mix, "-o", tmp_path / "w", "-i", "vn,vc", "--format", "float32", "--no-refine"
    )
    assert reference.exit_code == 0, reference.output
    result = run(
        "separate", mix, "-o", tmp_path / "m", "-i", "vn,vc", "--format", "mp3", "--rest",
        "--no-refine",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = tmp_path / "m" / "duet"
    assert sorted(p.name for p in folder.iterdir()) == ["01_vn.mp3", "02_vc.mp3", "03_rest.mp3"]
    for name in ("01_vn", "02_vc"):
        info = soundfile.info(str(folder / f"{name}.mp3"))
        assert (info.format, info.samplerate, info.frames) == ("MP3", RATE, 2.5 * RATE)
        lossy = soundfile.read(str(folder / f"{name}.mp3"), dtype="float32")[0]
        exact = soundfile.read(str(tmp_path / "w" / "duet" / f"{name}.wav"), dtype="float32")[0]
        error = np.sqrt(np.mean((lossy - exact) ** 2) / np.mean(exact**2))
        assert error < 0.1, error  # the same signal, coded (3.5 % here; another stem: > 100 %)
    # the stems of a 96 kHz input are refused in MP3 before any work, with the way out
    hi = write_wav(tmp_path / "hi.wav", noise(0.2, rate=96000), 96000)
    refused = run("separate", hi, "-o", tmp_path / "hi", "-i", "vn", "--format", "mp3")
    assert_clean_failure(refused, "MP3 holds", "not the stems' 96000 Hz", "--sample-rate 48000")
    assert files_under(tmp_path / "hi") == []
    # an MP3 rate asked for is written, another one refused
    for rate, ok in (("96000", False), ("44100", True)):
        result = run(
            "separate",
            hi,
            "-o",
            tmp_path / rate,
            "-i",
            "vn",
            "--format",
            "mp3",
            "--sample-rate",
            rate,
        )
        if ok:
            assert result.exit_code == 0, result.output
            info = soundfile.info(str(tmp_path / rate / "hi" / "01_vn.mp3"))
            assert (info.samplerate, info.frames) == (44100, round(0.2 * 44100))
        else:
            assert_clean_failure(result, "not the stems' 96000 Hz")
            assert files_under(tmp_path / rate) == []
    # stems of more channels than the format holds are refused before any work, too
    for channels, wav_format in ((3, "mp3"), (9, "flac24")):
        many = write_wav(tmp_path / f"ch{channels}.wav", np.zeros((800, channels), np.float32))
        out = tmp_path / f"ch{channels}"
        refused = run("separate", many, "-o", out, "-i", "vn", "--format", wav_format)
        assert_clean_failure(refused, f"holds at most {2 if channels == 3 else 8} channels, not "
                             f"the stems' {channels}", "--sample-rate model")  # fmt: skip
        assert files_under(out) == []
        mono = run("separate", many, "-o", out, "-i", "vn", "--format", wav_format, "--sample-rate",
                   "model")  # fmt: skip
        assert mono.exit_code == 0, mono.output


@pytest.mark.parametrize("channels", [1, 2])
def test_refined_stems_are_the_masks_of_the_networks_stems_on_the_mixture(
    tiny_models_dir: Path, tmp_path: Path, channels: int
) -> None:
    # streamed block by block (--tile 700 windows), each channel on its own: the same as
    # refining the whole raw stems on the whole mixture in one go
    audio = noise(3) if channels == 1 else np.stack([noise(3), noise(3, seed=1)], axis=1)
    mix = write_wav(tmp_path / "mix.wav", audio)
    common = ["-i", "vn,vc", "--format", "float32", "--tile", "700"]
    flags = {"raw": "--no-refine", "soft": "--no-harmonic", "harmonic": "--refine"}
    flags["no templates"] = "--no-templates"
    for name, flag in flags.items():
        result = run("separate", mix, "-o", tmp_path / name, *common, flag)
        assert result.exit_code == 0, result.output

    def read_stems(name: str) -> np.ndarray:  # (K, N, C)
        folder = tmp_path / name / "mix"
        files = ("01_vn.wav", "02_vc.wav")
        return np.stack([soundfile.read(str(folder / f), always_2d=True)[0] for f in files])

    stems = {name: read_stems(name) for name in flags}
    mixture = audio.reshape(len(audio), channels)
    harmonic = {"instruments": ["vn", "vc"], "sample_rate": soundfile.info(str(mix)).samplerate}
    for c in range(channels):
        expected = refine_on_mixture(stems["raw"][:, :, c], mixture[:, c])
        assert np.abs(stems["soft"][:, :, c] - expected).max() < 1e-6
        expected = refine_on_mixture(stems["raw"][:, :, c], mixture[:, c], **harmonic)
        assert np.abs(stems["harmonic"][:, :, c] - expected).max() < 1e-6
        alone = refine_on_mixture(stems["raw"][:, :, c], mixture[:, c], templates=0, **harmonic)
        assert np.abs(stems["no templates"][:, :, c] - alone).max() < 1e-6
    assert np.abs(stems["soft"] - stems["raw"]).max() > 1e-3
    assert np.abs(stems["harmonic"] - stems["soft"]).max() > 1e-3
    assert np.abs(stems["harmonic"] - stems["no templates"]).max() > 1e-4


def test_no_split_equals_the_chunked_run(tiny_models_dir: Path, tmp_path: Path) -> None:
    long_mix = write_wav(tmp_path / "long.wav", noise(20))
    for folder, extra in (("a", []), ("b", ["--no-split"])):
        result = run(
            "separate",
            long_mix,
            "-o",
            tmp_path / folder,
            "-i",
            "vn,vc",
            "--format",
            "float32",
            "--batch-size",
            "3",
            *extra,
        )
        assert result.exit_code == 0, result.stderr
    for name in ("01_vn.wav", "02_vc.wav"):
        chunked, _ = soundfile.read(str(tmp_path / "a" / "long" / name), dtype="float32")
        whole, _ = soundfile.read(str(tmp_path / "b" / "long" / name), dtype="float32")
        assert chunked.shape == whole.shape == (20 * RATE,)
        assert np.abs(chunked - whole).max() <= 1e-5


def test_several_inputs_and_audio_of_a_video(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    video = tmp_path / "concert.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=64x48:r=10:d=2",
        "-i",
        str(mix),
        "-shortest",
        str(video),
    )
    result = run("separate", mix, video, "-o", tmp_path / "o", "-i", "vn,vc", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["inputs"]) == 2
    assert (tmp_path / "o" / "concert" / "02_vc.wav").is_file()


def test_shorter_than_one_window_works(tiny_models_dir: Path, tmp_path: Path) -> None:
    short = write_wav(tmp_path / "blip.wav", noise(0.003))  # 24 samples
    result = run("separate", short, "-o", tmp_path / "o", "-i", "vn")
    assert result.exit_code == 0, result.stderr
    assert soundfile.info(str(tmp_path / "o" / "blip" / "01_vn.wav")).frames == 24


def test_silence_in_silence_out(tiny_models_dir: Path, tmp_path: Path) -> None:
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(3 * RATE, np.float32))
    result = run("separate", quiet, "-o", tmp_path / "o", "-i", "vn,vc", "--format", "float32")
    assert result.exit_code == 0, result.stderr
    for name in ("01_vn.wav", "02_vc.wav"):
        stem, _ = soundfile.read(str(tmp_path / "o" / "quiet" / name))
        assert stem.shape == (3 * RATE,) and not stem.any()


def test_existing_outputs_need_force(tiny_models_dir: Path, mix: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    target = out / "duet" / "01_vn.wav"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the user's file")
    result = run("separate", mix, "-o", out, "-i", "vn")
    assert_clean_failure(result, "already exist", "--force")
    assert target.read_bytes() == b"the user's file"
    # found by a review: a mistake in the arguments was told only once --force was added
    mistaken = run("separate", mix, "-o", out, "-i", "vn,vc,va", "--players", "2")
    assert_clean_failure(mistaken, "--players 2 but --instruments names 3 players")
    result = run("separate", mix, "-o", out, "-i", "vn", "--force")
    assert result.exit_code == 0 and soundfile.info(str(target)).frames == 2.5 * RATE


def _text_wav(tmp: Path) -> Path:
    path = tmp / "text.wav"
    path.write_text("definitely not audio\n")
    return path


def _truncated(tmp: Path) -> Path:
    path = write_wav(tmp / "cut.wav", noise(2), subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:7001])
    return path


def _no_audio_video(tmp: Path) -> Path:
    path = tmp / "film.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=64x48:r=10:d=1", str(path))
    return path


def _nan(tmp: Path) -> Path:
    audio = noise(2)
    audio[9000] = np.nan
    return write_wav(tmp / "nan.wav", audio)


@pytest.mark.parametrize(
    "make_input, fragments",
    [
        (lambda tmp: tmp / "missing.wav", ["not found", "missing.wav"]),
        (lambda tmp: tmp, ["is a directory"]),
        (_text_wav, ["cannot read", "text.wav", "ffmpeg:"]),
        (_truncated, ["truncated", "cut.wav"]),
        (_no_audio_video, ["no audio stream"]),
        (lambda tmp: write_wav(tmp / "empty.wav", np.zeros(0, np.float32)), ["no audio samples"]),
        (_nan, ["NaN or infinite", "1.125 s"]),
    ],
    ids=[
        "missing",
        "directory",
        "text-as-wav",
        "truncated",
        "video-no-audio",
        "zero-length",
        "nan",
    ],
)
def test_bad_inputs(tiny_models_dir: Path, tmp_path: Path, make_input, fragments) -> None:
    source = make_input(tmp_path)
    out = tmp_path / "out"
    result = run("separate", source, "-o", out, "-i", "vn,vc")
    assert_clean_failure(result, *fragments)
    assert files_under(out) == []


def test_a_still_picture_is_not_called_a_video(tiny_models_dir: Path, tmp_path: Path) -> None:
    picture = tmp_path / "frame.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=64x48", "-frames:v", "1", str(picture))
    result = run("separate", picture, "-o", tmp_path / "out", "-i", "vn")
    assert_clean_failure(result, "frame.png is a picture with no sound", "--audio FILE")
    assert "is a video" not in result.stderr


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["-i", "vn,xylo"], ["unknown instrument code 'xylo'", "vn (violin)"]),
        (["-i", "vn,,vc"], ["comma-separated"]),
        ([], ["audio-only input", "--instruments"]),
        (["-i", "vn", "--model", "nope"], ["unknown model 'nope'", "known models: tiny"]),
        (["-i", "vn", "--model", "missing.safetensors"], ["checkpoint not found"]),
        (["-i", "vn", "--device", "tpu"], ["unknown --device 'tpu'"]),
        (["-i", "vn", "--device", "cuda:x"], ["--device 'cuda:x' is not a valid device", "cuda:N"]),
        (["-i", "vn", "--batch-size", "0"], ["--batch-size must be between 1 and 64"]),
        (["-i", "vn", "--batch-size", "65"], ["--batch-size must be between 1 and 64"]),
        (["-i", "vn", "--tile", "0"], ["--tile must be between 1 and 1048576 samples"]),
        (["-i", "vn", "--tile", "100000000"], ["--tile must be between 1 and 1048576", "memory"]),
        (["-i", "vn", "--tile", "1000000", "--batch-size", "8"], ["8000000 samples in one pass"]),
    ],
)
def test_bad_options(tiny_models_dir: Path, mix: Path, tmp_path: Path, args, fragments) -> None:
    out = tmp_path / "out"
    result = run("separate", mix, "-o", out, *args)
    assert_clean_failure(result, *fragments)
    assert not out.exists()  # refused before the output folder is made


def test_a_tile_longer_than_the_input_is_cut_to_it(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any tile gives the same stems, so a window is never longer than the input: the
    largest tile on a short input costs no more than its own length."""
    from vimss_cli import api

    asked: list[int] = []
    original = api.separate_blocks

    def spy(*args, **kwargs):
        asked.append(kwargs["tile"])
        return original(*args, **kwargs)

    monkeypatch.setattr(api, "separate_blocks", spy)
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn", "--tile", "1048576")
    assert result.exit_code == 0, result.output
    length = soundfile.info(str(mix)).frames
    assert asked and 0 < asked[0] <= length + 1


def test_output_folder_under_a_file_is_refused_before_any_work(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = run("separate", mix, "-o", blocker, "-i", "vn")
    assert_clean_failure(result, f"cannot write into {blocker}: it is not a folder")
    nested = run("separate", mix, "-o", blocker / "stems", "-i", "vn")
    assert_clean_failure(nested, "it is not a folder", f"({blocker} is a file)")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "args", [["--device", "cuda"], ["--device", "cuda:1"], ["--precision", "fp16"]]
)
def test_cuda_asked_where_there_is_none(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, args: list[str]
) -> None:
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn", *args)
    assert_clean_failure(result, "CUDA")


def test_corrupt_checkpoint(tiny_models_dir: Path, mix: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    data = bytearray((tiny_models_dir / "tiny.safetensors").read_bytes())
    bad.write_bytes(bytes(data[: len(data) // 2]))
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn", "--model", bad)
    assert_clean_failure(result, "bad.safetensors", "not a readable safetensors checkpoint")


def test_a_model_with_nan_weights_is_refused_before_any_work(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    """Found by a new user's trial: NaN weights (a diverged run's export, its checksum
    right) wrote stems of -32768 at 16 bits, reported as 'pure silence', exit 0."""
    from conftest import make_tiny_model
    from vimss_cli.checkpoint import save_checkpoint

    model = make_tiny_model()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    broken = tmp_path / "diverged.safetensors"
    save_checkpoint(broken, model, provenance={"trained": True})
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn,vc", "--model", broken)
    assert_clean_failure(result, "diverged.safetensors is unusable", "NaN or infinite")
    assert not files_under(tmp_path / "o")


def test_a_network_that_returns_nan_writes_no_stems(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finite weights can still give NaN (fp16 overflow on a GPU): the engine stops, one
    line, and nothing is left in the output folder."""
    real = _WindowRunner.run

    def overflowing(self, windows, starts):
        output = real(self, windows, starts)
        output[0, -1] = np.nan
        return output

    monkeypatch.setattr(_WindowRunner, "run", overflowing)
    for extra in ([], ["--no-refine", "--format", "float32"]):
        result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn,vc", *extra)
        assert_clean_failure(result, "the network's output holds NaN or infinite values")
        assert not files_under(tmp_path / "o")


def test_an_empty_model_name_is_one_clear_error(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn", "--model", "")
    assert_clean_failure(result, "no model named (an empty name)", "known models: tiny")


def test_debug_shows_the_traceback(tiny_models_dir: Path, tmp_path: Path) -> None:
    result = run("separate", tmp_path / "missing.wav", "-o", tmp_path / "o", "-i", "vn", "--debug")
    assert result.exit_code != 0 and result.exception is not None
    assert "not found" in str(result.exception)


@pytest.mark.parametrize("channels", [1, 2])  # stereo stems are made in scratch files first
def test_ctrl_c_mid_run_leaves_no_partial_stems(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: int
) -> None:
    audio = noise(30) if channels == 1 else np.stack([noise(30), noise(30, seed=1)], axis=1)
    long_mix = write_wav(tmp_path / "long.wav", audio)
    out = tmp_path / "o" / "new"
    original = _WindowRunner.run
    calls = {"n": 0}

    def interrupted_run(self, windows, starts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, windows, starts)

    monkeypatch.setattr(_WindowRunner, "run", interrupted_run)
    result = run(
        "separate", long_mix, "-o", out, "-i", "vn,vc", "--batch-size", "1", "--tile", "8192"
    )
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    assert not (tmp_path / "o").exists()  # nor the folders it made


def test_models_list_and_info(tiny_models_dir: Path) -> None:
    listed = run("models", "list", "--json")
    assert listed.exit_code == 0
    assert json.loads(listed.stdout)["models"][0] == {
        "name": "tiny",
        "default": True,
        "trained": False,
        "description": "test model",
    }
    info = run("models", "info", "tiny", "--json")
    assert info.exit_code == 0
    document = json.loads(info.stdout)
    assert document["config"]["levels"] == 3 and document["context_samples"] > 0
    unknown = run("models", "info", "nope")
    assert_clean_failure(unknown, "unknown model")
    assert unknown.exit_code == 2  # a bad argument


def test_help_text_keeps_its_brackets_and_a_typo_gets_one_suggestion() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "[model], [data], [optim] and [run]" in result.output
    typo = runner.invoke(app, ["separat"])
    assert typo.exit_code == 2 and typo.output.count("Did you mean") == 1
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


def test_separate_array_takes_any_rate_and_channels(tiny_models_dir: Path) -> None:
    from scipy.signal import resample_poly

    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query

    separator = Separator("tiny", device="cpu")
    queries = [Query("vn"), Query("vc")]
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((12000, 2)).astype(np.float32) * 0.1  # 0.5 s at 24 kHz
    stems = separator.separate_array(stereo, queries, sample_rate=24000)
    assert stems.shape == (2, 12000)  # the input's rate and length, one row per player
    at_model_rate = resample_poly(stereo.mean(axis=1), RATE, 24000).astype(np.float32)
    expected = resample_poly(separator.separate_array(at_model_rate, queries), 24000, RATE, axis=-1)
    assert np.allclose(stems, expected[:, :12000], atol=1e-5)
    for bad in (np.zeros((2, 3, 4)), np.zeros((3, 3))):
        with pytest.raises(InputError, match="shape"):
            separator.separate_array(bad, queries)
    with pytest.raises(InputError, match="sample_rate"):
        separator.separate_array(stereo, queries, sample_rate=0)
    for rate in (True, 10**9, 24000.5):  # a bool is no rate; a gigahertz one takes minutes
        with pytest.raises(InputError, match="sample_rate must be a whole number of Hz"):
            separator.separate_array(stereo, queries, sample_rate=rate)
    # a whole number written as a float is that rate (found by a new user's trial)
    assert np.array_equal(separator.separate_array(stereo, queries, sample_rate=24000.0), stems)


def test_the_network_hears_every_mixture_at_the_same_level(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    """Stems of a quieter copy are the stems of the original, quieter by as much (the network
    hears both at NETWORK_PEAK): separate_array, and separate_file on float files."""
    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query

    separator = Separator("tiny", device="cpu")
    queries = [Query("vn"), Query("vc")]
    mixture = noise(1.0, seed=7) * 4.0
    original = separator.separate_array(mixture, queries)
    scale = float(np.abs(original).max())
    for gain in (0.1, 0.001):
        quieter = separator.separate_array(mixture * np.float32(gain), queries)
        assert np.allclose(quieter / gain, original, atol=1e-5 * scale)
    for name, gain in (("loud", 1.0), ("quiet", 0.01)):
        write_wav(tmp_path / f"{name}.wav", mixture * np.float32(gain))
        args = ("-i", "vn,vc", "-o", tmp_path / "out", "--format", "float32")
        assert run("separate", tmp_path / f"{name}.wav", *args).exit_code == 0
    stem = "out/{}/02_vc.wav"
    loud = soundfile.read(str(tmp_path / stem.format("loud")), dtype="float32")[0]
    quiet = soundfile.read(str(tmp_path / stem.format("quiet")), dtype="float32")[0]
    assert np.allclose(quiet / 0.01, loud, atol=1e-5 * scale)


def test_an_integer_input_that_resampling_lifts_past_full_scale_keeps_its_level(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    """A 16-bit square wave at 44.1 kHz peaks above 1 once resampled; its 16-bit stems are
    not scaled down, and nothing says it was beyond full scale (it cannot be)."""
    t = np.arange(3 * 44100) / 44100
    square = np.where(np.sin(2 * np.pi * 220 * t) >= 0, 0.999, -0.999).astype(np.float32)
    sound = write_wav(tmp_path / "square.wav", np.stack([square, square], 1), 44100, "PCM_16")
    for extra in ([], ["--sample-rate", "input"]):
        result = run("separate", sound, "-i", "vn,vc", "-o", tmp_path / "o", "--force", "--json",
                     *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        (separated,) = json.loads(result.stdout)["inputs"]
        assert separated["input_peak"] is None and separated["stem_gain"] == 1.0, extra
        assert not any("beyond full scale" in line for line in separated["warnings"]), extra


def test_a_silent_input_is_told(tiny_models_dir: Path, tmp_path: Path) -> None:
    silence = write_wav(tmp_path / "silence.wav", np.zeros(RATE, np.float32))
    result = run("separate", silence, "-o", tmp_path / "o", "-i", "vn,vc", "--json")
    assert result.exit_code == 0, result.stderr
    (separated,) = json.loads(result.stdout)["inputs"]
    assert any("every stem is pure silence" in line for line in separated["warnings"])
    assert "warning: silence.wav: every stem is pure silence" in result.stderr


def test_separate_array_refuses_what_would_come_back_wrong(tiny_models_dir: Path) -> None:
    """Found by a review: NaN stems, a lost level and deep tracebacks, all without a word."""
    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query
    from vimss_cli.errors import NonFiniteAudioError

    separator = Separator("tiny", device="cpu")
    queries = [Query("vn"), Query("vc")]
    mixture = noise(0.5)
    for bad_value in (np.nan, np.inf):
        broken = mixture.copy()
        broken[100] = bad_value
        with pytest.raises(NonFiniteAudioError, match=r"infinite samples \(first at sample 100"):
            separator.separate_array(broken, queries)
    with pytest.raises(InputError, match=r"float samples in \[-1, 1\], got int16"):
        separator.separate_array((mixture * 32767).astype(np.int16), queries)
    with pytest.raises(InputError, match="empty mixture"):
        separator.separate_array(np.zeros(0, np.float32), queries)
    with pytest.raises(InputError, match="nothing to separate"):
        separator.separate_array(mixture, [])
    with pytest.raises(InputError, match=r"player 2 is 'vc', not a Query: write Query\('vc'\)"):
        separator.separate_array(mixture, [Query("vn"), "vc"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="at most 8 players at once, got 9"):
        separator.separate_array(mixture, [Query("vn")] * 9)
    for window in ({"tile": 1000.5}, {"tile": "100"}, {"tile": True}, {"batch_size": 2.5}):
        with pytest.raises(InputError, match="takes a whole number"):
            Separator("tiny", device="cpu", **window)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="model must be a bundled name"):
        Separator(None, device="cpu")  # type: ignore[arg-type]
    assert Separator("tiny", device="cpu", tile=np.int64(4096)).tile == 4096


@pytest.mark.parametrize(
    "rate, length", [(96000, 44100), (44100, 44101), (48000, 48001), (96000, 5)]
)
def test_separate_array_gives_the_mixtures_own_length(
    tiny_models_dir: Path, rate: int, length: int
) -> None:
    """Found by a review: resampled there and back, the stems were a few samples longer."""
    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query

    separator = Separator("tiny", device="cpu")
    stems = separator.separate_array(noise(length / rate, rate)[:length], [Query("vn")], rate)
    assert stems.shape == (1, length)


def test_separate_array_scales_a_loud_mixture_for_the_network_and_back(
    tiny_models_dir: Path,
) -> None:
    """Found by a review: a float mixture peaking at 3 went into the network as it was, whose
    tanh output then flattened it; separate_file scales it to full scale first."""
    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query

    separator = Separator("tiny", device="cpu")
    queries = [Query("vn"), Query("vc")]
    quiet = noise(0.5)
    quiet = quiet / np.abs(quiet).max()  # peaks at 1
    loud = separator.separate_array(3 * quiet, queries)
    assert np.allclose(loud, 3 * separator.separate_array(quiet, queries), atol=1e-6)


def test_without_out_the_stems_go_to_separated(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("separate", mix, "-i", "vn,vc")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "separated" / mix.stem).iterdir()) == [
        "01_vn.wav",
        "02_vc.wav",
    ]


def test_models_info_reads_as_a_summary(tiny_models_dir: Path) -> None:
    result = run("models", "info", "tiny")
    assert result.exit_code == 0, result.output
    assert "tiny (untrained)" in result.output and "instrument labels" in result.output
    assert "3 levels" in result.output and "receptive field" in result.output
    assert "{" not in result.output  # no raw dictionaries


def test_models_info_points_at_the_model_card() -> None:
    result = run("models", "info", "vimss-synth-cpu-v2")
    assert result.exit_code == 0, result.output
    assert "docs/model-card-vimss-synth-cpu-v2.md" in result.output


def test_stems_have_the_inputs_rate_and_channels(tiny_models_dir: Path, tmp_path: Path) -> None:
    # a 48 kHz stereo mix -> 48 kHz stereo FLAC stems of the input's exact length
    rng = np.random.default_rng(0)
    stereo = (rng.standard_normal((48000, 2)) * 0.1).astype(np.float32)
    mix = tmp_path / "mix48.wav"
    soundfile.write(str(mix), stereo, 48000, subtype="PCM_16")
    result = run("separate", mix, "-i", "vn,vc", "-o", tmp_path / "out", "--format", "flac24")
    assert result.exit_code == 0, result.output
    for name in ("01_vn.flac", "02_vc.flac"):
        info = soundfile.info(str(tmp_path / "out" / "mix48" / name))
        assert (info.format, info.samplerate, info.channels, info.frames) == (
            "FLAC",
            48000,
            2,
            48000,
        )
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no scratch
    # --sample-rate model: mono stems at the model's rate, and a warning that says so
    mono = run("separate", mix, "-i", "vn,vc", "-o", tmp_path / "mono", "--sample-rate", "model")
    assert mono.exit_code == 0
    assert "downmixed to mono (the mean of its 2 channels) and resampled" in mono.output
    info = soundfile.info(str(tmp_path / "mono" / "mix48" / "01_vn.wav"))
    assert (info.samplerate, info.channels) == (RATE, 1)
    # --model-rate, its old name, still works, with a warning that it is deprecated
    old = run("separate", mix, "-i", "vn,vc", "-o", tmp_path / "old", "--model-rate")
    assert old.exit_code == 0 and "--model-rate is deprecated" in old.stderr
    for name in ("01_vn.wav", "02_vc.wav"):
        assert np.array_equal(
            soundfile.read(str(tmp_path / "old" / "mix48" / name))[0],
            soundfile.read(str(tmp_path / "mono" / "mix48" / name))[0],
        )
    assert "--model-rate" not in run("separate", "--help").output  # hidden


def test_surround_stems_keep_every_channel(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 7.1 at 48 kHz with music in the centre channel only: stems of 8 channels with the
    # music in the centre (the layout was once unknown, so only FL was separated: silence)
    surround = np.zeros((24000, 8), np.float32)
    surround[:, 2] = noise(0.5, rate=48000)
    mix = tmp_path / "mix71.wav"
    soundfile.write(str(mix), surround, 48000, subtype="PCM_16")
    result = run("separate", mix, "-i", "vn,vc", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "silence" not in result.output
    stem, rate = soundfile.read(str(tmp_path / "out" / "mix71" / "01_vn.wav"))
    assert (rate, stem.shape) == (48000, (24000, 8))
    assert np.abs(stem[:, 2]).max() > 10 * np.abs(np.delete(stem, 2, axis=1)).max()
    # a layout ffmpeg cannot count: the downmix of all channels, mono stems, and a warning
    monkeypatch.setattr(ffmpeg_io, "_channel_count", lambda layout: None)
    unsure = run("separate", mix, "-i", "vn,vc", "-o", tmp_path / "unsure")
    assert unsure.exit_code == 0, unsure.output
    assert "cannot tell how many channels mix71.wav's audio has" in unsure.stderr
    stem, rate = soundfile.read(str(tmp_path / "unsure" / "mix71" / "01_vn.wav"))
    assert (rate, stem.ndim) == (48000, 1) and np.abs(stem).max() > 0.0


@pytest.mark.parametrize(
    "name, codec",
    [("vbr.mp3", ["-c:a", "libmp3lame", "-q:a", "2", "-write_xing", "0"]),
     ("cbr.mp3", ["-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0"]),
     ("clip.m4a", ["-c:a", "aac"]), ("clip.webm", ["-c:a", "libopus"])],
)  # fmt: skip
def test_stems_of_compressed_audio_last_as_long_as_it_decodes(
    tiny_models_dir: Path, tmp_path: Path, name: str, codec: list[str]
) -> None:
    # MP3 without a Xing header: libsndfile's length is a guess (a third of a VBR file's);
    # formats without a stated length: resampled stems missed it by a sample
    rate = 48000 if name.endswith("webm") else 44100  # Opus decodes at 48 kHz
    mix = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", f"anoisesrc=r={rate}:d=2.71", "-ac", "2", *codec, str(mix))
    decoded = len(read_audio(mix, rate))
    result = run("separate", mix, "-i", "vn", "-o", tmp_path / "out", "--format", "float32")
    assert result.exit_code == 0, result.output
    stem = soundfile.info(str(tmp_path / "out" / mix.stem / "01_vn.wav"))
    assert stem.frames == decoded and stem.channels == 2
    model_rate = run("separate", mix, "-i", "vn", "-o", tmp_path / "m", "--sample-rate", "model")
    assert model_rate.exit_code == 0, model_rate.output
    assert soundfile.info(str(tmp_path / "m" / mix.stem / "01_vn.wav")).frames == len(
        read_audio(mix, RATE)
    )
    assert abs(len(read_audio(mix, RATE)) - 2.71 * RATE) < 0.05 * RATE


@pytest.mark.parametrize("frames, rate", [(1, 44100), (44, 44100), (79, 16000)])
def test_an_input_of_a_millisecond_at_another_rate_is_refused(
    tiny_models_dir: Path, tmp_path: Path, frames: int, rate: int
) -> None:
    # ffmpeg's resampler gives nothing for 44 samples at 44.1 kHz: the stems were silence,
    # with a warning blaming the input's level; one sample was said to hold none (at the
    # model's rate nothing is resampled: test_shorter_than_one_window_works)
    mix = write_wav(tmp_path / "blip.wav", noise(frames / rate, rate=rate), rate)
    result = run("separate", mix, "-i", "vn", "-o", tmp_path / "out")
    assert_clean_failure(result, f"blip.wav is too short to separate: {frames} sample")
    assert result.exit_code == 2 and files_under(tmp_path / "out") == []
    longer = write_wav(tmp_path / "longer.wav", noise(0.01, rate=rate), rate)
    assert run("separate", longer, "-i", "vn", "-o", tmp_path / "out").exit_code == 0
    # in a container whose header states no sample count, the decoder says why it is empty
    if (frames, rate) == (44, 44100):
        wrapped = tmp_path / "blip.mkv"
        ffmpeg("-i", str(mix), "-c:a", "pcm_s16le", str(wrapped))
        result = run("separate", wrapped, "-i", "vn", "-o", tmp_path / "mkv")
        assert_clean_failure(result, "blip.mkv holds no audio samples, or too few to resample")


def test_sample_rate_n_resamples_the_stems_and_keeps_the_channels(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    import soxr

    rng = np.random.default_rng(1)
    stereo = (rng.standard_normal((24000, 2)) * 0.1).astype(np.float32)  # 0.5 s at 48 kHz
    mix = write_wav(tmp_path / "mix48.wav", stereo, 48000)
    args = ("-i", "vn,vc", "--format", "float32")
    # at the model's rate nothing is resampled after the network: the reference stems
    assert (
        run("separate", mix, *args, "-o", tmp_path / "at8k", "--sample-rate", RATE).exit_code == 0
    )
    result = run("separate", mix, *args, "-o", tmp_path / "at16k", "--sample-rate", "16000")
    assert result.exit_code == 0, result.output
    for name in ("01_vn.wav", "02_vc.wav"):
        at8k, rate8k = soundfile.read(str(tmp_path / "at8k" / "mix48" / name), dtype="float32")
        at16k, rate16k = soundfile.read(str(tmp_path / "at16k" / "mix48" / name), dtype="float32")
        assert (rate8k, rate16k) == (RATE, 16000)
        assert at8k.shape == (4000, 2) and at16k.shape == (8000, 2)  # the input's length
        expected = soxr.resample(at8k, RATE, 16000)
        assert np.abs(at16k - expected[: len(at16k)]).max() < 1e-4
    # a mono input stays mono at the rate asked for
    mono = write_wav(tmp_path / "mono.wav", noise(1.0))
    assert (
        run("separate", mono, "-i", "vn", "-o", tmp_path / "m", "--sample-rate", "22050").exit_code
        == 0
    )
    info = soundfile.info(str(tmp_path / "m" / "mono" / "01_vn.wav"))
    assert (info.samplerate, info.channels, info.frames) == (22050, 1, 22050)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sample-rate", "0"], "--sample-rate takes input, model or a whole number of Hz"),
        (["--sample-rate=-44100"], "got '-44100'"),
        (["--sample-rate", "fast"], "got 'fast'"),
        (["--sample-rate", "44.1k"], "got '44.1k'"),
        (["--sample-rate", "48000", "--model-rate"], "--model-rate means --sample-rate model"),
        (["--sample-rate", "16000", "--no-split"], "--no-split makes mono stems"),
    ],
)
def test_bad_sample_rates(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, args: list[str], fragment: str
) -> None:
    out = tmp_path / "out"
    result = run("separate", mix, "-i", "vn", "-o", out, *args)
    assert_clean_failure(result, fragment)
    assert files_under(out) == []


def test_each_channel_is_separated_as_if_alone(tiny_models_dir: Path, tmp_path: Path) -> None:
    left, right = noise(2.0, seed=1), noise(2.0, seed=2) * 0.5
    write_wav(tmp_path / "both.wav", np.stack([left, right], axis=1))
    write_wav(tmp_path / "left.wav", left)
    write_wav(tmp_path / "right.wav", right)
    for name in ("both", "left", "right"):
        args = ("-i", "vn,vc", "-o", tmp_path / "out", "--format", "float32")
        assert run("separate", tmp_path / f"{name}.wav", *args).exit_code == 0
    both = soundfile.read(str(tmp_path / "out" / "both" / "02_vc.wav"), dtype="float32")[0]
    alone = [
        soundfile.read(str(tmp_path / "out" / side / "02_vc.wav"), dtype="float32")[0]
        for side in ("left", "right")
    ]
    assert both.shape == (2 * RATE, 2)
    assert np.array_equal(both[:, 0], alone[0]) and np.array_equal(both[:, 1], alone[1])


def test_enumerated_options_list_their_choices(tiny_models_dir: Path, mix: Path) -> None:
    for option, value in (("--format", "ogg"), ("--precision", "fp8")):
        result = run("separate", mix, "-i", "vn", option, value)
        assert result.exit_code == 2 and f"'{value}' is not one of" in result.output


def test_quiet_keeps_warnings_and_drops_notes(tiny_models_dir: Path, tmp_path: Path) -> None:
    mix = write_wav(tmp_path / "AuMix_02_Duet_vn_vn.wav", noise(1.0))
    loud = run("separate", mix, "-o", tmp_path / "a", "--no-pitch-voices")
    quiet = run("separate", mix, "-o", tmp_path / "b", "--quiet", "--no-pitch-voices")
    assert loud.exit_code == quiet.exit_code == 0
    assert "note: instruments vn,vn read from" in loud.output and "note:" not in quiet.output
    assert "s of audio in" in loud.output and "s of audio in" not in quiet.output
    assert "identical" in quiet.output  # two label-only violins: a warning stays


@pytest.mark.parametrize("extra", [[], ["--no-split"]])
def test_the_rest_makes_the_stems_sum_to_the_input(
    tiny_models_dir: Path, tmp_path: Path, extra: list[str]
) -> None:
    left, right = noise(2.0, seed=4), noise(2.0, seed=5) * 0.5
    for name, audio in (("mono", left), ("stereo", np.stack([left, right], axis=1))):
        mix = write_wav(tmp_path / f"{name}.wav", audio)
        # --residual, as the issue names it, and --rest, its other name
        flag = "--residual" if name == "mono" else "--rest"
        args = ("-i", "vn,vc", "-o", tmp_path / "out", "--format", "float32", flag, *extra)
        result = run("separate", mix, *args)
        assert result.exit_code == 0, result.output
        folder = tmp_path / "out" / name
        assert sorted(p.name for p in folder.iterdir()) == ["01_vn.wav", "02_vc.wav", "03_rest.wav"]
        stems = [soundfile.read(str(p), dtype="float32")[0] for p in sorted(folder.iterdir())]
        # --no-split separates the mean of the channels once, (L + R) / 2: mono stems
        expected = audio if stems[0].ndim == audio.ndim else audio.mean(axis=1)
        assert np.allclose(sum(stems), expected, atol=1e-5)


def test_the_rest_sums_back_at_the_inputs_own_rate(tiny_models_dir: Path, tmp_path: Path) -> None:
    """Stems at the input's rate (twice the model's): the rest is made there, so the stems
    sum to the input with everything above the model's band too (white noise has plenty)."""
    rate = 2 * RATE
    audio = np.stack([noise(2.0, rate, seed=6), noise(2.0, rate, seed=7)], axis=1)
    mix = write_wav(tmp_path / "wide.wav", audio, rate)
    args = ("-i", "vn,vc", "-o", tmp_path / "out", "--format", "float32", "--residual")
    result = run("separate", mix, *args)
    assert result.exit_code == 0, result.output
    stems = [soundfile.read(str(p), dtype="float32") for p in sorted(tmp_path.glob("out/wide/*"))]
    assert [(s.shape, r) for s, r in stems] == [(audio.shape, rate)] * 3
    assert np.allclose(sum(s for s, _ in stems), audio, atol=1e-5)


def test_batches_skip_existing_keep_going_and_one_i_per_input(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    first = write_wav(tmp_path / "first.wav", noise(1.0, seed=1))
    second = write_wav(tmp_path / "second.wav", noise(1.0, seed=2))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    out = tmp_path / "out"
    # one -i per input, in order
    result = run("separate", first, second, "-i", "vn,vc", "-i", "fl", "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "first").iterdir()) == ["01_vn.wav", "02_vc.wav"]
    assert sorted(p.name for p in (out / "second").iterdir()) == ["01_fl.wav"]
    wrong = run("separate", first, second, "-i", "vn", "-i", "vc", "-i", "fl", "-o", out)
    assert_clean_failure(wrong, "3 -i for 2 inputs")
    # --skip-existing passes over the done ones; --keep-going goes past the broken one
    third = write_wav(tmp_path / "third.wav", noise(1.0, seed=3))
    batch = run(
        "separate", first, broken, third, "-i", "vn", "-o", out, "--skip-existing", "--keep-going"
    )
    assert batch.exit_code == 1, batch.output
    assert "first.wav: stems exist, skipped" in batch.output
    assert (
        "1 failure (--keep-going): 1 of 3 inputs separated, 1 skipped (their stems exist)"
        in " ".join(batch.output.split())
    )
    alone = run("separate", broken, "-i", "vn", "-o", out, "--keep-going")
    assert alone.exit_code == 1 and "error: the input failed" in alone.stderr
    assert sorted(p.name for p in (out / "third").iterdir()) == ["01_vn.wav"]
    assert not (out / "broken").exists()


def test_an_interrupted_batch_names_the_inputs_whose_stems_are_kept(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: Ctrl-C during the second input said only "nothing half-written
    was left behind", not that the first input's stems were written and kept."""
    from vimss_cli.api import Separator

    first = write_wav(tmp_path / "first.wav", noise(1.0, seed=1))
    second = write_wav(tmp_path / "second.wav", noise(1.0, seed=2))
    real = Separator.separate_file

    def interrupted_at_second(self, path, *args, **kwargs):
        if Path(path).name == "second.wav":
            raise KeyboardInterrupt
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(Separator, "separate_file", interrupted_at_second)
    result = run("separate", first, second, "-i", "vn", "-o", tmp_path / "out")
    assert result.exit_code == 130
    kept = "warning: interrupted after 1 of 2 input(s) were separated; their stems are kept: "
    assert kept + "first.wav" in result.stderr
    assert (tmp_path / "out" / "first" / "01_vn.wav").is_file()
    assert not (tmp_path / "out" / "second").exists()
    # --json still prints one object (found by a review: nothing on an interrupt)
    again = run("separate", first, second, "-i", "vn", "-o", tmp_path / "json", "--json")
    assert again.exit_code == 130
    assert json.loads(again.stdout) == {
        "error": "interrupted: nothing half-written was left behind",
        "exit_code": 130,
    }


def test_separate_file_plans_the_queries_itself(tiny_models_dir: Path, tmp_path: Path) -> None:
    from vimss_cli.api import Separator

    mix = write_wav(tmp_path / "AuMix_03_Trio_vn_vc_fl.wav", noise(1.0))
    report = Separator("tiny", device="cpu").separate_file(mix, None, tmp_path / "out")
    assert [s.path.name for s in report.stems] == ["01_vn.wav", "02_vc.wav", "03_fl.wav"]
    with pytest.raises(InputError, match="say who plays"):
        Separator("tiny", device="cpu").separate_file(
            write_wav(tmp_path / "anon.wav", noise(1.0)), None, tmp_path / "out"
        )


@pytest.mark.parametrize("channels", [1, 2])
def test_separate_file_reports_the_level_pass_before_the_separation(
    tiny_models_dir: Path, tmp_path: Path, channels: int
) -> None:
    """A first pass reads the input's peak (the network hears every input at -1 dBFS): on an
    hour-long input it takes a while, and showed nothing. It now reports "stage": "level"
    events up to the duration (a pass per channel counts once), then the separation's."""
    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query

    seconds = 3.0
    audio = (
        noise(seconds) if channels == 1 else np.stack([noise(seconds, seed=s) for s in (1, 2)], 1)
    )
    mix = write_wav(tmp_path / "long.wav", audio)
    events: list[dict] = []
    Separator("tiny", device="cpu").separate_file(
        mix, [Query("vn"), Query("vc")], tmp_path / "out", progress=events.append
    )
    stages = [event.get("stage") for event in events]
    first_separation = stages.index(None)
    assert first_separation > 0 and set(stages[:first_separation]) == {"level"}
    assert "level" not in stages[first_separation:]
    level = [event["done_seconds"] for event in events[:first_separation]]
    assert level == sorted(level) and level[-1] == pytest.approx(seconds, abs=1e-3)
    assert all(event["total_seconds"] == pytest.approx(seconds, abs=0.05) for event in events)
    assert events[-1]["done_seconds"] == pytest.approx(seconds, abs=1e-3)


def test_the_progress_bar_starts_afresh_when_the_separation_follows_the_level_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by a review: the level pass and the separation shared one rich task, which the
    level pass left finished, so the separation showed 0:00:00 remaining throughout."""
    import rich.progress

    from conftest import TERMINAL_ENV
    from vimss_cli.cli import separate as separate_cli

    for name, value in TERMINAL_ENV.items():
        monkeypatch.setenv(name, value)
    bars = []
    real = rich.progress.Progress

    def kept(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(rich.progress, "Progress", kept)  # (imported when a bar is shown)
    with separate_cli._progress_display(True) as update:
        assert update is not None
        for done in (30.0, 60.0):
            update({"input": "a.wav", "stage": "level", "done_seconds": done, "total_seconds": 60})
        (task,) = bars[0].tasks
        assert task.finished and "(reading its level)" in task.description
        update({"input": "a.wav", "done_seconds": 6.0, "total_seconds": 60.0})
        (task,) = bars[0].tasks
        assert not task.finished and task.completed == 6.0 and task.description == "a.wav"


def test_separate_file_reports_the_warnings_of_the_players_it_found(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a new user's trial: the CLI told a video's doubts (an unknown instrument),
    the library dropped them."""
    from vimss_cli.api import Separator
    from vimss_cli.vision import queries as planning

    real = planning.plan_players

    def doubtful(*args, **kwargs):
        plan = real(*args, **kwargs)
        plan.warnings.append("player 2's instrument is unknown")
        return plan

    monkeypatch.setattr(planning, "plan_players", doubtful)
    mix = write_wav(tmp_path / "AuMix_04_Duo_vn_vc.wav", noise(1.0))
    report = Separator("tiny", device="cpu").separate_file(mix, None, tmp_path / "out")
    assert "player 2's instrument is unknown" in report.warnings


def test_separate_file_makes_the_clis_stems_by_default(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    """Found by a review: the API made mono stems at the model's rate while the CLI and the
    docs give stems like the input (its rate and channels)."""
    from vimss_cli.api import Separator
    from vimss_cli.conditioning import Query

    stereo = np.stack([noise(1.0, 2 * RATE, seed=8), noise(1.0, 2 * RATE, seed=9)], axis=1)
    mix = write_wav(tmp_path / "wide.wav", stereo, 2 * RATE)
    queries = [Query("vn"), Query("vc")]
    report = Separator("tiny", device="cpu").separate_file(mix, queries, tmp_path / "api")
    assert run("separate", mix, "-i", "vn,vc", "-o", tmp_path / "cli").exit_code == 0
    for stem in report.stems:
        api, rate = soundfile.read(str(stem.path), dtype="float32")
        cli, _ = soundfile.read(str(tmp_path / "cli" / "wide" / stem.path.name), dtype="float32")
        assert rate == 2 * RATE and api.shape == stereo.shape
        assert np.array_equal(api, cli)


def test_filename_template_names_every_output(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_wav(tmp_path / "first.wav", noise(1.0, seed=1))
    second = write_wav(tmp_path / "second.wav", noise(1.0, seed=2))
    out = tmp_path / "out"
    flat = ("--filename", "{input}_{player}_{instrument}.{ext}", "-o", out)
    args = (*flat, "-i", "vn,vc", "--format", "flac", "--residual", "--report")
    result = run("separate", first, second, *args)
    assert result.exit_code == 0, result.output
    names = [f"{n}_{p}.flac" for n in ("first", "second") for p in ("1_vn", "2_vc", "3_rest")]
    names += ["first.report.html", "second.report.html"]  # the inputs share the folder
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    page = (out / "first.report.html").read_text()
    assert "first_3_rest" in page and "second_" not in page
    # a rerun is refused before the players are looked at, naming the template's files
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}

    def no_analysis(*args: object, **kwargs: object) -> None:
        raise AssertionError("the players were looked at before the outputs were checked")

    monkeypatch.setattr("vimss_cli.batch.plan_players", no_analysis)
    again = run("separate", first, *flat, "-i", "vn,vc")
    assert_clean_failure(again, "already exist", "first_1_vn.flac", "--force")
    skipped = run(
        "separate", first, second, *flat, "-i", "vn,vc", "--format", "flac", "--skip-existing"
    )
    assert skipped.exit_code == 0 and skipped.output.count("stems exist, skipped") == 2
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    monkeypatch.undo()
    # --force replaces the whole earlier set of that input, and only of that input
    forced = run("separate", first, *flat, "-i", "fl", "--force")
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("first_")) == [
        "first_1_fl.wav"
    ]
    assert (out / "second_2_vc.flac").is_file()
    # folders below OUTDIR, and the player number formatted
    nested = ("--filename", "stems/{input}/{instrument}-{player:03d}.{ext}", "-i", "vn,vc")
    assert run("separate", first, "-o", tmp_path / "n", *nested).exit_code == 0
    assert files_under(tmp_path / "n") == [
        tmp_path / "n" / "stems" / "first" / name for name in ("vc-002.wav", "vn-001.wav")
    ]


@pytest.mark.parametrize(
    "template, fragment",
    [
        ("{input}/{player}_{name}.{ext}", "unknown field {name}"),
        ("{input}/{instrument}.{ext}", "has no {player}"),
        ("/tmp/{input}/{player}.{ext}", "is not a path inside OUTDIR"),
        ("../{input}/{player}.{ext}", "leaves OUTDIR"),
        ("{input}/../../{player}.{ext}", "leaves OUTDIR"),
        ("{input}/{player}.wav", "must end with .{ext}"),
        ("{player}/{instrument}.{ext}", "only {input} may name one"),
        ("{input}/{player:x}.{ext}", "other than as digits"),
        ("{input}/{player:s}.{ext}", "cannot be filled in"),
        ("{input/{player}.{ext}", "is not a template"),
        ("{input}{player}.{ext}", "side by side"),  # a1.wav's stems looked like a.wav's
        ("{input}/{player:02d}{input}.{ext}", "side by side"),
        ("{input}0{player}.{ext}", "side by side"),
        ("{input}/.{player}.{ext}", "names hidden files"),  # found by a new user's trial
        (".stems/{input}/{player}.{ext}", "names hidden files or folders"),
    ],
)
def test_bad_filename_templates(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, template: str, fragment: str
) -> None:
    out = tmp_path / "out"
    result = run("separate", mix, "-o", out, "-i", "vn,vc", "--filename", template)
    assert_clean_failure(result, "--filename", fragment)
    assert result.exit_code == 2 and files_under(out) == []


def test_several_inputs_need_input_in_the_filename(tiny_models_dir: Path, tmp_path: Path) -> None:
    first = write_wav(tmp_path / "first.wav", noise(1.0, seed=1))
    second = write_wav(tmp_path / "second.wav", noise(1.0, seed=2))
    out = tmp_path / "out"
    args = ("-o", out, "-i", "vn", "--filename", "{player:02d}_{instrument}.{ext}")
    assert_clean_failure(run("separate", first, second, *args), "has no {input}", "2 inputs")
    assert files_under(out) == []
    assert run("separate", first, *args).exit_code == 0  # one input may go without
    assert files_under(out) == [out / "01_vn.wav"]


def test_the_success_line_names_the_stems_the_model_and_the_device(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn,vc", "--rest", "--device", "cpu")
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.stderr.splitlines() if "s of audio in" in ln]
    assert line.startswith(f"{mix}: 2.5 s of audio in ")
    assert line.endswith(
        f"with model tiny on cpu -> 3 stems in {tmp_path / 'o' / 'duet'}: "
        "01_vn.wav, 02_vc.wav, 03_rest.wav"
    ), line
    # every input skipped: no model is loaded, and --json still says what was done
    skipped = run("separate", mix, "-o", tmp_path / "o", "-i", "vn", "--skip-existing", "--json")
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.stdout) == {
        "model": None,
        "device": None,
        "precision": None,
        "refined": None,
        "harmonic": None,
        "templates": None,
        "inputs": [],
        "failures": [],
        "skipped": [str(mix)],
    }


def test_an_unforeseen_system_error_is_still_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a review: a read-only or full disk, a file where a folder goes, or settings
    that ask for more memory than there is gave tracebacks in train and data."""
    import errno

    import typer

    from vimss_cli.cli.common import guarded

    where = tmp_path / "afile.txt" / "901_piece"

    def not_a_folder() -> None:
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(where))

    def out_of_memory() -> None:
        raise MemoryError("Unable to allocate 136. GiB")

    class OutOfMemoryError(RuntimeError):  # as torch names its CUDA one
        pass

    def gpu_out_of_memory() -> None:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB\nmore")

    def worker() -> None:  # a DataLoader worker's error carries the worker's traceback
        raise OSError("Caught OSError in DataLoader worker process 0.\nTraceback (most...")

    for action, line in (
        (not_a_folder, f"error: Not a directory: {where} (--debug for the traceback)"),
        (out_of_memory, "error: out of memory: Unable to allocate 136. GiB (smaller settings"),
        (gpu_out_of_memory, "error: out of memory: CUDA out of memory. Tried to allocate 80"),
        (worker, "error: Caught OSError in DataLoader worker process 0. (--debug for"),
    ):
        with pytest.raises(typer.Exit) as stopped:
            guarded(False, action)
        assert stopped.value.exit_code == 1
        err = capsys.readouterr().err
        assert err.startswith(line) and err.count("\n") == 1, err
    with pytest.raises(NotADirectoryError):  # --debug keeps the traceback
        guarded(True, not_a_folder)

    def bug() -> None:
        raise RuntimeError("a programming error")

    with pytest.raises(RuntimeError, match="a programming error"):  # not turned into a line
        guarded(False, bug)
    # with --json the same ending is one object on stdout too; a bug prints none
    from vimss_cli.cli.common import json_error

    with pytest.raises(typer.Exit):
        guarded(False, lambda: json_error(out_of_memory, True))
    told = capsys.readouterr()
    assert json.loads(told.out)["error"].startswith("out of memory: Unable to allocate")
    assert json.loads(told.out)["exit_code"] == 1 and told.err.startswith("error: out of memory")
    with pytest.raises(RuntimeError):
        guarded(False, lambda: json_error(bug, True))
    assert capsys.readouterr().out == ""


def test_separate_without_the_note_classifier_fails_in_one_line_before_the_network(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vimss_cli import note_classifier

    monkeypatch.setattr(note_classifier, "bundled_notes_dir", lambda: tmp_path / "gone")
    note_classifier.load_note_classifier.cache_clear()
    try:
        out = tmp_path / "stems"
        result = run("separate", mix, "-o", out, "--instruments", "vn,fl")
        assert_clean_failure(result, "note classifier not found", "--no-harmonic")
        assert files_under(out) == []
        # without harmonic masks it is not needed
        assert run("separate", mix, "-o", out, "-i", "vn,fl", "--no-harmonic").exit_code == 0
    finally:
        note_classifier.load_note_classifier.cache_clear()
