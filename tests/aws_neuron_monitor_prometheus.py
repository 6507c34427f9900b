"""What AWS's neuron-monitor-prometheus.py does with each report, ported so a test can feed it ours.

The script ships only in the aws-neuronx-tools package; its `process_*` functions are reproduced
below from the public copies quoted in /tmp/research/neuron-monitor-2x.md section 3.2 (Neuron 2.18+
era: `neuron_hardware_info` and `sram_ecc_corrected` handled). Every read of a report is kept as the
script makes it, so a missing key raises KeyError, a null where an object goes TypeError, and a
negative count ValueError, exactly where the script would die (its loop has no try around
`process_data`). Two things differ, neither touching a read: the metrics go to a registry of our
own rather than prometheus_client's global one, and the two stderr messages are collected in
`errors` rather than printed.
"""

# ruff: noqa: UP032  (str.format kept as the script writes it)

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest


class NeuronMonitorPrometheus:
    """One running script: labels frozen from the first report, metric objects kept across reports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metric_objects: dict[str, Any] = {}
        self.instance_labels: dict[str, str] | None = None
        self.errors: list[str] = []

    def read(self, monitor_data: dict[str, Any]) -> None:
        """The script's update_loop body for one decoded line."""
        if self.instance_labels is None:
            self.instance_labels = get_instance_labels(monitor_data["instance_info"])
        self._process_data(self.metric_objects, monitor_data, self.instance_labels)

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()

    # -- process_data and process_report_entries, verbatim but for the registry and stderr

    def _process_data(
        self, metric_objects: dict[str, Any], monitor_data: dict[str, Any], instance_info: dict[str, str]
    ) -> None:
        if monitor_data.get("neuron_runtime_data", []):
            for runtime in monitor_data["neuron_runtime_data"]:
                runtime_tag = runtime["neuron_runtime_tag"]

                if runtime["error"] != "":
                    self.errors.append("Runtime {} error: {}".format(runtime_tag, runtime["error"]))
                    continue

                self._process_report_entries(
                    metric_objects,
                    runtime["report"],
                    get_runtime_labels(instance_info, runtime_tag),
                    runtime_tag,
                )
        else:  # Reset gauges if no nueron_runtime is running
            clear_gauges_from_metric_objects(metric_objects)

        if monitor_data["system_data"] is not None:
            self._process_report_entries(metric_objects, monitor_data["system_data"], instance_info)
        self._process_instance_info(metric_objects, instance_info)
        if monitor_data["neuron_hardware_info"] is not None:
            self._process_neuron_hardware_info(
                metric_objects, monitor_data["neuron_hardware_info"], instance_info
            )

    def _process_report_entries(
        self,
        metric_objects: dict[str, Any],
        report_entries: dict[str, Any],
        labels: dict[str, Any],
        runtime_tag: Any = None,
    ) -> None:
        for metric_group_name, metric_group_data in report_entries.items():
            handler = self._handlers().get("process_{}".format(metric_group_name))
            if handler is not None:
                crt_error = metric_group_data["error"]
                if crt_error == "":
                    if metric_group_name not in metric_objects:
                        metric_objects[metric_group_name] = {}
                    metric_group_object = metric_objects[metric_group_name]
                    handler(metric_group_object, metric_group_data, labels.copy())
                elif runtime_tag is not None:
                    self.errors.append(
                        "Error getting {} for runtime tag {}: {}".format(
                            metric_group_name, runtime_tag, crt_error
                        )
                    )
                else:
                    self.errors.append("Error getting {}: {}".format(metric_group_name, crt_error))

    def _handlers(self) -> dict[str, Callable[[dict[str, Any], Any, dict[str, Any]], None]]:
        return {
            "process_neuroncore_counters": self.process_neuroncore_counters,
            "process_neuron_runtime_vcpu_usage": self.process_neuron_runtime_vcpu_usage,
            "process_memory_used": self.process_memory_used,
            "process_execution_stats": self.process_execution_stats,
            "process_neuron_hw_counters": self.process_neuron_hw_counters,
            "process_vcpu_usage": self.process_vcpu_usage,
            "process_memory_info": self.process_memory_info,
        }

    def _gauge(self, name: str, documentation: str, labelnames: Any) -> Gauge:
        return Gauge(name, documentation, labelnames, registry=self.registry)

    def _counter(self, name: str, documentation: str, labelnames: Any) -> Counter:
        return Counter(name, documentation, labelnames, registry=self.registry)

    # -- the handlers, verbatim but for the registry

    def process_neuroncore_counters(
        self, group_obj: dict[str, Any], data: Any, labels: dict[str, Any]
    ) -> None:
        gauge_name = "neuroncore_utilization_ratio"
        labels["neuroncore"] = None
        if gauge_name not in group_obj:
            group_obj[gauge_name] = self._gauge(gauge_name, "NeuronCore utilization ratio", labels.keys())
        for nc_idx, nc_data in data["neuroncores_in_use"].items():
            labels["neuroncore"] = int(nc_idx)
            group_obj[gauge_name].labels(**labels).set(nc_data["neuroncore_utilization"] / 100.0)

    def process_neuron_runtime_vcpu_usage(
        self, group_obj: dict[str, Any], data: Any, labels: dict[str, Any]
    ) -> None:
        gauge_name = "neuron_runtime_vcpu_usage_ratio"
        labels["usage_type"] = None
        if gauge_name not in group_obj:
            group_obj[gauge_name] = self._gauge(gauge_name, "Runtime vCPU utilization ratio", labels.keys())
        cpu_usage_fields = ["user", "system"]
        for field in cpu_usage_fields:
            labels["usage_type"] = field
            group_obj[gauge_name].labels(**labels).set(data["vcpu_usage"][field] / 100.0)

    def process_memory_used(self, group_obj: dict[str, Any], data: Any, labels: dict[str, Any]) -> None:
        gauge_name = "neuron_runtime_memory_used_bytes"
        labels["memory_location"] = None
        if gauge_name not in group_obj:
            group_obj[gauge_name] = self._gauge(gauge_name, "Runtime memory used bytes", labels.keys())
        mem_locations = ["host", "neuron_device"]
        for mem_location_type in mem_locations:
            labels["memory_location"] = mem_location_type
            group_obj[gauge_name].labels(**labels).set(data["neuron_runtime_used_bytes"][mem_location_type])

        gauge_name_prefix = "neuroncore_memory_usage_{}"
        labels["neuroncore"] = None
        labels["memory_location"] = None
        neuroncore_memory_usage_type = [
            "constants",
            "model_code",
            "model_shared_scratchpad",
            "runtime_memory",
            "tensors",
        ]
        for memory_usage_type in neuroncore_memory_usage_type:
            gauge_name = gauge_name_prefix.format(memory_usage_type)
            if gauge_name not in group_obj:
                group_obj[gauge_name] = self._gauge(
                    gauge_name,
                    "NeuronCore memory utilization for {}".format(memory_usage_type),
                    labels.keys(),
                )
            breakdown = data["neuron_runtime_used_bytes"]["usage_breakdown"]["neuroncore_memory_usage"]
            for nc_idx, nc_data in breakdown.items():
                labels["neuroncore"] = int(nc_idx)
                group_obj[gauge_name].labels(**labels).set(nc_data[memory_usage_type])

    def process_execution_stats(self, group_obj: dict[str, Any], data: Any, labels: dict[str, Any]) -> None:
        counter_name = "execution_errors_total"
        err_labels = labels.copy()
        err_labels["error_type"] = None
        if counter_name not in group_obj:
            group_obj[counter_name] = self._counter(counter_name, "Execution errors total", err_labels.keys())
        error_summary = data["error_summary"]
        for error_type in error_summary:
            err_labels["error_type"] = error_type
            group_obj[counter_name].labels(**err_labels).inc(error_summary[error_type])

        counter_name = "execution_status_total"
        status_labels = labels.copy()
        status_labels["status_type"] = None
        if counter_name not in group_obj:
            group_obj[counter_name] = self._counter(
                counter_name, "Execution status total", status_labels.keys()
            )
        execution_summary = data["execution_summary"]
        for execution_outcome in execution_summary:
            status_labels["status_type"] = execution_outcome
            group_obj[counter_name].labels(**status_labels).inc(execution_summary[execution_outcome])

        gauge_name = "execution_latency_seconds"
        latency_labels = labels.copy()
        latency_labels["percentile"] = None
        if gauge_name not in group_obj:
            group_obj[gauge_name] = self._gauge(
                gauge_name, "Execution latency in seconds", latency_labels.keys()
            )
        latency_stats = data["latency_stats"]
        if latency_stats["total_latency"] is not None:
            for percentile in latency_stats["total_latency"]:
                latency_labels["percentile"] = percentile
                group_obj[gauge_name].labels(**latency_labels).set(latency_stats["total_latency"][percentile])

    def process_neuron_hw_counters(
        self, group_obj: dict[str, Any], data: Any, labels: dict[str, Any]
    ) -> None:
        counter_name = "hardware_ecc_events_total"
        labels["event_type"] = None
        labels["neuron_device_index"] = None
        if counter_name not in group_obj:
            group_obj[counter_name] = self._counter(counter_name, "Hardware ecc events total", labels.keys())
        hw_counters = [
            "mem_ecc_corrected",
            "mem_ecc_uncorrected",
            "sram_ecc_corrected",
            "sram_ecc_uncorrected",
        ]
        for device in data["neuron_devices"]:
            for counter in hw_counters:
                labels["event_type"] = counter
                labels["neuron_device_index"] = device["neuron_device_index"]
                group_obj[counter_name].labels(**labels).inc(device[counter])

    def process_vcpu_usage(self, group_obj: dict[str, Any], data: Any, labels: dict[str, Any]) -> None:
        cpu_usage_aggregation = {"user": ["user", "nice"], "system": ["system", "io_wait", "irq", "soft_irq"]}
        gauge_name = "system_vcpu_count"
        if gauge_name not in group_obj:
            group_obj[gauge_name] = self._gauge(gauge_name, "System vCPU count", labels.keys())
        group_obj[gauge_name].labels(**labels).set(len(data["usage_data"]))

        labels["usage_type"] = None
        gauge_name = "system_vcpu_usage_ratio"
        if gauge_name not in group_obj:
            group_obj[gauge_name] = self._gauge(gauge_name, "System CPU utilization ratio", labels.keys())
        for field, aggregated in cpu_usage_aggregation.items():
            aggregate_value = sum([data["average_usage"][item] for item in aggregated])
            aggregate_value = min(aggregate_value, 100.0)
            labels["usage_type"] = field
            group_obj[gauge_name].labels(**labels).set(aggregate_value / 100.0)

    def process_memory_info(self, group_obj: dict[str, Any], data: Any, labels: dict[str, Any]) -> None:
        for entries in [("memory", "system_memory"), ("swap", "system_swap")]:
            for stat in ["total_bytes", "used_bytes"]:
                gauge_name = "{}_{}".format(entries[1], stat)
                if gauge_name not in group_obj:
                    group_obj[gauge_name] = self._gauge(
                        gauge_name, "System {} {} bytes".format(entries[0], stat), labels.keys()
                    )
                src_entry = "{}_{}".format(entries[0], stat)
                group_obj[gauge_name].labels(**labels).set(data[src_entry])

    def _process_neuron_hardware_info(
        self, metric_objects: dict[str, Any], data: Any, instance_data: dict[str, str]
    ) -> None:
        if "neuron_hardware_info" not in metric_objects:
            neuron_labels = {
                "neuron_device_count": str(data["neuron_device_count"]),
                "neuroncore_per_device_count": str(data["neuroncore_per_device_count"]),
            }
            neuron_labels.update(instance_data)

            metric_objects["neuron_hardware_info"] = Info(
                "neuron_hardware", "Neuron Hardware Information", registry=self.registry
            )
            metric_objects["neuron_hardware_info"].info(neuron_labels)

    def _process_instance_info(self, metric_objects: dict[str, Any], instance_data: dict[str, str]) -> None:
        if "instance_info" not in metric_objects:
            metric_objects["instance_info"] = Info(
                "instance", "EC2 instance information", registry=self.registry
            )
            metric_objects["instance_info"].info(instance_data)


def get_instance_labels(instance_info: dict[str, Any]) -> dict[str, str]:
    instance_labels = {
        "instance_name": instance_info["instance_name"],
        "instance_id": instance_info["instance_id"],
        "instance_type": instance_info["instance_type"],
        "availability_zone": instance_info["instance_availability_zone"],
        "region": instance_info["instance_region"],
        "subnet_id": instance_info["subnet_id"],
    }
    return instance_labels


def get_runtime_labels(instance_info: dict[str, Any], runtime_tag: Any) -> dict[str, Any]:
    label_dict = instance_info.copy()
    label_dict["runtime_tag"] = runtime_tag
    return label_dict


def clear_gauges_from_metric_objects(all_metric_objects: dict[str, Any]) -> None:
    for _, metric_grouped_objects in all_metric_objects.items():
        if isinstance(metric_grouped_objects, dict):
            for _, metrics in metric_grouped_objects.items():
                if metrics._type == "gauge" or metrics._type == "counter":
                    metrics._metrics.clear()
