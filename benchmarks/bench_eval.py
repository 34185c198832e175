"""Measure vimss's BSS Eval against museval and mir_eval: agreement and speed.

    .venv/bin/python benchmarks/bench_eval.py --agreement          # fixtures (../shared/fixtures)
    .venv/bin/python benchmarks/bench_eval.py --minutes 1 --rate 44100 --sources 4

The speed part scores K sources of synthetic audio (harmonic tones with vibrato and noise;
estimates leak the other sources and add noise) with museval's v4 framewise evaluation
(1 s windows, the SiSEC setting) and with :func:`vimss_cli.eval.metrics.bss_eval` (which also
gives the whole-signal v3 values), checks the numbers are the same, and prints one JSON
object. Needs the dev extras (museval, mir_eval).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from vimss_cli.eval.metrics import bss_eval, bss_eval_sources, bss_eval_v4


def museval_metrics():
    """museval's metrics module without its package import (which needs ffprobe)."""
    spec = importlib.util.find_spec("museval")
    path = Path(spec.origin).parent / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("museval_metrics", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def synthetic(minutes: float, rate: int, sources: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(minutes * 60 * rate)) / rate
    references = np.stack(
        [
            sum(
                np.sin(2 * np.pi * 110 * (1.5**k) * h * t + 2 * np.sin(2 * np.pi * 0.5 * t)) / h
                for h in (1, 2, 3)
            )
            * (0.6 + 0.4 * np.sin(2 * np.pi * 0.2 * (k + 1) * t))
            + 0.02 * rng.standard_normal(t.size)
            for k in range(sources)
        ]
    )
    mixture = references.sum(axis=0)
    estimates = 0.8 * references + 0.2 * mixture / sources
    estimates += 0.02 * rng.standard_normal(estimates.shape)
    return references, estimates


def speed(minutes: float, rate: int, sources: int) -> dict:
    references, estimates = synthetic(minutes, rate, sources)
    started = time.perf_counter()
    _whole, ours = bss_eval(references, estimates, window=rate)
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    sdr, isr, sir, sar, _ = museval_metrics().bss_eval(
        references[..., None], estimates[..., None], window=rate, hop=rate
    )
    museval_seconds = time.perf_counter() - started
    difference = {
        name: float(np.nanmax(np.abs(mine - theirs)))
        for name, mine, theirs in (
            ("SDR", ours.sdr, sdr),
            ("ISR", ours.isr, isr),
            ("SIR", ours.sir, sir),
            ("SAR", ours.sar, sar),
        )
    }
    return {
        "audio_minutes": minutes,
        "rate": rate,
        "sources": sources,
        "vimss_seconds": round(ours_seconds, 3),
        "museval_seconds": round(museval_seconds, 3),
        "speedup": round(museval_seconds / ours_seconds, 2),
        "vimss_seconds_per_minute": round(ours_seconds / minutes, 3),
        "museval_seconds_per_minute": round(museval_seconds / minutes, 3),
        "max_abs_difference_db": difference,
        "note": "vimss time includes the whole-signal v3 values as well",
    }


def agreement() -> dict:
    from test_metrics import MIR_EVAL, TRACK, decode_stream, load_stack

    result: dict = {"mir_eval_sources": {}, "museval_regression": {}}
    worst = {"SDR": 0.0, "SIR": 0.0, "SAR": 0.0}
    for expected_path in sorted(MIR_EVAL.glob("output*.json")):
        case = expected_path.stem.removeprefix("output")
        expected = json.loads(expected_path.read_text())["Sources"]
        references = load_stack(MIR_EVAL / f"ref{case}")
        estimates = load_stack(MIR_EVAL / f"est{case}")[expected["Source permutation"]]
        scores = bss_eval_sources(references, estimates)
        for name, key, values in (
            ("SDR", "Source to Distortion", scores.sdr),
            ("SIR", "Source to Interference", scores.sir),
            ("SAR", "Source to Artifact", scores.sar),
        ):
            theirs = np.array(expected[key], dtype=float)
            finite = np.isfinite(theirs)
            assert np.array_equal(finite, np.isfinite(values))
            if finite.any():
                worst[name] = max(worst[name], float(np.abs(values - theirs)[finite].max()))
    result["mir_eval_sources"] = worst
    if TRACK.is_file():
        _, drums, bass, other, vocals = (decode_stream(k) for k in range(5))
        np.random.seed(0)
        estimates = np.stack([np.random.random(vocals.shape), np.random.random(vocals.shape)])
        references = np.stack([vocals, drums + bass + other])
        ours = bss_eval_v4(references, estimates, window=44100)
        stored_path = TRACK.parents[2] / "Music Delta - 80s Rock.json"
        stored = json.loads(stored_path.read_text())
        vs_stored: dict = {}
        for index, target in enumerate(stored["targets"]):
            for name in ("SDR", "SIR", "SAR", "ISR"):
                values = np.array([frame["metrics"][name] for frame in target["frames"]])
                mine = getattr(ours, name.lower())[index]
                vs_stored[name] = max(vs_stored.get(name, 0.0), float(np.abs(mine - values).max()))
        sdr, isr, sir, sar, _ = museval_metrics().bss_eval(
            references, estimates, window=44100, hop=44100
        )
        vs_code = {
            name: float(np.abs(mine - theirs).max())
            for name, mine, theirs in (
                ("SDR", ours.sdr, sdr),
                ("ISR", ours.isr, isr),
                ("SIR", ours.sir, sir),
                ("SAR", ours.sar, sar),
            )
        }
        museval_vs_stored = {}
        for index, target in enumerate(stored["targets"]):
            for name, theirs in (("SDR", sdr), ("SIR", sir), ("SAR", sar), ("ISR", isr)):
                values = np.array([frame["metrics"][name] for frame in target["frames"]])
                gap = float(np.abs(theirs[index] - values).max())
                museval_vs_stored[name] = max(museval_vs_stored.get(name, 0.0), gap)
        result["museval_regression"] = {
            "vimss_vs_stored": vs_stored,
            "vimss_vs_museval_code_same_signals": vs_code,
            "museval_code_vs_stored": museval_vs_stored,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agreement", action="store_true", help="Fixture agreement only.")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--sources", type=int, default=4)
    args = parser.parse_args()
    if args.agreement:
        print(json.dumps(agreement(), indent=1))
    else:
        print(json.dumps(speed(args.minutes, args.rate, args.sources), indent=1))


if __name__ == "__main__":
    main()
