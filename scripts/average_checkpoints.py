"""Average the weights of checkpoints of one network (a "model soup", Wortsman et al. 2022).

    python scripts/average_checkpoints.py OUT.safetensors A B ... [--weights 2,1,1] [--force]

Each input is a checkpoint file or a bundled model's name (``vimss-synth-cpu-v4``).

Meant for fine-tunes of one starting point (runs with ``run.init_from`` the same weights),
which stay in one basin, so their mean is a network of its own at no cost at inference
(docs/training.md, "Weight averaging"). Every input is read through the real loader (format,
sha256) and must have the same configuration; the output records its inputs and weights in
its provenance and is written atomically.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from vimss_cli.checkpoint import load_model, save_checkpoint
from vimss_cli.errors import VimssError


def average_states(
    states: list[dict[str, torch.Tensor]], weights: list[float]
) -> dict[str, torch.Tensor]:
    """The weighted mean of state dicts with the same keys and shapes (``weights`` are
    normalised to sum to 1); tensors that are not floating point are taken from the first."""
    total = sum(weights)
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            mean = sum(w / total * s[key].double() for w, s in zip(weights, states, strict=True))
            averaged[key] = torch.as_tensor(mean).to(first.dtype)
        else:
            averaged[key] = first
    return averaged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or bundled names")
    parser.add_argument("--weights", help="comma-separated, one per checkpoint (default: equal)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        raise SystemExit("error: give at least two checkpoints to average")
    weights = [1.0] * len(args.checkpoints)
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise SystemExit(f"error: --weights must be numbers, not {args.weights!r}") from None
    if (
        len(weights) != len(args.checkpoints)
        or not all(math.isfinite(w) and w >= 0 for w in weights)
        or sum(weights) <= 0
    ):
        raise SystemExit("error: --weights needs one finite, non-negative number per checkpoint")
    if args.out.exists() and not args.force:
        raise SystemExit(f"error: {args.out} exists (use --force to replace it)")
    if not args.out.parent.is_dir():
        raise SystemExit(f"error: {args.out.parent} is not a folder to write {args.out.name} in")
    try:
        loaded = [load_model(reference) for reference in args.checkpoints]
    except VimssError as error:
        raise SystemExit(f"error: {error}") from None
    for reference, other in zip(args.checkpoints[1:], loaded[1:], strict=True):
        if other.model.config != loaded[0].model.config:
            raise SystemExit(
                f"error: {reference} is another network than {args.checkpoints[0]} "
                "(its configuration differs): only one network's weights can be averaged"
            )
    network = loaded[0].model
    network.load_state_dict(average_states([m.model.state_dict() for m in loaded], weights))
    provenance = {
        "averaged": list(args.checkpoints),
        "weights": weights,
        "trained": all(m.trained for m in loaded),  # else its users are warned, as for each
    }
    save_checkpoint(args.out, network, provenance)
    print(f"wrote {args.out}: the mean of {len(loaded)} checkpoints, weights {weights}")


if __name__ == "__main__":
    main()
