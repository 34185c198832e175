"""Soft masks after the network, setting by setting, on a URMP-layout set (real Bach10 by
default): museval median (1 s windows, BSS Eval v4) and whole-clip mean SDR (bss_eval v3)
over all stems, as ``vimss eval`` scores them.

Each piece is separated once (``Separator(refine=False)``, label queries); every setting
then refines the same stems on the mixture (``soft_masks.refine``) before scoring. This is
the sweep behind the shipped settings (docs/training.md, "After the network" and "Harmonic
masks"); ``harmonic`` settings also get each stem's instrument. The last lines print the
paired mean difference of the last setting (shipped) against the plain soft masks and
against the harmonic masks with each stem's own pitch. The
realval set is for validation and model choice only: never train on it.

    .venv/bin/python benchmarks/bench_soft_masks.py --root ~/vimss-work/synth_test
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "realval" / "bach10"

#: (name, SoftMaskFilter settings); ``None``: the network's own stems
SETTINGS: list[tuple[str, dict[str, Any] | None]] = [
    ("none (the network's output)", None),
    ("p 2, 2048, no rest share", {"power": 2.0, "n_fft": 2048, "hop": 512, "rest_share": False}),
    ("p 1, 2048, no rest share", {"power": 1.0, "n_fft": 2048, "hop": 512, "rest_share": False}),
    ("p 2, 4096, no rest share", {"power": 2.0, "rest_share": False}),
    ("p 1.5, 4096, no rest share", {"power": 1.5, "rest_share": False}),
    ("p 1, 4096, no rest share", {"power": 1.0, "rest_share": False}),
    ("p 2, 4096, rest share", {"power": 2.0}),
    ("p 1, 4096, rest share", {"power": 1.0}),
    ("p 1.5, 4096, rest share (soft, shipped before)", {}),
    ("harmonic, off-harmonic 0.3", {"harmonic": True, "off_harmonic": 0.3}),
    ("harmonic, off-harmonic 1", {"harmonic": True, "off_harmonic": 1.0}),
    ("harmonic, own pitches (shipped before)", {"harmonic": True, "joint_pitches": False}),
    ("harmonic, joint, own weight 0.5", {"harmonic": True, "own_pitch_weight": 0.5}),
    ("harmonic, joint, own weight 0.85", {"harmonic": True, "own_pitch_weight": 0.85}),
    ("harmonic, joint, no note classifier (before)", {"harmonic": True, "timbre_weight": 0}),
    ("harmonic, joint, note classifier 1", {"harmonic": True, "timbre_weight": 1.0}),
    ("harmonic, joint, note classifier 0.5 (shipped)", {"harmonic": True}),
]
#: the settings the shipped one is paired against
BEFORE = (
    "p 1.5, 4096, rest share (soft, shipped before)",
    "harmonic, own pitches (shipped before)",
    "harmonic, joint, no note classifier (before)",
)


def add_scores(
    track: Any, references: Any, stems: Any, rate: int, museval: list[float], whole: list[float]
) -> None:
    """Score ``stems`` against ``references`` as ``vimss eval`` does (museval protocol) and
    append each stem's 1 s-window median SDR to ``museval`` and whole-clip SDR to ``whole``."""
    from vimss_cli.eval.scoring import score_track

    for row in score_track(track, "model", references, stems, rate, "museval"):
        if row.get("SDR_v4_median") is not None:
            museval.append(row["SDR_v4_median"])
        if row.get("SDR") is not None:
            whole.append(row["SDR"])


def refined(raw: Any, mixture: Any, settings: dict[str, Any], track: Any, rate: int) -> Any:
    """``raw`` stems refined on ``mixture`` with one of :data:`SETTINGS`."""
    from vimss_cli.soft_masks import refine

    settings = dict(settings)
    if settings.pop("harmonic", False):
        settings.update(instruments=list(track.instruments), sample_rate=rate)
    return refine(raw, mixture, **settings)


def label_stems(separator: Any, root: Path) -> Iterator[tuple[Any, Any, Any]]:
    """``(track, audio, stems)`` for each piece of the URMP tree ``root``: its audio at the
    model's rate (the masks see what it saw) and the network's own stems for label queries
    (``separator`` built with ``refine=False``), pairs not split."""
    from vimss_cli.eval.audio import load_track
    from vimss_cli.eval.systems import model_estimates
    from vimss_cli.eval.tracks import urmp_tracks

    for track in urmp_tracks(root, None):
        audio = load_track(track, separator.sample_rate)
        yield track, audio, model_estimates(separator, track, audio, "labels", pitch_voices=False)


def main() -> None:
    from vimss_cli.api import Separator

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    separator = Separator(args.model, device="cpu", refine=False)
    rate = separator.sample_rate
    museval: dict[str, list[float]] = {name: [] for name, _ in SETTINGS}
    whole: dict[str, list[float]] = {name: [] for name, _ in SETTINGS}
    started = time.perf_counter()
    for track, audio, raw in label_stems(separator, args.root):
        for name, settings in SETTINGS:
            stems = raw if settings is None else refined(raw, audio.mixture, settings, track, rate)
            add_scores(track, audio.references, stems, rate, museval[name], whole[name])
    print(f"{args.root} with {separator.loaded.name}, label queries, at {rate} Hz "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    print(f"{'post-processing':40s} {'museval median':>15s} {'whole-clip mean':>16s} {'stems':>6s}")
    for name, _ in SETTINGS:
        print(
            f"{name:40s} {statistics.median(museval[name]):15.2f} "
            f"{statistics.mean(whole[name]):16.2f} {len(whole[name]):6d}"
        )
    last = SETTINGS[-1][0]
    for before in BEFORE:
        paired = [
            f"{statistics.mean(a - b for a, b in zip(pair[last], pair[before], strict=True)):+.2f}"
            for pair in (museval, whole)
        ]
        print(f"paired mean, {last} minus {before}: museval {paired[0]}, whole clip {paired[1]}")


if __name__ == "__main__":
    main()
