"""``python -m dataengine.build``: the command line of :mod:`dataengine.build`.

The build lives in the package, not here: the pool's processes re-run a ``-m`` module
as their ``__mp_main__`` unless it is a ``__main__`` (multiprocessing skips those), and
re-running the build module beside the copy the fork server imported made Python warn
("'dataengine.build' found in sys.modules ...") once per process."""

import sys

from dataengine.build import main

sys.exit(main())
