"""deploy/kubernetes: every kustomization renders (`kubectl kustomize`), every object is valid against
Kubernetes' own schemas (kubernetes-validate, strict, offline), and the DaemonSet keeps the promises
docs/kubernetes.md makes: Neuron nodes only, read-only host mounts, no privilege in the default."""

from __future__ import annotations

import posixpath
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from otel_neuron.cli import parse_arguments
from otel_neuron.config import parse_config
from otel_neuron.exporters.otlp import normalize_endpoint, otlp_protocol, otlp_requested
from otel_neuron.exporters.prometheus import parse_listen_address
from otel_neuron.resource import build_resource
from otel_neuron.sources.instance import InstanceFacts

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
DEFAULT = "."
OTLP = "overlays/otlp"
SERVICE_MONITOR = "overlays/servicemonitor"
BRIDGE = "overlays/neuron-monitor-bridge"
UNPRIVILEGED = (DEFAULT, OTLP, SERVICE_MONITOR)
ALL = (*UNPRIVILEGED, BRIDGE)
# The oldest Kubernetes minor version EKS still supports that kubernetes-validate ships schemas for.
KUBERNETES_VERSION = "1.32.0"
# Kinds defined by CustomResourceDefinitions: Kubernetes has no schema for them.
CRD_KINDS = {"ServiceMonitor"}
NEURON_FAMILIES = ("inf1", "inf2", "trn1", "trn1n", "trn2", "trn3")
NAMESPACE = "otel-neuron"

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not installed: cannot render deploy/kubernetes with `kubectl kustomize`",
)


@cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / kustomization)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"kubectl kustomize {kustomization}: {done.stderr.strip()}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def only(kustomization: str, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in render(kustomization) if doc["kind"] == kind]
    return found


def pod_spec(kustomization: str) -> dict[str, Any]:
    spec: dict[str, Any] = only(kustomization, "DaemonSet")["spec"]["template"]["spec"]
    return spec


def container(kustomization: str) -> dict[str, Any]:
    (monitor,) = pod_spec(kustomization)["containers"]
    return dict(monitor)


def host_mounts(kustomization: str) -> dict[str, dict[str, Any]]:
    """Host path -> the container's mount of it."""
    volumes = {v["name"]: v for v in pod_spec(kustomization)["volumes"]}
    return {
        volumes[m["name"]]["hostPath"]["path"]: m
        for m in container(kustomization)["volumeMounts"]
        if "hostPath" in volumes[m["name"]]
    }


def env(kustomization: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(kustomization)["env"]}


def option(kustomization: str, name: str) -> str:
    (value,) = [a.partition("=")[2] for a in container(kustomization)["args"] if a.startswith(f"{name}=")]
    return value


def under(path: str, directory: str) -> bool:
    return posixpath.commonpath([posixpath.normpath(path), directory]) == directory


@pytest.mark.parametrize("kustomization", ALL)
def test_every_object_is_valid_kubernetes_in_strict_mode(kustomization: str) -> None:
    problems = []
    for doc in render(kustomization):
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {error.message}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kustomization", ALL)
def test_one_apply_installs_namespace_account_daemonset_service(kustomization: str) -> None:
    kinds = sorted(doc["kind"] for doc in render(kustomization))
    extra = ["ServiceMonitor"] if kustomization == SERVICE_MONITOR else []
    assert kinds == sorted(["Namespace", "ServiceAccount", "ConfigMap", "DaemonSet", "Service", *extra])
    for doc in render(kustomization):
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
    assert (
        pod_spec(kustomization)["serviceAccountName"]
        == only(kustomization, "ServiceAccount")["metadata"]["name"]
    )


@pytest.mark.parametrize("kustomization", ALL)
def test_scheduled_only_on_neuron_nodes_tolerating_their_taint(kustomization: str) -> None:
    spec = pod_spec(kustomization)
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    allowed: dict[str, set[str]] = {}
    for term in terms:
        (expression,) = term["matchExpressions"]
        assert expression["operator"] == "In"
        allowed.setdefault(expression["key"], set()).update(expression["values"])
    instance_types = allowed["node.kubernetes.io/instance-type"]
    assert all(t.split(".")[0] in (*NEURON_FAMILIES, "trn2u") for t in instance_types), instance_types
    for family in NEURON_FAMILIES:
        assert any(t.startswith(f"{family}.") for t in instance_types), family
        assert family in allowed["karpenter.k8s.aws/instance-family"]
    assert {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]


@pytest.mark.parametrize("kustomization", ALL)
def test_host_proc_sys_and_pod_resources_are_mounted_read_only(kustomization: str) -> None:
    mounts = host_mounts(kustomization)
    assert {"/proc", "/sys", "/var/lib/kubelet/pod-resources"} <= set(mounts)
    assert all(m.get("readOnly") is True for m in mounts.values()), mounts
    writable = [m["mountPath"] for m in container(kustomization)["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/tmp"]  # an in-memory emptyDir: the root filesystem is read-only

    variables = env(kustomization)
    assert variables["OTEL_NEURON_PROCFS_PATH"]["value"] == mounts["/proc"]["mountPath"]
    socket = option(kustomization, "--kubernetes")
    assert posixpath.basename(socket) == "kubelet.sock"
    assert posixpath.dirname(socket) == mounts["/var/lib/kubelet/pod-resources"]["mountPath"]


@pytest.mark.parametrize("kustomization", UNPRIVILEGED)
def test_the_default_container_has_no_privilege(kustomization: str) -> None:
    security = container(kustomization)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security.get("capabilities", {}).get("add")
    assert security.get("privileged", False) is False
    spec = pod_spec(kustomization)
    assert not spec.get("hostPID") and not spec.get("hostNetwork") and not spec.get("hostIPC")
    assert spec["automountServiceAccountToken"] is False


def test_the_bridge_overlay_alone_is_privileged_and_gets_neuron_monitor() -> None:
    security = container(BRIDGE)["securityContext"]
    assert security["privileged"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert pod_spec(BRIDGE)["hostPID"] is True
    assert host_mounts(BRIDGE)["/opt/aws/neuron"]["readOnly"] is True
    assert "aws.amazon.com/neuron" not in container(BRIDGE)["resources"].get("requests", {})


@pytest.mark.parametrize("kustomization", ALL)
def test_the_configuration_is_valid_and_reads_what_is_mounted(kustomization: str) -> None:
    config_map = only(kustomization, "ConfigMap")
    volumes = {v["name"]: v for v in pod_spec(kustomization)["volumes"]}
    (config_volume,) = [v for v in volumes.values() if "configMap" in v]
    assert config_volume["configMap"]["name"] == config_map["metadata"]["name"]
    (config_mount,) = [
        m for m in container(kustomization)["volumeMounts"] if m["name"] == config_volume["name"]
    ]
    config_path = option(kustomization, "--config-file")
    assert posixpath.dirname(config_path) == config_mount["mountPath"]

    config = parse_config(
        config_map["data"][posixpath.basename(config_path)], f"{kustomization}: monitor.conf"
    )
    mounts = host_mounts(kustomization)
    for runtime in config.runtimes:
        if runtime.address.startswith("sysfs:"):
            root = runtime.address.removeprefix("sysfs:")
            assert under(root, mounts["/sys"]["mountPath"]), runtime.address
        elif runtime.address.startswith("neuron-monitor:"):
            binary = runtime.address.removeprefix("neuron-monitor:").partition("?")[0]
            assert under(binary, mounts["/opt/aws/neuron"]["mountPath"]), runtime.address
        else:
            pytest.fail(f"{kustomization}: unexpected runtime address {runtime.address!r}")


@pytest.mark.parametrize("kustomization", ALL)
def test_prometheus_scrapes_the_port_the_monitor_serves(kustomization: str) -> None:
    host, port = parse_listen_address(option(kustomization, "--prometheus"))
    assert host == "0.0.0.0"
    (container_port,) = container(kustomization)["ports"]
    assert container_port["containerPort"] == port
    service = only(kustomization, "Service")
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == container_port["name"]
    template_labels = only(kustomization, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()


def test_the_service_monitor_selects_the_service_and_keeps_the_workload_labels() -> None:
    monitor = only(SERVICE_MONITOR, "ServiceMonitor")
    service = only(SERVICE_MONITOR, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True


@pytest.mark.parametrize("kustomization", ALL)
def test_the_node_name_reaches_the_resource(kustomization: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the DaemonSet sets, the node's name filled in as the kubelet would, give the
    monitor's Resource k8s.node.name."""
    for name in ("OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "K8S_NODE_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, variable in env(kustomization).items():
        if variable.get("valueFrom") == {"fieldRef": {"fieldPath": "spec.nodeName"}}:
            monkeypatch.setenv(name, "ip-10-0-1-17.us-west-2.compute.internal")
        elif "value" in variable:
            monkeypatch.setenv(name, variable["value"])
    resource = build_resource(InstanceFacts(error="not looked up"))
    assert resource.attributes["k8s.node.name"] == "ip-10-0-1-17.us-west-2.compute.internal"


def test_the_otlp_overlay_sends_to_a_collector() -> None:
    variables = {name: e["value"] for name, e in env(OTLP).items() if "value" in e}
    assert otlp_requested(False, variables)
    assert normalize_endpoint(variables["OTEL_EXPORTER_OTLP_ENDPOINT"], otlp_protocol(variables))
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env(DEFAULT)


@pytest.mark.parametrize("kustomization", ALL)
def test_the_monitor_accepts_the_daemonsets_arguments(kustomization: str) -> None:
    args = parse_arguments(container(kustomization)["args"])
    assert args.kubernetes == "/var/lib/kubelet/pod-resources/kubelet.sock"
