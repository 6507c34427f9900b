"""The monitor's OpenTelemetry Resource: instance facts and service.name, overridable by the environment."""

from __future__ import annotations

from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from otel_neuron.sources.instance import InstanceFacts, resource_attributes

DEFAULT_SERVICE_NAME = "otel-neuron-monitor"


def build_resource(facts: InstanceFacts) -> Resource:
    """SDK defaults < our service name and instance facts < OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME."""
    ours = Resource({"service.name": DEFAULT_SERVICE_NAME, **resource_attributes(facts)})
    return Resource.create({}).merge(ours).merge(OTELResourceDetector().detect())
