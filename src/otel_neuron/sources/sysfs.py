"""Read the Neuron driver's sysfs tree: devices, NeuronCores, memory, ECC, power, status counters.

    snapshot = read_sysfs("/sys/devices/virtual/neuron_device")

Read-only, always: the driver's counters are write-to-clear (writing anything to one sets it to
0). Every file is opened with O_RDONLY, at most 4 KiB read, and parsed defensively: a missing file
is skipped (the layout differs across driver versions and instance types), an unreadable or
garbage one is skipped and named in `SysfsSnapshot.problems` ("neuron0/stats/power/utilization: ...").

A counter is a directory of `total`, `present` and (memory only) `peak`. For memory, `total` is
what is in use now, `present` only the size of the last allocation or free, and `peak` the most
ever in use; for the status and other_info counters, `total` is the count since the driver loaded.
`present` is therefore never read.

Nodes are discovered by walking the tree rather than assuming paths (driver 2.31 moved several
nodes, and the old-to-new mapping is not published): devices are the directories `neuron<N>` under
the root; NeuronCores are directories `neuron_core<M>` anywhere below a device. Within them each
thing is recognised by the nearest name that says what it is, however deep the driver put it and
whatever the directories in between are called: a counter directory under `host_mem` (of a
device) or `device_mem`, `status`, `other_info` (of a core); an ECC file by its own name
(`mem_ecc_uncorrected`, ...); `arch_type`, `instance_type`, `device_name`, `core_count` by theirs;
power by `power/utilization`. Where a name occurs twice the shallower path wins. NeuronCores are
numbered across devices the way neuron-monitor numbers them: device 0's cores first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from otel_neuron.semconv import ECC_KINDS_SYSFS

DEFAULT_ROOT = "/sys/devices/virtual/neuron_device"
SCHEME = "sysfs:"

_DEVICE_DIR = re.compile(r"neuron(\d+)")
_CORE_DIR = re.compile(r"neuron_core(\d+)")
_MAX_DEPTH = 8
_MAX_READ = 4096
_COUNTER_FILES = ("total", "present", "peak")  # any of them marks a counter directory
# The ECC files the driver may have (no public driver has the *_corrected ones: skipped when absent).
ECC_FILES = ECC_KINDS_SYSFS
POWER_STATUSES = ("VALID", "NO_DATA", "INVALID")


class SysfsError(RuntimeError):
    """The tree cannot be read at all (no root, no device)."""


@dataclass(frozen=True)
class Usage:
    """One counter directory: `total` (memory: bytes in use now; other counters: the count since the
    driver loaded) and, for memory, `peak` (the most ever in use); None where absent or unreadable."""

    total: int | None = None
    peak: int | None = None


@dataclass(frozen=True)
class PowerReading:
    status: str  # VALID | NO_DATA | INVALID
    epoch: int
    minimum: float
    maximum: float
    average: float


@dataclass(frozen=True)
class CoreNode:
    index: int  # numbered across devices
    local_index: int  # neuron_core<M> within its device
    device_index: int
    arch_type: str = ""  # the NeuronCore's, as "NCv2"
    memory: Mapping[str, Usage] = field(default_factory=dict)  # device_mem categories
    status: Mapping[str, Usage] = field(default_factory=dict)
    other_info: Mapping[str, Usage] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceNode:
    index: int
    core_count: int | None
    arch_type: str  # the device's, as "NDv2" (older drivers: as a core's, "NCv2")
    instance_type: str
    device_name: str
    host_memory: Mapping[str, Usage] = field(default_factory=dict)  # host_mem categories
    ecc: Mapping[str, int] = field(default_factory=dict)
    power: PowerReading | None = None
    cores: tuple[CoreNode, ...] = ()


@dataclass(frozen=True)
class SysfsSnapshot:
    root: str
    devices: tuple[DeviceNode, ...]
    problems: tuple[str, ...] = ()


def parse_sysfs_address(address: str) -> str:
    """`sysfs:` -> the default root; `sysfs:/other/root` -> that root. ValueError otherwise."""
    if not address.startswith(SCHEME):
        raise ValueError(f"{address!r} is not a sysfs: address")
    root = address[len(SCHEME) :].strip()
    if root.startswith("//"):
        root = root[2:] if root.startswith("///") else root[1:]
    if root and not root.startswith("/"):
        raise ValueError(
            f"{address!r}: the root must be an absolute path, as in sysfs:/sys/devices/virtual/neuron_device"
        )
    return root or DEFAULT_ROOT


class _Reader:
    """Collects problems while reading; paths in messages are relative to the root."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.problems: list[str] = []

    def text(self, path: str) -> str | None:
        try:
            # O_RDONLY, never anything that could write: a write clears the driver's counter.
            descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            self.problem(path, error.strerror or str(error))
            return None
        try:
            # One read: a sysfs attribute gives its whole value at offset 0.
            return os.read(descriptor, _MAX_READ).decode("utf-8", errors="replace").strip()
        except OSError as error:
            self.problem(path, error.strerror or str(error))
            return None
        finally:
            os.close(descriptor)

    def integer(self, path: str) -> int | None:
        text = self.text(path)
        if text is None:
            return None
        try:
            value = int(text, 10)
        except ValueError:
            self.problem(path, f"not a number: {text[:40]!r}")
            return None
        if value < 0:
            self.problem(path, f"negative: {value}")
            return None
        return value

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(f"{os.path.relpath(path, self.root)}: {reason}")


def _walk(top: str, skip: re.Pattern[str] | None) -> list[str]:
    """Every path below `top` (relative, '/'-separated), not following symlinks, not into `skip` dirs."""
    found: list[str] = []
    stack = [("", 0)]
    while stack:
        relative, depth = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(top, relative) if relative else top))
        except OSError:
            continue
        for entry in entries:
            path = f"{relative}/{entry.name}" if relative else entry.name
            found.append(path)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir and depth < _MAX_DEPTH and not (skip is not None and skip.fullmatch(entry.name)):
                stack.append((path, depth + 1))
    return found


def _shallow_first(path: str) -> tuple[int, str]:
    return path.count("/"), path


def _find_usages(
    reader: _Reader, top: str, paths: list[str], parent: str, peak: bool = False
) -> dict[str, Usage]:
    """The counters `<parent>/<name>/{total,present,peak}` at any depth below `top`, by name."""
    directories: dict[str, str] = {}
    for path in sorted(paths, key=_shallow_first):
        parts = path.split("/")
        if len(parts) >= 3 and parts[-3] == parent and parts[-1] in _COUNTER_FILES:
            directories.setdefault(parts[-2], os.path.join(top, *parts[:-1]))
    return {
        name: Usage(
            total=reader.integer(os.path.join(directory, "total")),
            peak=reader.integer(os.path.join(directory, "peak")) if peak else None,
        )
        for name, directory in sorted(directories.items())
    }


def _find_file(top: str, paths: list[str], tail: str) -> str | None:
    """The shallowest path ending in `tail` (a name, or names joined by '/')."""
    for path in sorted(paths, key=_shallow_first):
        if path == tail or path.endswith("/" + tail):
            return os.path.join(top, path)
    return None


def parse_power(text: str) -> PowerReading:
    """`POWER_STATUS_<VALID|NO_DATA|INVALID>,<epoch>,<min>,<max>,<avg>`; ValueError if not so."""
    parts = [part.strip() for part in text.strip().split(",")]
    if len(parts) != 5 or not parts[0].startswith("POWER_STATUS_"):
        raise ValueError(f"not POWER_STATUS_<status>,<epoch>,<min>,<max>,<avg>: {text[:60]!r}")
    status = parts[0][len("POWER_STATUS_") :]
    if status not in POWER_STATUSES:
        raise ValueError(f"unknown power status {status!r}")
    try:
        epoch = int(parts[1])
        minimum, maximum, average = (float(part) for part in parts[2:])
    except ValueError:
        raise ValueError(f"not numbers: {text[:60]!r}") from None
    if not all(0.0 <= value < float("inf") for value in (minimum, maximum, average)):
        raise ValueError(f"out of range: {text[:60]!r}")
    return PowerReading(status, epoch, minimum, maximum, average)


def _read_device(reader: _Reader, path: str, index: int, first_core: int) -> DeviceNode:
    paths = _walk(path, _CORE_DIR)
    core_count_file = _find_file(path, paths, "core_count")
    core_count = reader.integer(core_count_file) if core_count_file else None
    facts = {}
    for name in ("arch_type", "instance_type", "device_name"):
        found = _find_file(path, paths, name)
        facts[name] = (reader.text(found) or "") if found else ""
    ecc: dict[str, int] = {}
    for name in ECC_FILES:
        found = _find_file(path, paths, name)
        if found is None:
            continue
        # Some drivers make each counter a directory of total/present.
        value = reader.integer(os.path.join(found, "total") if os.path.isdir(found) else found)
        if value is not None:
            ecc[name] = value
    power = None
    power_file = _find_file(path, paths, "power/utilization")
    if power_file is not None:
        text = reader.text(power_file)
        if text is not None:
            try:
                power = parse_power(text)
            except ValueError as error:
                reader.problem(power_file, str(error))
    core_dirs = []
    for relative in paths:
        match = _CORE_DIR.fullmatch(os.path.basename(relative))
        if match and os.path.isdir(os.path.join(path, relative)):
            core_dirs.append((int(match.group(1)), os.path.join(path, relative)))
    cores = []
    for position, (local, core_path) in enumerate(sorted(core_dirs)):
        core_paths = _walk(core_path, None)
        arch_file = _find_file(core_path, core_paths, "arch_type")
        cores.append(
            CoreNode(
                index=first_core + position,
                local_index=local,
                device_index=index,
                arch_type=(reader.text(arch_file) or "") if arch_file else "",
                memory=_find_usages(reader, core_path, core_paths, "device_mem", peak=True),
                status=_find_usages(reader, core_path, core_paths, "status"),
                other_info=_find_usages(reader, core_path, core_paths, "other_info"),
            )
        )
    return DeviceNode(
        index=index,
        core_count=core_count,
        arch_type=facts["arch_type"],
        instance_type=facts["instance_type"],
        device_name=facts["device_name"],
        host_memory=_find_usages(reader, path, paths, "host_mem", peak=True),
        ecc=ecc,
        power=power,
        cores=tuple(cores),
    )


def read_sysfs(root: str = DEFAULT_ROOT) -> SysfsSnapshot:
    """Everything the tree under `root` says now; SysfsError when there is no device at all."""
    try:
        entries = sorted(os.listdir(root))
    except FileNotFoundError:
        raise SysfsError(f"{root} does not exist: is the Neuron driver loaded (and /sys mounted)?") from None
    except OSError as error:
        raise SysfsError(f"cannot read {root}: {error.strerror or error}") from None
    devices = sorted(
        (int(match.group(1)), name) for name in entries if (match := _DEVICE_DIR.fullmatch(name))
    )
    if not devices:
        raise SysfsError(f"no neuron<N> device under {root}")
    reader = _Reader(root)
    nodes = []
    first_core = 0
    for index, name in devices:
        device = _read_device(reader, os.path.join(root, name), index, first_core)
        nodes.append(device)
        first_core += max(len(device.cores), device.core_count or 0)
    return SysfsSnapshot(root, tuple(nodes), tuple(reader.problems))
