"""The served-results log -> training events: what the platform showed, and what users did with it.

Reads a directory written by :class:`shoprank.feedback.served_log.ServedLog` (``searches/`` and
``feedback/``, ``date=*/part-*.parquet``; temp files of writes in progress are never read) and
returns the canonical ``events`` frame (its ``position`` column is the 1-based rank shown):

- every shown item of every logged Search/Rank is an ``impression`` (the search's time, query,
  hashed user and the item's position);
- every ``click`` / ``add_to_cart`` / ``purchase`` in the feedback log is matched to the search that
  showed its item: by ``request_id`` when the event names a logged request, otherwise (no or an
  unknown ``request_id``) to the latest search at or before the event by the same user with the
  same (case/space-normalised) query that showed the item. A matched event keeps its own type and
  time and takes the search's query and the item's position.

Counted and reported, never joined (the loaders' convention: the quarantine frame with a reason
per row, see :mod:`shoprank.data.validate`): feedback on an item the matched search did not show,
or with no earlier search to match (``"feedback on an item not shown"``); unreadable or truncated
parquet files (``"unreadable file"``, row 0); rows missing an id, query or time. The notes say how
many events matched by ``request_id`` vs the fallback, how many resent events (same ``event_id``)
were counted once, and how many feedback impressions were left out (the log's own are used).

Training needs a catalogue too: give the source ``parts:``, the served log plus a catalogue file.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprank.data import validate as V
from shoprank.data.sources.common import LoadResult, make_result
from shoprank.errors import DataError
from shoprank.feedback.served_log import FEEDBACK, SCHEMAS, SEARCHES

NOT_SHOWN = "feedback on an item not shown"
UNREADABLE_FILE = "unreadable file"
ACTIONS = ("click", "add_to_cart", "purchase")
_KNOWN_TYPES = ("impression", *ACTIONS)


def _bad_file(path: Path, why: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"source": [str(path)], "row": [0], "reason": [UNREADABLE_FILE], "raw": [why]}, schema=V.QUARANTINE_SCHEMA
    )


def _read_stream(root: Path, stream: str, q: list[pl.DataFrame]) -> tuple[pl.DataFrame, int]:
    """Every readable part file of ``stream`` in its schema, with ``__source``/``__row``; bad files quarantined."""
    schema = SCHEMAS[stream]
    frames, rows = [], 0
    for path in sorted((root / stream).glob("date=*/part-*.parquet")):
        try:
            df = pl.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - polars raises several types for a bad file
            q.append(_bad_file(path, str(e).splitlines()[0] if str(e) else type(e).__name__))
            continue
        missing = [c for c in schema if c not in df.columns]
        if missing:
            q.append(_bad_file(path, f"missing column {missing[0]!r}"))
            continue
        try:
            df = df.select([pl.col(c).cast(t) for c, t in schema.items()])
        except Exception as e:  # noqa: BLE001 - a column of the wrong type
            q.append(_bad_file(path, f"wrong column types ({str(e).splitlines()[0]})"))
            continue
        rows += df.height
        frames.append(
            df.with_columns(
                pl.lit(str(path)).alias("__source"), pl.int_range(1, df.height + 1, dtype=pl.Int64).alias("__row")
            )
        )
    empty = pl.DataFrame(schema={**schema, "__source": pl.Utf8(), "__row": pl.Int64()})
    return (pl.concat(frames) if frames else empty), rows


def _rules(df: pl.DataFrame, rules: list[tuple[pl.Expr, str]], q: list[pl.DataFrame]) -> pl.DataFrame:
    """Quarantine rows breaking ``rules`` (per source file, with the row's fields as JSON)."""
    if df.is_empty():
        return df
    good = []
    cols = [c for c in df.columns if not c.startswith("__")]
    raw = pl.struct(cols).struct.json_encode()
    for (source,), part in df.group_by("__source", maintain_order=True):
        g, bad = V.apply_rules(part, rules, source=str(source), raw=raw)
        good.append(g)
        q.append(bad)
    return pl.concat(good)


def _searches(root: Path, q: list[pl.DataFrame]) -> tuple[pl.DataFrame, int]:
    df, rows = _read_stream(root, SEARCHES, q)
    bad_item = (
        pl.col("items")
        .list.eval(
            pl.element().struct.field("item_id").fill_null("").str.strip_chars().eq("")
            | pl.element().struct.field("position").fill_null(0).lt(1)
        )
        .list.any()
    )
    df = _rules(df, [
        (V.blank("request_id"), V.EMPTY_ID), (V.blank("query"), V.EMPTY_TEXT),
        (pl.col("time").is_null(), V.BAD_TIMESTAMP), (pl.col("items").is_null() | bad_item, V.BAD_VALUE),
        (~pl.col("request_id").is_first_distinct(), V.DUPLICATE_ID),
    ], q)  # fmt: skip
    return df, rows


def _feedback(root: Path, q: list[pl.DataFrame], notes: list[str]) -> tuple[pl.DataFrame, int]:
    df, rows = _read_stream(root, FEEDBACK, q)
    df = _rules(df, [
        (V.blank("item_id"), V.EMPTY_ID), (V.blank("query"), V.EMPTY_TEXT),
        (pl.col("time").is_null(), V.BAD_TIMESTAMP), (~pl.col("event_type").is_in(_KNOWN_TYPES), V.BAD_VALUE),
    ], q)  # fmt: skip
    if df.is_empty():
        return df, rows
    resent = pl.col("event_id").is_not_null() & ~pl.col("event_id").is_first_distinct()
    n_resent = int(df.select(resent.sum()).item())
    if n_resent:
        notes.append(f"{n_resent} resent feedback events (same event_id) counted once")
        df = df.filter(~resent)
    n_impr = int((df["event_type"] == "impression").sum())
    if n_impr:
        notes.append(f"{n_impr} impression events in the feedback log left out (the searches log has what was shown)")
    return df.filter(pl.col("event_type") != "impression"), rows


def _qnorm(col: str) -> pl.Expr:
    """:func:`~shoprank.data.sources.common.normalize_query` as an expression (lower case, single spaces)."""
    return pl.col(col).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def _joined(user: pl.Expr) -> list[pl.Expr]:
    """An action joined to the search that showed its item: the search's query and the item's position."""
    return [user.alias("user_hash"), pl.col("__sq").alias("query"), pl.col("item_id"), pl.col("event_type"),
            pl.col("time").alias("timestamp"), pl.col("__pos").alias("position"), pl.col("__i")]  # fmt: skip


def join_served(
    searches: pl.DataFrame, feedback: pl.DataFrame, q: list[pl.DataFrame], notes: list[str]
) -> pl.DataFrame:
    """Impressions of every shown item plus the actions matched to them (see the module doc), as ``events``."""
    shown = (
        searches.select("request_id", "time", "user_hash", "query", "items")
        .explode("items")
        .drop_nulls("items")
        .unnest("items")
        .with_columns(_qnorm("query").alias("__q"))
    )
    impressions = shown.select(
        "user_hash", "query", "item_id", pl.lit("impression").alias("event_type"),
        pl.col("time").alias("timestamp"), "position",
    )  # fmt: skip
    fb = feedback.with_columns(_qnorm("query").alias("__q"), pl.int_range(pl.len()).alias("__i"))
    keep = ["user_hash", "query", "item_id", "event_type", "timestamp", "position", "__i"]
    known = (
        fb["request_id"].is_in(searches["request_id"].implode()).fill_null(False)
        if fb.height
        else pl.Series([], dtype=pl.Boolean)
    )
    by_id = (
        fb.filter(known)
        .join(
            shown.select(
                "request_id",
                "item_id",
                pl.col("query").alias("__sq"),
                pl.col("user_hash").alias("__su"),
                pl.col("position").alias("__pos"),
            ),
            on=["request_id", "item_id"],
            how="inner",
        )  # fmt: skip
        .select(_joined(pl.coalesce("user_hash", "__su")))
    )
    rest = fb.filter(~known & pl.col("user_hash").is_not_null()).sort("time")
    right = shown.filter(pl.col("user_hash").is_not_null()).sort("time").select(
        "user_hash", "__q", "item_id", pl.col("time").alias("__st"), pl.col("query").alias("__sq"),
        pl.col("position").alias("__pos"),
    )  # fmt: skip
    by_user = (
        rest.join_asof(
            right,
            left_on="time",
            right_on="__st",
            by=["user_hash", "__q", "item_id"],
            strategy="backward",
            check_sortedness=False,
        )
        .filter(pl.col("__st").is_not_null())
        .select(_joined(pl.col("user_hash")))
        if rest.height
        else pl.DataFrame(schema={c: by_id.schema[c] for c in keep})
    )
    matched = pl.concat([by_id.select(keep), by_user.select(keep)])
    unmatched = fb.filter(~pl.col("__i").is_in(matched["__i"].implode()))
    for (source,), part in unmatched.group_by("__source", maintain_order=True):
        raw = pl.struct([c for c in part.columns if not c.startswith("__")]).struct.json_encode()
        q.append(part.select(pl.lit(str(source)).alias("source"), pl.col("__row").alias("row"),
                             pl.lit(NOT_SHOWN).alias("reason"), raw.alias("raw")))  # fmt: skip
    notes.append(
        f"feedback joined: {by_id.height} by request_id, {by_user.height} by user+query, "
        f"{unmatched.height} on items not shown (quarantined)"
    )
    events = pl.concat([impressions, matched.drop("__i")], how="vertical_relaxed").sort(
        "timestamp", maintain_order=True
    )
    return V.conform(events, "events")


def load_served_log(path: Path, salt: str | None = None, encoding: str | None = None) -> LoadResult:
    """A served-results log directory -> ``events`` (impressions + matched actions, with positions).

    ``salt`` and ``encoding`` are unused: the log holds salted user hashes already, in parquet."""
    if not path.is_dir() or not ((path / SEARCHES).is_dir() or (path / FEEDBACK).is_dir()):
        raise DataError(f"{path}: not a served-results log (no {SEARCHES}/ or {FEEDBACK}/ folder)")
    q: list[pl.DataFrame] = []
    notes: list[str] = []
    searches, n_s = _searches(path, q)
    feedback, n_f = _feedback(path, q, notes)
    if searches.is_empty():
        notes.append("no readable searches: nothing shown, every action is reported as not shown")
    events = join_served(searches, feedback, q, notes)
    return make_result("served-log", str(path), n_s + n_f, {"events": events}, q, notes)
