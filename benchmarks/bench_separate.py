"""Benchmark ``vimss separate``: wall time, realtime factor and peak RSS by input length.

Writes synthetic ensemble-like WAVs (harmonic tones plus noise, 22.05 kHz, 16-bit) of the
requested lengths block by block, then runs the real command in a child process for each
(length, instrument count) and reports the child's peak resident memory from ``wait4``.

    python benchmarks/bench_separate.py --minutes 1 60 --instruments 2 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

RATE = 22050
CODES = ["vn", "vc", "fl", "cl", "tpt"]


def test_blocks(seconds: float, rate: int = RATE) -> Iterator[np.ndarray]:
    """Ensemble-like test audio in 10 s blocks: three harmonic tones whose pitch drifts from
    block to block, plus a little noise (float32, mono)."""
    rng = np.random.default_rng(0)
    total = int(seconds * rate)
    block = 10 * rate
    for start in range(0, total, block):
        t = (np.arange(start, min(total, start + block)) / rate)[:, None]
        f0 = np.array([196.0, 262.0, 392.0]) * (1 + 0.1 * np.sin(start / rate / 7))
        tones = np.sin(2 * np.pi * t * f0).sum(axis=1) / 3
        yield (0.3 * tones + 0.02 * rng.standard_normal(t.shape[0])).astype(np.float32)


def write_test_wav(path: Path, minutes: float) -> None:
    """A long mono WAV of :func:`test_blocks`, written block by block (memory stays small)."""
    with soundfile.SoundFile(str(path), "w", RATE, 1, "PCM_16") as handle:
        for block in test_blocks(minutes * 60):
            handle.write(block)


def run_once(wav: Path, instruments: int, out: Path, extra: list[str]) -> tuple[float, float]:
    """Run the command; return (wall seconds, peak RSS in MB of the vimss process)."""
    command = [
        sys.executable,
        "-m",
        "vimss_cli",
        "separate",
        str(wav),
        "-o",
        str(out),
        "-i",
        ",".join(CODES[:instruments]),
        "--force",
        *extra,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vimss failed: {stderr}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0])
    parser.add_argument("--instruments", type=int, nargs="+", default=[2, 4])
    parser.add_argument(
        "--extra",
        nargs=argparse.REMAINDER,
        default=[],
        help="further arguments for vimss separate (e.g. --model NAME)",
    )
    args = parser.parse_args()
    print(f"torch threads: {os.cpu_count()} cores on this machine")
    print(f"{'minutes':>8} {'players':>8} {'wall s':>9} {'x realtime':>11} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as scratch:
        for minutes in args.minutes:
            wav = Path(scratch) / f"bench_{minutes:g}min.wav"
            write_test_wav(wav, minutes)
            for count in args.instruments:
                wall, rss = run_once(wav, count, Path(scratch) / "out", args.extra)
                print(
                    f"{minutes:8g} {count:8d} {wall:9.1f} {minutes * 60 / wall:11.2f} {rss:12.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
