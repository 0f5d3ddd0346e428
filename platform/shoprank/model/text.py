"""The one text representation of an item, used by training, indexing and scoring alike."""

from __future__ import annotations

MAX_DESCRIPTION_CHARS = 200


def item_text(title: str | None, description: str | None = None, category_path: str | None = None) -> str:
    """``title | category path | first words of description`` (empty parts left out)."""
    parts = [(title or "").strip()]
    if category_path:
        parts.append(category_path.strip())
    if description:
        parts.append(description.strip()[:MAX_DESCRIPTION_CHARS])
    return " | ".join(p for p in parts if p)


def title_of(text: str) -> str:
    """The title part of a text built by :func:`item_text`."""
    return text.split(" | ", 1)[0]
