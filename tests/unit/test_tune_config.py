"""Loss-weight sweep configuration: validation, the weight space, the composite objective and the
scheduler and search algorithm it builds (no Ray cluster)."""

from __future__ import annotations

import pytest
from shoprank.errors import ConfigError
from shoprank.tune.config import parse_tune_config
from shoprank.tune.objective import composite, task_scores
from shoprank.tune.schedulers import build_scheduler, build_search_alg
from shoprank.tune.space import clip_params, weights_from_params

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
        ({"scheduler": "hyperband"}, "scheduler"),
        ({"pbt.perturbation_interval": 0}, "pbt.perturbation_interval"),
        ({"pbt.quantile_fraction": 0.9}, "pbt.quantile_fraction"),
        ({"pbt.resample_probability": 1.5}, "pbt.resample_probability"),
        ({"pareto.tasks": ["relevance", "demand"]}, "pareto.tasks"),
        ({"pareto.tasks": ["relevance"]}, "pareto.tasks"),
        ({"pareto.search": True, "scheduler": "pbt"}, "pareto.search"),
        ({"pareto.search": True, "search_alg": "random"}, "pareto.search"),
        ({"baseline_seeds": 0}, "baseline_seeds"),
        ({"baseline_seeds": 3, "baselines": ["uncertainty"]}, "baseline_seeds"),
        ({"freeze_encoder": "sometimes"}, "freeze_encoder"),
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


def test_task_scores_split_the_composite_by_task() -> None:
    cfg = parse_tune_config(_cfg())
    full = {"val/relevance/rmse": 0.2, "val/click/auc": 0.9, "val/season/accuracy": 0.5, "val/intent/accuracy": 0.3}
    assert cfg.front_tasks() == ["relevance", "click", "season", "intent"]
    assert task_scores(full, cfg.objective, ["relevance", "click"]) == pytest.approx({"relevance": 0.8, "click": 0.9})
    two = parse_tune_config(_cfg(**{"pareto.tasks": ["click", "relevance"]}))
    assert two.front_tasks() == ["click", "relevance"]


def test_out_of_range_params_are_clipped_into_the_space() -> None:
    log = parse_tune_config(_cfg())
    assert weights_from_params({"w_a": 50.0, "w_b": 0.01}, log.search, ["a", "b"]) == {"a": 10.0, "b": 0.1}
    assert clip_params({"w_a": 12.0, "baseline": "x"}, log.search) == {"w_a": 10.0, "baseline": "x"}
    simplex = parse_tune_config(_cfg(**{"search.parameterisation": "simplex"}))
    w = weights_from_params({"w_a": 1.2, "w_b": 0.5}, simplex.search, ["a", "b"])  # PBT's ×1.2 past the top
    assert all(v > 0 for v in w.values()) and sum(w.values()) == pytest.approx(2.0)


def test_scheduler_and_search_alg_follow_the_config() -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
    from ray.tune.search.optuna import OptunaSearch

    asha = parse_tune_config(_cfg())
    s = build_scheduler(asha, max_t=3, searched=["click", "season"])
    assert isinstance(s, ASHAScheduler) and s.metric == "objective"
    alg = build_search_alg(asha)
    assert isinstance(alg, OptunaSearch) and alg.metric == "objective"

    pbt = parse_tune_config(_cfg(scheduler="pbt", **{"pbt.perturbation_interval": 2}))
    p = build_scheduler(pbt, max_t=6, searched=["click", "season"])
    assert isinstance(p, PopulationBasedTraining) and p.metric == "objective"
    assert set(p._hyperparam_mutations) == {"w_click", "w_season"}
    assert p._perturbation_interval == 2 and p._synch is True
    assert p._custom_explore_fn({"w_click": 99.0})["w_click"] == 10.0  # perturbations stay in bounds
    assert build_search_alg(pbt) is None  # PBT takes no search algorithm

    multi = parse_tune_config(_cfg(**{"pareto.tasks": ["relevance", "click"], "pareto.search": True}))
    m = build_search_alg(multi)
    assert isinstance(m, OptunaSearch) and m.metric == ["score/relevance", "score/click"] and m.mode == ["max", "max"]
    assert isinstance(build_scheduler(parse_tune_config(_cfg(scheduler="fifo")), 3, ["click"]), FIFOScheduler)


def test_pbt_draws_follow_the_sweep_seed() -> None:
    """PBT's initial weights (NumPy) and its explore steps (Python's random) repeat under one seed."""
    from ray.tune.schedulers.pbt import _explore

    def draws(seed: int) -> list[float]:
        cfg = parse_tune_config(_cfg(scheduler="pbt", seed=seed))
        p = build_scheduler(cfg, max_t=3, searched=["click", "season"])
        space = p._hyperparam_mutations
        start = {k: float(space[k].sample()) for k in sorted(space)}
        out = list(start.values())
        for _ in range(4):
            start, _ops = _explore(start, space, 0.25, (1.2, 0.8), p._custom_explore_fn)
            out += [float(start[k]) for k in sorted(space)]
        return out

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
