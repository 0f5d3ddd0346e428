"""``python -m shoprank.k8s render [--check]`` (see :mod:`shoprank.k8s`)."""

import sys

from shoprank.k8s.render import main

sys.exit(main())
