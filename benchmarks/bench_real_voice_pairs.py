"""Real duets of one instrument, made from real recordings, split by pitch.

``--pitch-voices`` splits two players of one instrument into an upper and a lower voice by
pitch (:mod:`vimss_cli.pitch_voices`). Generated duets say how well it can work; real ones are
rare. This makes them from any URMP-layout tree of real recordings whose players were recorded
apart (``AuSep`` files, e.g. ``../shared/realval/bach10``, whose four instruments each appear in
12 distinct excerpts): for each instrument, its distinct recordings in path order, paired first with
second, third with fourth, ... (``--offset`` starts the pairing one later), summed as they were
recorded and cut to the shorter. Two real players in real rooms, though not playing together:
the passages are unrelated, so their lines cross more often than two parts of one work do.

Each pair's mixture is split (the whole-mixture case of ``vimss separate -i vn,vn`` on audio:
a duet of one instrument needs no network; each voice keeps ``--leak`` of the other's, by
default what ``separate`` writes, :data:`~vimss_cli.pitch_voices.VOICE_LEAK`) and scored by
whole-clip SI-SDR, the mean over the two players: in **register order** (voice 1 against the
player whose median pitch is higher, what ``separate`` writes without a video), in the
**best order**, and for the **mixture** as both stems (what label queries give such a duet
unsplit, ``--no-pitch-voices``: two identical stems).

    python benchmarks/bench_real_voice_pairs.py ROOT [ROOT ...] [--offset 1] [--leak 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vimss_cli.eval.audio import read_mono, resample
from vimss_cli.eval.metrics import si_sdr
from vimss_cli.eval.tracks import urmp_tracks
from vimss_cli.pitch_voices import VOICE_LEAK, split_voices
from vimss_cli.training.note_classifier import true_pitches

RATE = 22050


def same_passage(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two recordings hold the same passage (one cut a little differently from the
    other, as Bach10's 2-, 3- and 4-player excerpts are): their cross-correlation peaks above
    0.9 of the most it could be."""
    size = len(first) + len(second)
    spectrum = np.fft.rfft(first, size) * np.conj(np.fft.rfft(second, size))
    peak = float(np.abs(np.fft.irfft(spectrum, size)).max())
    return peak > 0.9 * float(np.linalg.norm(first) * np.linalg.norm(second))


def recordings(roots: list[Path]) -> dict[str, list[Path]]:
    """Each instrument's distinct separate recordings (a passage heard in several pieces
    counts once: :func:`same_passage`), in path order."""
    found: dict[str, list[tuple[Path, np.ndarray]]] = {}
    for root in roots:
        for track in urmp_tracks(root, None):
            for code, path in sorted(zip(track.instruments, track.references, strict=True)):
                audio = resample(*read_mono(path), RATE // 4)  # enough to tell passages apart
                kept = found.setdefault(code, [])
                if not any(same_passage(audio, other) for _, other in kept):
                    kept.append((path, audio))
    return {code: sorted(path for path, _ in kept) for code, kept in found.items()}


def score_pair(
    first: Path, second: Path, code: str, leak: float = VOICE_LEAK
) -> tuple[float, float, float, float]:
    """Seconds, and the mixture's, register order's and best order's SI-SDR (dB)."""
    signals = [resample(*read_mono(path), RATE) for path in (first, second)]
    length = min(len(s) for s in signals)
    truth = np.stack([s[:length] for s in signals])
    pitches = true_pitches(truth.astype(np.float32), [code, code], RATE)
    if np.isnan(pitches).all(axis=1).any():
        raise SystemExit(f"{first} or {second} holds no pitch: is it silent?")
    if np.nanmedian(pitches[0]) < np.nanmedian(pitches[1]):
        truth = truth[::-1]  # truth[0]: the higher player
    mixture = truth.sum(axis=0)
    split = split_voices(mixture.astype(np.float32), code, RATE, leak)[:, :length]
    split = split.astype(np.float64)
    register = float(np.mean(si_sdr(truth, split)))
    swapped = float(np.mean(si_sdr(truth, split[::-1])))
    plain = float(np.mean(si_sdr(truth, np.stack([mixture, mixture]))))
    return length / RATE, plain, register, max(register, swapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument(
        "--offset",
        type=int,
        default=0,
        help="pair from this recording on (the first ones then pair at the end)",
    )
    parser.add_argument(
        "--leak",
        type=float,
        default=VOICE_LEAK,
        help=f"each voice keeps this share of the other's (default {VOICE_LEAK}, what "
        "`vimss separate` writes; 0: the full split)",
    )
    args = parser.parse_args()
    rows: list[tuple[str, float, float, float]] = []
    print(f"{'code':6s} {'pair':56s} {'s':>5s} {'mixture':>8s} {'register':>9s} {'best':>6s}")
    for code, paths in recordings(args.roots).items():
        paths = paths[args.offset :] + paths[: args.offset]
        for first, second in zip(paths[0::2], paths[1::2], strict=False):
            seconds, plain, register, best = score_pair(first, second, code, args.leak)
            rows.append((code, plain, register, best))
            pair = f"{first.parent.name}+{second.parent.name}"[:56]
            print(f"{code:6s} {pair:56s} {seconds:5.1f} {plain:8.2f} {register:9.2f} {best:6.2f}")
    if not rows:
        raise SystemExit("no instrument with two separate recordings under the roots given")
    table = np.array([row[1:] for row in rows])
    print(f"\n{len(rows)} pairs, whole-clip SI-SDR (dB): mixture | register order | best order")
    for name, values in (("mean", table.mean(axis=0)), ("median", np.median(table, axis=0))):
        print(f"  {name:6s} {values[0]:6.2f} | {values[1]:6.2f} | {values[2]:6.2f}")
    worse = int(np.sum(table[:, 1] < table[:, 0]))
    print(f"  register order below the mixture in {worse} of {len(rows)} pairs")
    for code in dict.fromkeys(row[0] for row in rows):
        mine = table[[row[0] == code for row in rows]]
        median = np.median(mine, axis=0)
        print(f"  {code:6s} median {median[0]:6.2f} | {median[1]:6.2f} | {median[2]:6.2f}"
              f"  ({len(mine)} pairs)")  # fmt: skip


if __name__ == "__main__":
    main()
