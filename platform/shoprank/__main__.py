"""``python -m shoprank`` is the same as the ``shoprank`` command."""

import sys

from shoprank.cli import main

sys.exit(main())
