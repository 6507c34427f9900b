"""The monitor config: the guide's format, period inheritance, one-line errors naming file and JSON path."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_neuron.config import (
    MAX_GROUPS_PER_LIST,
    MAX_RUNTIMES,
    ConfigError,
    GroupConfig,
    MonitorConfig,
    check_paths,
    load_config,
    load_schema,
    parse_config,
)

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
    *(
        pytest.param(
            json.dumps({"period": period, "system_metrics": [{"type": "vcpu_usage"}]}),
            f'monitor.conf: period: "{period}" is longer than the maximum period, "24h"',
            id=f"period-{period}-above-the-maximum",
        )
        for period in ("99999999999999h", "1441m", "86400.001s")
    ),
    *(
        pytest.param(
            json.dumps({"neuron_runtimes": [{"address": address, "metrics": [{"type": "memory_used"}]}]}),
            f"monitor.conf: neuron_runtimes[0].address: '{address}': {reason}",
            id=f"simulator-{reason.split()[0]}-out-of-bounds",
        )
        for address, reason in (
            ("sim:?cores=100000000", "cores must be between 1 and 128, not 100000000"),
            ("sim:?models=99999999", "models must be between 0 and 128, not 99999999"),
            ("sim:?devices=40&cores=64", "devices must be between 1 and 32, not 40"),
            ("sim:?rate=1e12", "rate must be between 0 and 100000, not 1000000000000.0"),
            ("sim:?rate=nan", "rate must be between 0 and 100000, not nan"),
            ("sim:?seed=-1", f"seed must be between 0 and {2**64 - 1}, not -1"),
            ("sim:?churn=inf", "churn must be between 0 and 86400, not inf"),
            ("sim:?ecc_per_hour=1e9", "ECC events per hour must be between 0 and 1000000, not 1000000000.0"),
        )
    ),
    pytest.param(
        json.dumps({"neuron_runtimes": [{"address": "sim:", "metrics": []}] * 100_000}),
        "monitor.conf: larger than 1048576 bytes (1 MiB), too large for a configuration",
        id="100000-runtimes-a-file-too-large",
    ),
    pytest.param(
        json.dumps({"neuron_runtimes": [{"address": "sim:", "metrics": []}] * 20_000}),
        "monitor.conf: neuron_runtimes: 20000 entries; at most 128 are allowed",
        id="20000-runtimes",
    ),
    pytest.param(
        json.dumps(
            {"neuron_runtimes": [{"address": "unix:/a", "metrics": [{"type": "memory_used"}] * 40_000}]}
        ),
        "monitor.conf: neuron_runtimes[0].metrics: 40000 entries; at most 16 are allowed",
        id="40000-groups-of-a-runtime",
    ),
    pytest.param(
        json.dumps({"system_metrics": [{"type": "vcpu_usage"}] * 17}),
        "monitor.conf: system_metrics: 17 entries; at most 16 are allowed",
        id="17-system-groups",
    ),
    pytest.param(
        json.dumps({"neuron_runtimes": [{"address": "unix:/" + "a" * 5000, "metrics": []}]}),
        "monitor.conf: neuron_runtimes[0].address: 5006 characters; at most 4096 are allowed",
        id="address-too-long",
    ),
    pytest.param(
        json.dumps({"system_metrics": [{"type": "x" * 5000}]}),
        'monitor.conf: system_metrics[0].type: unknown metric group "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... '
        "(known: vcpu_usage, memory_info)",
        id="a-long-value-is-cut-short",
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

        def refuse(file: object, *args: object, **kwargs: object) -> int:
            raise PermissionError(13, "Permission denied", str(file))

        monkeypatch.setattr(os, "open", refuse)
    else:
        path.chmod(0)
    with pytest.raises(ConfigError, match=f"^{path}: cannot read: Permission denied$"):
        load_config(path)


@pytest.mark.parametrize("kind", ["socket", "character device"])
def test_a_file_that_is_not_regular_is_refused(tmp_path: Path, kind: str) -> None:
    # A FIFO is the integration test's (a regression would block on it; there it has a timeout).
    if kind == "socket":
        path = tmp_path / "monitor.sock"
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))  # the socket file stays after close
        expected = "is a socket"
    else:
        path = Path("/dev/null")
        expected = "is a character device"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {expected}, not a regular file"


def test_a_file_larger_than_1_mib_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"period": "1s", "pad": "x" * (1 << 20)}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: larger than 1048576 bytes (1 MiB), too large for a configuration"


def test_the_schema_states_the_loaders_limits() -> None:
    schema = load_schema("monitor-config.schema.json")
    runtime = schema["$defs"]["runtime"]["properties"]
    assert schema["properties"]["neuron_runtimes"]["maxItems"] == MAX_RUNTIMES
    assert schema["properties"]["system_metrics"]["maxItems"] == MAX_GROUPS_PER_LIST
    assert runtime["metrics"]["maxItems"] == MAX_GROUPS_PER_LIST


def test_the_limits_themselves_are_allowed(tmp_path: Path) -> None:
    runtime = {
        "address": f"sim:?cores=128&devices=32&models=128&rate=100000&seed={2**64 - 1}&churn=86400",
        "period": "24h",
        "metrics": [{"type": "memory_used", "period": "10ms"}],
    }
    config = load_config(write(tmp_path, json.dumps({"neuron_runtimes": [runtime] * 128})))
    assert len(config.runtimes) == 128
    assert config.periods() == [0.01]


# --- what --check-config checks on this host


def runtime_at(address: str) -> MonitorConfig:
    return parse_config(
        json.dumps({"neuron_runtimes": [{"address": address, "metrics": [{"type": "memory_used"}]}]})
    )


def test_check_paths_accepts_what_is_there(tmp_path: Path) -> None:
    program = tmp_path / "neuron-monitor"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    for address in (f"neuron-monitor:{program}", f"sysfs:{tmp_path}", "unix:/nowhere/neuron.sock", "stdin:"):
        check_paths(runtime_at(address))


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("neuron-monitor:{tmp}/absent", "{tmp}/absent does not exist"),
        ("neuron-monitor:{tmp}/plain", "{tmp}/plain is not executable"),
        ("neuron-monitor:{tmp}", "{tmp} is not a file"),
        ("neuron-monitor:no-such-program-here", "no program 'no-such-program-here' on PATH"),
        (
            "neuron-monitor:{tmp}/run?config={tmp}/absent.json",
            "the config file {tmp}/absent.json does not exist",
        ),
        ("sysfs:{tmp}/absent", "the root {tmp}/absent is not a directory"),
        ("sysfs:{tmp}/plain", "the root {tmp}/plain is not a directory"),
    ],
)
def test_check_paths_names_what_is_missing(tmp_path: Path, address: str, problem: str) -> None:
    (tmp_path / "plain").write_text("")
    (tmp_path / "run").write_text("#!/bin/sh\n")
    (tmp_path / "run").chmod(0o755)
    address, problem = address.format(tmp=tmp_path), problem.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as caught:
        check_paths(runtime_at(address))
    assert str(caught.value) == f"<config>: neuron_runtimes[0].address: {address!r}: {problem}"


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
