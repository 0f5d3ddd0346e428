"""Ray job entry: ``python -m jobs.train`` runs ``shoprank.train.driver.main`` (see its docstring for the options)."""

import sys

from shoprank.train.driver import main

if __name__ == "__main__":
    sys.exit(main())
