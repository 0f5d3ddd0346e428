"""The ablation job end to end on a real local Ray: a tiny run, killed and resumed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from shoprank.train import ablation

REPO = Path(__file__).resolve().parents[2]


def test_tiny_ablation_runs_and_resumes(ray_local, tmp_path, capsys):
    out = tmp_path / "abl"
    # one multi-task variant and one single-task one: the job's whole path (both variants' kinds, the
    # report comparing them, resume) at two trainings' cost; tests/unit/test_ablation.py covers MULTI
    argv = ["--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "--single", "season",
            "--multi", "multi_task_mmoe", "--workers", "1", "--max-eval-rows", "60"]  # fmt: skip
    assert ablation.main(argv) == 0
    report = json.loads((out / "ablation.json").read_text())
    assert set(report["results"]) == {"multi_task_mmoe", "single_task_season"}
    assert set(report["results"]["single_task_season"]) == {
        "season/synth/accuracy", "season/synth/accuracy_titles_only", "season/synth/macro_f1"
    }
    assert not math.isnan(report["results"]["multi_task_mmoe"]["relevance/synth/rmse"])
    md = (out / "ablation.md").read_text()
    assert "| season/synth/accuracy |" in md and "beats single-task on" in md
    stamp = (out / "single_task_season" / "eval.json").stat().st_mtime_ns
    capsys.readouterr()
    assert ablation.main(argv) == 0  # rerun: every variant already evaluated, nothing retrained
    assert "already evaluated" in capsys.readouterr().out
    assert (out / "single_task_season" / "eval.json").stat().st_mtime_ns == stamp
