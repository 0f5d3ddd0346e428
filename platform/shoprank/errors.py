"""User-facing errors: each carries one line that names the problem (file, column, field)."""


class ShoprankError(Exception):
    """Base class for errors that the CLI prints as one line and exits non-zero."""


class DataError(ShoprankError):
    """An input file is missing, unreadable or lacks a required column."""


class ConfigError(ShoprankError):
    """A YAML config or campaign spec has an invalid field."""


class CheckpointError(ShoprankError):
    """A checkpoint is missing, corrupt or was not written by shoprank."""
