"""The inference recorder of this process, and serving it as a runtime endpoint.

An instrumented application records every inference into one `InferenceRecorder`: the one
`recorder()` returns (created on first use from the environment) unless it installs its own with
`set_recorder()` first. `NeuronInstrumentor` reports that recorder through the application's
MeterProvider; `serve_runtime_endpoint()` lets an otel-neuron-monitor daemon poll it like any runtime.

    import otel_neuron
    recorder = otel_neuron.recorder()
    with recorder.time("resnet50"):
        outputs = model(inputs)
    handle = otel_neuron.serve_runtime_endpoint("unix:/run/neuron.sock")
    ...
    handle.stop()

Environment (read when the recorder is first created):

    OTEL_NEURON_CORES      NeuronCores this process uses (default: the count in NEURON_RT_VISIBLE_CORES,
                           else NEURON_RT_NUM_CORES, else 1)
    OTEL_NEURON_DEVICES    Neuron devices those cores are spread over (default 1)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from otel_neuron.runtime.recorder import InferenceRecorder
from otel_neuron.runtime.server import RuntimeEndpointServer
from otel_neuron.runtime.server import serve_runtime_endpoint as _serve

_lock = threading.Lock()
_recorder: InferenceRecorder | None = None


def recorder() -> InferenceRecorder:
    """This process's inference recorder, created on first use (see the module's environment)."""
    return _process_recorder()


def _process_recorder() -> InferenceRecorder:
    global _recorder
    current = _recorder
    if current is not None:
        return current
    with _lock:
        if _recorder is None:
            cores, devices = placement_from_environment(os.environ)
            _recorder = InferenceRecorder(cores=cores, devices=devices)
        return _recorder


def set_recorder(new: InferenceRecorder) -> InferenceRecorder | None:
    """Make `new` this process's recorder; returns the previous one (None if there was none).

    Call it before `NeuronInstrumentor().instrument()` and `serve_runtime_endpoint()`: they bind
    to the recorder current at that moment.
    """
    global _recorder
    if not isinstance(new, InferenceRecorder):
        raise ValueError(f"set_recorder needs an InferenceRecorder, not {type(new).__name__}")
    with _lock:
        previous, _recorder = _recorder, new
    return previous


def serve_runtime_endpoint(
    address: str,
    recorder: InferenceRecorder | None = None,
    socket_mode: int = 0o600,
) -> RuntimeEndpointServer:
    """Serve this process's recorder (or `recorder`) at `address` for otel-neuron-monitor daemons.

    `address` is ``unix:/path``, ``unix:///abs/path`` or ``host:port``. A unix socket is created
    with `socket_mode` (0600: only this user's daemons may read it); a stale socket file left by a
    crashed process is replaced, one a live process serves is an OSError; `stop()` on the returned
    handle ends serving and removes the file. Raises ValueError for a bad address.
    """
    return _serve(recorder if recorder is not None else _process_recorder(), address, socket_mode=socket_mode)


def placement_from_environment(environ: Mapping[str, str]) -> tuple[int, int]:
    """(cores, devices) for the process recorder; ValueError naming the variable when one is bad."""
    cores = _positive(environ, "OTEL_NEURON_CORES")
    if cores is None:
        cores = _count_cores(environ.get("NEURON_RT_VISIBLE_CORES", ""))
    if cores is None:
        cores = _positive(environ, "NEURON_RT_NUM_CORES") or 1
    devices = _positive(environ, "OTEL_NEURON_DEVICES") or 1
    return cores, min(devices, cores)


def _positive(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{name}={text!r} must be at least 1")
    return value


def _count_cores(text: str) -> int | None:
    """How many cores NEURON_RT_VISIBLE_CORES names ("0-3", "0,2,5", "4"); None if unset or unreadable."""
    total = 0
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            total += (int(high) - int(low) + 1) if high else 1
        except ValueError:
            return None
    return total if total > 0 else None
