"""The instance facts of the report's instance_data, from EC2's instance metadata service (IMDSv2).

IMDS is contacted only when local evidence says this is EC2 (DMI vendor or the Xen hypervisor
UUID), or when forced; anywhere else nothing is sent and `error` says why. Asked once, at start-up,
on a thread of its own (`InstanceLookup`), so the monitor never waits for it.

Whatever IMDS answers can only make a fact "" and set `error`: the whole lookup has one deadline
(`DEADLINE_S`, every request included), each answer is at most `MAX_ANSWER_BYTES`, each fact must be
one printable line, and `error` is one printable line of at most `MAX_ERROR_CHARS` in our own words
(a misbehaving endpoint's bytes never reach the report).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from otel_neuron.semconv import INSTANCE_RESOURCE_ATTRIBUTES
from otel_neuron.sources.deadline import Deadline

if TYPE_CHECKING:
    from otel_neuron.sources.bounded_http import Endpoint

_logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://169.254.169.254"
DEADLINE_S = 1.0
MAX_ANSWER_BYTES = 4096
MAX_FACT_CHARS = 256  # an EC2 tag value's limit; every other fact is shorter
MAX_ERROR_CHARS = 200
_TOKEN_TTL_S = "60"
_DMI_FILES = ("class/dmi/id/sys_vendor", "class/dmi/id/board_vendor")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


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


# instance_data field <-> OpenTelemetry resource attribute (declared in semconv).
RESOURCE_ATTRIBUTE = INSTANCE_RESOURCE_ATTRIBUTES


def resource_attributes(facts: InstanceFacts) -> dict[str, str]:
    """The non-empty facts as resource attributes; cloud.provider/platform when on EC2."""
    attributes = {RESOURCE_ATTRIBUTE[k]: v for k, v in facts.as_report().items() if v}
    if facts.instance_id:
        attributes.update({"cloud.provider": "aws", "cloud.platform": "aws_ec2"})
    return attributes


def facts_from_resource(attributes: Mapping[str, object]) -> InstanceFacts:
    return InstanceFacts(**{key: str(attributes.get(name, "")) for key, name in RESOURCE_ATTRIBUTE.items()})


def facts_from_report(fields: Mapping[str, str]) -> InstanceFacts:
    """The facts of a report's instance_info / instance_data (a bridged neuron-monitor's): the
    fields it gave, "" for the others."""
    return InstanceFacts(**{key: str(fields[key]) for key in RESOURCE_ATTRIBUTE if key in fields})


def lookup_failed(facts: InstanceFacts) -> bool:
    """The lookup is over and found no instance (off, not EC2, or IMDS failed)."""
    return not facts.instance_id and facts is not LOOKUP_IN_PROGRESS


def looks_like_ec2(sys_root: Path = Path("/sys")) -> bool:
    for relative in _DMI_FILES:
        if _read_text(sys_root / relative) == "Amazon EC2":
            return True
    return _read_text(sys_root / "hypervisor/uuid").lower().startswith("ec2")


def discover_instance(
    mode: str = "auto",
    environ: Mapping[str, str] = os.environ,
    sys_root: Path = Path("/sys"),
    deadline_s: float = DEADLINE_S,
) -> InstanceFacts:
    """mode: "auto" (only on EC2 evidence), "on" (always ask IMDS) or "off" (never). Returns within
    about `deadline_s` when the endpoint is an address (a host name's resolution is not bounded)."""
    known = facts_without_imds(mode, environ, sys_root)
    if known is not None:
        return known
    return ImdsClient(imds_endpoint(environ), Deadline(deadline_s)).instance_facts()


def facts_without_imds(mode: str, environ: Mapping[str, str], sys_root: Path) -> InstanceFacts | None:
    """The outcome when IMDS is not to be asked (and why), None when it is."""
    if mode == "off":
        return InstanceFacts(error="instance metadata disabled (--imds off)")
    if environ.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        return InstanceFacts(error="instance metadata disabled by AWS_EC2_METADATA_DISABLED")
    if mode == "auto" and not looks_like_ec2(sys_root):
        return InstanceFacts(error="not an EC2 instance (no Amazon EC2 DMI vendor or ec2 hypervisor uuid)")
    return None


def imds_endpoint(environ: Mapping[str, str]) -> str:
    return (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


LOOKUP_IN_PROGRESS = InstanceFacts(error="instance metadata lookup in progress")


class InstanceLookup:
    """The instance facts, looked up on a daemon thread: start-up and reports never wait for IMDS.

    `facts()` is LOOKUP_IN_PROGRESS while IMDS is being asked, then the outcome, for good. The
    deadline holds even where the thread cannot enforce it (a host name slow to resolve): once it
    has passed, a lookup still running is a timeout, whatever it brings later.
    """

    def __init__(self, known: InstanceFacts | None, endpoint: str, deadline: Deadline) -> None:
        self._outcome = known
        self._endpoint = endpoint
        self._deadline = deadline
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls,
        mode: str = "auto",
        environ: Mapping[str, str] = os.environ,
        sys_root: Path = Path("/sys"),
        deadline_s: float = DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> InstanceLookup:
        known = facts_without_imds(mode, environ, sys_root)
        lookup = cls(known, imds_endpoint(environ), Deadline(deadline_s, clock))
        if known is None:
            threading.Thread(target=lookup._ask, name="otel-neuron-imds", daemon=True).start()
        else:
            _logger.info("instance facts: %s", known)
        return lookup

    def facts(self) -> InstanceFacts:
        outcome = self._outcome
        if outcome is not None:
            return outcome
        if self._deadline.passed():
            return self._settle(_failure(self._endpoint, "timed out"))
        return LOOKUP_IN_PROGRESS

    def _ask(self) -> None:
        try:
            facts = ImdsClient(self._endpoint, self._deadline).instance_facts()
        except Exception as error:  # a defect here must still end the lookup, never the monitor
            _logger.debug("instance metadata lookup failed", exc_info=True)
            facts = _failure(self._endpoint, f"lookup failed ({type(error).__name__})")
        self._settle(facts)

    def _settle(self, facts: InstanceFacts) -> InstanceFacts:
        """The first outcome stands: the thread's, or the timeout seen by facts()."""
        with self._lock:
            if self._outcome is None:
                self._outcome = facts
                _logger.info("instance facts: %s", facts)
            return self._outcome


class _BadAnswer(Exception):
    """An answer that is not a usable fact; the message says which and why, in our words."""


class ImdsClient:
    """IMDSv2 reads: a token, then the facts; every request before one shared deadline."""

    def __init__(self, endpoint: str, deadline: Deadline) -> None:
        self._url = endpoint
        self._deadline = deadline
        self._token = ""

    def instance_facts(self) -> InstanceFacts:
        # http.client, and the ssl module it loads, only for a lookup that happens.
        from otel_neuron.sources.bounded_http import Endpoint, RequestFailed

        try:
            endpoint = Endpoint.parse(self._url)
            self._token = self._read(
                endpoint, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL_S}
            )
            mac = self._meta(endpoint, "mac")
            if not _MAC.fullmatch(mac):
                raise _BadAnswer("mac is not a MAC address")
            facts = InstanceFacts(
                instance_id=self._meta(endpoint, "instance-id"),
                instance_type=self._meta(endpoint, "instance-type"),
                instance_availability_zone=self._meta(endpoint, "placement/availability-zone"),
                ami_id=self._meta(endpoint, "ami-id"),
                subnet_id=self._meta(endpoint, f"network/interfaces/macs/{mac}/subnet-id"),
            )
        except (RequestFailed, _BadAnswer, ValueError) as error:
            return _failure(self._url, str(error))
        # Older instances lack these; their absence is not an error (as in the guide).
        return replace(
            facts,
            instance_availability_zone_id=self._optional(endpoint, "placement/availability-zone-id"),
            instance_region=self._optional(endpoint, "placement/region"),
            instance_name=self._optional(endpoint, "tags/instance/Name"),
        )

    def _meta(self, endpoint: Endpoint, path: str) -> str:
        headers = {"X-aws-ec2-metadata-token": self._token}
        return self._read(endpoint, "GET", f"/latest/meta-data/{path}", headers)

    def _optional(self, endpoint: Endpoint, path: str) -> str:
        from otel_neuron.sources.bounded_http import RequestFailed

        try:
            return self._meta(endpoint, path)
        except (RequestFailed, _BadAnswer):
            return ""

    def _read(self, endpoint: Endpoint, method: str, path: str, headers: dict[str, str]) -> str:
        """The answer as one printable line; _BadAnswer or RequestFailed otherwise."""
        from otel_neuron.sources.bounded_http import request

        answer = request(endpoint, method, path, headers, self._deadline, MAX_ANSWER_BYTES)
        if answer.status != 200:
            raise _BadAnswer(f"HTTP {answer.status} for {self._url}{path}")
        try:
            text = answer.body.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise _BadAnswer(f"answer for {path} is not UTF-8") from None
        if len(text) > MAX_FACT_CHARS or not text.isprintable():
            raise _BadAnswer(
                f"answer for {path} is not one printable line of at most {MAX_FACT_CHARS} characters"
            )
        return text


def _failure(endpoint: str, reason: str) -> InstanceFacts:
    return InstanceFacts(error=error_line(f"instance metadata at {endpoint}: {reason}"))


def error_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` as one printable line of at most `limit` characters."""
    line = "".join(c if c.isprintable() else "?" for c in text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
