"""The batch API (:mod:`vimss_cli.batch`) from Python: what ``vimss separate`` runs."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import ffmpeg, noise, write_wav
from vimss_cli.batch import (
    Batch,
    BatchEvents,
    BatchOptions,
    parse_sample_rate,
    plan_inputs,
    separate_inputs,
)
from vimss_cli.errors import EmptyAudioError, InputError, NoAudioStreamError, VimssError


class Recorded(BatchEvents):
    """Every event of a batch, in order, as ``(kind, text)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def warning(self, text: str) -> None:
        self.events.append(("warning", text))

    def note(self, text: str) -> None:
        self.events.append(("note", text))

    def failed(self, error: VimssError) -> None:
        self.events.append(("failed", str(error)))

    def phase(self, text: str) -> AbstractContextManager[object]:
        self.events.append(("phase", text))
        return nullcontext()

    def kinds(self, kind: str) -> list[str]:
        return [text for what, text in self.events if what == kind]


def test_a_batch_separates_each_input_with_its_own_instruments(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    first = write_wav(tmp_path / "first.wav", noise(1.0, seed=1))
    second = write_wav(tmp_path / "AuMix_02_Duet_vn_vn.wav", noise(1.0, seed=2))
    out = tmp_path / "out"
    events = Recorded()
    options = BatchOptions(out_dir=out, instruments=["vn,vc", "auto"], device="cpu")
    report = separate_inputs([first, second], options, events)
    assert report.failures == [] and (report.model, report.device) == ("tiny", "cpu")
    assert [[s.path.name for s in r.stems] for r in report.inputs] == [
        ["01_vn.wav", "02_vc.wav"],
        ["01_vn.wav", "02_vn.wav"],  # read from the URMP-style name
    ]
    for result in report.inputs:
        for stem in result.stems:
            assert soundfile.info(str(stem.path)).frames == result.samples
    document = report.to_json()
    assert list(document) == [
        "model",
        "device",
        "precision",
        "refined",
        "harmonic",
        "templates",
        "inputs",
        "failures",
        "skipped",
    ]
    assert document["refined"] is True and document["harmonic"] is True  # the defaults
    assert document["templates"] is True
    assert document["failures"] == [] and document["skipped"] == []
    assert document["inputs"][0]["input"] == str(first)
    phases = events.kinds("phase")
    # an audio input: no players to find or look at (found by a new user's trial)
    assert phases == ["reading the inputs", "loading model default", "making the queries"]
    assert any("untrained" in text for text in events.kinds("warning"))
    # two label-only vn in an audio file: split by pitch (by default), with a warning that
    # says where it goes wrong, in the second input's own report (what --json prints) once
    assert not any("identical" in text for text in events.kinds("warning"))
    assert sum("where their parts cross" in line for line in report.inputs[1].warnings) == 1
    assert not any("where their parts cross" in line for line in report.inputs[0].warnings)
    assert "instruments vn,vn read from the URMP-style name of AuMix_02_Duet_vn_vn.wav" in (
        events.kinds("note")
    )


def test_keep_going_leaves_a_failing_input_out_and_says_so(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    good = write_wav(tmp_path / "good.wav", noise(1.0))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    options = BatchOptions(out_dir=tmp_path / "out", instruments=["vn"], keep_going=True)
    events = Recorded()
    report = separate_inputs([broken, good], options, events)
    assert [r.input for r in report.inputs] == [good]
    (failure,) = report.failures
    assert failure.startswith(f"{broken}: cannot read")
    assert events.kinds("failed") == [failure.removeprefix(f"{broken}: ")]
    assert report.to_json()["failures"] == [failure]  # --json names what was left out
    with pytest.raises(VimssError, match="cannot read"):  # without keep_going: the first error
        separate_inputs([broken, good], BatchOptions(out_dir=tmp_path / "o2", instruments=["vn"]))


def test_the_count_of_boxes_is_told_in_good_english(tmp_path: Path) -> None:
    from vimss_cli.media import probe
    from vimss_cli.vision.queries import plan_players

    clip = tmp_path / "clip.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x90:rate=5:duration=1",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-shortest", str(clip),
    )  # fmt: skip
    with pytest.raises(InputError, match="--boxes gives 1 box but --instruments names 2"):
        plan_players(probe(clip), "vn,vc", boxes="0,0,80,90")
    # --audio beside a video that has its own sound: said, as a note
    other = write_wav(tmp_path / "other.wav", noise(1.0))
    options = BatchOptions(out_dir=tmp_path / "o", instruments=["vn,vc"], audio=other)
    batch = Batch([clip], options)
    plan = batch._plan_players(batch.plan_inputs()[0])
    assert "clip.mp4's own sound is not used: --audio other.wav is separated instead" in plan.notes


def test_a_typo_in_the_instruments_is_named_even_when_earlier_stems_exist(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    mixture = write_wav(tmp_path / "mix.wav", noise(1.0))
    out = tmp_path / "out"
    separate_inputs([mixture], BatchOptions(out_dir=out, instruments=["vn,vc"]))
    with pytest.raises(InputError, match="'xx'"):
        plan_inputs([mixture], BatchOptions(out_dir=out, instruments=["vn,xx"]))
    with pytest.raises(InputError, match="between 1 and 8 players, got 9"):
        plan_inputs([mixture], BatchOptions(out_dir=out, instruments=[",".join(["vn"] * 9)]))


def test_an_input_that_fails_once_read_leaves_no_empty_output_folder(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    empty = write_wav(tmp_path / "empty.wav", noise(0.0))  # a header, no samples
    out = tmp_path / "new" / "out"
    with pytest.raises(EmptyAudioError, match="no audio samples"):
        separate_inputs([empty], BatchOptions(out_dir=out, instruments=["vn,cl"]))
    assert not out.exists()
    (tmp_path / "kept").mkdir()  # a folder the user had stays, empty or not
    with pytest.raises(EmptyAudioError, match="no audio samples"):
        separate_inputs([empty], BatchOptions(out_dir=tmp_path / "kept", instruments=["vn"]))
    assert (tmp_path / "kept").is_dir()


def test_audio_for_an_input_without_a_picture_is_refused(tmp_path: Path) -> None:
    mixture = write_wav(tmp_path / "mix.wav", noise(1.0))
    other = write_wav(tmp_path / "other.wav", noise(0.5))
    options = BatchOptions(out_dir=tmp_path / "out", instruments=["vn,vc"], audio=other)
    with pytest.raises(InputError, match=r"has no picture; separate .*other\.wav itself"):
        plan_inputs([mixture], options)
    assert not (tmp_path / "out").exists()


def test_plan_inputs_checks_everything_before_a_model_loads(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    first = write_wav(tmp_path / "first.wav", noise(1.0, seed=1))
    out = tmp_path / "out"
    (planned,) = plan_inputs([first], BatchOptions(out_dir=out, instruments=["vn,vc"]))
    assert planned.path == first and planned.instruments == "vn,vc"
    assert planned.info.has_audio and not out.exists()  # nothing written yet
    separate_inputs([first], BatchOptions(out_dir=out, instruments=["vn"]))
    events = Recorded()
    skipping = BatchOptions(out_dir=out, skip_existing=True)
    assert plan_inputs([first], skipping, events) == []
    assert events.kinds("note") == [f"{first}: stems exist, skipped"]
    with pytest.raises(VimssError, match="outputs already exist"):
        plan_inputs([first], BatchOptions(out_dir=out, instruments=["vn,vc"]))
    with pytest.raises(InputError, match="say who plays"):  # the mistake before the stems
        plan_inputs([first], BatchOptions(out_dir=out))
    with pytest.raises(InputError, match=r"2 -i for 1 input$"):  # one input: no plural
        plan_inputs([first], BatchOptions(out_dir=out, instruments=["vn", "vc"]))
    with pytest.raises(InputError, match=r"--skip-existing keeps .* and --force replaces"):
        plan_inputs([first], BatchOptions(out_dir=out, skip_existing=True, force=True))
    clash = tmp_path / "other"
    clash.mkdir()
    twin = write_wav(clash / "first.wav", noise(1.0))
    with pytest.raises(InputError, match=f"{first} and {twin} share a file name stem"):
        plan_inputs([first, twin], BatchOptions(out_dir=tmp_path / "elsewhere"))
    with pytest.raises(InputError, match=f"{first} is given twice"):
        plan_inputs([first, first], BatchOptions(out_dir=tmp_path / "elsewhere"))


def test_a_video_without_sound_needs_audio(tmp_path: Path) -> None:
    video = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x48:d=1", "-pix_fmt", "yuv420p", str(video))
    with pytest.raises(NoAudioStreamError, match="give its sound with --audio"):
        plan_inputs([video], BatchOptions(out_dir=tmp_path / "out", instruments=["vn"]))


def test_audio_of_another_length_than_the_picture_is_told(tmp_path: Path) -> None:
    video = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x48:d=1", "-pix_fmt", "yuv420p", str(video))
    sound = write_wav(tmp_path / "other_take.wav", noise(5.0))
    events = Recorded()
    options = BatchOptions(out_dir=tmp_path / "out", instruments=["vn"], audio=sound)
    separate_inputs([video], options, events)
    (warning,) = [text for kind, text in events.events if kind == "warning"]
    assert "but --audio other_take.wav 5.0 s; is it this video" in warning


def test_a_second_audio_stream_is_told(tmp_path: Path) -> None:
    two = tmp_path / "two_takes.mka"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050:duration=1",
        "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=22050:duration=1",
        "-map", "0:a", "-map", "1:a", "-c:a", "pcm_s16le", str(two),
    )  # fmt: skip
    events = Recorded()
    separate_inputs([two], BatchOptions(out_dir=tmp_path / "out", instruments=["vn"]), events)
    notes = [text for kind, text in events.events if kind == "note"]
    assert any(n.startswith("two_takes.mka holds 2 audio streams; the first") for n in notes)


def test_the_audio_stream_marked_default_is_separated(tmp_path: Path) -> None:
    # a silent first stream, not marked default, before the music, marked default
    two = tmp_path / "remix_first.mkv"
    ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono", "-f", "lavfi", "-i",
        "sine=frequency=440:sample_rate=22050:duration=1", "-t", "1", "-map", "0:a", "-map",
        "1:a", "-c:a", "pcm_s16le", "-disposition:a:0", "0", "-disposition:a:1", "default",
        str(two),
    )  # fmt: skip
    events = Recorded()
    options = BatchOptions(out_dir=tmp_path / "out", instruments=["vn"], rest=True)
    separate_inputs([two], options, events)
    notes = [text for kind, text in events.events if kind == "note"]
    assert any("holds 2 audio streams; audio stream 2, marked default, is" in n for n in notes)
    assert not [text for kind, text in events.events if kind == "warning" and "silence" in text]
    stems = [soundfile.read(str(p))[0] for p in sorted((tmp_path / "out").rglob("*.wav"))]
    assert len(stems) == 2 and np.abs(sum(stems)).max() > 0.1  # the sine (peak 1/8)


@pytest.mark.parametrize(
    "text, model_rate, expected",
    [
        (None, False, (True, None)),
        ("input", False, (True, None)),
        ("Model", False, (False, None)),
        (None, True, (False, None)),
        ("48000", False, (True, 48000)),
    ],
)
def test_parse_sample_rate(
    text: str | None, model_rate: bool, expected: tuple[bool, int | None]
) -> None:
    assert parse_sample_rate(text, model_rate) == expected


@pytest.mark.parametrize("text, model_rate", [("7", False), ("fast", False), ("48000", True)])
def test_bad_sample_rates(text: str, model_rate: bool) -> None:
    with pytest.raises(InputError):
        parse_sample_rate(text, model_rate)
