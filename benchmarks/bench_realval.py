"""Separation quality on real recordings (``../shared/realval/bach10`` by default).

For each model, runs ``vimss eval --dataset urmp`` with label queries and prints, per
instrument and overall, beside the mixture and the IRM oracle:

* museval: median over stems of each stem's median SDR over 1 s windows (BSS Eval v4);
* whole clip: mean over stems of the whole-clip SDR (bss_eval v3, ``SDR`` in stems.csv).

The last line per model is one JSON object with the same figures, so runs can be logged
(``--json-only`` prints just those). Given two or more models (or ``--baseline`` with the
output folder of an earlier call), each later model is also compared with the first on the
same stems (``vimss eval compare``'s pairing): the mean paired difference of both figures,
with a 95 % bootstrap interval over stems, overall and per instrument. The stems are refined
by harmonic masks on the mixture, as ``vimss separate`` gives them; ``--no-harmonic`` by plain
soft masks (as before 2026-12-04), ``--no-refine`` scores the networks' own output. The
realval set is for validation and model choice only: never train on it.

    .venv/bin/python benchmarks/bench_realval.py default models/x.safetensors --out /tmp/rv
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "realval" / "bach10"
SYSTEMS = ("model", "mixture", "irm")


def evaluate(
    model: str,
    root: Path,
    out: Path,
    device: str,
    precision: str = "fp32",
    refine: bool = True,
    harmonic: bool = True,
    templates: bool = True,
) -> Path:
    """Run ``vimss eval`` for ``model`` (its stems refined by harmonic masks, as ``vimss
    separate`` gives them, unless not ``refine``, or by plain soft masks, unless
    ``harmonic``; without harmonic templates unless ``templates``); return its stems.csv.
    ``out`` is this benchmark's own: an earlier call's results there are replaced, its cache
    reused."""
    command = [sys.executable, "-m", "vimss_cli", "eval", "--dataset", "urmp", "--root", str(root)]
    command += ["--model", model, "--queries", "labels"]  # a video model's labels, too
    command += ["--device", device, "--precision", precision]
    command += ["--refine" if refine else "--no-refine"]
    command += ["--harmonic" if harmonic else "--no-harmonic"]
    command += ["--templates" if templates else "--no-templates"]
    command += ["-o", str(out), "--json", "--force"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: vimss eval failed for {model}: {result.stderr.strip()}")
    return out / "stems.csv"


def summarise(stems_csv: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{group: {system: {"museval": median, "whole": mean, "stems": n}}}``; groups are the
    instruments and ``all``."""
    museval: dict[tuple[str, str], list[float]] = defaultdict(list)
    whole: dict[tuple[str, str], list[float]] = defaultdict(list)
    with stems_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row["system"] not in SYSTEMS:
                continue
            for group in (row["instrument"], "all"):
                if row["SDR_v4_median"]:
                    museval[group, row["system"]].append(float(row["SDR_v4_median"]))
                if row["SDR"]:
                    whole[group, row["system"]].append(float(row["SDR"]))
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for group, system in sorted(museval):
        table[group][system] = {
            "museval": round(statistics.median(museval[group, system]), 2),
            "whole": round(statistics.fmean(whole[group, system]), 2),
            "stems": len(museval[group, system]),
        }
    return dict(table)


def paired_difference(base: Path, other: Path) -> dict[str, dict[str, list[float]]]:
    """``other − base`` for the model on the stems both runs scored (``vimss eval compare``'s
    pairing): ``{group: {"museval"|"whole": [mean, low, high]}}`` over all stems and per
    instrument, with a 95 % bootstrap interval. ``base``/``other``: eval output folders."""
    from vimss_cli.eval.report import compare_runs, load_results

    first, second = load_results(base), load_results(other)
    instruments = sorted({r["instrument"] for r in first["stems"] if r["system"] == "model"})
    result: dict[str, dict[str, list[float]]] = {}
    for group in ["all", *instruments]:
        model = compare_runs(first, second, None if group == "all" else group).systems["model"]
        result[group] = {
            figure: [
                model[metric]["mean_difference"],
                *(model[metric]["mean_difference_ci95"] or [float("nan")] * 2),  # < 3 pairs
            ]
            for figure, metric in (("museval", "protocol SDR"), ("whole", "SDR"))
        }
    return result


def print_difference(base: str, model: str, difference: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{model} − {base}, paired over stems (mean [95 % bootstrap interval])")
    for group, figures in difference.items():
        cells = [f"{name} {m:+.2f} [{lo:+.2f}, {hi:+.2f}]" for name, (m, lo, hi) in figures.items()]
        print(f"{group:<6} " + "  ".join(cells))


def print_table(model: str, table: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"\n{model}: SDR in dB (museval median of 1 s-window medians | whole-clip mean)")
    print(f"{'group':<6} {'n':>4}  " + "  ".join(f"{s:>15}" for s in SYSTEMS))
    groups = [*sorted(g for g in table if g != "all"), "all"]
    for group in groups:
        cells = []
        for system in SYSTEMS:
            entry = table[group].get(system)
            cells.append(f"{entry['museval']:6.2f} | {entry['whole']:6.2f}" if entry else " " * 15)
        stems = int(table[group]["model"]["stems"])
        print(f"{group:<6} {stems:>4}  " + "  ".join(f"{c:>15}" for c in cells))


def _digest(model: str) -> str:
    """8 hex digits naming the model's file (or name): two runs of ``runs/a/best`` and
    ``runs/b/best`` side by side must not share an output folder."""
    path = Path(model)
    key = str(path.resolve()) if path.exists() else model
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model names or .safetensors paths")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=Path("out/realval"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--json-only", action="store_true")
    parser.add_argument(
        "--no-refine",
        action="store_true",
        help="score the networks' own stems, without the soft masks on the mixture",
    )
    parser.add_argument(
        "--no-harmonic",
        action="store_true",
        help="refine by plain soft masks, not harmonic ones (as before 2026-12-04)",
    )
    parser.add_argument(
        "--no-templates",
        action="store_true",
        help="harmonic masks without the harmonic templates (as before 2026-12-05)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="an earlier call's output folder of one model: compare every model with it",
    )
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"error: real validation set not found: {args.root}")
    if args.baseline is not None and not (args.baseline / "results.json").is_file():
        raise SystemExit(f"error: --baseline {args.baseline} holds no results.json")
    # (name, output folder) of the run every later model is compared with
    base = (str(args.baseline), args.baseline) if args.baseline is not None else None
    for index, model in enumerate(args.models):
        how = "raw" if args.no_refine else "soft" if args.no_harmonic else "refined"
        how += "_notemplates" if args.no_templates and how == "refined" else ""
        name = f"{index:02d}_{Path(model).stem}_{_digest(model)}_{args.precision}_{how}"
        out = args.out / name
        refine, harmonic = not args.no_refine, not args.no_harmonic
        templates = not args.no_templates
        stems = evaluate(
            model, args.root, out, args.device, args.precision, refine, harmonic, templates
        )
        table = summarise(stems)
        row: dict = {"model": model, "precision": args.precision, "root": str(args.root)}
        row["refined"] = refine
        row["harmonic"] = refine and harmonic
        row["templates"] = refine and harmonic and templates
        if not args.json_only:
            print_table(model, table)
        if base is None:
            base = (model, out)
        else:
            difference = paired_difference(base[1], out)
            row["paired_against"] = {"model": base[0], "difference": difference}
            if not args.json_only:
                print_difference(base[0], model, difference)
        print(json.dumps({**row, "table": table}))


if __name__ == "__main__":
    main()
