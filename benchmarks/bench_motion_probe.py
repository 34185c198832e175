"""How much does the video say about who is playing? A probe of the motion features.

For each piece of a URMP-layout tree (real URMP or ``vimss data synth`` output) this runs the
video front end exactly as training and ``separate`` do, and compares each player's motion
(``VideoAnalysis.motion``, one band) with that player's note activity from its ``Notes_*``
file, on the motion clock:

* ``r own``: Pearson correlation of a player's motion with its own activity;
* ``r other``: the same with the other players' activity (what the features cannot tell apart);
* ``who plays``: over frames where exactly one of two same-instrument players sounds a note,
  the fraction where that player moves more than the other (0.5 is chance). This is the
  visual cue a model needs to tell two violins apart.

    python benchmarks/bench_motion_probe.py ROOT [--pieces 20]
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import numpy as np

from vimss_cli.urmp import list_pieces
from vimss_cli.vision.analysis import analyse_video


def note_activity(path: Path, frames: int, rate: float) -> np.ndarray:
    """``(frames,)`` 1 where a note of the Notes file sounds at ``frame / rate`` seconds."""
    active = np.zeros(frames)
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        onset, duration = float(fields[0]), float(fields[2])
        active[int(np.ceil(onset * rate)) : int(np.floor((onset + duration) * rate)) + 1] = 1
    return active


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--pieces", type=int, default=20)
    args = parser.parse_args()
    own, other, wins, trials = [], [], 0, 0
    for piece in list_pieces(args.root)[: args.pieces]:
        players = len(piece.name.instruments)
        analysis = analyse_video(piece.video_path, players=players)
        motion = np.stack([analysis.motion(p, 1)[0] for p in analysis.players])
        frames = motion.shape[1]
        activity = np.stack(
            [
                note_activity(piece.notes_path(j), frames, analysis.rate)
                for j in range(1, 1 + players)
            ]
        )
        table = np.corrcoef(np.vstack([motion, activity]))[:players, players:]
        own.extend(np.diag(table))
        other.extend(table[~np.eye(players, dtype=bool)])
        for a, b in combinations(range(players), 2):
            if piece.name.instruments[a] != piece.name.instruments[b]:
                continue
            only_a = (activity[a] > 0) & (activity[b] == 0)
            only_b = (activity[b] > 0) & (activity[a] == 0)
            wins += int(np.sum(motion[a][only_a] > motion[b][only_a]))
            wins += int(np.sum(motion[b][only_b] > motion[a][only_b]))
            trials += int(only_a.sum() + only_b.sum())
        print(f"{piece.folder.name}: r own {np.mean(np.diag(table)):+.2f}")
    print(f"players {len(own)}: r own {np.nanmean(own):+.3f}, r other {np.nanmean(other):+.3f}")
    if trials:
        share = wins / trials
        print(f"who plays (same-instrument pairs, {trials} frames): {share:.3f} (0.5 = chance)")


if __name__ == "__main__":
    main()
