"""The report's instance facts (1.x instance_data, 2.x instance_info), read back from the Resource."""

from __future__ import annotations

from collections.abc import Mapping

from otel_neuron.semconv import INSTANCE_RESOURCE_ATTRIBUTES


def instance_facts(resource_attributes: Mapping[str, object]) -> dict[str, str]:
    """Every instance field, in the report's order; a fact the resource does not hold is ""."""
    return {key: str(resource_attributes.get(name, "")) for key, name in INSTANCE_RESOURCE_ATTRIBUTES.items()}
