"""
Figures collected round by round, and how they are printed.

Every figure is kept per round; what is printed is the median and the
spread (min-max) over the rounds, and the ratios of medians to the ceiling
and to the reference measured in the same run.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    fmt: str = "{:.1f}"


class Results:
    """metric key -> implementation label -> one value per round."""

    def __init__(self) -> None:
        self.values: Dict[str, Dict[str, List[float]]] = {}
        self.metrics: Dict[str, Metric] = {}

    def add(self, metric: Metric, label: str, value: float) -> None:
        self.metrics.setdefault(metric.key, metric)
        self.values.setdefault(metric.key, {}).setdefault(label, []).append(value)

    def median(self, key: str, label: str) -> Optional[float]:
        values = [v for v in self.values.get(key, {}).get(label, []) if not math.isnan(v)]
        return statistics.median(values) if values else None

    def cell(self, key: str, label: str) -> str:
        values = [v for v in self.values.get(key, {}).get(label, []) if not math.isnan(v)]
        if not values:
            return "-"
        fmt = self.metrics[key].fmt
        text = fmt.format(statistics.median(values))
        if len(values) > 1:
            text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
        return text

    def ratio(self, key: str, label: str, against: str) -> str:
        mine, theirs = self.median(key, label), self.median(key, against)
        if mine is None or theirs is None or theirs == 0:
            return "-"
        return f"{mine / theirs:.2f}x"

    def dump(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({"metrics": {k: vars(m) for k, m in self.metrics.items()},
                       "values": self.values}, f, indent=1)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) if i == 0 else str(h).rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def summary(
    results: Results,
    labels: Sequence[str],
    ceiling: Optional[str],
    reference: Optional[str],
    subject: str,
) -> str:
    """One row per metric: each label's median (spread), then subject/ceiling and subject/reference."""
    header = ["figure", *labels]
    if ceiling:
        header.append(f"{subject}/{ceiling}")
    if reference:
        header.append(f"{subject}/{reference}")
    rows: List[List[str]] = []
    for key, metric in results.metrics.items():
        present = results.values.get(key, {})
        if not any(label in present for label in labels):
            continue
        better = "higher" if metric.higher_is_better else "lower"
        row = [f"{metric.title}, {metric.unit} ({better} is better)"]
        row += [results.cell(key, label) for label in labels]
        if ceiling:
            row.append(results.ratio(key, subject, ceiling))
        if reference:
            row.append(results.ratio(key, subject, reference))
        rows.append(row)
    return table(rows, header)
