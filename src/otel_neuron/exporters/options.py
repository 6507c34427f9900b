"""The command-line options of the OTLP and Prometheus exporters, and building them from those options.

parser = argparse.ArgumentParser()
add_export_arguments(parser)
args = parser.parse_args(["--otlp", "--prometheus", "9464"])
check_export_arguments(parser, args)        # parser.error(...) on a bad value
exporters = build_network_exporters(args)   # [BackgroundExporter(OTLP), PrometheusExporter]

Importing this module costs only argparse: the exporters (the OpenTelemetry SDK, gRPC or
prometheus_client) are imported when an option asks for them, so `--help` and a monitor without
--otlp or --prometheus never load them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricExporter

# The values of --prometheus-names, and the default of --otlp-backlog (also the exporters' defaults).
NAMING_MODES = ("otel", "neuron-monitor")
DEFAULT_BACKLOG = 256


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("export")
    group.add_argument(
        "--otlp",
        nargs="?",
        const="",
        default=None,
        metavar="ENDPOINT",
        help="export OTLP metrics (also enabled by OTEL_METRICS_EXPORTER=otlp); ENDPOINT like "
        "127.0.0.1:4317 or https://collector:4317, default from OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT "
        "or localhost:4317 (grpc) / localhost:4318 (http/protobuf, see OTEL_EXPORTER_OTLP_PROTOCOL). "
        "Headers, timeout, TLS files, compression and temporality come from the standard "
        "OTEL_EXPORTER_OTLP_* variables",
    )
    group.add_argument(
        "--otlp-backlog",
        type=int,
        default=DEFAULT_BACKLOG,
        metavar="N",
        help="reports kept while the collector is unreachable, oldest dropped first "
        f"(default {DEFAULT_BACKLOG})",
    )
    group.add_argument(
        "--prometheus",
        nargs="?",
        const="",
        default=None,
        metavar="[HOST:]PORT",
        help="serve the latest samples on http://HOST:PORT/metrics (HOST defaults to 127.0.0.1; "
        "PORT to 9464, or 8000 with --prometheus-names neuron-monitor)",
    )
    group.add_argument(
        "--prometheus-names",
        choices=NAMING_MODES,
        default=None,
        help="Prometheus metric names: OpenTelemetry's (otel, default) or those of AWS's "
        "neuron-monitor-prometheus.py (neuron-monitor); either one enables --prometheus on its default "
        "port (9464 or 8000) if not given",
    )


def check_export_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> None:
    """Validate the export options now, so a typo is one line on stderr before anything starts."""
    env = os.environ if environ is None else environ
    try:
        if _may_request_otlp(args, env):
            from otel_neuron.exporters.otlp import normalize_endpoint, otlp_protocol, otlp_requested

            if otlp_requested(args.otlp is not None, env):
                protocol = otlp_protocol(env)
                if args.otlp:
                    normalize_endpoint(args.otlp, protocol)
        if args.otlp_backlog < 1:
            raise ValueError(f"--otlp-backlog: {args.otlp_backlog} must be at least 1")
        if prometheus_requested(args):
            from otel_neuron.exporters.prometheus import parse_listen_address

            parse_listen_address(args.prometheus, args.prometheus_names or "otel")
        if args.output_format == "none":
            if args.validate:
                raise ValueError("--validate: there is no report to check with --output-format none")
            if not prometheus_requested(args) and not _may_request_otlp(args, env):
                raise ValueError(
                    "--output-format none: nothing would leave the monitor; add --otlp or --prometheus"
                )
    except ValueError as error:
        parser.error(str(error))


def prometheus_requested(args: argparse.Namespace) -> bool:
    """True when --prometheus or --prometheus-names was given."""
    return args.prometheus is not None or args.prometheus_names is not None


def _may_request_otlp(args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    """A first look that needs no import: False means OTLP is surely off (otlp_requested decides)."""
    return args.otlp is not None or bool(env.get("OTEL_METRICS_EXPORTER", "").strip())


def build_network_exporters(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> list[MetricExporter]:
    """The OTLP (in the background) and Prometheus exporters the options ask for.

    Raises ValueError for a bad option and OSError when the Prometheus port cannot be bound.
    """
    env = os.environ if environ is None else environ
    exporters: list[MetricExporter] = []
    if _may_request_otlp(args, env):
        from otel_neuron.exporters.otlp import BackgroundExporter, build_otlp_exporter, otlp_requested

        if otlp_requested(args.otlp is not None, env):
            exporter = build_otlp_exporter(args.otlp or None, env)
            exporters.append(BackgroundExporter(exporter, max_backlog=args.otlp_backlog))
    if prometheus_requested(args):
        from otel_neuron.exporters.prometheus import PrometheusExporter, parse_listen_address

        names = args.prometheus_names or "otel"
        try:
            listen = parse_listen_address(args.prometheus, names)
            exporters.append(PrometheusExporter(listen=listen, names=names))
        except OSError:
            for exporter in exporters:
                exporter.shutdown(timeout_millis=500)
            raise
    return exporters
