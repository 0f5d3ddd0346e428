"""Campaign job orchestration: shards -> Ray Data actor pool -> atomic shard files -> ranking -> report.

Layout under the campaign's output directory::

    ranked/segment=<value>/part-0.parquet   final per-segment top-N (hive-partitioned)
    report.md, plots/*.png, summary.json    the report and its machine-readable numbers
    quarantine/part-SHARD.parquet           malformed catalogue rows with a reason
    run.json                                this run's timings (the only file that differs between reruns)
    _work/manifest.json                     what the shards were computed from
    _work/shards/{scores,top}-SHARD.parquet, stats-SHARD.json   per-shard results (stats = commit point)

A shard counts as finished when its ``stats`` file exists (written last, atomically). A rerun
with the same spec, catalogue, model and shard size skips finished shards; anything else
invalidates them. Results never depend on which shards a run computed, so a resumed run's
outputs are byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import shoprank
from shoprank.campaign import ranking, source
from shoprank.campaign.scoring import MONTH_COLUMNS, SCORE_COLUMNS, ShardScorer, zero_shot_scores
from shoprank.campaign.spec import CampaignSpec
from shoprank.errors import ConfigError, DataError
from shoprank.files import atomic_write_json
from shoprank.model.checkpoint import model_version, read_manifest
from shoprank.model.registry import CLASS_TASKS
from shoprank.model.runtime import check_runtime
from shoprank.ray_runtime import init_ray

HIST_BINS = 50
DEFAULT_SHARD_SIZE = 4096


@dataclass
class CampaignResult:
    """What a run produced (``complete`` is False when it stopped early)."""

    output: Path
    report: Path | None
    complete: bool
    shards_total: int
    shards_computed: int
    shards_skipped: int
    rows: int
    scored: int
    quarantined: int
    filtered: int
    zero_shot: list[str]
    elapsed_s: float
    items_per_s: float
    segments: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _stats_for_shard(df: pl.DataFrame) -> dict[str, Any]:
    """Counts, score histograms and per-segment monthly demand sums of one scored shard."""
    ok = df.filter(pl.col("_status") == "ok")
    stats: dict[str, Any] = {
        "rows": df.height,
        "scored": ok.height,
        "filtered": int((df.get_column("_status") == "filtered").sum()),
        "quarantined": int((df.get_column("_status") == "quarantined").sum()),
        "hist": {},
        "segments": {},
    }
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    for c in SCORE_COLUMNS:
        values = ok.get_column(c).to_numpy().clip(0.0, 1.0)
        stats["hist"][c] = np.histogram(values, bins=edges)[0].tolist()
    seg = ok.group_by("segment").agg(
        pl.len().alias("n"), pl.col("score").sum().alias("score_sum"), *[pl.col(c).sum() for c in MONTH_COLUMNS]
    )
    for r in seg.sort("segment").iter_rows(named=True):
        stats["segments"][r["segment"]] = {
            "n": r["n"],
            "score_sum": r["score_sum"],
            "demand_by_month": [r[c] for c in MONTH_COLUMNS],
        }
    return stats


class CampaignRunner:
    """Runs one campaign over one catalogue; see the module docstring for the file layout."""

    def __init__(
        self,
        spec: CampaignSpec,
        catalogue: str | Path,
        *,
        fmt: str | None = None,
        checkpoint: str | Path | None = None,
        encoder: str = "minilm",
        encoder_runtime: str = "torch",
        shard_size: int = DEFAULT_SHARD_SIZE,
        inner_batch_size: int = 64,
        num_actors: int | None = None,
        use_gpu: bool | None = None,
        output: str | Path | None = None,
        progress: bool = True,
        on_shard: Callable[[int], bool | None] | None = None,
    ) -> None:
        """``on_shard(k)`` is called after shard ``k`` is committed; if it returns True the run stops
        there, as a killed job would (finished shards stay; a rerun resumes)."""
        if shard_size < 1:
            raise ConfigError(f"shard_size: must be >= 1, got {shard_size}")
        self.spec = spec
        self.catalogue = Path(catalogue)
        self.fmt = source.infer_format(catalogue, fmt)
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.encoder = encoder
        self.encoder_runtime = check_runtime(encoder_runtime)
        self.shard_size = shard_size
        self.inner_batch_size = inner_batch_size
        self.num_actors = num_actors
        self.use_gpu = use_gpu
        self.out = Path(output or spec.output)
        self.work = self.out / "_work"
        self.shards_dir = self.work / "shards"
        self.quarantine_dir = self.out / "quarantine"
        self.progress = progress
        self.on_shard = on_shard
        self.loader_quarantined = 0

    # -- helpers ---------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if self.progress:
            print(f"[campaign {self.spec.name}] {msg}", file=sys.stderr, flush=True)

    def _model_info(self) -> tuple[str, list[str]]:
        """Model version and which scores are zero-shot, without loading weights in the driver."""
        if self.checkpoint is None:
            return f"pretrained-{self.encoder}", sorted(zero_shot_scores(_NoHeads()))
        manifest = read_manifest(self.checkpoint)
        return model_version(manifest), sorted(zero_shot_scores(_ManifestHeads(manifest)))

    def _source(self) -> tuple[Path, str]:
        if self.fmt in source.CANONICAL_FORMATS:
            return self.catalogue, self.fmt
        staged = self.work / "staged" / "catalogue.parquet"
        loader_info = self.work / "staged" / "loader.json"
        if staged.exists() and loader_info.exists():
            self.loader_quarantined = json.loads(loader_info.read_text())["quarantined"]
            return staged, "parquet"
        self._log(f"staging {self.catalogue} ({self.fmt}) as canonical parquet via shoprank.data.loaders")
        staged, n_bad = source.stage_shared_format(
            self.catalogue, self.fmt, staged, self.quarantine_dir / "loader.parquet"
        )
        self.loader_quarantined = n_bad
        atomic_write_json(loader_info, {"quarantined": n_bad})
        return staged, "parquet"

    def _fingerprint(self, version: str) -> dict[str, Any]:
        st = self.catalogue.stat()
        # an ONNX runtime's embeddings differ slightly from torch's: a run resumes on the runtime it began with
        runtime = {"encoder_runtime": self.encoder_runtime} if self.encoder_runtime != "torch" else {}
        return {
            **runtime,
            "spec_sha256": self.spec.fingerprint(),
            "catalogue": str(self.catalogue.resolve()),
            "catalogue_size": st.st_size,
            "catalogue_mtime_ns": st.st_mtime_ns,
            "format": self.fmt,
            "model_version": version,
            "encoder": self.encoder if self.checkpoint is None else None,
            "shard_size": self.shard_size,
            "inner_batch_size": self.inner_batch_size,
            "code_version": shoprank.__version__,
        }

    def _prepare_workdir(self, fingerprint: dict[str, Any]) -> None:
        manifest_path = self.work / "manifest.json"
        if manifest_path.exists():
            try:
                old = json.loads(manifest_path.read_text())
            except json.JSONDecodeError:
                old = None
            if old != fingerprint:
                self._log("inputs changed since the last run: discarding its shards")
                shutil.rmtree(self.work, ignore_errors=True)
                for stale in (self.quarantine_dir, self.out / "ranked", self.out / "plots"):
                    shutil.rmtree(stale, ignore_errors=True)
                for stale in (self.out / "report.md", self.out / "summary.json"):
                    stale.unlink(missing_ok=True)
        atomic_write_json(manifest_path, fingerprint, indent=2, sort_keys=True)

    def _paths(self, k: int) -> tuple[Path, Path, Path]:
        return (
            self.shards_dir / f"scores-{k:05d}.parquet",
            self.shards_dir / f"top-{k:05d}.parquet",
            self.shards_dir / f"stats-{k:05d}.json",
        )

    def _done(self, k: int) -> bool:
        return self._paths(k)[2].exists()

    def _commit(self, k: int, df: pl.DataFrame) -> None:
        scores_path, top_path, stats_path = self._paths(k)
        df = df.sort("_row")
        ok = df.filter(pl.col("_status") == "ok")
        keep = [c for c in ranking.RANKED_COLUMNS if c != "rank"]
        source.atomic_write_parquet(ok.select(keep).to_arrow(), scores_path)
        source.atomic_write_parquet(ranking.shard_top(ok, self.spec.top_n).to_arrow(), top_path)
        atomic_write_json(stats_path, _stats_for_shard(df), sort_keys=True)

    def _pool(self) -> tuple[int, float, float, int]:
        """(actors, CPUs per actor, GPUs per actor, torch threads per actor) for this cluster."""
        import ray

        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        cpus = float(res.get("CPU", 1))
        use_gpu = (gpus > 0) if self.use_gpu is None else self.use_gpu
        if use_gpu:
            n = self.num_actors or max(1, gpus)
            return n, 1.0, 1.0, 0
        n = self.num_actors or max(1, int(cpus))
        per = max(0.1, min(1.0, cpus / n))
        threads = max(1, int(cpus // n))
        return n, per, 0.0, threads

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> CampaignResult:
        t0 = time.perf_counter()
        init_ray()  # a local Ray unless one is running (a submitted job's driver has joined its cluster)
        version, zero_shot = self._model_info()
        if self.spec.segments is not None and self.spec.segments.by == "intent" and not self.spec.segments.values:
            if "intent" not in (_ManifestHeads(read_manifest(self.checkpoint)).trained if self.checkpoint else set()):
                raise ConfigError("segments.values: required for by=intent when the model has no trained intent head")
        self._prepare_workdir(self._fingerprint(version))
        path, fmt = self._source()
        lf = source.scan(path, fmt)
        source.check_columns(lf, path)
        source.check_filters(lf, self.spec.filters.model_dump(), self.catalogue)
        n_rows = source.count_rows(lf)
        shards = source.plan_shards(n_rows, self.shard_size)
        pending = [s for s in shards if not self._done(s.index)]
        skipped = len(shards) - len(pending)
        self._log(
            f"{n_rows} rows in {len(shards)} shards of {self.shard_size}; {skipped} already done, "
            f"{len(pending)} to score; model {version}; zero-shot: {', '.join(zero_shot) or 'none'}"
        )
        computed = 0
        t_score = time.perf_counter()
        rows_scored = 0
        if pending:
            computed, rows_scored = self._score(pending, str(path), fmt)
        score_s = time.perf_counter() - t_score
        complete = all(self._done(s.index) for s in shards)
        result = CampaignResult(
            output=self.out,
            report=None,
            complete=complete,
            shards_total=len(shards),
            shards_computed=computed,
            shards_skipped=skipped,
            rows=n_rows,
            scored=0,
            quarantined=0,
            filtered=0,
            zero_shot=zero_shot,
            elapsed_s=0.0,
            items_per_s=rows_scored / score_s if score_s > 0 and rows_scored else 0.0,
        )
        if complete:
            self._finish(shards, version, zero_shot, result)
        result.elapsed_s = time.perf_counter() - t0
        run_info = {
            "complete": complete,
            "shards_total": len(shards),
            "shards_computed": computed,
            "shards_skipped": skipped,
            "rows_read_this_run": rows_scored,
            "scoring_s": round(score_s, 3),
            "elapsed_s": round(result.elapsed_s, 3),
            "items_per_s": round(result.items_per_s, 1),
        }
        atomic_write_json(self.out / "run.json", run_info, indent=2, sort_keys=True)
        self._log(
            f"{'done' if complete else 'stopped early'}: {computed} shards scored, {skipped} skipped, "
            f"{result.items_per_s:.0f} items/s, {result.elapsed_s:.1f}s"
            + (f"; report: {result.report}" if result.report else "")
        )
        return result

    def _score(self, pending: list[source.Shard], path: str, fmt: str) -> tuple[int, int]:
        import ray.data
        from tqdm import tqdm

        n_actors, cpus_per, gpus_per, threads = self._pool()
        n_actors = min(n_actors, len(pending))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        try:  # per-worker memory of the Polars read tasks is expected (one shard); don't nag about it
            ctx.issue_detectors_config.high_memory_detector_config.detection_time_interval_s = -1
        except AttributeError:  # pragma: no cover - other Ray versions
            pass
        descs = [{"shard": s.index, "start": s.start, "length": s.length} for s in pending]
        expected = {s.index: s.length for s in pending}
        qdir = str(self.quarantine_dir)

        ds = ray.data.from_items(descs, override_num_blocks=len(descs))
        ds = ds.map_batches(
            ShardScorer,
            fn_constructor_kwargs={
                "spec": self.spec.model_dump(mode="json"),
                "source_path": path,
                "source_format": fmt,
                "quarantine_dir": qdir,
                "checkpoint": self.checkpoint,
                "encoder": self.encoder,
                "encoder_runtime": self.encoder_runtime,
                "inner_batch_size": self.inner_batch_size,
                "num_threads": threads or None,
                "device": "cuda" if gpus_per else "cpu",
            },
            batch_size=1,  # one shard per call: the actor reads it (Polars) and scores it
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=cpus_per,
            num_gpus=gpus_per,
        )
        self._log(f"scoring on {n_actors} actor(s) ({'GPU' if gpus_per else f'{cpus_per:g} CPU'} each)")
        partial: dict[int, list[pl.DataFrame]] = {}
        counts: dict[int, int] = {}
        computed = rows = 0
        bar = tqdm(total=sum(expected.values()), unit="item", disable=not self.progress, file=sys.stderr)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                for (k,), part in frame.partition_by("_shard", as_dict=True).items():
                    k = int(k)
                    partial.setdefault(k, []).append(part)
                    counts[k] = counts.get(k, 0) + part.height
                    bar.update(part.height)
                    if counts[k] == expected[k]:
                        self._commit(k, pl.concat(partial.pop(k)))
                        computed += 1
                        rows += expected[k]
                        if self.on_shard is not None and self.on_shard(k):
                            self._log(f"stopping after {computed} shard(s) (on_shard)")
                            return computed, rows
                    elif counts[k] > expected[k]:
                        raise DataError(f"shard {k}: got {counts[k]} rows, expected {expected[k]}")
        finally:
            bar.close()
        return computed, rows

    def _finish(self, shards: list[source.Shard], version: str, zero_shot: list[str], result: CampaignResult) -> None:
        from shoprank.campaign import report

        stats = [json.loads(self._paths(s.index)[2].read_text()) for s in shards]
        agg = aggregate_stats(stats)
        ranked = ranking.rank_segments([self._paths(s.index)[1] for s in shards], self.spec.top_n)
        ranking.write_partitioned(ranked, self.out / "ranked")
        q_reasons = quarantine_reasons(self.quarantine_dir)
        agg["quarantined"] += self.loader_quarantined
        agg["rows"] += self.loader_quarantined
        result.rows = agg["rows"]  # as in the report: rows in the source, the loader's quarantined ones included
        result.scored, result.quarantined, result.filtered = agg["scored"], agg["quarantined"], agg["filtered"]
        result.segments = len(agg["segments"])
        summary = {
            "campaign": self.spec.name,
            "catalogue": self.catalogue.name,
            "format": self.fmt,
            "model_version": version,
            "zero_shot": zero_shot,
            "window": self.spec.window,
            "themes": self.spec.theme_texts(),
            "blend": self.spec.blend.normalised(),
            "top_n": self.spec.top_n,
            "rows": agg["rows"],
            "scored": agg["scored"],
            "filtered": agg["filtered"],
            "quarantined": agg["quarantined"],
            "quarantine_reasons": q_reasons,
            "shards": len(shards),
            "shard_size": self.shard_size,
            "segments": {
                s: {"n": v["n"], "mean_score": round(v["score_sum"] / v["n"], 6) if v["n"] else None}
                for s, v in agg["segments"].items()
            },
        }
        atomic_write_json(self.out / "summary.json", summary, indent=2, sort_keys=True)
        result.report = report.write_report(self.out, self.spec, summary, agg, ranked)


def aggregate_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum per-shard stats in shard order (deterministic float sums)."""
    agg: dict[str, Any] = {"rows": 0, "scored": 0, "filtered": 0, "quarantined": 0, "hist": {}, "segments": {}}
    for s in stats:
        for key in ("rows", "scored", "filtered", "quarantined"):
            agg[key] += s[key]
        for c, h in s["hist"].items():
            agg["hist"][c] = [a + b for a, b in zip(agg["hist"].get(c, [0] * len(h)), h, strict=True)]
        for seg, v in s["segments"].items():
            a = agg["segments"].setdefault(seg, {"n": 0, "score_sum": 0.0, "demand_by_month": [0.0] * 12})
            a["n"] += v["n"]
            a["score_sum"] += v["score_sum"]
            a["demand_by_month"] = [x + y for x, y in zip(a["demand_by_month"], v["demand_by_month"], strict=True)]
    agg["segments"] = dict(sorted(agg["segments"].items()))
    return agg


def quarantine_reasons(directory: Path) -> dict[str, int]:
    """Count of quarantined rows per reason (read lazily from the quarantine files)."""
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return {}
    reasons = pl.concat([pl.scan_parquet(str(f)).select(pl.col("_reason").cast(pl.Utf8)) for f in files])
    counts = reasons.group_by("_reason").len().sort("_reason").collect()
    return {r["_reason"]: int(r["len"]) for r in counts.iter_rows(named=True)}


class _NoHeads:
    """Stands in for a pretrained-only model when deciding which scores are zero-shot."""

    label_maps: dict[str, list[str]] = {}

    def is_trained(self, task: str) -> bool:
        return False


class _ManifestHeads:
    """Trained heads as a checkpoint manifest records them (no weights loaded)."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.trained = set(manifest.get("trained_tasks", []))
        self.label_maps = manifest.get("label_maps") or {}

    def is_trained(self, task: str) -> bool:
        if task in CLASS_TASKS and not self.label_maps.get(task):
            return False
        return task in self.trained


def run_campaign(
    spec: CampaignSpec | str | Path,
    catalogue: str | Path,
    **kwargs: Any,
) -> CampaignResult:
    """Load the spec (if a path) and run it; keyword arguments go to :class:`CampaignRunner`."""
    from shoprank.campaign.spec import load_spec

    if not isinstance(spec, CampaignSpec):
        spec = load_spec(spec)
    return CampaignRunner(spec, catalogue, **kwargs).run()


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
