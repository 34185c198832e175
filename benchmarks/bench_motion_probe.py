"""How much does the video say about who is playing? A probe of the motion features.

For each piece of a URMP-layout tree (real URMP or ``vimss data synth`` output) this takes
each player's motion features and compares them with that player's note activity from its
``Notes_*`` file, on the features' own clock. Two kinds of features:

* ``frames``: the frame-difference energy of the player's box, as training and ``separate``
  use it today (``VideoAnalysis.motion``, ``--bands`` horizontal bands);
* ``pose``: :func:`vimss_cli.vision.pose_motion.pose_motion` on the true keypoints that
  ``vimss data synth`` writes beside each video (``Pose_*.npz``);
* ``estimated``: the same features on the keypoints the pose estimator tracks in the video
  (:func:`vimss_cli.vision.pose_track.track_poses`), with its error against the truth.

Printed, per kind:

* ``r own`` / ``r other``: mean Pearson correlation of a player's summed features with its
  own activity, and with the other players' (what the features cannot tell apart);
* ``moves more``: over frames where exactly one of two same-instrument players sounds a note,
  the share where that player's summed features are larger (0.5 is chance). This is the
  figure the model card of ``vimss-synth-video-cpu-v0`` reports (0.61);
* ``who plays``: the same frames, decided by a logistic probe on the difference of the two
  players' features averaged over centred windows of 0.2, 0.6 and 1.5 s (one probe for
  strings, one for winds and brass: a model knows the instrument from its label), trained on
  half the pieces and tested on the other half (two folds by piece; each ensemble's pieces
  alternate between the folds). It is the
  cheap gate for a training run: what a small model can read from the features.

    python benchmarks/bench_motion_probe.py ROOT [--pieces 40] [--features frames,pose]
"""

from __future__ import annotations

import argparse
from itertools import combinations, product
from pathlib import Path

import numpy as np

from vimss_cli.synth.kinematics import STRINGS
from vimss_cli.synth.video import generated_boxes
from vimss_cli.urmp import Piece, list_pieces
from vimss_cli.vision.analysis import VideoAnalysis, analyse_video
from vimss_cli.vision.pose_motion import pose_motion, read_keypoints
from vimss_cli.voices import read_notes

#: Centred windows (seconds) the probe averages each feature over.
WINDOWS = (0.2, 0.6, 1.5)


def note_activity(path: Path, frames: int, rate: float, bridge: float = 0.0) -> np.ndarray:
    """``(frames,)`` 1 where a note of the Notes file sounds at ``frame / rate`` seconds.

    With ``bridge`` (seconds), gaps between notes shorter than that count as playing too: the
    player is inside a phrase (articulation gaps, a breath between two notes).
    """
    active = np.zeros(frames)
    end = -np.inf
    for onset, stop, _ in read_notes(path):
        start = end if 0 < onset - end < bridge else onset
        active[int(np.ceil(start * rate)) : int(np.floor(stop * rate)) + 1] = 1
        end = stop
    return active


def generated_analysis(piece: Piece) -> VideoAnalysis:
    """The front end on a generated piece, given its players' known regions."""
    boxes = generated_boxes(piece.video_path, piece.players)
    return analyse_video(piece.video_path, players=piece.players, boxes=boxes)


def frame_features(piece: Piece, bands: int) -> tuple[np.ndarray, float]:
    """``(players, bands, T)`` frame-difference motion and its rate."""
    analysis = generated_analysis(piece)
    motion = np.stack([analysis.motion(p, bands) for p in analysis.players])
    return motion, analysis.rate


def pose_features(piece: Piece) -> tuple[np.ndarray, float]:
    """``(players, features, T)`` pose motion from the piece's true keypoints, and its rate."""
    keypoints, rate = read_keypoints(piece.pose_path)
    return pose_motion(keypoints, rate), rate


def estimated_features(piece: Piece, errors: list[float]) -> tuple[np.ndarray, float]:
    """``(players, features, T)`` pose motion from keypoints the pose estimator tracks in the
    video. Appends to ``errors`` each player's median distance between estimated and true
    wrists, elbows and shoulders, in shoulder widths (where the estimator saw the player)."""
    from vimss_cli.vision.pose_track import track_poses

    analysis = generated_analysis(piece)
    estimated = track_poses(piece.video_path, analysis.players, analysis.rate)
    truth, true_rate = read_keypoints(piece.pose_path)
    if len(estimated) == len(truth):
        frames = np.round(np.arange(estimated.shape[1]) * true_rate / analysis.rate).astype(int)
        true_points = truth[:, np.clip(frames, 0, truth.shape[1] - 1)]
        joints = [11, 12, 13, 14, 15, 16]
        width = np.linalg.norm(truth[:, :, 11, :2] - truth[:, :, 12, :2], axis=-1).mean(axis=1)
        for j in range(len(truth)):
            seen = estimated[j, :, 11, 2] > 0
            if seen.any():
                miss = estimated[j][seen][:, joints, :2] - true_points[j][seen][:, joints, :2]
                errors.append(float(np.median(np.linalg.norm(miss, axis=-1)) / width[j]))
            else:
                errors.append(float("inf"))
    return pose_motion(estimated, analysis.rate), analysis.rate


def windowed(features: np.ndarray, rate: float) -> np.ndarray:
    """``(C, T)`` -> ``(C * len(WINDOWS), T)``: each row averaged over each centred window."""
    rows = []
    for seconds in WINDOWS:
        frames = max(1, 2 * round(seconds * rate / 2) + 1)
        kernel = np.ones(frames) / frames
        for row in features:
            padded = np.pad(row, frames // 2, mode="edge")
            rows.append(np.convolve(padded, kernel, mode="valid"))
    return np.stack(rows)


def fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 500) -> np.ndarray:
    """Weights ``(D + 1,)`` of a logistic regression (last: bias), L2 1e-3, gradient descent
    on standardised inputs (the standardisation is folded back into the weights)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= 0.5 * (z.T @ (p - y) / len(y) + 1e-3 * w)
        b -= 0.5 * float(np.mean(p - y))
    return np.append(w / std, b - float((mean / std) @ w))


def probe(pieces: list[Piece], features: list[tuple[np.ndarray, float]], bridge: float) -> None:
    """Print the probe's figures for one definition of "playing" (see :func:`note_activity`)."""
    own, other, wins, trials = [], [], 0, 0
    pairs: list[tuple[str, int, np.ndarray, np.ndarray]] = []  # (family, fold, x, y)
    seen: dict[tuple[str, ...], int] = {}  # pieces of each ensemble so far
    for piece, (motion, rate) in zip(pieces, features, strict=True):
        ensemble = piece.name.instruments
        fold = seen.get(ensemble, 0) % 2  # each ensemble's pieces alternate between the folds
        seen[ensemble] = seen.get(ensemble, 0) + 1
        players, frames = len(motion), motion.shape[-1]
        activity = np.stack(
            [
                note_activity(piece.notes_path(j), frames, rate, bridge)
                for j in range(1, 1 + players)
            ]
        )
        total = motion.sum(axis=1)  # (players, T)
        table = np.corrcoef(np.vstack([total, activity]))[:players, players:]
        own.extend(np.diag(table))
        other.extend(table[~np.eye(players, dtype=bool)])
        for a, b in combinations(range(players), 2):
            if piece.name.instruments[a] != piece.name.instruments[b]:
                continue
            only_a = (activity[a] > 0) & (activity[b] == 0)
            only_b = (activity[b] > 0) & (activity[a] == 0)
            wins += int(np.sum(total[a][only_a] > total[b][only_a]))
            wins += int(np.sum(total[b][only_b] > total[a][only_b]))
            trials += int(only_a.sum() + only_b.sum())
            difference = windowed(motion[a], rate) - windowed(motion[b], rate)
            one = only_a | only_b
            family = "strings" if ensemble[a] in STRINGS else "winds"
            pairs.append((family, fold, difference[:, one].T, only_a[one].astype(float)))
    print(f"  r own {np.nanmean(own):+.3f}, r other {np.nanmean(other):+.3f} ({len(own)} players)")
    if not trials:
        return
    print(f"  moves more (same-instrument pairs, {trials} frames): {wins / trials:.3f}")
    right = tested = 0
    for family, fold in product(("strings", "winds"), (0, 1)):
        train = [p for p in pairs if p[0] == family and p[1] != fold]
        test = [p for p in pairs if p[0] == family and p[1] == fold]
        if not train or not test:
            continue
        weights = fit_logistic(
            np.concatenate([p[2] for p in train]), np.concatenate([p[3] for p in train])
        )
        for _, _, x, y in test:
            guess = (x @ weights[:-1] + weights[-1]) > 0
            right += int(np.sum(guess == (y > 0)))
            tested += len(y)
    if tested:
        print(
            f"  who plays (logistic probe, 2 folds by piece, {tested} frames): {right / tested:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--pieces", type=int, default=40)
    parser.add_argument("--features", default="frames,pose", help="frames, pose, estimated")
    parser.add_argument("--bands", type=int, default=4, help="bands of the frame features")
    parser.add_argument(
        "--bridge", type=float, default=0.25, help="gap (s) inside a phrase, for 'phrases'"
    )
    args = parser.parse_args()
    np.seterr(invalid="ignore")  # a player still throughout has no correlation
    pieces = list_pieces(args.root)[: args.pieces]
    for kind in args.features.split(","):
        if kind == "frames":
            features = [frame_features(piece, args.bands) for piece in pieces]
        elif kind == "pose":
            features = [pose_features(piece) for piece in pieces]
        elif kind == "estimated":
            errors: list[float] = []
            features = [estimated_features(piece, errors) for piece in pieces]
            print(
                f"estimated keypoints: median error of shoulders, elbows and wrists "
                f"{np.median(errors):.2f} shoulder widths (per player: "
                f"{' '.join(f'{e:.2f}' for e in errors)})"
            )
        else:
            raise SystemExit(f"unknown features {kind!r}: frames, pose or estimated")
        for label, bridge in (
            ("notes", 0.0),
            (f"phrases (gaps < {args.bridge} s bridged)", args.bridge),
        ):
            print(f"{kind} features, playing = {label}:")
            probe(pieces, features, bridge)


if __name__ == "__main__":
    main()
