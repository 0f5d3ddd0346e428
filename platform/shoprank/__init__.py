"""shoprank: multi-task search and recommendation on Ray (training, serving, batch scoring)."""

__version__ = "0.1.0"
