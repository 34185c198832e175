"""Paired comparison of two eval runs with an interval (``compare_runs``, which
``vimss eval compare`` and ``benchmarks/bench_realval.py`` use), on results written here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vimss_cli.errors import InputError
from vimss_cli.eval.report import compare_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_realval import paired_difference


def _run(folder: Path, rows: list[tuple[str, str, float, float]]) -> Path:
    """An eval output folder whose model scored ``(piece, instrument, whole SDR, museval)``."""
    stems = []
    for piece, instrument, whole, museval in rows:
        name = f"AuSep_{instrument}_{piece}.wav"
        for system, shift in (("model", 0.0), ("mixture", -9.0)):
            stems.append(
                {
                    "piece": piece,
                    "name": name,
                    "instrument": instrument,
                    "system": system,
                    "SDR": whole + shift,
                    "SDR_v4_median": museval + shift,
                }
            )
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"protocol": "museval", "stems": stems}))
    return folder


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    base = [(f"p{i}", ("vn", "cl")[i % 2], float(i), float(-i)) for i in range(10)]
    # the other model: museval 1 dB better on every stem, whole clip 2 dB better on violins only
    other = [(p, inst, w + (2.0 if inst == "vn" else 0.0), m + 1.0) for p, inst, w, m in base]
    other.append(("extra", "vn", 50.0, 50.0))  # scored by one run only: not compared
    return _run(tmp_path / "a", base), _run(tmp_path / "b", other)


def test_the_mean_difference_comes_with_a_bootstrap_interval(tmp_path: Path) -> None:
    a, b = (json.loads((f / "results.json").read_text()) for f in _pair(tmp_path))
    model = compare_runs(a, b).systems["model"]
    museval, whole = model["protocol SDR"], model["SDR"]
    assert museval["pairs"] == 10 and museval["mean_difference"] == 1.0
    assert museval["mean_difference_ci95"] == [1.0, 1.0]  # the same gain on every stem
    low, high = whole["mean_difference_ci95"]
    assert whole["mean_difference"] == 1.0 and 0.0 <= low < 1.0 < high <= 2.0
    violins = compare_runs(a, b, instrument="vn").systems["model"]["SDR"]
    assert violins["pairs"] == 5 and violins["mean_difference_ci95"] == [2.0, 2.0]
    with pytest.raises(InputError, match="no scored stem of instrument 'bn'"):
        compare_runs(a, b, instrument="bn")


def test_bench_realval_pairs_the_model_overall_and_per_instrument(tmp_path: Path) -> None:
    difference = paired_difference(*_pair(tmp_path))
    assert set(difference) == {"all", "cl", "vn"}
    assert difference["all"]["museval"] == [1.0, 1.0, 1.0]
    assert difference["vn"]["whole"] == [2.0, 2.0, 2.0]
    assert difference["cl"]["whole"] == [0.0, 0.0, 0.0]
