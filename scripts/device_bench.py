"""Separation speed and exactness on one device, for any checkpoint; prints JSON.

For each model: the realtime factor of separating a quartet from a synthetic mixture (the
engine's tiled path, after one warm-up pass), per precision, and the largest difference
between the tiled result and one pass over the whole input (exact chunking: ~1e-6 in fp32).
Needs no ffmpeg, so it runs on the bare GPU machine after the training run.

    python scripts/device_bench.py --device cuda --seconds 60 models/vimss-synth-cpu-v0.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

SRC = Path(__file__).resolve().parent.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from vimss_cli.api import Separator  # noqa: E402
from vimss_cli.conditioning import Query  # noqa: E402

QUARTET = ("vn", "cl", "sax", "bn")


def mixture(seconds: float, rate: int) -> np.ndarray:
    """Four harmonic tones with vibrato and a little noise ``(N,)``."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    voices = [
        np.sin(2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * 5 * t)))
        for f0 in (440, 294, 220, 98)
    ]
    return (0.1 * np.sum(voices, axis=0) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def bench(
    model: str, device: str, seconds: float, precisions: list[str], batch_sizes: list[int]
) -> dict[str, object]:
    """Realtime factors keyed ``x_realtime_<precision>`` (streamed windows, the default) and
    ``x_realtime_<precision>_batch<N>`` (N independent windows per pass)."""
    queries = [Query(code) for code in QUARTET]
    result: dict[str, object] = {"model": model, "device": device, "seconds": seconds}
    for precision in precisions:
        for batch_size in batch_sizes:
            separator = Separator(model, device=device, precision=precision, batch_size=batch_size)
            audio = mixture(seconds, separator.sample_rate)
            separator.separate_array(audio[: separator.sample_rate * 5], queries)  # warm-up
            if separator.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            tiled = separator.separate_array(audio, queries)
            if separator.device.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - started
            key = f"x_realtime_{precision}" + ("" if batch_size == 1 else f"_batch{batch_size}")
            result[key] = round(seconds / wall, 1)
        if precision == "fp32":
            short = audio[: separator.sample_rate * 20]
            whole = separator.separate_array(short, queries, split=False)
            chunked = separator.separate_array(short, queries)
            result["chunked_vs_whole_max_abs"] = float(np.abs(whole - chunked).max())
        del tiled
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="bundled names or .safetensors paths")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch-sizes", default="1", help="e.g. 1,16 (1: streamed windows)")
    args = parser.parse_args()
    batch_sizes = [int(value) for value in args.batch_sizes.split(",")]
    for model in args.models:
        report = bench(model, args.device, args.seconds, args.precisions.split(","), batch_sizes)
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
