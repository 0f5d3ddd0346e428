"""Task data: per-task examples built from canonical frames, and the data configuration.

Training and evaluation both read it (evaluation rebuilds a checkpoint's held-out splits
from it), so neither depends on the other. The task list itself is the registry,
``shoprank.model.registry``.
"""
