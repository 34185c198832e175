"""Aggregating the per-stem rows: per system, overall, per instrument and per ensemble size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: The metrics a protocol aggregates (museval: the stems' ``<metric>_v4_median``; segments:
#: every scored segment's values), besides SI-SDR (whole-signal, per stem).
PROTOCOL_METRICS = {"museval": ("SDR", "SIR", "SAR", "ISR"), "segments": ("SDR", "SIR", "SAR")}


def _groups(row: dict[str, Any]) -> list[tuple[str, str]]:
    instrument = row["instrument"] or Path(row["name"]).stem
    return [("overall", "all"), ("instrument", instrument), ("ensemble_size", str(row["players"]))]


def summarize(stems: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """``summary[system][grouping][group] = {metric: value, ..., "stems": n}``.

    museval: median over stems of the per-stem window medians (undefined stems skipped).
    segments: mean and std over every scored segment of the group's stems.
    ``stems`` counts the stems with a value of the protocol's SDR; a metric without any
    value is ``None`` (segments: with a count of 0), never NaN.
    """
    metrics = PROTOCOL_METRICS[protocol]
    pooled: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    counts: dict[tuple[str, str, str], int] = {}
    for row in stems:
        for grouping, group in _groups(row):
            where = (row["system"], grouping, group)
            bucket = pooled.setdefault(where, {metric: [] for metric in (*metrics, "SI-SDR")})
            counts[where] = counts.get(where, 0) + (protocol_sdr(row, protocol) is not None)
            if row.get("SI-SDR") is not None:
                bucket["SI-SDR"].append(row["SI-SDR"])
            for metric in metrics:
                if protocol == "museval":
                    value = row.get(f"{metric}_v4_median")
                    bucket[metric] += [] if value is None else [value]
                else:
                    bucket[metric] += row.get("segments", {}).get(metric, [])
    summary: dict[str, Any] = {}
    for (system, grouping, group), values in pooled.items():
        cell: dict[str, Any] = {"stems": counts[(system, grouping, group)]}
        for metric, listed in values.items():
            if protocol == "museval":
                cell[metric] = round(float(np.median(listed)), 4) if listed else None
            else:
                cell[metric] = round(float(np.mean(listed)), 4) if listed else None
                cell[f"{metric}_std"] = round(float(np.std(listed)), 4) if listed else None
                cell[f"{metric}_count"] = len(listed)
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
