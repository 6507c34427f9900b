"""Renderings of report sections, kept so a section whose points did not change is not rendered again.

Much of a report stands still from one period to the next: loaded models and their memory change
when a model is loaded, ECC counts are 0 period after period; memory_used alone is most of a
report's bytes, the same every second. Only the sections the report's table says repeat
(`report.section_table.SectionRenderer.repeats`) are kept: for sections that change every period
(utilizations, counts, percentiles) keeping a copy to compare costs more than it saves.

A section's points are compared with a copy of the last ones, value for value (C-level list
comparisons: a group's attribute sets are shared objects, so comparing them is an identity check).
Equal values render the same, as every renderer reads them through int(), float() or round(); only
the sign of a zero could differ (0.0 == -0.0): a section may show the zero as the period before did.
The rendered objects are then shared by consecutive reports, so nothing may change them in place:
both standing reports (1.x `merge_report`, 2.x `StandingReportV2`) replace sections whole.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from otel_neuron.groups.base import AttributeColumn, Point, PointColumns, PointsByMetric

Render = Callable[[PointsByMetric], dict[str, Any]]
_Derived = TypeVar("_Derived")


class SectionMemo:
    """The last rendering of each section (a group of a runtime, or a system group) and its points."""

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[dict[str, Sequence[Point]], dict[str, Any]]] = {}
        self._derived: dict[Hashable, tuple[object, Any]] = {}

    def derived(self, key: Hashable, source: object, derive: Callable[[], _Derived]) -> _Derived:
        """`derive()`, computed again only when `source` is another object than last time: for what
        comes from an immutable source, like instance_data from the resource's attributes."""
        last = self._derived.get(key)
        if last is not None and last[0] is source:
            return last[1]  # type: ignore[no-any-return]
        found = derive()
        self._derived[key] = (source, found)
        return found

    def forget(self, gone: Callable[[Hashable], bool]) -> None:
        """Drop the renderings of the sections `gone` says will not come back (an application that
        exited), so what is kept stays bounded by the sections that exist."""
        for section in [section for section in self._last if gone(section)]:
            del self._last[section]

    def render(self, section: Hashable, render: Render, points: PointsByMetric) -> dict[str, Any]:
        """`render(points)`, or the rendering of the same points last time (the same object)."""
        last = self._last.get(section)
        if last is not None and _same_points(points, last[0]):
            return last[1]
        rendered = render(points)
        self._last[section] = ({name: _kept(block) for name, block in points.items()}, rendered)
        return rendered


def _same_points(points: PointsByMetric, kept: dict[str, Sequence[Point]]) -> bool:
    if points.keys() != kept.keys():
        return False
    for name, block in points.items():
        before = kept[name]
        if type(block) is PointColumns:
            if type(before) is not PointColumns or _as_list(block.values) != before.values:
                return False
            if block.attributes is not before.attributes and _as_list(block.attributes) != before.attributes:
                return False
        elif type(before) is PointColumns or _as_list(block) != before:
            return False
    return True


def _as_list(items: Sequence[Any]) -> list[Any]:
    return items if type(items) is list else list(items)


def _kept(block: Sequence[Point]) -> Sequence[Point]:
    """A copy the group cannot change later (a group may fill one list in place every period)."""
    if type(block) is PointColumns:
        attributes = block.attributes
        if type(attributes) is not AttributeColumn:  # an AttributeColumn cannot change: keep it
            attributes = list(attributes)
        return PointColumns(attributes, list(block.values))
    return list(block)
