"""Ray job entry: ``python -m jobs.score_catalogue`` runs ``shoprank.cli.campaign_job.main`` (see its docstring)."""

import sys

from shoprank.cli.campaign_job import main

if __name__ == "__main__":
    sys.exit(main())
