"""docs/metrics.md names exactly the instruments semconv declares, so the reference cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from otel_neuron import semconv

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
# A metric name as the doc writes it in code spans: `neuron.core.utilization`, `system.cpu.utilization`.
_METRIC_IN_DOC = re.compile(r"`((?:neuron|system)\.[a-z_.]+)`")


def _declared() -> dict[str, semconv.InstrumentSpec]:
    specs = [value for value in vars(semconv).values() if isinstance(value, semconv.InstrumentSpec)]
    return {spec.name: spec for spec in specs}


def _attribute_keys() -> set[str]:
    """Attribute keys, point or resource, which the doc writes in the same dotted form."""
    keys: set[str] = set()
    for name, value in vars(semconv).items():
        if name.isupper() and isinstance(value, str):
            keys.add(value)
        elif name.isupper() and isinstance(value, dict):
            keys.update(v for v in value.values() if isinstance(v, str))
    return {key for key in keys if "." in key}


def test_every_declared_instrument_is_in_the_reference() -> None:
    text = DOC.read_text()
    missing = sorted(name for name in _declared() if f"`{name}`" not in text)
    assert missing == []


def test_every_metric_the_reference_names_is_declared() -> None:
    named = set(_METRIC_IN_DOC.findall(DOC.read_text()))
    unknown = sorted(named - set(_declared()) - _attribute_keys())
    assert unknown == []
