"""Runs otel-neuron-monitor as a user would: the console script, as a subprocess, with a clean environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
FAKE_PROC = FIXTURES / "proc"


def monitor_command() -> list[str]:
    script = Path(sys.executable).with_name("otel-neuron-monitor")
    if script.exists():
        return [str(script)]
    found = shutil.which("otel-neuron-monitor")
    return [found] if found else [sys.executable, "-m", "otel_neuron"]


def clean_environment(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """The caller's environment without anything that steers the monitor, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "AWS_")) and key not in ("PYTHONWARNINGS",)
    }
    env.update(extra)
    return env


def write_config(directory: Path, document: Any, name: str = "monitor.conf") -> Path:
    path = directory / name
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def run_monitor(
    args: Sequence[str], env: Mapping[str, str] = {}, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*monitor_command(), *args],
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_monitor(args: Sequence[str], env: Mapping[str, str] = {}) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*monitor_command(), *args],
        env=clean_environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reports(stdout: str) -> list[dict[str, Any]]:
    """Every line of stdout as a JSON document (a line that is not one fails the test)."""
    return [json.loads(line) for line in stdout.splitlines()]
