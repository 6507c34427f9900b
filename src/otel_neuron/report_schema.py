"""Validate reports against schemas/neuron-monitor-report.schema.json."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema

from otel_neuron.config import json_path, load_schema

REPORT_SCHEMA = "neuron-monitor-report.schema.json"


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = load_schema(REPORT_SCHEMA)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def report_problem(report: Any) -> str:
    """ "" when `report` matches the schema, else one line naming the JSON path and the problem."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(report))
    if error is None:
        return ""
    return f"{json_path(error.absolute_path) or '(top level)'}: {error.message}"
