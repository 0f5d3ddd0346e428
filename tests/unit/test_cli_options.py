"""One CLI vocabulary: --address (Ray cluster), --submit (job server), --target (gRPC server), --out,
--no-wait, on every command; old spellings still parse with a deprecation warning (no Ray)."""

from __future__ import annotations

import pytest
from shoprank.cli import build_parser
from shoprank.cli.options import warn_deprecated

CAMPAIGN = ["--campaign", "c.yaml", "--catalogue", "cat.parquet"]


def parse(argv: list[str]):  # noqa: ANN201 - argparse.Namespace
    """Parse as ``shoprank`` does, printing its deprecation warnings."""
    ns = build_parser().parse_args(argv)
    warn_deprecated(ns)
    return ns


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--config", "c.yaml", "--out", "o"],
        ["tune", "--config", "t.yaml"],
        ["campaign", "run", *CAMPAIGN],
        ["index", "build", "--catalogue", "cat.parquet", "--out", "o"],
    ],
)
def test_address_is_the_ray_cluster(argv: list[str]) -> None:
    assert parse(argv).address is None
    ns = parse([*argv, "--address", "auto"])
    assert ns.address == "auto" and getattr(ns, "submit", None) is None
    assert parse([*argv, "--address", "10.0.0.1:6379"]).address == "10.0.0.1:6379"


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--config", "c.yaml", "--out", "o"],
        ["tune", "--config", "t.yaml"],
        ["campaign", "run", *CAMPAIGN],
    ],
)
def test_submit_and_no_wait(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    ns = parse(argv)
    assert ns.submit is None and ns.no_wait is False
    ns = parse([*argv, "--submit", "http://head:8265", "--no-wait"])
    assert ns.submit == "http://head:8265" and ns.no_wait is True and ns.address is None
    assert capsys.readouterr().err == ""
    # the old meaning of --address (a job server URL) and --no-follow still work, with a warning
    ns = parse([*argv, "--address", "http://head:8265", "--no-follow"])
    assert ns.submit == "http://head:8265" and ns.address is None and ns.no_wait is True
    err = capsys.readouterr().err
    assert "shoprank: warning: --address http://head:8265 (a job server) is deprecated; use --submit" in err
    assert "--no-follow is deprecated; use --no-wait" in err


def test_campaign_submit_and_status_take_submit(capsys: pytest.CaptureFixture[str]) -> None:
    ns = parse(["campaign", "submit", *CAMPAIGN, "--submit", "http://h:8265"])
    assert ns.submit == "http://h:8265" and ns.no_wait is False and ns.retry_s == 60.0
    ns = parse(["campaign", "status", "raysubmit_1", "--submit", "http://h:8265"])
    assert ns.submit == "http://h:8265" and ns.job_id == "raysubmit_1"
    for action in (["submit", *CAMPAIGN], ["status"]):
        ns = parse(["campaign", *action, "--address", "127.0.0.1:8265"])  # old spelling: job server
        assert ns.submit == "127.0.0.1:8265"
        assert "--address is deprecated; use --submit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["campaign", "status"])  # a job server is required
    assert "--submit" in capsys.readouterr().err


def test_out_everywhere_output_deprecated(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse(["campaign", "run", *CAMPAIGN]).out is None
    assert parse(["campaign", "run", *CAMPAIGN, "--out", "o"]).out == "o"
    assert capsys.readouterr().err == ""
    assert parse(["campaign", "submit", *CAMPAIGN, "--submit", "u", "--output", "o2"]).out == "o2"
    assert "--output is deprecated; use --out" in capsys.readouterr().err
    import argparse

    from shoprank.cli.campaign_job import add_job_arguments  # the job's own parser shares the options

    p = argparse.ArgumentParser()
    add_job_arguments(p)
    assert p.parse_args([*CAMPAIGN, "--out", "x"]).out == "x"


def test_search_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse(["search", "boots"]).target == "localhost:9000"
    assert parse(["search", "boots", "--target", "h:9100"]).target == "h:9100"
    assert capsys.readouterr().err == ""
    assert parse(["search", "boots", "--address", "h:9200"]).target == "h:9200"
    assert "--address is deprecated; use --target" in capsys.readouterr().err


def test_hidden_aliases_stay_out_of_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["train"], ["campaign", "run"], ["search"]):
        with pytest.raises(SystemExit):
            parse([*argv, "--help"])
        out = capsys.readouterr().out
        assert "--output" not in out and "--no-follow" not in out
    with pytest.raises(SystemExit):
        parse(["search", "--help"])
    assert "--address" not in capsys.readouterr().out
