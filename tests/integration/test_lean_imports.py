"""The monitor imports only what its command line and configuration use (issue 19.3).

Each case runs otel-neuron-monitor as a subprocess under `python -X importtime`, which lists every
module the process imported, and checks the list: behaviour, not timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from monitor_cli import FAKE_PROC, clean_environment, reports, write_config

from otel_neuron.runtime.loaded_models import Subgraph
from otel_neuron.runtime.recorder import InferenceRecorder
from otel_neuron.runtime.server import serve_runtime_endpoint
from otel_neuron.semconv import RUNTIME_GROUPS

# Loaded only by the options and configurations that use them.
HEAVY = ("grpc", "numpy", "jsonschema", "opentelemetry.sdk", "prometheus_client", "google.protobuf")
IMPORT_LINE = "import time:"


def run_importing(
    args: Sequence[str], env: Mapping[str, str] = {}
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the monitor; its result (stderr without the import lines) and the modules it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "otel_neuron", *args],
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stderr.splitlines()
    modules = {line.rpartition("|")[2].strip() for line in lines if line.startswith(IMPORT_LINE)}
    result.stderr = "".join(f"{line}\n" for line in lines if not line.startswith(IMPORT_LINE))
    return result, modules


def loaded(modules: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in modules)


@pytest.mark.parametrize("argument", ["--version", "--help"])
def test_version_and_help_load_no_heavy_package(argument: str) -> None:
    result, modules = run_importing([argument])
    assert result.returncode == 0, result.stderr
    assert "otel-neuron-monitor" in result.stdout
    assert "otel_neuron.cli" in modules  # the listing is real
    assert [package for package in HEAVY if loaded(modules, package)] == []


def test_a_mistyped_option_is_refused_before_anything_heavy_loads() -> None:
    result, modules = run_importing(["--verbose", "9"])
    assert result.returncode == 2
    assert result.stderr == "otel-neuron-monitor: --verbose: 9 is outside 0..4\n"
    assert [package for package in HEAVY if loaded(modules, package)] == []


def test_a_simulated_runtime_and_the_system_groups_need_no_grpc_jsonschema_or_exporters(
    tmp_path: Path,
) -> None:
    config = {
        "period": "500ms",
        "neuron_runtimes": [{"address": "sim:", "metrics": [{"type": name} for name in RUNTIME_GROUPS]}],
        "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}],
    }
    path = write_config(tmp_path, config)
    result, modules = run_importing(
        ["-c", str(path), "--max-reports", "1", "--imds", "off"],
        {"OTEL_NEURON_PROCFS_PATH": str(FAKE_PROC / "a")},
    )
    assert result.returncode == 0, result.stderr
    (report,) = reports(result.stdout)
    assert report["neuron_runtime_data"][0]["error"] == ""
    unused = ("grpc", "jsonschema", "prometheus_client", "opentelemetry.exporter")
    assert [package for package in unused if loaded(modules, package)] == []


def test_validate_loads_jsonschema_and_checks_every_report(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"period": "500ms", "system_metrics": [{"type": "memory_info"}]})
    result, modules = run_importing(
        ["-c", str(path), "--max-reports", "1", "--imds", "off", "--validate"],
        {"OTEL_NEURON_PROCFS_PATH": str(FAKE_PROC / "a")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no schema mismatch reported
    assert json.loads(result.stdout)["system_data"]["memory_info"]["error"] == ""
    assert loaded(modules, "jsonschema")


def test_runtimes_on_snapshot_sockets_load_no_grpc_asyncio_or_ssl(tmp_path: Path) -> None:
    """The trn2-scale shape: local runtimes serving snapshot sockets, the JSON report. They are read
    on their sockets from the first fetch, so gRPC, asyncio and ssl (about 30 MB) never load."""
    recorder = InferenceRecorder(cores=2)
    recorder.register_model("resnet", [Subgraph("sg00", 0)])
    recorder.record("resnet", "completed", 0.004, 0.003)
    address = f"unix:{tmp_path}/rt.sock"
    server = serve_runtime_endpoint(recorder, address)
    config = {
        "period": "200ms",
        "neuron_runtimes": [{"address": address, "metrics": [{"type": name} for name in RUNTIME_GROUPS]}],
        "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}],
    }
    try:
        result, modules = run_importing(
            ["-c", str(write_config(tmp_path, config)), "--max-reports", "2", "--imds", "off"],
            {"OTEL_NEURON_PROCFS_PATH": str(FAKE_PROC / "a")},
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert [entry["error"] for entry in reports(result.stdout)[-1]["neuron_runtime_data"]] == [""]
    assert [
        package for package in ("grpc", "asyncio", "ssl", "http.client") if loaded(modules, package)
    ] == []
