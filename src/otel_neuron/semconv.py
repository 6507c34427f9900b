"""Every domain fact of otel-neuron, declared once: report groups, attribute keys, instruments, enumerations.

Sources, groups, renderers, exporters and docs/metrics.md (checked by a test) all take their names from
here. A name that appears in a report, an OpenTelemetry metric or a Prometheus series is spelled in this
module and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# --------------------------------------------------------------------------- report groups

# The guide's (1.x) runtime-level groups, in the guide's order.
NEURONCORE_COUNTERS = "neuroncore_counters"
INFERENCE_STATS = "inference_stats"
MEMORY_USED = "memory_used"
HW_COUNTERS = "hw_counters"
RUNTIME_VCPU_USAGE = "neuron_runtime_vcpu_usage"
RUNTIME_GROUPS = (NEURONCORE_COUNTERS, INFERENCE_STATS, MEMORY_USED, HW_COUNTERS, RUNTIME_VCPU_USAGE)
# The guide also calls the runtime's vCPU group by the system group's name.
RUNTIME_GROUP_ALIASES = {"vcpu_usage": RUNTIME_VCPU_USAGE}

# System-level groups.
VCPU_USAGE = "vcpu_usage"
MEMORY_INFO = "memory_info"
SYSTEM_GROUPS = (VCPU_USAGE, MEMORY_INFO)

# Groups only the driver's sysfs gives (a `sysfs:` runtime entry).
NEURON_HARDWARE_INFO = "neuron_hardware_info"
NEURON_POWER = "neuron_power"
NEURONCORE_STATUS = "neuroncore_status"
SYSFS_ONLY_GROUPS = (NEURON_HARDWARE_INFO, NEURON_POWER, NEURONCORE_STATUS)

# The 2.x report's root object naming the Kubernetes container of each NeuronCore and device (--kubernetes).
NEURON_K8S_INFO = "neuron_k8s_info"

# neuron-monitor 2.x's names for the same groups.
EXECUTION_STATS = "execution_stats"  # 2.x's inference_stats
NEURON_HW_COUNTERS = "neuron_hw_counters"  # 2.x's hw_counters, a system group there
V2_RUNTIME_GROUP_NAMES = {INFERENCE_STATS: EXECUTION_STATS}

# --------------------------------------------------------------------------- enumerations

# How an inference (2.x: an execution) ended; the report's inference_summary / execution_summary keys.
OUTCOMES = (
    "completed",
    "completed_with_err",
    "completed_with_num_err",
    "timed_out",
    "incorrect_input",
    "failed_to_queue",
)
# Outcomes whose latency was measured (the others never ran).
EXECUTED_OUTCOMES = OUTCOMES[:3]
# The guide's error_summary keys (its prose says "numeric"; its JSON, which we follow, "numerical").
ERROR_TYPES = ("generic", "numerical", "transient", "runtime", "hardware")
# neuron-monitor 2.x adds errors of the model itself.
MODEL_ERROR = "model"
ERROR_TYPES_V2 = ("generic", "numerical", "transient", MODEL_ERROR, "runtime", "hardware")

# ECC event kinds of a Neuron device. The guide's hw_counters has the first three; 2.x and the
# driver's sysfs add sram_ecc_corrected; some drivers also count repairable uncorrected memory errors.
ECC_KINDS_V1 = ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_uncorrected")
SRAM_ECC_CORRECTED = "sram_ecc_corrected"
ECC_KINDS = ("mem_ecc_corrected", "mem_ecc_uncorrected", SRAM_ECC_CORRECTED, "sram_ecc_uncorrected")
ECC_KINDS_SYSFS = (*ECC_KINDS, "mem_ecc_repairable_uncorrected")

# Where a runtime's memory lives (neuron_runtime_used_bytes' keys).
MEMORY_LOCATIONS = ("host", "neuron_device")

# The percentiles of the guide's latency objects, and the fraction of the population each stands for.
PERCENTILES = ("p0", "p1", "p25", "p50", "p75", "p99", "p100")
PERCENTILE_FRACTIONS = {
    "p0": 0.0,
    "p1": 0.01,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p99": 0.99,
    "p100": 1.0,
}

# The guide's seven CPU modes and OpenTelemetry's cpu.mode value for each.
CPU_MODES = ("user", "nice", "system", "idle", "io_wait", "irq", "soft_irq")
SEMCONV_CPU_MODE = {
    "user": "user",
    "nice": "nice",
    "system": "system",
    "idle": "idle",
    "io_wait": "iowait",
    "irq": "interrupt",
    "soft_irq": "softirq",
}
# A runtime process's CPU time (neuron_runtime_vcpu_usage) has two modes.
RUNTIME_CPU_MODES = ("user", "system")

# neuron-monitor 2.x's memory usage_breakdown categories: of a runtime's host memory, of a NeuronCore's
# device memory (neuroncore_memory_usage), and of a subgraph's device memory (no shared scratchpad there).
HOST_MEMORY_CATEGORIES = ("application_memory", "constants", "dma_buffers", "tensors")
CORE_MEMORY_CATEGORIES = ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")
SUBGRAPH_DEVICE_MEMORY_CATEGORIES = ("constants", "model_code", "runtime_memory", "tensors")

# --------------------------------------------------------------------------- attribute keys

RUNTIME_INDEX = "neuron.runtime.index"  # the runtime's index in the configuration
RUNTIME_TAG = "neuron.runtime.tag"  # neuron-monitor 2.x's neuron_runtime_tag of an application
# Where an application's tag comes from (neuron-monitor's rule; unset: the tag is str(pid)), and its limit.
PROCESS_TAG_VARIABLE = "NEURON_PROCESS_TAG"
PROCESS_TAG_MAX_LENGTH = 255
PROCESS_PID = "process.pid"  # OpenTelemetry's key for the application process
GROUP = "neuron.monitor.group"  # a group's report key, on the health metrics
ERROR_MESSAGE = "error.message"
CORE_INDEX = "neuron.core.index"  # NeuronCore index, numbered across devices
DEVICE_INDEX = "neuron.device.index"
MODEL_NAME = "neuron.model.name"
MODEL_UUID = "neuron.model.uuid"
MODEL_ID = "neuron.model.id"
SUBGRAPH_NAME = "neuron.subgraph.name"
MEMORY_LOCATION = "neuron.memory.location"  # one of MEMORY_LOCATIONS
MEMORY_CATEGORY = "neuron.memory.category"  # usage_breakdown's category names
OUTCOME = "neuron.inference.outcome"  # one of OUTCOMES
ERROR_TYPE = "error.type"  # one of ERROR_TYPES_V2
HW_ERROR_TYPE = "hw.error.type"  # one of ECC_KINDS_SYSFS
CPU_MODE = "cpu.mode"
CPU_LOGICAL_NUMBER = "cpu.logical_number"
MEMORY_STATE = "system.memory.state"
PAGING_STATE = "system.paging.state"
DEVICE_TYPE = "neuron.device.type"
CORE_VERSION = "neuron.core.version"
# neuron-monitor 2.x's neuron_hardware_info facts, on neuron.device.info when upstream gave them.
DEVICE_VERSION = "neuron.device.version"  # neuron_device_version ("v4")
DEVICE_MEMORY_SIZE = "neuron.device.memory.size"  # neuron_device_memory_size, bytes per device
LOGICAL_CORE_CONFIG = "neuron.core.logical_config"  # logical_neuroncore_config (Trn2's LNC: 1 or 2)
INSTANCE_TYPE = "host.type"
POWER_STATISTIC = "neuron.power.statistic"  # min | max | avg
POWER_STATUS = "neuron.power.status"  # valid | no_data | invalid
CORE_STATUS = "neuron.core.status"
CORE_COUNTER = "neuron.core.counter"
PHYSICAL_CORE = "neuron.core.physical"  # Trn2's v3d: a physical NeuronCore of a logical one ("nc_v3.0")
LATENCY_PERCENTILE = "neuron.latency.percentile"  # "p0" ... "p100", as upstream named it
# OpenTelemetry's stable Kubernetes attributes. The pod ones are on the points of a NeuronCore or device
# a container holds (--kubernetes); the node and cluster ones on the Resource.
K8S_POD_NAME = "k8s.pod.name"
K8S_NAMESPACE_NAME = "k8s.namespace.name"
K8S_CONTAINER_NAME = "k8s.container.name"
K8S_NODE_NAME = "k8s.node.name"
K8S_CLUSTER_NAME = "k8s.cluster.name"
# The environment variable the node name comes from: the OpenTelemetry Collector's (its k8snode
# detector's default), set from the downward API's spec.nodeName.
K8S_NODE_NAME_VARIABLE = "K8S_NODE_NAME"
# The report's instance_data (1.x) / instance_info (2.x) fields and the resource attribute each travels
# in (cloud.*/host.* where the conventions have one), in the report's order.
INSTANCE_RESOURCE_ATTRIBUTES = {
    "instance_name": "host.name",
    "instance_id": "host.id",
    "instance_type": "host.type",
    "instance_availability_zone": "cloud.availability_zone",
    "instance_availability_zone_id": "aws.ec2.availability_zone_id",
    "instance_region": "cloud.region",
    "ami_id": "host.image.id",
    "subnet_id": "aws.ec2.subnet_id",
    "error": "neuron.instance.error",
}

# --------------------------------------------------------------------------- instruments


class Kind(enum.Enum):
    """How an instrument's point value is to be read."""

    GAUGE = "gauge"  # a value over the period or at sample time (percentages, counts of things)
    COUNTER = "counter"  # monotonic; the point value is the increase over the period
    UPDOWN = "updowncounter"  # a current amount that goes up and down (bytes in use)
    HISTOGRAM = "histogram"  # the point value is a HistogramDelta over the period


@dataclass(frozen=True)
class InstrumentSpec:
    name: str
    unit: str
    description: str
    kind: Kind


# System groups.
CPU_UTILIZATION = InstrumentSpec(
    "system.cpu.utilization", "1", "Fraction of the period each vCPU spent in each mode", Kind.GAUGE
)
CONTEXT_SWITCHES = InstrumentSpec(
    "system.cpu.context_switches", "{context_switch}", "Context switches of all vCPUs", Kind.COUNTER
)
CPU_COUNT = InstrumentSpec("system.cpu.logical.count", "{cpu}", "Number of logical vCPUs", Kind.UPDOWN)
MEMORY_USAGE = InstrumentSpec(
    "system.memory.usage", "By", "Host memory in use (MemTotal - MemAvailable)", Kind.UPDOWN
)
MEMORY_LIMIT = InstrumentSpec("system.memory.limit", "By", "Total host memory (MemTotal)", Kind.UPDOWN)
PAGING_USAGE = InstrumentSpec("system.paging.usage", "By", "Swap space by state (used, free)", Kind.UPDOWN)
# A bridged neuron-monitor's own vcpu_usage.average_usage (its average need not be the mean of its
# per-vCPU percentages, which are rounded): passed through so the 2.x report writes it back as given.
CPU_AVERAGE_UTILIZATION = InstrumentSpec(
    "neuron.monitor.cpu.average_utilization",
    "1",
    "Fraction of the period all vCPUs together spent in each mode, as neuron-monitor reported it",
    Kind.GAUGE,
)

# Runtime groups.
CORE_UTILIZATION = InstrumentSpec(
    "neuron.core.utilization", "1", "Fraction of the period the NeuronCore was busy", Kind.GAUGE
)
CORE_SUBGRAPHS = InstrumentSpec(
    "neuron.core.subgraphs", "{subgraph}", "Model subgraphs loaded on the NeuronCore", Kind.UPDOWN
)
CORE_FLOPS = InstrumentSpec(
    "neuron.core.flops",
    "{flop}",
    "Floating-point operations of the NeuronCore (neuron-monitor 2.x)",
    Kind.GAUGE,
)
CORE_EFFECTIVE_FLOPS = InstrumentSpec(
    "neuron.core.effective_flops",
    "{flop}",
    "Effective floating-point operations of the NeuronCore (neuron-monitor 2.x)",
    Kind.GAUGE,
)
INFERENCE_COUNT = InstrumentSpec(
    "neuron.inference.count", "{inference}", "Inferences by outcome", Kind.COUNTER
)
INFERENCE_ERRORS = InstrumentSpec(
    "neuron.inference.errors", "{error}", "Inference errors by type", Kind.COUNTER
)
CORE_PHYSICAL_UTILIZATION = InstrumentSpec(
    "neuron.core.physical.utilization",
    "1",
    "Fraction of the period a physical NeuronCore of a logical one was busy (Trn2's v3d)",
    Kind.GAUGE,
)
INFERENCE_LATENCY = InstrumentSpec(
    "neuron.inference.latency", "s", "Latency of an inference as measured by the runtime", Kind.HISTOGRAM
)
DEVICE_LATENCY = InstrumentSpec(
    "neuron.inference.device.latency", "s", "Time an inference spent on the Neuron device", Kind.HISTOGRAM
)
# Percentiles exactly as neuron-monitor reported them (the bridge only): passed through rather than
# re-derived from a histogram, and only those upstream gave.
INFERENCE_LATENCY_PERCENTILE = InstrumentSpec(
    "neuron.inference.latency.percentile",
    "s",
    "Inference latency percentile as reported upstream",
    Kind.GAUGE,
)
DEVICE_LATENCY_PERCENTILE = InstrumentSpec(
    "neuron.inference.device.latency.percentile",
    "s",
    "Device latency percentile as reported upstream",
    Kind.GAUGE,
)
RUNTIME_MEMORY = InstrumentSpec(
    "neuron.runtime.memory.usage", "By", "Memory used by the runtime", Kind.UPDOWN
)
HOST_MEMORY_BY_CATEGORY = InstrumentSpec(
    "neuron.runtime.host_memory.usage", "By", "Host memory of the runtime by category", Kind.UPDOWN
)
CORE_MEMORY_BY_CATEGORY = InstrumentSpec(
    "neuron.core.memory.usage", "By", "Device memory of a NeuronCore by category", Kind.UPDOWN
)
MODEL_MEMORY = InstrumentSpec("neuron.model.memory.usage", "By", "Memory used by a loaded model", Kind.UPDOWN)
SUBGRAPH_MEMORY = InstrumentSpec(
    "neuron.subgraph.memory.usage", "By", "Memory used by a loaded model's subgraph", Kind.UPDOWN
)
SUBGRAPH_MEMORY_BY_CATEGORY = InstrumentSpec(
    "neuron.subgraph.memory.category.usage",
    "By",
    "Memory a loaded model's subgraph holds, by location and category",
    Kind.UPDOWN,
)
MODEL_RUNNING = InstrumentSpec(
    "neuron.model.running", "1", "1 if the loaded model is started, else 0", Kind.GAUGE
)
RUNTIME_CPU = InstrumentSpec(
    "neuron.runtime.cpu.utilization",
    "1",
    "Fraction of all vCPUs' time the runtime process spent in each mode over the period",
    Kind.GAUGE,
)
ECC_ERRORS = InstrumentSpec(
    "neuron.device.ecc.errors", "{error}", "ECC events of a Neuron device by type", Kind.COUNTER
)

# sysfs groups.
# The driver's high-water marks (`peak`) of the memory it counts, per device (host memory) and per
# NeuronCore (device memory), by category.
DEVICE_HOST_MEMORY_PEAK = InstrumentSpec(
    "neuron.device.host_memory.peak", "By", "Most host memory a Neuron device's category has held", Kind.GAUGE
)
CORE_MEMORY_PEAK = InstrumentSpec(
    "neuron.core.memory.peak", "By", "Most device memory a NeuronCore's category has held", Kind.GAUGE
)
DEVICE_INFO = InstrumentSpec(
    "neuron.device.info", "1", "1 per Neuron device, its facts as attributes", Kind.GAUGE
)
DEVICE_CORES = InstrumentSpec(
    "neuron.device.core.count", "{core}", "NeuronCores of a Neuron device", Kind.UPDOWN
)
POWER_UTILIZATION = InstrumentSpec(
    "neuron.device.power.utilization",
    "1",
    "Power use of a Neuron device as a fraction of its limit",
    Kind.GAUGE,
)
POWER_STATUS_GAUGE = InstrumentSpec(
    "neuron.device.power.status", "1", "1 for the status of the device's latest power reading", Kind.GAUGE
)
CORE_STATUS_COUNT = InstrumentSpec(
    "neuron.core.status.count", "{event}", "NeuronCore execution status counts by status", Kind.COUNTER
)
CORE_OTHER_COUNT = InstrumentSpec(
    "neuron.core.other_info.count",
    "{event}",
    "Other NeuronCore counters (flops, loads, resets)",
    Kind.COUNTER,
)

# Health of the monitor itself: every collected group adds a period and an error point.
GROUP_PERIOD = InstrumentSpec(
    "neuron.monitor.group.period",
    "s",
    "Actual seconds between this collection of a group and its previous one",
    Kind.GAUGE,
)
GROUP_ERROR = InstrumentSpec(
    "neuron.monitor.group.error",
    "1",
    "1 when the group's last collection failed (error.message says why)",
    Kind.GAUGE,
)
RUNTIME_ERROR = InstrumentSpec(
    "neuron.monitor.runtime.error",
    "1",
    "1 when the runtime could not be reached (error.message says why)",
    Kind.GAUGE,
)
# An application's own errors as neuron-monitor reported them (the bridge): the entry's `error`
# (no neuron.monitor.group attribute) and each of its groups' `error` (with it).
APPLICATION_ERROR = InstrumentSpec(
    "neuron.monitor.application.error",
    "1",
    "1 when neuron-monitor reported an error for the application or one of its groups (error.message)",
    Kind.GAUGE,
)
# --------------------------------------------------------------------------- sections

# The instruments each report section is made of, whichever source fills it, in the order the
# metrics appear. A neuron-monitor stream gives them all; what the monitor measures itself (a
# runtime endpoint, /proc) gives all but UPSTREAM_ONLY: figures only neuron-monitor computes.
# sysfs gives what the driver counts (groups/sysfs.py). The 1.x report shows subsets of them
# (report/section_table.py).
SECTION_INSTRUMENTS: dict[str, tuple[InstrumentSpec, ...]] = {
    NEURONCORE_COUNTERS: (
        CORE_UTILIZATION,
        CORE_SUBGRAPHS,
        CORE_FLOPS,
        CORE_EFFECTIVE_FLOPS,
        CORE_PHYSICAL_UTILIZATION,
    ),
    INFERENCE_STATS: (
        INFERENCE_COUNT,
        INFERENCE_ERRORS,
        INFERENCE_LATENCY,
        DEVICE_LATENCY,
        INFERENCE_LATENCY_PERCENTILE,
        DEVICE_LATENCY_PERCENTILE,
    ),
    MEMORY_USED: (
        RUNTIME_MEMORY,
        MODEL_MEMORY,
        MODEL_RUNNING,
        SUBGRAPH_MEMORY,
        HOST_MEMORY_BY_CATEGORY,
        CORE_MEMORY_BY_CATEGORY,
        SUBGRAPH_MEMORY_BY_CATEGORY,
    ),
    RUNTIME_VCPU_USAGE: (RUNTIME_CPU,),
    HW_COUNTERS: (ECC_ERRORS,),
    NEURON_HARDWARE_INFO: (DEVICE_INFO, DEVICE_CORES),
    NEURON_POWER: (POWER_UTILIZATION, POWER_STATUS_GAUGE),
    NEURONCORE_STATUS: (CORE_STATUS_COUNT, CORE_OTHER_COUNT),
    VCPU_USAGE: (CPU_UTILIZATION, CPU_AVERAGE_UTILIZATION, CONTEXT_SWITCHES, CPU_COUNT),
    MEMORY_INFO: (MEMORY_LIMIT, MEMORY_USAGE, PAGING_USAGE),
}
UPSTREAM_ONLY = frozenset(
    {
        CORE_EFFECTIVE_FLOPS,
        CORE_PHYSICAL_UTILIZATION,
        INFERENCE_LATENCY_PERCENTILE,
        DEVICE_LATENCY_PERCENTILE,
        CPU_AVERAGE_UTILIZATION,
    }
)


def measured_instruments(section: str) -> tuple[InstrumentSpec, ...]:
    """The section's instruments the monitor measures itself (from a runtime endpoint or /proc)."""
    return tuple(spec for spec in SECTION_INSTRUMENTS[section] if spec not in UPSTREAM_ONLY)


# Kubernetes (--kubernetes): who holds each NeuronCore and device, and how the kubelet's reads go.
K8S_ALLOCATION = InstrumentSpec(
    "neuron.k8s.allocation",
    "1",
    "1 when a Kubernetes container holds the NeuronCore or Neuron device (k8s.* attributes name it), "
    "0 when none does",
    Kind.GAUGE,
)
KUBELET_PERIOD = InstrumentSpec(
    "neuron.monitor.kubelet.period",
    "s",
    "Actual seconds between the two latest reads of the kubelet's PodResources",
    Kind.GAUGE,
)
KUBELET_ERROR = InstrumentSpec(
    "neuron.monitor.kubelet.error",
    "1",
    "1 when the latest read of the kubelet's PodResources failed (error.message says why)",
    Kind.GAUGE,
)
