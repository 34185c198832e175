"""Player finding on videos made from real photographs: counts, instruments and time.

    python benchmarks/bench_players.py [--folder DIR] [--only NAME ...] [--variant crf30|h480]

Builds the test videos of ``tests/real_footage.py`` (Debian's gcompris-qt-data photos: a
stage photo with camera drift, dark, low-contrast and 1080p; players side by side on plain
and busy backdrops, abutting URMP panels, overlapping, portrait; a mariachi duet; a solo; and
frames with no musicians; cellists, a double bassist and violinists cut from a chamber
orchestra photo) and runs, on each:

* before: the column-foreground layout with the zero-shot URMP-only guess (what
  ``analyse_video`` did before the person detector);
* after: ``analyse_video`` as shipped (people, instruments, warnings).

A video with no musicians is right when no players are reported (an error counts as zero).
An instrument is right, among the players of videos whose count is right, when a URMP
instrument is named correctly or an instrument outside URMP is reported as unknown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import real_footage
from vimss_cli.errors import VimssError
from vimss_cli.vision.analysis import DEFAULT_SAMPLES, _sample_indices, analyse_video
from vimss_cli.vision.appearance import describe_players
from vimss_cli.vision.frames import DEFAULT_MAX_SIDE, DEFAULT_RATE, FrameStream, probe_video
from vimss_cli.vision.instrument_guess import IMAGENET_TO_URMP, MIN_CONFIDENCE
from vimss_cli.vision.motion import MotionAccumulator, column_profile
from vimss_cli.vision.players import find_players


def before(path: Path) -> list[str | None]:
    """The earlier front end: column layout, then the best of the nine URMP ImageNet classes."""
    info = probe_video(path)
    wanted = _sample_indices(info.duration, DEFAULT_RATE, DEFAULT_SAMPLES)
    kept, motion = [], MotionAccumulator()
    with FrameStream(info, DEFAULT_RATE, DEFAULT_MAX_SIDE) as stream:
        for index, frame in stream:
            motion.push(frame)
            if index in wanted:
                kept.append(frame)
    layout = find_players(kept, column_profile(motion.grids(), kept[0].shape[1]))
    if not layout.boxes:
        return []
    probabilities = describe_players(kept[::2], layout.boxes).probabilities
    guesses = []
    for row in probabilities:
        index = max(IMAGENET_TO_URMP, key=lambda i: row[i])
        guesses.append(IMAGENET_TO_URMP[index][0] if row[index] >= MIN_CONFIDENCE else None)
    return guesses


def after(path: Path) -> tuple[list[str | None], list[str]]:
    try:
        analysis = analyse_video(path)
    except VimssError as error:
        return [], [str(error)]
    return [p.guess.instrument for p in analysis.players], analysis.warnings


def instruments_right(truth: list[str], guesses: list[str | None]) -> tuple[int, int, int, int]:
    """(right, players, URMP right, URMP players) for a video whose count is right; zeros
    otherwise."""
    if len(truth) != len(guesses):
        return 0, 0, 0, 0
    pairs = list(zip(truth, guesses, strict=True))
    right = sum((g is None) if t == real_footage.OTHER else (g == t) for t, g in pairs)
    urmp = [(t, g) for t, g in pairs if t != real_footage.OTHER]
    return right, len(truth), sum(t == g for t, g in urmp), len(urmp)


def photo_group(name: str) -> str:
    """``"orchestra"`` for the videos cut from the chamber orchestra photo (URMP's string
    instruments), ``"others"`` for the rest (the set measured before they were added)."""
    return "orchestra" if name.startswith("orchestra") else "others"


def time_long_video(folder: Path) -> None:
    """Wall time of ``vimss inspect`` and ``vimss separate`` (default model, players found
    automatically) on a 1-minute 1080p, 25 frames/s drifting stage video of a quartet."""
    import subprocess

    picture, drift, _ = real_footage.compose(real_footage.load_photos())["stage_1080p"]
    path = folder / "stage_1080p_60s.mp4"
    if not path.is_file():
        real_footage.write_video(path, picture, drift, seconds=60.0, fps=25)
    vimss = str(Path(sys.executable).with_name("vimss"))
    for name, command in (
        ("inspect", [vimss, "inspect", str(path), "-o", str(folder / "long.png"), "--force"]),
        ("separate", [vimss, "separate", str(path), "-o", str(folder / "stems"), "--force"]),
    ):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        print(f"{name:8s} 1-minute 1080p quartet video: {time.perf_counter() - started:.1f} s")


#: ``--variant``: ffmpeg video options a built video is re-encoded with (libx264, medium).
VARIANTS = {
    "crf30": ["-crf", "30"],  # a heavily compressed stream
    "h480": ["-vf", "scale=-2:480", "-crf", "23"],  # 480 lines
}


def reencoded(path: Path, variant: str) -> Path:
    """``path`` re-encoded as ``variant`` (:data:`VARIANTS`), beside it (made once)."""
    import subprocess

    from vimss_cli.atomic import atomic_path
    from vimss_cli.ffmpeg_io import ffmpeg_executable

    target = path.with_name(f"{path.stem}_{variant}.mp4")
    if not target.is_file():
        with atomic_path(target) as partial:
            subprocess.run(
                [ffmpeg_executable(), "-v", "error", "-y", "-i", str(path), *VARIANTS[variant],
                 "-c:v", "libx264", "-preset", "medium", "-c:a", "copy", str(partial)],
                check=True,
            )  # fmt: skip
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path.home() / ".cache" / "vimss-footage")
    parser.add_argument("--only", nargs="*", help="video names (default: all)")
    parser.add_argument(
        "--variant", choices=sorted(VARIANTS), help="re-encode each video first (default: none)"
    )
    parser.add_argument(
        "--long", action="store_true", help="only time inspect and separate on a 1-minute video"
    )
    args = parser.parse_args()
    if args.long:
        args.folder.mkdir(parents=True, exist_ok=True)
        time_long_video(args.folder)
        return
    made = real_footage.build(args.folder, args.only)
    if args.variant:
        made = [(reencoded(path, args.variant), truth) for path, truth in made]
    # per group of videos and front end: counts right, videos; instruments right, of; URMP
    # instruments right, of
    totals: dict[tuple[str, str], list[int]] = {}
    seconds = []
    wrong, silent = [], []  # videos counted wrong after; those of them with no warning
    print(f"{'video':22s} {'kind':32s} {'truth':>5s} {'before':>6s} {'after':>5s}  after's guesses")
    for path, truth in made:
        old = before(path)
        started = time.perf_counter()
        new, warnings = after(path)
        seconds.append(time.perf_counter() - started)
        for group in ("all", photo_group(truth.name)):
            for name, guesses in (("before", old), ("after", new)):
                row = totals.setdefault((group, name), [0] * 6)
                row[0] += len(guesses) == truth.count
                row[1] += 1
                for j, value in enumerate(instruments_right(truth.instruments, guesses), 2):
                    row[j] += value
        if len(new) != truth.count:
            wrong.append(truth.name)
            if not warnings:
                silent.append(truth.name)
        shown = ",".join(g or "?" for g in new) or "-"
        print(
            f"{truth.name:22s} {truth.kind[:32]:32s} {truth.count:5d} {len(old):6d} "
            f"{len(new):5d}  {shown}  ({len(warnings)} warning(s))"
        )
    print()
    for (group, name), (counts, videos, right, players, urmp_right, urmp) in totals.items():
        share = right / players if players else float("nan")
        print(
            f"{group:9s} {name:6s}: player count right in {counts}/{videos} videos "
            f"({counts / videos:.0%}); instrument right for {right}/{players} players "
            f"({share:.0%}) of the videos counted right; URMP instruments named right "
            f"{urmp_right}/{urmp}"
        )
    print(
        f"after: counted wrong in {len(wrong)} video(s), {len(wrong) - len(silent)} of them "
        f"with a warning; silently wrong: {', '.join(silent) or 'none'}"
    )
    print(f"after: {np.mean(seconds):.1f} s per video on average ({DEFAULT_SAMPLES} frames each)")


if __name__ == "__main__":
    main()
