"""CampaignSpec: a seasonal campaign, loaded from YAML and validated field by field.

Every validation error is raised as :class:`shoprank.errors.ConfigError` whose message names
the offending field by its dotted path (``blend.theme``, ``months[2]``, ``segments.by``)::

    name: winter-2026
    months: [12, 1, 2]                 # or: season: winter
    themes: ["warm winter clothing", "christmas gifts for kids"]
    segments: {by: category}           # optional: rank within each segment
    filters: {price_max: 100}          # optional
    blend: {theme: 0.5, season: 0.3, demand: 0.1, click: 0.1}
    top_n: 200
    output: out/winter-2026
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shoprank.data.calendar import MONTH_SEASON, SEASON_MONTHS
from shoprank.errors import ConfigError
from shoprank.yamlconfig import read_yaml

BLEND_KEYS = ("theme", "season", "demand", "click")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Segments(BaseModel):
    """How items are split into segments; each segment gets its own top-N."""

    model_config = ConfigDict(extra="forbid")

    by: Literal["category", "season", "intent", "locale", "column"]
    level: int = Field(1, ge=1, le=10, description="category_path depth used for by=category")
    values: list[str] | None = Field(None, description="intent labels for by=intent (zero-shot)")
    column: str | None = Field(None, description="catalogue column for by=column")

    @model_validator(mode="after")
    def _needs(self) -> Segments:
        if self.by == "column" and not self.column:
            raise ValueError("segments.column is required when segments.by is 'column'")
        if self.values is not None and not [v for v in self.values if v.strip()]:
            raise ValueError("segments.values must not be empty")
        return self


class Filters(BaseModel):
    """Items failing a filter are not scored (counted in the report)."""

    model_config = ConfigDict(extra="forbid")

    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    in_stock: bool | None = None

    @model_validator(mode="after")
    def _range(self) -> Filters:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("filters.price_min must be <= filters.price_max")
        return self


class Blend(BaseModel):
    """Non-negative weights of the four scores in the final campaign score (normalised to sum 1)."""

    model_config = ConfigDict(extra="forbid")

    theme: float = Field(0.5, ge=0)
    season: float = Field(0.3, ge=0)
    demand: float = Field(0.1, ge=0)
    click: float = Field(0.1, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> Blend:
        if self.theme + self.season + self.demand + self.click <= 0:
            raise ValueError("blend weights must not all be zero")
        return self

    def normalised(self) -> dict[str, float]:
        total = self.theme + self.season + self.demand + self.click
        return {k: getattr(self, k) / total for k in BLEND_KEYS}


class CampaignSpec(BaseModel):
    """A validated campaign: what to score, how to blend, where to write."""

    model_config = ConfigDict(extra="forbid")

    name: str
    months: list[int] | None = None
    season: Literal["winter", "spring", "summer", "fall"] | None = None
    themes: list[str] = Field(default_factory=list)
    query_sets: dict[str, list[str]] = Field(default_factory=dict)
    segments: Segments | None = None
    filters: Filters = Field(default_factory=Filters)
    blend: Blend = Field(default_factory=Blend)
    top_n: int = Field(100, ge=1, le=100_000)
    output: str = "out/campaign"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be 1-100 characters of letters, digits, '.', '_' or '-'")
        return v

    @field_validator("months")
    @classmethod
    def _months(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must list at least one month")
        for i, m in enumerate(v):
            if not 1 <= m <= 12:
                raise ValueError(f"month {m} at index {i} is not in 1..12")
        if len(set(v)) != len(v):
            raise ValueError("months must not repeat")
        return v

    @field_validator("themes")
    @classmethod
    def _themes(cls, v: list[str]) -> list[str]:
        for i, t in enumerate(v):
            if not t.strip():
                raise ValueError(f"theme at index {i} is empty")
        return [t.strip() for t in v]

    @field_validator("query_sets")
    @classmethod
    def _query_sets(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, queries in v.items():
            if not queries or not all(q.strip() for q in queries):
                raise ValueError(f"query set {name!r} must list non-empty queries")
        return v

    @field_validator("output")
    @classmethod
    def _output(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v

    @model_validator(mode="after")
    def _window_and_themes(self) -> CampaignSpec:
        if self.months is None and self.season is None:
            raise ValueError("months: give either months (1..12) or season")
        if self.months is not None and self.season is not None:
            raise ValueError("months: give either months or season, not both")
        if not self.themes and not self.query_sets:
            raise ValueError("themes: give themes or query_sets (at least one)")
        return self

    # -- derived ---------------------------------------------------------------------------
    @property
    def window(self) -> list[int]:
        """The campaign months (1..12), from ``months`` or ``season``."""
        return list(self.months) if self.months is not None else list(SEASON_MONTHS[self.season or "winter"])

    def season_weights(self) -> dict[str, float]:
        """Share of the campaign window falling in each meteorological (northern) season."""
        w = {s: 0.0 for s in SEASON_MONTHS}
        for m in self.window:
            w[MONTH_SEASON[m]] += 1.0 / len(self.window)
        return w

    def theme_texts(self) -> list[str]:
        """Every theme and every query of every query set, in spec order."""
        out = list(self.themes)
        for queries in self.query_sets.values():
            out.extend(q.strip() for q in queries)
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of the spec: reruns reuse shards only when it matches."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "campaign"


def _format_errors(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        field = _field_path(loc)
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        if not loc and ":" in msg.split(" ", 1)[0]:  # model-level errors name their own field first
            field, msg = msg.split(":", 1)
            msg = msg.strip()
        lines.append(f"{field}: {msg}")
    return f"{source}: invalid campaign spec: " + "; ".join(lines)


def parse_spec(data: Any, source: str = "campaign") -> CampaignSpec:
    """Validate a mapping into a CampaignSpec; ConfigError names every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a campaign spec must be a YAML mapping, got {type(data).__name__}")
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign YAML file."""
    return parse_spec(read_yaml(path, "campaign spec"), str(path))
