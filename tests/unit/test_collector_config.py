"""collector-config/: every Collector YAML parses and its pipelines only use components it defines."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

CONFIG_DIR = Path(__file__).resolve().parents[2] / "collector-config"
YAML_FILES = sorted(CONFIG_DIR.glob("*.yaml"))
KINDS = ("receivers", "processors", "exporters")


def test_the_documented_configurations_exist():
    assert {path.name for path in YAML_FILES} >= {"agent.yaml", "gateway.yaml", "cloudwatch.yaml"}
    assert {path.name for path in (CONFIG_DIR / "rotel").glob("*.env")} >= {"agent.env", "gateway.env"}


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: path.name)
def test_pipelines_reference_only_defined_components(path: Path):
    config = yaml.safe_load(path.read_text())
    pipelines = config["service"]["pipelines"]
    assert pipelines, f"{path.name}: no pipeline"
    for name, pipeline in pipelines.items():
        assert name.split("/")[0] in ("metrics", "traces", "logs"), f"{path.name}: pipeline {name}"
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"{path.name}: {name} is incomplete"
        for kind in KINDS:
            defined = config.get(kind) or {}
            for component in pipeline.get(kind, []):
                assert component in defined, (
                    f"{path.name}: pipeline {name} uses undefined {kind[:-1]} {component}"
                )
    for extension in config["service"].get("extensions", []):
        assert extension in (config.get("extensions") or {}), f"{path.name}: undefined extension {extension}"
    used = {c for p in pipelines.values() for kind in KINDS for c in p.get(kind, [])}
    for kind in KINDS:
        for component in config.get(kind) or {}:
            assert component in used, f"{path.name}: {kind[:-1]} {component} is defined but unused"


def test_cloudwatch_dimensions_name_the_instance_and_neuron_hardware():
    config = yaml.safe_load((CONFIG_DIR / "cloudwatch.yaml").read_text())
    declared = {
        d
        for declaration in config["exporters"]["awsemf"]["metric_declarations"]
        for s in declaration["dimensions"]
        for d in s
    }
    assert {"InstanceId", "NeuronCore", "NeuronDevice"} <= declared


@pytest.mark.parametrize("name", ["agent.env", "gateway.env"])
def test_rotel_env_files_use_only_rotel_variables(name: str):
    lines = [
        line
        for line in (CONFIG_DIR / "rotel" / name).read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines
    for line in lines:
        key, sep, _ = line.partition("=")
        assert sep and key.startswith("ROTEL_"), line
