"""Harmonic templates learnt on the recording (``vimss_cli.template_masks``) against the harmonic
masks alone, on a URMP-layout set (real Bach10 by default): museval median (1 s windows, BSS Eval
v4) | whole-clip mean SDR (bss_eval v3), as ``vimss eval`` scores them, over all stems and over
the stems of instruments heard once.

Each piece is separated once (``Separator(refine=False)``, label queries, no pitch split); the
harmonic masks without templates (``soft_masks.refine(templates=0)``) refine the stems and log
the pitch each stem's harmonic mask used. Then:

- ``templates, pipeline pitches``: the templates fitted on those pitches, whole;
- ``blend B``: ``B`` of that plus ``1 - B`` of the harmonic masks' stems, for the stems of
  instruments heard once (``shipped``: the masks as shipped, ``TEMPLATE_BLEND`` streamed in
  blocks by ``SoftMaskFilter``);
- ``templates, true pitches``: the templates on each true stem's pitches (an oracle: how far
  the templates go when the pitches are right).

The realval set is for validation and model choice only: never train on it.

    .venv/bin/python benchmarks/bench_template_masks.py --root ~/vimss-work/data/gpu-lib/test
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "realval" / "bach10"
BLENDS = (0.5,)


def true_pitches_on_grid(references: np.ndarray, codes: list[str], rate: int) -> np.ndarray:
    """Each true stem's pitches ``(K, T)`` on the streaming grid of the templates."""
    from vimss_cli.soft_masks import HOP, N_FFT
    from vimss_cli.template_masks import frame_count
    from vimss_cli.training.note_classifier import true_pitches

    found = true_pitches(references.astype(np.float32), codes, rate)  # frame i at sample i * hop
    shift = (N_FFT - HOP) // HOP  # the grid's frame i + shift starts at sample i * hop
    frames = frame_count(references.shape[1])
    grid = np.full((len(codes), frames), np.nan)
    count = min(found.shape[1], frames - shift)
    grid[:, shift : shift + count] = found[:, :count]
    return grid


def main() -> None:
    from bench_soft_masks import add_scores, label_stems

    from vimss_cli.api import Separator
    from vimss_cli.soft_masks import TEMPLATE_BLEND, refine
    from vimss_cli.template_masks import template_stems

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    separator = Separator(args.model, device="cpu", refine=False)
    rate = separator.sample_rate
    alone, shipped = "harmonic masks alone", f"shipped: blend {TEMPLATE_BLEND}, streamed"
    names = [alone, "templates, pipeline pitches", shipped]
    names += [f"blend {b}" for b in BLENDS] + ["templates, true pitches (oracle)"]
    museval: dict[str, list[float]] = {name: [] for name in names}
    whole: dict[str, list[float]] = {name: [] for name in names}
    once: list[bool] = []
    started = time.perf_counter()
    for track, audio, network in label_stems(separator, args.root):
        codes = list(track.instruments)
        raw = network.astype(np.float32)
        settings: dict[str, Any] = {"instruments": codes, "sample_rate": rate}
        logged: list[np.ndarray] = []
        masked = refine(raw, audio.mixture, pitches_out=logged, templates=0, **settings)
        estimates: dict[str, Any] = {alone: masked, shipped: refine(raw, audio.mixture, **settings)}
        templates = template_stems(audio.mixture, logged[0], rate)
        estimates["templates, pipeline pitches"] = templates
        heard_once = np.array([[codes.count(code) == 1] for code in codes])
        for b in BLENDS:
            blended = b * templates + (1 - b) * masked
            estimates[f"blend {b}"] = np.where(heard_once, blended, masked)
        oracle = true_pitches_on_grid(audio.references, codes, rate)
        estimates["templates, true pitches (oracle)"] = template_stems(audio.mixture, oracle, rate)
        for name in names:
            stems = estimates[name].astype(np.float64)
            add_scores(track, audio.references, stems, rate, museval[name], whole[name])
        once += [codes.count(code) == 1 for code in codes]
    heard_once = np.array(once)
    print(f"{args.root} with {separator.loaded.name}, label queries, at {rate} Hz "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    print(f"{'masks':36s} {'all stems':>15s} {f'heard once ({heard_once.sum()})':>17s}")
    for name in names:
        m, w = np.array(museval[name]), np.array(whole[name])
        figures = f"{np.median(m):6.2f} | {w.mean():6.2f}"
        once_figures = f"{np.median(m[heard_once]):6.2f} | {w[heard_once].mean():6.2f}"
        print(f"{name:36s} {figures:>15s} {once_figures:>17s}")
    for name in names[1:-1]:
        gain = [
            statistics.mean(np.array(pair[name]) - np.array(pair[alone]))
            for pair in (museval, whole)
        ]
        print(f"paired mean, {name} minus {alone}: {gain[0]:+.2f} | {gain[1]:+.2f}")


if __name__ == "__main__":
    main()
