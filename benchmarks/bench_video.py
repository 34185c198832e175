"""Benchmark the video front end: layout accuracy, ImageNet check, motion choice, cost.

    python benchmarks/bench_video.py layout      # count + IoU on composed URMP-layout scenes
    python benchmarks/bench_video.py imagenet    # top-1 of the port on the real photos
    python benchmarks/bench_video.py motion      # frame differences vs Farneback flow
    python benchmarks/bench_video.py cost        # seconds per minute of 1080p video
    python benchmarks/bench_video.py synth ROOT  # count and panel hits on `vimss data synth` output

Scenes are composed from the real instrument photos in tests/data/instruments (see
tests/scenes.py): K players side by side on a plain or a graded, noisy backdrop, swaying while
they play. Every figure printed is measured by this script on the machine it runs on; the
load average is printed with the timings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from scenes import PHOTOS, compose_scene, iou
from vimss_cli.ffmpeg_io import ffmpeg_executable
from vimss_cli.vision.analysis import analyse_video
from vimss_cli.vision.efficientnet import load_efficientnet_lite0, preprocess
from vimss_cli.vision.frames import FrameStream, probe_video
from vimss_cli.vision.motion import MotionAccumulator, box_motion

ENSEMBLES = [["tpt"], ["vn", "vc"], ["vn", "vc", "tpt"], ["vn", "vn", "vc", "bn"],
             ["vn", "vn", "vc", "bn", "tpt"]]  # fmt: skip


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def layout(seeds: int, size: tuple[int, int]) -> None:
    print("| players | backdrop | videos | count right | mean IoU | min IoU | guess right |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for codes in ENSEMBLES:
            for backdrop, noise in (("plain", 0.0), ("graded+noise", 4.0)):
                right, ious, guesses, total_guesses = 0, [], 0, 0
                for seed in range(seeds):
                    path = Path(folder) / "scene.mp4"
                    truth = compose_scene(
                        path, codes, size=size, seconds=4.0,
                        background="plain" if backdrop == "plain" else "gradient",
                        noise=noise, seed=100 * seed + len(codes),
                    )  # fmt: skip
                    players = analyse_video(path).players
                    if len(players) == len(truth):
                        right += 1
                        ious += [iou(p.box, t) for p, t in zip(players, truth, strict=True)]
                        guesses += sum(
                            p.guess.instrument == c for p, c in zip(players, codes, strict=True)
                        )
                        total_guesses += len(codes)
                mean = f"{np.mean(ious):.2f}" if ious else "-"
                low = f"{np.min(ious):.2f}" if ious else "-"
                print(
                    f"| {len(codes)} ({','.join(codes)}) | {backdrop} | {seeds} | {right}/{seeds} "
                    f"| {mean} | {low} | {guesses}/{total_guesses} |"
                )


def imagenet() -> None:
    expected = {"violin": 889, "cello": 486, "trumpet": 513, "bassoon": 432}
    model = load_efficientnet_lite0()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    conventions = {
        "(x-127)/128": preprocess,
        "ImageNet mean/std": lambda x: (torch.as_tensor(x).permute(0, 3, 1, 2) / 255 - mean) / std,
    }
    images = []
    for name in expected:
        rgba = cv2.cvtColor(cv2.imread(str(PHOTOS / f"{name}.png"), cv2.IMREAD_UNCHANGED),
                            cv2.COLOR_BGRA2RGBA).astype(np.float32)  # fmt: skip
        alpha = rgba[..., 3:] / 255
        rgb = rgba[..., :3] * alpha + 255 * (1 - alpha)
        h, w = rgb.shape[:2]
        side = max(h, w)
        canvas = np.full((side, side, 3), 255, np.float32)
        canvas[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = rgb
        images.append(cv2.resize(canvas, (224, 224), interpolation=cv2.INTER_AREA).astype(np.uint8))
    batch = np.stack(images)
    print("| photo | expected class | " + " | ".join(conventions) + " |")
    print("|---|---|" + "---|" * len(conventions))
    results = {}
    with torch.inference_mode():
        for label, prep in conventions.items():
            results[label] = model(prep(batch).float()).softmax(dim=1).numpy()
    for row, (name, index) in enumerate(expected.items()):
        cells = []
        for label in conventions:
            p = results[label][row]
            verdict = "right" if p.argmax() == index else "wrong"
            cells.append(f"top-1 {int(p.argmax())} ({verdict}), p={p[index]:.2f}")
        print(f"| {name} | {index} | " + " | ".join(cells) + " |")


def motion(size: tuple[int, int]) -> None:
    """Activity recovery and cost: frame differences (ours) vs Farneback optical flow."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "duet.mp4"
        active = [[(0.0, 2.0), (4.0, 6.0)], [(2.0, 4.0), (6.0, 8.0)]]
        truth = compose_scene(path, ["vn", "vn"], size=size, seconds=8.0, active=active, seed=7)
        rate = 10.0
        info = probe_video(path)
        with FrameStream(info, rate) as stream:
            frames = [frame for _, frame in stream]
        times = np.arange(len(frames)) / rate
        started = time.perf_counter()
        accumulator = MotionAccumulator()
        for frame in frames:
            accumulator.push(frame)
        grids = accumulator.grids()
        diff_seconds = (time.perf_counter() - started) / len(frames)
        w, h = size
        started = time.perf_counter()
        greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        flows = [np.zeros((h, w), np.float32)]
        for a, b in pairwise(greys):
            flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            flows.append(np.linalg.norm(flow, axis=2))
        flow_seconds = (time.perf_counter() - started) / len(frames)
        print(f"| method | ms per frame ({w}x{h}) | corr. player 1 | corr. player 2 |")
        print("|---|---|---|---|")

        def flow_energy(box_px: tuple[int, int, int, int]) -> np.ndarray:
            x, y, bw, bh = box_px
            return np.array([f[y : y + bh, x : x + bw].mean() for f in flows])

        def diff_energy(box_px: tuple[int, int, int, int]) -> np.ndarray:
            x, y, bw, bh = box_px
            return box_motion(grids, (x / w, y / h, bw / w, bh / h))[0]

        for name, signal, seconds_per_frame in (
            ("frame differences (grid)", diff_energy, diff_seconds),
            ("Farneback flow magnitude", flow_energy, flow_seconds),
        ):
            corr = []
            for j, box_px in enumerate(truth):
                playing = np.array([any(a <= t < b for a, b in active[j]) for t in times], float)
                corr.append(np.corrcoef(signal(box_px), playing)[0, 1])
            print(f"| {name} | {1000 * seconds_per_frame:.2f} | {corr[0]:.2f} | {corr[1]:.2f} |")
        print(load())


def cost(seconds: float, noise: float, crf: int) -> None:
    """Front-end wall time on a 1080p 29.97 fps H.264 video, and separation of its audio.

    The composed scene is upscaled to 1080p with per-frame noise of strength ``noise`` (camera
    grain: it sets the bit rate, and H.264 decoding time grows with the bit rate).
    """
    with tempfile.TemporaryDirectory() as folder:
        small = Path(folder) / "small.mp4"
        big = Path(folder) / "concert_1080p.mp4"
        compose_scene(small, ["vn", "vc"], size=(640, 360), seconds=seconds, fps=30000 / 1001,
                      audio_seconds=seconds, audio_rate=44100, seed=1)  # fmt: skip
        subprocess.run(
            [ffmpeg_executable(), "-hide_banner", "-v", "error", "-y", "-i", str(small),
             "-vf", f"scale=1920:1080:flags=bicubic,noise=alls={noise:g}:allf=t", "-c:v", "libx264",
             "-preset", "veryfast", "-crf", str(crf), "-c:a", "copy", str(big)],
            check=True,
        )  # fmt: skip
        size_mb = big.stat().st_size / 1e6
        print(
            f"video: {seconds:.0f} s, 1920x1080, 29.97 fps, H.264, {size_mb:.1f} MB "
            f"({8 * size_mb / seconds:.1f} Mbit/s); {load()}"
        )
        info = probe_video(big)
        started = time.perf_counter()
        with FrameStream(info) as stream:
            count = sum(1 for _ in stream)
        decode = time.perf_counter() - started
        started = time.perf_counter()
        analysis = analyse_video(big)
        front = time.perf_counter() - started
        print(f"decode only (10 fps out, 640x360): {decode:.1f} s for {count} frames; {load()}")
        print(f"whole front end: {front:.1f} s, {len(analysis.players)} players; {load()}")
        out = Path(folder) / "stems"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "vimss_cli", "separate", str(big), "-o", str(out),
             "-i", "vn,vc", "--force"],
            check=True, capture_output=True,
        )  # fmt: skip
        separation = time.perf_counter() - started
        print(
            f"vimss separate -i vn,vc (bundled model, no video step): {separation:.1f} s; {load()}"
        )
        per_minute = 60.0 / seconds
        print(
            f"per minute of 1080p: front end {front * per_minute:.1f} s "
            f"(decode {decode * per_minute:.1f} s), separation {separation * per_minute:.1f} s"
        )


def synth(root: Path) -> None:
    """Generated URMP-format pieces: player count, each box centred in its own panel, guesses.

    ``vimss data synth`` draws player ``j`` of ``K`` in the ``j``-th of ``K`` equal panels, so
    a found box is right when its centre lies in its own panel (the generator writes no boxes).
    """
    from vimss_cli.urmp import list_pieces

    rows: dict[int, list[int]] = {}
    for piece in list_pieces(root):
        codes = piece.name.instruments
        analysis = analyse_video(piece.video_path)
        width = analysis.info.width
        row = rows.setdefault(len(codes), [0, 0, 0, 0, 0])
        row[0] += 1
        if len(analysis.players) != len(codes):
            continue
        row[1] += 1
        for j, (player, code) in enumerate(zip(analysis.players, codes, strict=True)):
            x, _, w, _ = player.box
            row[2] += int((x + w / 2) // (width / len(codes))) == j
            row[3] += player.guess.instrument == code
            row[4] += 1
    print("| players | pieces | count right | boxes in own panel | guess right |")
    print("|---|---|---|---|---|")
    for count in sorted(rows):
        pieces, right, in_panel, guessed, total = rows[count]
        print(f"| {count} | {pieces} | {right}/{pieces} | {in_panel}/{total} | {guessed}/{total} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["layout", "imagenet", "motion", "cost", "synth"])
    parser.add_argument("root", nargs="?", type=Path, help="dataset folder (synth)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--noise", type=float, default=6.0, help="grain strength (cost)")
    parser.add_argument("--crf", type=int, default=20, help="x264 quality (cost)")
    args = parser.parse_args()
    if args.what == "layout":
        layout(args.seeds, (640, 360))
    elif args.what == "imagenet":
        imagenet()
    elif args.what == "motion":
        motion((640, 360))
    elif args.what == "synth":
        synth(args.root)
    else:
        cost(args.seconds, args.noise, args.crf)


if __name__ == "__main__":
    main()
