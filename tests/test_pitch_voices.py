"""Two players of one instrument split by pitch (vimss_cli.pitch_voices): the split itself,
its streaming, the stage that puts voices into the players' slots, and a label model's
separation through the library and the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner, Result

from conftest import RATE, TINY_CONFIG, write_wav
from vimss_cli.api import Separator
from vimss_cli.cli import app
from vimss_cli.conditioning import Query
from vimss_cli.errors import InputError
from vimss_cli.eval import metrics
from vimss_cli.pitch_voices import (
    VOICE_LEAK,
    PitchVoiceSplitter,
    VoiceSplitStage,
    _LineTracker,
    frame_length,
    pitch_pairs,
    split_voices,
)

SPLIT_RATE = 22050
LABELS = dataclasses.replace(TINY_CONFIG, sample_rate=SPLIT_RATE)  # a label-only model
VOICES = dataclasses.replace(LABELS, voices=2)  # one that tells voices apart itself
VISUAL = dataclasses.replace(LABELS, appearance_dim=1280, motion_channels=2)


def bowed(pitch: float, seconds: float, rate: int = SPLIT_RATE, start: float = 0.0) -> np.ndarray:
    """A string-like tone: ten harmonics falling as 1/h, sounding from ``start`` on."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * h * pitch * t + h) / h for h in range(1, 11))
    return (0.1 * tone * (t >= start)).astype(np.float64)


def separate(*args: object) -> Result:
    """``vimss separate ARGS...`` through Typer's runner."""
    return CliRunner().invoke(app, ["separate", *(str(a) for a in args)])


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR (dB) of one ``(n,)`` estimate (the project's metric)."""
    return float(metrics.si_sdr(reference[None], estimate[None])[0])


def test_two_tones_go_to_their_voices_and_sum_to_the_stem() -> None:
    upper, lower = bowed(622.25, 2.0), bowed(440.0, 2.0)  # D sharp 5 over A4
    voices = split_voices(upper + lower, "vn", SPLIT_RATE, leak=0.0)
    assert voices.shape == (2, upper.size) and voices.dtype == np.float32
    np.testing.assert_allclose(voices.sum(axis=0), upper + lower, atol=1e-5)
    body = slice(SPLIT_RATE // 4, -SPLIT_RATE // 4)  # away from the ends' half frames
    assert si_sdr(voices[0, body], upper[body]) > 15.0
    assert si_sdr(voices[1, body], lower[body]) > 15.0
    # the same tones the other way round: the higher one is still voice 1
    swapped = split_voices(lower + upper, "vn", SPLIT_RATE, leak=0.0)
    np.testing.assert_allclose(swapped, voices, atol=1e-5)


def test_each_voice_keeps_its_leak_of_the_other() -> None:
    """The shipped split is the full one hedged: each voice keeps ``VOICE_LEAK`` of what the
    masks give the other, and the two still sum to the stem."""
    stem = bowed(622.25, 2.0) + bowed(440.0, 2.0, start=0.5)
    full = split_voices(stem, "vn", SPLIT_RATE, leak=0.0).astype(np.float64)
    hedged = split_voices(stem, "vn", SPLIT_RATE).astype(np.float64)
    assert 0.0 < VOICE_LEAK < 0.5
    expected = (1.0 - VOICE_LEAK) * full + VOICE_LEAK * full[::-1]
    np.testing.assert_allclose(hedged, expected, atol=1e-5)
    np.testing.assert_allclose(hedged.sum(axis=0), stem, atol=1e-5)
    for wrong in (-0.1, 0.6):  # a leak past a half would swap the voices
        with pytest.raises(ValueError, match="leak must lie in"):
            split_voices(stem, "vn", SPLIT_RATE, leak=wrong)


def test_a_lone_tone_is_one_voice_until_the_other_enters() -> None:
    """The upper player plays alone for a second: its voice holds all of the stem; then the
    lower one enters and each voice follows its own player."""
    upper, lower = bowed(622.25, 2.0), bowed(440.0, 2.0, start=1.0)
    voices = split_voices(upper + lower, "vn", SPLIT_RATE, leak=0.0)
    alone = slice(SPLIT_RATE // 4, int(0.8 * SPLIT_RATE))
    assert np.abs(voices[1, alone]).max() < 0.01 * np.abs(voices[0, alone]).max()
    later = slice(int(1.3 * SPLIT_RATE), -SPLIT_RATE // 4)
    assert si_sdr(voices[0, later], upper[later]) > 12.0
    assert si_sdr(voices[1, later], lower[later]) > 12.0
    # an octave hides the upper tone in the lower one's harmonics: a limit of the method
    octave = split_voices(bowed(880.0, 2.0) + bowed(440.0, 2.0), "vn", SPLIT_RATE, leak=0.0)
    body = slice(SPLIT_RATE // 4, -SPLIT_RATE // 4)
    assert si_sdr(octave[0, body], bowed(880.0, 2.0)[body]) < 12.0


def test_the_tracker_gives_a_lone_pitch_to_the_nearer_voice() -> None:
    tracker = _LineTracker(hold_frames=5)
    nan = np.nan
    pitches = np.array([[440.0, 880.0], [450.0, nan], [870.0, nan], [nan, nan], [445.0, nan]])
    lines = tracker.lines(pitches)
    np.testing.assert_array_equal(lines[0], [880.0, 440.0])
    assert lines[1, 1] == 450.0 and np.isnan(lines[1, 0])  # near the lower line
    assert lines[2, 0] == 870.0 and np.isnan(lines[2, 1])  # near the upper line
    assert np.isnan(lines[3]).all()
    assert lines[4, 1] == 445.0


def test_blocks_of_any_length_give_the_whole_split() -> None:
    rng = np.random.default_rng(0)
    stem = bowed(523.0, 1.5) + bowed(392.0, 1.5) + 0.01 * rng.standard_normal(int(1.5 * SPLIT_RATE))
    whole = split_voices(stem, "fl", SPLIT_RATE)
    splitter = PitchVoiceSplitter("fl", SPLIT_RATE)
    parts, start = [], 0
    while start < stem.size:
        size = int(rng.integers(1, 3000))
        parts.append(splitter.feed(stem[start : start + size]))
        start += size
    parts.append(splitter.finish())
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    assert frame_length(SPLIT_RATE) == 4096 and splitter.delay == 4096 - 256


def test_silence_and_a_stem_shorter_than_a_frame() -> None:
    np.testing.assert_array_equal(split_voices(np.zeros(5000), "vc", SPLIT_RATE), 0.0)
    short = bowed(440.0, 0.05)
    voices = split_voices(short, None, SPLIT_RATE)  # unknown instrument: a default range
    assert voices.shape == (2, short.size)
    np.testing.assert_allclose(voices.sum(axis=0), short, atol=1e-5)


def test_pitch_pairs_and_the_stage_put_voices_into_their_slots() -> None:
    queries = [Query("vn", voice=1), Query("vc"), Query("vn", voice=2)]
    assert pitch_pairs(queries, LABELS) == [(0, 2)]
    assert pitch_pairs(queries, VOICES) == []  # that model splits voices itself
    assert pitch_pairs(queries, VISUAL) == []  # and that one is told apart by what it sees
    assert pitch_pairs([Query("vn"), Query("vn")], LABELS) == []
    stage = VoiceSplitStage.for_queries(queries, LABELS, SPLIT_RATE)
    assert stage is not None
    assert stage.network_queries == [Query("vn"), Query("vc")]  # one label query per stem
    violins = bowed(660.0, 1.0) + bowed(440.0, 1.0)
    cello = bowed(131.0, 1.0)
    network = np.stack([violins, cello]).astype(np.float32)
    out = np.concatenate([stage.feed(network[:, :7000]), stage.feed(network[:, 7000:]),
                          stage.finish()], axis=1)  # fmt: skip
    assert out.shape == (3, violins.size)
    np.testing.assert_array_equal(out[1], network[1])  # the cello, held back and returned
    np.testing.assert_allclose(out[0] + out[2], network[0], atol=1e-5)
    np.testing.assert_array_equal(out[[0, 2]], split_voices(network[0], "vn", SPLIT_RATE))
    assert VoiceSplitStage.for_queries([Query("vn"), Query("vc")], LABELS, SPLIT_RATE) is None


def test_two_pairs_in_any_order_fill_their_own_slots() -> None:
    """Voice 2 may come before voice 1, and two instruments may each be a pair."""
    queries = [Query("vc", voice=2), Query("vn", voice=1), Query("vc", voice=1),
               Query("vn", voice=2)]  # fmt: skip
    assert sorted(pitch_pairs(queries, LABELS)) == [(1, 3), (2, 0)]
    stage = VoiceSplitStage.for_queries(queries, LABELS, SPLIT_RATE)
    assert stage is not None and not stage.whole_mixture
    assert [q.instrument for q in stage.network_queries] == ["vn", "vc"]
    violins = bowed(660.0, 1.0) + bowed(440.0, 1.0)
    cellos = bowed(196.0, 1.0) + bowed(131.0, 1.0)
    out = stage.split_whole(np.stack([violins, cellos]).astype(np.float32))
    np.testing.assert_array_equal(out[[1, 3]], split_voices(violins, "vn", SPLIT_RATE))
    np.testing.assert_array_equal(out[[2, 0]], split_voices(cellos, "vc", SPLIT_RATE))


def test_voice_queries_that_are_not_a_pair_are_refused() -> None:
    for queries, asked in (
        (
            [Query("vn", voice=1), Query("vn", voice=2), Query("va", voice=1)],
            r"va queries ask for voices \[1\]",
        ),
        ([Query("vn", voice=1), Query("vn", voice=1)], r"vn queries ask for voices \[1, 1\]"),
        ([Query("vn", voice=v) for v in (1, 2, 3)], r"\[1, 2, 3\]; a label model splits"),
    ):
        with pytest.raises(InputError, match=asked):
            pitch_pairs(queries, LABELS)


def test_another_channel_replays_the_first_channels_lines() -> None:
    """A second channel is split along the lines the first found, so voice 1 is the same
    line in both, even where its own pitches would say otherwise."""
    first = bowed(660.0, 1.0) + bowed(440.0, 1.0)
    splitter = PitchVoiceSplitter("vn", SPLIT_RATE)
    whole = np.concatenate([splitter.feed(first), splitter.finish()], axis=1)
    lines = splitter.lines
    assert lines.shape[1] == 2 and np.nanmedian(lines[:, 0]) > np.nanmedian(lines[:, 1])
    again = PitchVoiceSplitter("vn", SPLIT_RATE, replay=lines)
    np.testing.assert_array_equal(np.concatenate([again.feed(first), again.finish()], 1), whole)
    other = bowed(880.0, 1.0) + bowed(330.0, 1.0)  # what the second channel holds instead
    replayed = PitchVoiceSplitter("vn", SPLIT_RATE, replay=lines)
    np.concatenate([replayed.feed(other), replayed.finish()], axis=1)
    np.testing.assert_array_equal(replayed.lines, lines)  # its own pitches were not used


def test_a_label_model_splits_two_violins_by_pitch(tiny_models_dir: Path, tmp_path: Path) -> None:
    """Through the library: the voice stems differ and sum to the one label stem (to the
    mixture, when the two are all who play); through the CLI, ``-i vn,vn`` on audio gives the
    same stems by default (and with ``--pitch-voices``), with a note that says where it goes
    wrong, and no "identical"; with ``--no-pitch-voices`` the two stems are the same, and a
    warning says so."""
    rng = np.random.default_rng(1)
    mix = (bowed(660.0, 2.0, RATE) + bowed(440.0, 2.0, RATE)).astype(np.float32)
    mix += (0.01 * rng.standard_normal(mix.size)).astype(np.float32)
    separator = Separator("default", device="cpu")
    # the network's own stems (refined, a stem of two players takes no part in the joint
    # pitches that a lone violin's would: the refinements differ)
    raw = Separator("default", device="cpu", refine=False)
    trio = raw.separate_array(mix, [Query("vn", voice=1), Query("vc"), Query("vn", voice=2)])
    label = raw.separate_array(mix, [Query("vn"), Query("vc")])
    np.testing.assert_allclose(trio[0] + trio[2], label[0], atol=1e-5)
    np.testing.assert_allclose(trio[1], label[1], atol=1e-6)
    voices = separator.separate_array(mix, [Query("vn", voice=1), Query("vn", voice=2)])
    assert voices.shape == (2, mix.size)
    np.testing.assert_allclose(voices.sum(axis=0), mix, atol=1e-5)  # no network: the mixture
    assert np.abs(voices[0] - voices[1]).max() > 1e-3
    path = write_wav(tmp_path / "duet.wav", mix)
    result = separate(path, "-i", "vn,vn", "-o", tmp_path / "out", "--format", "float32",
                      "--pitch-voices")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "split by register, the higher voice to the first named" in result.output
    assert "identical" not in result.output
    written = np.stack(
        [soundfile.read(tmp_path / "out" / "duet" / f"0{k}_vn.wav")[0] for k in (1, 2)]
    )
    np.testing.assert_allclose(written, voices, atol=1e-6)  # streamed = whole
    default = separate(path, "-i", "vn,vn", "-o", tmp_path / "d", "--format", "float32")
    assert default.exit_code == 0 and "identical" not in default.output  # split by default
    assert "where their parts cross" in default.output
    np.testing.assert_array_equal(
        np.stack([soundfile.read(tmp_path / "d" / "duet" / f"0{k}_vn.wav")[0] for k in (1, 2)]),
        written,
    )
    # the split's doubt is a warning, so --strict refuses it (as the identical stems before)
    strict = separate(path, "-i", "vn,vn", "-o", tmp_path / "s", "--strict")
    assert strict.exit_code == 2 and "split by register" in strict.output
    assert not (tmp_path / "s" / "duet").exists()
    plain = separate(path, "-i", "vn,vn", "-o", tmp_path / "b", "--no-pitch-voices")
    assert plain.exit_code == 0 and "identical" in plain.output
    assert "splits two of them by pitch unless --no-pitch-voices" in plain.output  # and why


def test_by_default_pairs_are_split_in_register_order_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pitch_voices=None``: a label model's pair is split in register order, the higher
    voice to the first named (in a video, the one further left) and not by frame differences
    (which measured worse), with a warning that the parts may cross; by the true keypoints
    beside a generated video; a model that is not label-only gets no note about the option
    it was not given."""
    from vimss_cli.vision.queries import PlayerPlan

    audio = PlayerPlan(tmp_path / "x.wav", ["vn", "vn", "vc"], has_video=False)
    assert [q.voice for q in audio.queries(LABELS)] == [1, 2, 0]
    (warning,) = audio.warnings
    assert "the higher voice to the first named; where their parts cross" in warning
    assert "--pitch-voices: by their motion" not in warning
    video = PlayerPlan(tmp_path / "x.mp4", ["vn", "vn", "vc"], has_video=True)  # not read
    queries = video.queries(LABELS)
    assert [q.voice for q in queries] == [1, 2, 0]
    assert all(q.motion is None for q in queries)  # no voice sorter: register order
    (warning,) = video.warnings
    assert "the higher voice to the one further left" in warning
    assert "--pitch-voices: by their motion, experimental" in warning
    # a generated video with its players' true keypoints beside it: the motion decides
    (tmp_path / "Pose_01_x_vn_vn.npz").write_bytes(b"")
    posed = PlayerPlan(tmp_path / "Vid_01_x_vn_vn.mp4", ["vn", "vn"], has_video=True)
    motions = [np.zeros((3, 10)), np.ones((3, 10))]
    monkeypatch.setattr(PlayerPlan, "_sorting_motion", lambda self, players: (motions, 15.0))
    queries = posed.queries(LABELS)
    assert [q.voice for q in queries] == [1, 2] and queries[1].motion is motions[1]
    assert not posed.warnings
    for config in (VOICES, VISUAL):
        plan = PlayerPlan(tmp_path / "x.wav", ["vn", "cl"], has_video=False)
        plan.queries(config)
        assert not any("--pitch-voices" in note for note in plan.notes)
    lone = PlayerPlan(tmp_path / "x.wav", ["vn", "cl"], has_video=False)
    lone.queries(LABELS)
    assert not lone.notes and not lone.warnings  # nothing to split, nothing said


@pytest.mark.parametrize("layout", ["vn,vc,vn", "vn,vn,vn", "vn,cl"])
def test_only_pairs_are_split(tiny_models_dir: Path, tmp_path: Path, layout: str) -> None:
    from vimss_cli.model import ModelConfig
    from vimss_cli.vision.queries import PlayerPlan

    plan = PlayerPlan(tmp_path / "x.wav", layout.split(","), has_video=False)
    config = ModelConfig(sample_rate=RATE, levels=3, base_features=4)
    queries = plan.queries(config, pitch_voices=True)
    if layout == "vn,vc,vn":
        assert [q.voice for q in queries] == [1, 0, 2]
        (warning,) = plan.warnings  # only that the parts may cross
        assert "where their parts cross" in warning
    elif layout == "vn,vn,vn":  # three of one instrument: identical stems, and a warning
        assert [q.voice for q in queries] == [0, 0, 0]  # that says why, not to pass the flag
        (warning,) = [w for w in plan.warnings if "identical" in w]
        assert "split by pitch for two players of one instrument, not more" in warning
    else:  # nobody to split: a note says so
        assert [q.voice for q in queries] == [0, 0] and not plan.warnings
        assert "--pitch-voices: no two players share an instrument, so nothing is split" in (
            plan.notes
        )


def test_pitch_voices_leave_other_models_alone(tmp_path: Path) -> None:
    from vimss_cli.vision.queries import PlayerPlan

    for config in (VOICES, VISUAL):
        plan = PlayerPlan(tmp_path / "x.wav", ["vn", "vn"], has_video=False)
        queries = plan.queries(config, pitch_voices=True)
        if config is VISUAL:
            assert [q.voice for q in queries] == [0, 0]
        assert any("--pitch-voices is for label-only models" in note for note in plan.notes)


def test_pitch_voices_with_a_video_model_and_no_picture_says_the_stems_are_identical(
    tmp_path: Path,
) -> None:
    """A video model cannot tell two violins apart without a picture: the note says so, not
    that the model tells them apart by what it was trained on."""
    from vimss_cli.vision.queries import PlayerPlan

    plan = PlayerPlan(tmp_path / "x.wav", ["vn", "vn", "vc"], has_video=False)
    plan.queries(VISUAL, pitch_voices=True)
    (note,) = [n for n in plan.notes if n.startswith("--pitch-voices")]
    assert "with no picture here, the vn stems will be identical" in note
    assert "by what it was trained on" not in note


def test_a_stereo_pair_is_split_alike_in_both_channels(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    """Stems like the input (two channels, the input's rate): the right channel holds the left
    one's duet at half the level, and each voice stem holds the same line in both channels."""
    left = bowed(660.0, 1.5, 16000) + bowed(440.0, 1.5, 16000)
    stereo = np.stack([left, 0.5 * left], axis=1).astype(np.float32)
    path = write_wav(tmp_path / "duet.wav", stereo, rate=16000)
    out = tmp_path / "out"
    result = separate(path, "-i", "vn,vn", "-o", out, "--format", "float32", "--rest",
                      "--pitch-voices")  # fmt: skip
    assert result.exit_code == 0, result.output
    stems = [soundfile.read(out / "duet" / name)[0] for name in ("01_vn.wav", "02_vn.wav")]
    assert all(stem.shape == stereo.shape for stem in stems)
    for stem in stems:  # (N, 2): the right channel is the left one at half the level
        np.testing.assert_allclose(stem[:, 1], 0.5 * stem[:, 0], atol=1e-4)
    assert np.abs(stems[0][:, 0] - stems[1][:, 0]).max() > 1e-2  # the voices differ


def test_streamed_files_equal_the_library_with_the_network(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    """A pair beside another player: the network runs, the soft masks refine, the pair's stem
    is split; the streamed file path writes what separate_array returns."""
    rng = np.random.default_rng(2)
    mix = bowed(660.0, 2.0, RATE) + bowed(440.0, 2.0, RATE) + bowed(131.0, 2.0, RATE)
    mix = (mix + 0.01 * rng.standard_normal(mix.size)).astype(np.float32)
    path = write_wav(tmp_path / "trio.wav", mix)
    result = separate(path, "-i", "vn,vc,vn", "-o", tmp_path / "out", "--format", "float32",
                      "--pitch-voices")  # fmt: skip
    assert result.exit_code == 0, result.output
    written = np.stack(
        [soundfile.read(f)[0] for f in sorted((tmp_path / "out" / "trio").glob("*.wav"))]
    )
    queries = [Query("vn", voice=1), Query("vc"), Query("vn", voice=2)]
    expected = Separator("default", device="cpu").separate_array(mix, queries)
    np.testing.assert_allclose(written, expected, atol=1e-6)
