"""The instance facts become the OpenTelemetry Resource; the environment overrides it."""

from __future__ import annotations

import pytest
from guide_example import GUIDE_FACTS

from otel_neuron.resource import build_resource
from otel_neuron.sources.instance import InstanceFacts, facts_from_resource

FACTS = GUIDE_FACTS


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "K8S_NODE_NAME"):
        monkeypatch.delenv(name, raising=False)


def test_ec2_facts_become_the_semantic_convention_attributes() -> None:
    attributes = build_resource(FACTS).attributes
    assert {key: attributes.get(key) for key in EXPECTED} == EXPECTED


EXPECTED = {
    "service.name": "otel-neuron-monitor",
    "cloud.provider": "aws",
    "cloud.platform": "aws_ec2",
    "cloud.region": "us-west-2",
    "cloud.availability_zone": "us-west-2b",
    "host.id": "i-0011223344556677a",
    "host.type": "inf1.xlarge",
    "host.image.id": "ami-0011223344556677b",
    "host.name": "My_Instance",
}


def test_the_resource_alone_gives_back_every_fact() -> None:
    assert facts_from_resource(build_resource(FACTS).attributes) == FACTS


def test_off_ec2_there_is_no_cloud_provider_and_the_error_travels() -> None:
    facts = InstanceFacts(error="not an EC2 instance")
    attributes = build_resource(facts).attributes
    assert "cloud.provider" not in attributes and "host.id" not in attributes
    assert facts_from_resource(attributes) == facts


def test_otel_service_name_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "inference-fleet")
    assert build_resource(FACTS).attributes["service.name"] == "inference-fleet"


def test_otel_resource_attributes_override_the_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=renamed,deployment.environment=prod")
    attributes = build_resource(FACTS).attributes
    assert (attributes["host.name"], attributes["deployment.environment"]) == ("renamed", "prod")
    assert attributes["host.id"] == "i-0011223344556677a"


def test_the_kubernetes_node_comes_from_k8s_node_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "k8s.node.name" not in build_resource(FACTS).attributes
    monkeypatch.setenv("K8S_NODE_NAME", "ip-10-0-1-17.us-west-2.compute.internal")
    attributes = build_resource(FACTS).attributes
    assert attributes["k8s.node.name"] == "ip-10-0-1-17.us-west-2.compute.internal"
    assert attributes["host.id"] == "i-0011223344556677a"
    monkeypatch.setenv("K8S_NODE_NAME", "  ")
    assert "k8s.node.name" not in build_resource(FACTS).attributes


def test_otel_resource_attributes_name_the_cluster_and_override_the_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("K8S_NODE_NAME", "from-the-downward-api")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=inference-prod,k8s.node.name=given")
    attributes = build_resource(FACTS).attributes
    assert (attributes["k8s.cluster.name"], attributes["k8s.node.name"]) == ("inference-prod", "given")
