"""The Tune trial: the same ``run_training`` loop as ``jobs/train.py``, one process per trial.

A trial turns its sampled params into task weights (or a baseline's weighting), trains on the
shared examples (put in Ray's object store once by the driver), and reports the declared
composite objective with every epoch's checkpoint, so ASHA can stop it and a restored sweep
can resume it.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import torch

from shoprank.tasks.examples import TaskData, val_frame
from shoprank.train.config import TrainConfig
from shoprank.train.loop import frame_to_arrays, run_training
from shoprank.tune.config import TuneConfig
from shoprank.tune.objective import composite
from shoprank.tune.space import weights_from_params

BASELINE_KEY = "baseline"


def trial_train_config(base: TrainConfig, tune_cfg: TuneConfig, params: dict[str, Any]) -> TrainConfig:
    """The training config one trial runs: searched weights, or a baseline's weighting."""
    baseline = params.get(BASELINE_KEY)
    if baseline == "equal":
        return base.model_copy(
            update={"tasks": _with_weights(base, dict.fromkeys(base.tasks, 1.0)), "weighting": "fixed"}
        )
    if baseline == "uncertainty":
        return base.model_copy(
            update={"tasks": _with_weights(base, dict.fromkeys(base.tasks, 1.0)), "weighting": "uncertainty"}
        )
    tasks = tune_cfg.search.tasks or list(base.tasks)
    weights = weights_from_params(params, tune_cfg.search, [t for t in tasks if t in base.tasks])
    return base.model_copy(update={"tasks": _with_weights(base, weights), "weighting": "fixed"})


def _with_weights(base: TrainConfig, weights: dict[str, float]) -> dict[str, Any]:
    return {t: tc.model_copy(update={"weight": weights.get(t, tc.weight)}) for t, tc in base.tasks.items()}


def val_frames(data: TaskData, cfg: TrainConfig) -> dict[str, pl.DataFrame]:
    """Validation examples per task, capped at ``split.max_val_examples`` (as in jobs/train.py)."""
    return {t: val_frame(data, t, cfg).drop("split") for t in cfg.tasks}


def run_trial(
    params: dict[str, Any], *, data: TaskData, base_config: dict[str, Any], tune_config: dict[str, Any]
) -> None:
    """Tune function trainable (wrap with ``tune.with_parameters``)."""
    from ray import tune

    torch.set_num_threads(1)
    tune_cfg = TuneConfig.model_validate(tune_config)
    cfg = trial_train_config(TrainConfig.model_validate(base_config), tune_cfg, params)
    start_log = params.get("_start_log")
    if start_log:  # tests: record every (re)start of a trial
        with open(start_log, "a") as f:
            f.write(f"{tune.get_context().get_trial_id()}\n")
    train = {t: frame_to_arrays(data.split(t, "train").drop("split")) for t in cfg.tasks}
    sizes = {t: len(a["label"]) for t, a in train.items()}
    checkpoint = tune.get_checkpoint()

    def report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
        flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        flat["objective"] = composite(flat, tune_cfg.objective, "val/")
        flat["primary"] = flat.get("val/" + tune_cfg.objective.primary, float("nan"))
        flat.update({f"weight/{t}": tc.weight for t, tc in cfg.tasks.items()})
        tune.report(flat, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    if checkpoint is not None:
        with checkpoint.as_directory() as resume:
            run_training(
                cfg,
                train,
                val_frames(data, cfg),
                data.label_maps,
                report=report,
                resume_from=resume,
                global_sizes=sizes,
                log=None,
            )
    else:
        run_training(cfg, train, val_frames(data, cfg), data.label_maps, report=report, global_sizes=sizes, log=None)
