"""config_schema applies monitor-config.schema.json exactly as jsonschema does, without importing it."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_neuron.config import CONFIG_SCHEMA, ConfigError, config_from_document, load_schema
from otel_neuron.config_schema import SchemaChecker
from otel_neuron.semconv import RUNTIME_GROUPS, SYSTEM_GROUPS

SCHEMA = load_schema(CONFIG_SCHEMA)
CHECKER = SchemaChecker(SCHEMA)
REFERENCE = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
good_durations = st.sampled_from(["1s", "500ms", " 2m ", "1.5h", "10ms"])
runtime_groups = st.fixed_dictionaries(
    {"type": st.sampled_from(RUNTIME_GROUPS)}, optional={"period": good_durations}
)
system_groups = st.fixed_dictionaries(
    {"type": st.sampled_from(SYSTEM_GROUPS)}, optional={"period": good_durations}
)
runtimes = st.fixed_dictionaries(
    {
        "address": st.sampled_from(["unix:/run/neuron.sock", "sim:", "127.0.0.1:50051"]),
        "metrics": st.lists(runtime_groups, max_size=3),
    },
    optional={"period": good_durations},
)
valid_documents = st.fixed_dictionaries(
    {},
    optional={
        "period": good_durations,
        "neuron_runtimes": st.lists(runtimes, max_size=3),
        "system_metrics": st.lists(system_groups, max_size=2),
    },
)
# What a mutation puts somewhere: values of every JSON type, strings each keyword refuses, long lists.
bad_strings = st.sampled_from(
    ["2x", "", "1", "s", "1 s", "1s\n", "\u0661s", "cpu", "Memory_info", "x" * 4096, "x" * 4097]
)
bad_values = st.one_of(
    scalars,
    bad_strings,
    st.builds(list),
    st.builds(dict),
    # fresh objects, never one shared by reference: a later mutation changes one place only
    st.lists(st.builds(lambda: {"type": "vcpu_usage"}), min_size=16, max_size=17),
    st.lists(st.builds(dict), min_size=128, max_size=129),
)


def _places(document: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a document."""
    places: list[tuple[Any, Any]] = []
    stack = [document] if isinstance(document, (dict, list)) else []
    while stack:
        container = stack.pop()
        keys = container.keys() if isinstance(container, dict) else range(len(container))
        for key in keys:
            places.append((container, key))
            if isinstance(container[key], (dict, list)):
                stack.append(container[key])
    return places


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """A valid configuration with up to three mutations: a value replaced (a string by one some
    keyword refuses, or anything by anything), a key removed or added."""
    document: Any = draw(valid_documents)
    for _ in range(draw(st.integers(0, 3))):
        places = _places(document)
        action = draw(st.sampled_from(["string", "replace", "remove", "add", "root"]))
        strings = [(container, key) for container, key in places if isinstance(container[key], str)]
        if action == "string" and strings:
            container, key = draw(st.sampled_from(strings))
            container[key] = draw(bad_strings)
            continue
        if action in ("root", "string") or not places:
            document = draw(st.one_of(bad_values, st.just(document)))
            continue
        container, key = draw(st.sampled_from(places))
        if action == "replace":
            container[key] = draw(bad_values)
        elif action == "remove":
            container.pop(key)
        elif isinstance(container, dict):
            container[draw(st.sampled_from(["extra", "Period", "a b", "type", "metrics"]))] = draw(bad_values)
    return document


def verdicts(errors: Any) -> list[tuple[str, list[Any], Any, str]]:
    return [(e.validator, list(e.absolute_path), e.validator_value, e.message) for e in errors]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_every_violation_is_jsonschemas_in_its_order(document: Any) -> None:
    assert verdicts(CHECKER.iter_errors(document)) == verdicts(REFERENCE.iter_errors(document))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"neuron_runtimes": [{"address": "", "metrics": []}]},
            "neuron_runtimes[0].address: '' should be non-empty",
        ),
        (
            {"neuron_runtimes": [{"metrics": [], "x": 1}]},
            "neuron_runtimes[0].x: unknown key (allowed: address, period, metrics)",
        ),
        ({"neuron_runtimes": [{"metrics": []}]}, 'neuron_runtimes[0]: missing required key "address"'),
        ({"period": 5}, "period: expected a string, got 5"),
        (
            {"neuron_runtimes": [{"address": "x" * 4097, "metrics": []}]},
            "neuron_runtimes[0].address: 4097 characters; at most 4096 are allowed",
        ),
        (
            {"system_metrics": [{"type": "cpu"}]},
            'system_metrics[0].type: unknown metric group "cpu" (known: vcpu_usage, memory_info)',
        ),
        (
            {"system_metrics": {"type": "vcpu_usage"}},
            'system_metrics: expected an array, got {"type": "vcpu_usage"}',
        ),
    ],
)
def test_a_config_gets_the_same_one_line_error_as_before(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_document(document, "m.conf")
    assert str(caught.value) == f"m.conf: {message}"


def test_the_packaged_schema_is_a_valid_json_schema() -> None:
    jsonschema.validators.validator_for(SCHEMA).check_schema(SCHEMA)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "minProperties": 1},
        {"properties": {"a": {"format": "uri"}}},
        {"$ref": "https://example.com/other.json"},
        {"$ref": "#/$defs/missing"},
        {"type": "decimal"},
    ],
)
def test_a_keyword_it_does_not_apply_is_refused_not_skipped(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SchemaChecker(schema)
