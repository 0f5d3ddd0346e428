"""TrainConfig: bad values are rejected with the field named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from shoprank.errors import ConfigError
from shoprank.train.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def _base() -> dict:
    return yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("tasks", "relevance", "weight"), -1.0, "tasks.relevance.weight"),
        (("lr",), 0.0, "lr"),
        (("batch_size",), 1, "batch_size"),
        (("weighting",), "magic", "weighting"),
        (("schedule",), "random", "schedule"),
        (("model", "hidden"), 2, "model.hidden"),
        (("model", "encoder"), "bert-huge", "model.encoder"),
        (("early_stopping", "mode"), "up", "early_stopping.mode"),
        (("split", "val_fraction"), 0.9, "split.val_fraction"),
        (("use_gpu",), "sometimes", "use_gpu"),
        (("epochs",), 0, "epochs"),
    ],
)
def test_bad_values_name_the_field(path, value, field):
    data = _base()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=re.escape(field)):
        parse_config(data, "tiny.yaml")


def test_grad_surgery_needs_the_all_schedule():
    data = _base()
    data.update(schedule="round_robin", grad_surgery="pcgrad")
    with pytest.raises(ConfigError, match="grad_surgery.*schedule: all"):
        parse_config(data)
    data["schedule"] = "all"
    assert parse_config(data).grad_surgery == "pcgrad"
    data["grad_surgery"] = "magic"
    with pytest.raises(ConfigError, match="grad_surgery"):
        parse_config(data)


def test_unknown_task_source_and_field():
    data = _base()
    data["tasks"]["telepathy"] = {"sources": ["synth"]}
    with pytest.raises(ConfigError, match="telepathy"):
        parse_config(data)
    data = _base()
    data["tasks"]["intent"]["sources"] = ["nowhere"]
    with pytest.raises(ConfigError, match=r"tasks\.intent\.sources.*nowhere"):
        parse_config(data)
    data = _base()
    data["epoch"] = 3  # typo of epochs
    with pytest.raises(ConfigError, match="epoch"):
        parse_config(data)


def test_shipped_configs_load():
    from shoprank.resources import DEMO_CONFIG

    for path in (REPO / "configs" / "tiny.yaml", DEMO_CONFIG, REPO / "configs" / "reference.yaml"):
        cfg = load_config(path, base=REPO)
        assert cfg.model.tasks == [t for t in cfg.model.tasks if t in cfg.tasks]
        for src in cfg.sources.values():
            for part in src.all_parts():
                assert part.path is None or Path(part.path).is_absolute()


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(bad)
