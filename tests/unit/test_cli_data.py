"""The ``shoprank data`` and ``shoprank demo`` commands, run in-process through shoprank.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from shoprank.cli import main

from tests.conftest import shared_file


def test_synth_validate_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    assert main(["data", "synth", "--out", str(out), "--items", "800", "--seed", "4", "--no-progress"]) == 0
    assert "catalogue.parquet" in capsys.readouterr().out
    assert main(["data", "validate", str(out), "--format", "canonical", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"]["catalogue"] == 800 and summary["quarantined"] == 0
    assert main(["data", "stats", str(out / "catalogue.parquet")]) == 0
    text = capsys.readouterr().out
    assert "season" in text and "top-level category" in text


def test_validate_prints_quarantine_and_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "hd.csv"
    src.write_text(
        "id,product_uid,product_title,search_term,relevance\n1,2,Hinge,door hinge,3\n2,3,,x,2\n3,4,Nail,nail,high\n"
    )
    q = tmp_path / "q.csv"
    assert main(["data", "validate", str(src), "--format", "homedepot", "--quarantine-out", str(q)]) == 0
    text = capsys.readouterr().out
    assert "3 rows read" in text and "empty title" in text and "unparseable number" in text
    assert "kept judgements" in text
    assert pl.read_csv(q)["reason"].to_list() == ["empty title", "unparseable number"]


def test_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "hd.csv"
    bad.write_text("id,product_uid,product_title,search_term\n1,2,t,q\n")
    assert main(["data", "validate", str(bad), "--format", "homedepot"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "'relevance'" in err
    assert main(["data", "validate", str(tmp_path / "missing.csv"), "--format", "wands"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["data", "validate", str(bad), "--format", "nope"]) == 2
    assert "unknown format" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--items", "0"]) == 2


def test_help_explains_options(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in (
        (["data", "synth", "--help"], ["--out", "--items", "--seed"]),
        (["data", "validate", "--help"], ["--format", "--salt", "--quarantine-out", "homedepot", "instacart"]),
        (["data", "stats", "--help"], ["--format", "PATH".lower()]),
        (["demo", "--help"], ["--out", "--items"]),
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        text = capsys.readouterr().out
        for w in words:
            assert w in text, (argv, w)


def test_demo_skeleton(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shoprank.cli import demo

    assert [title for title, _ in demo.STAGES[:2]] == ["synthesise the default data", "validate it"]
    out = tmp_path / "demo"
    # Only the data stages here: later issues' stages have their own tests.
    stages, demo.STAGES[:] = list(demo.STAGES), demo.STAGES[:2]
    try:
        assert main(["demo", "--out", str(out), "--items", "500"]) == 0
    finally:
        demo.STAGES[:] = stages
    text = capsys.readouterr().out
    assert "[1/2] synthesise the default data" in text and "0 quarantined" in text
    assert (out / "data" / "catalogue.parquet").exists()


@pytest.mark.shared_data
def test_validate_shared_wands(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_file(shared_data, "wands/query.csv")
    assert main(["data", "validate", str(path), "--format", "wands"]) == 0
    assert "kept queries" in capsys.readouterr().out
