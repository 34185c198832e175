"""Do the stems of two players of one instrument differ, and does each follow its own player?

For every same-instrument duet of a URMP-layout tree (``vimss data synth --ensemble vn,vn``
and so on), the model separates the mixture three times: with label queries and no split
(``shared``: the two queries are the same, so the two stems are too), with label queries as
``vimss separate`` gives an audio file (``register``: a label model's stem split by pitch,
the higher voice first) and with video queries (``video``: the voices given to the players by
their motion). Printed per duet and kind:

* ``own``: mean over the two stems of the correlation of a stem with its own reference;
* ``wrong``: the same with the other player's reference (what a stem takes from the wrong
  player);
* ``stems``: the correlation of the two stems with each other (1: identical).

The SDR figures of the same runs come from ``vimss eval --queries labels|video`` (museval),
which also scores the IRM.

    python benchmarks/bench_same_instrument.py ROOT --model NAME_OR_PATH
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vimss_cli.api import Separator
from vimss_cli.eval.audio import read_mono, resample
from vimss_cli.eval.systems import model_queries
from vimss_cli.eval.tracks import urmp_tracks


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    separator = Separator(args.model, device="cpu")
    rate = separator.sample_rate
    kinds = {"shared": ("labels", False), "register": ("labels", True), "video": ("video", True)}
    totals: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in kinds}
    print(f"{'piece':40s} {'queries':8s} {'own':>6s} {'wrong':>6s} {'stems':>6s}")
    for track in urmp_tracks(args.root):
        if len(track.instruments) != 2 or track.instruments[0] != track.instruments[1]:
            continue
        assert track.mixture is not None
        mixture, native = read_mono(track.mixture)
        mixture = resample(mixture, native, rate).astype(np.float32)
        references = []
        for path in track.references:
            audio, reference_rate = read_mono(path)
            references.append(resample(audio, reference_rate, rate))
        length = min(len(mixture), *(len(r) for r in references))
        for kind, (mode, split) in kinds.items():
            notes: list[str] = []
            queries = model_queries(separator, track, mode, notes, pitch_voices=split)
            stems = separator.separate_array(mixture, queries)[:, :length]
            own = np.mean([correlation(stems[j], references[j][:length]) for j in (0, 1)])
            wrong = np.mean([correlation(stems[j], references[1 - j][:length]) for j in (0, 1)])
            between = correlation(stems[0], stems[1])
            totals[kind].append((own, wrong, between))
            print(f"{track.piece:40s} {kind:8s} {own:6.3f} {wrong:6.3f} {between:6.3f}")
    for kind, rows in totals.items():
        if rows:
            own, wrong, between = np.mean(rows, axis=0)
            print(f"{'mean of ' + str(len(rows)) + ' duets':40s} {kind:8s} {own:6.3f} "
                  f"{wrong:6.3f} {between:6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
