"""What every group fed by a neuron-monitor stream shares: one application at a time, its errors.

See `groups.neuron_monitor` for the groups and what each takes from the stream.
"""

from __future__ import annotations

from typing import Any

from otel_neuron.groups.base import AttributeValue, MetricGroup, Point, PointsByMetric
from otel_neuron.semconv import (
    APPLICATION_ERROR,
    ERROR_MESSAGE,
    GROUP,
)
from otel_neuron.sources.neuron_monitor_address import parse_bridge_address
from otel_neuron.sources.neuron_monitor_application import AppWindow, has_data
from otel_neuron.sources.neuron_monitor_bridge import BridgeError, BridgeRegistry
from otel_neuron.sources.neuron_monitor_windows import BridgeWindow

Attrs = dict[str, AttributeValue]


class BridgeGroup(MetricGroup):
    """A group whose numbers come from a neuron-monitor stream, one application at a time."""

    def __init__(
        self,
        runtime_index: int | None,
        address: str,
        period: float,
        registry: BridgeRegistry,
    ) -> None:
        super().__init__(runtime_index)
        self.address = parse_bridge_address(address)
        self.bridge = registry.bridge_for(self.address)
        self._subscription = self.bridge.subscribe(self.report_key, self.address, period)
        self._period = period
        self._base = self.base_attributes()

    def runtime_error(self) -> str:
        status = self.bridge.status
        return status if status and self.bridge.last_report_time is not None else ""

    source_can_finish = True

    def source_finished(self) -> bool:
        return self.bridge.finished.is_set()

    def _take_baseline(self) -> None:
        self.bridge.start()

    def _window(self) -> BridgeWindow:
        # Allow a slow neuron-monitor (its own period may be longer than ours) three periods.
        return self.bridge.window(self._subscription, max_age=max(3 * self._period, 10.0))

    def _sample_points(self, period: float) -> PointsByMetric:
        window = self._window()
        points: dict[str, list[Point]] = {spec.name: [] for spec in self.instruments}
        for app in window.applications:
            attributes = {**self._base, **app.application.attributes()}
            if not app.present:
                self._add_last_counts(points, app, attributes)
                continue
            if not app.application.system:
                points[APPLICATION_ERROR.name].extend(self._errors(app, attributes))
            if usable_body(app.body):
                self._add_points(points, app, attributes)
        if window.system_error and not any(usable_body(app.body) for app in window.applications):
            raise BridgeError(window.system_error)
        return points

    def _errors(self, app: AppWindow, attributes: Attrs) -> list[Point]:
        """The application's upstream errors: its entry's, and this group's when the entry has it."""
        errors: list[Point] = [({**attributes, ERROR_MESSAGE: app.entry_error}, 1 if app.entry_error else 0)]
        group_error = app.group_error
        if group_error is not None:
            errors.append(
                ({**attributes, GROUP: self.report_key, ERROR_MESSAGE: group_error}, 1 if group_error else 0)
            )
        return errors

    def _add_points(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        raise NotImplementedError

    def _add_last_counts(self, points: dict[str, list[Point]], app: AppWindow, attributes: Attrs) -> None:
        """An application gone from the stream: only the counts it reported before it left, if this
        group has counts (its amounts, rates and errors are no longer true)."""

    def close(self) -> None:
        self.bridge.unsubscribe(self._subscription)


def usable_body(body: Any) -> bool:
    """A body whose numbers mean something: not one that only carries an upstream error."""
    return body is not None and (has_data(body) or not getattr(body, "error", ""))


def fraction(percentage: float) -> float:
    return min(max(percentage / 100.0, 0.0), 1.0)
