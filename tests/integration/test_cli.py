"""otel-neuron-monitor as a subprocess: config errors, --check-config, the report stream, and how it ends."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from monitor_cli import (
    FAKE_PROC,
    REPO,
    clean_environment,
    monitor_command,
    reports,
    run_monitor,
    start_monitor,
    write_config,
)

from otel_neuron.report_schema import report_problem

FAST = {"period": "500ms", "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}]}


# --- config errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty; expected a JSON object"),
        (
            "{period: 1s}",
            "line 1 column 2: not valid JSON: Expecting property name enclosed in double quotes",
        ),
        (
            '{"system_metrics": [{"type": "cpu"}]}',
            'system_metrics[0].type: unknown metric group "cpu" (known: vcpu_usage, memory_info)',
        ),
        (
            '{"system_metrics": [{"type": "memory_info"}, {"type": "memory_info"}]}',
            'system_metrics[1].type: "memory_info" is already listed at system_metrics[0]',
        ),
        (
            '{"system_metrics": [{"type": "memory_info", "period": "2x"}]}',
            'system_metrics[0].period: "2x" is not a duration like "500ms", "2s", "1m", "1h"',
        ),
        (
            '{"period": "1s", "system_metric": []}',
            "system_metric: unknown key (allowed: period, neuron_runtimes, system_metrics)",
        ),
        ("{}", "the configuration enables no metric group"),
        (
            '{"neuron_runtimes": [{"address": "bogus", "metrics": [{"type": "memory_used"}]}]}',
            "neuron_runtimes[0].address: 'bogus' is not a runtime address (unix:/path, unix:///abs/path, "
            "host:port, dns:///host:port, sim:, neuron-monitor:, stdin:, sysfs:)",
        ),
    ],
    ids=[
        "empty",
        "not-json",
        "unknown-type",
        "duplicate",
        "bad-duration",
        "unknown-key",
        "no-group",
        "bad-address",
    ],
)
def test_a_bad_config_is_one_line_on_stderr_and_exit_2(tmp_path: Path, text: str, message: str) -> None:
    config = write_config(tmp_path, text)
    for extra in ([], ["--check-config"]):
        result = run_monitor(["-c", str(config), *extra])
        assert result.returncode == 2
        assert result.stderr == f"otel-neuron-monitor: {config}: {message}\n"
        assert result.stdout == ""


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_config_path_that_is_no_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "absent.conf" if kind == "missing" else tmp_path
    expected = "no such file" if kind == "missing" else "is a directory, not a configuration file"
    result = run_monitor(["--config-file", str(path)])
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"otel-neuron-monitor: {path}: {expected}\n"


def test_check_config_prints_the_guides_example_with_every_period_resolved() -> None:
    result = run_monitor(["-c", str(REPO / "examples" / "monitor.conf"), "--check-config"])

    assert (result.returncode, result.stderr) == (0, "")
    effective = json.loads(result.stdout)
    periods = {g["type"]: g["period"] for g in effective["neuron_runtimes"][0]["metrics"]}
    assert periods == {
        "neuroncore_counters": "1s",
        "memory_used": "1s",
        "neuron_runtime_vcpu_usage": "1s",
        "inference_stats": "1s",
        "hw_counters": "2s",
    }
    assert effective["system_metrics"] == [
        {"type": "vcpu_usage", "period": "1s"},
        {"type": "memory_info", "period": "1s"},
    ]


def test_check_config_without_a_file_shows_the_5s_defaults() -> None:
    result = run_monitor(["--check-config"])
    effective = json.loads(result.stdout)
    every_period = {g["period"] for g in effective["system_metrics"]} | {
        g["period"] for r in effective["neuron_runtimes"] for g in r["metrics"]
    }
    assert every_period == {"5s"}
    assert [g["type"] for g in effective["system_metrics"]] == ["vcpu_usage", "memory_info"]


@pytest.mark.parametrize(
    ("argument", "line"),
    [
        (["--verbose", "5"], "--verbose: 5 is outside 0..4"),
        (["--verbose=x"], "--verbose: 'x' is not a number from 0 to 4"),
        (["--max-reports", "0"], "--max-reports: 0 must be at least 1"),
        (["--otlp-backlog", "0"], "--otlp-backlog: 0 must be at least 1"),
        (["--prometheus", "70000"], "--prometheus: port 70000 is out of range 0..65535"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["-c"], "-c/--config-file: expected one argument"),
    ],
)
def test_a_bad_argument_is_one_line_on_stderr_and_exit_2(argument: list[str], line: str) -> None:
    result = run_monitor(argument)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"otel-neuron-monitor: {line}\n"


# --- what a configuration may ask for: every size and duration bounded, checked at load time

LIMITS = [
    pytest.param(
        {"period": "99999999999999h", "system_metrics": [{"type": "vcpu_usage"}]},
        'period: "99999999999999h" is longer than the maximum period, "24h"',
        id="period-of-11-billion-years",
    ),
    pytest.param(
        {"neuron_runtimes": [{"address": "sim:?cores=100000000", "metrics": [{"type": "memory_used"}]}]},
        "neuron_runtimes[0].address: 'sim:?cores=100000000': cores must be between 1 and 128, not 100000000",
        id="100-million-simulated-cores",
    ),
    pytest.param(
        {"neuron_runtimes": [{"address": "sim:?models=99999999", "metrics": [{"type": "memory_used"}]}]},
        "neuron_runtimes[0].address: 'sim:?models=99999999': models must be between 0 and 128, not 99999999",
        id="100-million-simulated-models",
    ),
    pytest.param(
        {"neuron_runtimes": [{"address": "sim:", "metrics": [{"type": "memory_used"}]}] * 100_000},
        "larger than 1048576 bytes (1 MiB), too large for a configuration",
        id="100000-runtimes",
    ),
    pytest.param(
        {"neuron_runtimes": [{"address": "sim:", "metrics": []}] * 20_000},
        "neuron_runtimes: 20000 entries; at most 128 are allowed",
        id="20000-runtimes-in-1-mib",
    ),
]


@pytest.mark.parametrize(("document", "message"), LIMITS)
def test_a_config_past_a_limit_is_refused_at_load_time(tmp_path: Path, document: Any, message: str) -> None:
    config = write_config(tmp_path, document)
    for extra in (["--check-config"], ["--imds", "off", "--max-reports", "1"]):
        result = run_monitor(["-c", str(config), *extra], timeout=20)
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"otel-neuron-monitor: {config}: {message}\n"


def test_a_fifo_as_the_config_file_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "monitor.conf"
    os.mkfifo(fifo)
    for extra in (["--check-config"], ["--imds", "off", "--max-reports", "1"]):
        result = run_monitor(["-c", str(fifo), *extra], timeout=20)  # a regression fails, never hangs
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"otel-neuron-monitor: {fifo}: is a FIFO, not a regular file\n"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("neuron-monitor:{tmp}/neuron-monitor", "{tmp}/neuron-monitor does not exist"),
        ("neuron-monitor:{tmp}/not-a-program", "{tmp}/not-a-program is not executable"),
        ("sysfs:{tmp}/no-driver-here", "the root {tmp}/no-driver-here is not a directory"),
    ],
)
def test_check_config_checks_the_programs_and_directories_it_names(
    tmp_path: Path, address: str, problem: str
) -> None:
    (tmp_path / "not-a-program").write_text("")
    address, problem = address.format(tmp=tmp_path), problem.format(tmp=tmp_path)
    group = "memory_used"
    config = write_config(tmp_path, {"neuron_runtimes": [{"address": address, "metrics": [{"type": group}]}]})
    result = run_monitor(["-c", str(config), "--check-config"])
    assert (result.returncode, result.stdout) == (2, "")
    assert (
        result.stderr
        == f"otel-neuron-monitor: {config}: neuron_runtimes[0].address: {address!r}: {problem}\n"
    )


def test_help_documents_the_guides_options() -> None:
    result = run_monitor(["--help"])
    assert result.returncode == 0
    for option in ("-c PATH, --config-file PATH", "--verbose N", "--check-config", "--validate", "5 seconds"):
        assert option in result.stdout


# --- the report stream


@pytest.fixture(scope="module")
def six_seconds(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """One real run shared by several tests: a 1 s group and a 2 s group, six reports (~6 s)."""
    config = write_config(
        tmp_path_factory.mktemp("six"),
        {"period": "1s", "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info", "period": "2s"}]},
    )
    result = run_monitor(["-c", str(config), "--validate", "--imds", "off", "--max-reports", "6"])
    return result, reports(result.stdout)


def test_every_report_is_one_json_line_that_validates(six_seconds) -> None:  # type: ignore[no-untyped-def]
    result, lines = six_seconds
    assert (result.returncode, result.stderr) == (0, "")  # --validate found nothing to say
    assert len(lines) == 6
    for number, report in enumerate(lines, start=1):
        assert report_problem(report) == "", f"report {number}"
        assert report["neuron_runtime_data"] == []


def test_memory_total_is_memtotal_from_proc_meminfo(six_seconds) -> None:  # type: ignore[no-untyped-def]
    _, lines = six_seconds
    with open("/proc/meminfo") as meminfo:
        mem_total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    totals = {
        r["system_data"]["memory_info"]["memory_total_bytes"]
        for r in lines
        if "memory_info" in r["system_data"]
    }
    assert totals == {mem_total_kib * 1024}


def updates(lines: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """The group's section each time it changed from the previous report (one entry per collection)."""
    seen: list[dict[str, Any]] = []
    previous = None
    for report in lines:
        section = report["system_data"].get(group)
        if section is not None and section != previous:
            seen.append(section)
        previous = section
    return seen


def test_a_1s_and_a_2s_group_update_2_to_1_with_their_periods(six_seconds) -> None:  # type: ignore[no-untyped-def]
    _, lines = six_seconds
    vcpu, memory = updates(lines, "vcpu_usage"), updates(lines, "memory_info")

    assert (len(vcpu), len(memory)) == (6, 3)
    assert all(s["period"] == pytest.approx(1.0, abs=0.05) for s in vcpu)
    assert all(s["period"] == pytest.approx(2.0, abs=0.05) for s in memory)
    # The first report of a two-sample group already covers a real interval, not time since boot.
    first = vcpu[0]
    assert first["period"] == pytest.approx(1.0, abs=0.05)
    assert all(sum(cpu.values()) == pytest.approx(100.0, abs=2.0) for cpu in first["usage_data"].values())
    assert len(first["usage_data"]) == os.cpu_count()


def test_groups_due_at_the_same_instant_make_one_report(six_seconds) -> None:  # type: ignore[no-untyped-def]
    _, lines = six_seconds
    # Six reports in six seconds: the 2 s group never got a report of its own.
    assert changed_in(lines, "vcpu_usage") == [0, 1, 2, 3, 4, 5]
    assert changed_in(lines, "memory_info") == [1, 3, 5]


def changed_in(lines: list[dict[str, Any]], group: str) -> list[int]:
    """Indexes of the reports in which the group's section differs from the previous report's."""
    sections = [None, *(r["system_data"].get(group) for r in lines)]
    return [i for i in range(len(lines)) if sections[i + 1] is not None and sections[i + 1] != sections[i]]


def test_mean_period_is_within_1_percent_over_a_real_run(six_seconds) -> None:  # type: ignore[no-untyped-def]
    _, lines = six_seconds
    for group, period in (("vcpu_usage", 1.0), ("memory_info", 2.0)):
        periods = [s["period"] for s in updates(lines, group)]
        assert sum(periods) / len(periods) == pytest.approx(period, rel=0.01), group


def test_memory_info_from_a_fake_proc_is_exact(tmp_path: Path) -> None:
    result = run_monitor(
        ["-c", str(write_config(tmp_path, FAST)), "--validate", "--imds", "off", "--max-reports", "2"],
        env={"OTEL_NEURON_PROCFS_PATH": str(FAKE_PROC / "a")},
    )
    assert (result.returncode, result.stderr) == (0, "")
    memory = reports(result.stdout)[-1]["system_data"]["memory_info"]
    assert memory == {
        "period": memory["period"],
        "memory_total_bytes": 16384000 * 1024,
        "memory_used_bytes": (16384000 - 12000000) * 1024,
        "swap_total_bytes": 2097152 * 1024,
        "swap_used_bytes": (2097152 - 1572864) * 1024,
        "error": "",
    }
    vcpu = reports(result.stdout)[-1]["system_data"]["vcpu_usage"]
    assert list(vcpu["usage_data"]) == ["0", "1"]  # the fake machine's two vCPUs, not this one's


# --- failures inside the run


def test_a_failing_source_is_its_groups_error_and_the_rest_goes_on(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    shutil.copy(FAKE_PROC / "a" / "meminfo", proc / "meminfo")  # no stat, no vmstat
    config = write_config(tmp_path, FAST)

    result = run_monitor(
        ["-c", str(config), "--validate", "--imds", "off", "--max-reports", "3"],
        env={"OTEL_NEURON_PROCFS_PATH": str(proc)},
    )

    assert result.returncode == 0
    assert result.stderr == ""  # verbosity 0: nothing on stderr, not even a library's warning
    lines = reports(result.stdout)
    assert len(lines) == 3
    for report in lines:
        assert report_problem(report) == ""
        vcpu, memory = report["system_data"]["vcpu_usage"], report["system_data"]["memory_info"]
        assert set(vcpu) == {"period", "error"} and f"{proc}/stat" in vcpu["error"]
        assert memory["error"] == "" and memory["memory_total_bytes"] == 16384000 * 1024


def test_an_empty_proc_fails_every_group_but_the_monitor_keeps_reporting(tmp_path: Path) -> None:
    empty = tmp_path / "proc"
    empty.mkdir()
    config = write_config(tmp_path, FAST)

    result = run_monitor(
        ["-c", str(config), "--validate", "--imds", "off", "--max-reports", "3"],
        env={"OTEL_NEURON_PROCFS_PATH": str(empty)},
    )

    assert (result.returncode, result.stderr) == (0, "")
    lines = reports(result.stdout)
    assert len(lines) == 3
    assert all(report_problem(r) == "" for r in lines)
    assert all(section["error"] for r in lines for section in r["system_data"].values())


# --- how it ends


def test_check_config_into_head_1_is_a_quiet_exit_0(tmp_path: Path) -> None:
    # 128 runtimes make the printed configuration larger than a pipe holds: head exits while the
    # monitor still writes, every time.
    runtimes = [
        {"address": f"unix:{tmp_path}/runtime-{n}.sock", "metrics": [{"type": "memory_used"}]}
        for n in range(128)
    ]
    config = write_config(tmp_path, {"period": "1s", "neuron_runtimes": runtimes})
    command = " ".join(monitor_command()) + f" -c {config} --check-config 2>{tmp_path}/stderr | head -1"
    for _ in range(5):
        result = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command}"],
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert (result.returncode, result.stdout) == (0, "{\n")
        assert (tmp_path / "stderr").read_text() == ""


def test_the_reader_going_away_is_a_quiet_exit_0(tmp_path: Path) -> None:
    monitor = start_monitor(["-c", str(write_config(tmp_path, FAST)), "--imds", "off"])
    assert monitor.stdout is not None and monitor.stderr is not None
    first = monitor.stdout.readline()
    monitor.stdout.close()  # what `| head -1` does after its line
    try:
        status = monitor.wait(timeout=5)
    finally:
        monitor.kill()
    assert json.loads(first)["system_data"]
    assert status == 0
    assert monitor.stderr.read() == ""


def test_head_1_in_a_shell_pipeline(tmp_path: Path) -> None:
    config = write_config(tmp_path, FAST)
    command = " ".join(monitor_command()) + f" -c {config} --imds off 2>{tmp_path}/stderr | head -1"
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0
    assert len(reports(result.stdout)) == 1
    assert (tmp_path / "stderr").read_text() == ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_it_within_1s_with_status_0(tmp_path: Path, signum: signal.Signals) -> None:
    config = write_config(
        tmp_path, {"period": "1500ms", "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}]}
    )
    monitor = start_monitor(["-c", str(config), "--imds", "off"])
    assert monitor.stdout is not None and monitor.stderr is not None
    try:
        first = monitor.stdout.readline()  # running, and waiting 1.5 s for the next tick
        began = time.monotonic()
        monitor.send_signal(signum)
        status = monitor.wait(timeout=5)
        elapsed = time.monotonic() - began
    finally:
        monitor.kill()
    assert json.loads(first)["system_data"]["vcpu_usage"]["error"] == ""
    assert status == 0
    assert elapsed < 1.0
    assert monitor.stdout.read() == ""  # nothing half-written after the last report
    assert monitor.stderr.read() == ""


@pytest.mark.parametrize("verbose", [["--verbose", "4"], ["--verbose=4"]])
def test_verbose_diagnostics_go_to_stderr_and_stdout_stays_json_lines(
    tmp_path: Path, verbose: list[str]
) -> None:
    result = run_monitor(
        ["-c", str(write_config(tmp_path, FAST)), *verbose, "--imds", "off", "--max-reports", "2"]
    )
    assert result.returncode == 0
    assert len(reports(result.stdout)) == 2  # every stdout line parses as JSON
    assert "instance facts" in result.stderr


def test_the_guides_example_runs_with_no_runtime_there_and_says_so(tmp_path: Path) -> None:
    guide = json.loads((REPO / "examples" / "monitor.conf").read_text())
    socket_path = tmp_path / "neuron.sock"  # nothing listens here
    guide["neuron_runtimes"][0]["address"] = f"unix:{socket_path}"
    config = write_config(tmp_path, guide)

    result = run_monitor(["-c", str(config), "--validate", "--imds", "off", "--max-reports", "2"])

    assert (result.returncode, result.stderr) == (0, "")
    lines = reports(result.stdout)
    assert all(report_problem(r) == "" for r in lines)
    entry = lines[-1]["neuron_runtime_data"][0]
    assert entry["neuron_runtime_index"] == 0
    assert entry["error"].startswith(f"cannot connect to unix:{socket_path}")
    assert set(entry["report"]) == {
        "neuroncore_counters",
        "memory_used",
        "neuron_runtime_vcpu_usage",
        "inference_stats",
        "hw_counters",  # its 2 s period came due at the second report
    }
    assert all(group["error"] for group in entry["report"].values())
    # The host groups carry on regardless.
    assert lines[-1]["system_data"]["vcpu_usage"]["error"] == ""
    assert lines[-1]["system_data"]["memory_info"]["error"] == ""


# --- the other edges: the Prometheus port, the simulator's address


def test_prometheus_0_says_at_verbose_1_which_port_it_chose(tmp_path: Path) -> None:
    config = write_config(tmp_path, FAST)
    monitor = start_monitor(["-c", str(config), "--imds", "off", "--prometheus", "0", "--verbose", "1"])
    assert monitor.stderr is not None
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(monitor.stderr.readline()), daemon=True)
    reader.start()
    try:
        reader.join(timeout=15)  # a monitor that never says it leaves the list empty, and is killed
        said = re.search(
            r"NOTICE otel_neuron: Prometheus metrics served on http://127\.0\.0\.1:(\d+)/metrics$",
            "".join(first_line).rstrip("\n"),
        )
        assert said, first_line
        port = int(said.group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert answer.status == 200
    finally:
        monitor.kill()
        monitor.wait(timeout=5)
    assert port != 0


SIMULATOR = [sys.executable, "-m", "otel_neuron.runtime.simulator_cli"]


def user_environment() -> dict[str, str]:
    """As in a user's shell: without the GRPC_VERBOSITY that tests/conftest.py sets for the tests."""
    env = clean_environment()
    env.pop("GRPC_VERBOSITY", None)
    return env


def test_the_simulator_on_an_address_it_cannot_have_says_so_in_one_line_of_its_own() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        for address, line in (
            (busy, f"otel-neuron-simulator: cannot listen on {busy}: "),
            (
                "127.0.0.1:99999",
                "otel-neuron-simulator: '127.0.0.1:99999' is not an address like "
                "127.0.0.1:50051 (the port must be 1 to 65535)",
            ),
        ):
            result = subprocess.run(
                [*SIMULATOR, "--address", address],
                env=user_environment(),
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert result.returncode == 2
            assert "add_port.cc" not in result.stderr  # gRPC's own log line
            assert len(result.stderr.splitlines()) == 1
            assert result.stderr.startswith(line)


def test_a_simulator_option_past_its_bound_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [*SIMULATOR, "--address", "unix:/nonexistent/x.sock", "--cores", "100000000"],
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr == "otel-neuron-simulator: error: cores must be between 1 and 128, not 100000000\n"
