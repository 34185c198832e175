"""A voices model as its label model: the same network without its voice embedding.

A model trained with ``model.voices`` keeps voice 0 (the voice of every label query) at zero,
so its label queries separate exactly as the same network without voices does. Where its voice
split has not learnt to tell two players of one instrument apart, dropping the embedding hands
them to the pitch split (:mod:`vimss_cli.pitch_voices`) instead. The label queries' output is
checked to be unchanged before anything is written.

    python scripts/drop_voices.py IN.safetensors OUT.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from vimss_cli.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from vimss_cli.conditioning import Query
from vimss_cli.engine import separate_array
from vimss_cli.networks import Network, build_network


def without_voices(model: Network) -> Network:
    """``model`` rebuilt with ``voices = 0``: every weight but the voice embedding's."""
    config = dataclasses.replace(model.config, voices=0)
    label_model = build_network(config)
    state = {k: v for k, v in model.state_dict().items() if "voice_embedding" not in k}
    label_model.load_state_dict(state, strict=True)
    return label_model.eval()


def label_output_unchanged(before: Network, after: Network) -> bool:
    """Voice 0 (every label query's) is the zero vector in ``before``, and both separate a 3 s
    noise mixture the same, bit for bit, for label queries (two of one instrument among
    them). The separation alone cannot tell: label queries never read the voice embedding."""
    embeddings = [m for name, m in before.named_modules() if name.endswith("voice_embedding")]
    if len(embeddings) != 1 or bool(embeddings[0].weight[0].any()):
        return False
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(3 * before.config.sample_rate)).astype(np.float32)
    queries = [Query("vn"), Query("vn"), Query("cl")]
    with torch.no_grad():
        old = separate_array(before, audio, queries)
        new = separate_array(after, audio, queries)
    return bool(np.array_equal(old, new))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    loaded = load_checkpoint(args.checkpoint)
    if not loaded.model.config.voices:
        raise SystemExit(f"error: {args.checkpoint} has no voices to drop")
    label_model = without_voices(loaded.model)
    if not label_output_unchanged(loaded.model, label_model):
        raise SystemExit("error: the label queries' output changed: nothing written")
    provenance = dict(loaded.provenance)
    provenance["voices_dropped_from"] = {
        "file": args.checkpoint.name,
        "sha256": file_sha256(args.checkpoint),
        "voices": loaded.model.config.voices,
    }
    save_checkpoint(args.out, label_model, provenance)
    print(f"wrote {args.out}: {args.checkpoint.name} without its voice embedding")


if __name__ == "__main__":
    main()
