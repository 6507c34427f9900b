"""Load and validate a neuron-monitor configuration file into frozen dataclasses.

The JSON Schema in `schemas/monitor-config.schema.json` does the structural checks; this
module adds what a schema cannot say (durations, duplicates) and resolves each group's period
by inheritance: group -> runtime -> root -> 5 s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from otel_neuron.config_v2 import config_v2_to_v1
from otel_neuron.durations import format_duration, parse_duration

DEFAULT_PERIOD = 5.0
MIN_PERIOD = 0.01  # shorter periods would only keep a core busy collecting
DEFAULT_RUNTIME_ADDRESS = "unix:/run/neuron.sock"
RUNTIME_GROUP_TYPES = (
    "neuroncore_counters",
    "inference_stats",
    "memory_used",
    "hw_counters",
    "neuron_runtime_vcpu_usage",
)
SYSTEM_GROUP_TYPES = ("vcpu_usage", "memory_info")
# The guide calls the runtime's vCPU group both names.
_RUNTIME_GROUP_ALIASES = {"vcpu_usage": "neuron_runtime_vcpu_usage"}


class ConfigError(ValueError):
    """A configuration problem, already phrased as one line naming the file and JSON path."""


@dataclass(frozen=True)
class GroupConfig:
    type: str
    period: float


@dataclass(frozen=True)
class RuntimeConfig:
    index: int
    address: str
    groups: tuple[GroupConfig, ...]


@dataclass(frozen=True)
class MonitorConfig:
    runtimes: tuple[RuntimeConfig, ...]
    system_groups: tuple[GroupConfig, ...]
    source: str = "<defaults>"

    def periods(self) -> list[float]:
        every_group = [*self.system_groups, *(g for r in self.runtimes for g in r.groups)]
        return sorted({group.period for group in every_group})

    def describe(self) -> dict[str, Any]:
        """The effective configuration, every period resolved, in the file's own format."""

        def groups(items: Iterable[GroupConfig]) -> list[dict[str, str]]:
            return [{"type": g.type, "period": format_duration(g.period)} for g in items]

        return {
            "neuron_runtimes": [{"address": r.address, "metrics": groups(r.groups)} for r in self.runtimes],
            "system_metrics": groups(self.system_groups),
        }


def default_config(runtime_address: str = DEFAULT_RUNTIME_ADDRESS) -> MonitorConfig:
    """No option given: every metric group, each every 5 s, for the guide's default runtime address."""
    runtime_groups = tuple(GroupConfig(t, DEFAULT_PERIOD) for t in RUNTIME_GROUP_TYPES)
    return MonitorConfig(
        runtimes=(RuntimeConfig(0, runtime_address, runtime_groups),),
        system_groups=tuple(GroupConfig(t, DEFAULT_PERIOD) for t in SYSTEM_GROUP_TYPES),
    )


def load_config(path: str | Path, v2_source: str = "neuron-monitor:") -> MonitorConfig:
    """Read and validate the file at `path`; ConfigError (one line) on any problem.

    A neuron-monitor 2.x file (runtimes by `tag_filter`) is mapped onto the 1.x form first; its
    runtimes are then read from `v2_source` ("neuron-monitor:" runs AWS's binary, "stdin:" reads
    its reports piped in).
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, not a configuration file") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"{name}: cannot read: {reason}") from None
    return parse_config(text, name, v2_source)


def parse_config(text: str, source: str = "<config>", v2_source: str = "neuron-monitor:") -> MonitorConfig:
    if not text.strip():
        raise ConfigError(f"{source}: the file is empty; expected a JSON object")
    try:
        document = json.loads(text, object_pairs_hook=_object_without_duplicates)
    except _DuplicateKey as duplicate:
        raise ConfigError(f"{source}: key {json.dumps(duplicate.key)} appears twice in one object") from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{source}: line {error.lineno} column {error.colno}: not valid JSON: {error.msg}"
        ) from None
    except RecursionError:
        raise ConfigError(f"{source}: JSON nested too deeply") from None
    except ValueError as error:  # e.g. an integer literal longer than Python converts
        raise ConfigError(f"{source}: not valid JSON: {error}") from None
    return config_from_document(document, source, v2_source)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's default keeps the last of two equal keys silently; a config file must not mean two things."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(key)
        document[key] = value
    return document


def config_from_document(
    document: Any, source: str = "<config>", v2_source: str = "neuron-monitor:"
) -> MonitorConfig:
    document = config_v2_to_v1(document, source=v2_source)
    _check_schema(document, source)
    root_period = _period_at(document, DEFAULT_PERIOD, source, "period")
    runtimes = tuple(
        _runtime(index, runtime, root_period, source)
        for index, runtime in enumerate(document.get("neuron_runtimes", []))
    )
    system_groups = _groups(document.get("system_metrics", []), root_period, source, "system_metrics", {})
    return MonitorConfig(runtimes=runtimes, system_groups=system_groups, source=source)


def _runtime(index: int, runtime: Mapping[str, Any], root_period: float, source: str) -> RuntimeConfig:
    path = f"neuron_runtimes[{index}]"
    period = _period_at(runtime, root_period, source, f"{path}.period")
    groups = _groups(runtime["metrics"], period, source, f"{path}.metrics", _RUNTIME_GROUP_ALIASES)
    return RuntimeConfig(index=index, address=runtime["address"].strip(), groups=groups)


def _groups(
    items: list[Mapping[str, Any]], inherited: float, source: str, path: str, aliases: Mapping[str, str]
) -> tuple[GroupConfig, ...]:
    seen: dict[str, int] = {}
    groups = []
    for position, item in enumerate(items):
        group_type = aliases.get(item["type"], item["type"])
        if group_type in seen:
            raise ConfigError(
                f'{source}: {path}[{position}].type: "{item["type"]}" '
                f"is already listed at {path}[{seen[group_type]}]"
            )
        seen[group_type] = position
        period = _period_at(item, inherited, source, f"{path}[{position}].period")
        groups.append(GroupConfig(group_type, period))
    return tuple(groups)


def _period_at(container: Mapping[str, Any], inherited: float, source: str, path: str) -> float:
    if "period" not in container:
        return inherited
    try:
        period = parse_duration(container["period"])
    except ValueError as error:
        raise ConfigError(f"{source}: {path}: {error}") from None
    if period < MIN_PERIOD:
        raise ConfigError(
            f'{source}: {path}: {json.dumps(container["period"])} is shorter than the minimum period, "10ms"'
        )
    return period


def _check_schema(document: Any, source: str) -> None:
    errors = sorted(
        _validator().iter_errors(document),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if errors:
        raise ConfigError(f"{source}: {_describe_schema_error(errors[0])}")


def _describe_schema_error(error: jsonschema.ValidationError) -> str:
    path = json_path(error.absolute_path)
    where = path or "(top level)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(error.schema["properties"])
        return f"{json_path([*error.absolute_path, extra[0]])}: unknown key (allowed: {allowed})"
    if error.validator == "enum":
        known = ", ".join(error.validator_value)
        return f"{where}: unknown metric group {json.dumps(error.instance)} (known: {known})"
    if error.validator == "pattern":
        return f'{where}: {json.dumps(error.instance)} is not a duration like "500ms", "2s", "1m", "1h"'
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"{where}: missing required key {json.dumps(missing[0])}"
    if error.validator == "type":
        expected = _json_type_name(error.validator_value)
        return f"{where}: expected {expected}, got {_describe_value(error.instance)}"
    return f"{where}: {error.message}"


def json_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(str(part)):
            text += f"[{json.dumps(str(part))}]"  # a key with blanks, dots or newlines stays on one line
        else:
            text += f".{part}" if text else str(part)
    return text


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _json_type_name(expected: Any) -> str:
    names = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer"}
    return names.get(expected, str(expected))


def _describe_value(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_schema(name: str) -> dict[str, Any]:
    """One of the JSON Schemas packaged with otel_neuron."""
    loaded: dict[str, Any] = json.loads(
        resources.files("otel_neuron").joinpath("schemas").joinpath(name).read_text()
    )
    return loaded


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = load_schema("monitor-config.schema.json")
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)
