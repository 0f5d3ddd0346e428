"""Data layer: canonical Polars frames, loaders for real formats, validation, synthetic data."""
