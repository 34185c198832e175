"""A run's learning curve on real music: Bach10 SDR against training hours.

For each checkpoint (a run's snapshots of ``best.safetensors``, or any ``.safetensors``),
reads the step, wall-clock hours and device from its provenance and the synthetic validation
SDR it was chosen by, then scores it on the real validation set with label queries
(``bench_realval.py``: museval median and whole-clip mean). One row per checkpoint, then the
rows as JSON lines. The realval set is for validation and model choice only.

    .venv/bin/python benchmarks/learning_curve.py ~/vimss-work/runs/spec0_snap/best_*.safetensors
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from bench_realval import DEFAULT_ROOT, evaluate, summarise  # noqa: E402

from vimss_cli.checkpoint import read_checkpoint  # noqa: E402


def provenance_of(path: Path) -> dict:
    """The provenance a checkpoint carries (``{}`` if none)."""
    _, metadata = read_checkpoint(path)
    return json.loads(metadata.get("provenance", "{}"))


def step_key(path: Path) -> int:
    """Sort snapshots by the step in their name (``best_1200``), else keep their order."""
    found = re.findall(r"\d+", path.stem)
    return int(found[-1]) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=Path("out/learning_curve"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = []
    print(f"{'step':>6} {'hours':>6} {'device':>6} {'synth valid':>11} {'Bach10 museval':>14}"
          f" {'whole clip':>10} {'mixture':>15}")  # fmt: skip
    for path in sorted(args.checkpoints, key=step_key):
        provenance = provenance_of(path)
        # the network's own stems: what training moves (and the curve's earlier points)
        stems = evaluate(str(path), args.root, args.out / path.stem, args.device, refine=False)
        table = summarise(stems)
        model, mixture = table["all"]["model"], table["all"]["mixture"]
        row = {
            "checkpoint": str(path),
            "step": provenance.get("steps"),
            "hours": round(provenance.get("wall_seconds", 0) / 3600, 3),
            "device": provenance.get("device", "?"),
            "valid_sdr": (provenance.get("validation") or {}).get("valid_sdr"),
            "bach10_museval": model["museval"],
            "bach10_whole": model["whole"],
            "per_instrument_museval": {
                group: entries["model"]["museval"] for group, entries in table.items()
            },
        }
        rows.append(row)
        valid = row["valid_sdr"]
        print(f"{row['step']!s:>6} {row['hours']:6.2f} {row['device']:>6} "
              f"{valid if valid is None else round(valid, 2)!s:>11} {model['museval']:14.2f} "
              f"{model['whole']:10.2f} {mixture['museval']:6.2f} | {mixture['whole']:6.2f}",
              flush=True)  # fmt: skip
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
