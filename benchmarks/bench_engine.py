"""The engine against the naive predict loop, in one process, alternating.

For each input length and number of players, runs the engine with its defaults (streamed
windows, tile planned for this machine) and the port of Wave-U-Net-Pytorch's ``predict()``
(``benchmarks/reference_predict.py``: one 8192-sample window per forward pass) on the same
model and mixture, A B A B, and prints per configuration:

* the ratio (reference time / engine time, median over the pairs);
* the engine's realtime factor (seconds of audio per second of wall time, median);
* the engine's share of the measured conv ceiling: the network's useful convolution FLOPs
  (each output sample once, no context recomputation; ``model_cost.useful_macs_per_sample``) per
  second, over the FLOP rate of a large fp32 convolution (128 -> 128 channels, kernel 15,
  the faster of the two layouts) on the same threads;
* the largest difference between the two outputs.

Peak memory needs a process per run: ``benchmarks/bench_separate.py`` measures it on the CLI.
The reference loop runs only up to ``--reference-up-to`` minutes (default 1): on an hour it
would take most of one.

    .venv/bin/python benchmarks/bench_engine.py --players 2 3 4 5 --minutes 1 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from bench_separate import test_blocks  # noqa: E402
from model_cost import useful_macs_per_sample  # noqa: E402
from reference_predict import predict  # noqa: E402

from vimss_cli.checkpoint import load_model  # noqa: E402
from vimss_cli.conditioning import Query  # noqa: E402
from vimss_cli.engine import even_tile, plan_tile, separate_array  # noqa: E402

CODES = ["vn", "vc", "fl", "cl", "tpt"]


def conv_ceiling(repeats: int = 5) -> float:
    """FLOP/s of a large fp32 convolution (N=4, 128 -> 128 channels, kernel 15, 16384
    samples) on torch's threads: the faster of the channels-first conv1d and the channels-last
    2-D form the model uses, best of ``repeats``."""
    x = torch.randn(4, 128, 16384)
    weight = torch.randn(128, 128, 15)
    x_last = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    weight_last = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    flops = 2 * 4 * 128 * 128 * 15 * (16384 - 14)
    best = float("inf")
    with torch.inference_mode():
        for run in (lambda: F.conv1d(x, weight), lambda: F.conv2d(x_last, weight_last)):
            run()
            for _ in range(repeats):
                started = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - started)
    return flops / best


def timed(function, *args, **kwargs) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--players", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0])
    parser.add_argument(
        "--repeats", type=int, default=2, help="A B pairs per compared configuration"
    )
    parser.add_argument("--tile", type=int, default=None, help="engine tile (default: planned)")
    parser.add_argument("--batch-size", type=int, default=1, help="engine windows per pass")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument(
        "--reference-up-to",
        type=float,
        default=1.0,
        help="run the reference loop only on inputs up to this many minutes (0: never)",
    )
    args = parser.parse_args()

    model = load_model(args.model).model.eval()
    rate = model.config.sample_rate
    ceiling = conv_ceiling()
    threads = torch.get_num_threads()
    print(f"model {args.model}: {sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"torch threads {threads}; conv ceiling {ceiling / 1e9:.1f} GFLOP/s (fp32 conv1d)")
    header = f"{'min':>5} {'players':>7} {'tile':>7} {'engine s':>9} {'x realtime':>10}"
    header += f" {'% ceiling':>9} {'reference s':>11} {'ratio':>6} {'max |diff|':>10}"
    print(header)
    for minutes in args.minutes:
        audio = np.concatenate(list(test_blocks(minutes * 60, rate)))
        for players in args.players:
            queries = [Query(code) for code in CODES[:players]]
            # the tile `vimss separate` plans: cache-fitted, then even over the input
            tile = args.tile or even_tile(
                plan_tile(model, players, torch.device("cpu")), audio.size, model.total_decimation
            )
            warm_up = audio[: 5 * rate]  # oneDNN builds its kernels on first use
            separate_array(model, warm_up, queries, tile=tile, precision=args.precision)
            engine_times, reference_times, difference = [], [], 0.0
            compare = minutes <= args.reference_up_to
            for _ in range(args.repeats if compare else 1):
                seconds, stems = timed(
                    separate_array,
                    model,
                    audio,
                    queries,
                    tile=tile,
                    batch_size=args.batch_size,
                    precision=args.precision,
                )
                engine_times.append(seconds)
                if compare:
                    seconds, reference = timed(predict, audio, model, queries)
                    reference_times.append(seconds)
                    difference = max(difference, float(np.abs(stems - reference).max()))
            engine = statistics.median(engine_times)
            realtime = audio.size / rate / engine
            share = 2 * useful_macs_per_sample(model, players) * audio.size / engine / ceiling
            row = {
                "minutes": minutes,
                "players": players,
                "tile": tile,
                "engine_seconds": round(engine, 3),
                "realtime": round(realtime, 2),
                "ceiling_share": round(share, 3),
            }
            line = f"{minutes:5g} {players:7d} {tile:7d} {engine:9.2f} {realtime:10.1f}"
            line += f" {100 * share:8.1f}%"
            if reference_times:
                ratios = [r / e for r, e in zip(reference_times, engine_times, strict=True)]
                row["reference_seconds"] = round(statistics.median(reference_times), 3)
                row["ratio"] = round(statistics.median(ratios), 2)
                row["max_abs_difference"] = difference
                line += f" {row['reference_seconds']:11.2f} {row['ratio']:6.2f} {difference:10.1e}"
            print(line, flush=True)
            print(json.dumps(row), file=sys.stderr)


if __name__ == "__main__":
    main()
