"""The JSON reports rendered from OpenTelemetry data (MetricsData), without any source or gRPC."""

from otel_neuron.report.section_table import SectionRenderer
from otel_neuron.report.v1 import report_from_metrics
from otel_neuron.report.v2 import StandingReportV2, report_v2_from_metrics

__all__ = ["SectionRenderer", "StandingReportV2", "report_from_metrics", "report_v2_from_metrics"]
