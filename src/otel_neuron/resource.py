"""The monitor's OpenTelemetry Resource: instance facts, the Kubernetes node and service.name,
overridable by the environment."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from otel_neuron.semconv import K8S_NODE_NAME, K8S_NODE_NAME_VARIABLE
from otel_neuron.sources.instance import (
    InstanceFacts,
    InstanceLookup,
    facts_from_report,
    lookup_failed,
    resource_attributes,
)

DEFAULT_SERVICE_NAME = "otel-neuron-monitor"


def build_resource(facts: InstanceFacts, environ: Mapping[str, str] | None = None) -> Resource:
    """SDK defaults < our service name, instance facts and node < OTEL_RESOURCE_ATTRIBUTES /
    OTEL_SERVICE_NAME. The node is `K8S_NODE_NAME` when set (the variable the OpenTelemetry
    Collector reads the node name from, given by the downward API's spec.nodeName)."""
    ours = Resource(
        {"service.name": DEFAULT_SERVICE_NAME, **resource_attributes(facts), **node_attributes(environ)}
    )
    return Resource.create({}).merge(ours).merge(OTELResourceDetector().detect())


def node_attributes(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """k8s.node.name from K8S_NODE_NAME, when it is set and not blank."""
    node = (os.environ if environ is None else environ).get(K8S_NODE_NAME_VARIABLE, "").strip()
    return {K8S_NODE_NAME: node} if node else {}


class LookupResource:
    """The Resource as an instance lookup stands, called at each report: built again only when the
    facts change (from "in progress" to the lookup's outcome, once).

    `stream_facts` gives the instance facts a bridged neuron-monitor wrote (its latest report's
    instance_info fields; {} while none did). They are this host's too, so they stand in when the
    lookup is over and found no instance (--imds off, not EC2, IMDS failed); the lookup's own
    facts win whenever it found the instance.
    """

    def __init__(
        self, lookup: InstanceLookup, stream_facts: Callable[[], Mapping[str, str]] | None = None
    ) -> None:
        self._lookup = lookup
        self._stream_facts = stream_facts
        self._given: Mapping[str, str] = {}
        self._given_facts = InstanceFacts()
        self._facts = self._current_facts()
        self._resource = build_resource(self._facts)

    def __call__(self) -> Resource:
        facts = self._current_facts()
        if facts != self._facts:
            self._facts, self._resource = facts, build_resource(facts)
        return self._resource

    def _current_facts(self) -> InstanceFacts:
        facts = self._lookup.facts()
        if self._stream_facts is None or not lookup_failed(facts):
            return facts
        given = self._stream_facts()
        if not given:
            return facts
        if given is not self._given:  # a new report's: read once
            self._given, self._given_facts = given, facts_from_report(given)
        return self._given_facts
