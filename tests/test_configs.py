from pathlib import Path

import pytest

from rmforge.annotators import REGISTRY
from rmforge.api import load_config
from rmforge.errors import ConfigError
from rmforge.problems.problem_import import import_problem_rows
from rmforge.problems.records import read_records

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "data" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate_and_name_known_annotators(path):
    config = load_config(path)
    assert set(config.annotators) <= set(REGISTRY)
    assert set(config.annotator_options) <= set(config.annotators) | {"mc"}


def test_example_problem_file_imports_cleanly():
    rows = read_records(ROOT / "data" / "examples" / "problems.jsonl")
    result = import_problem_rows(rows, "examples", "run", "question", "answer")
    assert not result.quarantine
    assert [p.gold_answer for p in result.problems] == ["72", "10", "\\frac{5}{6}"]
    assert result.problems[0].reference_steps[0] == "Natalia sold 48/2 = 24 clips in May."


def test_unknown_config_keys_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling: {n: 4, temprature: 0.5}\n")
    with pytest.raises(ConfigError, match=r"sampling\.temprature: Extra inputs are not permitted"):
        load_config(bad)


def test_prefect_deployments_point_at_flows_with_valid_parameters():
    import importlib
    import inspect

    import yaml

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        module_path, name = deployment["entrypoint"].rsplit(".", 1)
        flow = getattr(importlib.import_module(module_path), name)
        assert flow.name == name, deployment["name"]
        params = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters", {})) <= params, deployment["name"]
        if "config" in deployment.get("parameters", {}):
            from rmforge.schemas.config import PipelineConfig

            PipelineConfig.model_validate(deployment["parameters"]["config"])


def test_demo_defaults_can_label_steps_both_ways():
    """Process examples need an annotator that can confirm a step, and one that can refute it;
    options must name annotators the demo runs (a typo would silently use the defaults)."""
    from rmforge.annotators import annotator_class
    from rmforge.schemas.config import PipelineConfig

    config = PipelineConfig()
    evidence = [annotator_class(name).evidence for name in config.annotators]
    assert any(e.confirms_steps for e in evidence)
    assert any(e.refutes_steps for e in evidence)
    assert set(config.annotator_options) <= set(config.annotators)
    assert config.generator.dtype == "auto"
