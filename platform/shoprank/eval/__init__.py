"""Evaluation: metrics, baselines and reports for trained shoprank models."""
