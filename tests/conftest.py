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
