"""``python -m dataengine.teacher``: the command line of :mod:`dataengine.teacher.rewriter`."""

import sys

from dataengine.teacher.rewriter import main

sys.exit(main())
