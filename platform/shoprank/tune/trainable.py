"""The Tune trial: the same ``run_training`` loop as ``jobs/train.py``, one process per trial.

A trial turns its sampled params into task weights (or a baseline's weighting), trains on the
shared examples (put in Ray's object store once by the driver), and reports the declared
composite objective and one score per task of the front with every epoch's checkpoint, so ASHA
can stop it, PBT can hand its checkpoint to another trial (which resumes from it with its own,
perturbed weights) and a restored sweep can resume it.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import torch

from shoprank.tasks.examples import TaskData, val_frame
from shoprank.train.config import TrainConfig
from shoprank.train.loop import frame_to_arrays, run_training
from shoprank.tune.config import TuneConfig
from shoprank.tune.objective import composite, task_scores
from shoprank.tune.schedulers import score_key
from shoprank.tune.space import weights_from_params

BASELINE_KEY = "baseline"
TUNED_WEIGHTS_KEY = "_tuned_weights"  # the search's chosen weights, re-trained on more seeds ("tuned~k")
TUNED = "tuned"
SEED_SEP = "~"  # "equal~1": equal weights on seed + 1
FREEZE_ALL = 12  # ModelConfig.freeze_layers' maximum: the embeddings and every layer frozen


def baseline_names(tune_cfg: TuneConfig) -> list[str]:
    """The baseline runs: each of ``baselines``, then each again on ``baseline_seeds - 1`` more seeds."""
    extra = [f"{b}{SEED_SEP}{k}" for k in range(1, tune_cfg.baseline_seeds) for b in tune_cfg.baselines]
    return [*tune_cfg.baselines, *extra]


def tuned_seed_names(tune_cfg: TuneConfig) -> list[str]:
    """The chosen weights on seeds 1 .. ``baseline_seeds - 1`` (seed 0 is the search's own best trial)."""
    return [f"{TUNED}{SEED_SEP}{k}" for k in range(1, tune_cfg.baseline_seeds)]


def baseline_seed(name: str) -> tuple[str, int]:
    """``equal~2`` → ("equal", 2): the weighting and the seed offset of a baseline run."""
    kind, _, offset = name.partition(SEED_SEP)
    return kind, int(offset or 0)


def _sweep_update(base: TrainConfig, tune_cfg: TuneConfig) -> dict[str, Any]:
    """What every run of the sweep changes: the warm start and the frozen encoder."""
    update: dict[str, Any] = {}
    if tune_cfg.init_from:
        update["init_from"] = tune_cfg.init_from
    if tune_cfg.freeze_encoder:
        update["model"] = base.model.model_copy(update={"freeze_layers": FREEZE_ALL})
    return update


def weights_train_config(base: TrainConfig, tune_cfg: TuneConfig, weights: dict[str, float]) -> TrainConfig:
    """A sweep run's training config with fixed task ``weights`` (tasks not named keep theirs)."""
    update = {**_sweep_update(base, tune_cfg), "tasks": _with_weights(base, weights), "weighting": "fixed"}
    return base.model_copy(update=update)


def trial_train_config(base: TrainConfig, tune_cfg: TuneConfig, params: dict[str, Any]) -> TrainConfig:
    """The training config one trial runs: searched weights, a baseline's weighting, or the chosen
    weights again (``tuned~k``), each on its seed;
    with the sweep's warm start (``init_from``) and frozen encoder when it asks for them."""
    baseline = params.get(BASELINE_KEY)
    if baseline:
        kind, offset = baseline_seed(str(baseline))
        update = _sweep_update(base, tune_cfg)
        weights = params[TUNED_WEIGHTS_KEY] if kind == TUNED else dict.fromkeys(base.tasks, 1.0)
        update["tasks"] = _with_weights(base, weights)
        update["weighting"] = "uncertainty" if kind == "uncertainty" else "fixed"
        if offset:
            # another training seed on the same split and validation sample
            update["seed"] = base.seed + offset
            update["split"] = base.split.model_copy(update={"seed": base.data_seed})
            update["model"] = update.get("model", base.model).model_copy(update={"seed": base.model.seed + offset})
        return base.model_copy(update=update)
    tasks = tune_cfg.search.tasks or list(base.tasks)
    return weights_train_config(
        base, tune_cfg, weights_from_params(params, tune_cfg.search, [t for t in tasks if t in base.tasks])
    )


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
        scores = task_scores(flat, tune_cfg.objective, tune_cfg.front_tasks(), "val/")
        flat.update({score_key(t): v for t, v in scores.items()})
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
