"""What tests share: helpers, fixtures and constants a test module imports (`from tests.support.X import ...`),
and the scripts some tests start (dist_worker.py, ui_store.py, scoring_hooks.py). No test file imports
another test file (tests/project/test_architecture.py)."""
