"""`python -m components.compare` runs the comparison (`make compare`)."""

import sys

from components.compare.run import main

sys.exit(main())
