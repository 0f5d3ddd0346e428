"""Ray job entrypoints, each runnable as ``python -m jobs.<name>`` or via ``ray job submit``."""
