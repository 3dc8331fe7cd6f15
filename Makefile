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

.PHONY: install remote run test ui serve compare bench clean

install: $(STAMP)

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 2>&1 | $(PIP_FILTER)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | $(PIP_FILTER)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | $(PIP_FILTER)
	$(PY) -c "import torch, transformers, prefect, mlflow, dvc, great_expectations, math_verify, reasoning_gym"
	touch $@

# A local DVC remote, git-ignored, configured in .dvc/config.local (not committed).
remote: install
	@$(VENV)/bin/dvc remote add --local --force --default local "$(CURDIR)/.dvc-remote" >/dev/null

run: install remote
	$(PY) -m flows.pipeline
	$(VENV)/bin/dvc push -q
	$(VENV)/bin/dvc metrics show

test: install remote
	$(PY) -m pytest

ui: install
	mlflow/ui.sh

serve: install remote
	$(PY) -m flows.local_server

# RL variants vs SFT vs matched-time continued SFT over seeds (params.yaml `compare:`).
compare: install remote
	$(VENV)/bin/dvc repro prepare
	$(PY) -m components.compare

# PIPO's per-iteration cost over its base algorithm, side by side (needs `make run` first).
bench: install
	$(PY) benchmarks/pipo_overhead.py --json reports/bench/pipo_overhead.json

clean:
	rm -rf models data/prepared reports/eval reports/validation metrics checkpoints mlflow/mlflow.db mlflow/artifacts
