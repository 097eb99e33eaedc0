"""Metadata of the metrics (Quantus style): what a number means, which way is better."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MetricInfo", "describe", "info", "registered"]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric's numbers mean.

    ``name``: the column name in result files; ``label``: the display name (with unit if
    any); ``higher_is_better``: ``True``/``False``, ``None`` where neither (a similarity);
    ``range``: the values it can take; ``unit``: ``"%"`` etc. or ``""``; ``reference``: the
    paper; ``summary``: one line on the definition.
    """

    name: str
    label: str
    higher_is_better: bool | None = None
    range: tuple[float, float] = (-math.inf, math.inf)
    unit: str = ""
    reference: str = ""
    summary: str = ""

    @property
    def heading(self) -> str:
        """``label`` with an arrow saying which way is better and the unit."""
        arrow = {True: " ↑", False: " ↓", None: ""}[self.higher_is_better]
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.label}{unit}{arrow}"


_METRICS: dict[str, MetricInfo] = {}


def describe(m: MetricInfo) -> MetricInfo:
    """Register ``m`` (each metric module describes its metrics once) and return it."""
    _METRICS[m.name] = m
    return m


def info(name: str) -> MetricInfo | None:
    """The :class:`MetricInfo` of a result column, or ``None`` if it is not a metric."""
    return _METRICS.get(name)


def registered() -> list[str]:
    return list(_METRICS)
