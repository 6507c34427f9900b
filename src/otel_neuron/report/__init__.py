"""The JSON reports rendered from OpenTelemetry data (MetricsData), without any source or gRPC."""

from otel_neuron.report.v2 import SectionRenderer, StandingReportV2, report_v2_from_metrics

__all__ = ["SectionRenderer", "StandingReportV2", "report_v2_from_metrics"]
