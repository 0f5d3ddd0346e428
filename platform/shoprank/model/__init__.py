"""The multi-task model: a shared MiniLM text encoder plus switchable task heads."""

from shoprank.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from shoprank.model.multitask import ModelConfig, MultiTaskModel
from shoprank.model.registry import TASKS

__all__ = [
    "TASKS",
    "ModelConfig",
    "MultiTaskModel",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
