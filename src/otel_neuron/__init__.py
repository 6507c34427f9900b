"""otel-neuron: AWS neuron-monitor rebuilt as an OpenTelemetry component."""

from __future__ import annotations

__version__ = "0.1.0"

# In-app instrumentation (docs/in-app.md). Imported after __version__, which these modules read.
from otel_neuron.instrumentor import NeuronInstrumentor, latency_views  # noqa: E402
from otel_neuron.process_recorder import recorder, serve_runtime_endpoint, set_recorder  # noqa: E402
from otel_neuron.runtime.recorder import (  # noqa: E402
    HardwareError,
    IncorrectInputError,
    InferenceError,
    InferenceRecorder,
    InferenceTimeout,
    NeuronRuntimeError,
    NumericalError,
    QueueFullError,
    Subgraph,
    TransientError,
)

__all__ = [
    "__version__",
    "HardwareError",
    "IncorrectInputError",
    "InferenceError",
    "InferenceRecorder",
    "InferenceTimeout",
    "NeuronInstrumentor",
    "NeuronRuntimeError",
    "NumericalError",
    "QueueFullError",
    "Subgraph",
    "TransientError",
    "latency_views",
    "recorder",
    "serve_runtime_endpoint",
    "set_recorder",
]
