"""Does the input's level change the separation? Each piece of a URMP-layout set (real
Bach10 by default) is separated at several gains and scored as ``vimss eval`` scores it.

The mixture is read, scaled by each gain (``peak``: to a peak of -1 dBFS, piece by piece),
separated with label queries (stems refined by harmonic masks, as ``vimss separate`` gives them)
and the stems scaled back before scoring, so a level-independent separator would print the
same figures on every row: museval median (1 s windows, BSS Eval v4) and whole-clip mean SDR
(bss_eval v3) over all stems. The realval set is for validation and model choice only: never
train on it.

    .venv/bin/python benchmarks/bench_level.py --gains 1 0.5 0.1 peak [--root SPLIT]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "realval" / "bach10"
#: ``peak`` scales each mixture to this peak (-1 dBFS)
PEAK = 10 ** (-1 / 20)


def main() -> None:
    from bench_soft_masks import add_scores  # this folder: the same scoring

    from vimss_cli.api import Separator
    from vimss_cli.eval.audio import fit_length, load_track, read_mono, resample
    from vimss_cli.eval.systems import model_queries
    from vimss_cli.eval.tracks import urmp_tracks

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--gains", nargs="+", default=["1", "0.5", "0.1", "peak"],
        help="linear gains, or 'peak' (each mixture to -1 dBFS)",
    )  # fmt: skip
    args = parser.parse_args()
    separator = Separator(args.model, device="cpu")
    rate = separator.sample_rate
    museval: dict[str, list[float]] = {gain: [] for gain in args.gains}
    whole: dict[str, list[float]] = {gain: [] for gain in args.gains}
    started = time.perf_counter()
    for track in urmp_tracks(args.root, None):
        assert track.mixture is not None
        audio = load_track(track, rate)
        queries = model_queries(separator, track, "labels", audio.notes)
        mixture, native = read_mono(track.mixture)
        mixture = resample(mixture, native, rate).astype(np.float32)
        for gain in args.gains:
            factor = PEAK / float(np.abs(mixture).max()) if gain == "peak" else float(gain)
            stems = separator.separate_array(mixture * np.float32(factor), queries) / factor
            stems = fit_length(stems.astype(np.float64), audio.references.shape[1], rate, "", [])
            add_scores(track, audio.references, stems, rate, museval[gain], whole[gain])
    print(f"{args.root} with {separator.loaded.name}, label queries, refined, at {rate} Hz "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    print(f"{'gain':>6s} {'museval median':>15s} {'whole-clip mean':>16s} {'stems':>6s}")
    for gain in args.gains:
        print(
            f"{gain:>6s} {statistics.median(museval[gain]):15.2f} "
            f"{statistics.mean(whole[gain]):16.2f} {len(whole[gain]):6d}"
        )


if __name__ == "__main__":
    main()
