"""Can the video say which voice stem is whose? The sorter on the true stems.

For every same-instrument duet of a URMP-layout tree made by ``vimss data synth`` (``--ensemble
vn,vn`` and so on), the two players' true stems stand in for the two voice stems a model with
``voices`` would give, and :class:`vimss_cli.voices.VoiceSorter` gives each stretch to a
player from the players' motion. Printed per motion kind and stretch length: the share of
stretches given to the right player, and the share decided on little evidence (margin below
``voices.UNSURE_MARGIN``). It is the gate of the voice path: with perfect stems, how often the
motion puts them in the right place.

Motion kinds: ``pose`` (pose motion of the true keypoints written beside each video),
``frames`` (frame differences of each player's box in ``SORTING_BANDS`` bands, as ``vimss
separate`` uses on any video).

    python benchmarks/bench_voice_sorting.py ROOT [--seconds 5 10] [--features pose,frames]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vimss_cli.eval.audio import read_mono
from vimss_cli.synth.video import generated_boxes
from vimss_cli.urmp import Piece, list_pieces
from vimss_cli.vision.analysis import analyse_video
from vimss_cli.vision.pose_motion import pose_motion, read_keypoints
from vimss_cli.vision.queries import SORTING_BANDS
from vimss_cli.voices import UNSURE_MARGIN, VoiceGroup, sort_voices


def motions(piece: Piece, kind: str) -> tuple[list[np.ndarray], float]:
    """Each player's motion ``(channels, frames)`` and its rate."""
    if kind == "pose":
        keypoints, rate = read_keypoints(piece.pose_path)
        return list(pose_motion(keypoints, rate)), rate
    boxes = generated_boxes(piece.video_path, piece.players)
    analysis = analyse_video(piece.video_path, players=piece.players, boxes=boxes)
    return [analysis.motion(p, SORTING_BANDS) for p in analysis.players], analysis.rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 10.0])
    parser.add_argument("--features", default="pose,frames")
    args = parser.parse_args()
    kinds = args.features.split(",")
    right: dict[tuple[str, float], list[float]] = {}
    unsure: dict[tuple[str, float], list[float]] = {}
    duets = 0
    for piece in list_pieces(args.root):
        codes = piece.name.instruments
        if len(codes) != 2 or codes[0] != codes[1]:
            continue
        duets += 1
        audio = [read_mono(path) for path in piece.stem_paths]
        rate = audio[0][1]
        length = min(len(a) for a, _ in audio)
        stems = np.stack([a[:length] for a, _ in audio]).astype(np.float32)
        for kind in kinds:
            moves, motion_rate = motions(piece, kind)
            for seconds in args.seconds:
                group = VoiceGroup([0, 1], moves)
                _, sorter = sort_voices(stems, [group], motion_rate, rate, seconds)
                owners = np.array(sorter.voice_of(0))
                right.setdefault((kind, seconds), []).extend(np.all(owners == [0, 1], axis=1))
                margins = np.array(sorter.margins[0])
                unsure.setdefault((kind, seconds), []).extend(margins < UNSURE_MARGIN)
    print(f"{duets} same-instrument duets in {args.root}")
    print(f"{'motion':8s} {'stretch':>8s} {'stretches':>9s} {'right':>6s} {'unsure':>6s}")
    for (kind, seconds), values in right.items():
        share = float(np.mean(values))
        doubt = float(np.mean(unsure[(kind, seconds)]))
        print(f"{kind:8s} {seconds:7.1f}s {len(values):9d} {share:6.3f} {doubt:6.3f}")


if __name__ == "__main__":
    main()
