"""What every metric group is: its instruments and one sample per period.

A group samples its source once per collection and keeps the result as an immutable
`GroupSample`: the points of each of its OpenTelemetry instruments covering exactly the
period since its previous sample. Everything downstream (the OTel observable callbacks,
the MetricsData producer, the JSON report, Prometheus) reads that sample, never the source;
the report's sections are drawn from those points by `otel_neuron.report`, whatever the source.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar, overload

import numpy

# Declared once in semconv; re-exported here, where groups have always found them.
from otel_neuron.semconv import InstrumentSpec as InstrumentSpec
from otel_neuron.semconv import Kind as Kind

if TYPE_CHECKING:
    from otel_neuron.sources.fetch_loop import RuntimeTransport

AttributeValue = str | int | float | bool
Attributes = Mapping[str, AttributeValue]

# Attribute keys shared by several groups.
RUNTIME_INDEX = "neuron.runtime.index"
GROUP = "neuron.monitor.group"


BucketCounts = Sequence[int] | numpy.ndarray[Any, Any]


@dataclass(frozen=True, slots=True, eq=False)  # slots: one object per histogram rather than two
class HistogramDelta:
    """An exponential histogram of the values recorded during one period (OTLP's layout).

    `bucket_counts` is any sequence of ints that nothing changes once handed over: the runtime groups
    hand over a runtime's period histogram's repeated field as received, or a read-only numpy array
    of differences (hundreds of buckets, never a Python int each). `bucket_list` gives a list of ints.
    """

    scale: int
    zero_count: int
    offset: int
    bucket_counts: BucketCounts
    count: int
    sum: float
    min: float
    max: float

    def __eq__(self, other: object) -> bool:
        if type(other) is not HistogramDelta:
            return NotImplemented
        return (
            (self.scale, self.zero_count, self.offset, self.count, self.sum, self.min, self.max)
            == (other.scale, other.zero_count, other.offset, other.count, other.sum, other.min, other.max)
        ) and bucket_list(self.bucket_counts) == bucket_list(other.bucket_counts)

    # Equal by value, like the sequence it holds, so unhashable: defining __eq__ drops __hash__.


def _listed(values: Sequence[Any] | numpy.ndarray[Any, Any]) -> list[Any]:
    """A column's values as a list (a numpy column compares element by element otherwise)."""
    if type(values) is numpy.ndarray:
        listed: list[Any] = values.tolist()
        return listed
    return list(values)


def bucket_list(counts: BucketCounts) -> list[int]:
    """Bucket counts as a list of Python ints (what OTLP messages and exact sums take)."""
    if type(counts) is numpy.ndarray:
        listed: list[int] = counts.tolist()
        return listed
    return list(counts)


PointValue = int | float | HistogramDelta
Point = tuple[Attributes, PointValue]
PointsByMetric = Mapping[str, Sequence[Point]]


class FrozenAttributes(dict[str, AttributeValue]):
    """Point attributes that refuse to change once built. Every reader sees a dict (C-level
    dict.get included); what is derived from them can be kept, since they cannot go stale."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("point attributes do not change once built")

    __setitem__ = __delitem__ = __ior__ = _refuse  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type[FrozenAttributes], tuple[dict[str, AttributeValue]]]:
        return FrozenAttributes, (dict(self),)  # copy and pickle without calling __setitem__


_View = TypeVar("_View")


class AttributeColumn(tuple[FrozenAttributes, ...]):
    """The attributes of a PointColumns block that a group builds once and reuses every period.

    Immutable all the way down (a tuple of FrozenAttributes), so the views readers derive from it
    (the runtime indexes of a block, the layout of vcpu_usage's 1,344 points) are computed once per
    column and kept on it, instead of reading every point's attributes every tick.
    """

    def __new__(cls, attributes: Iterable[Mapping[str, AttributeValue]]) -> AttributeColumn:
        frozen = [m if type(m) is FrozenAttributes else FrozenAttributes(m) for m in attributes]
        column = super().__new__(cls, frozen)
        column._views = {}
        return column

    _views: dict[Callable[[AttributeColumn], Any], Any]

    def view(self, derive: Callable[[AttributeColumn], _View]) -> _View:
        """`derive(self)`, computed on first use. Keeping it is safe because the column cannot change
        (a tuple of FrozenAttributes); `derive` must be a pure function of it returning something
        immutable, since every caller gets the same object."""
        try:
            found: _View = self._views[derive]
            return found
        except KeyError:
            found = self._views[derive] = derive(self)
            return found


def derived_from(attributes: Sequence[Attributes], derive: Callable[[Sequence[Attributes]], _View]) -> _View:
    """`derive(attributes)`, kept on the column when `attributes` is an AttributeColumn (a group's own
    attribute sets, which cannot change), so it is computed once rather than every period."""
    if type(attributes) is AttributeColumn:
        return attributes.view(derive)
    return derive(attributes)


class PointColumns(Sequence[Point]):
    """The points of one instrument as two parallel lists: attributes[i] goes with values[i].

    A sequence of (attributes, value) like any other, but a group with many points (192 vCPUs x
    7 modes) hands them over without a tuple per point, and readers that know this type (the
    report's routing and renderers) take whole columns in C-level passes.
    """

    __slots__ = ("attributes", "values")

    def __init__(self, attributes: Sequence[Attributes], values: Sequence[PointValue]) -> None:
        if len(attributes) != len(values):
            raise ValueError(f"{len(attributes)} attribute sets for {len(values)} values")
        self.attributes = attributes
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Point]:
        # A numpy column's values come out as Python numbers, as any other column's: readers that go
        # point by point (OTLP, in-app SDK readers, another layout's render) get plain floats.
        return zip(
            self.attributes, _listed(self.values) if type(self.values) is numpy.ndarray else self.values
        )

    @overload
    def __getitem__(self, index: int) -> Point: ...

    @overload
    def __getitem__(self, index: slice) -> PointColumns: ...

    def __getitem__(self, index: int | slice) -> Point | PointColumns:
        if isinstance(index, slice):
            return PointColumns(self.attributes[index], self.values[index])
        value = self.values[index]
        return self.attributes[index], value.item() if isinstance(value, numpy.generic) else value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PointColumns):
            return self.attributes == other.attributes and _listed(self.values) == _listed(other.values)
        return isinstance(other, Sequence) and list(self) == list(other)

    # Mutable columns, equal by value like a list, so unhashable: defining __eq__ drops __hash__.

    def __repr__(self) -> str:
        return f"PointColumns({list(self)!r})"


class GroupSample(NamedTuple):  # immutable, and cheaper to build than a frozen dataclass
    """One collection of a group: `period` seconds since the previous one, or the error."""

    period: float
    error: str
    time_unix_nano: int
    points: PointsByMetric = MappingProxyType({})


class MetricGroup(ABC):
    """A metric group of the guide, bound to one source.

    Subclasses set `report_key` (the group's key in the JSON report), `instruments`, and
    implement `_sample_points`. `sample()` measures the period, turns any exception into the
    sample's `error`, and keeps the result as `last_sample` for pull readers.
    """

    report_key: str = ""
    instruments: Sequence[InstrumentSpec] = ()

    def __init__(self, runtime_index: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime_index = runtime_index
        self.last_sample: GroupSample | None = None
        self._clock = clock  # seconds, monotonic: what periods are measured with
        self._previous_time: float | None = None

    def prime(self) -> None:
        """Take the baseline so that the first reported period already covers a real interval."""
        self._previous_time = self._clock()
        try:
            self._take_baseline()
        except Exception:  # noqa: BLE001 - a failing baseline shows up as the first sample's error
            pass

    def sample(self) -> GroupSample:
        """Collect now. A failed collection keeps the start of the interval, so the next good one
        covers the whole gap with a period that says so (its counts span the gap too)."""
        now = self._clock()
        period = now - self._previous_time if self._previous_time is not None else 0.0
        try:
            points = self._sample_points(period)
        except Exception as error:  # noqa: BLE001 - a failing source becomes the group's error
            return self._keep(GroupSample(period, describe_error(error), time.time_ns(), {}))
        self._previous_time = now
        return self._keep(GroupSample(period, "", time.time_ns(), points))

    def error_sample(self, message: str) -> GroupSample:
        """Record a collection that could not finish (the pipeline's deadline passed)."""
        now = self._clock()
        period = now - self._previous_time if self._previous_time is not None else 0.0
        return self._keep(GroupSample(period, message, time.time_ns(), {}))

    def _keep(self, sample: GroupSample) -> GroupSample:
        self.last_sample = sample
        return sample

    def _take_baseline(self) -> None:  # noqa: B027 - a hook: groups without state need no baseline
        """Read the source once so the next sample can compute per-period values."""

    @abstractmethod
    def _sample_points(self, period: float) -> PointsByMetric:
        """Read the source and return each instrument's points for the period just ended."""

    def runtime_error(self) -> str:
        """The connection-level error of this group's runtime ("" when fine), for the report entry."""
        return ""

    def refreshable(self) -> RuntimeTransport | None:
        """The source's transport when the collector fetches it first, concurrently with other
        runtimes' (None: the group reads its source itself)."""
        return None

    source_can_finish = False  # True for sources that can end for good (a piped stream)

    def source_finished(self) -> bool:
        """True when the source has ended for good (a piped stream at its end): nothing more will come."""
        return False

    def base_attributes(self) -> dict[str, AttributeValue]:
        return {} if self.runtime_index is None else {RUNTIME_INDEX: self.runtime_index}


def describe_error(error: BaseException) -> str:
    text = str(error).strip()
    return text if text else type(error).__name__
