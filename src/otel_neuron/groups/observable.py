"""Register groups as OpenTelemetry observable instruments on any MeterProvider's meter.

The callbacks are small generators over each group's `last_sample`; they never read a
source themselves, so any number of SDK readers (a Prometheus scrape, an app's OTLP reader)
can collect without re-sampling. Counters are observed as running totals, as the API wants.
Histograms cannot be observable in the OpenTelemetry API; the in-app recorder records latency
on a synchronous Histogram instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_neuron.groups.base import GroupSample, InstrumentSpec, Kind, MetricGroup


class ObservedGroups:
    """Owns the observable instruments of a set of groups; `close()` makes every callback yield nothing."""

    def __init__(
        self, meter: Meter, groups: Sequence[MetricGroup], refresh: Callable[[], None] | None = None
    ) -> None:
        self._groups = list(groups)
        self._refresh = refresh
        self._closed = False
        self._lock = threading.Lock()
        self._totals: dict[tuple[int, str], dict[frozenset[tuple[str, Any]], Any]] = {}
        self._seen: dict[tuple[int, str], GroupSample] = {}
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

    def _callback_for(self, spec: InstrumentSpec) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self._closed:
                return
            if self._refresh is not None:
                self._refresh()
            for group in self._groups:
                sample = group.last_sample
                if sample is None or sample.error:
                    continue
                points = sample.points.get(spec.name, ())
                if spec.kind is Kind.COUNTER:
                    points = self._running_totals(group, spec.name, sample, points)
                for attributes, value in points:
                    yield Observation(value, attributes)  # type: ignore[arg-type]

        return observe

    def _running_totals(self, group: MetricGroup, name: str, sample: GroupSample, points: Any) -> list[Any]:
        """Fold each new sample's increases into totals exactly once, however many readers collect."""
        key = (id(group), name)
        with self._lock:
            totals = self._totals.setdefault(key, {})
            if self._seen.get(key) is not sample:
                for attributes, value in points:
                    attribute_key = frozenset(attributes.items())
                    totals[attribute_key] = totals.get(attribute_key, 0) + value
                self._seen[key] = sample
            return [(dict(attribute_key), total) for attribute_key, total in totals.items()]
