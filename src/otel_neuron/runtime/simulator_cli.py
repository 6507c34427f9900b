"""otel-neuron-simulator: serve a synthetic Neuron runtime at an address until SIGTERM/SIGINT.

otel-neuron-simulator --address unix:/tmp/neuron.sock --cores 8 --models 4 --rate 500 --seed 1
"""

from __future__ import annotations

import os

# gRPC's core logs each client going away at INFO, and a port it cannot bind at ERROR (an
# `add_port.cc` line), on stderr; stderr is for our own one-line messages. Must be set before grpc
# is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from otel_neuron.runtime.server import serve_runtime_endpoint, unix_socket_path
from otel_neuron.runtime.simulator import Simulator, SimulatorOptions

PROG = "otel-neuron-simulator"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr, exit 2 (no usage dump)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog=PROG, description="Serve a seeded synthetic Neuron runtime over the runtime protocol."
    )
    parser.add_argument("--address", required=True, help="unix:/path, unix:///abs/path or host:port")
    parser.add_argument("--cores", type=int, default=4, help="NeuronCores (default 4)")
    parser.add_argument("--devices", type=int, default=1, help="Neuron devices (default 1)")
    parser.add_argument("--models", type=int, default=2, help="models loaded at start (default 2)")
    parser.add_argument("--rate", type=float, default=200.0, help="inferences per second (default 200)")
    parser.add_argument("--error-rate", type=float, default=0.02, help="fraction that fail (default 0.02)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--churn",
        type=float,
        default=30.0,
        help="mean seconds between model unload/load, 0: never (default 30)",
    )
    parser.add_argument("--ecc-per-hour", type=float, default=60.0, help="mean ECC events per device-hour")
    parser.add_argument(
        "--socket-mode", type=lambda text: int(text, 8), default=0o600, help="octal (default 600)"
    )
    arguments = parser.parse_args(argv)
    try:
        _options(arguments).validate()
    except ValueError as error:
        parser.error(str(error))
    return arguments


def _options(arguments: argparse.Namespace) -> SimulatorOptions:
    return SimulatorOptions(
        cores=arguments.cores,
        devices=arguments.devices,
        models=arguments.models,
        rate=arguments.rate,
        error_rate=arguments.error_rate,
        seed=arguments.seed,
        churn_s=arguments.churn,
        ecc_per_hour=arguments.ecc_per_hour,
    )


def _port_problem(address: str) -> str:
    """Why a host:port address cannot be listened on ("" if it can be tried); gRPC would take a port
    past 65535 modulo 65536 and listen somewhere else."""
    if unix_socket_path(address) is not None or ":" not in address:
        return ""  # serve_runtime_endpoint names these problems itself
    port = address.rpartition(":")[2]
    if port.isdigit() and not 0 < int(port) < 65536:
        return f"{address!r} is not an address like 127.0.0.1:50051 (the port must be 1 to 65535)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    problem = _port_problem(arguments.address)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    simulator = Simulator(_options(arguments))
    try:
        server = serve_runtime_endpoint(
            simulator.recorder, arguments.address, socket_mode=arguments.socket_mode, simulator=simulator
        )
    except (OSError, ValueError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    simulator.start()
    print(f"{PROG}: serving {arguments.address}", file=sys.stderr, flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        simulator.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
