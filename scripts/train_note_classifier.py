"""Train the note classifier the harmonic masks consult (``models/notes/``) on generated
ensembles, and print its accuracy on other sets.

    .venv/bin/python scripts/train_note_classifier.py ~/vimss-work/data/gpu-lib/train \\
        models/notes/vimss-notes-v1.safetensors \\
        --check ~/vimss-work/data/gpu-lib/valid ~/vimss-work/data/gpu-lib/test

The training trees are URMP-layout trees of `vimss data synth` (``make device-data``'s train
split alone made the shipped file); ``--check`` trees are only scored: the share of notes whose
instrument the classifier names right among the piece's instruments (chance: one over
their number). ``--features``: the note features (``harmonic-profile-2`` by default, what
``vimss-notes-v1`` reads; ``harmonic-profile-1`` made ``vimss-notes-v0``). Never train on
``../shared/realval``. About a minute on two cores for the 320 pieces of the train split
(2026-12-05). Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vimss_cli.eval.audio import load_track
from vimss_cli.eval.tracks import urmp_tracks
from vimss_cli.note_classifier import DETAILED_VERSION, FEATURE_SIZES
from vimss_cli.training.note_classifier import (
    note_samples,
    restricted_accuracy,
    save_note_classifier,
    train_note_classifier,
)

#: The rate the samples are made at (the shipped models' rate).
RATE = 22050


def samples(roots: list[Path], features: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every piece's samples of URMP-layout trees, stacked."""
    parts = []
    for root in roots:
        for track in urmp_tracks(root, None):
            if any(code is None for code in track.instruments):
                continue
            audio = load_track(track, RATE)
            codes = track.instruments
            parts.append(note_samples(audio.mixture, audio.references, codes, RATE, features))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path, nargs="+", help="URMP-layout trees of generated pieces")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    parser.add_argument("--check", type=Path, nargs="*", default=[], help="trees to score")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", choices=sorted(FEATURE_SIZES), default=DETAILED_VERSION)
    args = parser.parse_args()
    started = time.perf_counter()
    x, y, allowed = samples(args.train, args.features)
    trees = " ".join(map(str, args.train))
    print(f"{len(y)} notes from {trees} ({time.perf_counter() - started:.0f} s)")
    network = train_note_classifier(x, y, allowed, args.hidden, args.steps, seed=args.seed)
    print(f"trained {args.steps} steps ({time.perf_counter() - started:.0f} s)")
    print(f"{'set':40s} {'notes':>7s} {'right':>6s} {'chance':>6s}")
    checked = [("train", (x, y, allowed))] + [
        (str(root)[-40:], samples([root], args.features)) for root in args.check
    ]
    for name, (cx, cy, callowed) in checked:
        chance = float(np.mean(1.0 / callowed.sum(axis=1))) if len(cy) else float("nan")
        accuracy = restricted_accuracy(network, cx, cy, callowed)
        print(f"{name:40s} {len(cy):7d} {accuracy:6.3f} {chance:6.2f}")
    provenance = {
        "trained_on": " ".join(root.name for root in args.train),
        "notes": str(len(y)),
        "hidden": str(args.hidden),
        "steps": str(args.steps),
        "seed": str(args.seed),
    }
    save_note_classifier(network, args.out, provenance, args.features)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
