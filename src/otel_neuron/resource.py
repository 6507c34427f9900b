"""The monitor's OpenTelemetry Resource: instance facts and service.name, overridable by the environment."""

from __future__ import annotations

from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from otel_neuron.sources.instance import InstanceFacts, InstanceLookup, resource_attributes

DEFAULT_SERVICE_NAME = "otel-neuron-monitor"


def build_resource(facts: InstanceFacts) -> Resource:
    """SDK defaults < our service name and instance facts < OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME."""
    ours = Resource({"service.name": DEFAULT_SERVICE_NAME, **resource_attributes(facts)})
    return Resource.create({}).merge(ours).merge(OTELResourceDetector().detect())


class LookupResource:
    """The Resource as an instance lookup stands, called at each report: built again only when the
    lookup's facts change (from "in progress" to its outcome, once)."""

    def __init__(self, lookup: InstanceLookup) -> None:
        self._lookup = lookup
        self._facts = lookup.facts()
        self._resource = build_resource(self._facts)

    def __call__(self) -> Resource:
        facts = self._lookup.facts()
        if facts is not self._facts:
            self._facts, self._resource = facts, build_resource(facts)
        return self._resource
