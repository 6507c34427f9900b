"""Register groups as OpenTelemetry observable instruments on any MeterProvider's meter: the
in-app instrumentor's path (instrumentor.py), where the application's SDK readers collect.

The callbacks are small generators over each group's `last_sample`; they never read a
source themselves (the instrumentor samples every group once per collection, in the first
callback), so any number of SDK readers can collect without re-sampling. Counters are observed
as running totals, as the API wants: each sample's increases are added once. Histograms cannot
be observable in the OpenTelemetry API; the in-app recorder records latency on a synchronous
Histogram instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_neuron.groups.base import GroupSample, HistogramDelta, InstrumentSpec, Kind, MetricGroup


class ObservedGroups:
    """Owns the observable instruments of a set of groups; `close()` makes every callback yield nothing."""

    def __init__(self, meter: Meter, groups: Sequence[MetricGroup]) -> None:
        self._groups = list(groups)
        self._closed = False
        self._lock = threading.Lock()
        self._totals: dict[tuple[int, str], dict[frozenset[tuple[str, Any]], Any]] = {}
        self._seen: dict[int, GroupSample] = {}  # the last sample folded, per group
        specs: dict[str, InstrumentSpec] = {}
        for group in self._groups:
            for spec in group.instruments:
                specs.setdefault(spec.name, spec)
        for spec in specs.values():
            self._create(meter, spec)

    def close(self) -> None:
        self._closed = True

    def _create(self, meter: Meter, spec: InstrumentSpec) -> None:
        callback = self._callback_for(spec)
        if spec.kind is Kind.GAUGE:
            meter.create_observable_gauge(spec.name, [callback], unit=spec.unit, description=spec.description)
        elif spec.kind is Kind.COUNTER:
            meter.create_observable_counter(
                spec.name, [callback], unit=spec.unit, description=spec.description
            )
        elif spec.kind is Kind.UPDOWN:
            meter.create_observable_up_down_counter(
                spec.name, [callback], unit=spec.unit, description=spec.description
            )

    def _fold(self, group: MetricGroup, sample: GroupSample) -> None:
        """Add a sample's counter increases to the running totals, once per sample."""
        with self._lock:
            if self._seen.get(id(group)) is sample or sample.error:
                return
            self._seen[id(group)] = sample
            for spec in group.instruments:
                if spec.kind is not Kind.COUNTER:
                    continue
                totals = self._totals.setdefault((id(group), spec.name), {})
                for attributes, value in sample.points.get(spec.name, ()):
                    attribute_key = frozenset(attributes.items())
                    totals[attribute_key] = totals.get(attribute_key, 0) + value

    def _callback_for(self, spec: InstrumentSpec) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self._closed:
                return
            for group in self._groups:
                sample = group.last_sample
                if sample is None or sample.error:
                    continue
                if spec.kind is Kind.COUNTER:
                    self._fold(group, sample)
                    yield from self._totals_of(group, spec.name)
                    continue
                for attributes, value in sample.points.get(spec.name, ()):
                    if not isinstance(value, HistogramDelta):  # a histogram has no observable instrument
                        yield Observation(value, attributes)

        return observe

    def _totals_of(self, group: MetricGroup, name: str) -> list[Observation]:
        with self._lock:
            totals = self._totals.get((id(group), name), {})
            return [Observation(total, dict(attribute_key)) for attribute_key, total in totals.items()]
