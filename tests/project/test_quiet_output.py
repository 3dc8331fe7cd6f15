"""What a stage prints is the pipeline's own lines: no Great Expectations INFO, no MLflow warning a user
cannot act on, no tqdm bars, no DVC "is empty" warning, and no `entropy nan` on a policy that scores 0."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from components.infra.runtime import QUIET_ENV, quiet_environment, quiet_logging
from tests.support.rl import run_trainer, scored_on_one_thread

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_init_has_a_docstring():
    # DVC warns "'components/__init__.py' is empty" for every empty file a stage depends on
    empty = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "components").rglob("__init__.py")
                   if not p.read_text().strip())
    assert not empty, f"empty package files (DVC warns about each): {empty}"


def test_a_stage_process_imports_great_expectations_and_transformers_quietly():
    """As components/cli.py does: quiet first, logging at INFO to stdout, then the libraries load."""
    code = ("import logging, sys\n"
            "from components.infra.runtime import quiet_environment\n"
            "quiet_environment()\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
            "import great_expectations as gx\n"
            "gx.get_context(mode='ephemeral')\n"  # its data_context logger sets its own level to INFO
            "from transformers.utils import logging as hf_logging\n"
            "print('bars', hf_logging.is_progress_bar_enabled())\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in QUIET_ENV}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    assert "great_expectations" not in out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "bars False"


def test_quiet_setup_sets_the_gx_logger_to_warning():
    logging.getLogger("great_expectations").setLevel(logging.NOTSET)
    quiet_environment()
    assert logging.getLogger("great_expectations").level == logging.WARNING
    assert not logging.getLogger("great_expectations.data_context.types.base").filter(
        logging.makeLogRecord({"levelno": logging.INFO}))


def test_transformers_bars_are_turned_off_even_if_it_was_imported_first(monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(hf_logging, "_tqdm_active", True)  # imported before the variable was set
    assert hf_logging.is_progress_bar_enabled()
    quiet_logging()
    assert not hf_logging.is_progress_bar_enabled()


def test_mlflow_predict_type_hint_warning_is_dropped_and_other_warnings_still_show():
    from mlflow.pyfunc.utils.data_validation import _get_func_info_if_type_hint_supported

    def predict(self, context, model_input, params=None):  # untyped, as components/registry/pyfunc_policy.py
        return model_input

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        quiet_logging()
        _get_func_info_if_type_hint_supported(predict)  # MLflow's own check, its own "once" filter
        warnings.warn("Setuptools is replacing distutils.", UserWarning)
        warnings.warn("a warning that is not noise", UserWarning)
    assert [str(w.message) for w in shown] == ["a warning that is not noise"]


@pytest.fixture
def scores_zero(monkeypatch):
    """An untrained policy's verdicts: every completion wrong, so every advantage is 0."""
    yield from scored_on_one_thread(monkeypatch, lambda batch, *_: torch.zeros(len(batch.texts)))


def test_rl_on_local_qwen2_that_scores_zero_logs_no_nan_entropy(tmp_path, scores_zero, caplog):
    # Every group uniform: no update row runs, so actor/entropy is not measured (the log printed `nan`).
    from components.model.factory import load_policy
    from components.model.local_qwen2 import build_local_qwen2

    policy = load_policy(build_local_qwen2(tmp_path / "qwen2", "test", seed=0))
    with caplog.at_level(logging.INFO, logger="components.rl.trainer"):
        _, result = run_trainer(policy, [], iterations=2)
    assert all("actor/entropy" not in m for m in result.history)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rl iter")]
    assert len(lines) == 2
    for line in lines:
        assert "nan" not in line
        value = float(line.split("entropy ")[1].split()[0])
        assert 0 < value < float(torch.log(torch.tensor(2048.0)))  # at most log |V| of the padded vocabulary
        assert "(sampled; no update row ran)" in line
