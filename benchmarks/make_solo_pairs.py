"""Real two-player mixes of different instruments, made from the real solo recordings.

``vimss data solos -o OUT`` writes the 12 real solo recordings Debian ships (gcompris-qt-data,
tuxpaint) in URMP layout. This script mixes every pair of them that are different
instruments (64 pairs), each trimmed to the shorter one and scaled to the same RMS, into a
URMP-layout tree that ``vimss eval --dataset urmp`` and ``benchmarks/bench_soft_masks.py
--root`` read. The recordings are real but short (3-11 s) and unrelated (the two players do
not play together), and the shipped models trained on them: a check that a change carries
over to real timbres beside Bach10, not a quality figure.

    .venv/bin/python benchmarks/make_solo_pairs.py ~/vimss-work/data/gpu-lib/solos OUT
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import soundfile

#: Each player's RMS in the mix.
LEVEL = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("solos", type=Path, help="the URMP-layout tree of `vimss data solos`")
    parser.add_argument("out", type=Path, help="a new folder for the pairs")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"error: {args.out} exists; give a new folder")
    files = sorted(args.solos.glob("*/AuSep_*.wav"))
    if not files:
        raise SystemExit(f"error: no AuSep_*.wav under {args.solos}")
    count = 0
    for first, second in itertools.combinations(files, 2):
        codes = [path.name.split("_")[2] for path in (first, second)]
        if codes[0] == codes[1]:
            continue
        (a, rate), (b, rate_b) = (soundfile.read(str(p), dtype="float32") for p in (first, second))
        if rate != rate_b:
            raise SystemExit(f"error: {first} and {second} differ in sample rate")
        length = min(len(a), len(b))
        players = [x[:length] / np.sqrt(np.mean(x[:length] ** 2)) * LEVEL for x in (a, b)]
        count += 1
        name = f"{count:02d}_SoloPair{count:02d}"
        folder = args.out / f"{name}_{codes[0]}_{codes[1]}"
        folder.mkdir(parents=True)
        for player, (code, audio) in enumerate(zip(codes, players, strict=True), start=1):
            soundfile.write(str(folder / f"AuSep_{player}_{code}_{name}.wav"), audio, rate, "FLOAT")
        mixture = players[0] + players[1]
        soundfile.write(
            str(folder / f"AuMix_{name}_{codes[0]}_{codes[1]}.wav"), mixture, rate, "FLOAT"
        )
    print(f"{count} pairs in {args.out}")


if __name__ == "__main__":
    main()
