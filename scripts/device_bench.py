"""Separation speed and exactness on one device, for any checkpoint; prints JSON.

For each model: the realtime factor of separating a quartet from a synthetic mixture (the
engine's tiled path, after one warm-up pass), per precision: ``x_realtime_<precision>`` of
the network alone (``refine=False``), and ``x_realtime_pipeline_fp32`` of what ``separate``
runs (the network, then the harmonic masks on the CPU); and the largest difference between the
tiled result and one pass over the whole input (exact chunking: ~1e-6 in fp32). ``--profile
FILE`` writes torch's profiler table of one network pass over ``--seconds`` (the top
operations by device time, or CPU time on the CPU). Needs no ffmpeg, so it runs on the bare GPU
machine after the training run.

    python scripts/device_bench.py --device cuda --seconds 60 models/vimss-synth-cpu-v0.safetensors

Until 2026-12-04 the figures were of the whole pipeline: on the H200 about 100x realtime
whatever the precision, which the harmonic masks on the CPU (0.4 s for a 60 s quartet) bound.
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
    """Realtime factors of the network keyed ``x_realtime_<precision>`` (streamed windows, the
    default) and ``x_realtime_<precision>_batch<N>`` (N independent windows per pass), and
    ``x_realtime_pipeline_fp32`` (the network and the harmonic masks)."""
    queries = [Query(code) for code in QUARTET]
    result: dict[str, object] = {"model": model, "device": device, "seconds": seconds}
    for precision in precisions:
        for batch_size in batch_sizes:
            separator = Separator(
                model, device=device, precision=precision, batch_size=batch_size, refine=False
            )
            audio = mixture(seconds, separator.sample_rate)
            wall = timed(separator, audio, queries)
            key = f"x_realtime_{precision}" + ("" if batch_size == 1 else f"_batch{batch_size}")
            result[key] = round(seconds / wall, 1)
        if precision == "fp32":
            result["x_realtime_pipeline_fp32"] = round(
                seconds / timed(Separator(model, device=device), audio, queries), 1
            )
            short = audio[: separator.sample_rate * 20]
            whole = separator.separate_array(short, queries, split=False)
            chunked = separator.separate_array(short, queries)
            result["chunked_vs_whole_max_abs"] = float(np.abs(whole - chunked).max())
    return result


def timed(separator: Separator, audio: np.ndarray, queries: list[Query]) -> float:
    """Seconds ``separator`` takes over ``audio``, after a 5 s warm-up pass."""
    separator.separate_array(audio[: separator.sample_rate * 5], queries)
    if separator.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    separator.separate_array(audio, queries)
    if separator.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def profile(model: str, device: str, seconds: float, out: Path) -> None:
    """torch's profiler table of one network pass (fp32, after a warm-up) into ``out``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    separator = Separator(model, device=device, refine=False)
    queries = [Query(code) for code in QUARTET]
    audio = mixture(seconds, separator.sample_rate)
    separator.separate_array(audio[: separator.sample_rate * 5], queries)
    activities = [ProfilerActivity.CPU]
    on_cuda = separator.device.type == "cuda"
    if on_cuda:
        activities.append(ProfilerActivity.CUDA)
    with torch_profile(activities=activities) as trace:
        separator.separate_array(audio, queries)
        if on_cuda:
            torch.cuda.synchronize()
    sort = "cuda_time_total" if on_cuda else "cpu_time_total"
    out.write_text(trace.key_averages().table(sort_by=sort, row_limit=40) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="bundled names or .safetensors paths")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch-sizes", default="1", help="e.g. 1,16 (1: streamed windows)")
    parser.add_argument("--profile", type=Path, help="write the first model's profiler table here")
    args = parser.parse_args()
    batch_sizes = [int(value) for value in args.batch_sizes.split(",")]
    for model in args.models:
        report = bench(model, args.device, args.seconds, args.precisions.split(","), batch_sizes)
        print(json.dumps(report), flush=True)
    if args.profile:  # last: a profiler that fails (no CUPTI) costs no figures
        try:
            profile(args.models[0], args.device, args.seconds, args.profile)
        except RuntimeError as error:
            print(f"profile: {error}", file=sys.stderr)


if __name__ == "__main__":
    main()
