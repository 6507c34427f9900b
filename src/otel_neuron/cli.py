"""otel-neuron-monitor: neuron-monitor's command line, streaming the JSON report to stdout."""

from __future__ import annotations

import os

# gRPC's core logs connection events (a runtime going away) at INFO on stderr; the guide's
# stderr is ours to fill by --verbose. Must be set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

# Only what parsing the command line needs is imported here, so --version, --help and a mistyped
# option answer at once; the pipeline and the exporters (the OpenTelemetry SDK, numpy, gRPC, ...)
# are imported by the functions that run them, and only those the configuration uses.
from otel_neuron import __version__
from otel_neuron.exporters.options import (
    add_export_arguments,
    build_network_exporters,
    check_export_arguments,
    prometheus_requested,
)
from otel_neuron.kubernetes import KUBELET_SOCKET

if TYPE_CHECKING:
    from otel_neuron.config import MonitorConfig
    from otel_neuron.pipeline import SharedSources
    from otel_neuron.sources.kubelet import AllocationRefresher

_logger = logging.getLogger("otel_neuron")
# What a user asked for and should be told at --verbose 1, beside the errors (the port that
# `--prometheus 0` chose): above ERROR so that level shows it, named so it does not read as one.
NOTICE = logging.ERROR + 5
_VERBOSITY_LEVELS = {
    0: logging.CRITICAL + 1,
    1: logging.ERROR,
    2: logging.WARNING,
    3: logging.INFO,
    4: logging.DEBUG,
}

EPILOG = """\
With no option every metric group is collected every 5 seconds: the system groups, and the
five runtime groups of the runtime at unix:/run/neuron.sock (its entry carries an error while
nothing serves that address). One complete JSON report is written to stdout per update;
diagnostics go to stderr only.

Environment: OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME override resource attributes;
AWS_EC2_METADATA_DISABLED=true and AWS_EC2_METADATA_SERVICE_ENDPOINT steer the instance
metadata lookup; psutil's PROCFS_PATH is honoured through the environment variable
OTEL_NEURON_PROCFS_PATH (for tests and containers with /proc mounted elsewhere);
K8S_NODE_NAME (the downward API's spec.nodeName) becomes the resource's k8s.node.name.
"""


def _verbosity(text: str) -> int:
    try:
        level = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 4") from None
    if level not in _VERBOSITY_LEVELS:
        raise argparse.ArgumentTypeError(f"{level} is outside 0..4")
    return level


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _kubelet_socket(text: str) -> str:
    from otel_neuron.sources.kubelet import socket_path_of

    try:
        return socket_path_of(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr, like every other error (`otel-neuron-monitor: --max-reports: ...`),
        and exit 2; argparse's usage block stays with --help."""
        message = message.removeprefix("argument ").replace("\n", " ")
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="otel-neuron-monitor",
        description="Collect Neuron runtime and host metrics; stream neuron-monitor's JSON report to stdout "
        "and export the same metrics through OpenTelemetry.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c", "--config-file", metavar="PATH", help="path to a neuron-monitor JSON configuration file"
    )
    parser.add_argument(
        "--verbose",
        type=_verbosity,
        default=0,
        metavar="N",
        help="verbosity of diagnostics on stderr, 0 (none, the default) to 4 (most)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, print it with every period resolved, and exit",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="check every report against the report JSON Schema; a mismatch is printed on stderr",
    )
    parser.add_argument(
        "--imds",
        choices=("auto", "on", "off"),
        default="auto",
        help="ask EC2's instance metadata service: only on EC2 evidence (auto, default), "
        "always (on), never (off)",
    )
    parser.add_argument(
        "--output-format",
        choices=("1", "2", "none"),
        default="1",
        help="report format written to stdout: neuron-monitor 1.x as in the guide (default), 2.x, or none "
        "(no report: a daemon that only exports, with --otlp or --prometheus)",
    )
    parser.add_argument(
        "--from-stdin",
        action="store_true",
        help="read neuron-monitor's reports piped in (neuron-monitor | otel-neuron-monitor --from-stdin); "
        "without -c, one runtime with the five runtime groups is read from stdin",
    )
    parser.add_argument("--max-reports", type=_positive_int, metavar="N", help="stop after N reports")
    parser.add_argument(
        "--kubernetes",
        nargs="?",
        const=KUBELET_SOCKET,
        type=_kubelet_socket,
        metavar="SOCKET",
        help="label NeuronCores' and devices' metrics with the pod holding them, from the kubelet's "
        f"PodResources socket (default {KUBELET_SOCKET})",
    )
    add_export_arguments(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_export_arguments(parser, args)
    return args


def configure_logging(verbosity: int) -> None:
    logging.addLevelName(NOTICE, "NOTICE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _logger.handlers[:] = [handler]
    _logger.setLevel(_VERBOSITY_LEVELS[verbosity])
    _logger.propagate = False
    # The OpenTelemetry SDK logs through its own loggers: same level, same format, same stream.
    sdk_logger = logging.getLogger("opentelemetry")
    sdk_logger.handlers[:] = [handler]
    sdk_logger.setLevel(_VERBOSITY_LEVELS[verbosity])
    sdk_logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    configure_logging(args.verbose)
    from otel_neuron.config import DEFAULT_RUNTIME_ADDRESS, ConfigError, default_config, load_config

    procfs = os.environ.get("OTEL_NEURON_PROCFS_PATH")
    if procfs:
        import psutil

        psutil.PROCFS_PATH = procfs
    v2_source = "stdin:" if args.from_stdin else "neuron-monitor:"
    try:
        if args.config_file:
            config = load_config(args.config_file, v2_source)
        else:
            config = default_config("stdin:" if args.from_stdin else DEFAULT_RUNTIME_ADDRESS)
    except ConfigError as error:
        print(f"otel-neuron-monitor: {error}", file=sys.stderr)
        return 2
    if args.check_config:
        return _check_config(config)
    try:
        return _run(args, config)
    except KeyboardInterrupt:
        return 0


def _check_config(config: MonitorConfig) -> int:
    import json

    from otel_neuron.config import ConfigError, check_paths
    from otel_neuron.pipeline import build_groups, close_groups

    try:
        close_groups(build_groups(config))  # addresses and group types, as the monitor would see them
        check_paths(config)
    except ConfigError as error:
        print(f"otel-neuron-monitor: {error}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(config.describe(), indent=2), flush=True)
    except BrokenPipeError:  # `--check-config | head -1`: the reader had what it wanted
        _silence_stdout()
    return 0


def _run(args: argparse.Namespace, config: MonitorConfig) -> int:
    from otel_neuron.config import ConfigError
    from otel_neuron.exporters.report_json import ReportJsonExporter
    from otel_neuron.pipeline import (
        MonitorPipeline,
        SharedSources,
        build_groups,
        close_groups,
        settle_garbage_collector,
    )
    from otel_neuron.resource import LookupResource
    from otel_neuron.sources.instance import InstanceLookup

    # Runs beside start-up and the first period; reports say "in progress" until it ends (<= ~1 s).
    instance_lookup = InstanceLookup.start(args.imds)
    try:
        # The 2.x report's root neuron_hardware_info (also read by the neuron-monitor Prometheus
        # names): a bridged stream gives it too.
        wants_hardware = args.output_format == "2" or args.prometheus_names == "neuron-monitor"
        shared = SharedSources()
        groups = build_groups(config, bridge_hardware_info=wants_hardware, shared=shared)
    except ConfigError as error:
        print(f"otel-neuron-monitor: {error}", file=sys.stderr)
        return 2
    report = (
        None
        if args.output_format == "none"
        else ReportJsonExporter(
            runtime_count=len(config.runtimes),
            out=sys.stdout,
            validate=_report_validator() if args.validate else None,
            output_format=args.output_format,
        )
    )
    try:
        network = build_network_exporters(args)
        kubernetes = _kubelet_refresher(args.kubernetes, config)
        resource = LookupResource(instance_lookup, _stream_instance_facts(config, shared))
        exporters = [*network] if report is None else [report, *network]
        pipeline = MonitorPipeline(groups, exporters, resource, kubernetes)
    except (ValueError, OSError) as error:  # e.g. the Prometheus port is taken
        close_groups(groups)
        print(f"otel-neuron-monitor: {_describe_startup_error(error)}", file=sys.stderr)
        return 2
    if prometheus_requested(args):
        _log_listen_addresses(network)

    stop = threading.Event()
    _install_signal_handlers(stop)
    try:
        settle_garbage_collector()
        if network:  # their requests or expositions: buffers of a megabyte every period
            from otel_neuron.heap import keep_period_buffers

            keep_period_buffers()
        pipeline.run(stop, max_reports=args.max_reports)
    finally:
        pipeline.shutdown()
        if report is not None and report.closed:
            _silence_stdout()
    return 0


def _stream_instance_facts(
    config: MonitorConfig, shared: SharedSources
) -> Callable[[], Mapping[str, str]] | None:
    """A bridged neuron-monitor's instance_info, for when our own lookup finds no instance (None
    without a neuron-monitor source)."""
    from otel_neuron.sources.neuron_monitor_address import is_bridge_address

    if not any(is_bridge_address(runtime.address) for runtime in config.runtimes):
        return None
    return shared.stream_instance_info


def _kubelet_refresher(socket_path: str | None, config: MonitorConfig) -> AllocationRefresher | None:
    """--kubernetes: the kubelet's allocation, read beside the pipeline (None without): as often as
    the monitor reports, at most once a second (a read more often would never be reported)."""
    if socket_path is None:
        return None
    from otel_neuron.sources.kubelet import AllocationRefresher, PodResourcesSource

    return AllocationRefresher(
        PodResourcesSource(socket_path), interval_s=max(1.0, min(config.periods(), default=1.0))
    )


def _describe_startup_error(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"cannot start an exporter: {error.strerror}"
    return str(error)


def _report_validator() -> Callable[[Any], str]:
    """--validate: the report schema's check (jsonschema is imported for it alone)."""
    from otel_neuron.report_schema import report_problem

    return report_problem


def _log_listen_addresses(exporters: Sequence[object]) -> None:
    from otel_neuron.exporters.prometheus import PrometheusExporter

    for exporter in exporters:
        if isinstance(exporter, PrometheusExporter) and exporter.address is not None:
            host, port = exporter.address
            shown = f"[{host}]" if ":" in host else host
            _logger.log(NOTICE, "Prometheus metrics served on http://%s:%d/metrics", shown, port)


def _install_signal_handlers(stop: threading.Event) -> None:
    import signal

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)


def _silence_stdout() -> None:
    """The reader went away (`| head -1`): make the final flush at exit a no-op, not a BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
