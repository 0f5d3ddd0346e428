"""Ray job entry: ``python -m jobs.ablation`` runs ``shoprank.train.ablation.main``."""

import sys

from shoprank.train.ablation import main

if __name__ == "__main__":
    sys.exit(main())
