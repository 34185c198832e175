"""Training: config, excerpts, exact resume, bad inputs, and 2-process DDP on CPU."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.signal
import soundfile
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from conftest import write_wav
from vimss_cli.checkpoint import load_checkpoint
from vimss_cli.cli import app
from vimss_cli.errors import CheckpointError, InputError
from vimss_cli.instruments import instrument_index
from vimss_cli.training.config import build_config, load_config
from vimss_cli.training.data import ExcerptDataset, ExcerptShape, StepSampler, load_pieces
from vimss_cli.training.losses import SDR_LOSS_CAP_DB, sdr, thresholded_sdr_loss
from vimss_cli.training.visual_cache import PlayerVisuals
from vimss_cli.urmp import PieceName

RATE = 8000
TINY = [
    "model.sample_rate=8000",
    "model.levels=3",
    "model.base_features=4",
    "model.query_dim=8",
    "data.output_samples=256",
    "data.batch_size=2",
    "data.workers=0",
    "data.validation_excerpts=4",
    "run.checkpoint_every=2",
    "run.validate_every=3",
    "run.log_every=1",
    "optim.warmup_steps=2",
    "optim.max_steps=6",
]
SETS = [part for setting in TINY for part in ("--set", setting)]


def make_piece(
    folder: Path,
    number: int,
    instruments: tuple[str, ...],
    seconds: float = 1.5,
    seed: int = 0,
    title: str = "",
) -> Path:
    name = PieceName(number, title or f"Piece{number}", instruments)
    piece = folder / name.folder_name
    piece.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    stems = []
    for j, _ in enumerate(instruments, start=1):
        f0 = rng.uniform(150, 900)
        stem = 0.2 * np.sin(2 * np.pi * f0 * t) * (np.sin(2 * np.pi * rng.uniform(0.5, 2) * t) > 0)
        stems.append(stem.astype(np.float32))
        write_wav(piece / name.stem_name(j), stems[-1])
    write_wav(piece / name.mix_name(), np.sum(stems, axis=0))
    return piece


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_piece(root / "train", 1, ("vn", "vc"), seed=1)
    make_piece(root / "train", 2, ("fl", "cl", "bn"), seed=2)
    make_piece(root / "train", 3, ("vn", "vn"), seed=3)
    make_piece(root / "valid", 4, ("tpt", "tbn"), seed=4)
    return root


def train(*args: str):
    return CliRunner().invoke(app, ["train", *map(str, args)])


# ------------------------------------------------------------------------------- config
def test_config_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[optim]\nlr = 0.01\n[model]\nlevels = 4\n")
    config = load_config(path, ["optim.lr=0.5", 'model.conditioning="concat"'])
    assert config.optim.lr == 0.5 and config.model.levels == 4
    assert config.model.conditioning == "concat"
    assert load_config(None, []) == build_config()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.lrr=1"], "unknown config key optim.lrr; did you mean optim.lr. valid keys: model"),
        (["lr=1"], "section.key=value"),
        (["foo.bar=1"], "unknown config section 'foo'; sections: model, data, optim, run"),
        (["model.down_kernel=4"], "odd"),
        (["model.motion_features=flow"], "motion_features must be one of 'bands', 'multiscale'"),
    ],
)
def test_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_config(None, overrides)


def test_a_config_section_given_as_a_value_is_named_as_such() -> None:
    """``model = 3`` is a known section that is not a table: not an "unknown section"."""
    with pytest.raises(InputError, match=r"'model' must be a table \(\[model\] with its settings"):
        build_config({"model": 3})
    with pytest.raises(InputError, match="unknown config section 'foo'; sections: model, data"):
        build_config({"foo": {}})


@pytest.mark.parametrize(
    "setting, message",
    [
        ("optim.lr=abc", "optim.lr must be a number, got 'abc'"),
        ("optim.lr=-1", "optim.lr must be greater than 0, got -1"),
        ("optim.lr=nan", "optim.lr must be a finite number, got nan"),
        ("data.batch_size=0", "data.batch_size must be at least 1, got 0"),
        ("optim.max_steps=abc", "optim.max_steps must be an integer, got 'abc'"),
        ("optim.max_steps=2.5", "optim.max_steps must be an integer, got 2.5"),
        ("data.workers=-1", "data.workers must be at least 0, got -1"),
        ("optim.precision=fp8", "optim.precision must be one of 'fp32', 'fp16', 'bf16', got 'fp8'"),
        ("optim.ema_decay=1", "optim.ema_decay must be below 1, got 1"),
        ("data.remix_probability=1.5", "data.remix_probability must be at most 1, got 1.5"),
        ("run.validate_every=0", "run.validate_every must be at least 1, got 0"),
        ("run.compile=1", "run.compile must be true or false, got 1"),
        ("run.seed=-3", "run.seed must be at least 0, got -3"),
        ('model.levels="five"', "model.levels must be an integer, got 'five'"),
        ("model.base_features=0", "model.base_features must be at least 1, got 0"),
        ('model.output_activation="relu"', "model.output_activation must be one of"),
        # found by a review: a traceback deep in numpy, a 136 GiB allocation, an overflow in
        # AdamW, and a sample rate reported as every piece's audio being truncated
        ("model.levels=100", "model.levels must be at most 16, got 100"),
        ("optim.lr=1e300", "optim.lr must be at most 1e+30, got 1e+300"),
        ("model.sample_rate=7", "model.sample_rate must be at least 1000, got 7"),
        ("data.reverb_seconds=0.1", "data.reverb_seconds must be at least 0.2, got 0.1"),
    ],
)
def test_every_config_value_is_checked_with_its_key_named(setting: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        build_config(None, [setting])
    text = str(caught.value)
    assert text.startswith(f"invalid config value: {message}"), text
    assert "\n" not in text


def test_a_config_that_is_not_a_text_file_is_one_clear_error(tmp_path: Path) -> None:
    binary = tmp_path / "mix.wav"
    binary.write_bytes(b"RIFF\xac\x00\xff\xfe not text")
    with pytest.raises(InputError, match=r"mix\.wav is not text"):
        load_config(binary)
    with pytest.raises(InputError, match=r"cannot read config file .*: Is a directory"):
        load_config(tmp_path)


def test_config_file_values_are_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[model]\nlevels = "five"\n')
    with pytest.raises(InputError, match=r"model\.levels must be an integer, got 'five'"):
        load_config(path)
    integers = build_config(None, ["optim.lr=1", "optim.grad_clip=2"])  # ints are numbers too
    assert integers.optim.lr == 1.0 and integers.optim.grad_clip == 2.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "optim.lr=abc"], "optim.lr must be a number"),
        (["--set", "optim.precision=fp8"], "optim.precision must be one of"),
        (["--set", "data.batch_size=0"], "data.batch_size must be at least 1"),
        (["--max-steps", "-5"], "--max-steps must be at least 1, got -5"),
        (["--max-minutes", "0"], "--max-minutes must be more than 0, got 0.0"),
        (["--set", "optim.precision=fp16"], "optim.precision = fp16 needs a CUDA device"),
    ],
)
def test_bad_training_settings_fail_in_one_line_and_write_nothing(
    tree: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    from test_cli import assert_clean_failure

    out = tmp_path / "run"
    result = train("--root", tree, "--out", out, "--device", "cpu", *SETS, *args)
    assert_clean_failure(result, message)
    assert not out.exists()


# ------------------------------------------------------------------------------ excerpts
def test_excerpts_are_a_function_of_their_index(tree: Path) -> None:
    pieces, skipped = load_pieces(tree / "train", RATE)
    assert len(pieces) == 3 and skipped == []
    config = build_config(None, TINY)
    shape = ExcerptShape(input_length=400, output_length=256, context=72)
    dataset = ExcerptDataset(pieces, shape, config.data, seed=5)
    first, again, other = dataset[17], dataset[17], dataset[18]
    for key in ("mixture", "labels", "targets"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["mixture"], other["mixture"])
    assert first["mixture"].shape == (1, 400) and first["targets"].shape == (2, 256)


def test_without_augmentation_targets_sum_to_the_mixture(tree: Path) -> None:
    pieces, _ = load_pieces(tree / "train", RATE)
    config = build_config(None, [*TINY, "data.queries_per_mixture=3"])
    shape = ExcerptShape(400, 256, 72)
    dataset = ExcerptDataset(pieces, shape, config.data, seed=0, augment=False)
    for index in range(12):
        item = dataset[index]
        out = item["mixture"][0, 72 : 72 + 256]
        torch.testing.assert_close(item["targets"].sum(0), out, atol=1e-6, rtol=0)
        labels = item["labels"].tolist()
        for label, target in zip(labels, item["targets"], strict=True):
            if labels.count(label) > 1:  # padding queries name absent instruments: silence
                assert not target.any()


def test_excerpts_count_every_player_of_the_mixture_in_the_ensemble(tree: Path) -> None:
    pieces, _ = load_pieces(tree / "train", RATE)
    config = build_config(None, [*TINY, "data.remix_probability=0", "data.queries_per_mixture=1"])
    shape = ExcerptShape(400, 256, 72)
    dataset = ExcerptDataset(pieces, shape, config.data, seed=0, augment=False)
    ensembles = {}  # the tree's pieces: every player counted
    for codes in (("vn", "vc"), ("fl", "cl", "bn"), ("vn", "vn")):
        ensembles[codes] = torch.zeros(13)
        for code in codes:
            ensembles[codes][instrument_index(code)] += 1
    seen = set()
    for index in range(20):
        item = dataset[index]
        ensemble = item["ensemble"]
        assert ensemble.shape == (13,) and ensemble.dtype == torch.float32
        matches = [codes for codes, counts in ensembles.items() if torch.equal(ensemble, counts)]
        assert len(matches) == 1, ensemble  # one query, yet every player of its piece
        assert ensemble[item["labels"][0]] >= 1
        seen.add(matches[0])
    assert len(seen) == 3


def assert_stem_augmentation_keeps_targets_summing(tree: Path, setting: str, on: float) -> None:
    """With ``data.<setting> = on`` each player's stem is changed (the mixture differs from
    ``= 0``), excerpts stay a function of their index, and targets still sum to the mixture."""
    pieces, _ = load_pieces(tree / "train", RATE)
    plain = [*TINY, "data.queries_per_mixture=3", "data.remix_probability=0"]
    plain += ["data.drop_player_probability=0", "data.absent_query_probability=0"]
    shape = ExcerptShape(400, 256, 72)

    def dataset(value: float) -> ExcerptDataset:
        config = build_config(None, [*plain, f"data.{setting}={value}"])
        return ExcerptDataset(pieces, shape, config.data, seed=0, sample_rate=RATE)

    changed, unchanged = dataset(on), dataset(0.0)
    for index in range(6):
        item = changed[index]
        assert torch.equal(item["mixture"], changed[index]["mixture"])  # still a function
        assert torch.equal(item["targets"], changed[index]["targets"])
        out = item["mixture"][0, 72 : 72 + 256]
        torch.testing.assert_close(item["targets"].sum(0), out, atol=1e-5, rtol=0)
        assert not torch.allclose(item["mixture"], unchanged[index]["mixture"], atol=1e-4)


def test_colouring_filters_each_player_and_keeps_targets_summing_to_the_mixture(
    tree: Path,
) -> None:
    assert_stem_augmentation_keeps_targets_summing(tree, "colour_db", 6.0)


def test_speed_moves_pitch_and_keeps_targets_summing_to_the_mixture(tree: Path) -> None:
    from vimss_cli.training.data import _window_at_speed

    tone = np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE).astype(np.float32)
    fifth_up = _window_at_speed(tone, 2000, 4000, 1.5)
    spectrum = np.abs(np.fft.rfft(fifth_up * np.hanning(4000)))
    assert abs(np.argmax(spectrum) * RATE / 4000 - 660) <= 2  # 440 Hz read 1.5 times as fast
    np.testing.assert_array_equal(_window_at_speed(tone, 100, 300, 1.0), tone[100:400])
    assert not _window_at_speed(tone, -500, 300, 0.5).any()  # before the stem: zeros

    assert_stem_augmentation_keeps_targets_summing(tree, "speed_semitones", 3.0)


def test_rooms_reverberate_each_player_and_keep_targets_summing_to_the_mixture(
    tree: Path,
) -> None:
    from vimss_cli.training.data import _window_at_speed

    ramp = np.arange(RATE, dtype=np.float32) / RATE
    lead = _window_at_speed(ramp, 2000, 300, 1.26, lead=50)
    np.testing.assert_array_equal(lead[50:], _window_at_speed(ramp, 2000, 300, 1.26))
    assert np.all(np.diff(lead) > 0)  # the lead is read before the window, at the same speed

    assert_stem_augmentation_keeps_targets_summing(tree, "reverb_probability", 1.0)
    with pytest.raises(InputError, match="reverb_probability must be at most 1"):
        build_config(None, ["data.reverb_probability=1.5"])


def test_vibrato_swings_the_pitch_by_its_depth_and_keeps_targets_summing(tree: Path) -> None:
    """``data.vibrato_probability``: a 1 kHz tone read through a 40-cent, 5 Hz vibrato swings
    between 977 and 1023 Hz (1000 * 2 ** (-+40 / 1200)); nothing else of an excerpt is
    drawn differently."""
    from vimss_cli.training.data import _window_at_speed, vibrato_warp

    rate = 48000
    tone = np.sin(2 * np.pi * 1000 * np.arange(2 * rate) / rate)
    warp = vibrato_warp(rate, 40.0, 5.0 / rate, 0.3)
    amplitude = 40 * np.log(2) / 1200 / (2 * np.pi * 5 / rate)  # 22 samples at 48 kHz
    assert abs(warp.mean()) < 0.01 * amplitude and np.isclose(np.abs(warp).max(), amplitude)
    swung = _window_at_speed(tone, 20000, rate, 1.0, 0, warp)
    phase = np.unwrap(np.angle(scipy.signal.hilbert(swung)))
    smoothed = np.convolve(np.diff(phase), np.ones(240) / 240, "valid")  # 5 ms: the read's
    frequency = smoothed[2000:-2000] * rate / (2 * np.pi)  # interpolation ripple averaged out
    cents = 1200 * np.log2(frequency / 1000)
    assert 39.0 < cents.max() < 41.0 and -41.0 < cents.min() < -39.0

    assert_stem_augmentation_keeps_targets_summing(tree, "vibrato_probability", 1.0)
    pieces, _ = load_pieces(tree / "train", RATE)
    shape = ExcerptShape(400, 256, 72)
    plain = ExcerptDataset(pieces, shape, build_config(None, TINY).data, seed=0, sample_rate=RATE)
    swung_config = build_config(None, [*TINY, "data.vibrato_probability=1"]).data
    swung_set = ExcerptDataset(pieces, shape, swung_config, seed=0, sample_rate=RATE)
    for index in range(10):  # the same players, queries, gains: only the reads moved
        a, b = plain[index], swung_set[index]
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["ensemble"], b["ensemble"])
        silent = [(item["targets"].abs().amax(-1) == 0).tolist() for item in (a, b)]
        assert silent[0] == silent[1]
    with pytest.raises(InputError, match="vibrato_cents must be at least 10"):
        build_config(None, ["data.vibrato_cents=5"])


def test_speed_is_refused_for_a_model_that_sees_motion() -> None:
    with pytest.raises(InputError, match=r"data\.speed_semitones must be 0 for a model that"):
        build_config(None, ["model.motion_channels=2", "data.speed_semitones=1"])
    with pytest.raises(InputError, match="speed_semitones must be at most 12"):
        build_config(None, ["data.speed_semitones=13"])


def test_real_solos_are_drawn_as_often_as_asked(tree: Path) -> None:
    make_piece(tree / "train", 901, ("cl",), seed=9, title="RealSoloGcomprisClarinet")
    pieces, _ = load_pieces(tree / "train", RATE)
    shape = ExcerptShape(400, 256, 72)
    remix = [*TINY, "data.remix_probability=1", "data.drop_player_probability=0"]

    def share_of_real_players(chance: float) -> float:
        config = build_config(None, [*remix, f"data.real_solo_probability={chance}"])
        dataset = ExcerptDataset(pieces, shape, config.data, seed=0, sample_rate=RATE)
        draws = [dataset._remix_piece(np.random.default_rng(i)) for i in range(400)]
        return sum("RealSolo" in piece.name for piece in draws) / len(draws)

    found = ExcerptDataset(pieces, shape, build_config(None, TINY).data, seed=0).real_solos
    assert [piece.name for piece in found] == ["901_RealSoloGcomprisClarinet_cl"]
    assert 0.15 < share_of_real_players(0.0) < 0.35  # one piece of four
    assert share_of_real_players(1.0) == 1.0
    assert 0.55 < share_of_real_players(0.5) < 0.75  # half, plus a quarter of the other half


def test_the_recordings_level_moves_mixture_and_targets_together(tree: Path) -> None:
    """``data.mixture_gain_db``: each excerpt as without it, mixture and targets scaled by one
    gain within ``[-mixture_gain_db, 0]`` dB, the gains spread over that range."""
    pieces, _ = load_pieces(tree / "train", RATE)
    shape = ExcerptShape(400, 256, 72)
    plain = ExcerptDataset(pieces, shape, build_config(None, TINY).data, seed=0)
    levelled_config = build_config(None, [*TINY, "data.mixture_gain_db=30"]).data
    levelled = ExcerptDataset(pieces, shape, levelled_config, seed=0)
    gains = []
    for index in range(40):
        a, b = plain[index], levelled[index]
        assert torch.equal(a["labels"], b["labels"])
        if not a["mixture"].any():  # a silent excerpt stays silent
            assert not b["mixture"].any()
            continue
        gain = float(b["mixture"].abs().max() / a["mixture"].abs().max())
        torch.testing.assert_close(b["mixture"], a["mixture"] * gain, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(b["targets"], a["targets"] * gain, rtol=1e-5, atol=1e-7)
        gains.append(20 * np.log10(gain))
    assert -30 <= min(gains) < -20 and -10 < max(gains) <= 0


def test_colour_filters_have_the_gains_they_are_drawn_with() -> None:
    from scipy.signal import sosfreqz

    from vimss_cli.training.data import _biquad

    for kind, frequency, probes, expected in [
        ("low", 200.0, [20.0, 200.0, 8000.0], [6.0, 3.0, 0.0]),
        ("high", 4000.0, [20.0, 4000.0, 10000.0], [0.0, 3.0, 6.0]),
        ("peak", 1000.0, [30.0, 1000.0, 10000.0], [0.0, 6.0, 0.0]),
    ]:
        section = _biquad(kind, frequency, 6.0, 0.7 if kind != "peak" else 1.0, 22050)
        _, response = sosfreqz(section[None], worN=probes, fs=22050)
        np.testing.assert_allclose(20 * np.log10(np.abs(response)), expected, atol=0.3)


def test_thresholded_sdr_loss_is_the_negative_sdr_capped_and_scores_silence() -> None:
    torch.manual_seed(0)
    target = torch.randn(1, 1, 4000)
    noise = torch.randn(1, 1, 4000)
    mixture = target + noise
    for snr_db in (0.0, 10.0, 20.0):
        estimate = target + noise * 10 ** (-snr_db / 20) * target.norm() / noise.norm()
        expected = -sdr(estimate, target).item()
        cap = 10 ** (-SDR_LOSS_CAP_DB / 10)
        capped = -10 * np.log10(1 / (10 ** (-snr_db / 10) + cap))
        got = thresholded_sdr_loss(estimate, target, mixture).item()
        assert got == pytest.approx(capped, abs=1e-3)
        if snr_db == 0.0:  # far below the cap: plain SDR
            assert got == pytest.approx(expected, abs=0.01)
    perfect = thresholded_sdr_loss(target, target, mixture).item()
    assert perfect == pytest.approx(-SDR_LOSS_CAP_DB, abs=1e-3)
    silent = torch.zeros_like(target)
    # a silent player: the estimate's energy against the mixture's
    assert thresholded_sdr_loss(silent, silent, mixture).item() == pytest.approx(
        -SDR_LOSS_CAP_DB, abs=1e-3
    )
    leak = thresholded_sdr_loss(mixture * 0.1, silent, mixture).item()
    assert leak == pytest.approx(10 * np.log10(0.01 + 10 ** (-SDR_LOSS_CAP_DB / 10)), abs=1e-3)


def test_learning_rate_schedule_ends_where_it_is_told() -> None:
    from vimss_cli.training.trainer import learning_rate

    config = build_config(None, ["optim.lr=1e-3", "optim.warmup_steps=10"])
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 100, schedule_steps=100) == pytest.approx(5e-5)  # the floor
    assert learning_rate(config, 100) > 9e-4  # max_steps (20000) is far away


def test_schedule_fitted_to_the_deadline_is_logged_and_ends_the_run(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vimss_cli.training import loop

    # steps 2-6 timed instead of 10-30: the 12 s budget reaches them on a loaded machine too
    monkeypatch.setattr(loop, "SCHEDULE_TIMING_STEPS", (2, 6))
    run = tmp_path / "timed"
    result = train(
        "--root", tree, "--out", run, "--device", "cpu", "--max-minutes", "0.2", *SETS,
        "--set", "optim.max_steps=100000", "--set", "run.schedule_to_deadline=true",
        "--set", "run.validate_every=1000", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    fitted = [r for r in log if "schedule_steps" in r]
    assert fitted[0]["step"] == 6  # first fitted after timing steps 2-6
    for earlier, later in itertools.pairwise(fitted):  # then timed again at
        assert later["step"] % 2 == 0  # checkpoints (every 2 steps here)
        assert later["step"] < 0.5 * earlier["schedule_steps"]  # in the schedule's first half
    step = json.loads(result.stdout)["step"]
    assert 6 <= step <= fitted[-1]["schedule_steps"]
    last = load_checkpoint(run / "last.safetensors")
    assert last.provenance["steps"] == step
    assert any(r.get("step") == step and "valid_sdr" in r for r in log)  # validated at the end


def _with_fake_visuals(pieces: list) -> list:
    """Give each player a distinct appearance and a motion ramp (no video needed)."""
    for number, piece in enumerate(pieces):
        players = len(piece.instruments)
        appearance = np.zeros((players, 1280), np.float32)
        appearance[np.arange(players), number * 8 + np.arange(players)] = 1.0
        motion = np.ones((players, 2, 40), np.float32) * (1 + np.arange(players))[:, None, None]
        piece.visuals = PlayerVisuals(appearance, motion, rate=20.0)
    return pieces


def _video_dataset(tree: Path, *settings: str) -> ExcerptDataset:
    pieces = _with_fake_visuals(load_pieces(tree / "train", RATE)[0])
    config = build_config(None, [*TINY, *settings])
    return ExcerptDataset(pieces, ExcerptShape(400, 256, 72), config.data, seed=3, augment=True,
                          appearance_dim=1280, motion_channels=2, sample_rate=RATE)  # fmt: skip


def test_same_instrument_pairs_are_queried_as_two_players(tree: Path) -> None:
    dataset = _video_dataset(tree, "data.same_instrument_probability=1",
                             "data.drop_player_probability=0.5")  # fmt: skip
    for index in range(40):
        item = dataset[index]
        labels = item["labels"].tolist()
        assert labels == [0, 0], labels  # the only instrument with two players is the violin
        assert not torch.equal(item["appearance"][0], item["appearance"][1])
        assert item["appearance"].abs().sum(-1).min() > 0  # both are real players


def test_label_only_excerpts_carry_no_visuals_and_sum_same_instrument_players(
    tree: Path,
) -> None:
    dataset = _video_dataset(tree, "data.label_query_probability=1", "data.remix_probability=0",
                             "data.drop_player_probability=0", "data.gain_db=0",
                             "data.absent_query_probability=0",
                             "data.same_instrument_probability=0")  # fmt: skip
    saw_violin_duet = False
    for index in range(30):
        item = dataset[index]
        assert not item["appearance"].any() and not item["motion"].any()
        labels = item["labels"].tolist()
        assert labels.count(0) <= 1, labels  # the two violins of piece 3 are one query
        out = item["mixture"][0, 72 : 72 + 256]
        if 0 in labels and out.abs().sum() > 0:
            violin = item["targets"][labels.index(0)]
            saw_violin_duet |= bool(torch.allclose(violin, out, atol=1e-6))
    assert saw_violin_duet
    plain = _video_dataset(tree, "data.label_query_probability=0",
                           "data.same_instrument_probability=0")  # fmt: skip
    assert any(plain[i]["appearance"].any() for i in range(10))


def test_an_appearance_only_model_trains_on_the_players_appearance(tree: Path) -> None:
    """appearance_dim > 0 with no motion is not a label-only model: its excerpts carry each
    queried player's own appearance vector, and no motion."""
    pieces = _with_fake_visuals(load_pieces(tree / "train", RATE)[0])
    settings = ["model.appearance_dim=1280", "data.label_query_probability=0"]
    settings += ["data.absent_query_probability=0", "data.drop_player_probability=0"]
    config = build_config(None, [*TINY, *settings])
    dataset = ExcerptDataset(pieces, ExcerptShape(400, 256, 72), config.data, seed=3,
                             appearance_dim=1280, motion_channels=0, sample_rate=RATE)  # fmt: skip
    assert not dataset.label_only_model
    looks = {tuple(v.nonzero()[0]) for piece in pieces for v in piece.visuals.appearance}
    saw_pair = False
    for index in range(20):
        item = dataset[index]
        assert "motion" not in item and item["appearance"].shape == (2, 1280)
        for label, row in zip(item["labels"].tolist(), item["appearance"].numpy(), strict=True):
            assert tuple(row.nonzero()[0]) in looks, label  # one real player's vector
        saw_pair |= item["labels"].tolist() == [0, 0]
    assert saw_pair  # same-instrument pairs are drawn for it, as for any video model
    labels_only = ExcerptDataset(pieces, ExcerptShape(400, 256, 72), config.data, seed=3)
    assert labels_only.label_only_model and "appearance" not in labels_only[0]


def test_step_sampler_is_disjoint_across_ranks_and_resumable() -> None:
    ranks = [list(StepSampler(0, 3, rank, 2, steps=4)) for rank in range(2)]
    assert not set(ranks[0]) & set(ranks[1])
    assert list(StepSampler(2, 3, 1, 2, steps=2)) == ranks[1][6:]


# ---------------------------------------------------------------------------- the loop
def test_train_exports_a_loadable_checkpoint_and_resumes_exactly(
    tree: Path, tmp_path: Path
) -> None:
    straight = train(
        "--dataset",
        "synth",
        "--root",
        tree,
        "--out",
        tmp_path / "a",
        "--device",
        "cpu",
        "--json",
        *SETS,
    )
    assert straight.exit_code == 0, straight.output
    summary = json.loads(straight.stdout)
    assert summary["step"] == 6 and summary["examples_per_second"] > 0
    best = load_checkpoint(tmp_path / "a" / "best.safetensors")
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    validations = [r for r in log if "valid_sdr" in r]
    assert [r["step"] for r in validations] == [3, 6]  # run.validate_every=3, and at the end
    # the best is the first validation of the highest SDR (a later equal one does not replace it)
    highest = max(validations, key=lambda r: r["valid_sdr"])
    assert best.trained and best.provenance["steps"] == highest["step"]
    assert best.provenance["validation"]["valid_sdr"] == highest["valid_sdr"]
    manifest = best.provenance["data_manifest"]
    train_pieces = ["01_Piece1_vn_vc", "02_Piece2_fl_cl_bn", "03_Piece3_vn_vn"]
    assert manifest["train"]["pieces"] == train_pieces
    assert manifest["valid"]["pieces"] == ["04_Piece4_tpt_tbn"]
    assert best.model.config.levels == 3
    assert any("loss" in r for r in log)
    assert list((tmp_path / "a" / "tensorboard").iterdir())

    first = train(
        "--root", tree, "--out", tmp_path / "b", "--device", "cpu", "--max-steps", "4", *SETS
    )
    assert first.exit_code == 0, first.output
    # as docs/training.md says: --resume alone continues with the run's own saved settings
    second = train("--root", tree, "--out", tmp_path / "b", "--device", "cpu", "--resume")
    assert second.exit_code == 0, second.output
    assert "--resume:" not in second.stderr  # no setting changed

    def weights(run: Path) -> dict[str, torch.Tensor]:
        with safe_open(str(run / "state.safetensors"), "pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_train_bad_inputs(tree: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = train("--root", empty, "--out", tmp_path / "r1", "--device", "cpu", *SETS)
    assert result.exit_code != 0 and "no URMP piece folders" in result.stderr
    assert not (tmp_path / "r1").exists()  # no stub run folder
    result = train("--root", tree, "--out", tmp_path / "r2", "--set", "optim.bogus=1")
    assert result.exit_code != 0 and "unknown config key optim.bogus; valid keys:" in result.stderr
    typo = train("--root", tree, "--out", tmp_path / "r2", "--set", "optim.max_step=10")
    assert "unknown config key optim.max_step; did you mean optim.max_steps? valid" in typo.stderr
    ok = train(
        "--root", tree, "--out", tmp_path / "r3", "--device", "cpu", "--max-steps", "2", *SETS
    )
    assert ok.exit_code == 0, ok.output
    again = train("--root", tree, "--out", tmp_path / "r3", "--device", "cpu", *SETS)
    assert again.exit_code != 0 and "already holds a run" in again.stderr
    afile = tmp_path / "afile.txt"
    afile.write_text("mine\n")
    refused = train("--root", tree, "--out", afile, "--device", "cpu", "--max-steps", "1", *SETS)
    assert refused.exit_code == 2 and refused.stderr == (
        f"error: --out {afile} is not a folder: give a folder for the run\n"
    )
    assert afile.read_text() == "mine\n"
    mine = tmp_path / "my_experiment"  # the user's own folder, with their own config.toml
    mine.mkdir()
    (mine / "config.toml").write_text("# my notes\n")
    refused = train("--root", tree, "--out", mine, "--device", "cpu", "--max-steps", "1", *SETS)
    assert refused.exit_code != 0 and "is not empty and holds no run" in refused.stderr
    assert (mine / "config.toml").read_text() == "# my notes\n"
    assert sorted(p.name for p in mine.iterdir()) == ["config.toml"]
    other = train(
        "--root",
        tree,
        "--out",
        tmp_path / "r3",
        "--device",
        "cpu",
        "--resume",
        *SETS,
        "--set",
        "model.base_features=5",
    )
    assert other.exit_code != 0 and "another model config" in other.stderr
    assert "Traceback" not in other.stderr
    faster = train("--root", tree, "--out", tmp_path / "r3", "--device", "cpu", "--resume",
                   "--max-steps", "3", *SETS, "--set", "optim.lr=0.002")  # fmt: skip
    assert faster.exit_code == 0, faster.output
    told = "--resume: optim.lr was 0.0003, now 0.002 (from this step on"
    assert told in faster.stderr
    log = (tmp_path / "r3" / "log.jsonl").read_text()
    assert told in log and "lr = 0.002" in (tmp_path / "r3" / "config.toml").read_text()


def test_without_a_valid_split_the_last_weights_are_exported_with_a_warning(
    tree: Path, tmp_path: Path
) -> None:
    import shutil

    shutil.rmtree(tree / "valid")
    run = tmp_path / "novalid"
    result = train("--root", tree, "--out", run, "--device", "cpu", "--max-steps", "2", *SETS)
    assert result.exit_code == 0, result.output
    assert "no valid/ split" in result.output and "last.safetensors" in result.output
    assert load_checkpoint(run / "last.safetensors").model.config.levels == 3
    assert not (run / "best.safetensors").exists()


def test_real_recordings_are_validated_beside_the_valid_split_and_choose_the_best(
    tree: Path, tmp_path: Path
) -> None:
    """--real-valid (run.real_valid): each validation also scores fixed excerpts of a folder
    of real recordings (here two pieces that stand for them, audio only), logged as
    real_valid_sdr, and best.safetensors follows that SDR instead of the valid split's."""
    real = tmp_path / "realval"
    make_piece(real, 1, ("vn", "cl"), seed=11)
    make_piece(real, 2, ("sax", "bn", "vn"), seed=12)
    run = tmp_path / "run"
    result = train("--root", tree, "--out", run, "--device", "cpu", "--json",
                   "--real-valid", real, *SETS, "--set", "run.real_valid_excerpts=6")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["best_on"] == "real_valid"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    validations = [r for r in log if "real_valid_sdr" in r]
    assert [r["step"] for r in validations] == [3, 6]
    for record in validations:  # both sets, each against its own mixture
        assert {"valid_sdr", "valid_sdr_mixture", "real_valid_sdr_mixture"} <= record.keys()
        assert record["real_valid_targets"] > record["valid_targets"]  # 6 excerpts, not 4
        assert record["real_valid_sdr"] != record["valid_sdr"]
    highest = max(validations, key=lambda r: r["real_valid_sdr"])
    best = load_checkpoint(run / "best.safetensors")
    assert best.provenance["steps"] == highest["step"]
    assert summary["best_valid_sdr"] == highest["real_valid_sdr"]
    assert best.provenance["train_config"]["run"]["real_valid"] == str(real.resolve())
    # the real set is only scored: its pieces are not in the training manifest
    assert "01_Piece1_vn_cl" not in str(best.provenance["data_manifest"])
    info = CliRunner().invoke(app, ["models", "info", str(run / "best.safetensors")])
    assert info.exit_code == 0, info.output
    assert f"median SDR {highest['real_valid_sdr']:.2f} dB" in info.stdout
    assert "on its real recordings" in info.stdout and "on its synthetic valid" in info.stdout

    # it names the set it followed, on a terminal and in the closing line
    plain = train("--root", tree, "--out", tmp_path / "plain", "--device", "cpu",
                  "--max-steps", "3", "--real-valid", real, *SETS)  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert "best real valid SDR" in plain.stderr

    # a plain resume keeps the run's folder (and its best): nothing is said
    same = train("--root", tree, "--out", tmp_path / "plain", "--device", "cpu", "--resume",
                 "--max-steps", "4")  # fmt: skip
    assert same.exit_code == 0, same.output
    assert "starts afresh" not in same.stderr and "best real valid SDR" in same.stderr

    # dropped on a resume with nothing left to train, the best is still reset the next
    # time (the state records what its best was scored on), and said so each time
    dropped = ["--resume", "--set", "run.real_valid="]
    nothing = train("--root", tree, "--out", tmp_path / "plain", "--device", "cpu", *dropped,
                    "--max-steps", "4")  # fmt: skip
    assert nothing.exit_code == 0 and "nothing to train" in nothing.stderr
    again = train("--root", tree, "--out", tmp_path / "plain", "--device", "cpu", *dropped,
                  "--max-steps", "6")  # fmt: skip
    assert again.exit_code == 0, again.output
    reset = "best.safetensors now follows the SDR on the valid split (the earlier best,"
    assert reset in again.stderr and f"was scored on {real.resolve()}) and starts" in again.stderr
    assert "best valid SDR" in again.stderr
    best = load_checkpoint(tmp_path / "plain" / "best.safetensors")
    assert "real_valid_sdr" not in best.provenance["validation"]  # chosen on the valid split


def test_a_relative_real_valid_folder_is_kept_resolved(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--set run.real_valid=realval`` (or a config file's) names the folder from where the
    run was started; the run folder keeps it absolute, so a resume from elsewhere, or with
    ``--real-valid`` on the same folder, is the same set."""
    real = tmp_path / "realval"
    make_piece(real, 1, ("vn", "cl"), seed=11)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    first = train("--root", tree, "--out", run, "--device", "cpu", "--max-steps", "3", *SETS,
                  "--set", "run.real_valid=realval")  # fmt: skip
    assert first.exit_code == 0, first.output
    assert f'real_valid = "{real.resolve()}"' in (run / "config.toml").read_text()
    monkeypatch.chdir(tree)
    resumed = train("--root", tree, "--out", run, "--device", "cpu", "--resume",
                    "--max-steps", "6", "--real-valid", real)  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert "--resume:" not in resumed.stderr  # nothing changed


def test_a_missing_real_valid_folder_is_one_line_before_anything_is_written(
    tree: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    result = train("--root", tree, "--out", tmp_path / "run", "--device", "cpu",
                   "--real-valid", missing, *SETS)  # fmt: skip
    assert result.exit_code != 0
    assert result.stderr == (
        f"error: run.real_valid: dataset root is not a directory: {missing} (give a URMP-layout "
        "folder of real recordings with --real-valid DIR, or drop it with --set "
        "run.real_valid=)\n"
    )
    assert not (tmp_path / "run").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = train("--root", tree, "--out", tmp_path / "run", "--device", "cpu",
                   "--real-valid", empty, *SETS)  # fmt: skip
    assert result.exit_code != 0 and "run.real_valid: no URMP piece folders" in result.stderr
    assert not (tmp_path / "run").exists()


def test_dataset_option_is_checked_against_the_tree(tree: Path, tmp_path: Path) -> None:
    from test_cli import assert_clean_failure

    run = tmp_path / "synth"
    result = train("--dataset", "synth", "--root", tree, "--out", run, "--device", "cpu",
                   "--max-steps", "1", *SETS)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--dataset synth: no vimss_synth.json in" in (run / "log.jsonl").read_text()
    assert load_checkpoint(run / "last.safetensors").provenance["dataset"] == "synth"
    plain = train("--root", tree, "--out", tmp_path / "plain", "--device", "cpu", "--max-steps",
                  "1", *SETS)  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert "vimss_synth.json" not in (tmp_path / "plain" / "log.jsonl").read_text()

    for split in ("train", "valid"):  # now it is a generated tree: not real URMP recordings
        (tree / split / "vimss_synth.json").write_text('{"settings": {}}')
    out = tmp_path / "urmp"
    result = train("--dataset", "urmp", "--root", tree, "--out", out, "--device", "cpu", *SETS)
    assert_clean_failure(result, f"--dataset urmp: {tree / 'train'} was made by `vimss data synth`")
    assert not out.exists()
    result = train("--dataset", "musdb", "--root", tree, "--out", out, *SETS)
    assert_clean_failure(result, "unknown --dataset 'musdb'; choose one of urmp, synth")
    assert not out.exists()


def test_divergence_is_its_own_error(tree: Path, tmp_path: Path) -> None:
    from test_cli import assert_clean_failure
    from vimss_cli.errors import TrainingDivergedError

    out = tmp_path / "run"
    result = train("--root", tree, "--out", out, "--device", "cpu", *SETS,
                   "--set", "optim.lr=1e30", "--set", "optim.warmup_steps=0",
                   "--set", 'model.output_activation="identity"')  # fmt: skip
    assert_clean_failure(result, "training diverged at step ", "(loss nan)")
    assert result.exit_code == TrainingDivergedError.exit_code == 4
    assert "nothing was saved yet: lower optim.lr" in result.stderr
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    (logged,) = [r for r in log if "error" in r]
    assert result.stderr == f"error: {logged['error']}\n"
    assert logged["error"].startswith(f"training diverged at step {logged['step']} (loss nan)")
    assert not any(r.get("step", 0) > logged["step"] for r in log)  # it stopped there
    # the advice can be followed in the same folder (found by a review: a run that stopped
    # before its first checkpoint left config.toml and its log, and the same command was
    # then refused as "not empty")
    again = train("--root", tree, "--out", out, "--device", "cpu", *SETS, "--max-steps", "1")
    assert again.exit_code == 0, again.output
    assert "starting afresh in" in again.stderr and "stopped before its first" in again.stderr
    assert "training diverged" in (out / "log.jsonl").read_text()  # the log is kept


def test_a_run_that_diverges_after_a_checkpoint_keeps_its_folder_and_logs_the_error(
    tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    identity = ("--set", 'model.output_activation="identity"')
    assert train("--root", tree, "--out", out, "--device", "cpu", *SETS, *identity,
                 "--max-steps", "2").exit_code == 0  # fmt: skip
    result = train("--root", tree, "--out", out, "--device", "cpu", "--resume",
                   "--max-steps", "4", "--set", "optim.lr=1e30", *identity)  # fmt: skip
    assert result.exit_code == 4, result.output
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    (logged,) = [r for r in log if "error" in r]
    assert result.stderr.endswith(f"error: {logged['error']}\n")
    assert logged["error"].startswith(f"training diverged at step {logged['step']} (loss nan)")
    assert "lower optim.lr (or optim.grad_clip) and continue with --resume" in logged["error"]


def test_resume_from_a_foreign_state_file_is_one_line(tree: Path, tmp_path: Path) -> None:
    from test_cli import assert_clean_failure

    run, other = tmp_path / "run", tmp_path / "other"
    ok = train("--root", tree, "--out", run, "--device", "cpu", "--max-steps", "2", *SETS)
    assert ok.exit_code == 0, ok.output
    wider = train("--root", tree, "--out", other, "--device", "cpu", "--max-steps", "2", *SETS,
                  "--set", "model.base_features=5")  # fmt: skip
    assert wider.exit_code == 0, wider.output
    state = run / "state.safetensors"
    resume = ("--root", tree, "--out", run, "--device", "cpu", "--resume", *SETS)
    for source, fragments in (
        (run / "last.safetensors", ["is not a training state", "no optimiser state"]),
        (other / "state.safetensors", ["is not a training state of this model", "shape"]),
    ):
        state.write_bytes(source.read_bytes())
        assert_clean_failure(train(*resume), f"{state}", *fragments)
    state.write_bytes(b"not safetensors")
    assert_clean_failure(train(*resume), f"cannot read training state {state}")


def test_resume_on_another_data_folder_is_told(tree: Path, tmp_path: Path) -> None:
    """Found by a review: --resume with another --root switched the data without a word."""
    import shutil

    out = tmp_path / "run"
    assert train("--root", tree, "--out", out, "--device", "cpu", *SETS,
                 "--max-steps", "1").exit_code == 0  # fmt: skip
    same = train("--root", tree, "--out", out, "--device", "cpu", "--resume", "--max-steps", "2")
    assert same.exit_code == 0 and "trained on" not in same.stderr, same.output
    other = tmp_path / "other"
    shutil.copytree(tree, other)
    moved = train("--root", other, "--out", out, "--device", "cpu", "--resume", "--max-steps", "3")
    assert moved.exit_code == 0, moved.output
    told = f"--resume: the run trained on {tree.resolve()}, now on {other.resolve()}"
    assert told in moved.stderr
    assert told in (out / "log.jsonl").read_text()


def test_only_a_run_that_stopped_before_its_first_state_is_started_afresh(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vimss_cli.training.trainer import Trainer

    def no_memory(self: object, batch: object) -> None:
        raise MemoryError("Unable to allocate 136. GiB")

    monkeypatch.setattr(Trainer, "step", no_memory)
    out = tmp_path / "run"
    failed = train("--root", tree, "--out", out, "--device", "cpu", *SETS, "--max-steps", "2")
    assert failed.exit_code == 1 and "out of memory" in failed.stderr, failed.output
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "log.jsonl", "tensorboard"]
    monkeypatch.undo()
    (out / "notes.txt").write_text("mine\n")  # a file of the user's: no such folder any more
    refused = train("--root", tree, "--out", out, "--device", "cpu", *SETS, "--max-steps", "1")
    assert refused.exit_code == 2 and "is not empty and holds no run" in refused.stderr
    (out / "notes.txt").unlink()
    again = train("--root", tree, "--out", out, "--device", "cpu", *SETS, "--max-steps", "1")
    assert again.exit_code == 0, again.output
    assert "starting afresh in" in again.stderr


def test_corrupt_audio_in_the_dataset_is_skipped_and_counted(tree: Path, tmp_path: Path) -> None:
    bad = next((tree / "train").glob("02_*")) / "AuSep_2_cl_02_Piece2.wav"
    bad.write_bytes(bad.read_bytes()[:100])
    result = train(
        "--root",
        tree,
        "--out",
        tmp_path / "r",
        "--device",
        "cpu",
        "--max-steps",
        "2",
        "--json",
        *SETS,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped_files"] == [str(bad)]
    log = (tmp_path / "r" / "log.jsonl").read_text()
    assert "skipping piece 02_Piece2_fl_cl_bn" in log


def test_stems_of_different_lengths_are_padded_with_a_warning(tree: Path) -> None:
    """Found by a review: a stem half as long as its piece's others was padded silently."""
    piece = tree / "train" / "01_Piece1_vn_vc"
    stem = piece / "AuSep_2_vc_01_Piece1.wav"
    audio = soundfile.read(stem, dtype="float32")[0]
    write_wav(stem, audio[: audio.size // 2])
    told: list[str] = []
    pieces, skipped = load_pieces(tree / "train", RATE, told.append)
    assert not skipped and len(pieces) == 3
    assert told == [
        "the stems of piece 01_Piece1_vn_vc differ in length (0.75 to 1.50 s): the shorter "
        "are padded with silence"
    ]
    load_pieces(tree / "valid", RATE, told.append)
    assert len(told) == 1  # pieces whose stems agree are not warned of
    # a stereo stem whose channels cancel is silent in mono (found by a review)
    cancelled = np.stack([audio, -audio], axis=1)
    soundfile.write(stem, cancelled, RATE, subtype="FLOAT")
    told.clear()
    load_pieces(tree / "train", RATE, told.append)
    assert told == [
        "AuSep_2_vc_01_Piece1.wav of piece 01_Piece1_vn_vc is silent (a stereo file whose "
        "channels cancel is silent in mono too): its player is learnt as absent"
    ]


def test_excerpts_longer_than_every_piece_are_warned_of(tree: Path, tmp_path: Path) -> None:
    """Found by a review: 5 s excerpts of 1.5 s pieces trained on silence without a word."""
    long = train("--root", tree, "--out", tmp_path / "long", "--device", "cpu", *SETS,
                 "--max-steps", "1", "--set", "data.output_samples=40000")  # fmt: skip
    assert long.exit_code == 0, long.output
    assert "longer than every training piece (at most 1.50 s)" in long.stderr
    with pytest.raises(InputError, match=r"data\.output_samples must be at most 4194304"):
        build_config(None, ["data.output_samples=100000000"])


def test_two_process_ddp_on_cpu_keeps_replicas_identical(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",  # the launcher takes a free port itself: no race for one
        "-m",
        "vimss_cli",
        "train",
        "--root",
        str(tree),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--max-steps",
        "4",
        "--json",
        *SETS,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # one summary, rank 0's (found by a review: rank 1 printed its own, "best_valid_sdr": null)
    (summary,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert summary["best_valid_sdr"] is not None
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    (digests,) = [r["replica_weights_sha256"] for r in log if "replica_weights_sha256" in r]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "best.safetensors",
        "last.safetensors",
        "state.safetensors",
    ]
    assert not list(out.glob(".*partial*"))


def test_visual_features_are_cached_once_and_feed_video_queries(tmp_path: Path) -> None:
    """A model taking appearance and motion trains on per-player features from Vid_*.mp4."""
    from scenes import compose_scene
    from vimss_cli.training.data import ExcerptDataset, ExcerptShape
    from vimss_cli.urmp import list_pieces

    root = tmp_path / "data"
    for number, codes, folder in ((1, ("vn", "vn"), "train"), (2, ("tpt", "bn"), "train"),
                                  (3, ("vc", "vn"), "valid")):  # fmt: skip
        piece = make_piece(root / folder, number, codes, seconds=3.0, seed=number)
        name = list_pieces(root / folder)[-1 if folder == "train" else 0].name
        active = [[(0.0, 1.5)], [(1.5, 3.0)]]  # player 1 moves first, then player 2
        compose_scene(piece / name.video_name(), list(codes), seconds=3.0, active=active,
                      seed=number)  # fmt: skip
    visual = ["--set", "model.appearance_dim=1280", "--set", "model.motion_channels=2"]
    out = tmp_path / "run"
    result = train("--root", root, "--out", out, "--device", "cpu", "--max-steps", "2",
                   "--json", *SETS, *visual)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped_files"] == []
    cached = sorted(p.name for p in (out / "visual_cache").rglob("*.npz"))
    assert cached == ["01_Piece1_vn_vn.npz", "02_Piece2_tpt_bn.npz", "03_Piece3_vc_vn.npz"]
    stamps = [p.stat().st_mtime_ns for p in sorted((out / "visual_cache").rglob("*.npz"))]
    again = train("--root", root, "--out", out, "--device", "cpu", "--resume", "--max-steps",
                  "3", *SETS, *visual)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert stamps == [p.stat().st_mtime_ns for p in sorted((out / "visual_cache").rglob("*.npz"))]

    # multiscale motion features train too, and are cached under their own key
    multi = ["--set", "model.motion_features=multiscale", "--set", "model.motion_channels=3"]
    again = train("--root", root, "--out", tmp_path / "multi", "--device", "cpu", "--max-steps",
                  "1", *SETS, "--set", "model.appearance_dim=1280", *multi)  # fmt: skip
    assert again.exit_code == 0, again.output
    pieces, _ = load_pieces(root / "train", RATE, None, 3, tmp_path / "multi" / "visual_cache" /
                            "train", "multiscale")  # fmt: skip
    assert pieces[0].visuals is not None and pieces[0].visuals.motion.shape[1] == 3

    # the two violins of piece 1 keep separate targets, each with its own motion
    pieces, _ = load_pieces(root / "train", RATE, None, 2, out / "visual_cache" / "train")
    violins = next(p for p in pieces if p.name.startswith("01_"))
    assert violins.visuals is not None and violins.visuals.motion.shape[:2] == (2, 2)
    config = build_config(None, [*TINY, "data.queries_per_mixture=2"])
    dataset = ExcerptDataset([violins], ExcerptShape(400, 256, 72), config.data, seed=0,
                             augment=False, appearance_dim=1280, motion_channels=2,
                             sample_rate=RATE)  # fmt: skip
    item = next(dataset[i] for i in range(50) if (dataset[i]["targets"].abs().sum(-1) > 0).all())
    assert item["labels"].tolist() == [0, 0]
    assert item["appearance"].shape == (2, 1280) and item["motion"].shape == (2, 2, 400)
    assert not torch.equal(item["targets"][0], item["targets"][1])
    assert not torch.equal(item["motion"][0], item["motion"][1])


def test_warm_start_from_a_label_model_computes_what_it_computes(
    tree: Path, tmp_path: Path
) -> None:
    from vimss_cli.api import Separator
    from vimss_cli.checkpoint import save_checkpoint
    from vimss_cli.conditioning import Query
    from vimss_cli.model import WaveUNet
    from vimss_cli.training.warm_start import warm_start

    label_config = build_config(None, TINY).model
    torch.manual_seed(1)
    label_model = WaveUNet(label_config)
    for parameter in label_model.parameters():  # non-trivial FiLM weights too
        parameter.data.normal_(0, 0.1)
    source = tmp_path / "label.safetensors"
    save_checkpoint(source, label_model, {"trained": True})
    visual = ["model.appearance_dim=1280", "model.motion_channels=2"]
    video_model = WaveUNet(build_config(None, [*TINY, *visual]).model)
    info = warm_start(video_model, str(source))
    assert "query_encoder.appearance_projection.weight" in info["zeroed"]
    assert any(name.endswith("dynamic.weight") for name in info["zeroed"])
    video_path = tmp_path / "video.safetensors"
    save_checkpoint(video_path, video_model, {"trained": True})

    rng = np.random.default_rng(0)
    mixture = (0.3 * rng.standard_normal(3000)).astype(np.float32)
    motion = rng.random((2, 40)).astype(np.float32)
    looks = [Query("vn", rng.random(1280).astype(np.float32), motion, 20.0), Query("vc")]
    plain = Separator(str(source), device="cpu").separate_array(mixture, [Query("vn"), Query("vc")])
    warmed = Separator(str(video_path), device="cpu").separate_array(mixture, looks)
    np.testing.assert_allclose(warmed, plain, atol=1e-6)

    # through the CLI: a run starts from it, and a checkpoint that does not fit is refused
    result = train("--root", tree, "--out", tmp_path / "run", "--device", "cpu", "--max-steps",
                   "1", "--init-from", source, *SETS)  # fmt: skip
    assert result.exit_code == 0, result.output
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().split("\n")
              if "initialised_from" in line]  # fmt: skip
    assert logged[0]["initialised_from"]["reference"] == str(source)
    assert logged[0]["initialised_from"]["zeroed"] == []
    wider = train("--root", tree, "--out", tmp_path / "run2", "--device", "cpu", "--max-steps",
                  "1", "--init-from", source, *SETS, "--set", "model.base_features=6")  # fmt: skip
    assert wider.exit_code != 0
    assert "cannot initialise from" in wider.output and "Traceback" not in wider.output
    assert not (tmp_path / "run2").exists()
    # a checkpoint that is not there is told before the data is even looked at
    missing = train("--root", tmp_path / "no-data", "--out", tmp_path / "run3", "--device",
                    "cpu", "--init-from", tmp_path / "nope.safetensors", *SETS)  # fmt: skip
    assert missing.exit_code != 0 and "nope.safetensors" in missing.stderr
    assert "no-data" not in missing.stderr and not (tmp_path / "run3").exists()


def test_warm_start_from_another_network_names_the_settings_that_differ(tmp_path: Path) -> None:
    """Found by a new user's trial: another architecture's weights said only 'the model has
    no down_convs.7.weight'."""
    from vimss_cli.checkpoint import save_checkpoint
    from vimss_cli.model import WaveUNet
    from vimss_cli.training.warm_start import warm_start

    source = tmp_path / "deeper.safetensors"
    save_checkpoint(source, WaveUNet(build_config(None, [*TINY, "model.levels=4"]).model), {})
    model = WaveUNet(build_config(None, TINY).model)
    with pytest.raises(CheckpointError) as caught:
        warm_start(model, str(source))
    assert str(caught.value) == (
        f"cannot initialise from {source}: these weights are of another network (they have "
        "model.levels=4; the config has model.levels=3): set the config to match, or give a "
        "checkpoint of this network"
    )


def test_start_up_progress_on_a_terminal_only(tree: Path, tmp_path: Path) -> None:
    from conftest import SPINNER_START, TERMINAL_ENV

    args = ["train", "--root", str(tree), "--device", "cpu", "--max-steps", "1", *SETS]
    shown = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")], env=TERMINAL_ENV)
    assert shown.exit_code == 0, shown.output
    assert SPINNER_START in shown.stderr
    for phase in (
        "reading the train data: piece 1/3, 01_Piece1_vn_vc...",
        "reading the train data: piece 3/3, 03_Piece3_vn_vn...",
        "reading the valid data: piece 1/1, 04_Piece4_tpt_tbn...",
        "building the model...",
        "starting the first steps...",
    ):
        assert phase in shown.stderr, phase
    assert shown.stderr.index("building the model") < shown.stderr.index("step 1/1")
    hidden_cases = (([], {}), (["--json"], TERMINAL_ENV), (["--quiet"], TERMINAL_ENV))
    for number, (extra, env) in enumerate(hidden_cases):
        out = tmp_path / f"run{number}"
        hidden = CliRunner().invoke(app, [*args, "--out", str(out), *extra], env=env)
        assert hidden.exit_code == 0, hidden.output
        assert SPINNER_START not in hidden.stderr and "reading the" not in hidden.stderr, extra


def test_warm_start_keeps_a_motion_encoder_random_and_computes_what_the_label_model_does(
    tmp_path: Path,
) -> None:
    """The encoder feeds FiLM's zeroed motion convolution: random, so it can learn, and the
    warmed model still separates as the label model does at step 0."""
    from vimss_cli.api import Separator
    from vimss_cli.checkpoint import save_checkpoint
    from vimss_cli.conditioning import Query
    from vimss_cli.model import WaveUNet
    from vimss_cli.training.warm_start import warm_start

    torch.manual_seed(2)
    label_model = WaveUNet(build_config(None, TINY).model)
    source = tmp_path / "label.safetensors"
    save_checkpoint(source, label_model, {"trained": True})
    encoder = ["model.motion_channels=2", "model.motion_encoder_channels=3"]
    video_model = WaveUNet(build_config(None, [*TINY, *encoder]).model)
    info = warm_start(video_model, str(source))
    assert not any(name.startswith("motion_encoder.") for name in info["zeroed"])
    assert any(name.endswith("dynamic.weight") for name in info["zeroed"])
    assert video_model.motion_encoder is not None
    assert video_model.motion_encoder.project.weight.abs().sum() > 0
    video_path = tmp_path / "video.safetensors"
    save_checkpoint(video_path, video_model, {"trained": True})
    rng = np.random.default_rng(0)
    mixture = (0.3 * rng.standard_normal(3000)).astype(np.float32)
    looks = [Query("vn", motion=rng.random((2, 40)), motion_rate=20.0), Query("vc")]
    plain = Separator(str(source), device="cpu").separate_array(mixture, [Query("vn"), Query("vc")])
    warmed = Separator(str(video_path), device="cpu").separate_array(mixture, looks)
    np.testing.assert_allclose(warmed, plain, atol=1e-6)


def test_excerpts_for_a_motion_encoder_carry_frames_on_its_clock() -> None:
    from vimss_cli.model import WaveUNet
    from vimss_cli.training.data import PieceAudio

    rng = np.random.default_rng(0)
    stems = (0.3 * rng.standard_normal((2, 4 * RATE))).astype(np.float32)
    visuals = PlayerVisuals(np.zeros((2, 0), np.float32), rng.random((2, 2, 120)), 30.0)
    violins = PieceAudio("01_Piece1_vn_vn", ("vn", "vn"), stems, visuals)

    model_config = build_config(
        None, [*TINY, "model.motion_channels=2", "model.motion_encoder_channels=3"]
    ).model
    shape = ExcerptShape(400, 256, 72)
    config = build_config(None, [*TINY, "data.queries_per_mixture=2"])
    window = (model_config.motion_rate, 31, WaveUNet(model_config).motion_frames_for(400))
    dataset = ExcerptDataset([violins], shape, config.data, seed=0, augment=False,
                             motion_channels=2, sample_rate=RATE,
                             motion_window=window)  # fmt: skip
    item = next(dataset[i] for i in range(50) if (dataset[i]["targets"].abs().sum(-1) > 0).all())
    assert "motion" not in item
    assert item["motion_frames"].shape == (2, 2, window[2])
    assert item["motion_offset"].shape == (2,) and item["motion_offset"].dtype == torch.float64
    assert ((item["motion_offset"] >= 0) & (item["motion_offset"] < 1)).all()
    assert not torch.equal(item["motion_frames"][0], item["motion_frames"][1])


@pytest.mark.parametrize(("label_only", "expected"), [(0.0, [True, True]), (1.0, [False])])
def test_excerpts_say_which_queries_have_motion(label_only: float, expected: list[bool]) -> None:
    """A queried player has motion; a label-only excerpt's summed query has none (a model
    with ``motion_bypass`` then skips its encoder)."""
    from vimss_cli.model import WaveUNet
    from vimss_cli.training.data import PieceAudio

    rng = np.random.default_rng(0)
    stems = (0.3 * rng.standard_normal((2, 4 * RATE))).astype(np.float32)
    visuals = PlayerVisuals(np.zeros((2, 0), np.float32), rng.random((2, 2, 120)), 30.0)
    violins = PieceAudio("01_Piece1_vn_vn", ("vn", "vn"), stems, visuals)
    overrides = [*TINY, "model.motion_channels=2", "model.motion_encoder_channels=3"]
    model_config = build_config(None, overrides).model
    config = build_config(
        None,
        [*TINY, "data.queries_per_mixture=2", "data.same_instrument_probability=0",
         "data.absent_query_probability=0", "data.drop_player_probability=0",
         f"data.label_query_probability={label_only}"],
    )  # fmt: skip
    shape = ExcerptShape(400, 256, 72)
    window = (model_config.motion_rate, 31, WaveUNet(model_config).motion_frames_for(400))
    dataset = ExcerptDataset([violins], shape, config.data, seed=0, augment=True,
                             motion_channels=2, sample_rate=RATE,
                             motion_window=window)  # fmt: skip
    for index in range(5):
        item = dataset[index]
        present = item["motion_present"].tolist()
        assert present[: len(expected)] == expected
        assert not any(present[len(expected) :])  # padding queries of absent instruments


def test_the_motion_path_learns_at_its_own_rate() -> None:
    from vimss_cli.model import WaveUNet
    from vimss_cli.training.trainer import parameter_groups

    config = build_config(
        None, [*TINY, "model.motion_channels=2", "model.motion_encoder_channels=3"]
    ).model
    model = WaveUNet(config)
    network, motion = parameter_groups(model, 20.0)
    assert network["lr_scale"] == 1.0 and motion["lr_scale"] == 20.0
    motion_ids = {id(p) for p in motion["params"]}
    assert model.motion_encoder is not None
    assert {id(p) for p in model.motion_encoder.parameters()} <= motion_ids
    assert id(model.films["down0"].dynamic.weight) in motion_ids
    assert id(model.films["down0"].static.weight) not in motion_ids
    assert len(network["params"]) + len(motion_ids) == len(list(model.parameters()))
    assert len(parameter_groups(WaveUNet(build_config(None, TINY).model), 20.0)) == 1


def test_the_activity_loss_scores_each_frames_level() -> None:
    """A stem that plays at half the mixture's amplitude, then rests: the true levels (-0.6
    bel, then the -3 floor) score zero loss and all right; frames outside the output span and
    queries not scored do not count."""
    from vimss_cli.training.losses import activity_loss

    length = 4000  # output span; 400-sample frames centred every 400 samples from sample 200
    stem = np.zeros((1, length), np.float32)
    stem[0, :2000] = 0.3 * np.sign(np.sin(np.arange(2000) * 0.3))  # sounds in its first half
    mixture = torch.full((1, length), 0.6)  # a constant mixture: its power is 0.36
    targets = torch.from_numpy(stem)
    first_output = 100
    positions = torch.arange(12, dtype=torch.float64).reshape(1, -1) * 400 + 200 + first_output
    # frames 0-4 sound at a quarter of the mixture's power, 5-9 rest, 10-11 fall outside
    truth = torch.tensor([[np.log10(0.25)] * 5 + [-3.0] * 7])
    scored = torch.tensor([True])
    loss, accuracy = activity_loss(truth, positions, targets, mixture, first_output, 400, scored)
    assert loss.item() < 1e-6 and accuracy.item() == 1.0
    swapped = truth[:, [5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 10, 11]]  # rests where it plays
    wrong_loss, wrong = activity_loss(
        swapped, positions, targets, mixture, first_output, 400, scored
    )
    assert wrong.item() == 0.0 and wrong_loss.item() > 1.5
    outside = truth.clone()
    outside[0, 10:] = 5.0  # wrong only where nothing is scored
    assert activity_loss(outside, positions, targets, mixture, first_output, 400, scored)[1] == 1.0
    none = activity_loss(-truth, positions, targets, mixture, first_output, 400, ~scored)
    assert none[0].item() == 0.0 and none[1].item() == 0.0


def _turn_taking_trainer(tmp_path: Path, *overrides: str) -> tuple[Any, dict]:
    """A trainer for a tiny pose model with an activity head, and one batch of two violinists
    who take turns, a second each, their motion being their own envelope."""
    from torch.utils.data import default_collate

    from vimss_cli.training.data import PieceAudio
    from vimss_cli.training.distributed import Distributed
    from vimss_cli.training.run_folder import RunLog
    from vimss_cli.training.trainer import Trainer

    rng = np.random.default_rng(0)
    seconds = 4
    stems = (0.3 * rng.standard_normal((2, seconds * RATE))).astype(np.float32)
    frames = np.zeros((2, 2, 40), np.float32)  # 10 motion frames per second
    for player in range(2):  # they take turns, a second each: half the frames sound
        plays = np.repeat((np.arange(seconds) + player) % 2 == 0, 10)
        stems[player] *= np.repeat(plays, RATE // 10)
        frames[player, 0] = plays
    visuals = PlayerVisuals(np.zeros((2, 0), np.float32), frames, 10.0)
    pieces = [PieceAudio("01_Piece1_vn_vn", ("vn", "vn"), stems, visuals)]
    settings = [
        *TINY, "model.motion_channels=2", "model.motion_encoder_channels=3",
        "model.motion_encoder_layers=1", "model.motion_activity_head=true",
        "model.motion_bypass=true", "optim.activity_weight=1", "optim.lr=0.01",
        "optim.warmup_steps=0", "optim.motion_lr_scale=10", "data.same_instrument_probability=1",
        "data.output_samples=2048", *overrides,
    ]  # fmt: skip
    config = build_config(None, settings)
    trainer = Trainer.build(
        config, device=torch.device("cpu"), dist_info=Distributed(), run_dir=tmp_path,
        resume=False, log=RunLog(tmp_path, enabled=False),
    )  # fmt: skip
    model = trainer.model
    window = (config.model.motion_rate, 1, model.motion_frames_for(trainer.shape.input_length))
    dataset = ExcerptDataset(pieces, trainer.shape, config.data, seed=0, augment=True,
                             motion_channels=2, sample_rate=RATE,
                             motion_window=window)  # fmt: skip
    return trainer, default_collate([dataset[i] for i in range(8)])


def test_the_activity_head_learns_who_plays_from_motion(tmp_path: Path) -> None:
    """A model with an activity head and ``optim.activity_weight``: each step logs the
    activity loss, and a few steps on one batch teach the head (from the players' motion,
    which here is their own envelope) which frames sound. Its frames lie where the motion
    encoder's per-sample interpolation puts them."""
    trainer, batch = _turn_taking_trainer(tmp_path)
    model = trainer.model
    first = trainer.step(batch)
    assert first.activity is not None
    for _ in range(80):
        last = trainer.step(batch)
    assert last.activity is not None
    assert first.activity[1].item() < 0.8  # no constant answer gets far: half of them sound
    assert last.activity[0].item() < 0.5 * first.activity[0].item()
    assert last.activity[1].item() > 0.9  # frames that straddle a turn are ambiguous

    # the head's frame positions match the per-sample interpolation of the encoder's frames
    from vimss_cli.training.trainer import batch_queries

    queries = batch_queries(batch, torch.device("cpu"))
    mixture = batch["mixture"]
    with torch.no_grad():
        levels, positions = model.motion_activity(mixture, queries)
        per_sample = model._encoded_motion(queries, 8, mixture.shape[-1], mixture)
        assert model.activity_head is not None
        from_samples = model.activity_head(per_sample).squeeze(1)  # (W*K, T_in)
    inside = (positions >= 0) & (positions <= mixture.shape[-1] - 1)
    nearest = positions.round().long().clamp(0, mixture.shape[-1] - 1)
    picked = from_samples.gather(1, nearest)
    assert inside.sum() > 16
    assert torch.allclose(picked[inside], levels[inside], atol=0.05)


def test_a_frozen_network_leaves_all_but_the_motion_path_as_it_was(tmp_path: Path) -> None:
    """``optim.network_lr_scale = 0``: steps move the motion path only (with the bypass, label
    queries then separate exactly as the warm start did)."""
    trainer, batch = _turn_taking_trainer(tmp_path, "optim.network_lr_scale=0")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    for _ in range(3):
        trainer.step(batch)
    from vimss_cli.training.trainer import is_motion_path

    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(is_motion_path(name) for name in moved)
    assert "activity_head.weight" in moved and "motion_encoder.project.weight" in moved
    with pytest.raises(InputError, match="nothing would learn"):
        build_config(None, ["optim.network_lr_scale=0"])


def test_the_activity_loss_needs_the_head() -> None:
    needs_head = r"optim\.activity_weight needs model\.motion_activity_head"
    with pytest.raises(InputError, match=needs_head):
        build_config(None, ["model.motion_channels=2", "optim.activity_weight=1"])
    with pytest.raises(InputError, match="motion_activity_head needs a motion encoder"):
        build_config(None, ["model.motion_channels=2", "model.motion_activity_head=true"])


def test_the_closing_line_says_what_the_run_did(tmp_path: Path) -> None:
    from vimss_cli.cli.train import summary_line
    from vimss_cli.training.loop import TrainReport

    def report(speed: float, best: float | None) -> TrainReport:
        return TrainReport(tmp_path, 7, 1.0, speed, speed, best, [])

    assert summary_line(report(12.34, 3.456)) == (
        "stopped at step 7: 12.3 examples/s; best valid SDR 3.46 dB"
    )
    assert summary_line(report(0.0, None)) == (
        "already at step 7: nothing to train (raise --max-steps to go on); no validation score "
        "yet (none taken, or no valid/ split)"
    )
    # found by a review: a schedule fitted to a deadline ends where it ends; --max-steps
    # cannot extend it, a new run from the weights can
    ended = TrainReport(tmp_path, 7, 1.0, 0.0, 0.0, 2.0, [], schedule_over=True)
    assert summary_line(ended).startswith(
        "already at step 7, where its schedule fitted to the deadline ends: nothing to train (to "
        f"go on, start a new run with --init-from {tmp_path / 'last.safetensors'})"
    )


def test_resume_without_the_config_names_it(tmp_path: Path) -> None:
    """Found by a review: the GPU run's files copied back without config.toml were "no run to
    resume"; the missing file is now named."""
    from vimss_cli.errors import InputError
    from vimss_cli.training.run_folder import check_run_dir

    config = build_config(None, TINY)
    with pytest.raises(InputError, match="no run to resume"):
        check_run_dir(tmp_path, config, resume=True)
    (tmp_path / "state.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match=r"has no config\.toml; a run is resumed from its"):
        check_run_dir(tmp_path, config, resume=True)
