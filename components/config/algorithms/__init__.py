"""RL algorithms, one record per algorithm (registry.py says what a record holds).

    grpo.py     GRPO (Shao et al. 2024)
    dr_grpo.py  Dr.GRPO (Liu et al. 2025)
    dapo.py     DAPO (Yu et al. 2025)
    gspo.py     GSPO (Zheng et al. 2025)
"""

from components.config.algorithms.registry import (AGGREGATIONS, Algorithm, Published, get, names, register,
                                                   unregister)
# each registers its record; in this order rl.algorithm's allowed names are listed
from components.config.algorithms import grpo  # noqa: F401, E402  isort: skip
from components.config.algorithms import dr_grpo  # noqa: F401, E402  isort: skip
from components.config.algorithms import dapo  # noqa: F401, E402  isort: skip
from components.config.algorithms import gspo  # noqa: F401, E402  isort: skip

__all__ = ["AGGREGATIONS", "Algorithm", "Published", "get", "names", "register", "unregister"]
