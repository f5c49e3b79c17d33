"""Imported once by the build's fork server (`build._process_pool`: multiprocessing's
"forkserver" start method): the workers' modules are imported and their numba caches
loaded there, so that each worker process forks from it ready instead of importing and
loading them itself (~0.8 s of CPU a worker).

Nothing here starts a thread (the build's kernels are all serial ones), so forking
from this process is safe."""

from dataengine import build

try:
    build.warm_up()
except Exception:  # noqa: BLE001 - an optimisation only: each worker warms up anyway
    pass
