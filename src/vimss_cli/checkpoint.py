"""Checkpoints: one ``.safetensors`` file with weights, model config and provenance.

Nothing is unpickled. The metadata holds the config as JSON (so the file alone rebuilds the
network), the provenance (how it was made), and a sha256 of the weights that is verified on
every load. A model name resolves in one place, :func:`resolve_checkpoint`: a bundled name
from ``models/index.json``, a local path, or ``hf:OWNER/REPO[@REVISION][/FILE]``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from vimss_cli.atomic import atomic_path, current_umask
from vimss_cli.errors import CheckpointError, UnknownModelError
from vimss_cli.model import ModelConfig
from vimss_cli.networks import Network, build_network

FORMAT_NAME = "vimss-checkpoint"
FORMAT_VERSION = "1"
DEFAULT_MODEL_ALIAS = "default"
INDEX_FILE = "index.json"
HF_PREFIX = "hf:"
HF_DEFAULT_FILE = "model.safetensors"


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: Path, model: Network, provenance: dict[str, Any] | None = None) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, then rename)."""
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_json(),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
        "weights_sha256": weights_sha256(state),
    }
    save_file_atomically(state, Path(path), metadata)


def save_file_atomically(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]
) -> None:
    """Write a safetensors file via a temporary file and a rename: never half-written.

    Readable as any new file of this process is (``0o666`` less the umask): safetensors
    creates its files owner-only, which left a run's exported models unreadable to others
    beside its group-readable config and log."""
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
        os.chmod(temporary, 0o666 & ~current_umask())


@dataclass
class LoadedModel:
    """A network rebuilt from a checkpoint, with what the checkpoint says about itself."""

    model: Network
    name: str
    path: Path
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return bool(self.provenance.get("trained", False))


def check_checkpoint_file(path: Path) -> Path:
    """Raise a clear :class:`CheckpointError` unless ``path`` is a file this process can read.

    (safetensors reports an unreadable file as "No such file or directory".)
    """
    if path.is_dir():
        raise CheckpointError(f"checkpoint is a directory, not a .safetensors file: {path}")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a regular file: {path}")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied") from None
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    return path


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a checkpoint file, with clear errors for bad files."""
    path = check_checkpoint_file(Path(path))
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({error})"
        ) from None
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is a safetensors file but not a vimss checkpoint")
    return state, metadata


def load_checkpoint(path: Path, name: str | None = None) -> LoadedModel:
    """Rebuild the network stored in ``path`` (on the CPU, in eval mode)."""
    path = Path(path)
    state, metadata = read_checkpoint(path)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {metadata.get('format_version')!r}; "
            f"this vimss reads format {FORMAT_VERSION}"
        )
    expected = metadata.get("weights_sha256")
    if expected != weights_sha256(state):
        raise CheckpointError(f"{path} is corrupt: its weights do not match their sha256")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        provenance = json.loads(metadata.get("provenance", "{}"))
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path} has an invalid model config: {error}") from None
    model = build_network(config)
    problem = describe_state_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(
            f"{path}: the stored config does not match the stored weights ({problem})"
        )
    broken = sorted(key for key, tensor in state.items() if not torch.isfinite(tensor).all())
    if broken:  # what a diverged training run exports: its stems would be NaN
        raise CheckpointError(
            f"{path} is unusable: {len(broken)} of its weight tensors hold NaN or infinite "
            f"values (e.g. {broken[0]}), as a training run that diverged leaves them"
        )
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedModel(model=model, name=name or path.stem, path=path, provenance=provenance)


def _compare_state(
    expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Names ``expected`` has and ``actual`` lacks, names only ``actual`` has, and names both
    hold with other shapes; each sorted."""
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    mismatched = sorted(
        name
        for name in set(expected) & set(actual)
        if tuple(expected[name].shape) != tuple(actual[name].shape)
    )
    return missing, unexpected, mismatched


def describe_state_mismatch(
    expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]
) -> str:
    """What keeps ``stored`` from loading into a module whose state is ``expected`` ('' if
    nothing)."""
    missing, unexpected, mismatched = _compare_state(expected, stored)
    shapes = [
        f"{name} has shape {tuple(stored[name].shape)}, not {tuple(expected[name].shape)}"
        for name in mismatched
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if shapes:
        parts.append(f"{len(shapes)} of another shape, e.g. {shapes[0]}")
    return "; ".join(parts)


# ------------------------------------------------------------------------ name resolution
def bundled_models_dir() -> Path:
    """Where bundled checkpoints live: ``$VIMSS_MODELS_DIR``, the wheel's copy, or ``models/``."""
    override = os.environ.get("VIMSS_MODELS_DIR")
    if override:
        return Path(override)
    package_copy = Path(__file__).parent / "bundled_models"
    if (package_copy / INDEX_FILE).is_file():
        return package_copy
    return Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True)
class BundledModel:
    """One entry of ``models/index.json``."""

    name: str
    file: str
    sha256: str
    description: str
    trained: bool

    def to_json(self, default: str | None = None) -> dict[str, Any]:
        """Its row in ``vimss models list --json``; ``default``: the default model's name."""
        return {
            "name": self.name,
            "default": self.name == default,
            "trained": self.trained,
            "description": self.description,
        }


def bundled_index(directory: Path | None = None) -> tuple[dict[str, BundledModel], str | None]:
    """Bundled models by name, and the name the ``default`` alias points at."""
    directory = directory or bundled_models_dir()
    index_path = directory / INDEX_FILE
    if not index_path.is_file():
        return {}, None
    try:
        data = json.loads(index_path.read_text())
        models = {
            name: BundledModel(
                name=name,
                file=entry["file"],
                sha256=entry["sha256"],
                description=entry.get("description", ""),
                trained=bool(entry.get("trained", False)),
            )
            for name, entry in data["models"].items()
        }
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"bundled model index {index_path} is malformed: {error}") from None
    return models, data.get("default")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A model reference turned into a local file."""

    path: Path
    name: str
    source: str  # "bundled", "local" or "hf"
    expected_file_sha256: str | None = None


def parse_hf_reference(reference: str) -> tuple[str, str | None, str]:
    """``hf:OWNER/REPO[@REVISION][/FILE]`` -> ``(repo_id, revision, filename)``."""
    body = reference[len(HF_PREFIX) :]
    parts = body.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise CheckpointError(
            f"malformed Hub reference {reference!r}; expected hf:OWNER/REPO[@REVISION][/FILE]"
        )
    repo, revision = parts[1], None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    filename = "/".join(parts[2:]) or HF_DEFAULT_FILE
    return f"{parts[0]}/{repo}", revision, filename


def _fetch_from_hub(reference: str, repo_id: str, filename: str, revision: str | None) -> Path:
    """The local file of a Hub checkpoint: from the Hub's cache, else downloaded.

    Fails at once, in one line, when the file is not cached and the Hub cannot be reached
    (``HF_HUB_OFFLINE`` set, or its host does not resolve), instead of the library's retries
    and log lines.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=True))
    except Exception:  # not in the cache (the library raises several types for it)
        pass
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    if constants.HF_HUB_OFFLINE:
        raise CheckpointError(
            f"cannot fetch {reference}: not in the Hub cache and HF_HUB_OFFLINE is set"
        )
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        raise CheckpointError(
            f"cannot fetch {reference}: not in the Hub cache and {host} cannot be reached "
            "(offline?); give a local .safetensors path instead"
        ) from None
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except Exception as error:  # the hub raises many types; all mean "not available"
        raise CheckpointError(f"cannot fetch {reference}: {error}") from None


def resolve_checkpoint(reference: str, models_dir: Path | None = None) -> ResolvedCheckpoint:
    """Turn a bundled name, a local path or an ``hf:`` reference into a local file."""
    if reference.startswith(HF_PREFIX):
        repo_id, revision, filename = parse_hf_reference(reference)
        local = _fetch_from_hub(reference, repo_id, filename, revision)
        return ResolvedCheckpoint(local, f"{repo_id}/{filename}", "hf")
    models, default = bundled_index(models_dir)
    if not reference.strip():
        known = ", ".join(sorted(models)) or "none bundled"
        raise UnknownModelError(f"no model named (an empty name); known models: {known}")
    name = default if reference == DEFAULT_MODEL_ALIAS and default else reference
    if name in models:
        entry = models[name]
        path = (models_dir or bundled_models_dir()) / entry.file
        return ResolvedCheckpoint(path, name, "bundled", entry.sha256)
    path = Path(reference).expanduser()
    if path.exists() or reference.endswith(".safetensors") or os.sep in reference:
        return ResolvedCheckpoint(check_checkpoint_file(path), path.stem, "local")
    known = ", ".join(sorted(models)) or "none bundled"
    raise UnknownModelError(
        f"unknown model {reference!r}; known models: {known} "
        "(or give a .safetensors path or hf:OWNER/REPO[@REVISION][/FILE])"
    )


def load_model(reference: str = DEFAULT_MODEL_ALIAS, models_dir: Path | None = None) -> LoadedModel:
    """Resolve ``reference`` and load it, checking the file's sha256 where one is known."""
    resolved = resolve_checkpoint(reference, models_dir)
    if not resolved.path.exists():
        raise CheckpointError(f"bundled model file missing: {resolved.path}")
    check_checkpoint_file(resolved.path)
    if (
        resolved.expected_file_sha256
        and file_sha256(resolved.path) != resolved.expected_file_sha256
    ):
        raise CheckpointError(
            f"{resolved.path} does not match the sha256 recorded for model {resolved.name!r}"
        )
    return load_checkpoint(resolved.path, resolved.name)


@dataclass
class ModelInfo:
    """What ``vimss models info`` tells of a model: the checkpoint, its size, its windows."""

    loaded: LoadedModel
    parameters: int
    #: input and output samples of one window at the default tile (``engine.plan_windows``)
    window_input_samples: int
    window_output_samples: int
    #: its model card, ``docs/model-card-<name>.md``, in a source checkout; else ``None``
    model_card: Path | None

    def to_json(self) -> dict[str, Any]:
        """What ``vimss models info --json`` prints."""
        net = self.loaded.model
        return {
            "name": self.loaded.name,
            "path": str(self.loaded.path),
            "trained": self.loaded.trained,
            "parameters": self.parameters,
            "config": asdict(net.config),
            "context_samples": net.context,
            "window_input_samples": self.window_input_samples,
            "window_output_samples": self.window_output_samples,
            "provenance": self.loaded.provenance,
            "model_card": None if self.model_card is None else str(self.model_card),
        }


def model_info(reference: str) -> ModelInfo:
    """Load the model ``reference`` names and describe it."""
    from vimss_cli.engine import DEFAULT_TILE, plan_windows

    loaded = load_model(reference)
    plan = plan_windows(loaded.model, DEFAULT_TILE)
    card = Path(__file__).resolve().parents[2] / "docs" / f"model-card-{loaded.name}.md"
    return ModelInfo(
        loaded=loaded,
        parameters=sum(p.numel() for p in loaded.model.parameters()),
        window_input_samples=plan.input_length,
        window_output_samples=plan.step,
        model_card=card if card.is_file() else None,
    )
