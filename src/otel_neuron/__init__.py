"""otel-neuron: AWS neuron-monitor rebuilt as an OpenTelemetry component.

The public names below are imported on first use (PEP 562), so the monitor's command line does
not pay for the in-app instrumentation's imports, nor the app for the monitor's.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "NeuronInstrumentor": "otel_neuron.instrumentor",
    "latency_views": "otel_neuron.instrumentor",
    "LatencyExporter": "otel_neuron.latency_export",
    "recorder": "otel_neuron.process_recorder",
    "serve_runtime_endpoint": "otel_neuron.process_recorder",
    "set_recorder": "otel_neuron.process_recorder",
    "InferenceRecorder": "otel_neuron.runtime.recorder",
    "Subgraph": "otel_neuron.runtime.loaded_models",
    # Also importable from otel_neuron.runtime.recorder, as before.
    "HardwareError": "otel_neuron.runtime.inference_errors",
    "IncorrectInputError": "otel_neuron.runtime.inference_errors",
    "InferenceError": "otel_neuron.runtime.inference_errors",
    "InferenceTimeout": "otel_neuron.runtime.inference_errors",
    "ModelError": "otel_neuron.runtime.inference_errors",
    "NeuronRuntimeError": "otel_neuron.runtime.inference_errors",
    "NumericalError": "otel_neuron.runtime.inference_errors",
    "QueueFullError": "otel_neuron.runtime.inference_errors",
    "TransientError": "otel_neuron.runtime.inference_errors",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_neuron' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
