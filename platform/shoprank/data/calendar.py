"""The season calendar (northern hemisphere, meteorological seasons): one table for all.

Campaign windows (``shoprank.campaign``), campaign season scoring and the ranker's
``season_fit`` (``shoprank.serving``) all read it.
"""

from __future__ import annotations

SEASON_MONTHS: dict[str, tuple[int, ...]] = {
    "winter": (12, 1, 2),
    "spring": (3, 4, 5),
    "summer": (6, 7, 8),
    "fall": (9, 10, 11),
}
MONTH_SEASON: dict[int, str] = {m: s for s, ms in SEASON_MONTHS.items() for m in ms}
SEASONS: tuple[str, ...] = tuple(SEASON_MONTHS)  # winter, spring, summer, fall
