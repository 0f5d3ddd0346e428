"""Ray job entry: ``python -m jobs.tune`` runs ``shoprank.tune.driver.main`` (see its docstring for the options)."""

import sys

from shoprank.tune.driver import main

if __name__ == "__main__":
    sys.exit(main())
