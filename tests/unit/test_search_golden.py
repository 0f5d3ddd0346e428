"""Served results for 100 fixed requests must not change: the in-process SearchPipeline against
tests/golden/search_100.json (recorded before the serving flow was refactored; see
tests/golden/make_search_100.py). The Serve path is held to the same answers in
test_serving_e2e.py::test_served_results_match_in_process.

Item ids must match exactly; scores and intent confidence within ``TOL``: float noise on a CPU
(batch shapes, BLAS threads) is ~1e-7 on these 0..1 scores, while any real change of the flow
(weights, candidates, season fit, temperature) moves them by far more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shoprank.serving.pipeline import to_response
from shoprank.serving.protos import pb2
from shoprank.serving.validation import InvalidRequest, validate_rank, validate_search

from tests.serving_helpers import (
    assert_same,
    golden_error,
    golden_pipeline,
    golden_record,
    golden_request,
    golden_run,
    golden_specs,
    small_catalogue,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "search_100.json"


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return golden_pipeline(tmp_path_factory.mktemp("golden"))


def test_golden_specs_are_the_recorded_ones(golden) -> None:
    assert golden_specs(small_catalogue()) == golden["specs"]
    assert len(golden["results"]) == 100 and sum("error" in r for r in golden["results"]) == 3


def test_in_process_search_matches_golden(pipe, golden) -> None:
    got = golden_run(pipe, golden["specs"])
    for i, (g, w) in enumerate(zip(got, golden["results"], strict=True)):
        assert_same(g, w, f"request {i}: {golden['specs'][i]}")


def test_one_batch_matches_golden(pipe, golden) -> None:
    """All 100 in one batch (one forward pass per stage): the same answers; a bad request fails alone."""

    qs = []
    for spec in golden["specs"]:
        req = golden_request(spec, pb2)
        qs.append(validate_rank(req, pipe.config) if spec["rpc"] == "rank" else validate_search(req, pipe.config))
    outcomes = pipe.search_batch(qs)
    assert len(outcomes) == 100
    for i, (res, w) in enumerate(zip(outcomes, golden["results"], strict=True)):
        if isinstance(res, InvalidRequest):
            got = {"error": golden_error(str(res))}
        else:
            got = golden_record(to_response(res, pb2))
        assert_same(got, w, f"request {i}")
    assert max(r.batch_size for r in outcomes if not isinstance(r, InvalidRequest)) == 97
