"""Where each point of a MetricsData belongs: a section's points, or the health of a group or application.

Both report formats read MetricsData through `read_metrics`. A section is one runtime index (None
for the system groups) and one application in it: the (pid, tag) its points carry as
`process.pid` and `neuron.runtime.tag`, or None for points of no application (sysfs, a runtime
that is down). The 1.x report asks for all the applications of an index at once (and folds them,
see `report.fold`); the 2.x report asks for each.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics.export import ExponentialHistogramDataPoint, MetricsData

from otel_neuron.groups.base import (
    Attributes,
    HistogramDelta,
    Point,
    PointColumns,
    PointsByMetric,
    derived_from,
)
from otel_neuron.producer import PointBlocks
from otel_neuron.report.point_values import as_index, number, values_of
from otel_neuron.semconv import (
    APPLICATION_ERROR,
    ERROR_MESSAGE,
    GROUP,
    GROUP_ERROR,
    GROUP_PERIOD,
    PROCESS_PID,
    RUNTIME_ERROR,
    RUNTIME_INDEX,
    RUNTIME_TAG,
)

# An application: (pid, tag). A source that knows only one of them gives the other as neuron-monitor
# would: the tag defaults to str(pid), the pid to 0.
Application = tuple[int, str]
Section = tuple[Any, "Application | None"]  # (runtime index or None, application or None)
GroupKey = tuple[str, Any]  # (report key of a group, runtime index or None)


def application_of(pid: object, tag: object) -> Application | None:
    """The application of a point's `process.pid` and `neuron.runtime.tag` (None when it has neither)."""
    if pid is None and tag is None:
        return None
    return as_index(pid), str(tag) if tag is not None else str(pid)


@dataclass
class Health:
    """The health metrics of one MetricsData: what the report's `period` and `error` fields show."""

    periods: dict[GroupKey, float] = field(default_factory=dict)  # each collected group's period
    errors: dict[GroupKey, str] = field(default_factory=dict)  # each collected group's own error
    runtime_errors: dict[int, str] = field(default_factory=dict)  # each runtime's connection error
    # Errors upstream reported for an application (the bridge), keyed by (runtime index, application,
    # group report key); group None is the application entry's own error.
    application_errors: dict[tuple[Any, Application | None, str | None], str] = field(default_factory=dict)

    def applications_with_errors(self, index: Any) -> list[Application | None]:
        """The applications of runtime `index` that upstream reported on (with or without an error)."""
        return list(dict.fromkeys(app for where, app, _ in self.application_errors if where == index))


class Collection(NamedTuple):
    """One MetricsData, routed: the section points, the health, the resource's attributes."""

    points: SectionPoints
    health: Health
    resource: Mapping[str, object]


def read_metrics(metrics_data: MetricsData, wanted: Container[str] | None = None) -> Collection:
    """Route every point of `metrics_data`; of the section metrics, only those `wanted` names (None:
    all): what no renderer of a report format reads need not be filed."""
    points = SectionPoints()
    health = Health()
    resource: Mapping[str, object] = {}
    for resource_metrics in metrics_data.resource_metrics:
        resource = resource_metrics.resource.attributes
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                name = metric.name
                if name == GROUP_PERIOD.name:
                    for attributes, value in _pairs(metric.data.data_points):
                        health.periods[_group_key(attributes)] = number(value)
                elif name == GROUP_ERROR.name:
                    for attributes, _ in _pairs(metric.data.data_points):
                        health.errors[_group_key(attributes)] = str(attributes.get(ERROR_MESSAGE, ""))
                elif name == RUNTIME_ERROR.name:
                    for attributes, _ in _pairs(metric.data.data_points):
                        index = as_index(attributes.get(RUNTIME_INDEX))
                        health.runtime_errors[index] = str(attributes.get(ERROR_MESSAGE, ""))
                elif name == APPLICATION_ERROR.name:
                    for attributes, _ in _pairs(metric.data.data_points):
                        _file_application_error(health, attributes)
                elif wanted is None or name in wanted:
                    points.file(name, _blocks(metric.data.data_points))
    return Collection(points, health, resource)


def _group_key(attributes: Attributes) -> GroupKey:
    return str(attributes[GROUP]), attributes.get(RUNTIME_INDEX)


def _file_application_error(health: Health, attributes: Attributes) -> None:
    index = attributes.get(RUNTIME_INDEX)
    application = application_of(attributes.get(PROCESS_PID), attributes.get(RUNTIME_TAG))
    group = attributes.get(GROUP)
    where = (index, application, None if group is None else str(group))
    health.application_errors[where] = str(attributes.get(ERROR_MESSAGE, ""))


class SectionPoints:
    """The points of each section (runtime index, application) and metric, kept as the blocks they
    came in.

    Our producer adds one block per group and instrument, so a section's metric usually is one
    block, handed to the renderer as it is: no copy, and its columns stay readable in C passes.
    """

    def __init__(self) -> None:
        # runtime index -> metric name -> its blocks, and the application of each (parallel lists)
        self._blocks: dict[Any, dict[str, list[Sequence[Point]]]] = {}
        self._owners: dict[Any, dict[str, list[Application | None]]] = {}
        self._first_owner: dict[Any, Application | None] = {}  # of each index's first block
        self._shared: set[Any] = set()  # the runtime indexes with blocks of several applications

    def file(self, name: str, blocks: Iterable[Sequence[Point]]) -> None:
        """File each block of metric `name` under its section; a block of one section is filed whole."""
        for block in blocks:
            if not block:  # a group's instrument without points this period
                continue
            section = _section_of(block)
            if section is not None:
                self._add(section, name, block)
            else:
                self._file_by_point(name, block)

    def _file_by_point(self, name: str, block: Sequence[Point]) -> None:
        by_section: dict[Section, list[Point]] = {}
        for attributes, value in block:
            by_section.setdefault(_section_of_point(attributes), []).append((attributes, value))
        for section, points in by_section.items():
            self._add(section, name, points)

    def _add(self, section: Section, name: str, block: Sequence[Point]) -> None:
        index, owner = section
        by_name = self._blocks.get(index)
        if by_name is None:
            self._blocks[index] = {name: [block]}
            self._owners[index] = {name: [owner]}
            self._first_owner[index] = owner
            return
        if owner != self._first_owner[index]:
            self._shared.add(index)
        if name in by_name:
            by_name[name].append(block)
            self._owners[index][name].append(owner)
        else:
            by_name[name] = [block]
            self._owners[index][name] = [owner]

    def applications(self, names: Iterable[str], index: Any) -> list[Application | None]:
        """The applications with points of `names` in runtime `index`, in the order first filed."""
        if index not in self._shared:  # one application at most: no need to look at each metric
            return [self._first_owner[index]] if index in self._first_owner else []
        owners = self._owners[index]
        return list(dict.fromkeys(owner for name in names for owner in owners.get(name, ())))

    def of(self, names: Iterable[str], index: Any) -> PointsByMetric:
        """The points of `names` of every application in runtime `index` (None: the system groups)."""
        by_name = self._blocks.get(index, {})
        own: dict[str, Sequence[Point]] = {}
        for name in names:
            blocks = by_name.get(name)
            if blocks is None:
                own[name] = []
            elif len(blocks) == 1:
                own[name] = blocks[0]
            else:
                own[name] = [point for block in blocks for point in block]
        return own

    def of_application(
        self, names: Iterable[str], index: Any, application: Application | None
    ) -> PointsByMetric:
        """The points of `names` of one application (None: of no application) in runtime `index`."""
        if index not in self._shared:
            return (
                self.of(names, index)
                if self._first_owner.get(index) == application
                else dict.fromkeys(names, [])
            )
        by_name, owners = self._blocks[index], self._owners[index]
        own: dict[str, Sequence[Point]] = {}
        for name in names:
            blocks = [
                block
                for block, owner in zip(by_name.get(name, ()), owners.get(name, ()))
                if owner == application
            ]
            own[name] = blocks[0] if len(blocks) == 1 else [point for block in blocks for point in block]
        return own


def _section_of(block: Sequence[Point]) -> Section | None:
    """The section every point of `block` is in; None when they are in several. A group's own
    attribute column cannot change, so what it says is worked out once and kept on it."""
    # type() rather than isinstance(): these are Sequence ABCs, whose isinstance check costs more.
    if type(block) is PointColumns:
        return derived_from(block.attributes, _common_section)
    if len(block) == 1:  # a block of one point: a group's gauge of the host, an SDK reader's metric
        return _section_of_point(block[0][0])
    return _common_section([attributes for attributes, _ in block])


def _common_section(attributes: Sequence[Attributes]) -> Section | None:
    sections = _sections(attributes)
    return next(iter(sections)) if len(sections) == 1 else None


def _section_of_point(attributes: Attributes) -> Section:
    pid, tag = attributes.get(PROCESS_PID), attributes.get(RUNTIME_TAG)
    if pid is None and tag is None:
        return attributes.get(RUNTIME_INDEX), None
    return attributes.get(RUNTIME_INDEX), application_of(pid, tag)


def _sections(attributes: Sequence[Attributes]) -> frozenset[Section]:
    indexes = values_of(RUNTIME_INDEX, attributes)
    pids, tags = values_of(PROCESS_PID, attributes), values_of(RUNTIME_TAG, attributes)
    if pids.count(None) == len(pids) and tags.count(None) == len(tags):  # no application: one pass
        return frozenset((index, None) for index in set(indexes))
    return frozenset(
        (index, None if pid is None and tag is None else application_of(pid, tag))
        for index, pid, tag in zip(indexes, pids, tags)
    )


def _blocks(data_points: Any) -> Iterable[Sequence[Point]]:
    """The points in blocks (one per group and instrument from our producer; one in all otherwise)."""
    if type(data_points) is PointBlocks:
        return data_points.blocks()
    return [list(_pairs(data_points))]


def _pairs(data_points: Any) -> Iterable[Point]:
    """(attributes, value) of each point; the producer's blocks hand them over without building objects."""
    if type(data_points) is PointBlocks:
        return data_points.pairs()
    return (((point.attributes or {}), _value_of(point)) for point in data_points)


def _value_of(point: Any) -> Any:
    if isinstance(point, ExponentialHistogramDataPoint):
        return HistogramDelta(
            scale=point.scale,
            zero_count=point.zero_count,
            offset=point.positive.offset,
            bucket_counts=tuple(point.positive.bucket_counts),
            count=point.count,
            sum=point.sum,
            min=point.min,
            max=point.max,
        )
    return point.value
