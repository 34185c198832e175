"""Start a run from a trained checkpoint's weights (``run.init_from``).

The new model may add conditioning paths the checkpoint lacks (appearance projection, motion
FiLM convolutions, a motion encoder): every tensor the checkpoint holds must exist in the new
model with the same shape, and every tensor it lacks is set to zero, except the motion
encoder's, which keep their fresh random values. All of vimss's added conditioning paths are
additive and end in a zeroed layer (FiLM's motion convolution), so at step 0 the new model
computes exactly what the checkpoint computes, and training only has to learn what the new
inputs add. (A zeroed encoder would feed zeros to a zeroed layer, and neither would ever get a
gradient.)
"""

from __future__ import annotations

import torch

from vimss_cli.checkpoint import file_sha256, load_model
from vimss_cli.errors import CheckpointError
from vimss_cli.model import ModelConfig
from vimss_cli.networks import Network

#: the settings that decide the backbone's tensors (the conditioning paths may be added)
SHAPE_KEYS = (
    "architecture",
    "levels",
    "base_features",
    "feature_growth",
    "down_kernel",
    "up_kernel",
    "bottleneck_kernel",
    "conditioning",
    "query_dim",
    "spectral_fft",
    "spectral_hop",
    "spectral_channels",
    "spectral_blocks",
)


def _another_network(
    reference: str, theirs: ModelConfig, ours: ModelConfig, detail: str
) -> CheckpointError:
    """The error for weights that do not fit: the settings that differ when the checkpoint's
    config tells them, else ``detail`` (the first tensor that does not fit)."""
    differ = [key for key in SHAPE_KEYS if getattr(theirs, key) != getattr(ours, key)]
    if not differ:
        return CheckpointError(
            f"cannot initialise from {reference}: these weights are of another network: {detail}"
        )

    def settings(config: ModelConfig) -> str:
        return ", ".join(f"model.{key}={getattr(config, key)!r}" for key in differ)

    return CheckpointError(
        f"cannot initialise from {reference}: these weights are of another network "
        f"(they have {settings(theirs)}; the config has {settings(ours)}): set the config to "
        "match, or give a checkpoint of this network"
    )


def warm_start(model: Network, reference: str) -> dict[str, object]:
    """Copy the weights of checkpoint ``reference`` (name, path or hf:) into ``model``.

    Returns provenance: the reference, the checkpoint's file sha256 and the names of the
    tensors that were zero-initialised (a motion encoder's are not: they stay random).
    Raises :class:`CheckpointError` when the checkpoint does not fit (another sample rate, a
    tensor missing from the model or of another shape).
    """
    loaded = load_model(reference)
    source = loaded.model
    if source.config.sample_rate != model.config.sample_rate:
        raise CheckpointError(
            f"cannot initialise from {reference}: it runs at {source.config.sample_rate} Hz, "
            f"the model at {model.config.sample_rate} Hz"
        )
    target_state = model.state_dict()
    source_state = source.state_dict()
    for name, tensor in source_state.items():
        if name not in target_state:
            detail = f"the model has no {name}"
            raise _another_network(reference, source.config, model.config, detail)
        if target_state[name].shape != tensor.shape:
            detail = (
                f"{name} is {tuple(tensor.shape)} there, {tuple(target_state[name].shape)} here"
            )
            raise _another_network(reference, source.config, model.config, detail)
    fresh = [name for name in target_state if name.startswith("motion_encoder.")]
    zeroed = sorted(n for n in target_state if n not in source_state and n not in fresh)
    with torch.no_grad():
        for name, tensor in target_state.items():
            if name in source_state:
                tensor.copy_(source_state[name])
            elif name in zeroed:
                tensor.zero_()
    return {"reference": reference, "file_sha256": file_sha256(loaded.path), "zeroed": zeroed}
