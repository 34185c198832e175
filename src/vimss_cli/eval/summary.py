"""Aggregating the per-stem rows: per system, overall, per instrument and per ensemble size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: The per-stem keys a protocol aggregates, and how.
PROTOCOL_METRICS = {
    "museval": ("SDR_v4_median", "SIR_v4_median", "SAR_v4_median", "ISR_v4_median"),
    "segments": ("SDR", "SIR", "SAR"),
}


def _groups(row: dict[str, Any]) -> list[tuple[str, str]]:
    instrument = row["instrument"] or Path(row["name"]).stem
    return [("overall", "all"), ("instrument", instrument), ("ensemble_size", str(row["players"]))]


def summarize(stems: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """``summary[system][grouping][group] = {metric: value, ..., "stems": n}``.

    museval: median over stems of the per-stem window medians (undefined stems skipped).
    segments: mean and std over every scored segment of the group's stems.
    """
    pooled: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    counts: dict[tuple[str, str, str], int] = {}
    for row in stems:
        for grouping, group in _groups(row):
            bucket = (
                pooled.setdefault(row["system"], {}).setdefault(grouping, {}).setdefault(group, {})
            )
            counts[(row["system"], grouping, group)] = (
                counts.get((row["system"], grouping, group), 0) + 1
            )
            if protocol == "museval":
                for key in (*PROTOCOL_METRICS["museval"], "SI-SDR"):
                    if row.get(key) is not None:
                        bucket.setdefault(key.removesuffix("_v4_median"), []).append(row[key])
            else:
                for metric, values in row.get("segments", {}).items():
                    bucket.setdefault(metric, []).extend(values)
                if row.get("SI-SDR") is not None:
                    bucket.setdefault("SI-SDR", []).append(row["SI-SDR"])
    summary: dict[str, Any] = {}
    for system, groupings in pooled.items():
        for grouping, groups in groupings.items():
            for group, metrics in groups.items():
                cell: dict[str, Any] = {"stems": counts[(system, grouping, group)]}
                for metric, values in metrics.items():
                    if protocol == "museval":
                        cell[metric] = round(float(np.median(values)), 4)
                    else:
                        cell[metric] = round(float(np.mean(values)), 4)
                        cell[f"{metric}_std"] = round(float(np.std(values)), 4)
                        cell[f"{metric}_count"] = len(values)
                summary.setdefault(system, {}).setdefault(grouping, {})[group] = cell
    return summary


def protocol_sdr(row: dict[str, Any], protocol: str) -> float | None:
    """A stem's SDR under the protocol: the window median (museval) or segment mean."""
    key = "SDR_v4_median" if protocol == "museval" else "SDR_segments_mean"
    return row.get(key)


def format_cell(cell: dict[str, Any] | None, protocol: str, metric: str = "SDR") -> str:
    """``"5.21 (8)"`` (museval median, stems) or ``"5.21 ± 3.10 (40)"`` (segments, segments)."""
    if cell is None or cell.get(metric) is None:
        return "n/a"
    if protocol == "segments":
        return f"{cell[metric]:.2f} ± {cell[f'{metric}_std']:.2f} ({cell[f'{metric}_count']})"
    return f"{cell[metric]:.2f} ({cell['stems']})"


def table_rows(
    summary: dict[str, Any], grouping: str, systems: list[str], protocol: str
) -> list[list[str]]:
    """Rows ``[group, cell per system...]`` of one grouping, groups sorted, "all" last."""
    groups = sorted({g for s in systems for g in summary.get(s, {}).get(grouping, {})}, key=_order)
    return [
        [
            group,
            *(
                format_cell(summary.get(s, {}).get(grouping, {}).get(group), protocol)
                for s in systems
            ),
        ]
        for group in groups
    ]


def _order(group: str) -> tuple[int, str]:
    return (int(group), "") if group.isdigit() else (10**6, group)
