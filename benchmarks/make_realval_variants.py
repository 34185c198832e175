"""Other real test sets made from a real URMP-layout set: other ensembles, and rooms.

Real recordings are scarce here, and every decision of issue 11 was taken on
``../shared/realval/bach10``. These variants ask whether what it measures carries over to what
users bring and Bach10 does not hold, with the same real players:

- ``ensembles``: every duet and trio the set's largest pieces hold that the set itself does
  not (Bach10: 12 quartets give vn+sax, vn+bn, cl+sax, cl+bn, sax+bn, vn+cl+bn, vn+sax+bn and
  cl+sax+bn, 96 pieces; Bach10 has only vn+cl duets and vn+cl+sax trios). Other sizes and
  partners: is the bassoon still found in a duet, does a query return its own instrument
  when its usual neighbours are absent.
- ``room``: every piece with each player heard through a room of its own (the data
  generator's synthetic impulse responses: direct sound plus a decaying, darkening noise
  tail; ``--rt60`` seconds, ``--wet`` share). The references are the players *with* their
  room, as URMP's are. Bach10's stems are close-miked and dry; concert recordings are not.

Evaluation only: the variants carry the source's terms (Bach10: never train on it). Then::

    .venv/bin/python benchmarks/make_realval_variants.py ensembles OUT/ensembles
    .venv/bin/python benchmarks/make_realval_variants.py room OUT/room --rt60 1.0 --wet 0.3
    .venv/bin/python benchmarks/bench_realval.py default --root OUT/ensembles --out RESULTS
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli.errors import InputError
from vimss_cli.synth.audio import Room, convolve, impulse_response
from vimss_cli.urmp import Piece, PieceName, list_pieces

#: The shared real set, as the repository sits beside ``../shared``.
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "realval" / "bach10"


def read_stems(piece: Piece) -> tuple[list[np.ndarray], int]:
    """A piece's players, ``K`` arrays of ``(n,)`` or ``(n, channels)`` float64, and their rate."""
    stems, rates = [], set()
    for path in piece.stem_paths:
        audio, rate = soundfile.read(str(path), dtype="float64")
        stems.append(audio)
        rates.add(rate)
    if len(rates) != 1 or len({len(stem) for stem in stems}) != 1:
        raise SystemExit(f"error: the stems of {piece.folder} differ in rate or length")
    return stems, rates.pop()


def write_piece(out: Path, name: PieceName, stems: list[np.ndarray], rate: int) -> None:
    """One URMP-layout piece: its stems as float WAVs and their exact sum as the mixture."""
    folder = out / name.folder_name
    folder.mkdir(parents=True)
    for player, stem in enumerate(stems, start=1):
        soundfile.write(
            str(folder / name.stem_name(player)), stem.astype(np.float32), rate, "FLOAT"
        )
    mixture = np.sum([stem.astype(np.float32) for stem in stems], axis=0)
    soundfile.write(str(folder / name.mix_name()), mixture, rate, "FLOAT")


def ensembles(pieces: list[Piece], out: Path) -> int:
    """Every duet and trio of the largest pieces' players that no piece of the set is;
    returns how many pieces were written (numbered from 1 in the order made)."""
    present = {piece.name.instruments for piece in pieces}
    largest = max(piece.players for piece in pieces)
    count = 0
    for piece in (p for p in pieces if p.players == largest):
        stems, rate = read_stems(piece)
        for size in range(2, largest):
            for chosen in itertools.combinations(range(largest), size):
                codes = tuple(piece.name.instruments[k] for k in chosen)
                if codes in present:
                    continue
                count += 1
                name = PieceName(count, piece.name.title, codes)
                write_piece(out, name, [stems[k] for k in chosen], rate)
    return count


def rooms(pieces: list[Piece], out: Path, rt60: float, wet: float, seed: int) -> int:
    """Every piece, each player convolved with an impulse response of its own."""
    rng = np.random.default_rng(seed)
    for piece in pieces:
        stems, rate = read_stems(piece)
        room = Room(rt60=rt60, wet=tuple([wet] * piece.players))
        heard = []
        for player, stem in enumerate(stems):
            response = impulse_response(rng, room, player, rate)
            channels = stem if stem.ndim == 2 else stem[:, None]
            heard.append(
                np.stack(
                    [convolve(channels[:, c], response) for c in range(channels.shape[1])], 1
                ).reshape(stem.shape)
            )
        write_piece(out, piece.name, heard, rate)
    return len(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=("ensembles", "room"))
    parser.add_argument("out", type=Path, help="a new folder for the variant")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a URMP-layout set")
    parser.add_argument("--rt60", type=float, default=1.0, help="room: reverberation time, s")
    parser.add_argument("--wet", type=float, default=0.3, help="room: reverberant share, 0-1")
    parser.add_argument("--seed", type=int, default=7, help="room: the impulse responses' seed")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"error: {args.out} exists; give a new folder")
    if not (0.05 <= args.rt60 <= 5.0 and 0.0 <= args.wet <= 1.0):
        raise SystemExit("error: --rt60 must lie in 0.05-5 s and --wet in 0-1")
    try:
        pieces = list_pieces(args.source)
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
    if args.variant == "ensembles":
        count = ensembles(pieces, args.out)
    else:
        count = rooms(pieces, args.out, args.rt60, args.wet, args.seed)
    print(f"{count} pieces in {args.out}")


if __name__ == "__main__":
    main()
