"""Test-wide settings: no telemetry, no hub, and the repository root importable."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.infra.runtime import quiet_environment  # noqa: E402

quiet_environment()
os.environ.pop("PIPO_PARENT_RUN_ID", None)
os.environ.pop("PIPO_PRESET", None)  # the suite tests params.yaml as committed
# One torch thread per test process (and every process it starts): the suite runs many processes on few
# cores, where torch's default of one thread per core makes them thrash (the fast loop took 3:35 with
# the default, 1:46 with one thread), and one thread also makes floating-point results reproducible.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items):
    """Run the files with end-to-end tests first, then those with slow tests, each file's tests together.

    `make test` runs two workers that take one file at a time (pytest-xdist, --dist loadfile): with
    the long files started first, the many short ones fill in behind them and both workers finish at
    about the same time, instead of one starting a long end-to-end file when the other is nearly done.
    """
    rank: dict = {}
    for item in items:
        r = 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("slow") else 2
        rank[item.path] = min(rank.get(item.path, 2), r)
    items.sort(key=lambda item: rank[item.path])  # stable: each file's tests keep their order
