"""Files shipped inside the package (package data), found without a repository checkout."""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
DEMO_CONFIG = RESOURCES / "demo.yaml"  # `shoprank demo`'s short fine-tune of MiniLM on the synthetic data
