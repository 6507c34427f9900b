"""NeuronInstrumentor: neuron-monitor's groups for this process, on the application's MeterProvider.

The application records inferences into its `InferenceRecorder` (the hot path: a per-thread
shard, no OpenTelemetry call per inference). The instrumentor registers the configured system
groups and the in-process runtime groups as observable instruments; when one of the app's readers
collects, the first callback samples every group once (per-period values since the previous
collection by any reader) and the others read that sample:

- outcome, error and ECC counts are observable counters (running totals; the SDK turns them into
  deltas for readers that prefer them), utilizations are gauges, memory up-down counters;
- latency cannot be an observable instrument in OpenTelemetry, so `neuron.inference.latency` and
  `neuron.inference.device.latency` are Histograms fed at collection time from the period's
  scale-6 exponential histogram: each bucket's count at its geometric midpoint (within 0.55 % of
  every value), the period's exact minimum and maximum as themselves. With `latency_views()`
  (base-2 exponential, scale 6) the app's histogram buckets equal the recorder's.

Run it by hand:

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    >>> import otel_neuron
    >>> reader = InMemoryMetricReader()
    >>> provider = MeterProvider(metric_readers=[reader], views=otel_neuron.latency_views())
    >>> instrumentor = otel_neuron.NeuronInstrumentor()
    >>> instrumentor.instrument(meter_provider=provider)
    >>> with otel_neuron.recorder().time("resnet50"):
    ...     pass  # run the model here
    >>> data = reader.get_metrics_data()
    >>> names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    >>> "neuron.inference.count" in names and "neuron.inference.latency" in names
    True
    >>> instrumentor.uninstrument()

or without code changes: ``opentelemetry-instrument python app.py`` loads it through the
``opentelemetry_instrumentor`` entry point ``neuron``, configured by the OTEL_NEURON_* variables
(`settings_from_environment`; docs/in-app.md lists them).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, cast

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation, get_meter
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from otel_neuron import __version__
from otel_neuron import process_recorder as process
from otel_neuron.config import (
    ConfigError,
    MonitorConfig,
    config_from_document,
    load_config,
)
from otel_neuron.groups.base import HistogramDelta, MetricGroup, bucket_list
from otel_neuron.groups.observable import ObservedGroups
from otel_neuron.groups.runtime import GROUP_TYPES, InferenceStatsGroup
from otel_neuron.histogram import SCALE, bucket_bounds
from otel_neuron.latency_export import LATENCY_INSTRUMENTS, LatencyExporter
from otel_neuron.pipeline import SYSTEM_GROUP_FACTORIES
from otel_neuron.producer import SCOPE
from otel_neuron.runtime.recorder import InferenceRecorder
from otel_neuron.runtime.server import RuntimeEndpointServer
from otel_neuron.semconv import (
    ERROR_MESSAGE,
    GROUP,
    GROUP_ERROR,
    GROUP_PERIOD,
    RUNTIME_ERROR,
    RUNTIME_INDEX,
)
from otel_neuron.semconv import RUNTIME_GROUPS as RUNTIME_GROUP_TYPES
from otel_neuron.semconv import SYSTEM_GROUPS as SYSTEM_GROUP_TYPES
from otel_neuron.sources.in_process import InProcessEndpoint
from otel_neuron.sources.runtime_endpoint import RuntimeEndpoint

_logger = logging.getLogger(__name__)

ConfigSource = Union[Mapping[str, Any], str, Path, MonitorConfig]  # noqa: UP007 - a runtime alias on 3.10

IN_PROCESS_RUNTIME_INDEX = 0
LATENCY_MAX_BUCKETS = 2048  # 32 octaves at scale 6: nanoseconds to hours without downscaling


def latency_views() -> list[View]:
    """Views giving the latency histograms the recorder's own buckets (base-2 exponential, scale 6).

    Pass them to the app's MeterProvider (``MeterProvider(views=latency_views(), ...)``) so that
    percentiles computed downstream stay within 1 % of the exact values.
    """
    return [
        View(
            instrument_name="neuron.inference.*latency",
            aggregation=ExponentialBucketHistogramAggregation(max_size=LATENCY_MAX_BUCKETS, max_scale=SCALE),
        )
    ]


@dataclass(frozen=True)
class InstrumentorSettings:
    """What to instrument: group types, and where (if anywhere) to serve the runtime endpoint."""

    system_groups: tuple[str, ...] = SYSTEM_GROUP_TYPES
    runtime_groups: tuple[str, ...] = RUNTIME_GROUP_TYPES
    serve_address: str = ""
    socket_mode: int = 0o600
    source: str = "<defaults>"


def settings_from_config(
    config: ConfigSource, environ: Mapping[str, str] | None = None
) -> InstrumentorSettings:
    """Settings from a monitor config (a dict in the file's format, a file path, or a MonitorConfig).

    The system groups are the config's `system_metrics`; the in-process runtime's groups are the
    metric types of its `neuron_runtimes` entries (their addresses and all periods do not apply
    in-app: the app's readers set the periods). Serving still follows OTEL_NEURON_RUNTIME_ADDRESS.
    Raises ConfigError (a ValueError) naming the problem.
    """
    if isinstance(config, MonitorConfig):
        monitor = config
    elif isinstance(config, (str, Path)):
        monitor = load_config(config)
    elif isinstance(config, Mapping):
        monitor = config_from_document(dict(config), "<config dict>")
    else:
        kind = type(config).__name__
        raise ConfigError(f"config must be a dict, a file path or a MonitorConfig, not {kind}")
    runtime_groups: list[str] = []
    for runtime in monitor.runtimes:
        runtime_groups.extend(g.type for g in runtime.groups if g.type not in runtime_groups)
    serving = _serving_from_environment(os.environ if environ is None else environ)
    return InstrumentorSettings(
        system_groups=tuple(g.type for g in monitor.system_groups),
        runtime_groups=tuple(runtime_groups),
        serve_address=serving[0],
        socket_mode=serving[1],
        source=monitor.source,
    )


def settings_from_environment(environ: Mapping[str, str]) -> InstrumentorSettings:
    """Settings from the OTEL_NEURON_* variables; ConfigError naming the variable when one is bad.

    OTEL_NEURON_CONFIG               a monitor config file (its groups, as in `settings_from_config`)
    OTEL_NEURON_SYSTEM_METRICS       comma-separated system groups, or "none" (overrides the file)
    OTEL_NEURON_RUNTIME_METRICS      comma-separated runtime groups, or "none" (overrides the file)
    OTEL_NEURON_RUNTIME_ADDRESS      serve the runtime endpoint there, e.g. unix:/run/neuron.sock
    OTEL_NEURON_RUNTIME_SOCKET_MODE  octal mode of that unix socket (default 600)
    """
    path = environ.get("OTEL_NEURON_CONFIG", "").strip()
    settings = settings_from_config(path, environ) if path else InstrumentorSettings()
    serve_address, socket_mode = _serving_from_environment(environ)
    return InstrumentorSettings(
        system_groups=_group_list(
            environ, "OTEL_NEURON_SYSTEM_METRICS", SYSTEM_GROUP_TYPES, settings.system_groups
        ),
        runtime_groups=_group_list(
            environ, "OTEL_NEURON_RUNTIME_METRICS", RUNTIME_GROUP_TYPES, settings.runtime_groups
        ),
        serve_address=serve_address,
        socket_mode=socket_mode,
        source=f"OTEL_NEURON_CONFIG={path}" if path else "OTEL_NEURON_* environment",
    )


def _group_list(
    environ: Mapping[str, str], name: str, known: Sequence[str], default: tuple[str, ...]
) -> tuple[str, ...]:
    text = environ.get(name, "").strip()
    if not text:
        return default
    if text.lower() == "none":
        return ()
    groups: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        item = "neuron_runtime_vcpu_usage" if item == "vcpu_usage" and "vcpu_usage" not in known else item
        if item not in known:
            raise ConfigError(f"{name}: unknown metric group {item!r} (known: {', '.join(known)}, or none)")
        if item not in groups:
            groups.append(item)
    return tuple(groups)


def _serving_from_environment(environ: Mapping[str, str]) -> tuple[str, int]:
    address = environ.get("OTEL_NEURON_RUNTIME_ADDRESS", "").strip()
    mode_text = environ.get("OTEL_NEURON_RUNTIME_SOCKET_MODE", "").strip()
    mode = 0o600
    if mode_text:
        try:
            mode = int(mode_text, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise ConfigError(f"OTEL_NEURON_RUNTIME_SOCKET_MODE: {mode_text!r} is not an octal mode like 600")
    return address, mode


class NeuronInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Registers neuron-monitor's groups for this process on a MeterProvider (see the module docs).

    ``NeuronInstrumentor(config=..., recorder=...).instrument(meter_provider=..., serve_address=...)``:
    every argument is optional. `config` is a monitor config (dict, file path or MonitorConfig);
    without it the OTEL_NEURON_* variables apply, and without those every group is registered.
    A bad explicit argument raises ValueError; a bad environment variable is logged and nothing is
    instrumented, so that a typo cannot stop an auto-instrumented application from starting.
    `uninstrument()` stops it: the SDK offers no way to remove an observable instrument, so its
    callbacks stay registered but return at once, reading no source and observing nothing.
    With ``latency_exporter=`` (a `LatencyExporter` that the provider's reader exports through),
    the latency histograms go out through it, made from the recorder's buckets, rather than
    through two SDK Histograms fed one record per inference (otel_neuron.latency_export).
    """

    # BaseInstrumentor is a singleton: __init__ runs on every NeuronInstrumentor(...) call. It only
    # keeps the arguments for the next instrument(); an active instrumentation is left alone.
    def __init__(self, config: ConfigSource | None = None, recorder: InferenceRecorder | None = None) -> None:
        self._config = config
        self._recorder = recorder
        if not hasattr(self, "_active"):
            self._active: _Instrumentation | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # it instruments this process, not a library

    @property
    def active_groups(self) -> list[MetricGroup]:
        """The groups being reported now (empty when not instrumented)."""
        return list(self._active.groups) if self._active is not None else []

    def _instrument(self, **kwargs: Any) -> None:
        config = kwargs.get("config", self._config)
        if config is not None:
            settings = settings_from_config(config)
        else:
            try:
                settings = settings_from_environment(os.environ)
            except ConfigError as error:
                _logger.error("otel-neuron is not instrumenting this process: %s", error)
                return
        serve_address = kwargs.get("serve_address", settings.serve_address)
        socket_mode = kwargs.get("socket_mode", settings.socket_mode)
        recorder = kwargs.get("recorder") or self._recorder or process.recorder()
        meter_provider: MeterProvider | None = kwargs.get("meter_provider")
        meter = get_meter(SCOPE.name, __version__, meter_provider)
        active = _Instrumentation(meter, settings, recorder, kwargs.get("latency_exporter"))
        if serve_address:
            try:
                active.server = process.serve_runtime_endpoint(serve_address, recorder, socket_mode)
            except (OSError, ValueError) as error:
                active.close()
                if "serve_address" in kwargs:
                    raise
                _logger.error("otel-neuron cannot serve the runtime endpoint: %s", error)
                return
        self._active = active

    def _uninstrument(self, **kwargs: Any) -> None:
        active, self._active = self._active, None
        if active is not None:
            active.close()


class _Instrumentation:
    """The instruments, groups and (optionally) runtime endpoint of one instrument() call."""

    def __init__(
        self,
        meter: Meter,
        settings: InstrumentorSettings,
        recorder: InferenceRecorder,
        latency_exporter: LatencyExporter | None = None,
    ) -> None:
        self.server: RuntimeEndpointServer | None = None
        self._latency_exporter = latency_exporter
        self._closed = False
        self._lock = threading.Lock()
        self._endpoint = InProcessEndpoint(recorder)
        endpoint = cast(RuntimeEndpoint, self._endpoint)
        self.groups: list[MetricGroup] = [SYSTEM_GROUP_FACTORIES[name]() for name in settings.system_groups]
        self.groups.extend(
            GROUP_TYPES[name](IN_PROCESS_RUNTIME_INDEX, endpoint) for name in settings.runtime_groups
        )
        for group in self.groups:
            group.prime()
        self._latency: list[tuple[str, Histogram]] = []
        # Registered first, so its callback runs first in every collection and takes the samples.
        meter.create_observable_gauge(
            GROUP_PERIOD.name,
            [self._observe_periods],
            unit=GROUP_PERIOD.unit,
            description=GROUP_PERIOD.description,
        )
        meter.create_observable_gauge(
            GROUP_ERROR.name,
            [self._observe_errors],
            unit=GROUP_ERROR.unit,
            description=GROUP_ERROR.description,
        )
        if settings.runtime_groups:
            meter.create_observable_gauge(
                RUNTIME_ERROR.name,
                [self._observe_runtime_error],
                unit=RUNTIME_ERROR.unit,
                description=RUNTIME_ERROR.description,
            )
        self._observed = ObservedGroups(meter, self.groups)
        if latency_exporter is None and any(isinstance(group, InferenceStatsGroup) for group in self.groups):
            for spec in LATENCY_INSTRUMENTS:
                histogram = meter.create_histogram(spec.name, unit=spec.unit, description=spec.description)
                self._latency.append((spec.name, histogram))

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._observed.close()
        self._endpoint.close()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _sample_all(self) -> None:
        """One collection: sample every group, then feed the period's latencies to the histograms."""
        with self._lock:
            if self._closed:
                return
            self._endpoint.next_collection()
            samples = [(group, group.sample()) for group in self.groups]
            for group, sample in samples:  # after sampling, so that every group covers the same period
                if not isinstance(group, InferenceStatsGroup) or sample.error:
                    continue
                if self._latency_exporter is not None:
                    end = sample.time_unix_nano
                    self._latency_exporter.add_period(sample.points, end - int(sample.period * 1e9), end)
                    continue
                for name, histogram in self._latency:
                    for attributes, value in sample.points.get(name, ()):
                        if isinstance(value, HistogramDelta):
                            record_histogram(histogram, value, attributes)

    def _observe_periods(self, options: CallbackOptions) -> Iterable[Observation]:
        self._sample_all()
        if self._closed:
            return
        for group in self.groups:
            sample = group.last_sample
            if sample is not None:
                yield Observation(sample.period, {GROUP: group.report_key, **group.base_attributes()})

    def _observe_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._closed:
            return
        for group in self.groups:
            sample = group.last_sample
            if sample is not None:
                attributes = {GROUP: group.report_key, ERROR_MESSAGE: sample.error, **group.base_attributes()}
                yield Observation(1 if sample.error else 0, attributes)

    def _observe_runtime_error(self, options: CallbackOptions) -> Iterable[Observation]:
        if self._closed:
            return
        error = self._endpoint.last_error
        yield Observation(1 if error else 0, {RUNTIME_INDEX: IN_PROCESS_RUNTIME_INDEX, ERROR_MESSAGE: error})


def record_histogram(histogram: Histogram, delta: HistogramDelta, attributes: Mapping[str, Any]) -> None:
    """Record values reproducing `delta` (see `replay_values`) on an OpenTelemetry Histogram."""
    record = histogram.record
    for value, times in replay_values(delta):
        for _ in range(times):
            record(value, attributes)


def replay_values(delta: HistogramDelta) -> list[tuple[float, int]]:
    """(value, times) pairs whose recording reproduces `delta`'s buckets, count, min and max.

    Each bucket contributes its count at its geometric midpoint (clamped to [min, max]); one value
    of the lowest and one of the highest non-empty bucket are replaced by the exact min and max.
    Recorded into an exponential histogram of scale <= delta.scale, every value lands in its
    original bucket; the sum is within half a bucket width (0.55 % at scale 6) of the true sum.
    """
    if delta.count <= 0:
        return []
    if delta.count == 1:
        return [(delta.min, 1)]
    zero = delta.zero_count
    counts = bucket_list(delta.bucket_counts)
    if zero > 0:  # the min is the lowest value: one of the zero bucket, else of the lowest bucket
        zero -= 1
    else:
        counts[next(i for i, count in enumerate(counts) if count)] -= 1
    highest = next((i for i in range(len(counts) - 1, -1, -1) if counts[i]), None)
    if highest is not None:  # the max is one of the highest bucket, else of the zero bucket
        counts[highest] -= 1
    else:
        zero -= 1
    pairs = [(delta.min, 1), (delta.max, 1)]
    if zero > 0:
        pairs.append((0.0, zero))
    for position, count in enumerate(counts):
        if count > 0:
            lower, upper = bucket_bounds(delta.offset + position, delta.scale)
            pairs.append((min(max(math.sqrt(lower * upper), delta.min), delta.max), count))
    return pairs
