"""otel-neuron: AWS neuron-monitor rebuilt as an OpenTelemetry component."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
