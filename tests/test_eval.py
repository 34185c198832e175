"""``vimss eval`` through Typer's runner, on small URMP-layout trees made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from conftest import RATE, SPINNER_START, TERMINAL_ENV, ffmpeg, noise, write_wav
from test_cli import assert_clean_failure
from vimss_cli.cli import app
from vimss_cli.eval import run as eval_run
from vimss_cli.eval import scoring
from vimss_cli.eval.metrics import bss_eval_sources, si_sdr
from vimss_cli.urmp import parse_folder_name

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, ["eval", *(str(a) for a in args)])


def tone(seconds: float, pitch: float, rate: int, seed: int) -> np.ndarray:
    """A harmonic note train with a slow tremolo and a little noise ``(N,)`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * pitch * h * t) / h for h in (1, 2, 3))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * (0.5 + 0.2 * seed) * t)
    return (0.2 * envelope * signal + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def make_piece(root: Path, folder: str, seconds: float = 3.0, rate: int = RATE) -> Path:
    """A URMP piece folder with stems and their sum as the mixture; returns the folder."""
    name = parse_folder_name(folder)
    piece = root / folder
    piece.mkdir(parents=True)
    stems = [
        tone(seconds, 110.0 * (1.5**j), rate, seed=name.number * 10 + j)
        for j in range(len(name.instruments))
    ]
    for j, stem in enumerate(stems, start=1):
        write_wav(piece / name.stem_name(j), stem, rate)
    write_wav(piece / name.mix_name(), np.sum(stems, axis=0), rate)
    return piece


def scored_systems(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The systems scored from now on, one entry per (track, system) scoring: the cache's
    misses."""
    scored: list[str] = []
    score_track = eval_run.score_track

    def counting(*args, **kwargs):
        scored.append(args[1])
        return score_track(*args, **kwargs)

    monkeypatch.setattr(eval_run, "score_track", counting)
    return scored


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "urmp"
    make_piece(root, "01_Jupiter_vn_vc")
    make_piece(root, "02_Hark_fl_cl_bn")
    (root / "Supplementary").mkdir()  # URMP ships other folders beside the pieces
    return root


def by_system(document: dict) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in document["stems"]:
        rows.setdefault(row["system"], []).append(row)
    return rows


def test_baselines_on_a_tree_with_files_and_resume(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    result = run("--dataset", "synth", "--root", tree, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["protocol"] == "museval" and document["rate"] == RATE
    assert document["systems"] == ["mixture", "irm", "ibm"]
    rows = by_system(document)
    assert {k: len(v) for k, v in rows.items()} == {"mixture": 5, "irm": 5, "ibm": 5}
    first = rows["irm"][0]
    assert first["piece"] == "01_Jupiter_vn_vc" and first["name"] == "AuSep_1_vn_01_Jupiter.wav"
    for key in ("SDR", "SIR", "SAR", "SI-SDR", "SDR_v4_median", "ISR_v4_median"):
        assert isinstance(first[key], float), key
    # the oracle masks beat the mixture on every stem, by the protocol and whole-signal SDR
    for mixture, irm in zip(rows["mixture"], rows["irm"], strict=True):
        assert irm["SDR"] > mixture["SDR"] + 3
        assert irm["SDR_v4_median"] > mixture["SDR_v4_median"] + 3
    summary = document["summary"]["irm"]
    assert set(summary["ensemble_size"]) == {"2", "3"}
    assert set(summary["instrument"]) == {"vn", "vc", "fl", "cl", "bn"}
    assert summary["overall"]["all"]["stems"] == 5
    # files: results.json (same stems), one CSV row per stem, a PNG box plot
    saved = json.loads((out / "results.json").read_text())
    assert saved["stems"] == document["stems"]
    lines = (out / "stems.csv").read_text().splitlines()
    assert lines[0].startswith("piece,name,instrument") and len(lines) == 1 + 15
    assert (out / "sdr_boxplot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a second run reads every track from the cache: scoring anything would fail
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("scored again instead of using the cache")

    monkeypatch.setattr(eval_run, "score_track", refuse)
    for name in ("results.json", "stems.csv", "sdr_boxplot.png"):  # published together: as
        (out / name).unlink()  # a run interrupted before its results were written
    again = run("--dataset", "synth", "--root", tree, "--out", out, "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["stems"] == document["stems"]
    assert again.stderr == ""
    # a changed input invalidates its piece's cache entries only
    stem = tree / "01_Jupiter_vn_vc" / "AuSep_1_vn_01_Jupiter.wav"
    write_wav(stem, tone(3.0, 200.0, RATE, seed=99))
    changed = run("--dataset", "synth", "--root", tree, "--out", out, "--force", "--json")
    assert "scored again" in str(changed.exception)


def test_tables_and_pieces(tree: Path) -> None:
    result = run("--dataset", "urmp", "--root", tree, "--pieces", "2", "--no-baselines")
    assert_clean_failure(result, "nothing to score")
    result = run("--dataset", "urmp", "--root", tree, "--pieces", "02")
    assert result.exit_code == 0, result.stderr
    assert "SDR (dB) by instrument" in result.stdout and "SDR (dB) by players" in result.stdout
    assert "cl" in result.stdout and "vn" not in result.stdout
    assert "protocol museval at 8000 Hz" in result.stdout


def test_segments_protocol_skips_silent_segments(tmp_path: Path) -> None:
    root = tmp_path / "urmp"
    piece = make_piece(root, "03_Long_vn_va", seconds=13.0, rate=11025)
    stem = piece / "AuSep_2_va_03_Long.wav"
    audio, _ = soundfile.read(str(stem), dtype="float32")
    audio[65535:] = 0.0  # the viola rests from the second segment on
    write_wav(stem, audio, 11025)
    result = run("--dataset", "urmp", "--root", root, "--protocol", "segments", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["rate"] == 11025
    irm = by_system(document)["irm"]
    assert [len(row["segments"]["SDR"]) for row in irm] == [2, 1]
    cell = document["summary"]["irm"]["overall"]["all"]
    segments = irm[0]["segments"]["SDR"] + irm[1]["segments"]["SDR"]
    assert cell["SDR_count"] == 3
    assert cell["SDR"] == pytest.approx(np.mean(segments), abs=1e-3)
    # the population std over those three segments (not over stems, not zero)
    assert cell["SDR_std"] == pytest.approx(np.std(segments), abs=1e-3)
    stem_means = [row["SDR_segments_mean"] for row in irm]
    assert cell["SDR_std"] != pytest.approx(np.std(stem_means), abs=1e-3)
    assert cell["SDR_std"] > 0.01


def write_folder(folder: Path, signals: dict[str, np.ndarray], rate: int = RATE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, signal in signals.items():
        write_wav(folder / name, signal, rate)
    return folder


def test_references_and_estimates_match_the_metrics(tmp_path: Path) -> None:
    refs = {"vn.wav": tone(3, 220, RATE, 1), "vc.wav": tone(3, 98, RATE, 2)}
    mix = refs["vn.wav"] + refs["vc.wav"]
    ests = {name: 0.8 * ref + 0.1 * mix for name, ref in refs.items()}
    write_folder(tmp_path / "ref", refs)
    write_folder(tmp_path / "est", ests)
    result = run("--references", tmp_path / "ref", "--estimates", tmp_path / "est", "--json")
    assert result.exit_code == 0, result.stderr
    rows = by_system(json.loads(result.stdout))["estimates"]
    assert [(r["name"], r["instrument"]) for r in rows] == [("vc.wav", "vc"), ("vn.wav", "vn")]
    references = np.stack([refs["vc.wav"], refs["vn.wav"]]).astype(np.float64)
    estimates = np.stack([ests["vc.wav"], ests["vn.wav"]]).astype(np.float64)
    expected = bss_eval_sources(references, estimates)
    assert [r["SDR"] for r in rows] == pytest.approx(expected.sdr, abs=1e-3)
    assert [r["SI-SDR"] for r in rows] == pytest.approx(si_sdr(references, estimates), abs=1e-3)
    assert not [n for n in json.loads(result.stdout)["notes"] if "match no reference" in n]

    # found by a review: an estimate matching no reference (a typo in its name, a stem
    # `separate --rest` wrote) was left out without a word
    write_folder(tmp_path / "est", {"vla.wav": ests["vn.wav"]})
    again = run("--references", tmp_path / "ref", "--estimates", tmp_path / "est", "--json")
    assert again.exit_code == 0, again.stderr
    (note,) = [n for n in json.loads(again.stdout)["notes"] if "match no reference" in n]
    assert note.startswith("ref: 1 audio file(s) beside the estimates match no reference")
    assert note.endswith("and were not scored (vla.wav)")


def test_estimates_in_another_audio_format_match_their_references(tmp_path: Path) -> None:
    """FLAC references (as the bundled example's) against WAV stems (as `separate` writes)."""
    refs = {"01_vn.flac": tone(3, 220, RATE, 1), "02_vc.flac": tone(3, 98, RATE, 2)}
    (tmp_path / "ref").mkdir()
    for name, signal in refs.items():
        soundfile.write(str(tmp_path / "ref" / name), signal, RATE, subtype="PCM_16")
    estimates = {name.replace(".flac", ".wav"): signal for name, signal in refs.items()}
    write_folder(tmp_path / "est", estimates)
    result = run("--references", tmp_path / "ref", "--estimates", tmp_path / "est", "--json")
    assert result.exit_code == 0, result.stderr
    rows = by_system(json.loads(result.stdout))["estimates"]
    assert [r["name"] for r in rows] == ["01_vn.flac", "02_vc.flac"]
    assert all(r["SDR"] > 40 for r in rows)  # each scored against its own reference
    soundfile.write(str(tmp_path / "est" / "01_vn.ogg"), refs["01_vn.flac"], RATE)  # a second
    ambiguous = run("--references", tmp_path / "ref", "--estimates", tmp_path / "est")
    assert_clean_failure(ambiguous, "01_vn.flac: several estimates could be its", "01_vn.wav")


def test_rates_and_lengths_are_reconciled_and_reported(tmp_path: Path) -> None:
    refs = {"vn.wav": tone(3, 220, RATE, 1), "vc.wav": tone(3, 98, RATE, 2)}
    write_folder(tmp_path / "ref", refs)
    write_folder(tmp_path / "est", {"vn.wav": tone(3.1, 220, 16000, 1)}, rate=16000)
    write_folder(tmp_path / "est", {"vc.wav": tone(2.9, 98, RATE, 2)})
    result = run("--references", tmp_path / "ref", "--estimates", tmp_path / "est", "--json")
    assert result.exit_code == 0, result.stderr
    notes = " | ".join(json.loads(result.stdout)["notes"])
    assert "resampled from 16000 Hz to 8000 Hz: 1 file (est/vn.wav (estimate))" in notes
    assert "vn.wav (estimate): 800 samples longer" in notes and "cut" in notes
    assert "vc.wav (estimate): 800 samples shorter" in notes and "zero-padded" in notes


def test_a_mixture_that_is_not_the_sum_of_its_references_is_noted(tmp_path: Path) -> None:
    """Found by a review: an AuMix replaced by another recording was scored without a word."""
    piece = make_piece(tmp_path / "data", "01_Jupiter_vn_vc")
    args = ("--dataset", "urmp", "--root", tmp_path / "data", "--json")
    plain = run(*args, "--out", tmp_path / "a")
    assert plain.exit_code == 0, plain.stderr
    assert not [n for n in json.loads(plain.stdout)["notes"] if "not the sum" in n]
    write_wav(piece / "AuMix_01_Jupiter_vn_vc.wav", noise(3.0) * 0.3)
    other = run(*args, "--out", tmp_path / "b")
    assert other.exit_code == 0, other.stderr
    notes = json.loads(other.stdout)["notes"]
    assert any("AuMix_01_Jupiter_vn_vc.wav is not the sum of its references" in n for n in notes)


def test_lengths_too_different_fail(tmp_path: Path) -> None:
    write_folder(tmp_path / "ref", {"vn.wav": tone(3, 220, RATE, 1)})
    write_folder(tmp_path / "est", {"vn.wav": tone(1, 220, RATE, 1)})
    result = run("--references", tmp_path / "ref", "--estimates", tmp_path / "est")
    assert_clean_failure(result, "lasts 1.00 s but its reference 3.00 s")


def test_silent_reference_is_undefined_not_a_number(tmp_path: Path) -> None:
    refs = {"vn.wav": tone(3, 220, RATE, 1), "vc.wav": np.zeros(3 * RATE, np.float32)}
    write_folder(tmp_path / "ref", refs)
    write_folder(tmp_path / "est", {"vn.wav": refs["vn.wav"], "vc.wav": tone(3, 98, RATE, 2)})
    args = ("--references", tmp_path / "ref", "--estimates", tmp_path / "est", "--no-baselines")
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    silent = next(r for r in document["stems"] if r["name"] == "vc.wav")
    assert silent["undefined"] == "reference is silent"
    assert silent["SDR"] is None and silent["SI-SDR"] is None and silent["SDR_v4_median"] is None
    assert any("vc.wav: reference is silent" in note for note in document["notes"])
    table = run(*args)
    assert table.exit_code == 0 and "metrics are undefined" in table.stderr


def test_model_is_scored_beside_the_baselines(tiny_models_dir: Path, tree: Path) -> None:
    result = run("--dataset", "urmp", "--root", tree, "--pieces", "1", "--model", "tiny", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["systems"] == ["model", "mixture", "irm", "ibm"]
    assert document["model"] == "tiny"
    assert document["queries"] == "labels"  # --queries auto: what the (label-only) model takes
    model_rows = by_system(document)["model"]
    assert [r["instrument"] for r in model_rows] == ["vn", "vc"]
    assert "untrained" in result.stderr
    video = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--model", "tiny")
    video += ("--queries", "video", "--no-baselines", "--json")
    assert_clean_failure(run(*video), "01_Jupiter_vn_vc has no video file")
    piece = tree / "01_Jupiter_vn_vc"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=64x48:r=10:d=3",
        str(piece / "Vid_01_Jupiter_vn_vc.mp4"),
    )
    with_video = run(*video)
    assert with_video.exit_code == 0, with_video.stderr
    document = json.loads(with_video.stdout)
    assert by_system(document)["model"][0]["SDR"] == model_rows[0]["SDR"]  # labels only
    assert any("takes labels only" in note for note in document["notes"])


def test_model_cache_follows_the_checkpoint_and_the_video_not_their_paths(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import make_tiny_model
    from vimss_cli.checkpoint import save_checkpoint

    scored = scored_systems(monkeypatch)
    model = tmp_path / "model.safetensors"
    save_checkpoint(model, make_tiny_model(seed=0), {"trained": True})
    args = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--model", model)
    args += ("--no-baselines", "--out", tmp_path / "run", "--force", "--json")

    def model_sdr(*extra: str) -> list[float]:
        result = run(*args, *extra)
        assert result.exit_code == 0, result.stderr
        return [row["SDR"] for row in by_system(json.loads(result.stdout))["model"]]

    first = model_sdr()
    assert model_sdr() == first and scored == ["model"]  # the second run was cached
    save_checkpoint(model, make_tiny_model(seed=1), {"trained": True})  # retrained, same path
    retrained = model_sdr()
    assert scored == ["model", "model"] and retrained != first
    video = tree / "01_Jupiter_vn_vc" / "Vid_01_Jupiter_vn_vc.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=64x48:r=10:d=3", str(video))
    assert model_sdr("--queries", "video") == retrained and len(scored) == 3
    assert model_sdr("--queries", "video") == retrained and len(scored) == 3
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x48:r=10:d=3", str(video))  # another video
    assert model_sdr("--queries", "video") == retrained and len(scored) == 4


def test_segment_grams_are_built_once_per_track_for_all_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    gram = eval_run.ReferenceGram

    def counting(references, *args, **kwargs):
        built.append(references.shape[0])
        return gram(references, *args, **kwargs)

    monkeypatch.setattr(eval_run, "ReferenceGram", counting)  # the whole track's
    monkeypatch.setattr(scoring, "ReferenceGram", counting)  # the segments'
    root = tmp_path / "urmp"
    make_piece(root, "03_Long_vn_va", seconds=13.0, rate=11025)  # two 65535-sample segments
    result = run("--dataset", "urmp", "--root", root, "--protocol", "segments", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["systems"] == ["mixture", "irm", "ibm"]
    assert len(built) == 1 + 2  # the whole track once, each segment once: not once per system


def test_two_runs_into_one_folder_do_not_share_temporary_files(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    out = tmp_path / "run"
    piece = out / "cache" / "01_Jupiter_vn_vc"
    piece.mkdir(parents=True)
    # what another run writing into the folder holds at this moment, under fixed names
    blockers = [out / "results.json.tmp", out / "stems.csv.tmp", out / "sdr_boxplot.tmp.png"]
    blockers += [piece / "mixture.tmp"]
    for blocker in blockers:
        blocker.mkdir()
    renamed: list[str] = []
    replace = os.replace

    def recording(source, target):
        renamed.append(Path(source).name)
        return replace(source, target)

    monkeypatch.setattr(os, "replace", recording)
    args = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--out", out, "--json")
    for _ in range(2):
        result = run(*args, "--rate", "8000" if not renamed else "4000", "--force")  # 2nd: no cache
        assert result.exit_code == 0, result.stderr
    assert len(renamed) == 2 * (3 + 3) and len(set(renamed)) == len(renamed)
    assert all(blocker.is_dir() for blocker in blockers)  # the other run's files untouched
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {"results.json", "stems.csv", "sdr_boxplot.png"} | {
        f"cache/01_Jupiter_vn_vc/{system}.json" for system in ("mixture", "irm", "ibm")
    }


def test_compare_two_runs(tree: Path, tmp_path: Path) -> None:
    first = ("--dataset", "urmp", "--root", tree)
    assert run(*first, "--out", tmp_path / "a").exit_code == 0
    # run B: noise added to the mixtures, so the mixture baseline must score lower
    for mix_path in tree.glob("*/AuMix_*.wav"):
        mix, _ = soundfile.read(str(mix_path), dtype="float32")
        noise = 0.05 * np.random.default_rng(0).standard_normal(mix.size).astype(np.float32)
        write_wav(mix_path, mix + noise)
    assert run(*first, "--out", tmp_path / "b").exit_code == 0
    result = run("compare", tmp_path / "a", tmp_path / "b", "--json")
    assert result.exit_code == 0, result.stderr
    mixture = json.loads(result.stdout)["systems"]["mixture"]["SDR"]
    assert mixture["pairs"] == 5 and mixture["median_difference"] < 0
    assert mixture["second_median"] < mixture["first_median"]
    assert mixture["second_better"] == 0
    assert mixture["mean_difference_ci95"][1] < 0  # every stem lower: the interval is too
    shown = run("compare", tmp_path / "a", tmp_path / "b")
    assert shown.exit_code == 0 and "median diff" in shown.stdout
    assert "95 % bootstrap interval" in shown.stdout
    assert shown.stderr == ""
    # the old spelling still works, and says what replaces it
    old = run("--compare", tmp_path / "a", tmp_path / "b", "--json")
    assert old.exit_code == 0 and json.loads(old.stdout) == json.loads(result.stdout)
    assert old.stderr == "warning: --compare is deprecated; use vimss eval compare A B\n"


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((), "say what to score"),
        (("--dataset", "urmp"), "needs --root"),
        (("--root", "."), "--root needs --dataset urmp or synth"),
        (("--dataset", "musdb", "--root", "."), "unknown --dataset"),
        (("--references", "."), "go together"),
        (("--dataset", "urmp", "--root", ".", "--protocol", "sisec"), "unknown --protocol"),
        (("--dataset", "urmp", "--root", ".", "--pieces", "1,x"), "--pieces expects"),
    ],
)
def test_bad_options(args: tuple[str, ...], fragment: str, tmp_path: Path) -> None:
    make_piece(tmp_path / "tree", "01_Jupiter_vn_vc")
    args = tuple(str(tmp_path / "tree") if a == "." else a for a in args)
    assert_clean_failure(run(*args), fragment)


def test_output_that_is_a_file_fails(tree: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("the user's file")
    result = run("--dataset", "urmp", "--root", tree, "--out", target)
    assert_clean_failure(result, "output path exists and is not a directory", str(target))
    assert target.read_text() == "the user's file"


@pytest.mark.parametrize("rate", ["999", "10000000"])
def test_an_evaluation_rate_out_of_range_is_refused(tree: Path, rate: str) -> None:
    result = run("--dataset", "urmp", "--root", tree, "--rate", rate)
    assert_clean_failure(result, f"--rate must be between 1000 and 192000 Hz, got {rate}")


def test_empty_root_fails(tmp_path: Path) -> None:
    assert_clean_failure(run("--dataset", "urmp", "--root", tmp_path), "no URMP piece folders")


def test_a_root_of_split_folders_names_them(tmp_path: Path) -> None:
    make_piece(tmp_path / "ds" / "valid", "01_Jupiter_vn_vc")
    (tmp_path / "ds" / "train").mkdir()
    result = run("--dataset", "synth", "--root", tmp_path / "ds")
    assert_clean_failure(
        result,
        f"under {tmp_path / 'ds'}; it holds split folders (train, valid): give one, "
        f"e.g. {tmp_path / 'ds' / 'valid'}",
    )


def test_missing_stem_fails(tree: Path) -> None:
    (tree / "02_Hark_fl_cl_bn" / "AuSep_3_bn_02_Hark.wav").unlink()
    result = run("--dataset", "urmp", "--root", tree)
    assert_clean_failure(result, "02_Hark_fl_cl_bn is missing stems: AuSep_3_bn_02_Hark.wav")


@pytest.mark.parametrize(
    "old, new",
    [
        ("AuSep_2_vc_01_Jupiter.wav", "AuSep_2_va_01_Jupiter.wav"),
        ("AuMix_01_Jupiter_vn_vc.wav", "AuMix_01_Jupiter_vn_va.wav"),
    ],
)
def test_folder_name_disagreeing_with_files_fails(tree: Path, old: str, new: str) -> None:
    piece = tree / "01_Jupiter_vn_vc"
    (piece / old).rename(piece / new)
    result = run("--dataset", "urmp", "--root", tree)
    assert_clean_failure(result, "disagrees with its files", new)


def test_missing_estimate_fails(tmp_path: Path) -> None:
    write_folder(
        tmp_path / "ref", {"vn.wav": tone(3, 220, RATE, 1), "vc.wav": tone(3, 98, RATE, 2)}
    )
    write_folder(tmp_path / "est", {"vn.wav": tone(3, 220, RATE, 1)})
    result = run("--references", tmp_path / "ref", "--estimates", tmp_path / "est")
    assert_clean_failure(result, "missing estimates", "vc.wav")
    urmp = tmp_path / "piece"
    write_folder(urmp, {"AuSep_1_vn_01_Duet.wav": tone(3, 220, RATE, 1)})
    result = run("--references", urmp, "--estimates", tmp_path / "est")
    # the names vimss separate writes, in the folder the user gave, not the reference's path
    assert_clean_failure(result, f"missing estimates in {tmp_path / 'est'}", "01_vn.wav")


def test_compare_says_when_the_protocols_differ(tmp_path: Path) -> None:
    root = tmp_path / "urmp"
    make_piece(root, "01_Long_vn_va", seconds=6.5, rate=11025)  # one segment
    first = ("--dataset", "urmp", "--root", root)
    assert run(*first, "--out", tmp_path / "a").exit_code == 0
    assert run(*first, "--protocol", "segments", "--out", tmp_path / "b").exit_code == 0
    shown = run("compare", tmp_path / "a", tmp_path / "b")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stderr.startswith("warning: the runs used different protocols (museval, segm")
    assert "whole-clip SDR" in shown.stdout and "protocol's SDR" not in shown.stdout


def test_a_file_given_for_save_estimates_leaves_no_out_folder(tree: Path, tmp_path: Path) -> None:
    """Found by a review: --out was made before --save-estimates was found to be a file."""
    afile = tmp_path / "afile.txt"
    afile.write_text("mine\n")
    out = tmp_path / "evalD"
    result = run("--dataset", "urmp", "--root", tree, "--pieces", "1", "--out", out,
                 "--save-estimates", afile, "--model", "default")  # fmt: skip
    assert_clean_failure(result, "not a directory", str(afile))
    assert not out.exists() and afile.read_text() == "mine\n"


def test_compare_needs_result_folders(tmp_path: Path) -> None:
    assert_clean_failure(run("compare", tmp_path, tmp_path), "not a vimss eval output folder")
    assert_clean_failure(run("--compare", tmp_path, tmp_path), "not a vimss eval output folder")
    # found by a review: JSON that is not eval's results gave KeyError and TypeError tracebacks
    for text in ('{"foo": 1}', "[]", '{"protocol": "x", "stems": [{"piece": "01"}]}'):
        (tmp_path / "results.json").write_text(text)
        compared = run("compare", tmp_path, tmp_path)
        assert_clean_failure(compared, "is not the results of `vimss eval`")


def test_eval_scores_separates_own_output_against_a_urmp_piece(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "urmp"
    piece = root / "01_Duet_vn_vc"
    piece.mkdir(parents=True)
    violin, cello = (rng.standard_normal(2 * RATE).astype(np.float32) * 0.1 for _ in range(2))
    # FLAC references beside the mixture, as a user's own URMP-layout folder may hold
    soundfile.write(str(piece / "AuSep_1_vn_01_Duet.flac"), violin, RATE)
    soundfile.write(str(piece / "AuSep_2_vc_01_Duet.flac"), cello, RATE)
    mix = write_wav(piece / "AuMix_01_Duet_vn_vc.wav", violin + cello)
    out = tmp_path / "separated"
    made = runner.invoke(app, ["separate", str(mix), "-o", str(out), "--format", "flac24"])
    assert made.exit_code == 0, made.output
    # separate's own folder for the piece, its -o folder for the piece or for the root
    for references, estimates in ((piece, out / mix.stem), (piece, out), (root, out)):
        result = run("--references", references, "--estimates", estimates, "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        rows = by_system(document)["estimates"]
        assert [(r["name"], r["instrument"]) for r in rows] == [
            ("AuSep_1_vn_01_Duet.flac", "vn"),
            ("AuSep_2_vc_01_Duet.flac", "vc"),
        ]
        # the piece's own AuMix is the mixture of the baselines, not the references' sum
        assert not [n for n in document["notes"] if "no mixture file" in n], document["notes"]


def test_saved_estimates_score_the_same_when_read_back(
    tiny_models_dir: Path, tree: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "estimates"
    args = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--model", "tiny")
    args += ("--no-baselines",)
    result = run(*args, "--save-estimates", saved, "--json")
    assert result.exit_code == 0, result.output
    model_rows = by_system(json.loads(result.stdout))["model"]
    piece = saved / "01_Jupiter_vn_vc"
    assert [p.name for p in saved.iterdir()] == [piece.name]
    assert sorted(p.name for p in piece.iterdir()) == ["01_vn.wav", "02_vc.wav"]
    info = soundfile.info(str(piece / "01_vn.wav"))
    assert (info.samplerate, info.frames, info.subtype) == (RATE, 3 * RATE, "FLOAT")
    # the piece's references against the saved folder: the scores the model had
    check = run("--references", tree / piece.name, "--estimates", piece, "--no-baselines", "--json")
    assert check.exit_code == 0, check.output
    rows = by_system(json.loads(check.stdout))["estimates"]
    assert [(r["name"], r["instrument"]) for r in rows] == [
        (r["name"], r["instrument"]) for r in model_rows
    ]
    for row, scored in zip(rows, model_rows, strict=True):
        for metric in ("SDR", "SI-SDR", "SDR_v4_median"):
            assert row[metric] == pytest.approx(scored[metric], abs=1e-3), metric
    report = runner.invoke(app, ["report", str(piece)])
    assert report.exit_code == 0, report.output
    assert (piece / "report.html").is_file()
    # saved estimates are not replaced without --force, and that is said before the model loads
    before = (piece / "01_vn.wav").read_bytes()
    again = run(*args, "--save-estimates", saved)
    assert_clean_failure(again, "already exist", "01_vn.wav", "--force")
    assert "untrained" not in again.stderr
    assert (piece / "01_vn.wav").read_bytes() == before
    forced = run(*args, "--save-estimates", saved, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert sorted(p.name for p in piece.iterdir()) == ["01_vn.wav", "02_vc.wav", "report.html"]


def test_an_interrupted_run_that_saves_estimates_resumes_without_force(
    tiny_models_dir: Path, tree: Path, tmp_path: Path
) -> None:
    """Found by a new user's trial: a run with --save-estimates that failed on its second
    piece could not be run again (its first piece's stems 'already exist') without --force,
    which would separate everything again; the docs promise resuming from the cache."""
    saved, out = tmp_path / "estimates", tmp_path / "results"
    broken = tree / "02_Hark_fl_cl_bn" / "AuSep_3_bn_02_Hark.wav"
    good = broken.read_bytes()
    broken.write_text("not audio")
    args = ("--dataset", "urmp", "--root", tree, "--model", "tiny", "--no-baselines")
    args += ("-o", out, "--save-estimates", saved)
    failed = run(*args)
    assert failed.exit_code != 0 and "AuSep_3_bn_02_Hark.wav" in failed.stderr
    first = saved / "01_Jupiter_vn_vc" / "01_vn.wav"
    kept = first.read_bytes(), first.stat().st_mtime_ns
    broken.write_bytes(good)
    resumed = run(*args, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert (first.read_bytes(), first.stat().st_mtime_ns) == kept  # kept, not written again
    assert (saved / "02_Hark_fl_cl_bn" / "03_bn.wav").is_file()
    assert len(by_system(json.loads(resumed.stdout))["model"]) == 5
    # stems of another run (another --out, or this --out with other settings) are refused
    elsewhere = run(*args[:-4], "-o", tmp_path / "other", "--save-estimates", saved)
    assert_clean_failure(elsewhere, "already exist", "01_vn.wav", "--force")
    for written in out.iterdir():  # as if interrupted again, before its results
        if written.is_file():
            written.unlink()
    other_settings = run(*args, "--no-refine")
    assert_clean_failure(other_settings, "already exist", "01_vn.wav", "--force")
    # and so are stems changed since they were saved
    first.write_bytes(first.read_bytes()[:-4] + b"\0\0\0\0")
    changed = run(*args)
    assert_clean_failure(changed, "already exist", "01_vn.wav", "--force")
    assert first.read_bytes()[-4:] == b"\0\0\0\0"  # nothing was overwritten


def test_save_estimates_needs_a_model(tree: Path, tmp_path: Path) -> None:
    result = run("--dataset", "urmp", "--root", tree, "--save-estimates", tmp_path / "e")
    assert_clean_failure(result, "--save-estimates", "--model")
    assert not (tmp_path / "e").exists()


def test_start_up_progress_on_a_terminal_only(tiny_models_dir: Path, tree: Path) -> None:
    args = ["eval", "--dataset", "urmp", "--root", str(tree), "--pieces", "1", "--model", "tiny"]
    args += ["--no-baselines"]
    shown = runner.invoke(app, args, env=TERMINAL_ENV)
    assert shown.exit_code == 0, shown.output
    assert SPINNER_START in shown.stderr
    for phase in (
        "loading model tiny...",
        "[1/1] 01_Jupiter_vn_vc: reading the references and the mixture...",
        "[1/1] 01_Jupiter_vn_vc: separating with the model...",
        "[1/1] 01_Jupiter_vn_vc: model scored",
    ):
        assert phase in shown.stderr, phase
    # not on a terminal, nor with --json or --quiet: no spinner and no progress lines
    for extra, env in (([], {}), (["--json"], TERMINAL_ENV), (["--quiet"], TERMINAL_ENV)):
        hidden = runner.invoke(app, [*args, *extra], env=env)
        assert hidden.exit_code == 0, hidden.output
        assert SPINNER_START not in hidden.stderr and "01_Jupiter" not in hidden.stderr, extra
        assert "untrained" in hidden.stderr  # warnings stay
        assert "SDR" in hidden.stdout  # and the results (tables, or JSON)


def test_evaluate_from_python_names_the_model_and_its_queries(
    tiny_models_dir: Path, tree: Path
) -> None:
    from vimss_cli.api import Separator
    from vimss_cli.eval.systems import plan_systems
    from vimss_cli.eval.tracks import select_tracks

    tracks, user_estimates = select_tracks("urmp", tree, "1", None, None)
    assert [t.piece for t in tracks] == ["01_Jupiter_vn_vc"] and not user_estimates
    systems = plan_systems(user_estimates=False, model="tiny", baselines=False)
    assert systems == ["model"]
    separator = Separator("tiny", device="cpu")
    evaluation = eval_run.evaluate(
        tracks, systems, "museval", RATE, separator=separator, queries="auto"
    )
    # the model's name, not its file; "auto" queries became what the model takes
    assert (evaluation.model, evaluation.queries) == ("tiny", "labels")
    assert evaluation.describe_model() == "model tiny, label queries, refined by harmonic masks"
    assert evaluation.to_json()["harmonic"] is True
    assert evaluation.to_json()["templates"] is True
    alone = Separator("tiny", device="cpu", templates=False)
    evaluation = eval_run.evaluate(tracks, systems, "museval", RATE, separator=alone)
    assert evaluation.describe_model().endswith("refined by harmonic masks without templates")
    assert evaluation.to_json()["templates"] is False
    soft = Separator("tiny", device="cpu", harmonic=False)
    evaluation = eval_run.evaluate(tracks, systems, "museval", RATE, separator=soft)
    assert evaluation.describe_model() == "model tiny, label queries, refined by soft masks"
    assert evaluation.to_json()["harmonic"] is False
    assert evaluation.to_json()["templates"] is None
    baselines = eval_run.evaluate(tracks, ["mixture"], "museval", RATE)
    assert (baselines.model, baselines.queries) == (None, None)


def strict_json(text: str) -> dict:
    """JSON as the standard has it: NaN and Infinity are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_segments_of_pieces_all_shorter_than_a_segment_are_refused(tmp_path: Path) -> None:
    # found by a new user's trial: a table of n/a and a zero exit, the reason only in a
    # note that -q hides
    root = tmp_path / "urmp"
    make_piece(root, "01_Short_vn_cl", seconds=3.0, rate=11025)
    result = run("--dataset", "urmp", "--root", root, "--protocol", "segments", "-q")
    assert_clean_failure(result, "every piece is shorter than one 65535-sample segment")
    assert "--protocol museval" in result.stderr


def test_segments_leave_out_pieces_shorter_than_a_segment_with_a_note(tmp_path: Path) -> None:
    import warnings

    root = tmp_path / "urmp"
    make_piece(root, "01_Short_vn_cl", seconds=3.0, rate=11025)  # under 65535 samples
    make_piece(root, "02_Long_vn_va", seconds=6.5, rate=11025)  # one segment
    args = ("--dataset", "urmp", "--root", root, "--protocol", "segments")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(*args, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    assert not [w for w in caught if issubclass(w.category, (RuntimeWarning, UserWarning))], [
        str(w.message) for w in caught
    ]
    document = strict_json((tmp_path / "run" / "results.json").read_text())
    assert strict_json(result.stdout) == document
    clarinet = document["summary"]["irm"]["instrument"]["cl"]
    assert clarinet["SDR"] is None and clarinet["SDR_std"] is None and clarinet["SDR_count"] == 0
    assert document["summary"]["irm"]["instrument"]["va"]["SDR_count"] == 1
    short = [n for n in document["notes"] if "01_Short_vn_cl" in n]
    assert len(short) == 1 and "shorter than one 65535-sample segment" in short[0]
    assert "left out of the segments figures" in short[0] and "02_Long" not in short[0]
    table = run(*args, "--out", tmp_path / "run", "--force")  # from the cache
    assert table.exit_code == 0, table.stderr
    assert any(line.split()[1:2] == ["cl"] and "n/a" in line for line in table.stdout.splitlines())
    assert "Mean of empty slice" not in table.stderr and "left out of the segments" in table.stderr


def test_summary_counts_stems_with_values_and_names_silent_estimates(tmp_path: Path) -> None:
    refs = {"vn.wav": tone(3, 220, RATE, 1), "vc.wav": tone(3, 98, RATE, 2)}
    write_folder(tmp_path / "ref", refs)
    write_folder(tmp_path / "est", {"vn.wav": refs["vn.wav"] + refs["vc.wav"]})
    write_folder(tmp_path / "est", {"vc.wav": np.zeros(3 * RATE, np.float32)})  # silent
    args = ("--references", tmp_path / "ref", "--estimates", tmp_path / "est", "--no-baselines")
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    summary = document["summary"]["estimates"]
    # the silent estimate voids every 1 s window of the piece (museval), so no stem has a value
    assert summary["overall"]["all"]["stems"] == 0 and summary["overall"]["all"]["SDR"] is None
    assert summary["instrument"]["vn"]["stems"] == 0
    voided = [n for n in document["notes"] if "vn.wav" in n]
    assert len(voided) == 1 and "vc.wav" in voided[0] and "silent" in voided[0], document["notes"]
    table = run(*args)
    assert table.exit_code == 0 and "n/a (0)" not in table.stdout and "(2)" not in table.stdout


def test_a_perfect_estimate_is_noted_as_infinite(tmp_path: Path) -> None:
    refs = {"vn.wav": tone(3, 220, RATE, 1), "vc.wav": tone(3, 98, RATE, 2)}
    write_folder(tmp_path / "ref", refs)
    write_folder(tmp_path / "est", {"vn.wav": refs["vn.wav"], "vc.wav": 0.5 * refs["vc.wav"]})
    args = ("--references", tmp_path / "ref", "--estimates", tmp_path / "est", "--no-baselines")
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    document = strict_json(result.stdout)
    perfect = next(r for r in document["stems"] if r["name"] == "vn.wav")
    assert perfect["SDR_v4_median"] is None and perfect["SI-SDR"] is None
    assert perfect["infinite"] == "SI-SDR, SDR_v4_median +inf (the estimate equals the reference)"
    scaled = next(r for r in document["stems"] if r["name"] == "vc.wav")
    assert scaled["SI-SDR"] is None and isinstance(scaled["SDR_v4_median"], float)
    assert scaled["infinite"] == "SI-SDR +inf (the estimate is the reference times a gain)"
    notes = sorted(n for n in document["notes"] if "+inf" in n)
    assert len(notes) == 2 and all("left out of the medians" in n for n in notes)
    assert notes[0] == (
        "SI-SDR +inf (the estimate is the reference times a gain): ref/vc.wav (estimates); "
        "shown as n/a (null in JSON) and left out of the medians and means"
    )
    assert "equals the reference): ref/vn.wav (estimates);" in notes[1] and "vc" not in notes[1]


def test_multichannel_files_are_noted_as_downmixed(tmp_path: Path) -> None:
    left, right = tone(3, 220, RATE, 1), tone(3, 330, RATE, 2)
    write_folder(tmp_path / "ref", {"vn.wav": np.stack([left, right], axis=1)})
    write_folder(tmp_path / "est", {"vn.wav": np.stack([right, left], axis=1)})  # swapped
    args = ("--references", tmp_path / "ref", "--estimates", tmp_path / "est", "--no-baselines")
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    notes = json.loads(result.stdout)["notes"]
    downmixed = [n for n in notes if "mono" in n]
    assert len(downmixed) == 1 and "2 channels" in downmixed[0] and "2 files" in downmixed[0]
    assert "ref/vn.wav" in downmixed[0] and "est/vn.wav (estimate)" in downmixed[0]


def write_run(folder: Path, rows: list[tuple[str, float]], **fields: object) -> Path:
    """An eval output folder whose ``mixture`` system scored ``(piece, SDR)`` rows."""
    stems = [
        {"piece": piece, "name": "vn.wav", "instrument": "vn", "system": "mixture", "SDR": sdr}
        for piece, sdr in rows
    ]
    folder.mkdir()
    document = {"protocol": "museval", "rate": 8000, "model": None, "queries": None, **fields}
    (folder / "results.json").write_text(json.dumps({**document, "stems": stems}))
    return folder


def test_compare_warns_when_rate_model_or_queries_differ(tmp_path: Path) -> None:
    rows = [(f"p{i}", float(i)) for i in range(4)]
    a = write_run(tmp_path / "a", rows, rate=8000, model="m1", queries="labels")
    b = write_run(tmp_path / "b", rows, rate=16000, model="m2", queries="video")
    same = write_run(tmp_path / "same", rows, rate=8000, model="m1", queries="labels")
    shown = run("compare", a, b)
    assert shown.exit_code == 0, shown.stderr
    warnings = shown.stderr.splitlines()
    assert len(warnings) == 3 and all(w.startswith("warning: the runs ") for w in warnings)
    assert "8000" in warnings[0] and "16000" in warnings[0]
    assert "m1" in warnings[1] and "m2" in warnings[1]
    assert "labels" in warnings[2] and "video" in warnings[2]
    as_json = run("compare", a, b, "--json")
    assert as_json.stderr == shown.stderr and len(json.loads(as_json.stdout)["warnings"]) == 3
    assert run("compare", a, same).stderr == ""


def test_compare_reads_a_run_from_before_harmonic_masks_as_soft_masks(tmp_path: Path) -> None:
    rows = [(f"p{i}", float(i)) for i in range(4)]
    old = write_run(tmp_path / "old", rows, model="m", queries="labels", refined=True)
    soft = write_run(tmp_path / "soft", rows, model="m", queries="labels", refined=True,
                     harmonic=False)  # fmt: skip
    harmonic = write_run(tmp_path / "harmonic", rows, model="m", queries="labels", refined=True,
                         harmonic=True)  # fmt: skip
    assert run("compare", old, soft).stderr == ""
    (warning,) = run("compare", old, harmonic).stderr.splitlines()
    assert "different masks" in warning and "(False, True)" in warning


def test_compare_reads_harmonic_masks_from_before_the_templates_as_without(
    tmp_path: Path,
) -> None:
    rows = [(f"p{i}", float(i)) for i in range(4)]
    fields = {"model": "m", "queries": "labels", "refined": True, "harmonic": True}
    old = write_run(tmp_path / "old", rows, **fields)
    alone = write_run(tmp_path / "alone", rows, **fields, templates=False)
    blended = write_run(tmp_path / "blended", rows, **fields, templates=True)
    assert run("compare", old, alone).stderr == ""
    (warning,) = run("compare", old, blended).stderr.splitlines()
    assert "different harmonic templates" in warning and "(False, True)" in warning


def test_reusing_out_needs_force(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--out", out)
    assert run(*args, "--json").exit_code == 0
    before = (out / "results.json").read_text()
    again = run(*args, "--rate", "4000")
    assert_clean_failure(again, str(out / "results.json"), "already exist", "--force")
    assert (out / "results.json").read_text() == before
    forced = run(*args, "--rate", "4000", "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((out / "results.json").read_text())["rate"] == 4000


def test_a_users_own_files_named_like_the_results_are_not_replaced_without_force(
    tree: Path, tmp_path: Path
) -> None:
    """Found by a review: only results.json was checked, so a user's own stems.csv and
    sdr_boxplot.png in --out were replaced without --force."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "stems.csv").write_text("my data\n")
    (out / "sdr_boxplot.png").write_text("my picture")
    args = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--out", out)
    refused = run(*args)
    assert_clean_failure(refused, str(out / "stems.csv"), "sdr_boxplot.png", "--force")
    assert (out / "stems.csv").read_text() == "my data\n"
    assert (out / "sdr_boxplot.png").read_text() == "my picture"
    assert run(*args, "--force", "--json").exit_code == 0


def test_a_run_that_fails_while_writing_leaves_the_earlier_results_whole(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: results.json and stems.csv were published before the plot was
    drawn, so an interrupted --force run left new results beside the old plot."""
    from vimss_cli.eval import report

    out = tmp_path / "run"
    args = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--out", out)
    assert run(*args, "--json").exit_code == 0
    before = {name: (out / name).read_bytes() for name in report_files()}

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_boxplot", interrupted)
    assert run(*args, "--rate", "4000", "--force").exit_code != 0
    assert {name: (out / name).read_bytes() for name in report_files()} == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def report_files() -> list[str]:
    from vimss_cli.eval.report import CSV_NAME, PLOT_NAME, RESULTS_NAME

    return [RESULTS_NAME, CSV_NAME, PLOT_NAME]


def test_cache_key_holds_the_vimss_version(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vimss_cli

    scored = scored_systems(monkeypatch)
    args = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--out", tmp_path / "run")
    assert run(*args, "--json").exit_code == 0 and len(scored) == 3
    assert run(*args, "--force", "--json").exit_code == 0 and len(scored) == 3  # cached
    monkeypatch.setattr(vimss_cli, "__version__", "99.0.0")
    assert run(*args, "--force", "--json").exit_code == 0 and len(scored) == 6


def test_no_bootstrap_interval_for_fewer_than_three_pairs(tmp_path: Path) -> None:
    from vimss_cli.eval.report import compare_runs

    a = write_run(tmp_path / "a", [("p1", 1.0), ("p2", 2.0)])
    b = write_run(tmp_path / "b", [("p1", 2.0), ("p2", 2.5)])
    cell = compare_runs(*(json.loads((f / "results.json").read_text()) for f in (a, b)))
    sdr = cell.systems["mixture"]["SDR"]
    assert sdr["pairs"] == 2 and sdr["mean_difference_ci95"] is None
    assert "fewer than 3 pairs" in sdr["mean_difference_ci95_note"]
    shown = run("compare", a, b)
    assert shown.exit_code == 0, shown.stderr
    assert "n/a (fewer than 3 pairs)" in shown.stdout and "[+" not in shown.stdout


def test_auto_video_queries_without_videos_advise_labels_before_separating(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from conftest import TINY_CONFIG, make_tiny_model
    from vimss_cli.checkpoint import save_checkpoint

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a piece was separated before the queries were checked")

    monkeypatch.setattr(eval_run, "system_estimates", refuse)
    model = tmp_path / "video.safetensors"
    config = dataclasses.replace(TINY_CONFIG, appearance_dim=4)
    save_checkpoint(model, make_tiny_model(config), {"trained": True})
    args = ("--dataset", "urmp", "--root", tree, "--model", model, "--no-baselines")
    result = run(*args)
    assert_clean_failure(result, "01_Jupiter_vn_vc", "02_Hark_fl_cl_bn", "--queries labels")
    assert "--queries video" not in result.stderr
    explicit = run(*args, "--queries", "video")
    assert_clean_failure(explicit, "no video file", "--queries labels")


@pytest.mark.parametrize("where", ["root", "piece", "inside", "above"])
def test_save_estimates_refuses_the_dataset(tiny_models_dir: Path, tree: Path, where: str) -> None:
    folder = {
        "root": tree,
        "piece": tree / "01_Jupiter_vn_vc",
        "inside": tree / "estimates",
        "above": tree.parent,
    }[where]
    before = sorted(p.relative_to(tree.parent) for p in tree.parent.rglob("*"))
    args = ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--model", "tiny")
    result = run(*args, "--no-baselines", "--save-estimates", folder)
    assert_clean_failure(result, "--save-estimates", str(folder), "dataset")
    assert "untrained" not in result.stderr  # refused before the model loads
    assert sorted(p.relative_to(tree.parent) for p in tree.parent.rglob("*")) == before


def trained_tiny_args(tree: Path, tmp_path: Path) -> tuple:
    """``vimss eval`` arguments for piece 1 of ``tree`` with a tiny model marked trained,
    its output in ``tmp_path / "run"``."""
    from conftest import make_tiny_model
    from vimss_cli.checkpoint import save_checkpoint

    model = tmp_path / "model.safetensors"
    save_checkpoint(model, make_tiny_model(seed=0), {"trained": True})
    return ("--dataset", "urmp", "--root", tree, "--pieces", "1", "--model", model, "--out",
            tmp_path / "run")  # fmt: skip


@pytest.mark.parametrize(
    ("on", "off", "key"),
    [
        ("--harmonic", "--no-harmonic", "harmonic"),  # harmonic masks or plain soft masks
        ("--templates", "--no-templates", "templates"),  # with templates or the masks alone
    ],
)
def test_the_mask_flags_default_on_and_the_cache_tells_them_apart(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on: str, off: str, key: str
) -> None:
    scored = scored_systems(monkeypatch)
    args = (*trained_tiny_args(tree, tmp_path), "--no-baselines", "--force", "--json")
    documents = {}
    for flag in (on, off):
        result = run(*args, flag)
        assert result.exit_code == 0, result.stderr
        documents[flag] = json.loads(result.stdout)
    assert documents[on][key] is True
    assert documents[off][key] is False
    assert scored == ["model", "model"]  # the cache tells the two refinements apart
    first, second = (by_system(documents[flag])["model"] for flag in documents)
    assert [r["SDR"] for r in first] != [r["SDR"] for r in second]


def test_a_pair_of_one_instrument_is_split_as_separate_splits_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label model's two cellos: split by pitch by default (the run says "register"), one
    shared stem with --no-pitch-voices ("off"); the cache tells the two apart."""
    from conftest import make_tiny_model
    from vimss_cli.checkpoint import save_checkpoint

    root = tmp_path / "urmp"
    make_piece(root, "03_Duet_vc_vc")
    model = tmp_path / "model.safetensors"
    save_checkpoint(model, make_tiny_model(seed=0), {"trained": True})
    scored = scored_systems(monkeypatch)
    documents, stems = {}, {}
    for flag in ("--pitch-voices", "--no-pitch-voices"):
        kept = tmp_path / f"stems{flag}"
        args = ("--dataset", "urmp", "--root", root, "--model", model, "--no-baselines", "--out",
                tmp_path / "run", "--force", "--json", "--save-estimates", kept)  # fmt: skip
        result = run(*args, flag) if flag == "--no-pitch-voices" else run(*args)
        assert result.exit_code == 0, result.stderr
        documents[flag] = json.loads(result.stdout)
        folder = kept / "03_Duet_vc_vc"
        stems[flag] = [soundfile.read(p)[0] for p in sorted(folder.glob("*.wav"))]
    assert documents["--pitch-voices"]["pitch_voices"] == "register"
    assert documents["--no-pitch-voices"]["pitch_voices"] == "off"
    assert scored == ["model", "model"]
    split, shared = stems["--pitch-voices"], stems["--no-pitch-voices"]
    assert np.abs(split[0] - split[1]).max() > 1e-3  # the voices differ
    mixture = soundfile.read(root / "03_Duet_vc_vc" / "AuMix_03_Duet_vc_vc.wav")[0]
    np.testing.assert_allclose(split[0] + split[1], mixture, atol=1e-3)  # the mixture, split
    np.testing.assert_array_equal(shared[0], shared[1])  # one stem, twice
    assert any("split by register" in note for note in documents["--pitch-voices"]["notes"])
    # asked for by motion, label queries have none: the run says register, as it split
    asked = run("--dataset", "urmp", "--root", root, "--model", model, "--no-baselines",
                "--pitch-voices", "--json")  # fmt: skip
    assert asked.exit_code == 0, asked.stderr
    assert json.loads(asked.stdout)["pitch_voices"] == "register"


def test_compare_warns_when_the_pairs_were_split_otherwise(tmp_path: Path) -> None:
    rows = [(f"p{i}", float(i)) for i in range(4)]
    fields = {"model": "m", "queries": "labels"}
    register = write_run(tmp_path / "register", rows, **fields, pitch_voices="register")
    off = write_run(tmp_path / "off", rows, **fields, pitch_voices="off")
    old = write_run(tmp_path / "old", rows, **fields)  # from before the setting was recorded
    (warning,) = run("compare", register, off).stderr.splitlines()
    assert "splits of two players of one instrument (register, off)" in warning
    (warning,) = run("compare", old, register).stderr.splitlines()
    assert "(unknown, register)" in warning
