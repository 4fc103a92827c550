"""The bench's paired, interleaved ratios: the order alternates and each ratio pairs the
runs that ran next to each other."""

from __future__ import annotations

import itertools

import pytest

from bench.pairs import paired


def test_pairs_alternate_and_ratios_pair_neighbours() -> None:
    ran: list[str] = []
    baseline_s = itertools.count(10)
    measured_s = itertools.count(20, 2)

    def baseline() -> float:
        ran.append("b")
        return float(next(baseline_s))

    def measured() -> float:
        ran.append("m")
        return float(next(measured_s))

    timing = paired(baseline, measured, 5)
    assert ran == ["b", "m", "m", "b", "b", "m", "m", "b", "b", "m"]
    assert timing.order == ["baseline" if r == "b" else "measured" for r in ran]
    assert timing.ratios == [20 / 10, 22 / 11, 24 / 12, 26 / 13, 28 / 14]
    summary = timing.summary("bare", "service")
    assert summary["pairs"] == 5 and summary["ratio_median"] == 2.0
    assert summary["bare_s"] == [10, 11, 12, 13, 14] and summary["ratio_of"] == "service / bare"


def test_no_pairs_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one pair"):
        paired(lambda: 1.0, lambda: 1.0, 0)
