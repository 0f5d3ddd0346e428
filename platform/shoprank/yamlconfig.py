"""Reading YAML configs into pydantic models, with one-line errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from shoprank.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """Parse a YAML file; a missing file or bad YAML is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


def validation_message(e: ValidationError) -> str:
    """``field.path: message; other.field: message`` for every error."""
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or '(top level)'}: {err['msg']}" for err in e.errors())


def validate_mapping(model: type[M], data: Any, source: str) -> M:
    """Validate a parsed YAML mapping; raise ConfigError naming each bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {validation_message(e)}") from None
