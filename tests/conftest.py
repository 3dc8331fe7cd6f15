"""Test-wide settings: no telemetry, no hub, and the repository root importable."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.runtime import quiet_environment  # noqa: E402

quiet_environment()
os.environ.pop("PIPO_PARENT_RUN_ID", None)
os.environ.pop("PIPO_PRESET", None)  # the suite tests params.yaml as committed
