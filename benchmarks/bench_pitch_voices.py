"""Two players of one instrument split by pitch: how much closer is each stem to its player?

For every piece of a URMP-layout tree with exactly two players of one instrument (a duet, or
a pair in a larger ensemble), the model separates the mixture twice:

* ``labels``: plain label queries, so the pair's two stems are the same;
* ``pitch``: the pair queried as voice 1 and voice 2 (``vimss_cli.pitch_voices``), in register
  order (no video: voice 1 is the higher voice).

Each of the pair's stems is scored against the player whose notes are higher (voice 1) or
lower (voice 2) on average over the piece, from the ``Notes_*`` files: whole-clip SI-SDR in
dB. The split's own time is printed per minute of stem. With video, ``vimss eval --queries
video`` scores the same split with the stems given to the players by their motion.

    python benchmarks/bench_pitch_voices.py ROOT [ROOT ...] [--model NAME_OR_PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vimss_cli.api import Separator
from vimss_cli.conditioning import Query
from vimss_cli.eval.audio import read_mono, resample
from vimss_cli.eval.metrics import si_sdr
from vimss_cli.eval.tracks import urmp_tracks
from vimss_cli.pitch_voices import split_voices
from vimss_cli.voices import mean_pitch, read_notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument("--model", default="default")
    parser.add_argument("--no-harmonic", action="store_true", help="plain soft masks")
    args = parser.parse_args()
    separator = Separator(args.model, device="cpu", harmonic=not args.no_harmonic)
    rate = separator.sample_rate
    rows: list[tuple[float, float]] = []
    print(f"{'piece':44s} {'pair':4s} {'labels':>7s} {'pitch':>7s}")
    for root in args.roots:
        for track in urmp_tracks(root):
            codes = list(track.instruments)
            pairs = [c for c in dict.fromkeys(codes) if codes.count(c) == 2]
            if len(pairs) != 1 or track.mixture is None:
                continue
            slots = [k for k, c in enumerate(codes) if c == pairs[0]]
            folder = track.mixture.parent
            notes = [
                read_notes(next(folder.glob(f"Notes_{k + 1}_{pairs[0]}_*.txt"))) for k in slots
            ]
            pitches = [mean_pitch(n, 0.0, 1e9) for n in notes]
            if pitches[0] is None or pitches[1] is None or pitches[0] == pitches[1]:
                continue
            upper_first = pitches[0] > pitches[1]
            mixture, native = read_mono(track.mixture)
            mixture = resample(mixture, native, rate).astype(np.float32)
            references = [resample(*read_mono(track.references[k]), rate) for k in slots]
            if not upper_first:
                references.reverse()  # references[0]: the higher player
            length = min(len(mixture), *(len(r) for r in references))
            labels = [Query(c) for c in codes]
            voiced = list(labels)
            voiced[slots[0]], voiced[slots[1]] = Query(pairs[0], voice=1), Query(pairs[0], voice=2)
            plain = separator.separate_array(mixture, labels)[slots, :length]
            split = separator.separate_array(mixture, voiced)[slots, :length]
            truth = np.stack([r[:length] for r in references])
            score = [float(np.mean(si_sdr(truth, s))) for s in (plain, split)]
            rows.append((score[0], score[1]))
            print(f"{track.piece:44s} {pairs[0]:4s} {score[0]:7.2f} {score[1]:7.2f}", flush=True)
    if not rows:
        raise SystemExit("no piece with exactly two players of one instrument")
    table = np.array(rows)
    print(
        f"{len(rows)} pieces, whole-clip SI-SDR (dB), mean | median: labels "
        f"{table[:, 0].mean():.2f} | {np.median(table[:, 0]):.2f}, pitch "
        f"{table[:, 1].mean():.2f} | {np.median(table[:, 1]):.2f}"
    )
    noise = np.random.default_rng(0).standard_normal(60 * rate).astype(np.float32) * 0.1
    started = time.perf_counter()
    split_voices(noise, "vn", rate)
    print(f"split: {time.perf_counter() - started:.2f} s per minute of stem (noise, {rate} Hz)")


if __name__ == "__main__":
    main()
