"""The one text of an item per *text kind*, used by training, eval, indexing, serving and campaigns.

Each task declares the kind its heads read (``TaskSpec.text_kind`` in ``shoprank.model.registry``):

- ``pair`` (query–item heads: retrieval, relevance, click; demand scores the same embedding):
  ``title | category path | description[:200]``;
- ``item`` (item-class heads: category, season): ``title | description[:200] | attribute values``
  without the attributes that are labels (season, articletype, category).

A :class:`TextRecipe` says which parts, how many description characters and which attribute keys
are left out; :func:`item_texts` renders a frame's (or an Arrow table's, or plain columns') texts
from one. The recipes a model was trained with are stored in its checkpoint manifest under
:data:`MANIFEST_KEY` (and in an index artefact's manifest); :func:`recipes_of` reads them back,
with today's :data:`DEFAULT_RECIPES` for an older manifest that has none. Paths read recipes from
the checkpoint, never from these constants.

This module imports no other shoprank module but the registry (pure data), so everything can use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from shoprank.model.registry import TextKind

MAX_DESCRIPTION_CHARS = 200
MANIFEST_KEY = "item_text"  # where a checkpoint's (or index's) manifest keeps the recipes
PARTS = ("title", "category_path", "description", "attributes")  # the parts a recipe may name
PAIR: TextKind = "pair"
ITEM: TextKind = "item"
TEXT_KINDS: tuple[TextKind, ...] = (PAIR, ITEM)
SEP = " | "


@dataclass(frozen=True)
class TextRecipe:
    """How one kind's text is built: ``parts`` (non-empty ones joined with ``" | "``), the first
    ``description_chars`` of the description, attribute keys left out (case-insensitive) and
    characters stripped from both ends of the result."""

    parts: tuple[str, ...]
    description_chars: int = MAX_DESCRIPTION_CHARS
    exclude_attributes: tuple[str, ...] = ()
    strip: str = ""

    def __post_init__(self) -> None:
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise ValueError(f"item text parts {list(self.parts)}: unknown {unknown}; choose from {list(PARTS)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextRecipe:
        return cls(
            parts=tuple(d["parts"]),
            description_chars=int(d.get("description_chars", MAX_DESCRIPTION_CHARS)),
            exclude_attributes=tuple(d.get("exclude_attributes", ())),
            strip=str(d.get("strip", "")),
        )

    def render(self, title: Any, category_path: Any, description: Any, attributes: Any) -> str:
        """One item's text from its raw column values (None for a missing one)."""
        values = {
            "title": (title or "").strip(),
            "category_path": (category_path or "").strip(),
            "description": (description or "").strip()[: self.description_chars],
            "attributes": attribute_text(attributes, self.exclude_attributes) if "attributes" in self.parts else "",
        }
        text = SEP.join(values[p] for p in self.parts if values[p])
        return text.strip(self.strip) if self.strip else text


DEFAULT_RECIPES: dict[TextKind, TextRecipe] = {
    PAIR: TextRecipe(("title", "category_path", "description")),
    # the label attributes are removed; the ends are stripped of " |" (an item without attributes)
    ITEM: TextRecipe(("title", "description", "attributes"), exclude_attributes=("season", "articletype", "category"),
                     strip=" |"),
}  # fmt: skip
Recipes = Mapping[TextKind, TextRecipe]


def parse_attributes(raw: Any) -> Mapping[str, Any]:
    """A JSON attribute object (text or dict) as a mapping; empty when it is missing or not an object."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return {}
    return raw if isinstance(raw, Mapping) else {}


def attribute_text(raw: Any, exclude: Sequence[str] = ()) -> str:
    """The values of a JSON attribute object (text or dict), space-separated, without ``exclude`` keys."""
    raw = parse_attributes(raw)
    drop = {k.lower() for k in exclude}
    return " ".join(f"{v}" for k, v in raw.items() if k.lower() not in drop and v is not None)


def recipes_to_json(recipes: Recipes) -> dict[str, dict[str, Any]]:
    """The manifest form of ``recipes``."""
    return {k: r.to_dict() for k, r in recipes.items()}


def recipes_of(manifest: Mapping[str, Any] | None) -> dict[TextKind, TextRecipe]:
    """The recipes a checkpoint's (or index's) manifest records; today's defaults for each kind it lacks."""
    stored = (manifest or {}).get(MANIFEST_KEY) or {}
    out = dict(DEFAULT_RECIPES)
    for kind, d in stored.items():
        if kind in TEXT_KINDS:
            out[kind] = TextRecipe.from_dict(d)
    return out


def _columns(source: Any) -> tuple[int, Any]:
    """(rows, column getter) of a Polars frame, an Arrow table or a mapping of columns."""
    if hasattr(source, "column_names"):  # pyarrow.Table / RecordBatch
        names = set(source.column_names)
        return source.num_rows, lambda c: source.column(c).to_pylist() if c in names else None
    if hasattr(source, "height"):  # polars.DataFrame
        return source.height, lambda c: source[c].to_list() if c in source.columns else None
    n = len(next(iter(source.values()))) if source else 0
    return n, lambda c: list(source[c]) if c in source else None


def item_texts(source: Any, kind: TextKind, recipe: TextRecipe | Recipes | None = None) -> list[str]:
    """Every row's ``kind`` text by ``recipe`` (a recipe, the recipes by kind, or None: the defaults).

    ``source`` holds canonical catalogue columns (title, category_path, description, attributes;
    missing ones count as empty): a Polars frame, an Arrow table, or a mapping of column lists.
    """
    if recipe is None or not isinstance(recipe, TextRecipe):
        recipe = (recipe or DEFAULT_RECIPES)[kind]
    n, col = _columns(source)
    none = [None] * n
    cols = [col(c) or none for c in ("title", "category_path", "description", "attributes")]
    return [recipe.render(t, c, d, a) for t, c, d, a in zip(*cols, strict=True)]


def without_attributes(recipe: TextRecipe) -> TextRecipe:
    """``recipe`` without its attributes part: the text of an item whose catalogue has no attributes
    (training's attribute dropout, ``shoprank.tasks.examples``); a recipe of attributes alone keeps the title."""
    parts = tuple(p for p in recipe.parts if p != "attributes") or ("title",)
    return TextRecipe(parts, recipe.description_chars, recipe.exclude_attributes, recipe.strip)


def item_text(title: str | None, description: str | None = None, category_path: str | None = None) -> str:
    """One item's default ``pair`` text: ``title | category path | first words of description``."""
    return DEFAULT_RECIPES[PAIR].render(title, category_path, description, None)


def title_of(text: str) -> str:
    """The title part of an item text (every recipe starts with the title)."""
    return text.split(SEP, 1)[0]
