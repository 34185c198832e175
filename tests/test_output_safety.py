"""``vimss separate`` under faults: odd inputs and outputs, full disks, concurrent and killed
runs. Every fault gives one line and a non-zero exit; nothing the user had is lost."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import RATE, noise, write_wav
from test_cli import assert_clean_failure, files_under, run
from vimss_cli import checkpoint, stem_writer
from vimss_cli.api import is_stem_name
from vimss_cli.atomic import AtomicFiles, atomic_path, temporary_owner, temporary_path
from vimss_cli.engine import _WindowRunner
from vimss_cli.stem_writer import FolderLock, StemSetWriter


@pytest.fixture()
def mix(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "duet.wav", noise(2.5), subtype="PCM_16")


def read(path: Path) -> np.ndarray:
    return soundfile.read(str(path), dtype="float32")[0]


def warnings_of(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ")]


# ---------------------------------------------------------------- 1: beyond full scale
@pytest.fixture()
def quiet_and_loud(tmp_path: Path) -> tuple[Path, Path]:
    """The same float WAV at peak 1.0 and at peak 15."""
    audio = noise(2.5)
    audio /= np.abs(audio).max()
    return write_wav(tmp_path / "quiet.wav", audio), write_wav(tmp_path / "loud.wav", 15 * audio)


@pytest.mark.parametrize("refine", ["--refine", "--no-refine"])
def test_float32_stems_keep_the_level_of_an_input_beyond_full_scale(
    tiny_models_dir: Path, quiet_and_loud: tuple[Path, Path], tmp_path: Path, refine: str
) -> None:
    quiet, loud = quiet_and_loud
    out = tmp_path / "o"
    for source in (quiet, loud):
        result = run("separate", source, "-o", out, "-i", "vn,vc", "--format", "float32", refine)
        assert result.exit_code == 0, result.stderr
        assert not [w for w in warnings_of(result) if "untrained" not in w]
    for name in ("01_vn.wav", "02_vc.wav"):
        quiet_stem, loud_stem = read(out / "quiet" / name), read(out / "loud" / name)
        # the network saw the same mixture; the stems got the input's level back, unclipped
        assert np.abs(loud_stem - 15 * quiet_stem).max() <= 1e-4
    if refine == "--no-refine":  # the untrained network's own stems go beyond full scale
        assert np.abs(read(out / "loud" / "01_vn.wav")).max() > 1.0


def test_integer_stems_of_an_input_beyond_full_scale_are_scaled_to_fit(
    tiny_models_dir: Path, quiet_and_loud: tuple[Path, Path], tmp_path: Path
) -> None:
    quiet, loud = quiet_and_loud
    out = tmp_path / "o"
    run("separate", quiet, "-o", out, "-i", "vn", "--format", "wav24")
    result = run("separate", loud, "-o", out, "-i", "vn", "--format", "wav24", "--json")
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["inputs"]
    assert entry["input_peak"] == pytest.approx(15) and entry["stem_gain"] == pytest.approx(1 / 15)
    assert entry["clipped_samples"] == 0
    assert (
        "warning: loud.wav peaks at 15.00, beyond full scale: its wav24 stems are scaled by "
        "1/15.00 to fit (--format float32 keeps its level)"
    ) in warnings_of(result)
    loud_stem, quiet_stem = read(out / "loud" / "01_vn.wav"), read(out / "quiet" / "01_vn.wav")
    assert np.abs(loud_stem - quiet_stem).max() <= 1e-4


@pytest.mark.parametrize("right", [-1.0, 0.0, 1.0])  # antiphase, the left only, the same
def test_the_peak_of_stereo_stems_is_measured_per_channel(
    tiny_models_dir: Path, tmp_path: Path, right: float
) -> None:
    audio = noise(2.5)
    audio *= 1.5 / np.abs(audio).max()
    loud = write_wav(tmp_path / "loud.wav", np.stack([audio, right * audio], axis=1))
    result = run("separate", loud, "-o", tmp_path / "o", "-i", "vn", "--format", "wav24", "--json")
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["inputs"]
    assert entry["input_peak"] == pytest.approx(1.5, abs=0.01)
    assert entry["stem_gain"] == pytest.approx(1 / 1.5, abs=0.01)
    assert entry["clipped_samples"] == 0
    # stems at the model's rate are of the mean of the channels: its own peak (silent in
    # antiphase, 0.75 with the left channel only, 1.5 with both), named as the downmix's
    mono = run("separate", loud, "-o", tmp_path / "m", "-i", "vn", "--format", "wav24",
               "--sample-rate", "model")  # fmt: skip
    assert mono.exit_code == 0, mono.stderr
    peaks = [w for w in warnings_of(mono) if "peaks at" in w]
    if right == 1.0:
        assert len(peaks) == 1 and "loud.wav's mono downmix peaks at 1.50" in peaks[0]
    else:
        assert peaks == []


def test_the_mean_of_an_integer_stereo_file_is_never_beyond_full_scale(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    # 16-bit, both channels at 0.9: their mean peaks at 0.9 too (a sum over sqrt 2, as
    # ffmpeg's own downmix makes, would peak at 1.27 and be 3 dB louder than the separate
    # channels' stems), so nothing is scaled and no extra pass measures a peak
    tone = 0.9 * np.sin(2 * np.pi * 440 * np.arange(2 * RATE) / RATE).astype(np.float32)
    loud = write_wav(tmp_path / "loud.wav", np.stack([tone, tone], axis=1), subtype="PCM_16")
    result = run("separate", loud, "-o", tmp_path / "o", "-i", "vn", "--sample-rate", "model",
                 "--json", "--rest", "--format", "float32")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["inputs"]
    assert entry["input_peak"] is None and entry["clipped_samples"] == 0
    assert not [w for w in warnings_of(result) if "peaks at" in w]
    # at the model's rate already: downmixed, not resampled, and the warning says just that
    assert f"warning: loud.wav ({RATE} Hz, 2 channel(s)) was downmixed to mono (the mean of " + (
        "its 2 channels): so are its stems"
    ) in warnings_of(result)
    stems = [read(p) for p in sorted((tmp_path / "o" / "loud").iterdir())]
    assert np.abs(sum(stems) - tone).max() < 1e-3  # stems and rest: the input's level


def test_samples_an_integer_format_clips_are_counted(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = _WindowRunner.run
    monkeypatch.setattr(_WindowRunner, "run", lambda self, w, s: 40 * original(self, w, s))
    # the network's own stems (soft masks would bring them back within the mixture)
    result = run("separate", mix, "-o", tmp_path / "i", "-i", "vn", "--json", "--no-refine")
    assert result.exit_code == 0, result.stderr
    clipped = json.loads(result.stdout)["inputs"][0]["clipped_samples"]
    assert clipped > 0
    (line,) = [w for w in warnings_of(result) if "clipped" in w]
    assert line.startswith(f"warning: {clipped} samples of the stems in {tmp_path / 'i' / 'duet'}")
    assert "beyond full scale (peak " in line and "--format float32 keeps them" in line
    result = run(
        "separate", mix, "-o", tmp_path / "f", "-i", "vn", "--format", "float32", "--no-refine"
    )
    assert result.exit_code == 0 and not [w for w in warnings_of(result) if "clipped" in w]
    assert np.abs(read(tmp_path / "f" / "duet" / "01_vn.wav")).max() > 1.0


# ---------------------------------------------------------------- 2, 13: the stem folder
def test_output_folder_that_is_a_broken_link(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    link = tmp_path / "o"
    link.symlink_to(tmp_path / "gone")
    for out in (link, link / "inner"):
        result = run("separate", mix, "-o", out, "-i", "vn")
        assert_clean_failure(result, f"cannot write into {out}: {link} is a broken symbolic link")
    assert link.is_symlink() and not (tmp_path / "gone").exists()


def test_stem_folder_that_is_a_file(tiny_models_dir: Path, mix: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "duet").write_text("the user's file")
    result = run("separate", mix, "-o", out, "-i", "vn")
    assert_clean_failure(result, f"cannot write stems into {out / 'duet'}", "not a directory")
    assert (out / "duet").read_text() == "the user's file"


def test_an_input_named_dots_stays_inside_out(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "...wav").write_bytes(mix.read_bytes())  # its stem is ".."
    result = run("separate", "./...wav", "-o", "a/b", "-i", "vn")
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path / "a") == [tmp_path / "a" / "b" / "__" / "01_vn.wav"]


def test_an_input_named_with_a_leading_dot_gets_a_folder_one_can_see(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    # found by a new user's trial: ".take1.wav" wrote its stems into a hidden ".take1/"
    hidden = tmp_path / ".take1.wav"
    hidden.write_bytes(mix.read_bytes())
    result = run("separate", hidden, "-o", tmp_path / "o", "-i", "vn")
    assert result.exit_code == 0, result.stderr
    assert files_under(tmp_path / "o") == [tmp_path / "o" / "_take1" / "01_vn.wav"]


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("layout", ["earlier stem", "own stem"])
def test_an_input_among_its_own_stems_is_never_replaced(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, force: list[str], layout: str
) -> None:
    """Found by a review: with --force, an input inside its own stem folder named like a stem
    was deleted as part of "the earlier set", or replaced by its own stem."""
    out = tmp_path / "o"
    if layout == "earlier stem":  # o/03_fl/03_fl.wav: its stem folder is o/03_fl
        given, extra = out / "03_fl" / "03_fl.wav", []
    else:  # o/01_vn.wav, stems written as o/NN_<instrument>.wav
        given, extra = out / "01_vn.wav", ["--filename", "{player:02d}_{instrument}.{ext}"]
    given.parent.mkdir(parents=True)
    given.write_bytes(mix.read_bytes())
    result = run("separate", given, "-o", out, "-i", "vn,vc", *extra, *force)
    assert_clean_failure(result, f"{given} is in the way of the stems", "--out")
    assert given.read_bytes() == mix.read_bytes()
    assert files_under(out) == [given]


def test_another_input_of_the_batch_among_the_stems_is_never_replaced(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    """Found by a review of the mend above: the second input, o/duet/01_vn.wav, was
    replaced by the first input's violin stem and then separated."""
    out = tmp_path / "o"
    second = out / "duet" / "01_vn.wav"
    second.parent.mkdir(parents=True)
    second.write_bytes(mix.read_bytes())
    result = run("separate", mix, second, "-o", out, "-i", "vn,vc", "--force")
    assert_clean_failure(result, f"{second} is in the way of the stems")
    assert second.read_bytes() == mix.read_bytes() and files_under(out) == [second]


def test_a_link_to_the_input_among_the_stems_is_only_a_name(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    """A hard or symbolic link to the input where a stem goes is replaced like any earlier
    stem: the input itself is left alone."""
    out = tmp_path / "o"
    (out / "duet").mkdir(parents=True)
    os.link(mix, out / "duet" / "01_vn.wav")
    (out / "duet" / "03_fl.wav").symlink_to(mix)
    original = mix.read_bytes()
    result = run("separate", mix, "-o", out, "-i", "vn,vc", "--force")
    assert result.exit_code == 0, result.stderr
    assert mix.read_bytes() == original
    assert sorted(p.name for p in (out / "duet").iterdir()) == ["01_vn.wav", "02_vc.wav"]
    assert not (out / "duet" / "01_vn.wav").samefile(mix)


# ---------------------------------------------------------------- 3: full disk
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("failure", ["oserror", "libsndfile"])
def test_full_disk_keeps_the_earlier_stems(
    tiny_models_dir: Path,
    mix: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    channels: int,
) -> None:
    if channels == 2:  # stereo stems: each channel is separated into scratch files first
        write_wav(mix, np.stack([noise(2.5), noise(2.5, seed=1)], axis=1), subtype="PCM_16")
    out = tmp_path / "o"
    assert run("separate", mix, "-o", out, "-i", "vn,vc").exit_code == 0
    before = {p: p.read_bytes() for p in files_under(out)}
    original = soundfile.SoundFile.write
    calls = {"n": 0}

    def write(self, data):
        calls["n"] += 1
        if calls["n"] == 2:
            if failure == "oserror":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise soundfile.LibsndfileError(2)  # what libsndfile says: "System error."
        return original(self, data)

    monkeypatch.setattr(soundfile.SoundFile, "write", write)
    if failure == "libsndfile":
        full = type("Usage", (), {"total": 1 << 30, "used": 1 << 30, "free": 0})
        monkeypatch.setattr(stem_writer.shutil, "disk_usage", lambda path: full)
    result = run("separate", mix, "-o", out, "-i", "vn,vc", "--force")
    assert_clean_failure(result, "no space left on device", str(out / "duet"))
    assert {p: p.read_bytes() for p in files_under(out)} == before


# ---------------------------------------------------------------- 4: unreadable checkpoints
def test_checkpoint_without_read_permission(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes((tiny_models_dir / "tiny.safetensors").read_bytes())
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything: make open() answer as for a user
        real_open = open

        def denying_open(file, *args, **kwargs):
            if Path(file) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(checkpoint, "open", denying_open, raising=False)
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn", "--model", locked)
    assert_clean_failure(result, f"cannot read checkpoint {locked}: permission denied")


def test_directory_as_checkpoint(tiny_models_dir: Path, mix: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn", "--model", folder)
    assert_clean_failure(result, f"checkpoint is a directory, not a .safetensors file: {folder}")


# ---------------------------------------------------------------- 5: partials of killed runs
def test_partials_of_dead_runs_are_removed(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "o" / "duet"
    folder.mkdir(parents=True)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its process id now names no process
    stale = folder / f".01_vn.wav.partial-{finished.pid}"
    alive = folder / f".01_vn.wav.partial-{os.getppid()}"  # a running process's: kept
    for path in (stale, alive):
        path.write_bytes(b"RIFF")
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn")
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and alive.exists()
    assert (folder / "01_vn.wav").is_file()


def test_scratch_folders_of_dead_runs_are_removed(tiny_models_dir: Path, tmp_path: Path) -> None:
    """Found by a review: a stereo separation killed with kill -9 left its per-channel scratch
    folder (tens of MB a minute of stems) in the output folder, and no later run removed it."""
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([noise(2.0), noise(2.0, seed=1)], 1))
    out = tmp_path / "o"
    out.mkdir()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its process id now names no process
    host = stem_writer._host()
    stale = out / f"{stem_writer.SCRATCH_PREFIX}{finished.pid}@{host}-abc"
    alive = out / f"{stem_writer.SCRATCH_PREFIX}{os.getppid()}@{host}-abc"  # a running process's
    elsewhere = out / f"{stem_writer.SCRATCH_PREFIX}{finished.pid}@another_host-abc"  # unknown
    other = out / ".vimss-channels-notes"  # not a scratch folder's name: the user's
    for folder in (stale, alive, elsewhere, other):
        folder.mkdir()
        (folder / "0_0.wav").write_bytes(b"RIFF")
    result = run("separate", stereo, "-o", out, "-i", "vn,vc")
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and alive.exists() and elsewhere.exists() and other.exists()
    assert soundfile.info(str(out / "stereo" / "01_vn.wav")).channels == 2
    kept = [alive.name, elsewhere.name, other.name, "stereo"]
    assert sorted(p.name for p in out.iterdir()) == sorted(kept)


def test_a_folder_in_the_way_of_a_stem_is_refused_before_anything_changes(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    """Found by a review: with --force, a folder named like the second stem was found only
    when publishing, after the first stem had replaced the earlier one."""
    out = tmp_path / "o"
    assert run("separate", mix, "-o", out, "-i", "vn,vc").exit_code == 0
    earlier = (out / "duet" / "01_vn.wav").read_bytes()
    (out / "duet" / "02_vc.wav").unlink()
    (out / "duet" / "02_vc.wav").mkdir()
    result = run("separate", mix, "-o", out, "-i", "vn,vc", "--force", "--no-refine")
    assert_clean_failure(result, f"cannot write the stem {out / 'duet' / '02_vc.wav'}", "folder")
    assert (out / "duet" / "01_vn.wav").read_bytes() == earlier
    files = AtomicFiles([tmp_path / "a.txt", out / "duet" / "02_vc.wav"])  # the last check
    for path in files.temporaries:
        path.write_text("new")
    with pytest.raises(IsADirectoryError):
        files.publish()
    files.discard()
    assert not (tmp_path / "a.txt").exists() and not list(tmp_path.glob(".a.txt*"))


def test_a_name_near_the_file_systems_limit_still_gets_a_temporary(tmp_path: Path) -> None:
    """Found by a new user's trial: a 241-character stem name failed with libsndfile's
    "System error." because its temporary's name passed 255 characters."""
    latin1 = os.fsdecode(b"caf\xe9" * 60 + b".wav")  # not UTF-8: a review found a crash
    for name in ("z" * 241 + "_1.wav", "é" * 120 + "_1.wav", "n" * 255, latin1, "caf" + latin1[:4]):
        temporary = temporary_path(tmp_path / name)
        assert len(os.fsencode(temporary.name)) <= 255
        assert temporary.name.endswith(Path(name).suffix)
        owner = temporary_owner(temporary.name)
        assert owner is not None and owner[1] == os.getpid()
        with atomic_path(tmp_path / name) as writing:
            writing.write_bytes(b"stem")
        assert (tmp_path / name).read_bytes() == b"stem"
    assert temporary_path(tmp_path / "01_vn.wav").name.startswith(".01_vn.wav.partial-")


def test_temporaries_name_their_process_and_vanish_on_failure(tmp_path: Path) -> None:
    stems = AtomicFiles([tmp_path / "01_vn.wav", tmp_path / "02_vc.wav"])
    names = [path.name for path in stems.temporaries]
    assert all(name.startswith(".") and name.endswith(".wav") for name in names)
    owners = [temporary_owner(name) for name in names]
    assert owners == [("01_vn.wav", os.getpid()), ("02_vc.wav", os.getpid())]
    assert temporary_owner(".01_vn.wav.partial-12") == ("01_vn.wav", 12)  # an older vimss's
    assert temporary_owner("01_vn.wav") is None and temporary_owner(".x.partial-") is None
    assert AtomicFiles([tmp_path / "a"]).temporaries != AtomicFiles([tmp_path / "a"]).temporaries
    for path in stems.temporaries:
        path.write_bytes(b"new")
    stems.publish()
    assert (tmp_path / "01_vn.wav").read_bytes() == b"new" and not list(tmp_path.glob(".*"))
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "01_vn.wav") as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("failed while writing")
    assert (tmp_path / "01_vn.wav").read_bytes() == b"new" and not list(tmp_path.glob(".*"))


# ---------------------------------------------------------------- 10, 11: odd input files
def test_non_utf8_file_name(tiny_models_dir: Path, mix: Path, tmp_path: Path) -> None:
    name = os.fsdecode(b"\xff\xfeduo.wav")
    source = tmp_path / name
    source.write_bytes(mix.read_bytes())
    out = tmp_path / "o"
    result = subprocess.run(
        [sys.executable, "-m", "vimss_cli", "separate", source, "-o", out, "-i", "vn,vc"],
        capture_output=True,
        check=False,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr and "\\xff\\xfeduo" in stderr
    folder = out / os.fsdecode(b"\xff\xfeduo")
    assert files_under(out) == [folder / "01_vn.wav", folder / "02_vc.wav"]


def test_named_pipe_is_refused(tiny_models_dir: Path, tmp_path: Path) -> None:
    pipe = tmp_path / "live.wav"
    os.mkfifo(pipe)
    out = tmp_path / "o"
    result = subprocess.run(  # a process, so that a regression hangs only it
        [sys.executable, "-m", "vimss_cli", "separate", pipe, "-o", out, "-i", "vn"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: input is a named pipe, not a regular file: {pipe}"
    )
    assert files_under(out) == []


# ---------------------------------------------------------------- 14, 15: earlier and other runs
def test_a_run_writing_into_the_folder_is_not_disturbed(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "o" / "duet"
    with StemSetWriter([folder / "01_vn.wav"], RATE, "wav16", is_stem=is_stem_name) as other:
        result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn")
        assert_clean_failure(result, f"another vimss run is writing stems into {folder}")
        other.write(np.zeros((1, 10), np.float32))
    assert soundfile.info(str(folder / "01_vn.wav")).frames == 10


def test_a_second_run_is_refused_before_it_does_any_work(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stems like a stereo 44.1 kHz input are made in scratch files first and published at
    # the end; the folder is still the first run's from its start, so a second run is
    # refused before its network runs (not after all its work)
    stereo = np.stack([noise(1.0, 44100, seed=1), noise(1.0, 44100, seed=2)], axis=1)
    path = write_wav(tmp_path / "duet.wav", stereo, 44100)
    folder = tmp_path / "o" / "duet"
    calls: list[int] = []
    original = _WindowRunner.run

    def counted(self, windows, starts):
        calls.append(1)
        return original(self, windows, starts)

    monkeypatch.setattr(_WindowRunner, "run", counted)
    with FolderLock(folder):
        result = run("separate", path, "-o", tmp_path / "o", "-i", "vn")
    assert_clean_failure(result, f"another vimss run is writing stems into {folder}")
    assert calls == []
    assert files_under(tmp_path / "o") == []
    released = run("separate", path, "-o", tmp_path / "o", "-i", "vn")
    assert released.exit_code == 0, released.output
    assert calls and files_under(tmp_path / "o") == [folder / "01_vn.wav"]


def test_a_stem_folder_that_cannot_be_made_fails_that_input_alone(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    # found by a review: the folder lock's own errors were raw OSErrors, which --keep-going
    # does not catch; now one line for that input, and the next one is separated
    first = write_wav(tmp_path / "a.wav", noise(1.0, seed=1))
    second = write_wav(tmp_path / "b.wav", noise(1.0, seed=2))
    out = tmp_path / "o"
    out.mkdir()
    (out / "a").symlink_to(tmp_path / "nowhere")
    result = run("separate", first, second, "-o", out, "-i", "vn", "--keep-going")
    assert result.exit_code != 0
    assert (
        f"cannot write into {out / 'a'}" in result.stderr
        and "broken symbolic link" in result.stderr
    )
    assert "Traceback" not in result.output + result.stderr
    assert files_under(out / "b") == [out / "b" / "01_vn.wav"]


def test_a_mistake_in_who_plays_is_told_before_earlier_stems(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    assert run("separate", mix, "-o", tmp_path / "o", "-i", "vn").exit_code == 0
    result = run("separate", mix, "-o", tmp_path / "o")  # nobody named, earlier stems there
    assert_clean_failure(result, "say who plays; pass --instruments")


def test_stems_published_meanwhile_are_not_replaced(
    tiny_models_dir: Path, mix: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "o" / "duet" / "01_vn.wav"
    original = _WindowRunner.run

    def other_run_publishes(self, windows, starts):
        if not target.exists():
            target.write_bytes(b"the other run's stem")
        return original(self, windows, starts)

    monkeypatch.setattr(_WindowRunner, "run", other_run_publishes)
    result = run("separate", mix, "-o", tmp_path / "o", "-i", "vn")
    assert_clean_failure(result, "outputs appeared while this run was writing", str(target))
    assert files_under(tmp_path / "o") == [target]
    assert target.read_bytes() == b"the other run's stem"


def test_force_replaces_the_whole_earlier_set(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    assert run("separate", mix, "-o", out, "-i", "vn,vc,fl").exit_code == 0
    notes = out / "duet" / "notes.txt"  # not a stem: never touched
    notes.write_text("mine")
    result = run("separate", mix, "-o", out, "-i", "va,db")
    assert_clean_failure(result, "outputs already exist", "01_vn.wav", "--force")
    result = run("separate", mix, "-o", out, "-i", "va,db", "--force")
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in files_under(out)] == ["01_va.wav", "02_db.wav", "notes.txt"]


# ---------------------------------------------------------------- 16: how many players
def test_instruments_and_players_share_one_limit(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    result = run("separate", mix, "-o", out, "-i", ",".join(["vn"] * 9))
    assert_clean_failure(result, "--instruments must name between 1 and 8 players, got 9")
    assert run("separate", mix, "-o", out, "-i", ",".join(["vn"] * 8)).exit_code == 0
    assert len(files_under(out)) == 8


# ---------------------------------------------------------------- 17: a new user's trial
def test_force_replaces_only_names_a_run_can_write(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    """Found by a trial: with a template without ``{instrument}``, ``--force`` deleted the
    user's ``duet_2023.wav`` as an "earlier stem" (no run has 2023 players)."""
    out = tmp_path / "o"
    out.mkdir()
    mine = [out / name for name in ("duet_2023.wav", "duet_1999.flac", "duet_10.wav")]
    for path in mine:
        path.write_bytes(b"the user's")
    earlier = out / "duet_3.wav"  # a stem of an earlier run with three players
    earlier.write_bytes(b"an earlier stem")
    template = ("--filename", "{input}_{player}.{ext}")
    refused = run("separate", mix, "-o", out, "-i", "vn,vc", *template)
    assert_clean_failure(refused, "outputs already exist", "duet_3.wav", "--force")
    assert "2023" not in refused.stderr
    result = run("separate", mix, "-o", out, "-i", "vn,vc", *template, "--force")
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in files_under(out)] == sorted(
        ["duet_1.wav", "duet_2.wav", *(p.name for p in mine)]
    )
    assert all(path.read_bytes() == b"the user's" for path in mine)


@pytest.mark.parametrize(
    "template, instruments",
    [
        ("{input}{instrument}{player}.{ext}", ("tbn", "bn")),  # atbn1.wav, the same name
        ("{input}{instrument}{player}.{ext}", ("tbn", "vn")),  # at's earlier set holds atbn1
        ("{input:.1}/{player:02d}_{instrument}.{ext}", ("vn", "cl")),  # one folder, a/
    ],
)
def test_inputs_whose_stems_could_share_names_are_refused_before_any_work(
    tiny_models_dir: Path, tmp_path: Path, template: str, instruments: tuple[str, str]
) -> None:
    """Found by a trial and a review: under these templates a stem of a.wav is named, or
    counted as an earlier stem, as one of at.wav; the second input's run replaced or (with
    --force) deleted the first's stems, or failed after them."""
    first = write_wav(tmp_path / "a.wav", noise(1.0, seed=1))
    second = write_wav(tmp_path / "at.wav", noise(1.0, seed=2))
    out = tmp_path / "o"
    for force in ([], ["--force"]):
        result = run(
            "separate", first, second, "-i", instruments[0], "-i", instruments[1], "-o", out,
            "--filename", template, *force,
        )  # fmt: skip
        assert_clean_failure(result, "could name a stem of", f"{first}", f"{second}")
        assert result.exit_code == 2 and not out.exists()
    apart = template.replace("{input}", "{input}_").replace("{input:.1}", "{input}")
    result = run(
        "separate", first, second, "-i", instruments[0], "-i", instruments[1], "-o", out,
        "--filename", apart,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert len(files_under(out)) == 2


def test_skip_existing_skips_only_when_the_stems_asked_for_are_there(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    """Found by a trial: any earlier stem made ``--skip-existing`` pass over an input, so the
    clarinet asked for now was never written."""
    out = tmp_path / "o"
    assert run("separate", mix, "-o", out, "-i", "vn").exit_code == 0
    again = run("separate", mix, "-o", out, "-i", "vn", "--skip-existing")
    assert again.exit_code == 0 and "stems exist, skipped" in again.stderr
    other = run("separate", mix, "-o", out, "-i", "vn,cl", "--skip-existing")
    asked = "--skip-existing passes over an input only when the stems asked for are all there"
    assert_clean_failure(other, "outputs already exist", "01_vn.wav", "--force", asked)
    flac = run("separate", mix, "-o", out, "-i", "vn", "--format", "flac", "--skip-existing")
    assert_clean_failure(flac, "outputs already exist", "01_vn.wav", asked)
    assert [p.name for p in files_under(out)] == ["01_vn.wav"]


def test_force_removes_the_listening_report_of_the_stems_it_replaces(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    """Found by a trial: after ``--force`` with other players, ``report.html`` still played
    the stems replaced. A page of ours goes with them; a file of the user's stays."""
    out = tmp_path / "o"
    assert run("separate", mix, "-o", out, "-i", "vn,cl", "--report").exit_code == 0
    page = out / "duet" / "report.html"
    assert page.is_file()
    result = run("separate", mix, "-o", out, "-i", "vn,bn", "--force")
    assert result.exit_code == 0, result.stderr
    assert not page.exists() and f"removed {page}" in result.stderr
    page.write_text("<html>my own notes</html>")
    result = run("separate", mix, "-o", out, "-i", "vn,fl", "--force")
    assert result.exit_code == 0, result.stderr
    assert page.read_text() == "<html>my own notes</html>"
    assert any(f"{page} may describe the stems just replaced" in w for w in warnings_of(result))
    result = run("separate", mix, "-o", out, "-i", "vn,ob", "--force", "--report")
    assert result.exit_code == 0, result.stderr
    assert "01_vn" in page.read_text() and "02_ob" in page.read_text()
    # --report --force, and a later input fails before the pages are written: the old page
    # does not stay beside the new stems (found by a review)
    broken = write_wav(tmp_path / "nan.wav", np.full(RATE, np.nan, dtype=np.float32))
    result = run("separate", mix, broken, "-o", out, "-i", "cl", "--report", "--force")
    assert result.exit_code == 1 and (out / "duet" / "01_cl.wav").is_file()
    assert not page.exists()


def test_an_input_too_quiet_for_the_stems_format_is_warned_about(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    """Found by a trial: a float input peaking at -121 dBFS gave 16-bit stems of rounding
    noise, without a word; float32 stems of it are fine (the network hears it at -1 dBFS)."""
    audio = noise(1.0)
    quiet = write_wav(tmp_path / "quiet.wav", audio / np.abs(audio).max() * 1e-6)
    out = tmp_path / "o"
    result = run("separate", quiet, "-o", out, "-i", "vn,vc")
    assert result.exit_code == 0, result.stderr
    (line,) = [w for w in warnings_of(result) if "too quiet" in w]
    assert "quiet.wav peaks at -120 dBFS, too quiet for wav16" in line and "float32" in line
    for fmt, warned in (("wav24", True), ("float32", False)):
        result = run("separate", quiet, "-o", out, "-i", "vn,vc", "--format", fmt, "--force")
        assert result.exit_code == 0, result.stderr
        assert any("too quiet" in w for w in warnings_of(result)) is warned
    loud = write_wav(tmp_path / "loud.wav", audio / np.abs(audio).max() * 0.01)  # -40 dBFS
    result = run("separate", loud, "-o", out, "-i", "vn,vc")
    assert not [w for w in warnings_of(result) if "too quiet" in w or "silence" in w]


def test_a_dc_offset_is_warned_about(tiny_models_dir: Path, tmp_path: Path) -> None:
    """Found by a trial: an input offset by 0.4 separated 4 dB worse, its offset leaking into
    one stem, without a word. Mono (its downmix) and each channel of a stereo input."""
    audio = noise(1.0)  # peak about 0.4
    out = tmp_path / "o"
    clean = write_wav(tmp_path / "clean.wav", audio)
    offset = write_wav(tmp_path / "offset.wav", audio + 0.2)
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([audio, audio + 0.2], axis=1))
    short = write_wav(tmp_path / "short.wav", audio[: RATE // 5] + 0.2)  # a few cycles' mean
    cases = ((clean, False), (short, False), (offset, True), (stereo, True))
    for path, warned in cases:
        result = run("separate", path, "-o", out, "-i", "vn,vc")
        assert result.exit_code == 0, result.stderr
        lines = [w for w in warnings_of(result) if "DC offset" in w]
        assert len(lines) == warned, result.stderr
        if warned:
            assert f"{path.name} has a DC offset (" in lines[0] and "highpass" in lines[0]
    assert "(channel 2: " in lines[0] and "channel 1" not in lines[0]  # the stereo one


def test_a_short_input_says_how_long_it_is(tiny_models_dir: Path, tmp_path: Path) -> None:
    """Found by a trial: a 0.05 s input was summed up as "0.0 s of audio"."""
    short = write_wav(tmp_path / "short.wav", noise(0.05))
    result = run("separate", short, "-o", tmp_path / "o", "-i", "vn")
    assert result.exit_code == 0, result.stderr
    assert f"{short}: 50 ms of audio in " in result.stderr


def test_json_says_what_ended_a_run(tiny_models_dir: Path, tmp_path: Path) -> None:
    """Found by a trial: ``--json`` printed nothing when a run ended on an error, and a
    failure named its input twice ("a.wav: a.wav holds NaN ...")."""
    broken = write_wav(tmp_path / "nan.wav", np.full(RATE, np.nan, dtype=np.float32))
    good = write_wav(tmp_path / "good.wav", noise(1.0))
    out = tmp_path / "o"
    ended = run("separate", broken, "-o", out, "-i", "vn", "--json")
    assert ended.exit_code == 1
    document = json.loads(ended.stdout)
    assert document["exit_code"] == 1 and "NaN" in document["error"]
    bad_argument = run("separate", good, "-o", out, "-i", "vn", "--sample-rate", "x", "--json")
    assert bad_argument.exit_code == 2 and json.loads(bad_argument.stdout)["exit_code"] == 2
    batch = run("separate", broken, good, "-o", out, "-i", "vn", "--json", "--keep-going")
    assert batch.exit_code == 1
    (failure,) = json.loads(batch.stdout)["failures"]
    assert failure.startswith(str(broken)) and failure.count(str(broken)) == 1, failure


def test_an_out_folder_named_like_a_file_is_warned_about(
    tiny_models_dir: Path, mix: Path, tmp_path: Path
) -> None:
    """Found by a trial: ``-o result.wav`` silently made a folder called result.wav."""
    out = tmp_path / "result.wav"
    result = run("separate", mix, "-o", out, "-i", "vn")
    assert result.exit_code == 0, result.stderr
    (line,) = [w for w in warnings_of(result) if "--out" in w]
    assert f"--out {out} looks like a file's name, but it names the output folder" in line
    assert (out / "duet" / "01_vn.wav").is_file()
    again = run("separate", mix, "-o", out, "-i", "vn", "--force")  # a folder now: no warning
    assert not [w for w in warnings_of(again) if "--out" in w]
