"""Where a neuron-monitor bridge reads from: its address, and the config a spawned neuron-monitor runs with.

- ``neuron-monitor:[BINARY][?config=PATH&tag_filter=REGEX&index=N]`` runs BINARY (default
  /opt/aws/neuron/bin/neuron-monitor) with CONFIG either the user's own file (``config=``) or one
  generated from the groups otel-neuron was asked for (`generated_config`).
- ``stdin:[?tag_filter=REGEX&index=N]`` reads the reports piped to otel-neuron's stdin.

``tag_filter`` selects 2.x applications by ``neuron_runtime_tag`` (``re.search``), ``index``
selects 1.x entries by ``neuron_runtime_index``; without either, every application of the stream
belongs to the configured runtime.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from otel_neuron.semconv import (
    EXECUTION_STATS,
    HW_COUNTERS,
    INFERENCE_STATS,
    MEMORY_USED,
    NEURON_HARDWARE_INFO,
    NEURON_HW_COUNTERS,
    NEURONCORE_COUNTERS,
    RUNTIME_VCPU_USAGE,
)

DEFAULT_BINARY = "/opt/aws/neuron/bin/neuron-monitor"
SPAWN_SCHEME = "neuron-monitor:"
STDIN_SCHEME = "stdin:"

# The groups a bridge feeds (otel-neuron's report keys). neuron_hardware_info is a root object that
# neuron-monitor always writes, whatever its config asks for.
GROUP_KEYS = (
    NEURONCORE_COUNTERS,
    INFERENCE_STATS,
    MEMORY_USED,
    HW_COUNTERS,
    RUNTIME_VCPU_USAGE,
    NEURON_HARDWARE_INFO,
)
# The neuron-monitor 2.x config types of the application-level groups.
_V2_RUNTIME_TYPES = {
    NEURONCORE_COUNTERS: NEURONCORE_COUNTERS,
    INFERENCE_STATS: EXECUTION_STATS,
    MEMORY_USED: MEMORY_USED,
    RUNTIME_VCPU_USAGE: RUNTIME_VCPU_USAGE,
}


@dataclass(frozen=True)
class BridgeAddress:
    scheme: str  # SPAWN_SCHEME or STDIN_SCHEME
    binary: str = DEFAULT_BINARY
    config: str | None = None
    tag_filter: str | None = None
    index: int | None = None

    @property
    def source_key(self) -> tuple[str, str, str | None]:
        """Addresses with the same key share one process or stream."""
        return (self.scheme, self.binary if self.scheme == SPAWN_SCHEME else "", self.config)

    def describe_source(self) -> str:
        return "stdin" if self.scheme == STDIN_SCHEME else f"neuron-monitor {self.binary}"


def is_bridge_address(address: str) -> bool:
    return address.startswith((SPAWN_SCHEME, STDIN_SCHEME))


def parse_bridge_address(address: str) -> BridgeAddress:
    """`neuron-monitor:[BINARY][?...]` or `stdin:[?...]`; ValueError naming the problem."""
    if address.startswith(SPAWN_SCHEME):
        scheme, rest = SPAWN_SCHEME, address[len(SPAWN_SCHEME) :]
    elif address.startswith(STDIN_SCHEME):
        scheme, rest = STDIN_SCHEME, address[len(STDIN_SCHEME) :]
    else:
        raise ValueError(f"{address!r} is not a neuron-monitor: or stdin: address")
    path, _, query = rest.partition("?")
    if scheme == STDIN_SCHEME and path:
        raise ValueError(f"{address!r}: stdin: takes no path, only ?tag_filter=... or ?index=...")
    options = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - {"config", "tag_filter", "index"})
    if unknown:
        raise ValueError(f"{address!r}: unknown option {unknown[0]!r} (known: config, tag_filter, index)")
    if scheme == STDIN_SCHEME and "config" in options:
        raise ValueError(f"{address!r}: config= applies to neuron-monitor: addresses only")
    tag_filter = options.get("tag_filter")
    if tag_filter is not None:
        try:
            re.compile(tag_filter)
        except re.error as error:
            raise ValueError(
                f"{address!r}: tag_filter {tag_filter!r} is not a regular expression: {error}"
            ) from None
    index = None
    if "index" in options:
        if not options["index"].isdigit():
            raise ValueError(
                f"{address!r}: index must be a runtime index such as 0, not {options['index']!r}"
            )
        index = int(options["index"])
    return BridgeAddress(
        scheme=scheme,
        binary=path or DEFAULT_BINARY,
        config=options.get("config") or None,
        tag_filter=tag_filter,
        index=index,
    )


def generated_config(group_periods: Mapping[str, float]) -> dict[str, Any]:
    """A neuron-monitor 2.x configuration collecting what the subscribed groups need."""
    shortest = min(group_periods.values(), default=1.0)
    metrics = []
    for key, period in sorted(group_periods.items()):
        if key in _V2_RUNTIME_TYPES:
            metrics.append({"type": _V2_RUNTIME_TYPES[key], "period": _duration(period)})
    config: dict[str, Any] = {
        "period": _duration(shortest),
        "neuron_runtimes": [{"tag_filter": ".*", "metrics": metrics}] if metrics else [],
        "system_metrics": [],
    }
    if HW_COUNTERS in group_periods:
        config["system_metrics"].append(
            {"type": NEURON_HW_COUNTERS, "period": _duration(group_periods[HW_COUNTERS])}
        )
    return config


def _duration(seconds: float) -> str:
    milliseconds = max(1, round(seconds * 1000))
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"
