"""The monitor config: the guide's format, period inheritance, one-line errors naming file and JSON path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_neuron.config import ConfigError, GroupConfig, MonitorConfig, load_config, parse_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(tmp_path: Path, text: str, name: str = "monitor.conf") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def periods_of(config: MonitorConfig) -> dict[str, float]:
    """ "system.vcpu_usage" / "0.hw_counters" -> resolved period."""
    resolved = {f"system.{g.type}": g.period for g in config.system_groups}
    for runtime in config.runtimes:
        resolved.update({f"{runtime.index}.{g.type}": g.period for g in runtime.groups})
    return resolved


# --- good files


def test_the_guides_example_config_loads_with_the_guides_periods() -> None:
    config = load_config(EXAMPLES / "monitor.conf")

    assert periods_of(config) == {
        "0.neuroncore_counters": 1.0,
        "0.memory_used": 1.0,
        "0.neuron_runtime_vcpu_usage": 1.0,
        "0.inference_stats": 1.0,
        "0.hw_counters": 2.0,
        "system.vcpu_usage": 1.0,
        "system.memory_info": 1.0,
    }
    assert config.runtimes[0].address == "unix:/run/neuron.sock"
    assert config.periods() == [1.0, 2.0]


GOOD = [
    pytest.param(
        '{"system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}]}',
        {"system.vcpu_usage": 5.0, "system.memory_info": 5.0},
        id="no-period-anywhere-means-5s",
    ),
    pytest.param(
        '{"period": "500ms", "system_metrics": '
        '[{"type": "vcpu_usage"}, {"type": "memory_info", "period": "2m"}]}',
        {"system.vcpu_usage": 0.5, "system.memory_info": 120.0},
        id="group-overrides-root",
    ),
    pytest.param(
        """{"period": "1h",
            "neuron_runtimes": [
              {"address": "unix:/a", "period": "2s",
               "metrics": [{"type": "inference_stats"}, {"type": "hw_counters", "period": "1.5s"}]},
              {"address": "unix:/b", "metrics": [{"type": "inference_stats"}]}],
            "system_metrics": [{"type": "memory_info"}]}""",
        {
            "0.inference_stats": 2.0,  # runtime's period
            "0.hw_counters": 1.5,  # group's own period wins over its runtime's
            "1.inference_stats": 3600.0,  # the root's
            "system.memory_info": 3600.0,  # the runtime's period is not the system groups' business
        },
        id="group-then-runtime-then-root",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": "unix:/a", "period": "3s", "metrics": [{"type": "memory_used"}]}]}',
        {"0.memory_used": 3.0},
        id="runtime-without-root",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": "unix:/a", "metrics": [{"type": "vcpu_usage", "period": "2s"}]}]}',
        {"0.neuron_runtime_vcpu_usage": 2.0},
        id="vcpu_usage-is-the-runtime-vcpu-group-in-neuron_runtimes",
    ),
    pytest.param(
        '{"system_metrics": [{"type": "vcpu_usage", "period": " 2s "}]}',
        {"system.vcpu_usage": 2.0},
        id="blanks-around-a-duration",
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_good_files_resolve_every_period(tmp_path: Path, text: str, expected: dict[str, float]) -> None:
    assert periods_of(load_config(write(tmp_path, text))) == expected


def test_the_same_group_under_two_runtimes_is_no_duplicate(tmp_path: Path) -> None:
    text = json.dumps(
        {
            "neuron_runtimes": [
                {"address": a, "metrics": [{"type": "hw_counters"}]} for a in ("unix:/a", "unix:/b")
            ]
        }
    )
    config = load_config(write(tmp_path, text))
    assert [r.groups for r in config.runtimes] == [(GroupConfig("hw_counters", 5.0),)] * 2


# --- bad files

MORE = "\u2026"  # the message goes on: compare up to here

BAD = [
    pytest.param("", "monitor.conf: the file is empty; expected a JSON object", id="empty"),
    pytest.param(" \n\t\n", "monitor.conf: the file is empty; expected a JSON object", id="blank"),
    pytest.param(
        "period = 1s\n", "monitor.conf: line 1 column 1: not valid JSON: Expecting value", id="not-json"
    ),
    pytest.param(
        '{\n  "period": "1s",\n}\n',
        "monitor.conf: line 3 column 1: not valid JSON: Expecting property name enclosed in double quotes",
        id="trailing-comma-names-the-line",
    ),
    pytest.param(
        '{"period": ' + "1" * 5000 + "}",
        "monitor.conf: not valid JSON: Exceeds the limit (4300 digits) for integer string conversion: "
        "value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit",
        id="integer-too-long-for-python",
    ),
    pytest.param("[]", "monitor.conf: (top level): expected an object, got []", id="top-level-array"),
    pytest.param(
        '{"system_metrics": [{"type": "cpu_usage"}]}',
        'monitor.conf: system_metrics[0].type: unknown metric group "cpu_usage" '
        "(known: vcpu_usage, memory_info)",
        id="unknown-system-type",
    ),
    pytest.param(
        '{"system_metrics": [{"type": "hw_counters"}]}',
        'monitor.conf: system_metrics[0].type: unknown metric group "hw_counters" '
        "(known: vcpu_usage, memory_info)",
        id="runtime-type-under-system_metrics",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": "unix:/a", "metrics": [{"type": "memory_info"}]}]}',
        'monitor.conf: neuron_runtimes[0].metrics[0].type: unknown metric group "memory_info" (known: '
        "neuroncore_counters, memory_used, neuron_runtime_vcpu_usage, vcpu_usage, "
        "inference_stats, hw_counters" + MORE,  # later issues add runtime groups after the guide's
        id="system-type-under-a-runtime",
    ),
    pytest.param(
        '{"perid": "1s"}',
        "monitor.conf: perid: unknown key (allowed: period, neuron_runtimes, system_metrics)",
        id="unknown-root-key",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": "unix:/a", "metrics": [], "socket": "x"}]}',
        "monitor.conf: neuron_runtimes[0].socket: unknown key (allowed: address, period, metrics)",
        id="unknown-runtime-key",
    ),
    pytest.param(
        '{"system_metrics": [{"type": "vcpu_usage", "interval": "1s"}]}',
        "monitor.conf: system_metrics[0].interval: unknown key (allowed: type, period)",
        id="unknown-group-key",
    ),
    pytest.param('{"period": 5}', "monitor.conf: period: expected a string, got 5", id="period-a-number"),
    pytest.param(
        '{"system_metrics": {"type": "vcpu_usage"}}',
        'monitor.conf: system_metrics: expected an array, got {"type": "vcpu_usage"}',
        id="system_metrics-an-object",
    ),
    pytest.param(
        '{"system_metrics": ["vcpu_usage"]}',
        'monitor.conf: system_metrics[0]: expected an object, got "vcpu_usage"',
        id="group-a-string",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": 7, "metrics": []}]}',
        "monitor.conf: neuron_runtimes[0].address: expected a string, got 7",
        id="address-a-number",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"metrics": []}]}',
        'monitor.conf: neuron_runtimes[0]: missing required key "address"',
        id="runtime-without-address",
    ),
    pytest.param(
        '{"system_metrics": [{"period": "1s"}]}',
        'monitor.conf: system_metrics[0]: missing required key "type"',
        id="group-without-type",
    ),
    pytest.param(
        '{"system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}, {"type": "vcpu_usage"}]}',
        'monitor.conf: system_metrics[2].type: "vcpu_usage" is already listed at system_metrics[0]',
        id="system-group-twice",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": "unix:/a", "metrics": '
        '[{"type": "neuron_runtime_vcpu_usage"}, {"type": "vcpu_usage"}]}]}',
        'monitor.conf: neuron_runtimes[0].metrics[1].type: "vcpu_usage" is already listed at '
        "neuron_runtimes[0].metrics[0]",
        id="runtime-vcpu-group-twice-under-its-two-names",
    ),
    pytest.param(
        '{"period": "0s"}', 'monitor.conf: period: "0s" must be longer than zero', id="zero-root-period"
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": "unix:/a", "period": "-1s", "metrics": []}]}',
        'monitor.conf: neuron_runtimes[0].period: "-1s" is not a duration like "500ms", "2s", "1m", "1h"',
        id="negative-runtime-period",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": "unix:/a", "metrics": [{"type": "hw_counters"}, '
        '{"type": "inference_stats", "period": "2x"}]}]}',
        "monitor.conf: neuron_runtimes[0].metrics[1].period: "
        '"2x" is not a duration like "500ms", "2s", "1m", "1h"',
        id="unknown-unit-in-a-group",
    ),
    pytest.param(
        '{"system_metrics": [{"type": "memory_info", "period": "5"}]}',
        'monitor.conf: system_metrics[0].period: "5" is not a duration like "500ms", "2s", "1m", "1h"',
        id="duration-without-unit",
    ),
    pytest.param(
        '{"period": "1s", "period": "2s"}',
        'monitor.conf: key "period" appears twice in one object',
        id="duplicate-key",
    ),
    pytest.param(
        '{"neuron_runtimes": [{"address": "sim:", "period": "5ms", "metrics": []}]}',
        'monitor.conf: neuron_runtimes[0].period: "5ms" is shorter than the minimum period, "10ms"',
        id="period-below-the-minimum",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_files_give_one_line_naming_file_and_json_path(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    expected = message.replace("monitor.conf", str(path), 1)
    if expected.endswith(MORE):
        assert str(caught.value).startswith(expected[: -len(MORE)])
    else:
        assert str(caught.value) == expected
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.conf"
    with pytest.raises(ConfigError, match=f"^{path}: no such file$"):
        load_config(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path}: is a directory, not a configuration file$"):
        load_config(tmp_path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '{"period": "1s"}')
    if os.geteuid() == 0:  # root reads a file of mode 000 anyway; have the read fail as it would for a user

        def refuse(self: Path, *args: object, **kwargs: object) -> str:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_text", refuse)
    else:
        path.chmod(0)
    with pytest.raises(ConfigError, match=f"^{path}: cannot read: Permission denied$"):
        load_config(path)


def test_file_that_fails_to_read() -> None:
    with pytest.raises(ConfigError, match="^/proc/self/mem: cannot read: Input/output error$"):
        load_config("/proc/self/mem")


def test_an_odd_key_is_quoted_so_the_error_stays_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"system_metrics": [{"type": "vcpu_usage", "per\\niod": "1s"}]}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f'{path}: system_metrics[0]["per\\niod"]: unknown key (allowed: type, period)'


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "monitor.conf"
    path.write_bytes(b'{"period": "\xff1s"}')
    with pytest.raises(ConfigError, match=f"^{path}: cannot read: "):
        load_config(path)


# --- --check-config view


def test_describe_prints_every_resolved_period_in_the_files_own_format() -> None:
    config = load_config(EXAMPLES / "monitor.conf")
    assert config.describe() == {
        "neuron_runtimes": [
            {
                "address": "unix:/run/neuron.sock",
                "metrics": [
                    {"type": "neuroncore_counters", "period": "1s"},
                    {"type": "memory_used", "period": "1s"},
                    {"type": "neuron_runtime_vcpu_usage", "period": "1s"},
                    {"type": "inference_stats", "period": "1s"},
                    {"type": "hw_counters", "period": "2s"},
                ],
            }
        ],
        "system_metrics": [{"type": "vcpu_usage", "period": "1s"}, {"type": "memory_info", "period": "1s"}],
    }
    # The printed view is itself a valid config that resolves to the same periods.
    assert periods_of(parse_config(json.dumps(config.describe()))) == periods_of(config)


# --- fuzz


def _outcome_is_a_config_or_one_line(text: str) -> None:
    try:
        result = parse_config(text, "fuzz.conf")
    except ConfigError as error:
        message = str(error)
        assert message.startswith("fuzz.conf: ")
        assert "\n" not in message
    else:
        assert isinstance(result, MonitorConfig)
        assert all(period > 0 for period in result.periods())


_durations = st.one_of(
    st.from_regex(r"\A-?[0-9]{0,4}(\.[0-9]{0,3})?(ms|s|m|h|d|x|)\Z"), st.text(max_size=8), st.integers()
)
_keys = st.sampled_from(["type", "period", "address", "metrics", "extra"])
_types = st.sampled_from(
    ["vcpu_usage", "memory_info", "hw_counters", "inference_stats", "neuron_runtime_vcpu_usage", "bogus"]
)
_group = st.dictionaries(_keys, st.one_of(_types, _durations), max_size=3)
_runtime = st.dictionaries(
    _keys, st.one_of(st.text(max_size=8), _durations, st.lists(_group, max_size=3)), max_size=4
)
_near_valid = st.fixed_dictionaries(
    {},
    optional={
        "period": _durations,
        "neuron_runtimes": st.lists(_runtime, max_size=2),
        "system_metrics": st.lists(_group, max_size=3),
    },
)
_any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_fuzz_any_text_gives_a_config_or_the_one_line_error(text: str) -> None:
    _outcome_is_a_config_or_one_line(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_any_json, _near_valid))
def test_fuzz_any_json_gives_a_config_or_the_one_line_error(document: object) -> None:
    _outcome_is_a_config_or_one_line(json.dumps(document))
