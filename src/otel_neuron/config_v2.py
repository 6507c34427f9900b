"""Accept neuron-monitor 2.x configuration files by mapping them onto the 1.x form.

    document = config_v2_to_v1(json.loads(text))          # then validate as usual

neuron-monitor 2.x discovers the Neuron applications on the host itself, so its runtime entries
carry a `tag_filter` (a regular expression over each application's tag) instead of an `address`;
it renamed `inference_stats` to `execution_stats`; and it made the ECC counters a system group,
`neuron_hw_counters`. otel-neuron sees 2.x applications through AWS's neuron-monitor, so:

- `neuron_runtimes[i].tag_filter: RE` -> `neuron_runtimes[i].address: "<source>?tag_filter=RE"`;
- metric `execution_stats` -> metric `inference_stats`;
- `system_metrics[] {type: neuron_hw_counters, period: P}` -> an extra, last runtime
  `{address: <hw source>, metrics: [{type: hw_counters, period: P}]}`;
- everything else (periods, the other metric types, vcpu_usage, memory_info) is unchanged.

`<source>` is `neuron-monitor:` (run /opt/aws/neuron/bin/neuron-monitor) or `stdin:` with
`--from-stdin`; the hw source defaults to the same (neuron-monitor 2.x reports the ECC counts),
or `sysfs:` to read them from the driver. Runtime indexes of the 2.x entries are kept; the ECC
entry comes last. A document that is not in the 2.x form is returned unchanged.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

V2_RUNTIME_RENAMES = {"execution_stats": "inference_stats"}
V2_SYSTEM_HW = "neuron_hw_counters"


def is_v2_config(document: Any) -> bool:
    """True when the document uses any 2.x-only form."""
    if not isinstance(document, dict):
        return False
    for runtime in _list(document.get("neuron_runtimes")):
        if isinstance(runtime, dict):
            if "tag_filter" in runtime:
                return True
            if any(_type(metric) in V2_RUNTIME_RENAMES for metric in _list(runtime.get("metrics"))):
                return True
    return any(_type(metric) == V2_SYSTEM_HW for metric in _list(document.get("system_metrics")))


def config_v2_to_v1(document: Any, source: str = "neuron-monitor:", hw_source: str | None = None) -> Any:
    """The 1.x form of a 2.x configuration document (a new object; the input is not changed).

    Pure: no I/O. Anything it does not recognise is passed through for the 1.x validation to
    report with its JSON path.
    """
    if not is_v2_config(document):
        return document
    result = copy.deepcopy(document)
    runtimes = result.get("neuron_runtimes")
    if isinstance(runtimes, list):
        for runtime in runtimes:
            if not isinstance(runtime, dict):
                continue
            if "tag_filter" in runtime:
                tag_filter = runtime.pop("tag_filter")
                if "address" not in runtime and isinstance(tag_filter, str):
                    runtime["address"] = _with_tag_filter(source, tag_filter)
            for metric in _list(runtime.get("metrics")):
                if isinstance(metric, dict) and _type(metric) in V2_RUNTIME_RENAMES:
                    metric["type"] = V2_RUNTIME_RENAMES[metric["type"]]
    system = result.get("system_metrics")
    if isinstance(system, list):
        hw = [metric for metric in system if _type(metric) == V2_SYSTEM_HW]
        if hw:
            result["system_metrics"] = [metric for metric in system if _type(metric) != V2_SYSTEM_HW]
            group: dict[str, Any] = {"type": "hw_counters"}
            if isinstance(hw[0], dict) and "period" in hw[0]:
                group["period"] = hw[0]["period"]
            if not isinstance(runtimes, list):
                runtimes = result["neuron_runtimes"] = []
            runtimes.append({"address": hw_source or source, "metrics": [group]})
    return result


def _with_tag_filter(source: str, tag_filter: str) -> str:
    separator = "&" if "?" in source else "?"
    return f"{source}{separator}tag_filter={quote(tag_filter, safe='')}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _type(metric: Any) -> Any:
    return metric.get("type") if isinstance(metric, dict) else None
