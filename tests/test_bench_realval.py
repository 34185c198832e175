"""bench_realval.py's paired comparison of two models, on stems.csv files written here."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_realval import paired_difference

FIELDS = ["piece", "name", "instrument", "system", "SDR", "SDR_v4_median"]


def _stems(path: Path, rows: list[tuple[str, str, float, float]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for piece, instrument, whole, museval in rows:
            name = f"AuSep_{instrument}_{piece}.wav"
            for system, shift in (("model", 0.0), ("mixture", -9.0)):
                writer.writerow(
                    {
                        "piece": piece,
                        "name": name,
                        "instrument": instrument,
                        "system": system,
                        "SDR": whole + shift,
                        "SDR_v4_median": museval + shift,
                    }
                )
    return path


def test_the_difference_is_paired_per_stem_with_an_interval(tmp_path: Path) -> None:
    base = [(f"p{i}", ("vn", "cl")[i % 2], float(i), float(-i)) for i in range(10)]
    # the other model: museval 1 dB better on every stem, whole clip 2 dB better on violins only
    other = [(p, inst, w + (2.0 if inst == "vn" else 0.0), m + 1.0) for p, inst, w, m in base]
    other.append(("extra", "vn", 50.0, 50.0))  # scored by one model only: not compared
    diff = paired_difference(_stems(tmp_path / "a.csv", base), _stems(tmp_path / "b.csv", other))
    assert diff["all"]["museval"] == [1.0, 1.0, 1.0]  # the same gain on every stem: no spread
    assert diff["vn"]["whole"] == [2.0, 2.0, 2.0] and diff["cl"]["whole"] == [0.0, 0.0, 0.0]
    mean, low, high = diff["all"]["whole"]
    assert mean == 1.0 and 0.0 <= low < 1.0 < high <= 2.0


def test_models_that_share_no_stems_are_refused(tmp_path: Path) -> None:
    a = _stems(tmp_path / "a.csv", [("p1", "vn", 1.0, 1.0)])
    b = _stems(tmp_path / "b.csv", [("p2", "vn", 1.0, 1.0)])
    with pytest.raises(SystemExit, match="share no stems"):
        paired_difference(a, b)
