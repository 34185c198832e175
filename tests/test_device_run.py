"""The prepared GPU run on the CPU: pack, unpack, ``scripts/device_train.sh``, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from conftest import write_wav
from test_training import TINY, make_piece
from vimss_cli.checkpoint import load_checkpoint
from vimss_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "device_train.sh"
PACKER = REPO / "scripts" / "device_pack.py"


def tiny_config_toml() -> str:
    sections: dict[str, list[str]] = {}
    for setting in TINY:
        key, value = setting.split("=")
        section, name = key.split(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    return "\n".join(f"[{s}]\n" + "\n".join(lines) for s, lines in sections.items()) + "\n"


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pack (no wheels) of a tiny 8 kHz tree and the tiny training config."""
    base = tmp_path_factory.mktemp("device")
    root = base / "data"
    make_piece(root / "train", 1, ("vn", "vc"), seed=1)
    make_piece(root / "train", 2, ("fl", "cl", "bn"), seed=2)
    make_piece(root / "valid", 3, ("tpt", "tbn"), seed=3)
    notes = root / "train" / "01_Piece1_vn_vc" / "Notes_1_vn_01_Piece1.txt"
    notes.write_text("0.0\t440.0\t1.0\n")  # the players' notes travel (voice ranks)
    config = base / "tiny.toml"
    config.write_text(tiny_config_toml())
    real = base / "realval"  # stands for Bach10: the duet does not fit the budget, the trio does
    make_piece(real, 1, ("vn", "cl"), seed=11, seconds=3.0)
    make_piece(real, 2, ("sax", "bn", "vn"), seed=12)
    out = base / "pack"
    result = subprocess.run(
        [
            sys.executable,
            str(PACKER),
            "pack",
            "--data",
            str(root),
            "--config",
            str(config),
            "--out",
            str(out),
            "--no-wheels",
            "--real-valid",
            str(real),
            "--real-valid-mib",
            "0.015",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "everything that travels" in result.stdout
    return out


def launch(
    pack: Path, out: Path, work: Path, extra: str, more: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PACK": str(pack),
        "MORE": str(more or work / "no-second-pack"),
        "OUT": str(out),
        "WORK": str(work),
        "DEVICE": "cpu",
        "PYTHON": sys.executable,
        "WORKERS": "0",
        "BUDGET_SECONDS": "300",
        "RESERVE_SECONDS": "5",
        "EXTRA": extra,
    }
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)


def test_pack_holds_vorbis_stems_that_unpack_close_to_the_originals(
    pack: Path, tmp_path: Path
) -> None:
    info = json.loads((pack / "pack.json").read_text())
    assert info["splits"]["train"]["pieces"] == ["01_Piece1_vn_vc", "02_Piece2_fl_cl_bn"]
    oggs = sorted((pack / "data").rglob("*.ogg"))
    assert len(oggs) == 7 and soundfile.info(str(oggs[0])).format == "OGG"
    # the real recordings: most players first, within their budget
    assert info["splits"]["realval"]["pieces"] == ["02_Piece2_sax_bn_vn"]
    assert len(list((pack / "realval" / "realval").rglob("*.ogg"))) == 3
    subprocess.run(
        [sys.executable, str(PACKER), "unpack", str(pack / "data"), str(tmp_path / "tree")],
        check=True,
        capture_output=True,
    )
    decoded = tmp_path / "tree" / "train" / "01_Piece1_vn_vc" / "AuSep_1_vn_01_Piece1.wav"
    original, _ = soundfile.read(
        str(pack.parent / "data" / "train" / decoded.parent.name / decoded.name), dtype="float32"
    )
    notes = decoded.parent / "Notes_1_vn_01_Piece1.txt"
    assert notes.read_text() == "0.0\t440.0\t1.0\n"
    restored, rate = soundfile.read(str(decoded), dtype="float32")
    assert rate == 8000 and restored.shape == original.shape
    snr = 10 * np.log10(np.sum(original**2) / np.sum((original - restored) ** 2))
    assert snr > 15


def test_dry_run_trains_exports_and_separates(pack: Path, tmp_path: Path) -> None:
    result = launch(pack, tmp_path / "out", tmp_path / "work", "--max-steps 6")
    assert result.returncode == 0, result.stdout + result.stderr
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"best.safetensors", "last.safetensors", "log.jsonl", "config.toml"} <= names
    assert "state.safetensors.part00" in names
    last = load_checkpoint(tmp_path / "out" / "last.safetensors")
    assert last.trained and last.provenance["steps"] == 6
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert any("real_valid_sdr" in record for record in log)  # the carried real recordings
    assert '"best_on": "real_valid"' in (tmp_path / "out" / "train.log").read_text()
    mixture = tmp_path / "mix.wav"
    write_wav(mixture, 0.1 * np.sin(np.arange(8000, dtype=np.float32) / 5))
    separated = CliRunner().invoke(
        app,
        [
            "separate",
            str(mixture),
            "-i",
            "vn,vc",
            "-o",
            str(tmp_path / "stems"),
            "--model",
            str(tmp_path / "out" / "best.safetensors"),
            "--device",
            "cpu",
        ],
    )
    assert separated.exit_code == 0, separated.output
    assert len(list((tmp_path / "stems" / "mix").glob("*.wav"))) == 2


@pytest.mark.slow  # three launches: about 25 s
def test_a_second_launch_continues_the_carried_state_exactly(pack: Path, tmp_path: Path) -> None:
    straight = launch(pack, tmp_path / "straight", tmp_path / "w1", "--max-steps 6")
    assert straight.returncode == 0, straight.stderr
    first = launch(pack, tmp_path / "first", tmp_path / "w2", "--max-steps 3")
    assert first.returncode == 0, first.stderr
    carried = tmp_path / "pack_with_state"
    shutil.copytree(pack, carried)
    shutil.copytree(tmp_path / "first", carried / "resume")
    second = launch(carried, tmp_path / "second", tmp_path / "w3", "--max-steps 6")
    assert second.returncode == 0, second.stdout + second.stderr

    log = (tmp_path / "second" / "log.jsonl").read_text().splitlines()
    ends = [r["step"] for r in map(json.loads, log) if "replica_weights_sha256" in r]
    assert ends == [3, 6]  # the carried launch's end, then this launch's: it resumed

    def weights(run: Path) -> dict[str, torch.Tensor]:
        joined = run / "state.safetensors"
        joined.write_bytes(b"".join(p.read_bytes() for p in sorted(run.glob("state*.part*"))))
        with safe_open(str(joined), "pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "second")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def pack_command(pack: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``device_pack.py pack`` again, from the tree and config that made ``pack``."""
    command = [sys.executable, str(PACKER), "pack", "--data", str(pack.parent / "data")]
    command += ["--config", str(pack.parent / "tiny.toml"), "--no-wheels", *extra]
    return subprocess.run(command, capture_output=True, text=True)


def test_a_returned_run_carried_as_init_starts_the_next_launch(pack: Path, tmp_path: Path) -> None:
    """docs/training.md, "The GPU run": a returned last.safetensors goes back with `pack
    --init` (the full state does not fit the carry); the launch starts a new run from it."""
    first = launch(pack, tmp_path / "first", tmp_path / "w1", "--max-steps 2")
    assert first.returncode == 0, first.stderr
    returned = tmp_path / "first" / "last.safetensors"
    again = tmp_path / "again"
    packed = pack_command(pack, "--out", str(again), "--init", str(returned))
    assert packed.returncode == 0, packed.stderr
    assert (again / "init.safetensors").read_bytes() == returned.read_bytes()
    assert json.loads((again / "pack.json").read_text())["init"] == str(returned)
    second = launch(again, tmp_path / "second", tmp_path / "w2", "--max-steps 1")
    assert second.returncode == 0, second.stdout + second.stderr
    records = map(json.loads, (tmp_path / "second" / "log.jsonl").read_text().splitlines())
    assert any("initialised_from" in record for record in records)

    # a pack holding a returned run is never deleted by packing again, and INIT_FROM beside
    # it is refused before anything is unpacked
    # found by a review: weights the network cannot start from were packed, to fail on the
    # GPU after unpacking; and a failed pack left half a pack in place of the old one
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    for bad in (junk, REPO / "models" / "vimss-synth-cpu-v0.safetensors"):  # another network
        refused = pack_command(pack, "--out", str(again), "--init", str(bad))
        assert refused.returncode != 0 and refused.stderr.startswith(f"error: --init {bad}: ")
        assert (again / "init.safetensors").read_bytes() == returned.read_bytes()
    cramped = pack_command(pack, "--out", str(again), "--limit-mib", "1")
    assert cramped.returncode != 0 and "no room for training data" in cramped.stderr
    assert (again / "pack.json").is_file() and not list(tmp_path.glob("*.partial"))

    shutil.copytree(tmp_path / "first", again / "resume")
    refused = pack_command(pack, "--out", str(again))
    assert refused.returncode != 0 and "holds a returned run" in refused.stderr
    assert (again / "resume" / "last.safetensors").is_file()
    env_init = {"INIT_FROM": str(returned)}
    both = subprocess.run(
        ["bash", str(SCRIPT)],
        env={
            **os.environ,
            **env_init,
            "PACK": str(again),
            "OUT": str(tmp_path / "o3"),
            "WORK": str(tmp_path / "w3"),
            "DEVICE": "cpu",
            "PYTHON": sys.executable,
        },
        capture_output=True,
        text=True,
    )
    assert both.returncode == 2 and "unset one of them" in both.stderr
    assert not (tmp_path / "w3" / "data").exists()


def test_missing_pack_is_one_clear_error(tmp_path: Path) -> None:
    result = launch(tmp_path / "nothing", tmp_path / "out", tmp_path / "work", "")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("run make device-pack first")


def test_a_lean_pack_counts_the_tree_without_the_bundled_models(tmp_path: Path) -> None:
    """``--without-models`` sizes the pack for a tree that ``make device-lean`` stripped of
    models/*.safetensors (the first GPU run had room for only 0.9 h of music beside them)."""
    device_pack = load_device_pack()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.safetensors").write_bytes(b"w" * 1000)
    (tmp_path / "models" / "index.json").write_bytes(b"i" * 10)
    (tmp_path / "code.py").write_bytes(b"c" * 100)
    # the note classifier is part of the package, not a separation model: it travels
    (tmp_path / "models" / "notes").mkdir()
    (tmp_path / "models" / "notes" / "n.safetensors").write_bytes(b"n" * 5)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    assert device_pack.travelling_tree_bytes(tmp_path) == 1115
    assert device_pack.travelling_tree_bytes(tmp_path, without_models=True) == 115
    # what make device-lean removes: its pathspec, as the Makefile writes it
    pathspec = "':(glob)models/*.safetensors'"
    assert f"git ls-files -z {pathspec} | xargs -0 rm -f" in (REPO / "Makefile").read_text()
    listed = subprocess.run(
        ["git", "ls-files", pathspec.strip("'")], cwd=tmp_path, capture_output=True, text=True
    ).stdout.split()
    assert listed == ["models/m.safetensors"]
    (tmp_path / "models" / "m.safetensors").unlink()
    assert device_pack.travelling_tree_bytes(tmp_path) == 115


def load_device_pack() -> ModuleType:
    """``scripts/device_pack.py`` as a module (a script, imported by its path)."""
    import importlib.util

    if "device_pack" in sys.modules:  # loaded once: its process pool pickles its functions
        return sys.modules["device_pack"]  # by the module's name, which must then import
    spec = importlib.util.spec_from_file_location("device_pack", PACKER)
    assert spec is not None and spec.loader is not None
    device_pack = importlib.util.module_from_spec(spec)
    sys.modules["device_pack"] = device_pack
    spec.loader.exec_module(device_pack)
    return device_pack


def test_a_second_pack_carries_what_the_first_could_not_and_joins_the_run(
    pack: Path, tmp_path: Path
) -> None:
    """``pack --more-out``: the train pieces the first pack left out travel in a call of their
    own (the first GPU run overfitted 0.9 h of music; one pack holds about 2.4 h), and the
    training call finds them on the machine and trains on both packs."""
    import argparse

    device_pack = load_device_pack()
    first = tmp_path / "first"
    shutil.copytree(pack, first)
    shutil.rmtree(first / "data" / "train" / "02_Piece2_fl_cl_bn")  # as if it did not fit
    pack_id = json.loads((pack / "pack.json").read_text())["pack_id"]
    more = tmp_path / "more"
    settings = argparse.Namespace(limit_mib=64.0, level=0.7)

    def second_pack(folder: Path, pack_id: str) -> dict:
        return device_pack._build(
            folder,
            lambda building: device_pack._fill_more(
                building, settings, pack.parent / "data", 0, frozenset({"01_Piece1_vn_vc"}), pack_id
            ),
        )

    entries = second_pack(more, pack_id)
    assert entries["train"]["pieces"] == ["02_Piece2_fl_cl_bn"]
    info = json.loads((more / "pack.json").read_text())
    assert info["part"] == 2 and info["pack_id"] == pack_id
    assert {p.name for p in (more / "data" / "train").iterdir() if p.is_dir()} == {
        "02_Piece2_fl_cl_bn"
    }
    assert not (more / "wheels").exists() and not (more / "config.toml").exists()
    cramped = argparse.Namespace(limit_mib=1.0, level=0.7)
    with pytest.raises(SystemExit, match="no room for a second pack"):
        device_pack._fill_more(
            tmp_path / "x", cramped, pack.parent / "data", 2**21, frozenset(), ""
        )

    both = launch(first, tmp_path / "o1", tmp_path / "w1", "--max-steps 1", more=more)
    assert both.returncode == 0, both.stdout + both.stderr
    assert f"second pack {more}" in both.stdout
    trained_on = {p.name for p in (tmp_path / "w1" / "data" / "train").iterdir() if p.is_dir()}
    assert trained_on == {"01_Piece1_vn_vc", "02_Piece2_fl_cl_bn"}
    assert f"second pack {more}" in (tmp_path / "o1" / "train.log").read_text()  # comes back
    # a second pack of another packing (stale, on a warm machine) is not used, and said so
    stale = tmp_path / "stale"
    second_pack(stale, "another-id")
    mixed = launch(first, tmp_path / "o2", tmp_path / "w2", "--max-steps 1", more=stale)
    assert mixed.returncode == 0, mixed.stdout + mixed.stderr
    assert "is of another packing" in (tmp_path / "o2" / "train.log").read_text()
    trained_on = {p.name for p in (tmp_path / "w2" / "data" / "train").iterdir() if p.is_dir()}
    assert trained_on == {"01_Piece1_vn_vc"}
    # a first pack made with a second that did not come (the ferry call missed) says so
    info = json.loads((first / "pack.json").read_text())
    (first / "pack.json").write_text(json.dumps({**info, "second_pack_pieces": 1}))
    alone = launch(first, tmp_path / "o3", tmp_path / "w3", "--max-steps 1")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "warning: no second pack" in (tmp_path / "o3" / "train.log").read_text()
    told = device_pack.second_pack_status(first, None)  # MORE=none: none looked for
    assert told.startswith("warning: no second pack (none looked for)")
    # packing refuses a --more-out it would wrongly delete
    for bad in (pack, pack.parent / "data", REPO.parent):
        with pytest.raises(SystemExit, match="--more-out"):
            device_pack.check_second_pack_folder(bad, pack, pack.parent / "data")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("keep")
    with pytest.raises(SystemExit, match="is not an earlier second pack"):
        device_pack.check_second_pack_folder(tmp_path / "mine", pack, pack.parent / "data")
    device_pack.check_second_pack_folder(more, pack, pack.parent / "data")  # an earlier one


def test_the_split_manifest_counts_against_the_budget(pack: Path, tmp_path: Path) -> None:
    """The first two-pack packing overshot its 60 MiB aim by 0.4: the train split's manifest
    (0.5 MiB for 320 pieces) travelled uncounted."""
    device_pack = load_device_pack()
    split = tmp_path / "train"
    shutil.copytree(pack.parent / "data" / "train", split)
    whole = device_pack.pack_split(split, tmp_path / "a", 0.7, None, 1)
    (split / "vimss_synth.json").write_text("{}" + " " * 200_000)
    fits = whole["bytes"] + 100_000  # room for all the pieces, not for the manifest as well
    packed = device_pack.pack_split(split, tmp_path / "b", 0.7, fits, 1)
    assert len(packed["pieces"]) < len(whole["pieces"])
    roomy = device_pack.pack_split(split, tmp_path / "c", 0.7, whole["bytes"] + 300_000, 1)
    assert roomy["pieces"] == whole["pieces"] and roomy["bytes"] > whole["bytes"] + 200_000


def test_the_device_benchmark_times_the_network_and_the_pipeline(tmp_path: Path) -> None:
    """On the CPU with a tiny model: the network alone, the pipeline, exact chunking, and the
    profiler's table (the first H200 figures timed the CPU's harmonic masks with the network)."""
    from conftest import make_tiny_model
    from vimss_cli.checkpoint import save_checkpoint

    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, make_tiny_model(), provenance={"trained": False})
    table = tmp_path / "profile.txt"
    command = [sys.executable, str(REPO / "scripts" / "device_bench.py"), "--device", "cpu"]
    command += ["--seconds", "6", "--precisions", "fp32", "--profile", str(table), str(model)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["x_realtime_fp32"] > 0 and report["x_realtime_pipeline_fp32"] > 0
    assert report["chunked_vs_whole_max_abs"] <= 1e-5
    assert "Name" in table.read_text()
