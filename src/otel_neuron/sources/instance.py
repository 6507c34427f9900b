"""The instance facts of the report's instance_data, from EC2's instance metadata service (IMDSv2).

IMDS is contacted only when local evidence says this is EC2 (DMI vendor or the Xen hypervisor
UUID), or when forced; anywhere else nothing is sent and `error` says why. Fetched once at start-up.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

DEFAULT_ENDPOINT = "http://169.254.169.254"
TIMEOUT_S = 1.0
_TOKEN_TTL_S = "60"
_DMI_FILES = ("class/dmi/id/sys_vendor", "class/dmi/id/board_vendor")


@dataclass(frozen=True)
class InstanceFacts:
    instance_name: str = ""
    instance_id: str = ""
    instance_type: str = ""
    instance_availability_zone: str = ""
    instance_availability_zone_id: str = ""
    instance_region: str = ""
    ami_id: str = ""
    subnet_id: str = ""
    error: str = ""

    def as_report(self) -> dict[str, str]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


# instance_data field <-> OpenTelemetry resource attribute (cloud.*/host.* where the conventions have one).
RESOURCE_ATTRIBUTE = {
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


def resource_attributes(facts: InstanceFacts) -> dict[str, str]:
    """The non-empty facts as resource attributes; cloud.provider/platform when on EC2."""
    attributes = {RESOURCE_ATTRIBUTE[k]: v for k, v in facts.as_report().items() if v}
    if facts.instance_id:
        attributes.update({"cloud.provider": "aws", "cloud.platform": "aws_ec2"})
    return attributes


def facts_from_resource(attributes: Mapping[str, object]) -> InstanceFacts:
    return InstanceFacts(**{key: str(attributes.get(name, "")) for key, name in RESOURCE_ATTRIBUTE.items()})


def looks_like_ec2(sys_root: Path = Path("/sys")) -> bool:
    for relative in _DMI_FILES:
        if _read_text(sys_root / relative) == "Amazon EC2":
            return True
    return _read_text(sys_root / "hypervisor/uuid").lower().startswith("ec2")


def discover_instance(
    mode: str = "auto", environ: Mapping[str, str] = os.environ, sys_root: Path = Path("/sys")
) -> InstanceFacts:
    """mode: "auto" (only on EC2 evidence), "on" (always ask IMDS) or "off" (never)."""
    if mode == "off":
        return InstanceFacts(error="instance metadata disabled (--imds off)")
    if environ.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        return InstanceFacts(error="instance metadata disabled by AWS_EC2_METADATA_DISABLED")
    if mode == "auto" and not looks_like_ec2(sys_root):
        return InstanceFacts(error="not an EC2 instance (no Amazon EC2 DMI vendor or ec2 hypervisor uuid)")
    endpoint = environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    return ImdsClient(endpoint).instance_facts()


class ImdsClient:
    def __init__(self, endpoint: str, timeout_s: float = TIMEOUT_S) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._token = ""

    def instance_facts(self) -> InstanceFacts:
        try:
            self._token = self._request(
                "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL_S}
            )
            facts = InstanceFacts(
                instance_id=self._meta("instance-id"),
                instance_type=self._meta("instance-type"),
                instance_availability_zone=self._meta("placement/availability-zone"),
                ami_id=self._meta("ami-id"),
                subnet_id=self._meta(f"network/interfaces/macs/{self._meta('mac')}/subnet-id"),
            )
        except (OSError, urllib.error.URLError, ValueError) as error:
            return InstanceFacts(error=f"instance metadata at {self._endpoint}: {_reason(error)}")
        # Older instances lack these; their absence is not an error (as in the guide).
        return replace(
            facts,
            instance_availability_zone_id=self._optional("placement/availability-zone-id"),
            instance_region=self._optional("placement/region"),
            instance_name=self._optional("tags/instance/Name"),
        )

    def _meta(self, path: str) -> str:
        return self._request("GET", f"/latest/meta-data/{path}", {"X-aws-ec2-metadata-token": self._token})

    def _optional(self, path: str) -> str:
        try:
            return self._meta(path)
        except (OSError, urllib.error.URLError, ValueError):
            return ""

    def _request(self, method: str, path: str, headers: dict[str, str]) -> str:
        request = urllib.request.Request(self._endpoint + path, method=method, headers=headers)
        with _NO_PROXY.open(request, timeout=self._timeout_s) as response:
            return str(response.read().decode("utf-8").strip())


# IMDS is link-local: a proxy from the environment must never see these requests.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} for {error.url}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
