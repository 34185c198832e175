"""Train the note classifier the harmonic masks consult (``models/notes/``) on generated
ensembles, and print its accuracy on other sets.

    .venv/bin/python scripts/train_note_classifier.py ~/vimss-work/data/gpu-lib/train \\
        models/notes/vimss-notes-v0.safetensors \\
        --check ~/vimss-work/data/gpu-lib/valid ~/vimss-work/data/gpu-lib/test

The training tree is a URMP-layout tree of `vimss data synth` (``make device-data``'s train
split made the shipped file); ``--check`` trees are only scored: the share of notes whose
instrument the classifier names right among the piece's instruments (chance: one over
their number). Never train on ``../shared/realval``. About a minute on two cores for the 320
pieces of the train split (2026-12-04). Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vimss_cli.eval.audio import load_track
from vimss_cli.eval.tracks import urmp_tracks
from vimss_cli.training.note_classifier import (
    note_samples,
    restricted_accuracy,
    save_note_classifier,
    train_note_classifier,
)

#: The rate the samples are made at (the shipped models' rate).
RATE = 22050


def samples(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every piece's samples of a URMP-layout tree, stacked."""
    parts = []
    for track in urmp_tracks(root, None):
        if any(code is None for code in track.instruments):
            continue
        audio = load_track(track, RATE)
        parts.append(note_samples(audio.mixture, audio.references, track.instruments, RATE))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path, help="URMP-layout tree of generated pieces")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    parser.add_argument("--check", type=Path, nargs="*", default=[], help="trees to score")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    x, y, allowed = samples(args.train)
    print(f"{len(y)} notes from {args.train} ({time.perf_counter() - started:.0f} s)")
    network = train_note_classifier(x, y, allowed, args.hidden, args.steps, seed=args.seed)
    print(f"trained {args.steps} steps ({time.perf_counter() - started:.0f} s)")
    print(f"{'set':40s} {'notes':>7s} {'right':>6s} {'chance':>6s}")
    for root in [args.train, *args.check]:
        cx, cy, callowed = (x, y, allowed) if root == args.train else samples(root)
        chance = float(np.mean(1.0 / callowed.sum(axis=1))) if len(cy) else float("nan")
        accuracy = restricted_accuracy(network, cx, cy, callowed)
        print(f"{str(root)[-40:]:40s} {len(cy):7d} {accuracy:6.3f} {chance:6.2f}")
    provenance = {
        "trained_on": str(args.train.name),
        "notes": str(len(y)),
        "hidden": str(args.hidden),
        "steps": str(args.steps),
        "seed": str(args.seed),
    }
    save_note_classifier(network, args.out, provenance)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
