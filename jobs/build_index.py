"""Ray job entry: ``python -m jobs.build_index`` runs ``shoprank.cli.index_job.main`` (see its docstring)."""

import sys

from shoprank.cli.index_job import main

if __name__ == "__main__":
    sys.exit(main())
