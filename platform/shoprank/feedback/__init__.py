"""The feedback loop's files: what was served and what users did with it, logged as parquet for training."""
