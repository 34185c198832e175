"""Checkpoints: safetensors round trip, integrity, resolution of names, paths and hf: refs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY_CONFIG, make_tiny_model
from vimss_cli import checkpoint
from vimss_cli.checkpoint import (
    load_checkpoint,
    load_model,
    parse_hf_reference,
    resolve_checkpoint,
    save_checkpoint,
)
from vimss_cli.conditioning import QueryBatch
from vimss_cli.errors import CheckpointError
from vimss_cli.model import ModelConfig


def test_round_trip_keeps_weights_config_and_provenance(tmp_path: Path) -> None:
    model = make_tiny_model()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, provenance={"trained": True, "steps": 12})
    loaded = load_checkpoint(path)
    assert loaded.model.config == TINY_CONFIG
    assert loaded.provenance == {"trained": True, "steps": 12} and loaded.trained
    length = model.input_length_for(64)
    x = torch.randn(1, 1, length)
    queries = QueryBatch(torch.tensor([3]))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x, queries), model(x, queries), rtol=0, atol=0)


def test_bundled_models_load_and_are_trained() -> None:
    """Every bundled model loads through the real loader (index sha256, format, weights) and
    is trained (the untrained placeholder was dropped to make room in the GPU carry; tests
    make their own untrained models)."""
    folder = checkpoint.bundled_models_dir()
    index = json.loads((folder / checkpoint.INDEX_FILE).read_text())
    for name in index["models"]:
        assert load_model(name, folder).trained, name
    default = load_model("default", folder)
    assert default.name == "vimss-synth-gpu-v0" and default.trained
    assert default.provenance["steps"] > 0 and "validation" in default.provenance


def test_corrupt_weights_fail_the_sha256_check(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, make_tiny_model())
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # a byte inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, make_tiny_model())
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)


def test_config_that_does_not_match_weights(tmp_path: Path) -> None:
    state = {k: v.contiguous() for k, v in make_tiny_model().state_dict().items()}
    wrong = ModelConfig(**{**json.loads(TINY_CONFIG.to_json()), "base_features": 5})
    metadata = {
        "format": checkpoint.FORMAT_NAME,
        "format_version": checkpoint.FORMAT_VERSION,
        "config": wrong.to_json(),
        "provenance": "{}",
        "weights_sha256": checkpoint.weights_sha256(state),
    }
    path = tmp_path / "m.safetensors"
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="config does not match the stored weights"):
        load_checkpoint(path)


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a vimss checkpoint"):
        load_checkpoint(path)


def test_unknown_name_lists_the_known_ones(tiny_models_dir: Path) -> None:
    with pytest.raises(CheckpointError, match=r"unknown model 'nope'; known models: tiny"):
        resolve_checkpoint("nope")


def test_default_alias_and_local_path(tiny_models_dir: Path) -> None:
    assert resolve_checkpoint("default").name == "tiny"
    path = tiny_models_dir / "tiny.safetensors"
    resolved = resolve_checkpoint(str(path))
    assert resolved.source == "local" and resolved.path == path
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(str(tiny_models_dir / "missing.safetensors"))


def test_bundled_file_that_changed_fails_its_recorded_sha256(tiny_models_dir: Path) -> None:
    save_checkpoint(tiny_models_dir / "tiny.safetensors", make_tiny_model(seed=1))
    with pytest.raises(CheckpointError, match="does not match the sha256 recorded"):
        load_model("tiny")


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("hf:me/sep", ("me/sep", None, "model.safetensors")),
        ("hf:me/sep@v1.0", ("me/sep", "v1.0", "model.safetensors")),
        ("hf:me/sep@abc123/ckpt/best.safetensors", ("me/sep", "abc123", "ckpt/best.safetensors")),
    ],
)
def test_parse_hf_reference(reference: str, expected: tuple) -> None:
    assert parse_hf_reference(reference) == expected


def test_malformed_hf_reference() -> None:
    with pytest.raises(CheckpointError, match="malformed"):
        parse_hf_reference("hf:justaname")


def test_hf_reference_loads_through_the_real_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hf_hub_download is replaced by a local stand-in: no network in tests."""
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, make_tiny_model(), provenance={"trained": True})
    calls = []

    def fake_download(
        repo_id: str, filename: str, *, revision: str | None = None, local_files_only: bool = False
    ) -> str:
        calls.append((repo_id, filename, revision))
        return str(path)  # found in the Hub's cache

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = load_model("hf:someone/vimss@v2")
    assert calls == [("someone/vimss", "model.safetensors", "v2")]
    assert loaded.trained and loaded.model.config == TINY_CONFIG


def test_hf_download_failure_is_a_checkpoint_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(CheckpointError, match="cannot fetch hf:a/b"):
        load_model("hf:a/b")
    # offline and not cached: one line at once, without the library's retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="not in the Hub cache and HF_HUB_OFFLINE is set"):
        load_model("hf:a/b")


def test_every_bundled_trained_model_has_its_config_file() -> None:
    """``configs/<name>.toml`` is exactly what the bundled checkpoint says it was trained with."""
    from vimss_cli.checkpoint import bundled_index, bundled_models_dir
    from vimss_cli.training.config import build_config, load_config

    models, _ = bundled_index()
    configs = Path(__file__).resolve().parents[1] / "configs"
    trained = [name for name, entry in models.items() if entry.trained]
    assert trained
    for name in trained:
        loaded = load_checkpoint(bundled_models_dir() / models[name].file)
        recorded = build_config(loaded.provenance["train_config"])
        from_file = load_config(configs / f"{name}.toml")
        assert from_file == recorded, name
        trained_model = from_file.model
        if "voices_dropped_from" in loaded.provenance:  # scripts/drop_voices.py
            trained_model = dataclasses.replace(trained_model, voices=0)
        assert trained_model == loaded.model.config, name


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_checkpoint_has_the_permissions_any_new_file_gets(tmp_path: Path, umask: int) -> None:
    """safetensors creates its files owner-only; a run's exported models were unreadable to
    others beside the run's group-readable config and log."""
    import os
    import stat

    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "m.safetensors", make_tiny_model(), {"trained": False})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask
