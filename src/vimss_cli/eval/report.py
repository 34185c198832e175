"""Reports of an evaluation: results.json, a per-stem CSV, a box plot, comparisons of runs.

Library code: it writes files and returns data; the CLI draws the tables.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vimss_cli.atomic import AtomicFiles
from vimss_cli.errors import InputError, OutputError
from vimss_cli.eval.run import Evaluation
from vimss_cli.eval.summary import protocol_sdr

RESULTS_NAME = "results.json"
CSV_NAME = "stems.csv"
PLOT_NAME = "sdr_boxplot.png"
CACHE_NAME = "cache"
#: Columns of the per-stem CSV (protocol columns are empty when they do not apply).
CSV_COLUMNS = (
    "piece",
    "name",
    "instrument",
    "player",
    "players",
    "system",
    "SDR",
    "SIR",
    "SAR",
    "SI-SDR",
    "SDR_v4_median",
    "SIR_v4_median",
    "SAR_v4_median",
    "ISR_v4_median",
    "windows",
    "SDR_segments_mean",
    "SIR_segments_mean",
    "SAR_segments_mean",
    "undefined",
    "infinite",
    "segments_undefined",
)


def check_results_free(out_dir: Path, force: bool) -> None:
    """Refuse an ``--out`` folder holding an earlier run's results, or any file a run
    writes (``results.json``, ``stems.csv``, ``sdr_boxplot.png``: a user's own
    ``stems.csv`` there was replaced), unless ``force``. A folder with only a cache (an
    interrupted run) is no earlier result: the run resumes."""
    if force:
        return
    taken = [
        Path(out_dir) / name
        for name in (RESULTS_NAME, CSV_NAME, PLOT_NAME)
        if os.path.lexists(Path(out_dir) / name)
    ]
    if taken:
        raise OutputError(
            f"outputs already exist: {', '.join(map(str, taken))} (use --force to replace "
            "them, or give another --out folder)"
        )


def write_results(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Write ``results.json``, ``stems.csv`` and ``sdr_boxplot.png`` under ``out_dir``.

    All three are written under temporary names of their own first and renamed into place
    together at the end, so two runs writing into one folder never share a half-written
    file, and an interrupted run leaves the earlier results whole (not new results beside an
    old plot).
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output directory {out_dir}: {error.strerror}") from None
    document = evaluation.to_json()
    results = out_dir / RESULTS_NAME
    table = out_dir / CSV_NAME
    plot = out_dir / PLOT_NAME
    files = AtomicFiles([results, table, plot])
    temporary_results, temporary_table, temporary_plot = files.temporaries
    try:
        temporary_results.write_text(json.dumps(document, indent=1))
        with temporary_table.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in evaluation.stems:
                writer.writerow(
                    {key: "" if row.get(key) is None else row.get(key) for key in CSV_COLUMNS}
                )
        write_boxplot(evaluation, temporary_plot)
        files.publish()
    except OSError as error:
        raise OutputError(f"cannot write the results in {out_dir}: {error}") from None
    finally:
        files.discard()
    return [results, table, plot]


def write_boxplot(evaluation: Evaluation, path: Path) -> None:
    """Box plot of the protocol's SDR per instrument, one box per system (Agg backend), as a
    PNG written to ``path`` (not atomically: :func:`write_results` gives it a temporary)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values: dict[tuple[str, str], list[float]] = {}
    for row in evaluation.stems:
        instrument = row["instrument"] or Path(row["name"]).stem
        if evaluation.protocol == "segments":
            points = row.get("segments", {}).get("SDR", [])
        else:
            value = protocol_sdr(row, evaluation.protocol)
            points = [] if value is None else [value]
        values.setdefault((instrument, row["system"]), []).extend(points)
    instruments = sorted({instrument for instrument, _ in values})
    systems = evaluation.systems
    width = 0.8 / max(1, len(systems))
    figure, axes = plt.subplots(
        figsize=(max(6.0, 0.35 * len(instruments) * max(1, len(systems))), 4.5)
    )
    for index, system in enumerate(systems):
        data = [values.get((instrument, system), []) for instrument in instruments]
        positions = [i + (index - (len(systems) - 1) / 2) * width for i in range(len(instruments))]
        kept = [(p, d) for p, d in zip(positions, data, strict=True) if d]
        if not kept:
            continue
        boxes = axes.boxplot(
            [d for _, d in kept],
            positions=[p for p, _ in kept],
            widths=width * 0.9,
            patch_artist=True,
            manage_ticks=False,
        )
        color = plt.get_cmap("tab10")(index % 10)
        for box in boxes["boxes"]:
            box.set_facecolor(color)
        for median in boxes["medians"]:  # black, so it shows on a box of any colour
            median.set_color("black")
            median.set_linewidth(1.5)
        axes.plot([], [], color=color, linewidth=8, label=system)
    axes.set_xticks(range(len(instruments)), instruments)
    axes.set_ylabel("SDR (dB)")
    who = evaluation.describe_model()
    axes.set_title(
        f"SDR per instrument{f' ({who})' if who else ''}\n"
        f"{evaluation.protocol} protocol, {evaluation.rate} Hz; line: median"
    )
    axes.grid(axis="y", alpha=0.3)
    if any(values.values()):  # beside the axes, not over the data
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:  # every value undefined (e.g. pieces shorter than a segment): say so, no legend
        axes.text(0.5, 0.5, "no values to plot", ha="center", transform=axes.transAxes)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100, format="png")
    finally:
        plt.close(figure)


def load_results(folder: Path) -> dict[str, Any]:
    """The ``results.json`` of a run folder (or the file itself)."""
    path = Path(folder)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise InputError(f"no {RESULTS_NAME} in {folder}: not a vimss eval output folder")
    try:
        document = json.loads(path.read_text())
    except ValueError as error:
        raise InputError(f"{path} is not valid JSON: {error}") from None
    stems = document.get("stems") if isinstance(document, dict) else None
    keys = ("piece", "name", "system")
    if not (
        isinstance(stems, list)
        and "protocol" in document
        and all(isinstance(row, dict) and all(k in row for k in keys) for row in stems)
    ):
        raise InputError(
            f"{path} is not the results of `vimss eval` (a protocol, and stems with "
            f"{', '.join(keys)})"
        )
    return document


@dataclass
class Comparison:
    """Two runs' paired per-stem SDR differences (second minus first), per system.

    ``systems[system][metric]`` holds ``pairs``, ``first_median``, ``second_median``,
    ``median_difference``, the same three for the mean, ``mean_difference_ci95`` (a 95 %
    percentile-bootstrap interval of the mean difference over stems, ``[low, high]``, or
    ``None`` with the reason under ``mean_difference_ci95_note`` when there are fewer than
    :data:`MIN_BOOTSTRAP_PAIRS` pairs) and ``second_better`` (a count). ``warnings``: how the
    runs differ beyond their scores (protocol, rate, model, queries), one line each.
    """

    first: dict[str, Any]
    second: dict[str, Any]
    systems: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "systems": self.systems,
            "warnings": self.warnings,
        }


#: resamples of the bootstrap interval (a fixed seed: the same runs give the same interval)
BOOTSTRAP_DRAWS = 2000
#: the fewest pairs given a bootstrap interval: resampling one or two differences only
#: restates them, which is no interval
MIN_BOOTSTRAP_PAIRS = 3


def bootstrap_mean_interval(differences: np.ndarray, draws: int = BOOTSTRAP_DRAWS) -> list[float]:
    """95 % percentile-bootstrap interval ``[low, high]`` of the mean of ``differences`` ``(N,)``.

    Stems that share a recording are not independent, so the interval is optimistic."""
    rng = np.random.default_rng(0)
    means = differences[rng.integers(0, differences.size, (draws, differences.size))].mean(1)
    low, high = np.quantile(means, [0.025, 0.975])
    return [round(float(low), 4), round(float(high), 4)]


def run_differences(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    """One line per setting two runs' ``results.json`` differ in: protocol, rate, model,
    queries, soft masks (what makes their scores less comparable, or compares more than one
    thing)."""
    lines = []
    if first.get("protocol") != second.get("protocol"):
        lines.append(
            f"the runs used different protocols ({first.get('protocol')}, "
            f"{second.get('protocol')}): only whole-clip SDR is compared, not either run's own "
            "SDR summary"
        )
    for key, what in (
        ("rate", "evaluation rates (Hz)"),
        ("model", "models"),
        ("queries", "queries"),
        ("refined", "refinements (masks on the model's stems)"),
        ("harmonic", "masks (harmonic or plain soft masks)"),
        ("templates", "harmonic templates (blended into the harmonic masks or not)"),
        ("pitch_voices", "splits of two players of one instrument"),
    ):
        if key == "templates" and not all(_setting(run, "harmonic") for run in (first, second)):
            continue  # (only harmonic masks have templates: the masks' line says the rest)
        values = [_setting(run, key) for run in (first, second)]
        if values[0] != values[1]:
            shown = ", ".join("none" if value is None else str(value) for value in values)
            lines.append(f"the runs used different {what} ({shown})")
    return lines


def _setting(run: dict[str, Any], key: str) -> Any:
    """A run's setting; a refined run from before harmonic masks existed used soft masks, one
    from before the pitch split was recorded split in an unknown way, and harmonic masks from
    before the templates had none."""
    if key == "harmonic" and key not in run and run.get("refined") is not None:
        return False
    if key == "pitch_voices" and key not in run and run.get("model") is not None:
        return "unknown"
    if key == "templates" and key not in run and run.get("harmonic"):
        return False  # harmonic masks from before the templates (2026-12-05)
    return run.get(key)


def compare_runs(
    first: dict[str, Any], second: dict[str, Any], instrument: str | None = None
) -> Comparison:
    """Paired differences (second minus first) of per-stem SDR, per system.

    Stems are paired by (piece, name, system); with ``instrument``, only that instrument's.
    Reports whole-signal SDR and, when both runs used the same protocol, the protocol's SDR,
    with :func:`run_differences` as the comparison's ``warnings``.
    """
    same_protocol = first.get("protocol") == second.get("protocol")
    keyed = {(r["piece"], r["name"], r["system"]): r for r in first["stems"]}
    paired: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for row in second["stems"]:
        before = keyed.get((row["piece"], row["name"], row["system"]))
        if before is None or instrument not in (None, row.get("instrument")):
            continue
        metrics = {"SDR": (before.get("SDR"), row.get("SDR"))}
        if same_protocol:
            metrics["protocol SDR"] = (
                protocol_sdr(before, first["protocol"]),
                protocol_sdr(row, second["protocol"]),
            )
        for metric, (a, b) in metrics.items():
            if a is not None and b is not None:
                paired.setdefault(row["system"], {}).setdefault(metric, []).append((a, b))
    if not paired:
        which = f" of instrument {instrument!r}" if instrument else ""
        raise InputError(
            f"the two runs share no scored stem{which} (same piece, file name and system)"
        )
    systems: dict[str, Any] = {}
    for system, by_metric in paired.items():
        for metric, pairs in by_metric.items():
            a = np.array([p[0] for p in pairs])
            b = np.array([p[1] for p in pairs])
            cell: dict[str, Any] = {
                "pairs": len(pairs),
                "first_median": round(float(np.median(a)), 4),
                "second_median": round(float(np.median(b)), 4),
                "median_difference": round(float(np.median(b - a)), 4),
                "first_mean": round(float(a.mean()), 4),
                "second_mean": round(float(b.mean()), 4),
                "mean_difference": round(float((b - a).mean()), 4),
                "mean_difference_ci95": None,
                "second_better": int((b > a).sum()),
            }
            if len(pairs) >= MIN_BOOTSTRAP_PAIRS:
                cell["mean_difference_ci95"] = bootstrap_mean_interval(b - a)
            else:
                cell["mean_difference_ci95_note"] = f"fewer than {MIN_BOOTSTRAP_PAIRS} pairs"
            systems.setdefault(system, {})[metric] = cell
    settings = ("protocol", "rate", "model", "queries")
    return Comparison(
        first={key: first.get(key) for key in settings},
        second={key: second.get(key) for key in settings},
        systems=systems,
        warnings=run_differences(first, second),
    )
