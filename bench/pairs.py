"""Paired, interleaved timing: the measured thing and its baseline run one after the other,
the order alternating (baseline first in the 1st, 3rd, ... pair, the measured thing first in
the others), so that drift in the machine's load falls on both sides of each ratio."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Paired:
    """Seconds per run of each side, in pair order, and which side ran first."""

    baseline: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    """"baseline" or "measured" for each run, in the order they ran."""

    @property
    def ratios(self) -> list[float]:
        return [m / b for b, m in zip(self.baseline, self.measured, strict=True)]

    @property
    def median(self) -> float:
        return float(statistics.median(self.ratios))

    def summary(
        self,
        baseline: str = "baseline",
        measured: str = "measured",
        unit: str = "s",
        scale: float = 1.0,
    ) -> dict[str, Any]:
        """The figure's details: pairs, median/min/max of the ratios (`measured / baseline`),
        every run (in `unit`: seconds times `scale`), under the two sides' names."""
        ratios = self.ratios
        return {
            "pairs": len(ratios),
            "ratio_median": round(self.median, 4),
            "ratio_min": round(min(ratios), 4),
            "ratio_max": round(max(ratios), 4),
            "ratios": [round(r, 4) for r in ratios],
            "ratio_of": f"{measured} / {baseline}",
            f"{baseline}_{unit}": [round(x * scale, 2) for x in self.baseline],
            f"{measured}_{unit}": [round(x * scale, 2) for x in self.measured],
            "order": f"{baseline} first in odd pairs, {measured} first in even pairs",
        }


def paired(baseline: Callable[[], float], measured: Callable[[], float], pairs: int) -> Paired:
    """Run both `pairs` times, interleaved, order alternating; each returns its seconds."""
    out = Paired()
    for n in range(pairs):
        if n % 2 == 0:
            out.baseline.append(baseline())
            out.measured.append(measured())
            out.order += ["baseline", "measured"]
        else:
            out.measured.append(measured())
            out.baseline.append(baseline())
            out.order += ["measured", "baseline"]
    if not out.ratios:
        raise ValueError("at least one pair")
    return out
