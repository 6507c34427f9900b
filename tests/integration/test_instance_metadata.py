"""instance_data from a fake IMDSv2 on 127.0.0.1: asked when forced or on EC2 evidence, never otherwise."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from fake_imds import GUIDE_METADATA, TOKEN, FakeImds
from guide_example import GUIDE_FACTS
from monitor_cli import reports, run_monitor, write_config

from otel_neuron.report_schema import report_problem
from otel_neuron.sources.instance import InstanceFacts, discover_instance, looks_like_ec2


@pytest.fixture
def imds():  # type: ignore[no-untyped-def]
    with FakeImds() as server:
        yield server


def fake_sys(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def test_forced_lookup_reads_every_fact_with_an_imdsv2_token(imds: FakeImds, tmp_path: Path) -> None:
    facts = discover_instance(
        "on", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint}, fake_sys(tmp_path, {})
    )

    assert facts == GUIDE_FACTS
    first, *reads = imds.requests
    assert (first.method, first.path) == ("PUT", "/latest/api/token")
    assert reads and all(
        r.method == "GET" and r.headers.get("x-aws-ec2-metadata-token") == TOKEN for r in reads
    )


def test_an_older_instance_lacks_zone_id_region_and_name_without_an_error(tmp_path: Path) -> None:
    metadata = {
        k: v
        for k, v in GUIDE_METADATA.items()
        if k not in ("placement/availability-zone-id", "placement/region", "tags/instance/Name")
    }
    with FakeImds(metadata=metadata) as server:
        facts = discover_instance("on", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": server.endpoint}, tmp_path)

    assert facts.instance_id == "i-0011223344556677a"
    assert (facts.instance_availability_zone_id, facts.instance_region, facts.instance_name) == ("", "", "")
    assert facts.error == ""


def test_a_missing_required_fact_is_the_error(tmp_path: Path) -> None:
    metadata = {k: v for k, v in GUIDE_METADATA.items() if k != "instance-type"}
    with FakeImds(metadata=metadata) as server:
        facts = discover_instance("on", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": server.endpoint}, tmp_path)

    assert (
        facts.error == f"instance metadata at {server.endpoint}: "
        f"HTTP 404 for {server.endpoint}/latest/meta-data/instance-type"
    )
    assert facts.instance_id == ""


def test_off_ec2_auto_mode_sends_nothing_and_says_why(imds: FakeImds, tmp_path: Path) -> None:
    sys_root = fake_sys(tmp_path, {"class/dmi/id/sys_vendor": "QEMU", "class/dmi/id/board_vendor": "Intel"})

    facts = discover_instance("auto", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint}, sys_root)

    assert imds.requests == []
    assert facts == InstanceFacts(
        error="not an EC2 instance (no Amazon EC2 DMI vendor or ec2 hypervisor uuid)"
    )


@pytest.mark.parametrize(
    "evidence",
    [
        {"class/dmi/id/sys_vendor": "Amazon EC2"},
        {"class/dmi/id/board_vendor": "Amazon EC2"},
        {"hypervisor/uuid": "ec2e1916-9099-7caf-fd21-012345abcdef"},  # Xen-based instances
    ],
    ids=["sys_vendor", "board_vendor", "xen-uuid"],
)
def test_auto_mode_asks_imds_on_ec2_evidence(
    imds: FakeImds, tmp_path: Path, evidence: dict[str, str]
) -> None:
    facts = discover_instance(
        "auto", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint}, fake_sys(tmp_path, evidence)
    )
    assert facts == GUIDE_FACTS


@pytest.mark.parametrize("value", ["true", "TRUE", " true "])
def test_aws_ec2_metadata_disabled_wins_even_when_forced(imds: FakeImds, tmp_path: Path, value: str) -> None:
    environ = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint, "AWS_EC2_METADATA_DISABLED": value}
    facts = discover_instance("on", environ, fake_sys(tmp_path, {"class/dmi/id/sys_vendor": "Amazon EC2"}))
    assert imds.requests == []
    assert facts == InstanceFacts(error="instance metadata disabled by AWS_EC2_METADATA_DISABLED")


def test_imds_that_never_answers_costs_about_the_1s_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        began = time.monotonic()
        facts = discover_instance("on", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint}, tmp_path)
        elapsed = time.monotonic() - began

    assert facts.instance_id == ""
    assert facts.error.startswith(f"instance metadata at {endpoint}: ")
    assert 0.9 <= elapsed < 2.0


# --- through the CLI

SYSTEM_ONLY = {"period": "500ms", "system_metrics": [{"type": "memory_info"}]}


def test_the_cli_report_carries_the_facts_in_instance_data(imds: FakeImds, tmp_path: Path) -> None:
    config = write_config(tmp_path, SYSTEM_ONLY)
    result = run_monitor(
        ["-c", str(config), "--imds", "on", "--validate", "--max-reports", "2"],
        env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint},
    )

    assert (result.returncode, result.stderr) == (0, "")
    lines = reports(result.stdout)
    assert [r["instance_data"] for r in lines] == [GUIDE_FACTS.as_report()] * 2
    assert all(report_problem(r) == "" for r in lines)
    # Fetched once at start-up, not per report.
    assert sum(r.method == "PUT" for r in imds.requests) == 1


@pytest.mark.skipif(looks_like_ec2(), reason="this machine is EC2: auto mode is right to ask")
def test_the_cli_off_ec2_sends_no_request_by_default(imds: FakeImds, tmp_path: Path) -> None:
    config = write_config(tmp_path, SYSTEM_ONLY)
    result = run_monitor(
        ["-c", str(config), "--max-reports", "1"], env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint}
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert imds.requests == []
    instance = reports(result.stdout)[0]["instance_data"]
    assert instance == InstanceFacts(error=instance["error"]).as_report()
    assert instance["error"].startswith("not an EC2 instance")
