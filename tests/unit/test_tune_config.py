"""Loss-weight sweep configuration: validation, the weight space and the composite objective (no Ray)."""

from __future__ import annotations

import pytest
from shoprank.errors import ConfigError
from shoprank.tune.config import parse_tune_config
from shoprank.tune.objective import composite
from shoprank.tune.space import weights_from_params

from tests.tune_helpers import tune_cfg as _cfg


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"search.low": 5.0, "search.high": 1.0}, "search"),
        ({"search.low": -1.0}, "search.low"),
        ({"search.parameterisation": "gaussian"}, "search.parameterisation"),
        ({"search.tasks": ["relevance", "telepathy"]}, "telepathy"),
        ({"objective.primary": "click/auc2"}, "objective"),
        (
            {"objective.metrics": {"relevance/nope": {"weight": 1}}, "objective.primary": "relevance/nope"},
            "relevance/nope",
        ),
        ({"num_samples": 0}, "num_samples"),
        ({"asha.reduction_factor": 1}, "asha.reduction_factor"),
    ],
)
def test_invalid_sweep_configs_name_the_field(override: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_tune_config(_cfg(**override), "sweep.yaml")


def test_unknown_top_level_field_rejected() -> None:
    with pytest.raises(ConfigError, match="typo_field"):
        parse_tune_config(_cfg(typo_field=1))


def test_simplex_weights_sum_to_task_count() -> None:
    cfg = parse_tune_config(_cfg(**{"search.parameterisation": "simplex"}))
    w = weights_from_params({"w_a": 0.2, "w_b": 0.9, "w_c": 0.5}, cfg.search, ["a", "b", "c"])
    assert sum(w.values()) == pytest.approx(3.0)
    assert w["a"] > w["c"] > w["b"]  # smaller uniforms -> larger exponential draws


def test_composite_normalises_min_metrics_and_penalises_missing() -> None:
    cfg = parse_tune_config(_cfg())
    full = {"val/relevance/rmse": 0.2, "val/click/auc": 0.9, "val/season/accuracy": 0.5, "val/intent/accuracy": 0.3}
    assert composite(full, cfg.objective) == pytest.approx((0.8 + 0.9 + 0.5 + 0.3) / 4)
    missing = dict(full)
    del missing["val/click/auc"]
    assert composite(missing, cfg.objective) < composite(full, cfg.objective)
