"""Load and validate a neuron-monitor configuration file into frozen dataclasses.

The JSON Schema in `schemas/monitor-config.schema.json` does the structural checks (applied by
`config_schema`, without importing jsonschema); this module adds what a schema cannot say
(durations, duplicates, a simulated runtime's options) and resolves each group's period by
inheritance: group -> runtime -> root -> 5 s.

Everything a file can ask for is bounded (size, entries, periods, simulator options), so a
configuration that loads is one the monitor can run; `check_paths` adds what can be checked on
this host without starting anything (for --check-config).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from otel_neuron.config_schema import SchemaChecker, SchemaError
from otel_neuron.config_v2 import config_v2_to_v1
from otel_neuron.durations import format_duration, parse_duration
from otel_neuron.semconv import RUNTIME_GROUP_ALIASES, RUNTIME_GROUPS, SYSTEM_GROUPS

DEFAULT_PERIOD = 5.0
MIN_PERIOD = 0.01  # shorter periods would only keep a core busy collecting
MAX_PERIOD = 86_400.0  # "24h"; far longer periods overflow the timestamp of the next collection
MAX_FILE_BYTES = 1 << 20
# Counted before the schema walks the lists (validating 20,000 entries takes seconds); the schema
# states the same numbers as maxItems.
MAX_RUNTIMES = 128
MAX_GROUPS_PER_LIST = 16
DEFAULT_RUNTIME_ADDRESS = "unix:/run/neuron.sock"
CONFIG_SCHEMA = "monitor-config.schema.json"
# The configurable groups; the guide also calls the runtime's vCPU group `vcpu_usage`.
RUNTIME_GROUP_TYPES = RUNTIME_GROUPS
SYSTEM_GROUP_TYPES = SYSTEM_GROUPS


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
        text = _read_regular_file(path, name).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{name}: cannot read: {error}") from None
    except OSError as error:
        raise ConfigError(f"{name}: cannot read: {error.strerror or error}") from None
    return parse_config(text, name, v2_source)


def _read_regular_file(path: str | Path, name: str) -> bytes:
    """At most MAX_FILE_BYTES of a regular file. Anything else is refused from its stat alone:
    opening a FIFO for reading waits for a writer, a device may do something when opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    _check_regular(mode, name)
    # O_NONBLOCK: should a FIFO have taken the file's place since the stat, the open does not wait
    # for a writer, and fstat refuses it.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(descriptor, "rb") as file:
        _check_regular(os.fstat(descriptor).st_mode, name)
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(_too_large(name))
    return data


def _too_large(source: str) -> str:
    return f"{source}: larger than {MAX_FILE_BYTES} bytes (1 MiB), too large for a configuration"


def _check_regular(mode: int, name: str) -> None:
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{name}: is a directory, not a configuration file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{name}: is {_file_kind(mode)}, not a regular file")


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def parse_config(text: str, source: str = "<config>", v2_source: str = "neuron-monitor:") -> MonitorConfig:
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(_too_large(source))
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
    _check_list_sizes(document, source)
    _check_schema(document, source)
    root_period = _period_at(document, DEFAULT_PERIOD, source, "period")
    runtimes = tuple(
        _runtime(index, runtime, root_period, source)
        for index, runtime in enumerate(document.get("neuron_runtimes", []))
    )
    system_groups = _groups(document.get("system_metrics", []), root_period, source, "system_metrics", {})
    return MonitorConfig(runtimes=runtimes, system_groups=system_groups, source=source)


def check_paths(config: MonitorConfig) -> None:
    """The programs, files and directories the runtime addresses name are there (ConfigError if not).

    For --check-config: stat and access checks only, nothing is opened or started. A running
    monitor does not ask this: a missing neuron-monitor or driver is its runtime's `error`, picked
    up once it appears.
    """
    for runtime in config.runtimes:
        where = f"{config.source}: neuron_runtimes[{runtime.index}].address"
        try:
            problem = _address_problem(runtime.address)
        except ValueError as error:  # its message names the address
            raise ConfigError(f"{where}: {error}") from None
        if problem:
            raise ConfigError(f"{where}: {runtime.address!r}: {problem}")


def _address_problem(address: str) -> str:
    # Imported here: these sources are only needed by the configurations that name them.
    from otel_neuron.sources.neuron_monitor_address import SPAWN_SCHEME, parse_bridge_address
    from otel_neuron.sources.sysfs import SCHEME as SYSFS_SCHEME
    from otel_neuron.sources.sysfs import parse_sysfs_address

    if address.startswith(SPAWN_SCHEME):
        bridge = parse_bridge_address(address)
        return _program_problem(bridge.binary) or _file_problem(bridge.config)
    if address.startswith(SYSFS_SCHEME):
        root = parse_sysfs_address(address)
        return "" if os.path.isdir(root) else f"the root {root} is not a directory"
    return ""


def _program_problem(program: str) -> str:
    if os.sep not in program:
        return "" if shutil.which(program) else f"no program {program!r} on PATH"
    if not os.path.isfile(program):
        return f"{program} does not exist" if not os.path.exists(program) else f"{program} is not a file"
    return "" if os.access(program, os.X_OK) else f"{program} is not executable"


def _file_problem(path: str | None) -> str:
    if path is None or os.path.isfile(path):
        return ""
    return f"the config file {path} does not exist" if not os.path.exists(path) else f"{path} is not a file"


def _check_list_sizes(document: Any, source: str) -> None:
    if not isinstance(document, dict):
        return  # the schema names the problem
    runtimes = document.get("neuron_runtimes")
    lists = [("neuron_runtimes", runtimes, MAX_RUNTIMES)]
    lists.append(("system_metrics", document.get("system_metrics"), MAX_GROUPS_PER_LIST))
    if isinstance(runtimes, list) and len(runtimes) <= MAX_RUNTIMES:
        for index, runtime in enumerate(runtimes):
            if isinstance(runtime, dict):
                lists.append(
                    (f"neuron_runtimes[{index}].metrics", runtime.get("metrics"), MAX_GROUPS_PER_LIST)
                )
    for path, items, limit in lists:
        if isinstance(items, list) and len(items) > limit:
            raise ConfigError(f"{source}: {path}: {_too_many(len(items), limit)}")


def _too_many(count: int, limit: int) -> str:
    return f"{count} entries; at most {limit} are allowed"


def _runtime(index: int, runtime: Mapping[str, Any], root_period: float, source: str) -> RuntimeConfig:
    path = f"neuron_runtimes[{index}]"
    period = _period_at(runtime, root_period, source, f"{path}.period")
    groups = _groups(runtime["metrics"], period, source, f"{path}.metrics", RUNTIME_GROUP_ALIASES)
    address = runtime["address"].strip()
    if address == "sim" or address.startswith("sim:"):
        _check_simulator_options(address, source, f"{path}.address")
    return RuntimeConfig(index=index, address=address, groups=groups)


# A `sim:` query's option names that differ from SimulatorOptions' fields.
_SIMULATOR_FIELDS = {"churn": "churn_s"}


def _check_simulator_options(address: str, source: str, path: str) -> None:
    """A simulated runtime's options within the simulator's own bounds, before any simulator exists."""
    # Imported here: the runtime endpoint brings gRPC, which only a runtime address needs.
    from otel_neuron.runtime.simulator import SimulatorOptions
    from otel_neuron.sources.runtime_endpoint import parse_address

    try:
        options = parse_address(address).sim_options
    except ValueError as error:
        raise ConfigError(f"{source}: {path}: {error}") from None
    try:
        SimulatorOptions(**{_SIMULATOR_FIELDS.get(name, name): value for name, value in options.items()})
    except ValueError as error:
        raise ConfigError(f"{source}: {path}: {address!r}: {error}") from None


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
    value = _describe_value(container["period"])
    if period < MIN_PERIOD:
        raise ConfigError(f'{source}: {path}: {value} is shorter than the minimum period, "10ms"')
    if period > MAX_PERIOD:
        raise ConfigError(f'{source}: {path}: {value} is longer than the maximum period, "24h"')
    return period


def _check_schema(document: Any, source: str) -> None:
    errors = sorted(
        _validator().iter_errors(document),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if errors:
        raise ConfigError(f"{source}: {_describe_schema_error(errors[0])}")


def _describe_schema_error(error: SchemaError) -> str:
    path = json_path(error.absolute_path)
    where = path or "(top level)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(error.schema["properties"])
        return f"{json_path([*error.absolute_path, extra[0]])}: unknown key (allowed: {allowed})"
    if error.validator == "enum":
        known = ", ".join(error.validator_value)
        return f"{where}: unknown metric group {_describe_value(error.instance)} (known: {known})"
    if error.validator == "pattern":
        return f'{where}: {_describe_value(error.instance)} is not a duration like "500ms", "2s", "1m", "1h"'
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"{where}: missing required key {json.dumps(missing[0])}"
    if error.validator == "maxItems":
        return f"{where}: {_too_many(len(error.instance), error.validator_value)}"
    if error.validator == "maxLength":
        return f"{where}: {len(error.instance)} characters; at most {error.validator_value} are allowed"
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
def _validator() -> SchemaChecker:
    return SchemaChecker(load_schema(CONFIG_SCHEMA))
