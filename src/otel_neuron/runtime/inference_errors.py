"""The exceptions an application raises (or wraps) to classify a failed inference, and `classify`.

Outcomes and error types are the guide's `inference_summary` and `error_summary` keys. How an
exception maps to them:

    exception                                   outcome                  error type
    NumericalError, FloatingPointError          completed_with_num_err   numerical
    TransientError                              completed_with_err       transient
    ModelError                                  completed_with_err       model
    HardwareError                               completed_with_err       hardware
    NeuronRuntimeError                          completed_with_err       runtime
    InferenceTimeout, TimeoutError              timed_out                runtime
    IncorrectInputError, ValueError             incorrect_input          generic
    QueueFullError, queue.Full                  failed_to_queue          runtime
    any other exception                         completed_with_err       generic
"""

from __future__ import annotations

import queue


class InferenceError(Exception):
    """Base of the classified inference failures; `outcome` and `error_type` say how it counts."""

    outcome = "completed_with_err"
    error_type = "generic"


class NumericalError(InferenceError):
    outcome, error_type = "completed_with_num_err", "numerical"


class TransientError(InferenceError):
    outcome, error_type = "completed_with_err", "transient"


class ModelError(InferenceError):
    outcome, error_type = "completed_with_err", "model"


class HardwareError(InferenceError):
    outcome, error_type = "completed_with_err", "hardware"


class NeuronRuntimeError(InferenceError):
    outcome, error_type = "completed_with_err", "runtime"


class InferenceTimeout(InferenceError):
    outcome, error_type = "timed_out", "runtime"


class IncorrectInputError(InferenceError):
    outcome, error_type = "incorrect_input", "generic"


class QueueFullError(InferenceError):
    outcome, error_type = "failed_to_queue", "runtime"


def classify(error: BaseException | None) -> tuple[str, str | None]:
    """(outcome, error type) of an inference that ended with `error` (None: it succeeded)."""
    if error is None:
        return "completed", None
    if isinstance(error, InferenceError):
        return error.outcome, error.error_type
    if isinstance(error, FloatingPointError):
        return "completed_with_num_err", "numerical"
    if isinstance(error, TimeoutError):  # also asyncio/concurrent.futures TimeoutError on 3.11+
        return "timed_out", "runtime"
    if isinstance(error, queue.Full):
        return "failed_to_queue", "runtime"
    if isinstance(error, ValueError):
        return "incorrect_input", "generic"
    return "completed_with_err", "generic"
