"""instance_data from a fake IMDSv2 on 127.0.0.1: asked when forced or on EC2 evidence, never otherwise."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_imds import GUIDE_METADATA, TOKEN, Answer, FakeImds, RawImds
from guide_example import GUIDE_FACTS
from monitor_cli import reports, run_monitor, write_config

from otel_neuron.report_schema import report_problem
from otel_neuron.sources.instance import (
    DEADLINE_S,
    LOOKUP_IN_PROGRESS,
    MAX_ERROR_CHARS,
    InstanceFacts,
    InstanceLookup,
    discover_instance,
    looks_like_ec2,
)


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


# --- a metadata endpoint that misbehaves: every failure is one short line of ours, within the deadline

GARBAGE = b"\x00\x1b[2J\x07EVIL \xff\xfe\r\nSSH-2.0-OpenSSH_9.6\r\n\r\n"
# A plausible answer, one byte every 0.5 s: it would take hours to end.
DRIP = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"EVIL" * 4096


def assert_one_short_line(error: str) -> None:
    assert error and error.isprintable() and len(error) <= MAX_ERROR_CHARS, repr(error)
    assert "EVIL" not in error and "SSH" not in error


def lookup(endpoint: str, tmp_path: Path) -> InstanceFacts:
    return discover_instance("on", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint}, tmp_path)


def test_non_http_bytes_are_not_an_http_answer(tmp_path: Path) -> None:
    with RawImds(GARBAGE) as server:
        facts = lookup(server.endpoint, tmp_path)

    assert facts == InstanceFacts(error=f"instance metadata at {server.endpoint}: not an HTTP answer")


@pytest.mark.timeout(20)  # the old lookup waited for the drip to end, for hours
def test_a_dripping_endpoint_times_out_within_the_whole_lookups_deadline(tmp_path: Path) -> None:
    with RawImds(DRIP, interval_s=0.5) as server:
        facts = lookup(server.endpoint, tmp_path)

    assert facts == InstanceFacts(error=f"instance metadata at {server.endpoint}: timed out")


@pytest.mark.timeout(20)
def test_an_endpoint_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        facts = lookup(endpoint, tmp_path)

    assert facts == InstanceFacts(error=f"instance metadata at {endpoint}: timed out")


def test_connection_refused_is_the_error(tmp_path: Path) -> None:
    with socket.socket() as bound:  # holds a port on which nothing listens
        bound.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{bound.getsockname()[1]}"
        facts = lookup(endpoint, tmp_path)

    assert facts == InstanceFacts(error=f"instance metadata at {endpoint}: connection refused")


TOKEN_PATH = "/latest/api/token"
ID_PATH = "/latest/meta-data/instance-id"


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ({TOKEN_PATH: Answer(500, b"EVIL\x1b[2J")}, "HTTP 500 for {endpoint}/latest/api/token"),
        ({TOKEN_PATH: Answer(200, b"EVIL" * 300_000)}, "answer longer than 4096 bytes"),
        (  # claims far more than it sends, then closes
            {TOKEN_PATH: Answer(200, b"EVIL", (("Content-Length", str(10**15)),))},
            "answer cut short",
        ),
        ({ID_PATH: Answer(200, b"i-\xff\xfeEVIL")}, f"answer for {ID_PATH} is not UTF-8"),
        (
            {ID_PATH: Answer(200, b"i-0011\x1b[2J\x07EVIL")},
            f"answer for {ID_PATH} is not one printable line of at most 256 characters",
        ),
        ({ID_PATH: Answer(200, b"i-" + b"E" * 300)}, f"answer for {ID_PATH} is not one printable line"),
        ({"/latest/meta-data/mac": Answer(200, b"../../EVIL")}, "mac is not a MAC address"),
    ],
    ids=["http-error", "huge-body", "short-body", "not-utf8", "control-characters", "too-long", "bad-mac"],
)
def test_a_bad_answer_is_one_line_of_ours(tmp_path: Path, answers: dict[str, Answer], reason: str) -> None:
    with FakeImds(answers=answers) as server:
        facts = lookup(server.endpoint, tmp_path)

    prefix = f"instance metadata at {server.endpoint}: "
    assert facts.error.startswith(prefix + reason.format(endpoint=server.endpoint))
    assert_one_short_line(facts.error)
    assert facts == InstanceFacts(error=facts.error)


def test_a_redirect_is_an_error_and_never_followed(tmp_path: Path) -> None:
    with FakeImds() as elsewhere:
        location = (("Location", f"{elsewhere.endpoint}{ID_PATH}"),)
        with FakeImds(answers={ID_PATH: Answer(302, b"", location)}) as server:
            facts = lookup(server.endpoint, tmp_path)

    assert facts == InstanceFacts(
        error=f"instance metadata at {server.endpoint}: HTTP 302 for {server.endpoint}{ID_PATH}"
    )
    assert elsewhere.requests == []


def test_an_endpoint_that_is_no_http_url_is_the_error(tmp_path: Path) -> None:
    facts = lookup("unix:/run/imds.sock", tmp_path)
    assert facts == InstanceFacts(error="instance metadata at unix:/run/imds.sock: not an http:// URL")


def test_a_long_error_is_cut_to_one_bounded_line(imds: FakeImds, tmp_path: Path) -> None:
    endpoint = f"{imds.endpoint}/{'x' * 500}\n"  # the endpoint setting itself is shown, bounded
    facts = lookup(endpoint, tmp_path)
    assert_one_short_line(facts.error)


@pytest.mark.timeout(20)
def test_the_background_lookup_is_in_progress_until_its_deadline_then_timed_out(tmp_path: Path) -> None:
    now = [100.0]
    with RawImds(DRIP, interval_s=0.5) as server:
        environ = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": server.endpoint}
        lookup = InstanceLookup.start("on", environ, tmp_path, clock=lambda: now[0])
        assert lookup.facts() == LOOKUP_IN_PROGRESS

        now[0] += DEADLINE_S
        timed_out = InstanceFacts(error=f"instance metadata at {server.endpoint}: timed out")
        assert lookup.facts() == timed_out
        assert lookup.facts() == timed_out  # the outcome stands


def test_a_lookup_that_sends_nothing_has_its_outcome_at_once(imds: FakeImds, tmp_path: Path) -> None:
    lookup = InstanceLookup.start("off", {"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint}, tmp_path)
    assert lookup.facts() == InstanceFacts(error="instance metadata disabled (--imds off)")
    assert imds.requests == []


# --- through the CLI

SYSTEM_ONLY = {"period": "500ms", "system_metrics": [{"type": "memory_info"}]}


def test_the_cli_report_carries_the_facts_in_instance_data(imds: FakeImds, tmp_path: Path) -> None:
    config = write_config(tmp_path, SYSTEM_ONLY)
    result = run_monitor(
        ["-c", str(config), "--imds", "on", "--validate", "--max-reports", "3"],
        env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint},
    )

    assert (result.returncode, result.stderr) == (0, "")
    lines = reports(result.stdout)
    *first, last = [r["instance_data"] for r in lines]
    # The lookup runs beside the first periods; past its deadline (1 s) every report has its outcome.
    assert last == GUIDE_FACTS.as_report()
    assert all(r in (GUIDE_FACTS.as_report(), LOOKUP_IN_PROGRESS.as_report()) for r in first)
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


@pytest.mark.parametrize(
    ("server", "outcome"),
    [(lambda: RawImds(GARBAGE), "not an HTTP answer"), (lambda: RawImds(DRIP, interval_s=0.5), "timed out")],
    ids=["garbage", "drip"],
)
def test_a_misbehaving_endpoint_never_stops_or_holds_the_first_report(
    tmp_path: Path, server: Callable[[], RawImds], outcome: str
) -> None:
    config = write_config(tmp_path, SYSTEM_ONLY)
    with server() as imds:
        # The drip would take hours: a report within the timeout was not held up by it.
        result = run_monitor(
            ["-c", str(config), "--imds", "on", "--validate", "--max-reports", "1"],
            env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint},
            timeout=15,
        )

    assert (result.returncode, result.stderr) == (0, "")
    (report,) = reports(result.stdout)
    instance = report["instance_data"]
    assert_one_short_line(instance["error"])
    assert instance == InstanceFacts(error=instance["error"]).as_report()
    assert instance["error"] in (
        LOOKUP_IN_PROGRESS.error,
        f"instance metadata at {imds.endpoint}: {outcome}",
    )


def test_after_the_deadline_the_reports_carry_the_lookups_outcome(tmp_path: Path) -> None:
    config = write_config(tmp_path, SYSTEM_ONLY)
    with RawImds(DRIP, interval_s=0.5) as imds:
        result = run_monitor(
            ["-c", str(config), "--imds", "on", "--max-reports", "3"],
            env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint},
            timeout=15,
        )

    assert (result.returncode, result.stderr) == (0, "")
    errors = [r["instance_data"]["error"] for r in reports(result.stdout)]
    timed_out = f"instance metadata at {imds.endpoint}: timed out"
    # The third report comes 1.5 s after the lookup began at the earliest: past its deadline.
    assert errors[-1] == timed_out
    assert set(errors) <= {LOOKUP_IN_PROGRESS.error, timed_out}
