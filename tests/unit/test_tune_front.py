"""The sweep's Pareto front and ``shoprank tune pick`` (no Ray): the non-dominated filter, the
preference parser, and a picked point written as a training config the training loader accepts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from shoprank.cli import main
from shoprank.errors import ConfigError
from shoprank.train.config import load_config, parse_config
from shoprank.tune.front import build_front, read_front, write_front
from shoprank.tune.pareto import non_dominated, parse_prefer, preferred
from shoprank.yamlconfig import read_yaml

from tests.tune_helpers import REPO

TASKS = ["relevance", "click"]


def test_non_dominated_keeps_the_front_and_its_ties() -> None:
    pts = [
        [0.9, 0.1],  # 0: best relevance
        [0.1, 0.9],  # 1: best click
        [0.5, 0.5],  # 2: a trade-off nobody beats on both
        [0.4, 0.4],  # 3: dominated by 2
        [0.5, 0.5],  # 4: a tie with 2 (neither dominates)
        [0.9, 0.05],  # 5: dominated by 0 (equal on one, worse on the other)
        [math.nan, 1.0],  # 6: NaN counts as the worst, but 1.0 on click is unbeaten
    ]
    assert non_dominated(pts) == [0, 1, 2, 4, 6]
    assert non_dominated([]) == []
    assert non_dominated([[0.3, 0.3]]) == [0]


def test_parse_prefer_normalises_and_names_what_is_wrong() -> None:
    assert parse_prefer("click=0.7, relevance=0.3", TASKS) == pytest.approx({"click": 0.7, "relevance": 0.3})
    assert parse_prefer("click=2", TASKS) == {"click": 1.0}
    for bad, says in [
        ("click", "task=weight"),
        ("ctr=1", "'ctr' is not on the front"),
        ("click=high", "not a number"),
        ("click=-1", "≥ 0"),
        ("click=nan", "finite"),
        ("click=0,relevance=0", "positive weight"),
        ("", "positive weight"),
        ("click=1,click=2", "twice"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_prefer(bad, TASKS)


def test_preferred_point_follows_the_preference() -> None:
    scores = [{"relevance": 0.9, "click": 0.1}, {"relevance": 0.1, "click": 0.9}, {"relevance": 0.6, "click": 0.6}]
    assert preferred(scores, {"relevance": 1.0}) == 0
    assert preferred(scores, {"click": 1.0}) == 1
    assert preferred(scores, {"relevance": 0.5, "click": 0.5}) == 2
    with pytest.raises(ConfigError, match="empty"):
        preferred([], {"click": 1.0})


def _front(tmp_path: Path) -> tuple[Path, dict]:
    written = parse_config(read_yaml(REPO / "configs" / "tiny.yaml", "config"), "tiny.yaml")
    points = []
    for i, (rel, click, epochs) in enumerate([(0.9, 0.2, 3), (0.2, 0.9, 3), (0.5, 0.5, 3), (0.3, 0.3, 3), (1, 1, 1)]):
        weights = {t: 1.0 + i for t in written.tasks} | {"click": 0.5 + i}
        cfg = written.model_copy(
            update={"tasks": {t: tc.model_copy(update={"weight": weights[t]}) for t, tc in written.tasks.items()}}
        )
        points.append(
            {
                "trial": f"t{i}",
                "epochs": epochs,
                "objective": (rel + click) / 2,
                "scores": {"relevance": rel, "click": click},
                "weights": weights,
                "train_config": cfg.model_dump(mode="json"),
            }
        )
    front = build_front(points, TASKS, max_t=3)
    front["reference"] = {"equal": {"relevance": 0.4, "click": 0.4}}
    out = tmp_path / "sweep"
    out.mkdir()
    write_front(front, out)
    return out, front


def test_front_outputs_leave_out_short_trials(tmp_path: Path) -> None:
    out, front = _front(tmp_path)
    assert [p["trial"] for p in front["points"]] == ["t0", "t1", "t2"]
    assert [p["trial"] for p in front["dominated"]] == ["t3"]
    assert front["short_trials"] == 1  # t4 would dominate everything, but it trained 1 epoch of 3
    assert read_front(out)["points"] == json.loads(json.dumps(front["points"]))
    assert (out / "front.png").stat().st_size > 0
    table = (out / "front.md").read_text()
    assert "| t2 |" in table and "| t3 |" not in table and "*equal*" in table


def test_pick_writes_a_config_training_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep, _ = _front(tmp_path)
    out = tmp_path / "picked.yaml"
    assert main(["tune", "pick", "--sweep", str(sweep), "--prefer", "click=0.7,relevance=0.3", "--out", str(out)]) == 0
    assert "picked trial t1" in capsys.readouterr().out
    cfg = load_config(out, base=REPO)
    assert cfg.tasks["click"].weight == pytest.approx(1.5)  # t1's weights
    assert cfg.tasks["relevance"].weight == pytest.approx(2.0)
    assert main(["tune", "pick", "--sweep", str(sweep), "--prefer", "relevance=1", "--out", str(out)]) == 0
    assert load_config(out, base=REPO).tasks["click"].weight == pytest.approx(0.5)  # t0


@pytest.mark.parametrize(
    ("prefer", "says"), [("ctr=1", "'ctr' is not on the front"), ("click=x", "not a number"), ("click", "task=weight")]
)
def test_pick_bad_input_is_one_line_and_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prefer: str, says: str
) -> None:
    sweep, _ = _front(tmp_path)
    out = tmp_path / "picked.yaml"
    assert main(["tune", "pick", "--sweep", str(sweep), "--prefer", prefer, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err
    assert not out.exists()
    assert main(["tune", "pick", "--sweep", str(tmp_path), "--prefer", "click=1", "--out", str(out)]) == 2
    assert "no front.json" in capsys.readouterr().err


def test_tune_without_config_or_pick_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune"]) == 2
    assert "--config is required" in capsys.readouterr().err
